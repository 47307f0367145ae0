"""Search quality at equal wall time: the best objective each search x scheduler reaches
within the same time budget, over several search seeds, against the plain way.

    python bench/search_anytime.py --budget 240 [--searches hyperopt tpe ...]
        [--schedulers asha fifo] [--seeds 0 1 2] [--slots 2] [--no-plain] [override ...]

Runs, in this command: the default single run (`python train.py`, the objective every sweep
must beat); one sweep per search x scheduler x search seed with `search.time_budget=<budget>`
and no trial count, `--slots` trials at once with one CPU each; and the plain way, per seed:
Optuna's TPE without early stopping, its trials run as plain `python train.py` processes in
blocking batches of `--slots` (what Hydra's Optuna sweeper does with a parallel launcher),
until the budget ends. Every run counts its time from the command that starts it (Ray's
start included), and a trial's objective counts from the moment the trial completes (an
early-stopped or paused trial leaves no model to ship).

Prints, per combination: the median over seeds of the best objective at 25/50/100% of the
budget, the worst seed's best at 50% and 100%, trials completed, and evaluation seconds per
trial and their share of the trials' time; then the issue's goal, checked (the default's
median at half the budget against the plain way's best seed at the full budget; its worst
seed against the plain way's median). Writes a PNG of the median best-so-far against time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from lorahpo.rundir import RunDir, Status
from lorahpo.sweep import searchers
from lorahpo.sweep.table import epoch_seconds

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "TOKENIZERS_PARALLELISM": "false"}
SHARES = (0.25, 0.5, 1.0)
PLAIN = ("plain tpe", "fifo, batches")  # the baseline's row
START_FILE = "bench_start.json"  # beside each sweep: when its command began, for re-analysis


def _cli(*args: str, table: Path | None = None) -> float:
    """Run train.py; a failure ends the benchmark, except a sweep that wrote its `table`
    (trials.csv) and exited non-zero because no trial completed in the budget: a result."""
    start = time.time()
    proc = subprocess.run(
        [sys.executable, "train.py", *args], cwd=ROOT, text=True, capture_output=True, env=ENV
    )
    if proc.returncode != 0 and table is not None and table.exists():
        print(
            f"{table.parent.name}: {(proc.stderr.strip() or proc.stdout).splitlines()[-1]}",
            flush=True,
        )
    elif proc.returncode != 0:
        sys.exit(f"train.py {' '.join(args)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return start


def _scheduler_args(spec: str) -> list[str]:
    """`asha:4:3` -> scheduler=asha, grace_period 4, reduction_factor 3; `asha/every` ->
    scheduler.evaluate=every (trials evaluate at every train.eval_every); `asha+promotion`
    -> scheduler.type=promotion (paused at rungs, not stopped); `asha,eval_subset=0.5` ->
    scheduler.eval_subset=0.5 (any scheduler key, after commas); `fifo` as it is."""
    spec, *keys = spec.split(",")
    spec, _, evaluate = spec.partition("/")
    spec, _, kind = spec.partition("+")
    name, *rest = spec.split(":")
    args = [f"scheduler={name}"] + ([f"scheduler.evaluate={evaluate}"] if evaluate else [])
    args += [f"scheduler.type={kind}"] if kind else []
    for key, value in zip(("grace_period", "reduction_factor"), rest, strict=False):
        args.append(f"scheduler.{key}={value}")
    return args + [f"scheduler.{kv}" for kv in keys]


def curve(ends: np.ndarray, values: np.ndarray, budget: float, evals: list[float]) -> dict:
    """Best-so-far of the completed trials against seconds since the start, cut at the
    budget; `evals` is (evaluation seconds, trial seconds) per trial."""
    order = np.argsort(ends)
    ends, values = ends[order], values[order]
    keep = ends <= budget
    ends, values = ends[keep], values[keep]
    best = np.minimum.accumulate(values) if len(values) else values
    at = {
        s: (values[ends <= s * budget].min() if (ends <= s * budget).any() else np.nan)
        for s in SHARES
    }
    eval_s = [e for e, _ in evals]
    share = sum(eval_s) / max(1e-9, sum(w for _, w in evals))
    return {
        "times": ends,
        "best": best,
        "at": at,
        "completed": len(values),
        "eval_s": statistics.median(eval_s) if eval_s else np.nan,
        "eval_share": share,
    }


def _eval_seconds(run_dir: Path) -> float:
    return sum(float(r.get("eval_runtime") or 0.0) for r in RunDir(run_dir).read_metrics())


def sweep_curve(sweep_dir: Path, start: float, budget: float) -> dict:
    """`start`: when the command began (time.time()); a trial's time for the evaluation
    share is its `duration_s`, the time it ran (paused at a rung left out; a trial paused at
    the budget's end counts the time it ran)."""
    t = pd.read_csv(sweep_dir / "trials.csv")
    end = epoch_seconds(t["ended_at"]) - start
    done = (t["status"] == Status.COMPLETED) & t["objective"].notna()
    evals = [
        (_eval_seconds(Path(r)), w)
        for r, w in zip(t["run_dir"], t["duration_s"].fillna(0), strict=True)
        if w > 0
    ]
    return curve(end[done].to_numpy(), t["objective"][done].to_numpy(), budget, evals)


def plain_tpe(tmp: Path, seed: int, slots: int, budget: float, overrides: list[str]) -> dict:
    """The plain way: Optuna TPE (its defaults, as Hydra's Optuna sweeper), no early
    stopping, `slots` plain runs at a time, each batch waited for before the next is asked."""
    import optuna
    from hydra import compose, initialize_config_dir

    from lorahpo.sweep.space import build_space, trial_overrides
    from lorahpo.sweep.study import distribution

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    space, _ = build_space(cfg.search.space, [])
    dists = {k: distribution(p) for k, p in space.items()}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed))
    env = {**ENV, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    folder = tmp / f"plain-{seed}"
    start, ends, values, evals, n = time.time(), [], [], [], 0
    while time.time() - start < budget:
        batch = [study.ask(dists) for _ in range(slots)]
        procs = []
        for trial in batch:
            run_dir = folder / str(n)
            n += 1
            args = [*trial_overrides(trial.params), "progress_bar=false", *overrides]
            cmd = [sys.executable, "train.py", *args, f"hydra.run.dir={run_dir}"]
            procs.append(
                (
                    trial,
                    run_dir,
                    time.time(),
                    subprocess.Popen(
                        cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                    ),
                )
            )
        for trial, run_dir, began, proc in procs:
            proc.wait()
            result = RunDir(run_dir).read_result()
            ended = (result and result.status == Status.COMPLETED) and result.objective is not None
            study.tell(
                trial,
                result.objective if ended else None,
                state=None if ended else optuna.trial.TrialState.FAIL,
            )
            evals.append((_eval_seconds(run_dir), time.time() - began))
            if ended:
                ends.append(_finished_at(run_dir) - start)
                values.append(result.objective)
    _keep_start(folder, start)
    return curve(np.array(ends), np.array(values), budget, evals)


def _keep_start(folder: Path, start: float) -> None:
    """The curves count from `start`; kept so that a figure can be recomputed exactly."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / START_FILE).write_text(json.dumps({"started": start}))


def _finished_at(run_dir: Path) -> float:
    return (run_dir / "result.json").stat().st_mtime


def default_combination() -> tuple[str, str]:
    """What `python train.py -m` runs: the default search and scheduler."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train")
    return str(cfg.search.algorithm), str(cfg.scheduler.name)


def median_curve(curves: list[dict], grid: np.ndarray) -> np.ndarray:
    """The median over seeds of the best so far; a seed with no completed trial yet counts
    as worse than any (as in the table), so the curve starts once half the seeds have one."""
    values = []
    for c in curves:
        best = np.append(c["best"], np.inf)  # index -1: nothing completed yet
        idx = np.searchsorted(c["times"], grid, side="right") - 1
        values.append(best[np.where(idx >= 0, idx, len(best) - 1)])
    median = np.median(np.array(values, dtype=float), axis=0)
    return np.where(np.isfinite(median), median, np.nan)  # not drawn


def summary(curves: dict[tuple[str, str], list[dict]], default: float) -> pd.DataFrame:
    rows = []
    for (search, sched), cs in curves.items():
        # no completed trial by then: nothing to ship, worse than any figure
        at = {s: [np.inf if np.isnan(c["at"][s]) else c["at"][s] for c in cs] for s in SHARES}
        rows.append(
            {
                "search": search,
                "scheduler": sched,
                **{f"median@{int(s * 100)}%": float(np.nanmedian(at[s])) for s in SHARES},
                "worst@50%": float(np.nanmax(at[0.5])),
                "worst@100%": float(np.nanmax(at[1.0])),
                "per seed @100%": " / ".join(f"{v:.3f}" for v in at[1.0]),
                "completed": statistics.median(c["completed"] for c in cs),
                "eval s/trial": statistics.median(c["eval_s"] for c in cs),
                "eval share": statistics.median(c["eval_share"] for c in cs),
                "beat default": f"{sum(v < default for v in at[1.0])}/{len(cs)}",
            }
        )
    return pd.DataFrame(rows)


def goal(table: pd.DataFrame, default_combo: tuple[str, str]) -> list[str]:
    """The issue's bar for the default, against the plain way."""
    rows = table.set_index(["search", "scheduler"])
    if PLAIN not in rows.index or default_combo not in rows.index:
        return []
    ours, plain = rows.loc[default_combo], rows.loc[PLAIN]
    plain_best = min(float(v) for v in plain["per seed @100%"].split(" / "))
    half = ours["median@50%"] <= plain_best
    worst = ours["worst@100%"] < plain["median@100%"]
    return [
        f"default's median at 50% {ours['median@50%']:.4f} <= plain's best seed at 100% "
        f"{plain_best:.4f}: {'yes' if half else 'NO'}",
        f"default's worst seed at 100% {ours['worst@100%']:.4f} < plain's median at 100% "
        f"{plain['median@100%']:.4f}: {'yes' if worst else 'NO'}",
    ]


def plot(curves: dict[tuple[str, str], list[dict]], default: float, budget: float, png: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = np.linspace(0, budget, 200)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for (search, sched), cs in curves.items():
        ls = ":" if (search, sched) == PLAIN else "-" if "asha" in sched else "--"
        ax.plot(grid, median_curve(cs, grid), label=f"{search} x {sched}", ls=ls)
    ax.axhline(default, c="k", lw=0.8, ls=":", label="default run")
    ax.set(
        xlabel="wall time (s)",
        ylabel="best objective so far (median over seeds)",
        title=f"Search quality within a {budget:.0f} s budget",
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    print(f"plot: {png}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    every = [n for n, spec in searchers.registry().items() if not spec.exhaustive]
    ap.add_argument("--budget", type=float, default=240.0, help="seconds per sweep")
    ap.add_argument("--searches", nargs="+", default=every)
    ap.add_argument(
        "--schedulers",
        nargs="+",
        default=["asha", "fifo"],
        help="fifo, asha, asha:<grace_period>:<reduction_factor>, asha+promotion (paused "
        "at rungs), asha/every (evaluations at every eval_every), asha,eval_subset=0.5 (any "
        "scheduler key after a comma); also hyperband, median",
    )
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--slots", type=int, default=2)
    ap.add_argument("--no-plain", action="store_true", help="skip the plain-way baseline")
    ap.add_argument("--png", default=str(ROOT / "bench" / "search_anytime.png"))
    ap.add_argument("overrides", nargs="*", help="train.py overrides for every run and sweep")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-anytime-"))

    _cli("progress_bar=false", f"hydra.run.dir={tmp / 'default'}", *a.overrides)
    default = RunDir(tmp / "default").read_result().objective
    print(f"default run: objective {default:.4f}", flush=True)

    curves: dict[tuple[str, str], list[dict]] = {}
    for seed in a.seeds:
        for search in a.searches:
            for sched in a.schedulers:
                d = tmp / f"{search}-{''.join(c if c.isalnum() else '_' for c in sched)}-{seed}"
                start = _cli(
                    "-m",
                    f"search={search}",
                    *_scheduler_args(sched),
                    f"search.seed={seed}",
                    f"search.time_budget={a.budget}",
                    "search.n_trials=null",
                    f"hardware.concurrency={a.slots}",
                    "hardware.cpus_per_trial=1",
                    "progress_bar=false",
                    f"hydra.sweep.dir={d}",
                    *a.overrides,
                    table=d / "trials.csv",
                )
                _keep_start(d, start)
                _report(curves, (search, sched), seed, sweep_curve(d, start, a.budget))
        if not a.no_plain:
            c = plain_tpe(tmp, seed, a.slots, a.budget, list(a.overrides))
            _report(curves, PLAIN, seed, c)

    table = summary(curves, default)
    print(
        f"\nbudget {a.budget:.0f} s, {a.slots} slots, search seeds {a.seeds}; default run "
        f"{default:.4f}; medians and worst seed over seeds (lower is better)"
    )
    shown = table.to_string(index=False, float_format=_number)
    print(shown)
    for line in goal(table, default_combination()):
        print(line)
    plot(curves, default, a.budget, a.png)
    print(f"sweeps and runs: {tmp} (each sweep's start in its {START_FILE})")


def _number(v: float) -> str:
    return "-" if np.isinf(v) else f"{v:.4f}" if v < 10 else f"{v:.0f}"


def _report(curves: dict, combo: tuple[str, str], seed: int, c: dict) -> None:
    curves.setdefault(combo, []).append(c)
    print(
        f"{combo[0]:10s} {combo[1]:14s} seed {seed}: best {c['at'][1.0]:.4f}, "
        f"{c['completed']} completed, eval {c['eval_s']:.1f} s/trial "
        f"({c['eval_share']:.0%} of trial time)",
        flush=True,
    )


if __name__ == "__main__":
    main()
