"""OpenBox's Gaussian-process BO (expected improvement) as a Ray Tune searcher.

Used by `search=gp` in the sweeper and by `tune_openbox.py`. Ray Tune runs the trials (the
same resources, concurrency and run directories as every other sweep); OpenBox only
proposes configurations and learns from their objectives. With several trials at once,
OpenBox's asynchronous advisor accounts for the trials still running.

A failed trial is given to OpenBox as a FAILED observation, which OpenBox's own history
handling replaces by the worst observed value when it fits the surrogate: never a made-up
loss such as 999.
"""

from __future__ import annotations

import math
import pickle
from pathlib import Path
from typing import Any

from ray.tune.search import Searcher

from lorahpo.compat import openbox as openbox_compat
from lorahpo.sweep import reported
from lorahpo.sweep.searchers._base import TellsFailures
from lorahpo.sweep.space import Param, plain

HISTORY_FILE = "openbox_history.json"


def to_openbox_space(space: dict[str, Param], seed: int | None):
    """Numeric choices -> Ordinal (order matters to the GP), other choices -> Categorical,
    intervals -> Real or Int, on a log scale where tagged `log`."""
    from openbox import space as sp

    cs = sp.Space(seed=seed)
    variables = []
    for key, p in space.items():
        if p.is_choice:
            numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in p.values)
            values = sorted(set(p.values)) if numeric else list(p.values)
            if len(values) == 1:
                variables.append(sp.Constant(key, values[0]))
            elif numeric:
                variables.append(sp.Ordinal(key, values))
            else:
                variables.append(sp.Categorical(key, values))
        elif p.integer:
            variables.append(sp.Int(key, int(p.low), int(p.high), log=p.log))
        else:
            variables.append(sp.Real(key, float(p.low), float(p.high), log=p.log))
    cs.add_variables(variables)
    return cs


class OpenBoxSearch(TellsFailures, Searcher):
    """GP surrogate + EI; `n_initial` random configurations first; seedable.

    `metric`, `mode`: Ray Tune's (the reported key; min or max); `seed`: OpenBox's (None:
    unseeded); `concurrency`: trials at once, each proposed without the others' results;
    `out_dir`: the sweep directory, where its history is kept for a resume.
    """

    def __init__(
        self,
        space: dict[str, Param],
        metric: str,
        mode: str,
        seed: int | None,
        n_initial: int,
        concurrency: int,
        out_dir: Path,
        start_points: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(metric=metric, mode=mode)
        self.sign = 1.0 if mode == "min" else -1.0  # OpenBox minimises
        self.space, self.seed, self.n_initial = space, seed, n_initial
        self.concurrency, self.out_dir = concurrency, Path(out_dir)
        self.live: dict[str, Any] = {}  # trial id -> OpenBox configuration
        self.start_points = list(start_points or [])  # proposed first, in this order
        self.advisor = self._new_advisor(self._saved_history())

    def _saved_history(self):
        from openbox.utils.history import History

        path = self.out_dir / HISTORY_FILE
        if not path.exists():
            return None
        return History.load_json(str(path), to_openbox_space(self.space, self.seed))

    def _new_advisor(self, history=None):
        from openbox import Advisor
        from openbox.core.async_batch_advisor import AsyncBatchAdvisor

        common = {
            "num_objectives": 1,
            "initial_trials": self.n_initial,
            "surrogate_type": "gp",
            "acq_type": "ei",
            "random_state": self.seed,
            "task_id": "lorahpo",
            "output_dir": str(self.out_dir / "openbox"),
            "logger_kwargs": {"stream": False},  # OpenBox's log goes to its folder only
        }
        cs = to_openbox_space(self.space, self.seed)
        advisor = (
            AsyncBatchAdvisor(cs, batch_size=self.concurrency, **common)
            if self.concurrency > 1
            else Advisor(cs, **common)
        )
        if history is not None:
            openbox_compat.set_history(advisor, history)
        return advisor

    def __getstate__(self) -> dict[str, Any]:
        # Ray pickles the searcher with the experiment; the advisor (loggers, surrogate) is
        # rebuilt instead, and its observations come back through `restore`
        return {k: v for k, v in self.__dict__.items() if k not in ("advisor", "live")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.live = {}
        self.advisor = self._new_advisor()

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return not config  # the space is OpenBox's own, given at construction

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        if self.start_points:
            from ConfigSpace import Configuration

            config = Configuration(self.advisor.config_space, values=self.start_points.pop(0))
            openbox_compat.mark_running(self.advisor, config)
        else:
            config = self.advisor.get_suggestion()  # the async advisor knows what is running
        self.live[trial_id] = config
        return {key: plain(config[key]) for key in self.space}

    def add_evaluated_point(self, parameters: dict[str, Any], value: float, **_: Any) -> None:
        """An earlier sweep's result (warm start): into the history the GP is fitted on."""
        from ConfigSpace import Configuration
        from openbox.utils.constants import SUCCESS
        from openbox.utils.history import Observation

        config = Configuration(self.advisor.config_space, values=parameters)
        self.advisor.get_history().update_observation(
            Observation(config, objectives=[self.sign * float(value)], trial_state=SUCCESS)
        )

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        from openbox.utils.constants import FAILED, SUCCESS
        from openbox.utils.history import Observation

        config = self.live.pop(trial_id, None)
        if config is None:
            return
        if not error and reported.stopped_early(result):
            # a loss from part of the training is no final result: the GP is not fitted on it
            openbox_compat.unmark_running(self.advisor, config)
            return
        value = (result or {}).get(self.metric)
        failed = error or value is None or not math.isfinite(value)
        self.advisor.update_observation(
            Observation(
                config,
                objectives=[math.inf if failed else self.sign * float(value)],
                trial_state=FAILED if failed else SUCCESS,
            )
        )
        self.advisor.get_history().save_json(str(self.out_dir / HISTORY_FILE))

    def save(self, checkpoint_path: str) -> None:
        """Ray Tune's searcher checkpoint: the observations so far (resume continues them)."""
        history = self.out_dir / HISTORY_FILE
        state = {
            "history": history.read_text() if history.exists() else None,
            "live": {t: c.get_dictionary() for t, c in self.live.items()},
            "start_points": self.start_points,
        }
        with open(checkpoint_path, "wb") as f:
            pickle.dump(state, f)

    def restore(self, checkpoint_path: str) -> None:
        from ConfigSpace import Configuration

        with open(checkpoint_path, "rb") as f:
            state = pickle.load(f)
        self.start_points = state.get("start_points", [])
        if state["history"]:
            (self.out_dir / HISTORY_FILE).write_text(state["history"])
        self.advisor = self._new_advisor(self._saved_history())
        cs = self.advisor.config_space
        self.live = {t: Configuration(cs, values=v) for t, v in state["live"].items()}
        for config in self.live.values():  # still running
            openbox_compat.mark_running(self.advisor, config)
