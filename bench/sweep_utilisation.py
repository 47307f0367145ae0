"""How busy a sweep keeps its slots: warm trials, cold trials, and Hydra's own launcher.

    python bench/sweep_utilisation.py [--slots 2] [--questions 200]

Runs the same grid of configurations (tiny model, toy data, CPU, one CPU per slot) three times
in this command: the `lorahpo` sweeper with warm trials (the default: a worker keeps the
tokenised data and the loaded base model for its next trial), the same sweeper with
`hydra.sweeper.warm_trials=false` (every trial loads its own), and Hydra's basic sweeper +
hydra-ray-launcher (all jobs queued as Ray tasks at once). Prints, for each:

- slot utilisation = time inside trial training + evaluation / (slots x sweep wall time), and
  the same over the trials' span (first job start to last job end);
- time from the command's start to the first job's start and to the first training step
  (a worker's one-time start, its imports, falls in one or the other);
- per-trial start-up = job start (its .hydra/ written) to its first training step (median);
- time between trials = a job's start minus the latest end of an earlier job in that slot;
- train tokens/s per trial (median);
and the wall-time ratio of the warm sweep to the cold one.
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

import pandas as pd

from lorahpo.rundir import RunDir

ROOT = Path(__file__).resolve().parents[1]


def _run(args: list[str]) -> tuple[float, float]:
    start = time.time()
    # both sweeps start a local Ray instance: keep it on the loopback interface
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    proc = subprocess.run(
        [sys.executable, "train.py", "-m", *args], cwd=ROOT, text=True, capture_output=True, env=env
    )
    if proc.returncode != 0:
        sys.exit(f"sweep failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return start, time.time()


def _jobs(sweep_dir: Path) -> pd.DataFrame:
    rows = []
    for path in sorted(p for p in sweep_dir.iterdir() if p.name.isdigit()):
        rd = RunDir(path)
        metrics = rd.read_metrics()
        rows.append(
            {
                "job_start": (path / ".hydra/config.yaml").stat().st_mtime,
                "train_start": metrics[0].train_started_at,
                "train_end": metrics[-1].time,
                "job_end": rd.result_path.stat().st_mtime,
                "tokens_per_s": rd.read_result().train_tokens_per_s,
            }
        )
    return pd.DataFrame(rows).sort_values("job_start").reset_index(drop=True)


def _figures(jobs: pd.DataFrame, span: tuple[float, float], slots: int) -> dict[str, float]:
    start, end = span
    wall = end - start
    busy = (jobs["train_end"] - jobs["train_start"]).sum()
    window = jobs["job_end"].max() - jobs["job_start"].min()
    gaps = []
    for i in range(slots, len(jobs)):
        earlier_ends = jobs["job_end"][:i][jobs["job_end"][:i] <= jobs["job_start"][i]]
        if len(earlier_ends):
            gaps.append(jobs["job_start"][i] - earlier_ends.max())
    return {
        "wall_s": wall,
        "utilisation": busy / (slots * wall),
        "in_window": busy / (slots * window),
        "first_job_s": jobs["job_start"].min() - start,
        "first_step_s": jobs["train_start"].min() - start,
        "after_last_s": end - jobs["job_end"].max(),
        "startup_s": statistics.median(jobs["train_start"] - jobs["job_start"]),
        "between_s": statistics.mean(gaps) if gaps else float("nan"),
        "tokens_per_s": statistics.median(jobs["tokens_per_s"]),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lrs", default="3e-4,6e-4,1e-3,2e-3", help="learning rates (grid axis)")
    ap.add_argument("--ranks", default="8,16,32", help="LoRA ranks (grid axis)")
    ap.add_argument("--slots", type=int, default=2)
    ap.add_argument("--questions", type=int, default=200, help="toy data size (x7 rows)")
    a = ap.parse_args()
    common = [
        f"data.n_questions={a.questions}",
        "train.epochs=1",
        "train.eval_every=0.5",
        "progress_bar=false",
    ]
    ours = [
        "search=grid",
        "scheduler=fifo",
        f"train.lr=choice({a.lrs})",
        f"lora.r=choice({a.ranks})",
        "train.lr_scheduler=choice(cosine)",
        f"hardware.concurrency={a.slots}",
        "hardware.cpus_per_trial=1",
        *common,
    ]
    runs = {
        "lorahpo, warm trials (default)": ours,
        "lorahpo, cold trials": [*ours, "hydra.sweeper.warm_trials=false"],
        "basic sweeper + hydra-ray-launcher": [  # the same grid as a plain Hydra multirun
            "hydra/sweeper=basic",
            "hydra/launcher=ray",
            "+hydra.launcher.ray.remote.num_cpus=1",
            f"train.lr={a.lrs}",
            f"lora.r={a.ranks}",
            *common,
        ],
    }
    out = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    figures = {}
    for i, (name, args) in enumerate(runs.items()):
        sweep_dir = out / str(i)
        span = _run([*args, f"hydra.sweep.dir={sweep_dir}"])
        figures[name] = _figures(_jobs(sweep_dir), span, a.slots)

    n_trials = len(a.lrs.split(",")) * len(a.ranks.split(","))
    print(f"{n_trials} trials, {a.slots} slots, tiny model, {a.questions * 7} toy rows, CPU")
    head = [
        "wall s",
        "utilisation",
        "util. trials",
        "to 1st job s",
        "to 1st step s",
        "after last s",
        "start-up s",
        "between s",
        "tokens/s",
    ]
    print(f"{'':36s}" + "".join(f"{h:>14s}" for h in head))
    for name, f in figures.items():
        cells = [
            f"{f['wall_s']:.1f}",
            f"{f['utilisation']:.1%}",
            f"{f['in_window']:.1%}",
            f"{f['first_job_s']:.1f}",
            f"{f['first_step_s']:.1f}",
            f"{f['after_last_s']:.1f}",
            f"{f['startup_s']:.2f}",
            f"{f['between_s']:.2f}",
            f"{f['tokens_per_s']:,.0f}",
        ]
        print(f"{name:36s}" + "".join(f"{c:>14s}" for c in cells))
    print(
        "utilisation: time in training + evaluation / (slots x wall); util. trials: the same "
        "over the span from the first job's start to the last job's end; start-up and "
        "tokens/s: median per trial"
    )
    warm, cold, launcher = figures.values()
    print(
        f"warm / cold wall time: {warm['wall_s'] / cold['wall_s']:.2f}; "
        f"warm / launcher wall time: {warm['wall_s'] / launcher['wall_s']:.2f}"
    )
    print(f"sweep directories: {out}")


if __name__ == "__main__":
    main()
