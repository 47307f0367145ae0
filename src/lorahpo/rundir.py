"""The run directory contract, defined once: file names, the records they hold, readers and
writers.

A run directory (`outputs/runs/<date>/<time>/` or `<sweep_dir>/<n>/`) holds Hydra's
`.hydra/`, a log, and the files named here. Everything that writes or reads them (training,
inference, the sweep summary, benchmarks) goes through this module, so a field is named in one
place and a result written by a finished run and by an early-stopped trial has one layout.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
RESULT = "result.json"  # how the run ended: RunResult
METRICS = "metrics.jsonl"  # one EvalRecord per line, in evaluation order
ERROR = "error.txt"  # the traceback of a failed run
ADAPTER = "adapter"  # the PEFT adapter + tokenizer of a completed run
CALIBRATION = "calibration.json"  # what inference needs to post-process like the best eval
VAL_PREDICTIONS = "val_predictions.csv"  # the best evaluation's logits per validation row
CHECKPOINTS = "checkpoints"  # the latest and best checkpoints (lorahpo.resume); removed at the end
ENVIRONMENT = "environment.json"  # what reproducing the run needs: versions, GPU, model, commit


class Status(StrEnum):
    """How a run or a sweep's trial stands: `result.json`'s and `trials.csv`'s `status`. A
    str, so it is written, read and compared as the plain word."""

    COMPLETED = "completed"  # trained to its last evaluation: an adapter to ship
    STOPPED = "stopped"  # ended by the scheduler before its last evaluation
    PAUSED = "paused"  # waiting at a rung (promotion-type ASHA) when the sweep ended
    FAILED = "failed"  # its own code raised; error.txt holds the traceback
    INTERRUPTED = "interrupted"  # the sweep was killed while it ran; a rerun resumes it
    RUNNING = "running"  # trials.csv only, while the sweep is still going


@dataclass
class EvalRecord:
    """One evaluation of the validation fold (one line of `metrics.jsonl`).

    `objective` is the run's objective (`objective=`: log loss minimised, accuracy
    maximised); `metrics` holds every other validation metric of that evaluation by its name
    (`eval_log_loss_temperature`, `eval_temperature`, `eval_runtime`, ...).
    """

    eval: int  # 1, 2, ...
    step: int  # optimizer steps done (gradient accumulation counted once)
    epoch: float  # epochs done, fractional (1.25: a quarter into the second)
    objective: float | None
    eval_log_loss: float | None  # nats per row, before post-processing
    eval_accuracy: float | None  # share of rows right, 0..1
    train_loss: float | None = None  # the last training loss logged before it (nats per row)
    planned_evals: int | None = None  # fewer evaluations done: stopped early
    subset: bool = False  # on train.eval_subset's share of the fold, not the whole of it
    time: float = 0.0  # wall clock at the evaluation (Unix seconds), to line trials up
    train_started_at: float = 0.0  # wall clock (Unix seconds) of the run's first step
    metrics: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(out.pop("metrics"))  # flat on disk: one key per metric
        return out

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> EvalRecord:
        names = {f.name for f in fields(cls)} - {"metrics"}
        known = {k: v for k, v in obj.items() if k in names}
        return cls(**known, metrics={k: v for k, v in obj.items() if k not in names})

    def get(self, key: str, default: Any = None) -> Any:
        """A field or a metric by its name."""
        if key in self.metrics:
            return self.metrics[key]
        return getattr(self, key, default)


def deciding(records: list[EvalRecord]) -> list[EvalRecord]:
    """The evaluations a run's best is chosen from: those of the whole validation fold, or,
    before the first of them, the subset ones (train.eval_subset)."""
    whole = [r for r in records if not r.subset]
    return whole or list(records)


@dataclass
class RunResult:
    """How a run ended (`result.json`). Completed runs fill every field they can; a failed run
    has `error`; an early-stopped trial has the best objective of the evaluations it did."""

    status: Status
    objective: float | None = None  # the best evaluation's, in the objective's own unit
    objective_name: str | None = None  # `objective=` of the config: log_loss, accuracy, ...
    error: str | None = None  # a failed run's last line of error.txt
    note: str | None = None  # how a result not of a whole run was made
    validated: bool | None = None  # False: trained on every row, no validation fold
    evals_done: int | None = None  # evaluations of the validation fold this run did
    planned_evals: int | None = None  # evaluations it would have done to the end
    best_step: int | None = None  # optimizer steps at the best evaluation
    best_epoch: float | None = None  # epochs (fractional) at the best evaluation
    best_log_loss: float | None = None  # nats per row, without post-processing
    best_accuracy: float | None = None  # share of rows right, 0..1
    best_metrics: dict[str, Any] = field(default_factory=dict)  # post-processed variants
    temperature: float | None = None  # the best evaluation's fitted temperature (>0, 1: none)
    train_rows: int | None = None  # rows of the training split
    train_steps: int | None = None  # optimizer steps, the whole run
    train_time_s: float | None = None  # seconds training this process, evaluations left out
    eval_time_s: float | None = None  # seconds evaluating this process
    startup_s: float | None = None  # seconds from the job's start to the first training step
    resumed_from_step: int | None = None  # continued from the checkpoint of an interrupted run
    base_reused: bool | None = None  # the base model was kept from an earlier trial
    peak_gpu_memory_mb: float | None = None  # torch's peak allocation during the run (GPU)
    train_tokens: int | None = None  # tokens of every training row x epochs (padding out)
    train_tokens_per_s: float | None = None  # of this process's part of the run
    trainable_params: int | None = None  # parameters LoRA (and the head) train
    total_params: int | None = None  # every parameter of the model as loaded
    model_path: str | None = None  # the base model's folder
    wall_time_s: float | None = None  # seconds from the job's start to result.json

    def to_json(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if v is not None}
        out.update(out.pop("best_metrics"))  # flat on disk: best_log_loss_assignment, ...
        return out

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> RunResult:
        names = {f.name for f in fields(cls)} - {"best_metrics"}
        known = {k: v for k, v in obj.items() if k in names}
        known["status"] = Status(known["status"])
        return cls(**known, best_metrics={k: v for k, v in obj.items() if k not in names})


@dataclass(frozen=True)
class RunDir:
    """Paths inside one run directory, and its readers and writers."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    result_path = property(lambda self: self.path / RESULT)
    metrics_path = property(lambda self: self.path / METRICS)
    error_path = property(lambda self: self.path / ERROR)
    adapter_path = property(lambda self: self.path / ADAPTER)
    calibration_path = property(lambda self: self.path / CALIBRATION)
    predictions_path = property(lambda self: self.path / VAL_PREDICTIONS)
    checkpoints_path = property(lambda self: self.path / CHECKPOINTS)
    environment_path = property(lambda self: self.path / ENVIRONMENT)

    def read_result(self) -> RunResult | None:
        """The run's result, or None if it has none yet (or an unreadable one)."""
        obj = read_json(self.result_path)
        try:
            result = RunResult.from_json(obj) if obj else None
        except (KeyError, ValueError, TypeError):
            result = None  # no status, or a word Status does not know
        if result is None and self.result_path.exists():
            log.warning(
                "%s is unreadable (cut short?): the run counts as unfinished", self.result_path
            )
        return result

    def write_result(self, result: RunResult) -> None:
        write_json(self.result_path, result.to_json())

    def read_metrics(self) -> list[EvalRecord]:
        return [EvalRecord.from_json(o) for o in read_jsonl(self.metrics_path)]

    def write_metrics(self, records: list[EvalRecord]) -> None:
        """`metrics.jsonl` holding exactly `records` (atomically: a resumed run cuts it back
        to the evaluations of its checkpoint)."""
        tmp = self.metrics_path.with_name(f".{METRICS}.{os.getpid()}.tmp")
        tmp.write_text("".join(json.dumps(r.to_json()) + "\n" for r in records))
        tmp.replace(self.metrics_path)

    def append_metrics(self, record: EvalRecord) -> None:
        with self.metrics_path.open("a") as f:
            f.write(json.dumps(record.to_json()) + "\n")

    def read_calibration(self) -> dict[str, Any]:
        return read_json(self.calibration_path) or {}

    def write_calibration(self, calibration: dict[str, Any]) -> None:
        write_json(self.calibration_path, calibration)

    def has_adapter(self) -> bool:
        return (self.adapter_path / "adapter_config.json").exists()


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from `path`; None if the file is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def write_json(path: Path, obj: Any) -> None:
    """Write atomically (temporary file + rename): readers never see half a file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    tmp.replace(path)


def write_csv(path: Path, frame: Any) -> None:
    """A pandas table written atomically, as `write_json` (trials.csv is read while a sweep
    runs, and on resume)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    frame.to_csv(tmp, index=False)
    tmp.replace(path)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """One JSON object per non-empty line; a missing file is an empty list. A line that does
    not parse (a process killed while appending it) is skipped with a warning: losing one
    record must not make the rest unreadable."""
    path = Path(path)
    if not path.exists():
        return []
    out = []
    for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except ValueError:
            log.warning("%s line %d is not valid JSON (cut short?): skipped", path, n)
    return out
