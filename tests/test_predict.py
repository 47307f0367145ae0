"""From a training run to submission.csv: infer.py end to end on the tiny model."""

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy.special import softmax

from lorahpo.scoring import probabilities
from lorahpo.toy import make_toy_frame

from conftest import compose_cfg, run_cli, run_here


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run") / "run"
    proc = run_here("debug=smoke", "train.epochs=2", f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir


def _infer(*args):
    return run_here(*args, "progress_bar=false", script="infer.py")


@pytest.mark.xdist_group("trained")  # shares a module fixture: one worker runs them
@pytest.mark.cli
def test_inference_reproduces_the_runs_own_evaluation(trained, tmp_path):
    """Same rows, same probabilities: infer.py rebuilds exactly the evaluated model."""
    val = pd.read_csv(trained / "val_predictions.csv")
    frame = make_toy_frame(compose_cfg("debug=smoke").data.n_questions, seed=0)
    rows = frame.iloc[val["row"]].reset_index(drop=True)
    rows.insert(0, "id", val["row"] + 1000)
    test_path = tmp_path / "val.csv"
    rows.to_csv(test_path, index=False)
    out = tmp_path / "sub.csv"
    proc = _infer(  # other batches and padding than in training; raw probabilities
        f"run_dir={trained}",
        f"data.test_path={test_path}",
        f"output={out}",
        "batch_size=5",
        "postprocess=none",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    sub = pd.read_csv(out)
    assert list(sub.columns) == ["id"] + [f"target_{k}" for k in range(7)]
    assert list(sub["id"]) == list(val["row"] + 1000)  # the test file's order and ids
    logits = val[[f"logit_{k}" for k in range(7)]].to_numpy()
    np.testing.assert_allclose(sub.iloc[:, 1:].to_numpy(), softmax(logits, axis=1), atol=2e-5)
    result = json.loads((trained / "result.json").read_text())
    assert f"log loss {result['objective']:.4f} (none" in proc.stdout  # labels: scored
    assert "rows/s" in proc.stdout

    # the default post-processing: the one-per-source posterior of each complete question
    proc = _infer(f"run_dir={trained}", f"data.test_path={test_path}", f"output={out}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    n_groups = rows["Question"].nunique()
    assert f"{n_groups} question groups of K rows post-processed, 0 groups" in proc.stdout
    expected, _ = probabilities(logits, rows["Question"].to_numpy(), "assignment", None)
    np.testing.assert_allclose(pd.read_csv(out).iloc[:, 1:].to_numpy(), expected, atol=2e-5)
    assert f"log loss {result['best_log_loss_assignment']:.4f} (assignment" in proc.stdout

    proc = _infer(
        f"run_dir={trained}",
        f"data.test_path={test_path}",
        f"output={out}",
        "postprocess=temperature+assignment",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    calibration = json.loads((trained / "calibration.json").read_text())
    assert calibration["temperature"] == result["temperature"] > 0
    expected, _ = probabilities(
        logits, rows["Question"].to_numpy(), "temperature+assignment", calibration["temperature"]
    )
    np.testing.assert_allclose(pd.read_csv(out).iloc[:, 1:].to_numpy(), expected, atol=2e-5)


@pytest.mark.xdist_group("trained")  # shares a module fixture: one worker runs them
@pytest.mark.cli
def test_submission_without_ids_or_labels(trained, tmp_path):
    frame = make_toy_frame(6, seed=9)[["Question", "Response"]]
    frame.loc[2, "Response"] = None
    test_path = tmp_path / "test.csv"
    frame.to_csv(test_path, index=False)
    proc = _infer(
        f"run_dir={trained}",
        f"data.test_path={test_path}",
        "hardware=cpu",
        "sort_by_length=false",
        "merge_adapter=true",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    sub = pd.read_csv(trained / "submission.csv")
    assert list(sub["id"]) == list(range(len(frame)))
    np.testing.assert_allclose(sub.iloc[:, 1:].sum(axis=1), 1.0, atol=1e-9)
    assert "log loss" not in proc.stdout


@pytest.mark.xdist_group("trained")  # shares a module fixture: one worker runs them
@pytest.mark.cli
def test_bad_inputs_get_clear_messages(trained, tmp_path):
    no_response = tmp_path / "a.csv"
    no_response.write_text("id,Question,Answer\n1,q,a\n")
    binary = tmp_path / "b.csv"
    binary.write_bytes(bytes(range(256)) * 4)
    labels = tmp_path / "c.csv"
    labels.write_text("Question,Response,target\nq,a,9\n")
    failed = tmp_path / "failed_run"
    (failed / ".hydra").mkdir(parents=True)
    (failed / ".hydra/config.yaml").write_text((trained / ".hydra/config.yaml").read_text())
    cases = [
        ([f"run_dir={tmp_path}", f"data.test_path={no_response}"], "not a training run"),
        ([f"run_dir={failed}", f"data.test_path={no_response}"], "has no adapter"),
        ([f"run_dir={trained}", f"data.test_path={no_response}"], "'Response'"),
        ([f"run_dir={trained}", f"data.test_path={binary}"], "not CSV text"),
        ([f"run_dir={trained}", f"data.test_path={labels}"], "label '9'"),
        ([f"run_dir={trained}", f"data.test_path={tmp_path / 'none.csv'}"], "no such file"),
        ([f"data.test_path={labels}"], "`python infer.py run_dir=...`"),  # the command typed
    ]
    for args, needle in cases:
        proc = _infer(*args)
        assert proc.returncode == 2, (args, proc.stderr[-2000:])
        message = " ".join(proc.stderr.split())  # the paragraph is wrapped at 100 columns
        assert needle in message and "Traceback" not in message, (needle, message)


@pytest.mark.unit
def test_reference_experiment_composes():
    cfg = compose_cfg("experiment=deepseek_r1_8b_reference")
    assert cfg.model.name == "deepseek_r1_8b" and cfg.hardware.quantization == "nf4"
    assert (cfg.lora.r, cfg.lora.alpha, cfg.lora.dropout) == (32, 64, 0.1)
    t = cfg.train
    assert (
        t.lr,
        t.lr_scheduler,
        t.epochs,
        t.label_smoothing,
        t.weight_decay,
        t.warmup_ratio,
        t.grad_accum,
    ) == (2.35e-4, "cosine", 3, 0.071, 0.01, 0.082, 1)


@pytest.mark.cli
def test_final_model_trains_on_every_row(tmp_path):
    proc = run_here("debug=smoke", "data.val_fold=null", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["status"] == "completed" and result["validated"] is False
    assert not (tmp_path / "calibration.json").exists()  # no validation fold, no temperature
    toy = tmp_path / "toy.csv"
    make_toy_frame(3, seed=2).to_csv(toy, index=False)
    proc = _infer(f"run_dir={tmp_path}", f"data.test_path={toy}", "postprocess=temperature")
    assert proc.returncode == 2 and "postprocess=assignment or none" in " ".join(
        proc.stderr.split()
    )
    proc = _infer(f"run_dir={tmp_path}", f"data.test_path={toy}")  # the default works
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert result["train_rows"] == 7 * compose_cfg("debug=smoke").data.n_questions
    assert (tmp_path / "adapter/adapter_model.safetensors").exists()
    assert not (tmp_path / "metrics.jsonl").exists() or not (tmp_path / "metrics.jsonl").read_text()


@pytest.mark.cli
def test_4bit_run_and_inference_on_cpu(tmp_path):
    """The QLoRA path end to end without a GPU: NF4 base (bitsandbytes), LoRA training, and
    infer.py on its adapter reproducing the run's own validation logits."""
    run_dir = tmp_path / "run"
    # a process of its own: whether bitsandbytes warns must not depend on earlier tests
    proc = run_cli("debug=smoke", "hardware.quantization=nf4", f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "gemm_4bit" not in proc.stdout + proc.stderr  # no noise about optional kernels
    result = json.loads((run_dir / "result.json").read_text())
    losses = [json.loads(x)["eval_log_loss"] for x in (run_dir / "metrics.jsonl").open()]
    assert losses[-1] < losses[0] < np.log(7) + 0.1  # it learns
    cfg = yaml.safe_load((run_dir / ".hydra/config.yaml").read_text())
    assert cfg["hardware"]["quantization"] == "nf4"

    val = pd.read_csv(run_dir / "val_predictions.csv")
    rows = make_toy_frame(compose_cfg("debug=smoke").data.n_questions, seed=0).iloc[val["row"]]
    test_path = tmp_path / "val.csv"
    rows.to_csv(test_path, index=False)
    out = tmp_path / "sub.csv"
    proc = _infer(
        f"run_dir={run_dir}", f"data.test_path={test_path}", f"output={out}", "postprocess=none"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    logits = val[[f"logit_{k}" for k in range(7)]].to_numpy()
    # over other batches and padding: close, not bit-identical
    np.testing.assert_allclose(
        pd.read_csv(out).iloc[:, -7:].to_numpy(), softmax(logits, axis=1), atol=2e-3
    )
    assert f"log loss {result['objective']:.2f}" in proc.stdout
