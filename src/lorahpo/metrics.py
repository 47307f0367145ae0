"""The objective: multi-class log loss of softmax probabilities over all K labels."""

from __future__ import annotations

import numpy as np
from scipy.special import log_softmax


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 (bf16/fp32 logits would round small probabilities to 0)."""
    return np.exp(log_softmax(np.asarray(logits, dtype=np.float64), axis=-1))


def classification_metrics(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """`log_loss` (natural log, probabilities clipped at 1e-15 like scikit-learn) and accuracy."""
    logp = log_softmax(np.asarray(logits, dtype=np.float64), axis=-1)
    labels = np.asarray(labels, dtype=np.int64)
    picked = logp[np.arange(len(labels)), labels]
    return {
        "log_loss": float(-np.maximum(picked, np.log(1e-15)).mean()),
        "accuracy": float((logp.argmax(-1) == labels).mean()),
    }


def compute_metrics(eval_pred) -> dict[str, float]:
    """`Trainer` hook: metrics are prefixed with `eval_` by the Trainer."""
    logits, labels = eval_pred.predictions, eval_pred.label_ids
    if isinstance(logits, tuple):
        logits = logits[0]
    return classification_metrics(logits, labels)
