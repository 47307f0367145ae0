"""Trainer callbacks: record each evaluation to the run directory and report it."""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback
from transformers.trainer_callback import ProgressCallback

from lorahpo.report import report

log = logging.getLogger(__name__)


class EvalRecorder(TrainerCallback):
    """Append one JSON line per evaluation to `metrics.jsonl` and send it through `report`.

    A non-finite validation loss stops training at once: the run is failed, never scored.
    """

    def __init__(
        self, path: Path, planned_evals: int, metrics_fn=None, objective: str = "log_loss"
    ) -> None:
        self.path = path
        self.planned_evals = planned_evals
        self.objective_key = f"eval_{objective}"  # the metric the run (and a sweep) minimises
        self.metrics_fn = metrics_fn  # a MetricsWithLogits: its logits of the best evaluation
        self.best_logits = None
        self.records: list[dict[str, Any]] = []
        self.last_train_loss: float | None = None
        self.diverged = False
        self.train_started_at: float | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.train_started_at = time.time()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.last_train_loss = float(logs["loss"])

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        metrics = metrics or {}
        record: dict[str, Any] = {
            "eval": len(self.records) + 1,
            "step": state.global_step,
            "epoch": round(float(state.epoch or 0.0), 4),
            "objective": metrics.get(self.objective_key),
            "eval_log_loss": metrics.get("eval_log_loss"),
            "eval_accuracy": metrics.get("eval_accuracy"),
            "train_loss": self.last_train_loss,
            "time": round(time.time(), 3),  # wall clock, to line trials up in a sweep
            "train_started_at": round(self.train_started_at or 0.0, 3),
            **{
                k: v
                for k, v in metrics.items()
                if k.startswith("eval_") and k not in ("eval_log_loss", "eval_accuracy")
            },
        }
        self.records.append(record)
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        log.info(
            "eval %d/%d  step %d  epoch %.2f  log_loss %.4f  accuracy %.4f",
            record["eval"],
            self.planned_evals,
            record["step"],
            record["epoch"],
            record["eval_log_loss"],
            record["eval_accuracy"],
        )
        if record["objective"] is None or not math.isfinite(record["objective"]):
            self.diverged = True
            control.should_training_stop = True
            return control
        if self.metrics_fn is not None and record["objective"] <= min(
            r["objective"] for r in self.records
        ):
            self.best_logits = self.metrics_fn.logits
        report(record)
        return control


class QuietProgress(ProgressCallback):
    """HF's progress bars without the raw metric dicts it prints at every log and evaluation
    (each evaluation is logged once, readably, by `EvalRecorder`)."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        return control
