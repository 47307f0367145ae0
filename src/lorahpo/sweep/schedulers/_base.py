"""What a scheduler declares, and the budget checks every halving scheduler shares."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from lorahpo.errors import UserError
from lorahpo.objective import Objective
from lorahpo.sweep import reported
from lorahpo.sweep.console import say


@dataclass(frozen=True)
class SchedulerSpec:
    """One scheduler: its name (`scheduler=<name>`), a line for the docs, and how it works, in
    evaluations (one per train.eval_every epochs)."""

    name: str  # scheduler=<name>: its module and conf/scheduler/<name>.yaml
    summary: str  # one line for the docs
    # (scheduler config, evaluations the longest trial plans, objective, sweep dir) -> the
    # Ray Tune scheduler
    build: Callable[[DictConfig, int, Objective, Path], Any]
    # (scheduler config, planned evaluations) -> evaluations before it first judges a trial
    first_milestone: Callable[[DictConfig, int], int]
    # (scheduler config, planned evaluations) -> the evaluations at which it decides; None: it
    # decides at every one (trials cannot skip evaluations for it)
    rungs: Callable[[DictConfig, int], list[int]] | None = None


def grace(sched: DictConfig, max_evals: int) -> int:
    """`scheduler.grace_period` evaluations, within the planned ones."""
    return max(1, min(int(sched.grace_period), max_evals))


def budget(sched: DictConfig, max_evals: int) -> tuple[int, int]:
    """(max_t, grace period) in evaluations, checked: `scheduler.max_t` (null: the planned
    evaluations of the longest trial) must not cut a trial short, and the grace period must
    fit in it."""
    max_t = sched.max_t or max_evals
    if max_t < max_evals:
        raise UserError(
            f"scheduler.max_t={max_t} evaluations is below the {max_evals} "
            "evaluations the longest trial plans (train.epochs / train.eval_every): "
            "trials would be cut short. Raise scheduler.max_t or leave it null."
        )
    grace_period = int(sched.grace_period)
    if not 1 <= grace_period <= max_t:
        raise UserError(
            f"scheduler.grace_period={grace_period} must be between 1 and the budget of "
            f"{max_t} evaluations (train.epochs / train.eval_every)."
        )
    if grace_period == max_t:
        say(
            f"note: scheduler.grace_period={grace_period} equals the budget of {max_t} "
            "evaluations, so no trial can be stopped early."
        )
    # Ray's halving schedulers stop a trial when it reaches max_t; one more lets a trial that
    # survives every rung finish by itself, so that it saves its adapter and result.
    return max_t + 1, grace_period


def ray_common(objective: Objective) -> dict[str, Any]:
    """What every Ray Tune scheduler is told: the budget unit, the metric, its direction."""
    return {"time_attr": reported.TIME_ATTR, "metric": reported.METRIC, "mode": objective.mode}
