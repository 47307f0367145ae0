"""Scoring, defined once: softmax, log loss, accuracy, and the post-processing methods that
both the training objective (`objective=`) and inference (`infer.py postprocess=`) use, under
the same names.

Metric names follow one rule: the base name (`log_loss`, `accuracy`), then the method with
`+` written as `_` (`log_loss_temperature_assignment`); the unprocessed method, `none`, adds
nothing.
"""

from __future__ import annotations

import numpy as np
from scipy.special import log_softmax

from lorahpo.errors import UserError
from lorahpo.postprocess import GroupCounts, apply_assignment, fit_temperature

METHODS = ("none", "temperature", "assignment", "temperature+assignment")
CLIP = 1e-15  # probabilities are clipped here, as scikit-learn's log_loss does


def metric_name(base: str, method: str) -> str:
    """`metric_name("log_loss", "temperature+assignment")` -> `log_loss_temperature_assignment`."""
    return base if method == "none" else f"{base}_{method.replace('+', '_')}"


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax in float64 (bf16/fp32 logits would round small probabilities to 0)."""
    return np.exp(log_softmax(np.asarray(logits, dtype=np.float64) / temperature, axis=-1))


def log_loss(probs: np.ndarray, labels: np.ndarray) -> float:
    """Multi-class log loss (natural log) of probabilities."""
    labels = np.asarray(labels, dtype=np.int64)
    picked = np.asarray(probs, dtype=np.float64)[np.arange(len(labels)), labels]
    return float(-np.log(np.clip(picked, CLIP, None)).mean())


def accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    return float((np.asarray(probs).argmax(-1) == np.asarray(labels)).mean())


def check_method(method: str, temperature: float | None, key: str = "postprocess") -> None:
    """A clear error for an unknown method, or a temperature method without a temperature."""
    if method not in METHODS:
        raise UserError(f"{key}={method!r} is not known; use one of {', '.join(METHODS)}.")
    if "temperature" in method and temperature is None:
        raise UserError(
            f"{key}={method} needs the run's fitted temperature (calibration.json in "
            "the run directory, written by training runs with a validation fold); use "
            f"{key}=assignment or none for this run."
        )


def probabilities(
    logits: np.ndarray, groups: np.ndarray | None, method: str, temperature: float | None
) -> tuple[np.ndarray, GroupCounts | None]:
    """Class probabilities from logits by `method` (one of METHODS); the group counts say how
    many question groups the assignment step could use (None without assignment)."""
    check_method(method, temperature)
    probs = softmax(logits, temperature if "temperature" in method else 1.0)
    if "assignment" not in method:
        return probs, None
    return apply_assignment(probs, groups)


def score(
    logits: np.ndarray, labels: np.ndarray, groups: np.ndarray | None = None
) -> dict[str, float]:
    """Log loss and accuracy of every method (without `groups`: only `none`), and the fitted
    temperature. The temperature is fitted on these same logits (one parameter)."""
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    probs = softmax(logits)
    out = {"log_loss": log_loss(probs, labels), "accuracy": accuracy(probs, labels)}
    if groups is None or not np.isfinite(logits).all():
        return out
    t = fit_temperature(logits, labels)
    for method in METHODS[1:]:
        probs, _ = probabilities(logits, groups, method, t)
        out[metric_name("log_loss", method)] = log_loss(probs, labels)
        out[metric_name("accuracy", method)] = accuracy(probs, labels)
    out["temperature"] = t
    return out
