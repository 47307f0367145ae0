"""The reporting hook: silent outside a sweep; inside, it sees every evaluation."""

import math

from lorahpo import report
from lorahpo.metrics import classification_metrics
from lorahpo.report import listening
from lorahpo.train import run

from conftest import compose_cfg, read_jsonl


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


def test_log_loss_matches_scikit_learn():
    import numpy as np
    from sklearn.metrics import log_loss

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(50, 7)) * 3
    labels = rng.integers(0, 7, size=50)
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    got = classification_metrics(logits, labels)
    assert math.isclose(got["log_loss"], log_loss(labels, probs, labels=range(7)), rel_tol=1e-9)
    assert got["accuracy"] == (probs.argmax(1) == labels).mean()
