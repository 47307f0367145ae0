"""Finishing the run directories of trials the scheduler stopped early.

The scheduler ends such a trial inside `tune.report`, mid-training, so the run never writes
its own `result.json` and leaves its working checkpoints behind.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

from lorahpo.rundir import RunDir, RunResult, Status


def finalize_stopped(trials: pd.DataFrame) -> None:
    """Give each early-stopped trial a `result.json` and drop its partial checkpoints."""
    for row in trials[trials["status"] == Status.STOPPED].itertuples():
        rd = RunDir(Path(row.run_dir))
        shutil.rmtree(rd.checkpoints_path, ignore_errors=True)
        if rd.read_result() is None:
            rd.write_result(
                RunResult(
                    status=Status.STOPPED,
                    objective=None if pd.isna(row.objective) else float(row.objective),
                    evals_done=int(row.evals_done),
                    train_steps=int(row.steps),
                    wall_time_s=None if pd.isna(row.duration_s) else float(row.duration_s),
                    note="stopped early by the scheduler; objective: best evaluation",
                )
            )
