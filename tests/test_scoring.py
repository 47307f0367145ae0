"""Scoring: one log loss, one accuracy, one list of post-processing methods and their names."""

import math

import numpy as np
import pytest

from lorahpo.errors import UserError
from lorahpo.scoring import METHODS, check_method, metric_name, probabilities, score

pytestmark = pytest.mark.unit


def test_log_loss_matches_scikit_learn():
    import numpy as np
    from sklearn.metrics import log_loss

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(50, 7)) * 3
    labels = rng.integers(0, 7, size=50)
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    got = score(logits, labels)
    assert math.isclose(got["log_loss"], log_loss(labels, probs, labels=range(7)), rel_tol=1e-9)
    assert got["accuracy"] == (probs.argmax(1) == labels).mean()


def test_metric_names_follow_one_rule():
    assert [metric_name("log_loss", m) for m in METHODS] == [
        "log_loss",
        "log_loss_temperature",
        "log_loss_assignment",
        "log_loss_temperature_assignment",
    ]
    assert metric_name("accuracy", "temperature+assignment") == "accuracy_temperature_assignment"


def test_every_method_is_scored_under_its_name():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(70, 7)) * 2
    labels = np.tile(np.arange(7), 10)
    groups = np.repeat(np.arange(10), 7)
    got = score(logits, labels, groups)
    t = got["temperature"]
    for method in METHODS:
        probs, _ = probabilities(logits, groups, method, t)
        expected = -np.log(np.clip(probs[np.arange(70), labels], 1e-15, None)).mean()
        assert got[metric_name("log_loss", method)] == pytest.approx(expected, rel=1e-12)
    # the objective names are the post-processing names of infer.py
    with pytest.raises(UserError, match="objective='raw' is not known; use one of none"):
        check_method("raw", 1.0, key="objective")
