"""A real pretrained decoder on this machine: model=smollm2's training and inference speed, and
one run's objective per data set.

    python bench/real_model.py [--data toy:0:30 other:5:30] [--epochs 1] [override ...]

For each data set (`name:data seed:questions`: the toy generator's rows as a train CSV and a
held-out test CSV, split by question), in this command: `python train.py model=smollm2
data=csv` with its defaults (lr, LoRA, template) and `--epochs`, then infer.py on the test
file. Prints the validation objective, the test log loss, training tokens/s (the run's own
figure: tokens of the rows trained over training time) and inference tokens/s (tokens of the
test rows over the time infer.py predicted, the model loaded).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}


def one(name: str, train: Path, test: Path, epochs: str, out: Path, extra: list[str]) -> dict:
    from lorahpo import truncation
    from lorahpo.predict import InferRequest, open_run, read_test, run_inference

    run_dir = out / name
    args = ["model=smollm2", "data=csv", f"data.train_path={train}", f"train.epochs={epochs}"]
    start = time.time()
    args += [*extra, "progress_bar=false", f"hydra.run.dir={run_dir}"]
    proc = subprocess.run(
        [sys.executable, "train.py", *args],
        cwd=ROOT,
        env=ENV,
        text=True,
        capture_output=True,
    )
    if proc.returncode != 0:
        sys.exit(f"train.py failed:\n{proc.stderr[-3000:]}")
    result = json.loads((run_dir / "result.json").read_text())
    report = run_inference(InferRequest(str(run_dir), str(test), progress=False))
    run = open_run(run_dir)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(run_dir / "adapter"))
    texts = truncation.row_texts(read_test(str(test), run), run.cfg, tokenizer)
    max_length = run.cfg.data.max_length
    tokens = sum(
        len(ids) for ids in tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
    )
    return {
        "data": name,
        "train_rows": result["train_rows"],
        "objective": result["objective"],
        "accuracy": result["best_accuracy"],
        "test_log_loss": report["log_loss"],
        "train_tokens_per_s": result["train_tokens_per_s"],
        "infer_tokens_per_s": round(tokens * report["rows_per_s"] / report["rows"], 1),
        "wall_s": round(time.time() - start, 1),
    }


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", nargs="+", default=["toy:0:30", "other:5:30"])
    ap.add_argument("--epochs", default="1")
    ap.add_argument("overrides", nargs="*", help="train.py overrides for every run")
    a = ap.parse_args(argv)
    from lorahpo.toy import write_toy_csvs

    out = Path(tempfile.mkdtemp(prefix="bench-real-model-"))
    print(f"runs -> {out}", flush=True)
    rows = []
    for spec in a.data:
        name, data_seed, questions = spec.split(":")
        train, test = write_toy_csvs(out / f"{name}-data", int(questions), int(data_seed))
        rows.append(one(name, train, test, a.epochs, out, a.overrides))
        print(rows[-1], flush=True)
    cols = list(rows[0])
    print("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(_cell(c, r[c]) for c in cols) + " |")
    return rows


def _cell(col: str, value) -> str:
    scores = ("objective", "accuracy", "test_log_loss")
    return f"{value:.4f}" if col in scores else str(value)


if __name__ == "__main__":
    main(sys.argv[1:])
