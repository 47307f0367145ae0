"""Warm start: what earlier sweeps learned, told to the searcher before it proposes.

`search.warm_start=<sweep_dir>[,<sweep_dir>...]` reads each sweep's `trials.csv`; its
completed trials whose parameters all lie in the current space are given to the searcher as
evaluated points (`add_evaluated_point`), if it declares that it learns from earlier trials
(lorahpo.sweep.searchers). The rest are skipped and counted. A resumed sweep that is asked for
more trials warm-starts from its own table the same way, unless its searcher restores its own
history.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from lorahpo.errors import UserError
from lorahpo.rundir import Status
from lorahpo.sweep.searchers import SearcherSpec
from lorahpo.sweep.space import Param, plain
from lorahpo.sweep.table import TRIALS_FILE


def sweep_dirs(value: Any) -> list[Path]:
    """`search.warm_start` as folders: a comma-separated string or a list."""
    if not value:
        return []
    items = value.split(",") if isinstance(value, str) else list(value)
    return [Path(str(x).strip()).expanduser() for x in items if str(x).strip()]


def evaluated_points(
    dirs: list[Path], space: dict[str, Param]
) -> tuple[list[tuple[dict[str, Any], float]], int]:
    """(parameters, objective) of the completed trials of `dirs` that fit `space`, and how
    many completed trials were skipped because they do not."""
    points, skipped = [], 0
    for d in dirs:
        path = d / TRIALS_FILE
        if not path.exists():
            raise UserError(
                f"search.warm_start={d}: no {TRIALS_FILE} there. Point it at the folder of an "
                "earlier sweep (its hydra.sweep.dir)."
            )
        trials = pd.read_csv(path)
        done = trials[(trials["status"] == Status.COMPLETED) & trials["objective"].notna()]
        for row in done.to_dict("records"):
            params = {k: p.member(plain(row.get(k))) for k, p in space.items()}
            if any(v is None for v in params.values()) or not math.isfinite(row["objective"]):
                skipped += 1
                continue
            points.append((params, float(row["objective"])))
    return points, skipped


def warm_start(
    searcher: Any, spec: SearcherSpec, points: list[tuple[dict[str, Any], float]]
) -> int:
    """Tell `searcher` the evaluated points; returns how many it took."""
    if not spec.learns_from_history or not points:
        return 0
    for params, value in points:
        searcher.add_evaluated_point(params, value)
    return len(points)
