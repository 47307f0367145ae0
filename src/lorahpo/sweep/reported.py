"""What a trial reports to Ray Tune, defined once: the keys, and how to read a trial's last
report (stopped early? failed?). Searchers, schedulers, the driver and the trial all use these
names; the objective's direction comes from `lorahpo.objective`.

One report per evaluation; `objective` is the best value so far in the objective's
direction. A trial whose training code fails reports once more, `failed` set (with no new
evaluation), and returns: Ray then sees a finished trial, so its failure policy only ever
retries lost workers and nodes, while searchers are told the trial failed.
"""

from __future__ import annotations

from typing import Any

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
