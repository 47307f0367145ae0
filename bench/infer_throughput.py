"""Inference rows/s with length-sorted batches against naive file-order batches.

    python bench/infer_throughput.py [--run-dir RUN] [--questions 300] [--batch-size 32]

Without --run-dir it first trains a small tiny-model run (about 15 s on a CPU). Both
orderings run on the same model, data and batch size in this process, alternating, and
the best of --repeats is kept for each.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir")
    ap.add_argument("--questions", type=int, default=300, help="toy test size (x7 rows)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()

    from lorahpo import truncation
    from lorahpo.predict import load_model, open_run
    from lorahpo.predict import predict_logits as predict
    from lorahpo.toy import make_toy_frame

    run_dir = a.run_dir
    if run_dir is None:
        run_dir = Path(tempfile.mkdtemp(prefix="bench-infer-")) / "run"
        subprocess.run(
            [
                sys.executable,
                "train.py",
                "train.epochs=1",
                "data.n_questions=100",
                "progress_bar=false",
                f"hydra.run.dir={run_dir}",
            ],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
    run = open_run(run_dir)
    tokenizer, model = load_model(run, run.cfg.hardware)
    test = make_toy_frame(a.questions, seed=123)  # unseen questions
    texts = truncation.row_texts(test, run.cfg, tokenizer)
    max_len = run.cfg.data.max_length
    best = {True: float("inf"), False: float("inf")}
    outputs = {}
    for _ in range(a.repeats):
        for sort in (False, True):
            start = time.perf_counter()
            outputs[sort] = predict(model, tokenizer, texts, max_len, a.batch_size, sort, False)
            best[sort] = min(best[sort], time.perf_counter() - start)
    assert np.allclose(outputs[True], outputs[False], atol=1e-4), "orderings disagree"
    lengths = [len(x) for x in tokenizer(texts, truncation=True, max_length=max_len)["input_ids"]]
    print(
        f"{len(texts)} rows (mean {np.mean(lengths):.0f}, max {max(lengths)} tokens), "
        f"batch {a.batch_size}, {run.cfg.model.name} on {run.cfg.hardware.name}"
    )
    for sort, label in ((False, "file order (naive)"), (True, "sorted by length")):
        print(f"  {label:20s} {len(texts) / best[sort]:9.1f} rows/s")
    print(f"speed-up of sorted batches: {best[False] / best[True]:.2f}x")


if __name__ == "__main__":
    main()
