"""Trial schedulers (early stopping), all Ray Tune's, as a registry shaped like the
searchers': one module per scheduler, each declaring one `SCHEDULER` (its name, what it is,
how it is built, where it first judges a trial, its rungs). `scheduler.name` names one; a new
scheduler is one module here and one `conf/scheduler/<name>.yaml`.

Budgets are in evaluations: one evaluation of a trial is one report (lorahpo.sweep.reported),
and the budget is checked against the evaluations the longest trial plans.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from lorahpo.errors import UserError
from lorahpo.objective import Objective
from lorahpo.sweep.declared import declared
from lorahpo.sweep.schedulers._base import SchedulerSpec

__all__ = ["SchedulerSpec", "eval_milestones", "first_milestone", "get", "make_scheduler"]


@functools.cache
def registry() -> dict[str, SchedulerSpec]:
    """Every scheduler declared in this package, by name (modules load nothing heavy)."""
    return declared(__name__, __path__, "SCHEDULER", SchedulerSpec)


def get(name: str) -> SchedulerSpec:
    """The scheduler called `name`, or a message listing the known ones."""
    spec = registry().get(name)
    if spec is None:
        known = ", ".join(registry())
        raise UserError(f"scheduler.name={name!r} is not known; use scheduler={known}.")
    return spec


def first_milestone(sched: DictConfig, max_evals: int) -> int:
    """The evaluations a trial does before the scheduler first judges it (every planned one
    under FIFO): a time budget starts no trial that could not get that far."""
    return get(sched.name).first_milestone(sched, max_evals)


def eval_milestones(sched: DictConfig, max_evals: int) -> list[int] | None:
    """The evaluations at which the scheduler decides (its rungs), when it has rungs and
    `scheduler.evaluate=milestones`: trials then evaluate only there and at their end
    (train.eval_at), for the same decisions at a fraction of the evaluation time. None:
    every evaluation runs."""
    spec = get(sched.name)
    if spec.rungs is None or sched.evaluate != "milestones":
        return None
    return spec.rungs(sched, max_evals)


def make_scheduler(sched: DictConfig, max_evals: int, objective: Objective, sweep_dir: Path) -> Any:
    """The trial scheduler; its budget (`max_t`) is checked against the planned evaluations."""
    return get(sched.name).build(sched, max_evals, objective, sweep_dir)
