"""OpenBox GP-BO: the space conversion, failed observations, search=gp in the sweeper and
the tune_openbox.py driver, on real trials of the tiny model."""

import json
import math

import pandas as pd
import pytest

pytest.importorskip(
    "openbox", reason='the openbox extra is not installed: pip install ".[openbox]"'
)

from lorahpo.sweep.searchers._openbox import OpenBoxSearch, to_openbox_space
from lorahpo.sweep.space import parse_param

from conftest import read_jsonl, run_cli

SPACE = {
    "train.lr": parse_param("train.lr", "tag(log, interval(1e-4, 1e-2))"),
    "lora.dropout": parse_param("lora.dropout", "interval(0.0, 0.3)"),
    "train.grad_accum": parse_param("train.grad_accum", "tag(int, interval(1, 4))"),
    "lora.r": parse_param("lora.r", "choice(8, 16, 32)"),
    "train.lr_scheduler": parse_param("train.lr_scheduler", "choice(cosine, linear)"),
}


@pytest.mark.unit
def test_every_parameter_type_maps_to_openbox():
    cs = to_openbox_space(SPACE, seed=0)
    kinds = {hp.name: type(hp).__name__ for hp in cs.get_hyperparameters()}
    assert kinds == {
        "train.lr": "Real",
        "lora.dropout": "Real",
        "train.grad_accum": "Int",
        "lora.r": "Ordinal",
        "train.lr_scheduler": "Categorical",
    }
    assert cs.get_hyperparameter("train.lr").log and not cs.get_hyperparameter("lora.dropout").log
    assert cs.get_hyperparameter("train.grad_accum").upper == 4


@pytest.mark.unit
def test_suggestions_are_valid_and_failures_are_not_fake_losses(tmp_path):
    search = OpenBoxSearch(
        SPACE, "objective", "min", seed=0, n_initial=2, concurrency=1, out_dir=tmp_path
    )
    seen = []
    for i in range(6):
        params = search.suggest(f"t{i}")
        assert 1e-4 <= params["train.lr"] <= 1e-2 and params["lora.r"] in (8, 16, 32)
        assert isinstance(params["train.grad_accum"], int)
        seen.append(params)
        result = None if i == 1 else {"objective": math.log10(params["train.lr"]) ** 2}
        search.on_trial_complete(f"t{i}", result=result, error=i == 1)
    history = json.loads((tmp_path / "openbox_history.json").read_text())
    states = [o["trial_state"] for o in history["observations"]]
    assert len(states) == 6 and states.count(1) == 1  # one FAILED observation (state 1)
    failed = history["observations"][1]
    assert failed["objectives"][0] is None or not math.isfinite(failed["objectives"][0])
    ok = [o["objectives"][0] for o in history["observations"] if o["trial_state"] == 0]
    expected = [math.log10(p["train.lr"]) ** 2 for i, p in enumerate(seen) if i != 1]
    assert ok == pytest.approx(expected)  # the real objectives, in order


@pytest.mark.unit
def test_searcher_state_survives_a_checkpoint(tmp_path):
    search = OpenBoxSearch(
        SPACE, "objective", "min", seed=0, n_initial=2, concurrency=2, out_dir=tmp_path
    )
    for i in range(3):
        search.suggest(f"t{i}")
        search.on_trial_complete(f"t{i}", {"objective": float(i)})
    search.suggest("t3")  # still running at the checkpoint
    search.save(str(tmp_path / "state.pkl"))
    import pickle

    restored = pickle.loads(pickle.dumps(search))  # as Ray stores it with the experiment
    restored.restore(str(tmp_path / "state.pkl"))
    assert len(restored.advisor.get_history()) == 3 and set(restored.live) == {"t3"}
    restored.on_trial_complete("t3", {"objective": 0.5})
    assert len(restored.advisor.get_history()) == 4


def _check_sweep(sweep_dir, n):
    trials = pd.read_csv(sweep_dir / "trials.csv")
    assert len(trials) == n and list(trials["number"]) == list(range(n))
    history = json.loads((sweep_dir / "openbox_history.json").read_text())
    assert len(history["observations"]) == n
    done = trials[trials["status"] == "completed"].sort_values("number")
    observed = [o["objectives"][0] for o in history["observations"]]
    assert sorted(observed) == pytest.approx(sorted(done["objective"]))
    assert (sweep_dir / "experiment/best.yaml").exists()
    return trials


@pytest.mark.ray
def test_search_gp_with_asha_inside_the_sweeper(tmp_path):
    proc = run_cli(
        "-m",
        "search=gp",
        "scheduler=asha",
        "search.n_trials=4",
        "search.n_initial=2",
        "debug=smoke",
        "search/space=grid",
        f"hydra.sweep.dir={tmp_path}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    trials = pd.read_csv(tmp_path / "trials.csv")
    assert len(trials) == 4 and set(trials["status"]) <= {"completed", "stopped"}
    history = json.loads((tmp_path / "openbox_history.json").read_text())
    # only trials that reached their last evaluation are observations (one ASHA stops at
    # that evaluation included): the loss of a trial stopped before it is not a final result
    last = [read_jsonl(tmp_path / str(n) / "metrics.jsonl")[-1] for n in trials["number"]]
    assert len(history["observations"]) == sum(r["eval"] == r["planned_evals"] for r in last)


@pytest.mark.ray
def test_tune_openbox_driver_runs_and_continues_a_sweep(tmp_path):
    args = [
        "debug=smoke",
        "search/space=grid",
        "train.lr=tag(log,interval(3e-4,5e-3))",
        "openbox.init_trials=2",
        "openbox.seed=3",
        f"hydra.sweep.dir={tmp_path}",
    ]
    proc = run_cli(*args, "openbox.max_runs=3", script="tune_openbox.py")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "gp x fifo: 3 trials" in proc.stdout
    first = _check_sweep(tmp_path, 3)
    proc = run_cli(*args, "openbox.max_runs=5", script="tune_openbox.py")
    assert proc.returncode == 0, proc.stderr[-3000:]
    final = _check_sweep(tmp_path, 5)
    pd.testing.assert_frame_equal(
        final.iloc[:3][["number", "started_at"]], first[["number", "started_at"]]
    )
