"""The table of a sweep's trials (`trials.csv`), built only from files in the sweep directory.

Trial numbers (Hydra's job numbers) and trial events are the sweep's own bookkeeping: Ray
Tune's trial ids are hashes and its state does not survive a killed driver; everything else
comes from each trial's run directory. So any driver that writes those files (the Ray Tune
sweeper, the OpenBox driver) gets the same table, and a rebuilt table after a resume sees
every trial. Which objective is better (lower log loss, higher accuracy) comes from the
sweep's `lorahpo.objective` spec.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from lorahpo.errors import first_line
from lorahpo.objective import DEFAULT, Objective
from lorahpo.rundir import RunDir, Status, deciding
from lorahpo.sweep import ledger, reported
from lorahpo.sweep.budget import ended_at_budget
from lorahpo.sweep.ledger import Event

TRIALS_FILE = "trials.csv"


def progress_line(sweep_dir: Path, trial_id: str, failed: bool, last: dict[str, Any]) -> str:
    """`trial 3 stopped after 4 evaluations, objective 1.8833` from what the trial left."""
    num = ledger.trial_numbers(sweep_dir).get(trial_id, "?")
    rd = RunDir(sweep_dir / str(num))
    result = rd.read_result()
    if failed:
        error = first_line(result.error) if result and result.error else "error"
        return f"trial {num} failed: {error} ({rd.error_path})"
    status = Status.COMPLETED if result and result.status == Status.COMPLETED else Status.STOPPED
    evals = last.get(reported.TIME_ATTR, "?")
    objective = last.get("objective")
    shown = f"{objective:.4f}" if isinstance(objective, float) else "-"
    return f"trial {num} {status} after {evals} evaluations, objective {shown}"


def collect_trials(
    sweep_dir: Path,
    param_keys: Iterable[str],
    running: Iterable[str] = (),
    objective: Objective = DEFAULT,
) -> pd.DataFrame:
    """One row per trial, numbered 0..N-1, whatever state each trial ended in; the trials
    in `running` (Ray trial ids) are `running` rather than `interrupted` (`paused` when the
    sweep stopped them at its time budget or the scheduler paused them at a rung)."""
    running, param_keys = set(running), list(param_keys)
    events = _events_by_trial(sweep_dir)
    cut = Status.PAUSED if ended_at_budget(sweep_dir) else Status.INTERRUPTED
    rows = [
        _row(
            sweep_dir, num, trial_id, events.get(trial_id, {}), param_keys, running, cut, objective
        )
        for trial_id, num in sorted(ledger.trial_numbers(sweep_dir).items(), key=lambda kv: kv[1])
    ]
    columns = [*COLUMNS[:8], *param_keys, *COLUMNS[8:]]
    return pd.DataFrame(rows, columns=columns)


COLUMNS = ["number", "status", "objective", "evals_done", "steps", "started_at", "ended_at"]
COLUMNS += ["duration_s", "worker", "run_dir", "error_file", "trial_id"]  # params in between


def _events_by_trial(sweep_dir: Path) -> dict[str, dict[str, Any]]:
    """Trial id -> event name -> the latest such event of the trial's latest attempt; under
    `running`, the seconds it ran before its latest start (time paused at a rung left out)."""
    events: dict[str, dict[str, Any]] = {}
    for e in ledger.read_events(sweep_dir):
        trial = events.setdefault(e["trial_id"], {})
        if e["event"] == Event.PAUSED and Event.START in trial:
            run = trial.setdefault("running", {"since": trial[Event.START]["time"], "before": 0.0})
            run["before"] += e["time"] - (run["since"] or e["time"])
            run["since"] = None  # until it is promoted
        if e["event"] == Event.START and Event.PAUSED in trial:  # promoted: the same run goes on
            del trial[Event.PAUSED]
            trial["running"]["since"] = e["time"]
            continue
        if e["event"] == Event.START:  # a restarted trial starts afresh...
            first, worker = trial.get(Event.START), trial.get(Event.WORKER)
            trial.clear()
            if first is not None:
                trial["first_start"] = first
            if worker is not None:  # the worker may note itself before the driver does
                trial[Event.WORKER] = worker
        if e["event"] == Event.REPLAYED and "first_start" in trial:
            # ...unless it had finished and was only replayed: it ran in the first attempt
            trial[Event.START] = {**trial["first_start"], "params": trial[Event.START]["params"]}
        trial[e["event"]] = e
    return events


def _status(result, ev: dict[str, Any], running: bool, cut: Status) -> Status:
    """From the run's own result if it wrote one, else from the ledger's events."""
    if result and result.status in (Status.COMPLETED, Status.FAILED, Status.STOPPED):
        return result.status
    if Event.ERROR in ev:
        return Status.FAILED
    if Event.COMPLETE in ev:
        return Status.STOPPED  # ended by the scheduler before its last evaluation
    if Event.PAUSED in ev:
        return Status.PAUSED  # at a rung, by promotion-type ASHA
    return Status.RUNNING if running else cut


def _row(
    sweep_dir: Path,
    num: int,
    trial_id: str,
    ev: dict[str, Any],
    param_keys: list[str],
    running: set[str],
    cut: Status,
    objective: Objective,
) -> dict[str, Any]:
    rd = RunDir(sweep_dir / str(num))
    result = rd.read_result()
    metrics = rd.read_metrics()
    params = (ev.get(Event.START) or {}).get("params", {})
    status = _status(result, ev, trial_id in running, cut)
    if status == Status.COMPLETED:
        value = result.objective
    else:  # a stopped or paused trial: the best of the evaluations it did
        partial = status in (Status.STOPPED, Status.PAUSED)
        value = objective.best(m.objective for m in deciding(metrics)) if partial else None
    worker = ev.get(Event.WORKER) or {}
    start = (ev.get(Event.START) or {}).get("time")
    end = (ev.get(Event.COMPLETE) or ev.get(Event.ERROR) or {}).get("time")
    return {
        "number": num,
        "status": str(status),
        "objective": value,
        "evals_done": len(metrics),
        "steps": metrics[-1].step if metrics else 0,
        "started_at": _iso(start),
        "ended_at": _iso(end),
        "duration_s": _seconds_running(ev, start, end),
        **{key: params.get(key) for key in param_keys},
        "worker": f"{worker['host']}:{worker['pid']}" if worker else "",
        "run_dir": str(rd.path),
        "error_file": str(rd.error_path)
        if status == Status.FAILED and rd.error_path.exists()
        else "",
        "trial_id": trial_id,
    }


def _seconds_running(ev: dict[str, Any], start: float | None, end: float | None):
    """From the trial's start to its end, less the time it waited paused at a rung; for a
    trial paused now (the sweep ended with it at a rung), the time it ran until then."""
    run = ev.get("running") or {"since": start, "before": 0.0}
    if start and not end and Event.PAUSED in ev:
        return round(run["before"], 2)
    if not (start and end):
        return None
    return round(run["before"] + end - (run["since"] or end), 2)


def best_trial(trials: pd.DataFrame, objective: Objective = DEFAULT) -> pd.Series | None:
    """The best objective among completed trials (a stopped or paused one only if none
    completed)."""
    for statuses in ([Status.COMPLETED], [Status.STOPPED, Status.PAUSED]):
        done = trials[trials["status"].isin(statuses) & trials["objective"].notna()]
        if len(done):
            return _best_row(done, objective)
    return None


def _best_row(rows: pd.DataFrame, objective: Objective) -> pd.Series:
    values = rows["objective"]
    return rows.loc[values.idxmax() if objective.maximise else values.idxmin()]


def best_start_point(
    trials: pd.DataFrame,
    param_keys: list[str],
    points: list[dict[str, Any]],
    objective: Objective = DEFAULT,
) -> pd.Series | None:
    """The best completed trial that ran one of the start points (matched by parameters)."""
    if not points or trials.empty:
        return None

    def is_start(row: pd.Series) -> bool:
        return any(all(_same(row[k], p[k]) for k in param_keys) for p in points)

    done = trials[(trials["status"] == Status.COMPLETED) & trials["objective"].notna()]
    starts = done[done.apply(is_start, axis=1)] if len(done) else done
    return _best_row(starts, objective) if len(starts) else None


def _same(a: Any, b: Any) -> bool:
    if isinstance(b, float) and isinstance(a, int | float):
        return math.isclose(a, b, rel_tol=1e-9)
    return a == b


def format_table(
    trials: pd.DataFrame, param_keys: list[str], top: int = 5, objective: Objective = DEFAULT
) -> str:
    """A short summary: counts by status and the best trials."""
    counts = ", ".join(
        f"{(trials['status'] == s).sum()} {s}" for s in Status if (trials["status"] == s).any()
    )
    lines = [f"{len(trials)} trials: {counts}"]
    scored = trials[trials["objective"].notna()]
    scored = scored.sort_values("objective", ascending=not objective.maximise).head(top)
    if len(scored):
        cols = ["number", "status", "objective", "evals_done", *param_keys]
        table = scored[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}")
        lines += ["best trials:", table]
    return "\n".join(lines)


def _iso(t: float | None) -> str:
    return pd.Timestamp(t, unit="s").isoformat(timespec="milliseconds") if t else ""


def epoch_seconds(values: pd.Series) -> pd.Series:
    """trials.csv's `started_at` / `ended_at` (UTC, as `_iso` writes them) as seconds since
    the epoch, NaN where blank; whatever resolution pandas gives the parsed times."""
    return (pd.to_datetime(values) - pd.Timestamp(0)) / pd.Timedelta(seconds=1)
