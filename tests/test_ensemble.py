"""Greedy ensemble selection over a sweep's trials: what it chooses, when it falls back to the
best single trial, and what it says of a sweep it cannot build one from. (The whole path on a
real sweep, with retraining and inference: tests/test_sweep.py.)"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lorahpo import ensemble
from lorahpo.errors import UserError
from lorahpo.objective import DEFAULT
from lorahpo.rundir import RunDir, RunResult

pytestmark = pytest.mark.unit

K = 7


def _labels(n_questions: int):
    groups = np.repeat([f"q{i}" for i in range(n_questions)], K)
    labels = np.tile(np.arange(K), n_questions)
    return labels, groups


def _confident_on(questions, labels, groups, sure=0.9):
    """Probabilities that are right with `sure` on the given questions, uniform elsewhere."""
    probs = np.full((len(labels), K), 1.0 / K)
    rows = np.isin(groups, questions)
    probs[rows] = (1 - sure) / (K - 1)
    probs[rows, labels[rows]] = sure
    return probs


def _pool(*probs):
    labels, groups = _labels(40)
    made = [p(labels, groups) if callable(p) else p for p in probs]
    candidates = [ensemble.Candidate(i, None, p, "base") for i, p in enumerate(made)]
    return ensemble.Pool(candidates, labels, groups)


def test_two_trials_that_are_right_on_different_questions_make_an_ensemble():
    evens = [f"q{i}" for i in range(0, 40, 2)]
    odds = [f"q{i}" for i in range(1, 40, 2)]
    pool = _pool(
        lambda y, g: _confident_on(evens, y, g),
        lambda y, g: _confident_on(odds, y, g),
        lambda y, g: _confident_on(evens, y, g, sure=0.3),
    )
    sel = ensemble.select(pool, DEFAULT)
    assert sel.used == "ensemble" and set(sel.weights) == {0, 1}
    assert sum(sel.weights.values()) == pytest.approx(1.0)
    assert sel.ensemble_heldout < sel.single_heldout


def test_an_ensemble_no_better_than_the_best_trial_held_out_is_not_used():
    every = [f"q{i}" for i in range(40)]
    best = lambda y, g: _confident_on(every, y, g)  # noqa: E731
    pool = _pool(best, lambda y, g: _confident_on(every, y, g, sure=0.5))
    sel = ensemble.select(pool, DEFAULT)
    assert sel.used == "single" and sel.weights == {0: 1.0} and sel.single == 0


def _trial(sweep, n, model_path="base", adapter=b"ok", predictions=True):
    labels, groups = _labels(6)
    rd = RunDir(sweep / str(n))
    rd.path.mkdir(parents=True)
    rd.write_result(RunResult(status="completed", objective=1.0, model_path=model_path))
    (rd.adapter_path).mkdir()
    (rd.adapter_path / "adapter_config.json").write_text("{}")
    weights = rd.adapter_path / "adapter_model.safetensors"
    if adapter == b"ok":
        from safetensors.numpy import save_file

        save_file({"w": np.zeros(2, dtype=np.float32)}, str(weights))
    elif adapter is not None:
        weights.write_bytes(adapter)
    if predictions:
        frame = pd.DataFrame({"row": np.arange(len(labels)), "Question": groups, "target": labels})
        for k in range(K):
            frame[f"logit_{k}"] = np.random.default_rng(n).normal(size=len(labels))
        frame.to_csv(rd.predictions_path, index=False)
    return {"number": n, "status": "completed", "run_dir": str(rd.path)}


def _sweep(tmp_path, *trials):
    rows = [_trial(tmp_path, n, **kw) for n, kw in enumerate(trials)]
    pd.DataFrame(rows).to_csv(tmp_path / "trials.csv", index=False)
    return tmp_path


def test_a_sweep_of_two_good_trials_is_a_pool(tmp_path):
    pool = ensemble.load_pool(_sweep(tmp_path, {}, {}))
    assert [c.number for c in pool.candidates] == [0, 1] and pool.skipped == []
    assert pool.candidates[0].probs.sum(axis=1) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "trials,needle",
    [
        (({},), "at least two completed trials"),
        (({}, {"model_path": "other"}), "different base models"),
        (({}, {"adapter": b"not safetensors"}), "trial 1: its adapter is missing or damaged"),
        (({}, {"adapter": None}), "trial 1: its adapter is missing or damaged"),
        (({}, {"predictions": False}), "trial 1: no val_predictions.csv"),
    ],
)
def test_a_sweep_an_ensemble_cannot_come_from_says_why(tmp_path, trials, needle):
    with pytest.raises(UserError, match=needle):
        ensemble.load_pool(_sweep(tmp_path, *trials))


def test_the_command_names_a_folder_that_is_not_a_sweep(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        ensemble.main([str(tmp_path)])
    assert e.value.code == 2
    assert "no trials.csv" in capsys.readouterr().err
