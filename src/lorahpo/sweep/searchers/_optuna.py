"""Optuna's samplers as Ray Tune searchers, telling Optuna the truth about trials the
scheduler stopped and trials that failed.

Ray's OptunaSearch tells a trial that the scheduler stopped as COMPLETE with its last value:
a loss after a fraction of the planned training, still near uniform, then reads as the final
result of a bad configuration, and TPE models that noise. Here such a trial is told as
PRUNED; its intermediate values (one per evaluation, reported as the trial ran) stay in the
study, and Optuna's samplers treat pruned trials as they document (TPE ranks them by how far
they got; the GP and CMA-ES samplers leave them out).
"""

from __future__ import annotations

import warnings
from typing import Any

from ray.tune.search.optuna import OptunaSearch

from lorahpo.compat import ray_optuna
from lorahpo.sweep import reported
from lorahpo.sweep.searchers._base import BuildContext, TellsFailures, tune_domains


class StopAwareOptunaSearch(TellsFailures, OptunaSearch):
    """OptunaSearch whose stopped trials are PRUNED and failed ones FAIL."""

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        if not error and reported.stopped_early(result):
            ray_optuna.tell_pruned(self, trial_id)
            return
        super().on_trial_complete(trial_id, result, error)

    def study(self):
        """The Optuna study behind the search (for tests and analysis)."""
        return ray_optuna.study(self)


def optuna_searcher(ctx: BuildContext, sampler: Any) -> tuple[Any, dict[str, Any]]:
    """The searcher for an Optuna sampler. The space goes to the searcher itself (not to
    Tune), so that it can be told earlier results before the first trial (warm start)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    searcher = StopAwareOptunaSearch(
        space=StopAwareOptunaSearch.convert_search_space(tune_domains(ctx.space)),
        metric=reported.METRIC,
        mode=ctx.objective.mode,
        sampler=sampler,
        points_to_evaluate=ctx.points,
    )
    return searcher, {}
