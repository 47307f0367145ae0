"""What a searcher declares, what its builder is given, and what every adapter shares."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from lorahpo.errors import UserError
from lorahpo.objective import Objective
from lorahpo.sweep import reported
from lorahpo.sweep.space import Param


@dataclass
class BuildContext:
    """Everything a builder may use."""

    search: DictConfig  # the `search` config group: algorithm, seed, n_initial, ...
    space: dict[str, Param]
    objective: Objective
    concurrency: int = 1  # trials at once (hardware.concurrency)
    out_dir: Path | None = None  # the sweep directory (a searcher's own files go there)
    start_points: list[dict[str, Any]] = field(default_factory=list)

    @property
    def seed(self) -> int | None:
        return self.search.seed

    @property
    def n_initial(self) -> int:
        return self.search.n_initial

    @property
    def points(self) -> list[dict[str, Any]] | None:
        """The start points as Ray's searchers take them (None for none)."""
        return [dict(p) for p in self.start_points] or None


@dataclass(frozen=True)
class SearcherSpec:
    """One searcher: its name (`search=<name>`), a line for the docs, what it can do, and the
    builder that returns (search algorithm, Ray Tune param_space)."""

    name: str
    summary: str
    build: Callable[[BuildContext], tuple[Any, dict[str, Any]]]
    learns_from_history: bool  # proposes from earlier results; can be warm-started
    takes_start_points: bool  # evaluates search.start_points first
    told_pruned: bool  # a trial the scheduler stopped is not taken for a final result
    parallel_aware: bool  # proposals for free slots account for the trials still running
    keeps_own_history: bool = False  # a resumed sweep's searcher restores its own history
    exhaustive: bool = False  # one pass over every combination (search.n_trials ignored)
    extra: str | None = None  # the `lorahpo[extra]` that installs its library
    module: str | None = None  # that library's import name

    def check_installed(self) -> None:
        """Stop before any trial, naming the extra, when the searcher's library is missing."""
        if self.module and importlib.util.find_spec(self.module) is None:
            raise UserError(
                f"search={self.name} needs the {self.module} package, which is not installed: "
                f'pip install "lorahpo[{self.extra}]" (or choose another search=).'
            )


def tune_domains(space: dict[str, Param], grid: bool = False) -> dict[str, Any]:
    """Ray Tune domains for the space (grid axes for the grid searcher)."""
    from ray import tune

    out = {}
    for key, p in space.items():
        if grid:
            if not p.is_choice:
                raise UserError(
                    f"search=grid cannot enumerate the interval of {p.key}: give it a "
                    "choice(...) or range(...), or use another search algorithm."
                )
            out[key] = tune.grid_search(list(p.values))
        elif p.is_choice:
            out[key] = tune.choice(list(p.values))
        elif p.integer:
            low, high = int(p.low), int(p.high) + 1  # Hydra's interval is inclusive
            out[key] = tune.lograndint(low, high) if p.log else tune.randint(low, high)
        else:
            out[key] = tune.loguniform(p.low, p.high) if p.log else tune.uniform(p.low, p.high)
    return out


class TellsFailures:
    """Mixin for a Ray Tune Searcher: a trial whose code raised ends with a report marked
    `failed` (lorahpo.sweep.reported); the searcher is told it failed, never a value."""

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if not reported.failed(result):
            super().on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        if reported.failed(result):
            return super().on_trial_complete(trial_id, None, error=True)
        return super().on_trial_complete(trial_id, result, error)
