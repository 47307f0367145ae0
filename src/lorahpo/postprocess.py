"""Better probabilities for the log-loss metric: temperature scaling and the
one-answer-per-source posterior.

In the reference task every question is answered once by each of the K sources. Given the
model's probabilities p[j, c] for the K answers of one question, the exact posterior under
"each source answered exactly once" is, for answer i and source c,

    q[i, c]  ∝  sum over permutations pi with pi(i) = c  of  prod_j p[j, pi(j)].

For K <= 8 (40,320 permutations) this is enumerated exactly, vectorised over groups; for
larger K, Sinkhorn balancing (alternately normalising rows and columns to sum to 1) gives
the usual doubly-stochastic approximation.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax

EXACT_MAX_K = 8


# --- temperature scaling -------------------------------------------------------------


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The T > 0 minimising the log loss of softmax(logits / T) (one scalar, so the ranking of
    classes, and so the accuracy, is unchanged)."""
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    rows = np.arange(len(labels))

    def nll(log_t: float) -> float:
        return -log_softmax(logits / np.exp(log_t), axis=1)[rows, labels].mean()

    res = minimize_scalar(
        nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded", options={"xatol": 1e-6}
    )
    return float(np.exp(res.x))


# --- one answer per source -------------------------------------------------------------


@lru_cache(maxsize=8)
def _permutations(k: int) -> tuple[np.ndarray, np.ndarray]:
    """All permutations of k (k!, k) and their one-hot form (k!, k, k)."""
    perms = np.array(list(itertools.permutations(range(k))), dtype=np.int64)
    onehot = np.zeros((len(perms), k, k))
    onehot[np.arange(len(perms))[:, None], np.arange(k)[None, :], perms] = 1.0
    return perms, onehot


def assignment_posterior(probs: np.ndarray, chunk: int = 256) -> np.ndarray:
    """Exact one-per-source posterior for a stack of groups, shape (G, K, K) -> (G, K, K).

    Computed in log space (products of many small probabilities underflow); rows of the
    result sum to 1, and so do its columns.
    """
    probs = np.asarray(probs, dtype=np.float64)
    g, k, k2 = probs.shape
    if k != k2:
        raise ValueError(f"groups must be square (K answers x K sources), got {probs.shape}")
    if k > EXACT_MAX_K:
        return sinkhorn(probs)
    perms, onehot = _permutations(k)
    logp = np.log(np.clip(probs, 1e-300, None))
    out = np.empty_like(probs)
    for s in range(0, g, chunk):  # bounded memory: chunk x k! x k
        lp = logp[s : s + chunk]
        # log weight of each permutation: sum_j log p[j, pi(j)]
        logw = lp[:, np.arange(k)[None, :], perms].sum(axis=-1)  # (c, k!)
        w = np.exp(logw - logw.max(axis=1, keepdims=True))
        q = np.einsum("gp,pic->gic", w, onehot)
        out[s : s + chunk] = q / q.sum(axis=2, keepdims=True)
    return out


def sinkhorn(probs: np.ndarray, iters: int = 200, tol: float = 1e-10) -> np.ndarray:
    """Approximate posterior for large K: scale rows and columns until both sum to 1."""
    q = np.clip(np.asarray(probs, dtype=np.float64), 1e-300, None)
    for _ in range(iters):
        q = q / q.sum(axis=1, keepdims=True)  # each source used once
        q = q / q.sum(axis=2, keepdims=True)  # each answer has one source
        if np.abs(q.sum(axis=1) - 1).max() < tol:
            break
    return q


@dataclass
class GroupCounts:
    """How many question groups the assignment step could use."""

    processed: int  # groups of exactly K rows: posterior applied
    skipped: int  # groups of another size: left unchanged
    rows_skipped: int  # rows of those skipped groups

    def __str__(self) -> str:
        return (
            f"{self.processed} question groups of K rows post-processed, {self.skipped} "
            f"groups of other sizes ({self.rows_skipped} rows) left unchanged"
        )


def apply_assignment(probs: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, GroupCounts]:
    """Replace the probabilities of every group of exactly K rows (K = classes) sharing a
    question by their one-per-source posterior; other groups are left as they are."""
    probs = np.asarray(probs, dtype=np.float64)
    k = probs.shape[1]
    codes, inverse, sizes = np.unique(np.asarray(groups), return_inverse=True, return_counts=True)
    order = np.argsort(inverse, kind="stable")
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    full = np.flatnonzero(sizes == k)
    out = probs.copy()
    if len(full):
        rows = order[starts[full][:, None] + np.arange(k)[None, :]]  # (G, K) row indices
        out[rows] = assignment_posterior(probs[rows])
    skipped = sizes != k
    return out, GroupCounts(len(full), int(skipped.sum()), int(sizes[skipped].sum()))
