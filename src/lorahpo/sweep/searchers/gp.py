"""OpenBox's Gaussian-process BO (expected improvement) as a searcher; `lorahpo[openbox]`."""

from __future__ import annotations

from typing import Any

from lorahpo.sweep import reported
from lorahpo.sweep.searchers._base import BuildContext, SearcherSpec


def build(ctx: BuildContext) -> tuple[Any, dict[str, Any]]:
    from lorahpo.sweep.searchers._openbox import OpenBoxSearch

    searcher = OpenBoxSearch(
        ctx.space,
        reported.METRIC,
        ctx.objective.mode,
        ctx.seed,
        ctx.n_initial,
        ctx.concurrency,
        ctx.out_dir,
        start_points=ctx.points,
    )
    return searcher, {}


SEARCHER = SearcherSpec(
    name="gp",
    summary="OpenBox GP-EI, asynchronous with several trials at once",
    build=build,
    learns_from_history=True,
    takes_start_points=True,
    told_pruned=True,  # a stopped trial's loss is not fitted
    parallel_aware=True,  # the asynchronous advisor accounts for running trials
    keeps_own_history=True,  # a resumed sweep continues from openbox_history.json
    extra="openbox",
    module="openbox",
)
