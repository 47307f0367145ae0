"""Ray Tune's HyperOptSearch that can be told earlier results (warm start).

Ray's HyperOptSearch takes start points but no evaluated points; here an evaluated point is
added to Hyperopt's own trial history as a finished trial, which is exactly what Hyperopt's
TPE reads when it proposes.
"""

from __future__ import annotations

from typing import Any

from ray.tune.search.hyperopt import HyperOptSearch


class WarmHyperOptSearch(HyperOptSearch):
    def add_evaluated_point(self, parameters: dict[str, Any], value: float, **_: Any) -> None:
        """Record `parameters` as a finished Hyperopt trial with loss `value`."""
        from hyperopt import JOB_STATE_DONE, STATUS_OK
        from hyperopt.fmin import generate_trial

        config = dict(parameters)
        self._convert_categories_to_indices(config)  # Hyperopt stores a choice's index
        tid = self._hpopt_trials.new_trial_ids(1)[0]
        doc = generate_trial(tid, config)
        doc["state"] = JOB_STATE_DONE
        doc["result"] = {"loss": float(value), "status": STATUS_OK}
        self._hpopt_trials.insert_trial_docs([doc])
        self._hpopt_trials.refresh()

    def history(self) -> list[tuple[dict[str, Any], float]]:
        """(stored values, loss) of every finished trial Hyperopt knows (for tests)."""
        return [
            ({k: v[0] for k, v in t["misc"]["vals"].items() if v}, t["result"]["loss"])
            for t in self._hpopt_trials.trials
            if t["result"].get("status") == "ok"
        ]
