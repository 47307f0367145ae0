"""A run's plan: how many steps and evaluations its `train` config means, and the checks of
that config. Light on purpose (no torch, no transformers): the sweep driver computes the
schedulers' evaluation budget with it before any trial starts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from omegaconf import DictConfig, ListConfig

from lorahpo.errors import UserError

BATCHINGS = ("random", "length", "pooled")  # train.batching (lorahpo.batching)


@dataclass(frozen=True)
class TrainingPlan:
    """Steps and evaluations a run will do, so budgets can be stated in evaluations."""

    steps_per_epoch: int  # optimizer steps (rows / (batch x grad_accum), rounded up)
    total_steps: int  # optimizer steps of the whole run
    eval_steps: int  # optimizer steps between evaluations (train.eval_every in steps)
    planned_evals: int  # evaluation slots: one every eval_steps, the last at the end
    eval_at: frozenset[int] | None = None  # the slots that run (the last always); None: all

    def slot(self, step: int) -> int:
        """The evaluation slot (1, 2, ...) a step closes."""
        return math.ceil(step / self.eval_steps)

    def evaluates(self, step: int, last_step: int) -> bool:
        """Whether the evaluation due at `step` runs (the one at `last_step` always does)."""
        return self.eval_at is None or step >= last_step or self.slot(step) in self.eval_at


def check_train_config(train_cfg: DictConfig) -> None:
    """Checks that need no data or model: fail before anything is loaded."""
    if train_cfg.batching not in BATCHINGS:
        raise UserError(
            f"train.batching={train_cfg.batching!r} is not known; use one of "
            f"{', '.join(BATCHINGS)} (see README: batching)."
        )
    if train_cfg.batching == "pooled" and int(train_cfg.pool_batches) < 1:
        raise UserError(f"train.pool_batches={train_cfg.pool_batches}: must be >= 1.")
    at = train_cfg.eval_at
    if at is not None and not (
        isinstance(at, list | ListConfig) and all(isinstance(x, int) and x >= 1 for x in at)
    ):
        raise UserError(
            f"train.eval_at={at!r}: give a list of evaluation numbers, e.g. "
            "'train.eval_at=[2,4,8]' (the last evaluation always runs), or null for every one."
        )
    check_eval_subset(train_cfg.eval_subset)
    if train_cfg.eval_every <= 0:
        raise UserError(
            f"train.eval_every={train_cfg.eval_every}: must be > 0 (in epochs, "
            "e.g. 0.25 for four evaluations per epoch)."
        )


def check_eval_subset(share, key: str = "train.eval_subset") -> None:
    """A share of the validation questions in (0, 1), or None."""
    if share is not None and not (
        isinstance(share, float | int) and not isinstance(share, bool) and 0 < share < 1
    ):
        raise UserError(
            f"{key}={share!r}: give the share of the validation questions that evaluations "
            "before the last use, between 0 and 1 (e.g. 0.5), or null for the whole fold "
            "every time."
        )


def training_plan(n_train: int, train_cfg: DictConfig, validate: bool = True) -> TrainingPlan:
    check_train_config(train_cfg)
    per_step = train_cfg.batch_size * train_cfg.grad_accum
    steps_per_epoch = math.ceil(n_train / per_step)
    total = math.ceil(steps_per_epoch * train_cfg.epochs)
    eval_steps = max(1, round(steps_per_epoch * train_cfg.eval_every))
    planned = math.ceil(total / eval_steps) if validate else 0
    at = train_cfg.eval_at
    return TrainingPlan(
        steps_per_epoch, total, eval_steps, planned, None if at is None else frozenset(at)
    )
