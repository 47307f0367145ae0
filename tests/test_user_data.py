"""The path a user takes with their own data: a sweep on their CSV with a search space of
their own (`--config-dir`), the best trial retrained on every row, and submission.csv from
infer.py; and a sweep whose configuration is wrong stops at the first trial that says so."""

import json

import pandas as pd
import pytest
import yaml

from lorahpo.toy import write_toy_csvs

from conftest import run_cli, run_here

pytestmark = pytest.mark.ray


def _user_files(tmp_path, space: str):
    train, test = write_toy_csvs(tmp_path / "data", n_questions=30, seed=7)
    conf = tmp_path / "my_conf"
    (conf / "search" / "space").mkdir(parents=True)
    (conf / "search" / "space" / "mine.yaml").write_text(space)
    return train, test, conf


def test_a_sweep_on_the_users_csv_retrains_the_best_and_writes_a_submission(tmp_path):
    space = "train.lr: tag(log, interval(3e-4, 3e-3))\nlora.r: choice(8, 16)\n"
    train, test, conf = _user_files(tmp_path, space)
    sweep = tmp_path / "sweep"
    proc = run_cli(  # the default searcher and scheduler (rung evaluations on a subset)
        "-m",
        "--config-dir",
        str(conf),
        "search/space=mine",
        "data=csv",
        f"data.train_path={train}",
        "search.n_trials=2",
        "hardware.concurrency=2",
        "hardware.cpus_per_trial=1",
        "debug=smoke",
        f"hydra.sweep.dir={sweep}",
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    trials = pd.read_csv(sweep / "trials.csv")
    assert len(trials) == 2 and set(trials["status"]) <= {"completed", "stopped"}
    assert (trials["status"] == "completed").any()
    assert {"train.lr", "lora.r"} <= set(trials.columns) and "train.epochs" not in trials
    cfg = yaml.safe_load((sweep / "0" / ".hydra" / "config.yaml").read_text())
    assert cfg["data"]["source"] == "csv" and cfg["data"]["train_path"] == str(train)
    assert cfg["train"]["eval_subset"] == 0.5  # the rung evaluations that read data.seed

    final = tmp_path / "final"
    proc = run_here(
        f"--config-dir={sweep}", "experiment=best", "data.val_fold=null", f"hydra.run.dir={final}"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((final / "result.json").read_text())
    assert result["status"] == "completed" and result["validated"] is False
    assert result["train_rows"] == len(pd.read_csv(train))  # every labelled row

    out = tmp_path / "submission.csv"
    proc = run_here(
        f"run_dir={final}", f"data.test_path={test}", f"output={out}", script="infer.py"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    sub, rows = pd.read_csv(out), pd.read_csv(test)
    assert list(sub.columns) == ["id"] + [f"target_{k}" for k in range(7)]
    assert list(sub["id"]) == list(rows["id"])
    assert sub.iloc[:, 1:].sum(axis=1).round(6).eq(1).all()
    assert "log loss" in proc.stdout  # the test file has labels: it is scored


def test_a_trial_that_fails_on_its_configuration_stops_the_sweep(tmp_path):
    train, _, conf = _user_files(tmp_path, "lora.r: choice(8, big, 16)\n")  # a typo
    sweep = tmp_path / "sweep"
    proc = run_cli(
        "-m",
        "--config-dir",
        str(conf),
        "search=grid",
        "search/space=mine",
        "data=csv",
        f"data.train_path={train}",
        "hardware.concurrency=2",  # trials 0 and 1 start together; 1 fails as it composes
        "hardware.cpus_per_trial=1",
        "debug=smoke",
        f"hydra.sweep.dir={sweep}",
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    message = " ".join(proc.stderr.split())
    assert "trial 1 failed on its configuration (lora.r: Value 'big'" in message
    assert "the sweep stopped there" in message and "search space" in message
    assert f"{sweep}/1/error.txt" in message
    trials = pd.read_csv(sweep / "trials.csv")  # trial 0 stopped with the sweep
    assert list(trials["lora.r"]) == ["8", "big"] and trials["status"].iloc[1] == "failed"
