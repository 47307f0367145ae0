"""Optuna's Tree-structured Parzen Estimator."""

from __future__ import annotations

from typing import Any

from lorahpo.sweep.searchers._base import BuildContext, SearcherSpec


def build(ctx: BuildContext) -> tuple[Any, dict[str, Any]]:
    import optuna

    from lorahpo.sweep.searchers._optuna import optuna_searcher

    # constant_liar: trials still running count as bad results, so free slots are not all
    # sent to the same promising point; multivariate: models the parameters jointly
    sampler = optuna.samplers.TPESampler(
        seed=ctx.seed,
        n_startup_trials=ctx.n_initial,
        constant_liar=ctx.search.constant_liar,
        multivariate=ctx.search.multivariate,
    )
    return optuna_searcher(ctx, sampler)


SEARCHER = SearcherSpec(
    name="tpe",
    summary="Optuna TPE, multivariate, constant liar",
    build=build,
    learns_from_history=True,
    takes_start_points=True,
    told_pruned=True,
    parallel_aware=True,
)
