"""The reporting hook: silent outside a sweep; inside, it sees every evaluation."""

import pytest

from lorahpo import report
from lorahpo.report import listening
from lorahpo.train import run

from conftest import compose_cfg, read_jsonl

pytestmark = pytest.mark.cli


def test_listener_receives_each_evaluation_of_a_real_run(tmp_path):
    cfg = compose_cfg("debug=smoke", "train.epochs=2")
    seen = []
    with listening(seen.append):
        objective = run(cfg, tmp_path)
    assert seen == read_jsonl(tmp_path / "metrics.jsonl")
    assert len(seen) == 4
    assert objective == min(r["eval_log_loss"] for r in seen)
    report({"after": True})  # nobody listening: a no-op, and nothing raised
    assert len(seen) == 4  # the listener is gone after the block


def test_a_trials_objective_prefers_whole_fold_evaluations():
    """What a trial reports as its objective: the best subset (rung) evaluation until the
    first whole-fold one, then the best whole-fold one only, even if a subset one was lower."""
    from lorahpo.objective import DEFAULT
    from lorahpo.sweep.reported import BestSoFar

    best = BestSoFar(DEFAULT)
    assert best.add({"objective": 1.5, "subset": True}) == 1.5
    assert best.add({"objective": 1.2, "subset": True}) == 1.2
    assert best.add({"objective": 1.3}) == 1.3
    assert best.add({"objective": 1.0, "subset": True}) == 1.3
    assert best.add({"objective": 1.25, "subset": False}) == 1.25
