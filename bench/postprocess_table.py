"""Raw vs temperature vs assignment vs both, on unseen toy questions, from one command.

    python bench/postprocess_table.py [--run-dir RUN] [--questions 300]

Without --run-dir it first trains the default run (`python train.py`, about 40 s on a CPU),
whose validation fold also fits the temperature. The test rows are new questions from the
same generator (another data seed), each answered once by each of the 7 sources.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir")
    ap.add_argument("--questions", type=int, default=300)
    ap.add_argument("--seed", type=int, default=1, help="data seed of the test questions")
    a = ap.parse_args()

    from lorahpo import scoring, truncation
    from lorahpo.predict import load_model, open_run, predict_logits
    from lorahpo.toy import make_toy_frame

    run_dir = a.run_dir
    if run_dir is None:
        run_dir = Path(tempfile.mkdtemp(prefix="bench-post-")) / "run"
        subprocess.run(
            [sys.executable, "train.py", "progress_bar=false", f"hydra.run.dir={run_dir}"],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
    run = open_run(run_dir)
    temperature = run.temperature
    tokenizer, model = load_model(run, run.cfg.hardware)
    test = make_toy_frame(a.questions, seed=a.seed)
    logits = predict_logits(
        model,
        tokenizer,
        truncation.row_texts(test, run.cfg, tokenizer),
        run.cfg.data.max_length,
        32,
        progress=False,
    )
    labels, groups = test["target"].to_numpy(), test["Question"].to_numpy()
    print(
        f"{len(test)} test rows ({a.questions} questions x 7), {run.cfg.model.name}; "
        f"temperature {temperature:.3f} (fitted on the run's validation fold)"
    )
    print(f"{'postprocess':26s} {'log loss':>9s} {'accuracy':>9s}")
    for method in scoring.METHODS:
        probs, counts = scoring.probabilities(logits, groups, method, temperature)
        accuracy = scoring.accuracy(probs, labels)
        print(f"{method:26s} {scoring.log_loss(probs, labels):9.4f} {accuracy:9.4f}")
    print(counts)


if __name__ == "__main__":
    main()
