"""The time budget's side in Ray Tune: a gate around the search algorithm that starts no
trial the budget cannot bring to its first milestone, and a callback that ends the sweep
when the budget is spent (lorahpo.sweep.budget)."""

from __future__ import annotations

import time
from typing import Any

from ray.tune import Callback
from ray.tune.search import SearchAlgorithm

from lorahpo.sweep.budget import active, clock


class BudgetWatch(Callback):
    """Ends the sweep when the budget runs out; saves what was spent every ten seconds."""

    def __init__(self) -> None:
        self.saved = 0.0

    def on_step_end(self, iteration, trials, **info):
        budget = active()
        if budget is None or budget.ended:
            return
        if budget.left() <= 0:
            print(
                f"[sweep] the time budget ({clock(budget.total_s)}) is spent: stopping the "
                "running trials; their checkpoints are kept",
                flush=True,
            )
            budget.end_now()
        elif time.time() - self.saved >= 10.0:
            self.saved = time.time()
            budget.save()


class BudgetGate(SearchAlgorithm):
    """A search algorithm that starts no new trial once the budget could not bring it to its
    first milestone (then it says it is finished, so the sweep ends with its running trials).
    Everything else is the wrapped algorithm's."""

    def __init__(self, inner: SearchAlgorithm) -> None:
        self.inner = inner

    def next_trial(self):
        budget = active()
        if budget is not None and not budget.allows_new_trial():
            self.inner.set_finished()
            return None
        return self.inner.next_trial()

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
        self.inner.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result=None, error: bool = False) -> None:
        self.inner.on_trial_complete(trial_id, result=result, error=error)

    def is_finished(self) -> bool:
        return self.inner.is_finished()

    def set_finished(self) -> None:
        self.inner.set_finished()

    def has_checkpoint(self, dirpath: str) -> bool:
        return self.inner.has_checkpoint(dirpath)

    def save_to_dir(self, dirpath: str, **kwargs) -> None:
        self.inner.save_to_dir(dirpath, **kwargs)

    def restore_from_dir(self, dirpath: str) -> None:
        self.inner.restore_from_dir(dirpath)


def gate(search_alg: Any, concurrency: int) -> BudgetGate:
    """`search_alg` (a Searcher or a SearchAlgorithm) behind the budget's gate, limited to
    `concurrency` trials at once as Tune's `max_concurrent_trials` would."""
    from ray.tune.search import ConcurrencyLimiter, Searcher, SearchGenerator

    if isinstance(search_alg, Searcher):
        if not isinstance(search_alg, ConcurrencyLimiter):
            search_alg = ConcurrencyLimiter(search_alg, max_concurrent=concurrency)
        search_alg = SearchGenerator(search_alg)
    return BudgetGate(search_alg)
