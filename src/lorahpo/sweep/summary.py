"""The sweep directory's summary, rewritten from its files: `trials.csv`, the best trial as an
experiment config, the plots."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from lorahpo.objective import Objective
from lorahpo.rundir import write_csv
from lorahpo.sweep.best import write_best_experiment
from lorahpo.sweep.space import Param
from lorahpo.sweep.stopped import finalize_stopped
from lorahpo.sweep.study import plot_study, write_study
from lorahpo.sweep.table import TRIALS_FILE, best_trial, collect_trials

log = logging.getLogger(__name__)
_live: dict[Path, LiveSummary] = {}  # the running sweeps' live summaries, by directory


def summarize(
    sweep_dir: Path,
    space: dict[str, Param],
    objective: Objective,
    running: Iterable[str] = (),
) -> tuple[pd.DataFrame, pd.Series | None]:
    """Write `trials.csv`, the best experiment config, the Optuna study and the plots; return
    the table and the best trial. During a sweep `running` names the trials still running
    (Ray trial ids)."""
    trials = collect_trials(sweep_dir, list(space), running, objective)
    finalize_stopped(trials)
    write_csv(sweep_dir / TRIALS_FILE, trials)
    best = best_trial(trials, objective)
    if best is not None:
        write_best_experiment(sweep_dir, best)
    study = write_study(sweep_dir, trials, space, objective)
    plot_study(sweep_dir, study, trials)
    return trials, best


def request_summary(sweep_dir: Path, running: Iterable[str]) -> None:
    """Ask the sweep's live summary (if this process runs one) for a rewrite. By directory,
    not by reference: Ray pickles trial callbacks with the experiment state."""
    live = _live.get(sweep_dir)
    if live is not None:
        live.request(running)


class LiveSummary:
    """The summary of a running sweep, rewritten in a background thread after trials finish.

    Ray Tune calls trial callbacks from the loop that also starts the next trial: writing
    plots and the study there (a second or two) would keep a slot idle. Here a finished trial
    only asks for a rewrite; one thread does them, one at a time, at most every
    `min_interval` seconds, and requests that arrive meanwhile are merged into the next one.
    """

    def __init__(
        self,
        sweep_dir: Path,
        space: dict[str, Param],
        objective: Objective,
        min_interval: float = 10.0,
    ):
        self.sweep_dir, self.space, self.min_interval = sweep_dir, space, min_interval
        self.objective = objective
        self._cv = threading.Condition()
        self._pending: set[str] | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="sweep-summary", daemon=True)
        self._thread.start()
        _live[sweep_dir] = self

    def request(self, running: Iterable[str]) -> None:
        """Rewrite soon; `running` are the trials still running (Ray trial ids)."""
        with self._cv:
            self._pending = set(running)
            self._cv.notify()

    def close(self) -> None:
        """Stop after the rewrite in progress (the sweep's final summary comes next)."""
        with self._cv:
            self._closed = True
            self._cv.notify()
        self._thread.join()
        _live.pop(self.sweep_dir, None)

    def _loop(self) -> None:
        last = 0.0
        while True:
            with self._cv:
                while self._pending is None and not self._closed:
                    self._cv.wait()
                if self._closed:
                    return
                wait = self.min_interval - (time.time() - last)
                if wait > 0:  # merge what finishes meanwhile into one rewrite
                    self._cv.wait_for(lambda: self._closed, timeout=wait)
                    if self._closed:
                        return
                running, self._pending = self._pending, None
            try:  # a summary that cannot be written must not end the sweep
                summarize(self.sweep_dir, self.space, self.objective, running=running)
            except Exception as e:
                log.warning("could not rewrite the sweep summary: %s", e)
            last = time.time()
