"""The sweep directory's summary: `trials.csv`, the best trial as an experiment config, plots.

Built only from files in the sweep directory (trial numbers, trial events, run directories),
so any driver that writes those (the Ray Tune sweeper, the OpenBox driver) gets the same
table, and a rebuilt summary after a resume sees every trial.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from lorahpo.sweep.trial import EVENTS_FILE, NUMBERS_FILE

BEST_EXPERIMENT = "best_experiment.yaml"
STATUSES = ("completed", "stopped", "failed", "interrupted")


def progress_line(sweep_dir: Path, trial_id: str, failed: bool, last: dict[str, Any]) -> str:
    """`trial 3 stopped after 4 evaluations, objective 1.8833` from what the trial left."""
    num = (_read_json(sweep_dir / NUMBERS_FILE) or {}).get(trial_id, "?")
    result = _read_json(sweep_dir / str(num) / "result.json") or {}
    if failed:
        error = result.get("error", "").splitlines()[0] if result.get("error") else "error"
        return f"trial {num} failed: {error} ({sweep_dir / str(num) / 'error.txt'})"
    status = "completed" if result.get("status") == "completed" else "stopped"
    evals = last.get("training_iteration", "?")
    objective = last.get("objective")
    shown = f"{objective:.4f}" if isinstance(objective, float) else "-"
    return f"trial {num} {status} after {evals} evaluations, objective {shown}"


def finalize_stopped(trials: pd.DataFrame) -> None:
    """Give early-stopped trials a `result.json` and drop their partial checkpoints.

    The scheduler ends such a trial's process mid-training, so the run never writes these.
    """
    for row in trials[trials["status"] == "stopped"].itertuples():
        run_dir = Path(row.run_dir)
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
        if not (run_dir / "result.json").exists():
            (run_dir / "result.json").write_text(
                json.dumps(
                    {
                        "status": "stopped",
                        "objective": row.objective,
                        "evals_done": row.evals_done,
                        "train_steps": row.steps,
                        "wall_time_s": row.duration_s,
                        "note": "stopped early by the scheduler; objective: best evaluation",
                    },
                    indent=2,
                )
                + "\n"
            )


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def read_trial_numbers(sweep_dir: Path) -> dict[str, int]:
    """Ray trial id -> trial number, for every trial the sweep has started."""
    return _read_json(sweep_dir / NUMBERS_FILE) or {}


def collect_trials(sweep_dir: Path, param_keys: Iterable[str]) -> pd.DataFrame:
    """One row per trial, numbered 0..N-1, whatever state each trial ended in."""
    numbers = read_trial_numbers(sweep_dir)
    events: dict[str, dict[str, Any]] = {}
    for e in _read_jsonl(sweep_dir / EVENTS_FILE):
        trial = events.setdefault(e["trial_id"], {})
        if e["event"] == "start":  # a restarted trial starts afresh...
            first = trial.get("start")
            trial.clear()
            if first is not None:
                trial["first_start"] = first
        if e["event"] == "replayed" and "first_start" in trial:
            # ...unless it had finished and was only replayed: it ran in the first attempt
            trial["start"] = {**trial["first_start"], "params": trial["start"]["params"]}
        trial[e["event"]] = e
    param_keys = list(param_keys)
    rows = []
    for trial_id, num in sorted(numbers.items(), key=lambda kv: kv[1]):
        ev = events.get(trial_id, {})
        run_dir = sweep_dir / str(num)
        result = _read_json(run_dir / "result.json") or {}
        metrics = _read_jsonl(run_dir / "metrics.jsonl")
        params = (ev.get("start") or {}).get("params", {})
        if result.get("status") in ("completed", "failed", "stopped"):
            status = result["status"]
        elif "error" in ev:
            status = "failed"
        elif "complete" in ev:
            status = "stopped"  # ended by the scheduler before its last evaluation
        else:
            status = "interrupted"
        losses = [
            m["objective"]
            for m in metrics
            if m.get("objective") is not None and math.isfinite(m["objective"])
        ]
        objective = (
            result.get("objective")
            if status == "completed"
            else (min(losses) if losses and status == "stopped" else None)
        )
        start = (ev.get("start") or {}).get("time")
        end = (ev.get("complete") or ev.get("error") or {}).get("time")
        error_file = run_dir / "error.txt"
        rows.append(
            {
                "number": num,
                "status": status,
                "objective": objective,
                "evals_done": len(metrics),
                "steps": metrics[-1]["step"] if metrics else 0,
                "started_at": _iso(start),
                "ended_at": _iso(end),
                "duration_s": round(end - start, 2) if start and end else None,
                **{key: params.get(key) for key in param_keys},
                "run_dir": str(run_dir),
                "error_file": str(error_file) if status == "failed" and error_file.exists() else "",
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
        "run_dir",
        "error_file",
        "trial_id",
    ]
    return pd.DataFrame(rows, columns=columns)


def _iso(t: float | None) -> str:
    return pd.Timestamp(t, unit="s").isoformat(timespec="milliseconds") if t else ""


def best_trial(trials: pd.DataFrame) -> pd.Series | None:
    """The lowest objective among completed trials (a stopped one only if none completed)."""
    for status in ("completed", "stopped"):
        done = trials[(trials["status"] == status) & trials["objective"].notna()]
        if len(done):
            return done.loc[done["objective"].idxmin()]
    return None


def write_best_experiment(sweep_dir: Path, best: pd.Series) -> Path:
    """The best trial's overrides as a ready `experiment` config (`# @package _global_`)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    run_dir = Path(best["run_dir"])
    overrides = yaml.safe_load((run_dir / ".hydra/overrides.yaml").read_text()) or []
    choices = yaml.safe_load((run_dir / ".hydra/hydra.yaml").read_text())["hydra"]["runtime"][
        "choices"
    ]
    body = OmegaConf.create()
    groups = []
    for o in OverridesParser.create().parse_overrides(overrides):
        key = o.get_key_element()
        if key.startswith(("hydra.", "hydra/", "paths.", "search", "scheduler")):
            continue
        if key in choices:
            groups.append({f"override /{key}": o.value()})
        else:
            OmegaConf.update(body, key, o.value(), force_add=True)
    header = (
        f"# @package _global_\n# Best trial {int(best['number'])} of sweep {sweep_dir}: "
        f"objective {best['objective']:.6f}\n# Retrain: python train.py "
        f"--config-dir {sweep_dir} experiment=best\n"
    )
    text = yaml.safe_dump({"defaults": groups, **OmegaConf.to_container(body)}, sort_keys=False)
    path = sweep_dir / BEST_EXPERIMENT
    path.write_text(header + text)
    exp_dir = sweep_dir / "experiment"  # so that `--config-dir <sweep_dir>` finds it
    exp_dir.mkdir(exist_ok=True)
    (exp_dir / "best.yaml").write_text(header + text)
    return path


def plot_trials(sweep_dir: Path, trials: pd.DataFrame, param_keys: list[str]) -> list[Path]:
    """Objective per trial with best-so-far, and objective against each parameter (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scored = trials[trials["objective"].notna()]
    if scored.empty:
        return []
    colours = {"completed": "tab:blue", "stopped": "tab:orange"}
    fig, ax = plt.subplots(figsize=(7, 4))
    for status, part in scored.groupby("status"):
        ax.scatter(part["number"], part["objective"], label=status, c=colours.get(status, "k"))
    done = scored[scored["status"] == "completed"].sort_values("number")
    if len(done):
        ax.step(
            done["number"],
            done["objective"].cummin(),
            where="post",
            c="tab:green",
            label="best so far (completed)",
        )
    ax.set(xlabel="trial", ylabel="objective (validation log loss)", title="Objective per trial")
    ax.legend()
    fig.tight_layout()
    paths = [sweep_dir / "objective_per_trial.png"]
    fig.savefig(paths[0], dpi=100)
    plt.close(fig)

    n = len(param_keys)
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax, key in zip(axes.flat, param_keys, strict=False):
        values = scored[key]
        x = values if pd.api.types.is_numeric_dtype(values) else values.astype(str)
        for status, part in scored.groupby("status"):
            ax.scatter(x[part.index], part["objective"], c=colours.get(status, "k"), s=18)
        if (
            pd.api.types.is_numeric_dtype(values)
            and values.min() > 0
            and values.max() / values.min() > 20
        ):
            ax.set_xscale("log")
        ax.set(xlabel=key, ylabel="objective")
    for ax in list(axes.flat)[n:]:
        ax.remove()
    fig.tight_layout()
    paths.append(sweep_dir / "params_vs_objective.png")
    fig.savefig(paths[1], dpi=100)
    plt.close(fig)
    return paths


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


def summarize(sweep_dir: Path, param_keys: list[str]) -> tuple[pd.DataFrame, pd.Series | None]:
    """Write `trials.csv`, the best experiment config and plots; return the table and best."""
    trials = collect_trials(sweep_dir, param_keys)
    finalize_stopped(trials)
    trials.to_csv(sweep_dir / "trials.csv", index=False)
    best = best_trial(trials)
    if best is not None:
        write_best_experiment(sweep_dir, best)
        plot_trials(sweep_dir, trials, param_keys)
    return trials, best
