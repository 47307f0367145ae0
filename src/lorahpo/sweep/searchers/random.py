"""Random search: each trial drawn independently (Ray Tune's BasicVariantGenerator)."""

from __future__ import annotations

from typing import Any

from lorahpo.sweep.searchers._base import BuildContext, SearcherSpec, tune_domains


def build(ctx: BuildContext) -> tuple[Any, dict[str, Any]]:
    from ray.tune.search import BasicVariantGenerator

    # the sweep's gate (budget_gate.TrialGate) holds it to the slots
    generator = BasicVariantGenerator(random_state=ctx.seed, points_to_evaluate=ctx.points)
    return generator, tune_domains(ctx.space)


SEARCHER = SearcherSpec(
    name="random",
    summary="independent random draws; a strong baseline",
    build=build,
    learns_from_history=False,
    takes_start_points=True,
    told_pruned=False,
    parallel_aware=True,  # draws do not depend on each other
)
