"""The Hugging Face Trainer's hooks this project needs and the Trainer has no argument for:
the samplers (`_get_train_sampler`, `_get_eval_sampler`: what its data loaders call for one)
and whether an evaluation may become the best checkpoint (`_determine_best_metric`: an
evaluation of a subset of the fold must not)."""

from __future__ import annotations

import inspect
from typing import Any

from transformers import Trainer

from lorahpo.compat import broken, check_tested

PACKAGE = "transformers"
TESTED = ">=5.23,<6"
check_tested(PACKAGE, TESTED)


class TrainerHooks(Trainer):
    """A Trainer whose training and evaluation samplers come from `train_sampler` and
    `eval_sampler` (None: the Trainer's own choice), and whose best checkpoint is chosen only
    among the evaluations `counts_for_best` accepts."""

    def counts_for_best(self) -> bool:
        """Whether the evaluation just done may become the best checkpoint."""
        return True

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

    def _determine_best_metric(self, metrics, trial):
        return self.counts_for_best() and super()._determine_best_metric(metrics, trial)


def contract() -> None:
    """The hooks exist with the parameters overridden here, the data loaders call them, and
    the evaluation step asks the best-metric hook (which alone updates the best checkpoint)."""
    for name, params in (
        ("_get_train_sampler", ["self", "train_dataset"]),
        ("_get_eval_sampler", ["self", "eval_dataset"]),
        ("_determine_best_metric", ["self", "metrics", "trial"]),
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
    if "_determine_best_metric" not in inspect.getsource(Trainer._maybe_log_save_evaluate):
        raise broken(PACKAGE, "the Trainer's evaluation step no longer asks _determine_best_metric")
