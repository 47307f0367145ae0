"""The search algorithms, as a registry: one module per searcher, each declaring one
`SEARCHER` (what it is called, what it can do, how to build it).

`search.algorithm` names one. The sweep's factory, warm start, resume and the README's
searcher table read these declarations; nothing else lists searchers. A new searcher is one
module here and one `conf/search/<name>.yaml`.
"""

from __future__ import annotations

import functools
from typing import Any

from lorahpo.errors import UserError
from lorahpo.sweep.declared import declared
from lorahpo.sweep.searchers._base import BuildContext, SearcherSpec, tune_domains

__all__ = [
    "BuildContext",
    "SearcherSpec",
    "build",
    "get",
    "markdown_table",
    "registry",
    "tune_domains",
]


@functools.cache
def registry() -> dict[str, SearcherSpec]:
    """Every searcher declared in this package, by name (modules load nothing heavy)."""
    return declared(__name__, __path__, "SEARCHER", SearcherSpec)


def get(name: str) -> SearcherSpec:
    """The searcher called `name`, or a message listing the known ones."""
    spec = registry().get(name)
    if spec is None:
        raise UserError(
            f"search.algorithm={name!r} is not known; use "
            + ", ".join(f"search={n}" for n in registry())
            + "."
        )
    return spec


def build(ctx: BuildContext) -> tuple[Any, dict[str, Any]]:
    """(search algorithm, Ray Tune param_space) for `ctx.search.algorithm`. Start points go
    only to a searcher that takes them."""
    spec = get(ctx.search.algorithm)
    spec.check_installed()
    if not spec.takes_start_points:
        ctx.start_points = []
    return spec.build(ctx)


def markdown_table() -> str:
    """The README's searcher table, from the declarations."""
    yes = {True: "yes", False: "-"}
    lines = [
        "| `search=` | what it is | learns from earlier trials | start points | "
        "stopped trials told as such | aware of parallel trials | needs |",
        "|---|---|---|---|---|---|---|",
    ]
    for spec in registry().values():
        lines.append(
            f"| `{spec.name}` | {spec.summary} | {yes[spec.learns_from_history]} | "
            f"{yes[spec.takes_start_points]} | {yes[spec.told_pruned]} | "
            f"{yes[spec.parallel_aware]} | {f'`lorahpo[{spec.extra}]`' if spec.extra else '-'} |"
        )
    return "\n".join(lines)
