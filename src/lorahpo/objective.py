"""What a run (and a sweep) optimises, defined once: a validation metric and its direction.

`objective=` names it on the command line: a metric (`log_loss`, `accuracy`), optionally
post-processed (`log_loss_assignment`, `accuracy_temperature_assignment`), or only the
post-processing method, which means log loss after it (`none`, `temperature`, `assignment`,
`temperature+assignment`). Log loss is minimised, accuracy maximised. The trainer, the
trial, the searchers, the study and the sweep table all take this one spec.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from lorahpo import scoring
from lorahpo.errors import UserError

T = TypeVar("T")
DIRECTIONS = {"log_loss": "min", "accuracy": "max"}  # base metric -> mode


@dataclass(frozen=True)
class Objective:
    """A base metric (`log_loss`, `accuracy`) after a post-processing method."""

    base: str = "log_loss"
    method: str = "none"

    @property
    def metric(self) -> str:
        """Its name in the run's records: `log_loss_assignment`."""
        return scoring.metric_name(self.base, self.method)

    @property
    def eval_key(self) -> str:
        """Its key in the Trainer's evaluation metrics: `eval_log_loss_assignment`."""
        return "eval_" + self.metric

    @property
    def mode(self) -> str:
        """`min` or `max`, as Ray Tune spells it."""
        return DIRECTIONS[self.base]

    @property
    def direction(self) -> str:
        """`minimize` or `maximize`, as Optuna spells it."""
        return "minimize" if self.mode == "min" else "maximize"

    @property
    def maximise(self) -> bool:
        return self.mode == "max"

    def better(self, a: float, b: float) -> bool:
        """Whether `a` is at least as good as `b`."""
        return a >= b if self.maximise else a <= b

    def best(self, values: Iterable[float | None]) -> float | None:
        """The best finite value, or None."""
        finite = [v for v in values if v is not None and math.isfinite(v)]
        if not finite:
            return None
        return max(finite) if self.maximise else min(finite)

    def best_first(self, value: float) -> float:
        """A sort key that puts the best value first (ascending)."""
        return -value if self.maximise else value

    def best_record(self, records: Sequence[T]) -> T:
        """The record (anything with an `objective`) with the best objective; the first of
        equals."""
        return min(records, key=lambda r: self.best_first(r.objective))


DEFAULT = Objective()  # validation log loss, minimised


def parse_objective(value: str, key: str = "objective") -> Objective:
    """The spec for a config value; a clear error names the accepted values otherwise."""
    text = str(value)
    if text in scoring.METHODS:  # a post-processing method alone: log loss after it
        return Objective("log_loss", text)
    for base in DIRECTIONS:
        for method in scoring.METHODS:
            if text == scoring.metric_name(base, method):
                return Objective(base, method)
    names = [scoring.metric_name(b, m) for b in DIRECTIONS for m in scoring.METHODS]
    raise UserError(
        f"{key}={value!r} is not known; use a metric ({', '.join(names)}) or a post-processing "
        f"method for log loss ({', '.join(scoring.METHODS)})."
    )
