"""The sweep directory's summary, rewritten from its files: `trials.csv`, the best trial as an
experiment config, the plots."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from lorahpo.sweep.best import write_best_experiment
from lorahpo.sweep.plots import plot_trials
from lorahpo.sweep.stopped import finalize_stopped
from lorahpo.sweep.table import TRIALS_FILE, best_trial, collect_trials


def summarize(sweep_dir: Path, param_keys: list[str]) -> tuple[pd.DataFrame, pd.Series | None]:
    """Write `trials.csv`, the best experiment config and plots; return the table and best."""
    trials = collect_trials(sweep_dir, param_keys)
    finalize_stopped(trials)
    trials.to_csv(sweep_dir / TRIALS_FILE, index=False)
    best = best_trial(trials)
    if best is not None:
        write_best_experiment(sweep_dir, best)
        plot_trials(sweep_dir, trials, param_keys)
    return trials, best
