"""No early stopping: every trial runs all its evaluations."""

from __future__ import annotations

from lorahpo.sweep.schedulers._base import SchedulerSpec


def build(sched, max_evals, objective, sweep_dir):
    from ray.tune.schedulers import FIFOScheduler

    return FIFOScheduler()


SCHEDULER = SchedulerSpec(
    name="fifo",
    summary="no early stopping",
    build=build,
    first_milestone=lambda sched, max_evals: max_evals,
)
