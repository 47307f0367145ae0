"""What a trial reports to Ray Tune, defined once: the keys, and how to read a trial's last
report (stopped early? failed?). Searchers, schedulers, the driver and the trial all use these
names; the objective's direction comes from `lorahpo.objective`.

One report per evaluation; `objective` is the best value so far in the objective's
direction (over the whole-fold evaluations once there is one: before it, the rung
evaluations of train.eval_subset's rows). A trial whose training code fails reports once
more, `failed` set (with no new evaluation), and returns: Ray then sees a finished trial, so
its failure policy only ever retries lost workers and nodes, while searchers are told the
trial failed.
"""

from __future__ import annotations

from typing import Any

from lorahpo.objective import Objective

METRIC = "objective"  # best so far of the run's objective
TIME_ATTR = "evals"  # evaluations done: the schedulers' budget unit
PLANNED_ATTR = "planned_evals"  # fewer evaluations done at the end: stopped early
FAILED_ATTR = "failed"  # the trial's own code raised: not a result
TRIAL_ATTR = "trial_num"


def evaluation(record: dict[str, Any], best: float, num: int) -> dict[str, Any]:
    """The report for one evaluation record of `metrics.jsonl`."""
    return {
        METRIC: best,
        TIME_ATTR: record["eval"],
        "eval_log_loss": record["eval_log_loss"],
        "eval_accuracy": record["eval_accuracy"],
        "step": record["step"],
        PLANNED_ATTR: record.get("planned_evals"),
        TRIAL_ATTR: num,
    }


class BestSoFar:
    """A trial's `objective` as it reports it, one evaluation record at a time: the best of
    its whole-fold evaluations, or, before the first, of its subset ones (the rung
    evaluations of train.eval_subset: the scheduler compares trials on those)."""

    def __init__(self, objective: Objective) -> None:
        self.objective = objective
        self.whole: float | None = None
        self.subset: float | None = None

    def add(self, record: dict[str, Any]) -> float | None:
        value = record["objective"]
        if record.get("subset"):
            self.subset = self.objective.best([self.subset, value])
        else:
            self.whole = self.objective.best([self.whole, value])
        return self.whole if self.whole is not None else self.subset


def failure(last: dict[str, Any] | None, num: int) -> dict[str, Any]:
    """The last report of a trial whose code raised: its last evaluation's figures again (so
    that no scheduler sees a new evaluation or a made-up value), marked failed."""
    return {**(last or {TIME_ATTR: 0}), FAILED_ATTR: True, TRIAL_ATTR: num}


def failed(result: dict | None) -> bool:
    """Whether a trial's last report says its code raised."""
    return bool(result and result.get(FAILED_ATTR))


def stopped_early(result: dict | None) -> bool:
    """Whether a trial's last result is from before its last planned evaluation (the
    scheduler stopped it): its objective is not a final result."""
    if not result or failed(result) or result.get(PLANNED_ATTR) is None:
        return False
    return result.get(TIME_ATTR, 0) < result[PLANNED_ATTR]
