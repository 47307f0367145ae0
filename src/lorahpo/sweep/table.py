"""The table of a sweep's trials (`trials.csv`), built only from files in the sweep directory.

Trial numbers (Hydra's job numbers) and trial events are the sweep's own bookkeeping: Ray
Tune's trial ids are hashes and its state does not survive a killed driver; everything else
comes from each trial's run directory. So any driver that writes those files (the Ray Tune
sweeper, the OpenBox driver) gets the same table, and a rebuilt table after a resume sees
every trial.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from lorahpo.errors import first_line
from lorahpo.rundir import STATUSES, RunDir, read_jsonl
from lorahpo.sweep.trial import EVENTS_FILE, load_trial_numbers

TRIALS_FILE = "trials.csv"


def progress_line(sweep_dir: Path, trial_id: str, failed: bool, last: dict[str, Any]) -> str:
    """`trial 3 stopped after 4 evaluations, objective 1.8833` from what the trial left."""
    num = read_trial_numbers(sweep_dir).get(trial_id, "?")
    rd = RunDir(sweep_dir / str(num))
    result = rd.read_result()
    if failed:
        error = first_line(result.error) if result and result.error else "error"
        return f"trial {num} failed: {error} ({rd.error_path})"
    status = "completed" if result and result.status == "completed" else "stopped"
    evals = last.get("training_iteration", "?")
    objective = last.get("objective")
    shown = f"{objective:.4f}" if isinstance(objective, float) else "-"
    return f"trial {num} {status} after {evals} evaluations, objective {shown}"


def read_trial_numbers(sweep_dir: Path) -> dict[str, int]:
    """Ray trial id -> trial number, for every trial the sweep has started."""
    return load_trial_numbers(sweep_dir)


def collect_trials(
    sweep_dir: Path, param_keys: Iterable[str], running: Iterable[str] = ()
) -> pd.DataFrame:
    """One row per trial, numbered 0..N-1, whatever state each trial ended in; the trials
    in `running` (Ray trial ids) are `running` rather than `interrupted`."""
    running = set(running)
    numbers = read_trial_numbers(sweep_dir)
    events: dict[str, dict[str, Any]] = {}
    for e in read_jsonl(sweep_dir / EVENTS_FILE):
        trial = events.setdefault(e["trial_id"], {})
        if e["event"] == "start":  # a restarted trial starts afresh...
            first, worker = trial.get("start"), trial.get("worker")
            trial.clear()
            if first is not None:
                trial["first_start"] = first
            if worker is not None:  # the worker may note itself before the driver does
                trial["worker"] = worker
        if e["event"] == "replayed" and "first_start" in trial:
            # ...unless it had finished and was only replayed: it ran in the first attempt
            trial["start"] = {**trial["first_start"], "params": trial["start"]["params"]}
        trial[e["event"]] = e
    param_keys = list(param_keys)
    rows = []
    for trial_id, num in sorted(numbers.items(), key=lambda kv: kv[1]):
        ev = events.get(trial_id, {})
        rd = RunDir(sweep_dir / str(num))
        result = rd.read_result()
        metrics = rd.read_metrics()
        params = (ev.get("start") or {}).get("params", {})
        if result and result.status in ("completed", "failed", "stopped"):
            status = result.status
        elif "error" in ev:
            status = "failed"
        elif "complete" in ev:
            status = "stopped"  # ended by the scheduler before its last evaluation
        else:
            status = "running" if trial_id in running else "interrupted"
        losses = [m.objective for m in metrics if m.objective is not None]
        losses = [x for x in losses if math.isfinite(x)]
        objective = (
            result.objective
            if status == "completed"
            else (min(losses) if losses and status == "stopped" else None)
        )
        worker = ev.get("worker") or {}
        start = (ev.get("start") or {}).get("time")
        end = (ev.get("complete") or ev.get("error") or {}).get("time")
        rows.append(
            {
                "number": num,
                "status": status,
                "objective": objective,
                "evals_done": len(metrics),
                "steps": metrics[-1].step if metrics else 0,
                "started_at": _iso(start),
                "ended_at": _iso(end),
                "duration_s": round(end - start, 2) if start and end else None,
                **{key: params.get(key) for key in param_keys},
                "worker": f"{worker['host']}:{worker['pid']}" if worker else "",
                "run_dir": str(rd.path),
                "error_file": str(rd.error_path)
                if status == "failed" and rd.error_path.exists()
                else "",
                "trial_id": trial_id,
            }
        )
    columns = [
        "number",
        "status",
        "objective",
        "evals_done",
        "steps",
        "started_at",
        "ended_at",
        "duration_s",
        *param_keys,
        "worker",
        "run_dir",
        "error_file",
        "trial_id",
    ]
    return pd.DataFrame(rows, columns=columns)


def best_trial(trials: pd.DataFrame) -> pd.Series | None:
    """The lowest objective among completed trials (a stopped one only if none completed)."""
    for status in ("completed", "stopped"):
        done = trials[(trials["status"] == status) & trials["objective"].notna()]
        if len(done):
            return done.loc[done["objective"].idxmin()]
    return None


def best_start_point(
    trials: pd.DataFrame, param_keys: list[str], points: list[dict[str, Any]]
) -> pd.Series | None:
    """The best completed trial that ran one of the start points (matched by parameters)."""
    if not points or trials.empty:
        return None

    def is_start(row: pd.Series) -> bool:
        return any(all(_same(row[k], p[k]) for k in param_keys) for p in points)

    done = trials[(trials["status"] == "completed") & trials["objective"].notna()]
    starts = done[done.apply(is_start, axis=1)] if len(done) else done
    return starts.loc[starts["objective"].idxmin()] if len(starts) else None


def _same(a: Any, b: Any) -> bool:
    if isinstance(b, float) and isinstance(a, int | float):
        return math.isclose(a, b, rel_tol=1e-9)
    return a == b


def format_table(trials: pd.DataFrame, param_keys: list[str], top: int = 5) -> str:
    """A short summary: counts by status and the best trials."""
    counts = ", ".join(
        f"{(trials['status'] == s).sum()} {s}" for s in STATUSES if (trials["status"] == s).any()
    )
    lines = [f"{len(trials)} trials: {counts}"]
    scored = trials[trials["objective"].notna()].sort_values("objective").head(top)
    if len(scored):
        cols = ["number", "status", "objective", "evals_done", *param_keys]
        table = scored[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}")
        lines += ["best trials:", table]
    return "\n".join(lines)


def _iso(t: float | None) -> str:
    return pd.Timestamp(t, unit="s").isoformat(timespec="milliseconds") if t else ""
