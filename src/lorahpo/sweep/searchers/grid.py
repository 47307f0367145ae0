"""Grid search: every combination of the space's choice/range entries, once."""

from __future__ import annotations

from typing import Any

from lorahpo.sweep.searchers._base import BuildContext, SearcherSpec, tune_domains


def build(ctx: BuildContext) -> tuple[Any, dict[str, Any]]:
    from ray.tune.search import BasicVariantGenerator

    # the sweep's gate (budget_gate.TrialGate) holds it to the slots
    generator = BasicVariantGenerator(random_state=ctx.seed)
    return generator, tune_domains(ctx.space, grid=True)


SEARCHER = SearcherSpec(
    name="grid",
    summary="every combination of choice/range entries once",
    build=build,
    learns_from_history=False,
    takes_start_points=False,  # every combination once: no room for start points
    told_pruned=False,
    parallel_aware=True,
    exhaustive=True,
)
