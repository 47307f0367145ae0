"""HyperBand: synchronous brackets of successive halving (Ray Tune's HyperBandScheduler)."""

from __future__ import annotations

from lorahpo.sweep.schedulers._base import SchedulerSpec, budget, grace, ray_common


def build(sched, max_evals, objective, sweep_dir):
    from ray.tune.schedulers import HyperBandScheduler

    max_t, _ = budget(sched, max_evals)
    return HyperBandScheduler(
        max_t=max_t, reduction_factor=sched.reduction_factor, **ray_common(objective)
    )


SCHEDULER = SchedulerSpec(
    name="hyperband",
    summary="synchronous brackets of successive halving",
    build=build,
    first_milestone=grace,
)
