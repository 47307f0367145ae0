"""Asynchronous successive halving (ASHA): at each rung a trial goes on only if it is in the
best 1/reduction_factor of the trials that got there; `scheduler.type` says what happens to
the others (stopping: Ray Tune's ASHAScheduler stops them; promotion: they pause, their
checkpoint kept, and resume if promoted later, lorahpo.sweep.promotion)."""

from __future__ import annotations

import math

from omegaconf import DictConfig

from lorahpo.errors import UserError
from lorahpo.sweep.schedulers._base import SchedulerSpec, budget, grace, ray_common

TYPES = ("stopping", "promotion")


def rungs(sched: DictConfig, max_evals: int) -> list[int]:
    """ASHA's rungs in evaluations, as Ray Tune's ASHAScheduler computes them."""
    max_t = int(sched.max_t or max_evals) + 1  # as `build` passes it to Ray
    grace_period, factor = int(sched.grace_period), float(sched.reduction_factor)
    count = int(math.log(max_t / grace_period) / math.log(factor) + 1)
    return [int(grace_period * factor**k) for k in range(count)]


def build(sched, max_evals, objective, sweep_dir):
    from ray.tune.schedulers import ASHAScheduler

    max_t, grace_period = budget(sched, max_evals)
    if sched.type not in TYPES:
        raise UserError(
            f"scheduler.type={sched.type!r} is not an ASHA type: use scheduler.type=stopping (a "
            "trial below the cut at a rung stops for good) or scheduler.type=promotion (it "
            "pauses there and resumes from its checkpoint if it earns promotion)."
        )
    if sched.type == "promotion":
        from lorahpo.sweep.promotion import PromotionASHA

        factor = float(sched.reduction_factor)
        return PromotionASHA(sweep_dir, rungs(sched, max_evals), factor, objective)
    return ASHAScheduler(
        max_t=max_t,
        grace_period=grace_period,
        reduction_factor=sched.reduction_factor,
        **ray_common(objective),
    )


SCHEDULER = SchedulerSpec(
    name="asha",
    summary="asynchronous successive halving; pauses (promotion) or stops trials at rungs",
    build=build,
    first_milestone=grace,
    rungs=rungs,
)
