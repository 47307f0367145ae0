"""Hyperopt's TPE (the reference scripts' algorithm), through Ray Tune's HyperOptSearch,
able to be told earlier results (warm start)."""

from __future__ import annotations

from typing import Any

from lorahpo.sweep import reported
from lorahpo.sweep.searchers._base import BuildContext, SearcherSpec, tune_domains


def build(ctx: BuildContext) -> tuple[Any, dict[str, Any]]:
    from lorahpo.sweep.searchers._hyperopt import WarmHyperOptSearch

    # the space goes to the searcher itself, so that it can be warm-started
    searcher = WarmHyperOptSearch(
        space=WarmHyperOptSearch.convert_search_space(tune_domains(ctx.space)),
        metric=reported.METRIC,
        mode=ctx.objective.mode,
        n_initial_points=ctx.n_initial,
        random_state_seed=ctx.seed,
        points_to_evaluate=ctx.points,
    )
    return searcher, {}


SEARCHER = SearcherSpec(
    name="hyperopt",
    summary="Hyperopt TPE, the reference scripts' algorithm",
    build=build,
    learns_from_history=True,
    takes_start_points=True,
    told_pruned=False,  # a stopped trial is told with its last value
    parallel_aware=False,
)
