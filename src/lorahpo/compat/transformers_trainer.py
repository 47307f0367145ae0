"""The Hugging Face Trainer's sampler hooks (`_get_train_sampler`, `_get_eval_sampler`): the
Trainer takes no sampler argument, and these are the methods its data loaders call for one."""

from __future__ import annotations

import inspect
from typing import Any

from transformers import Trainer

from lorahpo.compat import broken, check_tested

PACKAGE = "transformers"
TESTED = ">=5.23,<6"
check_tested(PACKAGE, TESTED)


class SamplerHooks(Trainer):
    """A Trainer whose training and evaluation samplers come from `train_sampler` and
    `eval_sampler` (None: the Trainer's own choice)."""

    def train_sampler(self, dataset: Any):
        return None

    def eval_sampler(self, dataset: Any):
        return None

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        sampler = self.train_sampler(dataset)
        return sampler if sampler is not None else super()._get_train_sampler(train_dataset)

    def _get_eval_sampler(self, eval_dataset):
        sampler = self.eval_sampler(eval_dataset)
        return sampler if sampler is not None else super()._get_eval_sampler(eval_dataset)


def contract() -> None:
    """The hooks exist with the parameters overridden here, and the data loaders call them."""
    for name, params in (
        ("_get_train_sampler", ["self", "train_dataset"]),
        ("_get_eval_sampler", ["self", "eval_dataset"]),
    ):
        method = getattr(Trainer, name, None)
        if method is None or list(inspect.signature(method).parameters) != params:
            raise broken(PACKAGE, f"Trainer.{name} is gone or takes other parameters")
    for loader, hook in (
        ("get_train_dataloader", "_get_train_sampler"),
        ("get_eval_dataloader", "_get_eval_sampler"),
    ):
        if hook not in inspect.getsource(getattr(Trainer, loader)):
            raise broken(PACKAGE, f"Trainer.{loader} no longer asks {hook} for its sampler")
