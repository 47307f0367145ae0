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


class MetricsWithLogits:
    """`Trainer` `compute_metrics` hook that also keeps the last evaluation's logits, so the
    best evaluation's predictions can be saved without another pass over the data."""

    def __init__(self) -> None:
        self.logits: np.ndarray | None = None

    def __call__(self, eval_pred) -> dict[str, float]:
        logits = eval_pred.predictions
        if isinstance(logits, tuple):
            logits = logits[0]
        self.logits = np.asarray(logits, dtype=np.float64)
        return classification_metrics(self.logits, eval_pred.label_ids)
