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


OBJECTIVES = {  # objective=<name> -> the metric it minimises
    "raw": "log_loss",
    "temperature": "log_loss_temperature",
    "assignment": "log_loss_assignment",
    "temperature+assignment": "log_loss_temperature_assignment",
}


class MetricsWithLogits:
    """`Trainer` `compute_metrics` hook: raw and post-processed log loss, and the logits of the
    last evaluation (so the best one's can be saved without another pass over the data).

    `groups` (the question of each validation row, in evaluation order) enables the
    post-processed metrics; the temperature is fitted on the same evaluation's logits.
    """

    def __init__(self, groups=None) -> None:
        self.groups = groups
        self.logits: np.ndarray | None = None

    def __call__(self, eval_pred) -> dict[str, float]:
        from lorahpo import postprocess as pp

        logits = eval_pred.predictions
        if isinstance(logits, tuple):
            logits = logits[0]
        self.logits = np.asarray(logits, dtype=np.float64)
        labels = np.asarray(eval_pred.label_ids, dtype=np.int64)
        metrics = classification_metrics(self.logits, labels)
        if self.groups is None or not np.isfinite(self.logits).all():
            return metrics
        t = pp.fit_temperature(self.logits, labels)
        for method in ("temperature", "assignment", "temperature+assignment"):
            probs, counts = pp.postprocess(self.logits, self.groups, method, t)
            metrics[OBJECTIVES[method]] = pp.log_loss(probs, labels)
            if counts is not None:
                metrics[OBJECTIVES[method].replace("log_loss", "accuracy")] = float(
                    (probs.argmax(1) == labels).mean()
                )
        metrics["temperature"] = t
        return metrics
