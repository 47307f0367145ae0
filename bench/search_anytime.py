"""Search quality against wall time: the best objective each search x scheduler reaches.

    python bench/search_anytime.py [--searches tpe hyperopt ...] [--schedulers fifo asha]
                                   [--seeds 0 1 2] [--trials 12] [--slots 2] [override ...]

`--searches` defaults to every searcher of the registry but grid (lorahpo.sweep.searchers).
Runs, in this command, the default single run (`python train.py`, the objective every sweep
must beat) and one sweep per search x scheduler x search seed, all on the same data and
model with the same trial budget, `--slots` trials at once with one CPU each. A trial's
objective counts from the moment the trial completes (an early-stopped trial has no model to
ship, so its partial objective never counts). Prints, per combination, the median over seeds
of: the best objective after 25/50/100% of the trials, the wall time, the time to the first
trial, and the time at which the sweep first beat the default run; marks the combinations on
the front (no other is both faster and better); writes a PNG of the median best-so-far
against wall time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from lorahpo.rundir import RunDir
from lorahpo.sweep import searchers

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "TOKENIZERS_PARALLELISM": "false"}


def _cli(*args: str) -> float:
    start = time.time()
    proc = subprocess.run(
        [sys.executable, "train.py", *args], cwd=ROOT, text=True, capture_output=True, env=ENV
    )
    if proc.returncode != 0:
        sys.exit(f"train.py {' '.join(args)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return start


def _scheduler_args(spec: str) -> list[str]:
    """`asha:4:3` -> scheduler=asha, grace_period 4, reduction_factor 3; `fifo` as it is."""
    name, *rest = spec.split(":")
    args = [f"scheduler={name}"]
    for key, value in zip(("grace_period", "reduction_factor"), rest, strict=False):
        args.append(f"scheduler.{key}={value}")
    return args


def sweep_curve(sweep_dir: Path, start: float) -> dict:
    """Best-so-far (completed trials) against seconds since the command started."""
    t = pd.read_csv(sweep_dir / "trials.csv")
    t["end"] = pd.to_datetime(t["ended_at"]).astype("int64") / 1e9 - start
    t["begin"] = pd.to_datetime(t["started_at"]).astype("int64") / 1e9 - start
    t = t.sort_values("end")
    done = t[(t["status"] == "completed") & t["objective"].notna()]
    best = done["objective"].cummin()
    n = len(t)
    at = {}
    for share in (0.25, 0.5, 1.0):
        cutoff = t["end"].iloc[max(0, int(np.ceil(share * n)) - 1)]
        seen = done[done["end"] <= cutoff]["objective"]
        at[share] = seen.min() if len(seen) else float("nan")
    return {
        "times": done["end"].to_numpy(),
        "best": best.to_numpy(),
        "at": at,
        "wall": float(t["end"].max()),
        "first_trial": float(t["begin"].min()),
        "stopped": int((t["status"] == "stopped").sum()),
    }


def time_to(curve: dict, target: float) -> float:
    hit = np.flatnonzero(curve["best"] < target)
    return float(curve["times"][hit[0]]) if len(hit) else float("inf")


def median_curve(curves: list[dict], grid: np.ndarray) -> np.ndarray:
    values = []
    for c in curves:
        idx = np.searchsorted(c["times"], grid, side="right") - 1
        values.append(np.where(idx >= 0, c["best"][np.clip(idx, 0, None)], np.nan))
    return np.nanmedian(np.array(values, dtype=float), axis=0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    every = [n for n, spec in searchers.registry().items() if not spec.exhaustive]
    ap.add_argument("--searches", nargs="+", default=every)
    ap.add_argument(
        "--schedulers",
        nargs="+",
        default=["fifo", "asha"],
        help="fifo, asha, or asha:<grace_period>:<reduction_factor> (also hyperband, median)",
    )
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--slots", type=int, default=2)
    ap.add_argument("--png", default=str(ROOT / "bench" / "search_anytime.png"))
    ap.add_argument("overrides", nargs="*", help="train.py overrides for every run and sweep")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-anytime-"))

    _cli("progress_bar=false", f"hydra.run.dir={tmp / 'default'}", *a.overrides)
    default = RunDir(tmp / "default").read_result().objective
    print(f"default run: objective {default:.4f}", flush=True)

    curves: dict[tuple[str, str], list[dict]] = {}
    for search in a.searches:
        for sched in a.schedulers:
            for seed in a.seeds:
                d = tmp / f"{search}-{sched.replace(':', '_')}-{seed}"
                start = _cli(
                    "-m",
                    f"search={search}",
                    *_scheduler_args(sched),
                    f"search.seed={seed}",
                    f"search.n_trials={a.trials}",
                    f"hardware.concurrency={a.slots}",
                    "hardware.cpus_per_trial=1",
                    "progress_bar=false",
                    f"hydra.sweep.dir={d}",
                    *a.overrides,
                )
                c = sweep_curve(d, start)
                curves.setdefault((search, sched), []).append(c)
                print(
                    f"{search:8s} {sched:9s} seed {seed}: best {c['at'][1.0]:.4f} in "
                    f"{c['wall']:.0f} s ({c['stopped']} stopped)",
                    flush=True,
                )

    rows = []
    for (search, sched), cs in curves.items():
        rows.append(
            {
                "search": search,
                "scheduler": sched,
                **{
                    f"best@{int(k * 100)}%": statistics.median(c["at"][k] for c in cs)
                    for k in (0.25, 0.5, 1.0)
                },
                "wall_s": statistics.median(c["wall"] for c in cs),
                "first_trial_s": statistics.median(c["first_trial"] for c in cs),
                "beats_default_s": statistics.median(time_to(c, default) for c in cs),
                "beat_default": f"{sum(c['at'][1.0] < default for c in cs)}/{len(cs)}",
            }
        )
    table = pd.DataFrame(rows)
    wall, best = table["wall_s"], table["best@100%"]
    front = [
        "" if ((wall <= w) & (best <= b) & ((wall < w) | (best < b))).any() else "*"
        for w, b in zip(wall, best, strict=True)
    ]
    table["front"] = front
    print(
        f"\nmedian over search seeds {a.seeds}; {a.trials} trials, {a.slots} at once; "
        f"default run {default:.4f}; * = on the front (none both faster and better)"
    )
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}" if v < 10 else f"{v:.0f}"))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = np.linspace(0, max(c["wall"] for cs in curves.values() for c in cs), 200)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for (search, sched), cs in curves.items():
        ax.plot(
            grid,
            median_curve(cs, grid),
            label=f"{search} x {sched}",
            ls="-" if sched == "asha" else "--",
        )
    ax.axhline(default, c="k", lw=0.8, ls=":", label="default run")
    ax.set(
        xlabel="wall time (s)",
        ylabel="best objective so far (median over seeds)",
        title="Search quality against wall time",
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(a.png, dpi=100)
    print(f"plot: {a.png}")


if __name__ == "__main__":
    main()
