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
