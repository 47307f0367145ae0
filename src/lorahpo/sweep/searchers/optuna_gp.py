"""Optuna's Gaussian-process sampler (GPSampler): GP-BO with log expected improvement, in
the core install (torch and scipy, which the project has anyway)."""

from __future__ import annotations

from typing import Any

from lorahpo.sweep.searchers._base import BuildContext, SearcherSpec


def build(ctx: BuildContext) -> tuple[Any, dict[str, Any]]:
    import optuna

    from lorahpo.sweep.searchers._optuna import optuna_searcher

    sampler = optuna.samplers.GPSampler(
        seed=ctx.seed, n_startup_trials=ctx.n_initial, warn_independent_sampling=False
    )
    return optuna_searcher(ctx, sampler)


SEARCHER = SearcherSpec(
    name="optuna_gp",
    summary="Optuna GPSampler: Gaussian process, log EI; no extra package",
    build=build,
    learns_from_history=True,
    takes_start_points=True,
    told_pruned=True,  # pruned trials are told as such; the GP fits completed ones only
    parallel_aware=False,  # running trials are not modelled
)
