"""Trial schedulers (early stopping), all Ray Tune's: `scheduler.name` picks one.

Budgets are in evaluations: one evaluation of a trial is one report (lorahpo.sweep.reported),
and the budget is checked against the evaluations the longest trial plans.
"""

from __future__ import annotations

import math
from pathlib import Path

from omegaconf import DictConfig

from lorahpo.errors import UserError
from lorahpo.objective import Objective
from lorahpo.sweep import reported


def first_milestone(sched: DictConfig, max_evals: int) -> int:
    """The evaluations a trial does before the scheduler first judges it (every planned one
    under FIFO): a time budget starts no trial that could not get that far."""
    if sched.name == "fifo":
        return max_evals
    return max(1, min(sched.grace_period, max_evals))


def eval_milestones(sched: DictConfig, max_evals: int) -> list[int] | None:
    """The evaluations at which ASHA decides (its rungs, as Ray Tune's ASHAScheduler computes
    them), when `scheduler.evaluate=milestones`: trials then evaluate only there and at their
    end (train.eval_at), for the same decisions at a fraction of the evaluation time. None:
    every evaluation runs."""
    if sched.name != "asha" or sched.evaluate != "milestones":
        return None
    return asha_rungs(sched, max_evals)


def asha_rungs(sched: DictConfig, max_evals: int) -> list[int]:
    """ASHA's rungs in evaluations, as Ray Tune's ASHAScheduler computes them."""
    max_t = int(sched.max_t or max_evals) + 1  # as make_scheduler passes it to Ray
    grace, factor = int(sched.grace_period), float(sched.reduction_factor)
    rungs = int(math.log(max_t / grace) / math.log(factor) + 1)
    return [int(grace * factor**k) for k in range(rungs)]


def make_scheduler(sched: DictConfig, max_evals: int, objective: Objective, sweep_dir: Path):
    """The trial scheduler; its budget (`max_t`) is checked against the planned evaluations."""
    from ray.tune.schedulers import (
        ASHAScheduler,
        FIFOScheduler,
        HyperBandScheduler,
        MedianStoppingRule,
    )

    name = sched.name
    if name == "fifo":
        return FIFOScheduler()
    max_t = sched.max_t or max_evals
    if max_t < max_evals:
        raise UserError(
            f"scheduler.max_t={max_t} evaluations is below the {max_evals} "
            "evaluations the longest trial plans (train.epochs / train.eval_every): "
            "trials would be cut short. Raise scheduler.max_t or leave it null."
        )
    grace = sched.grace_period
    if not 1 <= grace <= max_t:
        raise UserError(
            f"scheduler.grace_period={grace} must be between 1 and the budget of "
            f"{max_t} evaluations (train.epochs / train.eval_every)."
        )
    if grace == max_t:
        print(
            f"[sweep] note: scheduler.grace_period={grace} equals the budget of {max_t} "
            "evaluations, so no trial can be stopped early.",
            flush=True,
        )
    common = {"time_attr": reported.TIME_ATTR, "metric": reported.METRIC, "mode": objective.mode}
    # Ray's halving schedulers stop a trial when it reaches max_t; one more lets a trial that
    # survives every rung finish by itself, so that it saves its adapter and result.
    max_t += 1
    if name == "asha" and _asha_type(sched) == "promotion":
        from lorahpo.sweep.promotion import PromotionASHA

        return PromotionASHA(
            sweep_dir, asha_rungs(sched, max_evals), float(sched.reduction_factor), objective
        )
    if name == "asha":
        return ASHAScheduler(
            max_t=max_t, grace_period=grace, reduction_factor=sched.reduction_factor, **common
        )
    if name == "hyperband":
        return HyperBandScheduler(max_t=max_t, reduction_factor=sched.reduction_factor, **common)
    if name == "median":
        return MedianStoppingRule(
            grace_period=grace, min_samples_required=sched.min_samples, **common
        )
    raise UserError(
        f"scheduler.name={name!r} is not known; use scheduler=fifo, asha, hyperband or median."
    )


def _asha_type(sched: DictConfig) -> str:
    kind = sched.type
    if kind not in ("stopping", "promotion"):
        raise UserError(
            f"scheduler.type={kind!r} is not an ASHA type: use scheduler.type=stopping (a trial "
            "below the cut at a rung stops for good) or scheduler.type=promotion (it pauses "
            "there and resumes from its checkpoint if it earns promotion)."
        )
    return kind
