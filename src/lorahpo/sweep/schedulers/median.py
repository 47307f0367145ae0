"""Median stopping: a trial whose best so far is worse than the median of the other trials'
running averages at the same evaluation stops (Ray Tune's MedianStoppingRule)."""

from __future__ import annotations

from lorahpo.sweep.schedulers._base import SchedulerSpec, budget, grace, ray_common


def build(sched, max_evals, objective, sweep_dir):
    from ray.tune.schedulers import MedianStoppingRule

    _, grace_period = budget(sched, max_evals)
    return MedianStoppingRule(
        grace_period=grace_period, min_samples_required=sched.min_samples, **ray_common(objective)
    )


SCHEDULER = SchedulerSpec(
    name="median",
    summary="stop below the median of the other trials at the same evaluation",
    build=build,
    first_milestone=grace,
)
