"""What an ensemble of a sweep's trials buys on a test file the sweep never saw.

    python bench/ensemble.py [--seeds 0 1 2] [--trials 12] [--data toy:0:60 other:5:40]
        [override ...]

For each data set (`name:data seed:questions`: the toy generator's rows written as a train
CSV and a held-out test CSV, split by question) and each search seed, in this command: one
sweep with the default searcher and scheduler (`--trials` trials, two at once, one CPU each,
`search.ensemble=auto`), then, scored on the test file with infer.py's default
post-processing:
- single best retrained: `experiment=best data.val_fold=null`;
- ensemble retrained: `experiment=ensemble data.val_fold=null` (what the selection kept: the
  best single trial when the ensemble did not beat it on the held-out half);
- ensemble of the trials' own adapters: `infer.py run_dir=<sweep_dir>`.
Prints one row per data set and seed (test log loss and inference seconds of each, the
members), then the median per data set, and whether the ensemble won on both.
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

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "TOKENIZERS_PARALLELISM": "false"}
WAYS = ("single retrained", "ensemble retrained", "ensemble of trials")
TOP = "top 3 trials, equal weights"  # not a way the project offers: what selection forgoes


def _train(*args: str) -> None:
    proc = subprocess.run(
        [sys.executable, "train.py", *args], cwd=ROOT, text=True, capture_output=True, env=ENV
    )
    if proc.returncode != 0:
        sys.exit(f"train.py {' '.join(args)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")


def _score(run_dir: Path, test: Path) -> tuple[float, float]:
    """Test log loss (infer.py's default post-processing) and inference seconds (loading the
    base and adapters, then predicting)."""
    from lorahpo.predict import InferRequest, run_inference

    start = time.time()
    report = run_inference(
        InferRequest(str(run_dir), str(test), str(run_dir / "bench_submission.csv"), progress=False)
    )
    return report["log_loss"], time.time() - start


def one(name: str, train: Path, test: Path, seed: int, trials: int, out: Path, extra) -> dict:
    sweep = out / f"{name}-seed{seed}"
    data = ["data=csv", f"data.train_path={train}", *extra]
    _train(
        "-m",
        *data,
        f"search.seed={seed}",
        f"search.n_trials={trials}",
        "search.ensemble=auto",
        "hardware.concurrency=2",
        "hardware.cpus_per_trial=1",
        f"hydra.sweep.dir={sweep}",
    )
    chosen = json.loads((sweep / "ensemble.json").read_text())
    row = {"data": name, "seed": seed, "used": chosen["used"], "members": chosen["members"]}
    row["heldout"] = chosen["heldout"]
    for way, experiment in (("single retrained", "best"), ("ensemble retrained", "ensemble")):
        run_dir = out / f"{name}-seed{seed}-{experiment}"
        # the experiment carries the sweep's data and overrides
        _train(
            f"--config-dir={sweep}",
            f"experiment={experiment}",
            "data.val_fold=null",
            f"hydra.run.dir={run_dir}",
        )
        if way == WAYS[0]:
            _score(run_dir, test)  # warm-up: this process's first load pays the imports
        row[way] = _score(run_dir, test)
    row["ensemble of trials"] = _score(sweep, test)
    row[TOP] = _top_mean(sweep, test, 3)
    return row


def _top_mean(sweep: Path, test: Path, k: int) -> tuple[float, float]:
    """No selection, for comparison: the k best completed trials by validation objective,
    equal weights, their own adapters (an ensemble.json beside the sweep's own)."""
    import pandas as pd

    from lorahpo.rundir import Status

    trials = pd.read_csv(sweep / "trials.csv")
    top = trials[trials["status"] == Status.COMPLETED].nsmallest(k, "objective")
    folder = sweep.parent / f"{sweep.name}-top{k}"
    folder.mkdir(exist_ok=True)
    members = [
        {"trial": int(r.number), "run_dir": r.run_dir, "weight": 1 / len(top)}
        for r in top.itertuples()
    ]
    (folder / "ensemble.json").write_text(json.dumps({"members": members}))
    return _score(folder, test)


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--data", nargs="+", default=["toy:0:60", "other:5:40"])
    ap.add_argument("--reuse", type=Path, help="an earlier run's folder: score it again")
    ap.add_argument("overrides", nargs="*", help="train.py overrides for every run")
    a = ap.parse_args(argv)
    if a.reuse:
        rows = [_rescore(r, a.reuse) for r in json.loads((a.reuse / "rows.json").read_text())]
        print(_summary(rows))
        return rows
    from lorahpo.toy import write_toy_csvs

    out = Path(tempfile.mkdtemp(prefix="bench-ensemble-"))
    print(f"runs -> {out}", flush=True)
    rows = []
    for spec in a.data:
        name, data_seed, questions = spec.split(":")
        train, test = write_toy_csvs(out / name, int(questions), int(data_seed))
        for seed in a.seeds:
            row = one(name, train, test, seed, a.trials, out, a.overrides)
            rows.append(row)
            print(_line(row), flush=True)
    (out / "rows.json").write_text(json.dumps(rows, indent=1))
    print(_summary(rows))
    return rows


def _rescore(row: dict, out: Path) -> dict:
    """A row of an earlier run with the columns this script now computes."""
    test, sweep = out / row["data"] / "test.csv", out / f"{row['data']}-seed{row['seed']}"
    if TOP not in row:
        _score(out / f"{sweep.name}-best", test)  # warm-up, as in `one`
        row[TOP] = _top_mean(sweep, test, 3)
    return row


def _line(row: dict) -> str:
    members = ", ".join(f"{m['trial']} x {m['weight']:.2f}" for m in row["members"])
    cells = " | ".join(f"{row[w][0]:.4f} ({row[w][1]:.1f} s)" for w in (*WAYS, TOP))
    held = row["heldout"]
    return (
        f"| {row['data']} | {row['seed']} | {row['used']}: {members} | "
        f"{held['ensemble']:.4f} / {held['single']:.4f} | {cells} |"
    )


def _summary(rows: list[dict]) -> str:
    lines = [
        "| data | seed | used: members (trial x weight) | held-out half: ensemble / single | "
        + " | ".join(f"{w}: test log loss (inference)" for w in (*WAYS, TOP))
        + " |",
        "|---|---|---|---|---|---|---|---|",
        *(_line(r) for r in rows),
        "",
        "median test log loss per data set:",
    ]
    wins = []
    for name in dict.fromkeys(r["data"] for r in rows):
        mine = [r for r in rows if r["data"] == name]
        med = {w: statistics.median(r[w][0] for r in mine) for w in (*WAYS, TOP)}
        lines.append(f"  {name}: " + ", ".join(f"{w} {v:.4f}" for w, v in med.items()))
        kept = sum(r["used"] == "ensemble" for r in mine)
        lines.append(f"  {name}: the selection kept an ensemble in {kept} of {len(mine)} sweeps")
        wins.append(kept > 0 and med["ensemble retrained"] < med[WAYS[0]])
    lines.append(
        "search.ensemble=auto earns the default (an ensemble kept and better retrained on every "
        f"data set): {all(wins)}"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    main(sys.argv[1:])
