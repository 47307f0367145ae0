"""The gate on new trials in Ray Tune: around the search algorithm, it starts no trial while
every slot runs one (a trial paused at a rung frees its slot) and none that the time budget
cannot bring to its first milestone; and a callback that ends the sweep when the budget is
spent (lorahpo.sweep.budget)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from ray.tune import Callback
from ray.tune.search import SearchAlgorithm

from lorahpo.sweep.budget import active, clock
from lorahpo.sweep.console import say


class BudgetWatch(Callback):
    """Ends the sweep when the budget runs out; saves what was spent every ten seconds."""

    def __init__(self) -> None:
        self.saved = 0.0

    def on_step_end(self, iteration, trials, **info):
        budget = active()
        if budget is None or budget.ended:
            return
        if budget.left() <= 0:
            say(
                f"the time budget ({clock(budget.total_s)}) is spent: stopping the "
                "running trials; their checkpoints are kept"
            )
            budget.end_now()
        elif time.time() - self.saved >= 10.0:
            self.saved = time.time()
            budget.save()


class TrialGate(SearchAlgorithm):
    """The search algorithm as Ray Tune sees it: the wrapped one's suggestions, at most
    `slots` running trials at once (Tune's ConcurrencyLimiter counts a paused trial as
    running until it ends; here its slot goes to a new trial, as in the ASHA paper), and no
    new trial once the budget could not bring it to its first milestone (then it says it is
    finished, so the sweep ends with its running trials)."""

    STATE_FILE = "trial_gate.json"  # its own state, beside the wrapped algorithm's

    def __init__(self, inner: SearchAlgorithm, slots: int) -> None:
        self.inner, self.slots = inner, slots
        self.live: set[str] = set()  # suggested and not complete
        self.paused: set[str] = set()  # of those, paused by the scheduler (promotion.py)
        self.last: dict[str, dict] = {}  # trial id -> its latest result

    def next_trial(self):
        budget = active()
        if budget is not None and not budget.allows_new_trial():
            self.inner.set_finished()
            return None
        if len(self.live - self.paused) >= self.slots:
            return None
        trial = self.inner.next_trial()
        if trial is not None:
            self.live.add(trial.trial_id)
        return trial

    def on_pause(self, trial_id: str) -> None:
        """The scheduler paused the trial at a rung: its slot is free."""
        self.paused.add(trial_id)

    def on_unpause(self, trial_id: str) -> None:
        self.paused.discard(trial_id)

    @property
    def metric(self):
        return self.inner.metric

    @property
    def total_samples(self):
        return self.inner.total_samples

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return self.inner.set_search_properties(metric, mode, config, **spec)

    def add_configurations(self, experiments) -> None:
        self.inner.add_configurations(experiments)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self.live.add(trial_id)  # also a trial restored with the experiment
        self.last[trial_id] = result
        self.inner.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result=None, error: bool = False) -> None:
        # Ray passes no result for a trial stopped while paused: the searcher gets its last
        result = result if result is not None else self.last.get(trial_id)
        self.live.discard(trial_id)
        self.paused.discard(trial_id)
        self.last.pop(trial_id, None)
        self.inner.on_trial_complete(trial_id, result=result, error=error)

    def is_finished(self) -> bool:
        return self.inner.is_finished()

    def set_finished(self) -> None:
        self.inner.set_finished()

    def has_checkpoint(self, dirpath: str) -> bool:
        return self.inner.has_checkpoint(dirpath)

    def save_to_dir(self, dirpath: str, **kwargs) -> None:
        self.inner.save_to_dir(dirpath, **kwargs)
        state = {"live": sorted(self.live), "paused": sorted(self.paused)}
        (Path(dirpath) / self.STATE_FILE).write_text(json.dumps(state))

    def restore_from_dir(self, dirpath: str) -> None:
        self.inner.restore_from_dir(dirpath)
        path = Path(dirpath) / self.STATE_FILE
        if path.exists():
            state = json.loads(path.read_text())
            self.live, self.paused = set(state["live"]), set(state["paused"])


def gate(search_alg: Any, slots: int) -> TrialGate:
    """`search_alg` (a Searcher or a SearchAlgorithm) behind the gate, `slots` trials at once
    as Tune's `max_concurrent_trials` would hold it."""
    from ray.tune.search import Searcher, SearchGenerator

    if isinstance(search_alg, Searcher):
        search_alg = SearchGenerator(search_alg)
    return TrialGate(search_alg, slots)
