"""Optuna's CMA-ES on the numeric parameters (categorical ones sampled independently)."""

from __future__ import annotations

from typing import Any

from lorahpo.sweep.searchers._base import BuildContext, SearcherSpec


def build(ctx: BuildContext) -> tuple[Any, dict[str, Any]]:
    import optuna

    from lorahpo.sweep.searchers._optuna import optuna_searcher

    sampler = optuna.samplers.CmaEsSampler(
        seed=ctx.seed, n_startup_trials=ctx.n_initial, warn_independent_sampling=False
    )
    return optuna_searcher(ctx, sampler)


SEARCHER = SearcherSpec(
    name="cmaes",
    summary="Optuna CMA-ES (numeric parameters)",
    build=build,
    learns_from_history=True,
    takes_start_points=True,
    told_pruned=True,
    parallel_aware=False,
)
