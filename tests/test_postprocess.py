"""Temperature scaling and the one-answer-per-source posterior, against references."""

import itertools

import numpy as np
import pytest
from scipy.special import softmax

from lorahpo.errors import UserError
from lorahpo.postprocess import (
    apply_assignment,
    assignment_posterior,
    fit_temperature,
    sinkhorn,
)
from lorahpo.scoring import log_loss
from lorahpo.scoring import probabilities as postprocess

pytestmark = pytest.mark.unit


def _brute_force(p: np.ndarray) -> np.ndarray:
    k = len(p)
    q = np.zeros((k, k))
    for perm in itertools.permutations(range(k)):
        w = np.prod([p[j, perm[j]] for j in range(k)])
        for i in range(k):
            q[i, perm[i]] += w
    return q / q.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("k", [2, 3, 5, 7])
def test_exact_posterior_matches_brute_force(k):
    rng = np.random.default_rng(k)
    p = rng.dirichlet(np.full(k, 0.7), size=(4, k))
    q = assignment_posterior(p)
    for g in range(4):
        np.testing.assert_allclose(q[g], _brute_force(p[g]), atol=1e-12)


def test_invariances():
    rng = np.random.default_rng(0)
    q = assignment_posterior(rng.dirichlet(np.ones(7), size=(50, 7)))
    np.testing.assert_allclose(q.sum(axis=2), 1.0, atol=1e-12)  # rows are distributions
    np.testing.assert_allclose(q.sum(axis=1), 1.0, atol=1e-9)  # each source used once
    onehot = np.eye(7)[rng.permutation(7)][None]
    np.testing.assert_allclose(assignment_posterior(onehot), onehot, atol=1e-12)
    uniform = np.full((1, 7, 7), 1 / 7)
    np.testing.assert_allclose(assignment_posterior(uniform), uniform, atol=1e-12)


def test_tiny_probabilities_do_not_underflow():
    rng = np.random.default_rng(1)
    p = softmax(rng.normal(size=(3, 7, 7)) * 40, axis=2)  # many probabilities near 1e-300
    q = assignment_posterior(p)
    assert np.isfinite(q).all()
    np.testing.assert_allclose(q.sum(axis=2), 1.0, atol=1e-9)


def test_sinkhorn_for_large_k_is_doubly_stochastic_and_keeps_exact_cases():
    rng = np.random.default_rng(2)
    p = rng.dirichlet(np.ones(10), size=(2, 10))
    q = assignment_posterior(p)  # K=10 > 8: Sinkhorn
    np.testing.assert_allclose(q.sum(axis=2), 1.0, atol=1e-8)
    np.testing.assert_allclose(q.sum(axis=1), 1.0, atol=1e-8)
    perm = np.eye(10)[rng.permutation(10)][None] * 0.999 + 0.0001
    assert (sinkhorn(perm).argmax(axis=2) == perm.argmax(axis=2)).all()


def test_temperature_is_recovered_from_synthetic_logits():
    rng = np.random.default_rng(3)
    true_t = 2.5
    logits = rng.normal(size=(40000, 7)) * 3
    labels = np.array([rng.choice(7, p=p) for p in softmax(logits / true_t, axis=1)])
    assert fit_temperature(logits, labels) == pytest.approx(true_t, rel=0.05)
    assert fit_temperature(logits / true_t, labels) == pytest.approx(1.0, rel=0.05)


def test_groups_of_the_wrong_size_are_untouched_and_counted():
    rng = np.random.default_rng(4)
    probs = rng.dirichlet(np.ones(7), size=7 + 7 + 5 + 8)
    groups = np.array(["a"] * 7 + ["b"] * 5 + ["c"] * 7 + ["d"] * 8)
    rng.shuffle(groups)  # rows of a group need not be adjacent
    out, counts = apply_assignment(probs, groups)
    assert (counts.processed, counts.skipped, counts.rows_skipped) == (2, 2, 13)
    for g in ("b", "d"):
        np.testing.assert_array_equal(out[groups == g], probs[groups == g])
    for g in ("a", "c"):
        np.testing.assert_allclose(out[groups == g], _brute_force(probs[groups == g]), atol=1e-12)


def test_assignment_helps_when_the_structure_holds():
    rng = np.random.default_rng(5)
    n_groups, k = 300, 7
    labels = np.concatenate([rng.permutation(k) for _ in range(n_groups)])
    logits = rng.normal(size=(n_groups * k, k)) + 1.5 * np.eye(k)[labels]
    groups = np.repeat(np.arange(n_groups), k)
    raw, _ = postprocess(logits, groups, "none", None)
    assigned, counts = postprocess(logits, groups, "assignment", None)
    assert counts.processed == n_groups
    assert log_loss(assigned, labels) < 0.9 * log_loss(raw, labels)  # measured: 1.21 -> 0.99
    assert (assigned.argmax(1) == labels).mean() > (raw.argmax(1) == labels).mean()


def test_unknown_method_and_missing_temperature_are_user_errors():
    with pytest.raises(UserError, match="not known"):
        postprocess(np.zeros((7, 7)), None, "platt", None)
    with pytest.raises(UserError, match="temperature"):
        postprocess(np.zeros((7, 7)), None, "temperature", None)
