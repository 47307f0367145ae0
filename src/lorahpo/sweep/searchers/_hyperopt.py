"""Ray Tune's HyperOptSearch, able to be told earlier results (warm start)."""

from __future__ import annotations

from typing import Any

from ray.tune.search.hyperopt import HyperOptSearch

from lorahpo.compat import ray_hyperopt
from lorahpo.sweep.searchers._base import TellsFailures


class WarmHyperOptSearch(TellsFailures, HyperOptSearch):
    """HyperOptSearch that takes evaluated points: Ray's takes start points only."""

    def add_evaluated_point(self, parameters: dict[str, Any], value: float, **_: Any) -> None:
        """Record `parameters` as a finished Hyperopt trial with objective `value`."""
        ray_hyperopt.add_finished_trial(self, parameters, self.metric_op * float(value))

    def history(self) -> list[tuple[dict[str, Any], float]]:
        """(stored values, loss) of every finished trial Hyperopt knows (for tests)."""
        return ray_hyperopt.finished_trials(self)
