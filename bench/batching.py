"""Which training batching learns best, and how fast: objective and tokens/s over seeds.

    python bench/batching.py [--seeds 42 7 1] [--repeats 2] [--batchings random length pooled:2]

Runs `python train.py` on the embedded default (tiny model, toy data, CPU) once per batching
and seed, all in this command, and prints per batching: the objective's mean and spread over
seeds, train tokens/s (and its ratio to `random`, the plain HF Trainer's batching), the
evaluation time per run, and the default run repeated with one seed (run-to-run noise).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from lorahpo.rundir import RunDir

ROOT = Path(__file__).resolve().parents[1]


def train(out: Path, *overrides: str):
    proc = subprocess.run(
        [sys.executable, "train.py", "progress_bar=false", f"hydra.run.dir={out}", *overrides],
        cwd=ROOT,
        text=True,
        capture_output=True,
    )
    if proc.returncode != 0:
        sys.exit(f"train.py {' '.join(overrides)} failed:\n{proc.stderr[-3000:]}")
    return RunDir(out).read_result()


def _args(batching: str) -> list[str]:
    """`pooled:2` -> train.batching=pooled train.pool_batches=2."""
    name, _, pool = batching.partition(":")
    return [f"train.batching={name}"] + ([f"train.pool_batches={pool}"] if pool else [])


def spread(values: list[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[42, 7, 1])
    ap.add_argument(
        "--batchings",
        nargs="+",
        default=["random", "length", "pooled:2", "pooled:4"],
        help="random, length, pooled[:batches per pool]",
    )
    ap.add_argument("--repeats", type=int, default=2, help="extra runs of the first seed")
    ap.add_argument("overrides", nargs="*", help="more train.py overrides for every run")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-batching-"))
    rows = {}
    for batching in a.batchings:
        results = [
            train(tmp / f"{batching}-{seed}", *_args(batching), f"seed={seed}", *a.overrides)
            for seed in a.seeds
        ]
        rows[batching] = results
        objs = ", ".join(f"{r.objective:.4f}" for r in results)
        print(f"{batching}: objectives {objs}", flush=True)
    base = rows.get("random")
    base_tps = statistics.mean(r.train_tokens_per_s for r in base) if base else None
    print(
        f"\n{'batching':10s} {'objective (mean ± sd)':>24s} {'best':>7s} {'worst':>7s} "
        f"{'tokens/s':>9s} {'vs random':>9s} {'eval s/run':>10s}"
    )
    for batching, results in rows.items():
        objs = [r.objective for r in results]
        tps = statistics.mean(r.train_tokens_per_s for r in results)
        ratio = f"{tps / base_tps:.2f}x" if base_tps else "-"
        evals = statistics.mean(r.eval_time_s for r in results)
        print(
            f"{batching:10s} {spread(objs):>24s} {min(objs):7.4f} {max(objs):7.4f} "
            f"{tps:9.0f} {ratio:>9s} {evals:10.2f}"
        )
    if a.repeats:
        first = a.batchings[0]
        again = [rows[first][0]] + [
            train(tmp / f"repeat-{i}", *_args(first), f"seed={a.seeds[0]}", *a.overrides)
            for i in range(a.repeats)
        ]
        objs = [r.objective for r in again]
        print(
            f"\nrepeats of {first}, seed {a.seeds[0]}: "
            + ", ".join(f"{x:.6f}" for x in objs)
            + f" (max difference {max(objs) - min(objs):.2e})"
        )


if __name__ == "__main__":
    main()
