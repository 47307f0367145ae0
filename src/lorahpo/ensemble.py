"""An ensemble of a sweep's trials: greedy ensemble selection with replacement (Caruana et
al., 2004, as auto-sklearn builds its ensembles) over the completed trials' validation
predictions, which every trial already paid for.

    python -m lorahpo.ensemble <sweep_dir> [--k 5]

Selection is on half the validation questions; the other half is held out to judge it
against the best single trial (chosen on the same half): an ensemble that does not beat that
trial there is not used, the single trial is. The result is `<sweep_dir>/ensemble.json`
(members, weights, both held-out figures; `infer.py run_dir=<sweep_dir>` predicts with the
trials' own adapters) and `<sweep_dir>/experiment/ensemble.yaml` (the members as one
experiment: `python train.py --config-dir <sweep_dir> experiment=ensemble data.val_fold=null`
retrains each member into `<run_dir>/members/<i>/`).
"""

from __future__ import annotations

import argparse
import copy
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from omegaconf import DictConfig, OmegaConf

from lorahpo import scoring
from lorahpo.errors import UserError, report_user_error
from lorahpo.objective import Objective, parse_objective
from lorahpo.postprocess import apply_assignment
from lorahpo.rundir import RunDir, Status, read_json, write_json

log = logging.getLogger(__name__)
ENSEMBLE_FILE = "ensemble.json"  # a sweep's selection, or a retrained ensemble's members
MEMBERS_DIR = "members"  # a retrained ensemble's member runs: <run_dir>/members/<i>/
K = 5  # members at most (with replacement: a trial chosen twice weighs twice)


@dataclass
class Candidate:
    """A completed trial's validation predictions."""

    number: int  # the trial's number in the sweep (trials.csv)
    run_dir: Path
    probs: np.ndarray  # rows x classes, validation rows in file order
    model_path: str | None


@dataclass
class Pool:
    """Every candidate, on the same validation rows."""

    candidates: list[Candidate]
    labels: np.ndarray  # class index per validation row
    groups: np.ndarray  # question per validation row (selection halves split by question)
    skipped: list[str] = field(default_factory=list)  # why a completed trial is not one


@dataclass
class Selection:
    weights: dict[int, float]  # trial number -> weight (summing to 1)
    single: int  # the best single trial on the selection half
    ensemble_heldout: float  # the ensemble's objective on the held-out half
    single_heldout: float  # the single trial's
    used: str  # "ensemble", or "single" when the ensemble did not beat it held out


def value(probs: np.ndarray, labels: np.ndarray, groups: np.ndarray, objective: Objective):
    """The objective of probabilities, after its post-processing (a temperature belongs to
    one model, not to an average: a temperature method counts as its other part)."""
    if "assignment" in objective.method:
        probs, _ = apply_assignment(probs, groups)
    metric = scoring.log_loss if objective.base == "log_loss" else scoring.accuracy
    return metric(probs, labels)


def load_pool(sweep_dir: Path) -> Pool:
    """The completed trials of a sweep with their validation predictions and adapters."""
    table = sweep_dir / "trials.csv"
    if not table.exists():
        raise UserError(f"{sweep_dir}: no trials.csv. Point it at a sweep's hydra.sweep.dir.")
    trials = pd.read_csv(table)
    done = trials[trials["status"] == Status.COMPLETED]
    candidates, skipped, reference = [], [], None
    for row in done.itertuples(index=False):
        rd = RunDir(Path(row.run_dir))
        if not _adapter_intact(rd):
            skipped.append(f"trial {row.number}: its adapter is missing or damaged ({rd.path})")
            continue
        if not rd.predictions_path.exists():
            skipped.append(f"trial {row.number}: no {rd.predictions_path.name} (no validation)")
            continue
        frame = pd.read_csv(rd.predictions_path).sort_values("row")
        if reference is None:
            reference = frame
        elif not np.array_equal(frame["row"].to_numpy(), reference["row"].to_numpy()):
            raise UserError(
                f"trial {row.number} was validated on other rows than trial "
                f"{candidates[0].number} (another data.val_fold or data): an ensemble is "
                "selected on rows every member predicted."
            )
        logits = frame[[c for c in frame.columns if c.startswith("logit_")]].to_numpy()
        result = rd.read_result()
        candidates.append(
            Candidate(int(row.number), rd.path, scoring.softmax(logits), result.model_path)
        )
    bases = {c.model_path for c in candidates}
    if len(bases) > 1:
        by_base = {b: [c.number for c in candidates if c.model_path == b] for b in bases}
        raise UserError(
            f"{sweep_dir}: its trials were trained on different base models ({by_base}); an "
            "ensemble's members share one base. Select from one model's trials."
        )
    if len(candidates) < 2:
        why = "; ".join(skipped) if skipped else f"{len(done)} completed"
        raise UserError(
            f"{sweep_dir}: an ensemble needs at least two completed trials with validation "
            f"predictions and adapters, and this sweep has {len(candidates)} ({why})."
        )
    question = reference.columns[1]  # row, <question column>, <label column>, logits
    return Pool(
        candidates,
        reference.iloc[:, 2].to_numpy(),
        reference[question].to_numpy(),
        skipped,
    )


def _adapter_intact(rd: RunDir) -> bool:
    weights = rd.adapter_path / "adapter_model.safetensors"
    if not rd.has_adapter() or not weights.exists():
        return False
    try:
        from safetensors import safe_open

        with safe_open(str(weights), framework="np") as f:
            return len(list(f.keys())) > 0
    except Exception:
        return False


def halves(groups: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Row positions of two halves of the validation questions (whole questions each)."""
    questions = np.array(sorted(set(groups.tolist())), dtype=object)
    np.random.default_rng(seed).shuffle(questions)
    first = set(questions[: len(questions) // 2].tolist())
    mask = np.array([g in first for g in groups.tolist()])
    return np.flatnonzero(mask), np.flatnonzero(~mask)


def select(pool: Pool, objective: Objective, k: int = K, seed: int = 0) -> Selection:
    """Greedy selection with replacement on one half, judged on the other."""
    pick, held = halves(pool.groups, seed)
    if len(pick) == 0 or len(held) == 0:
        raise UserError("an ensemble needs at least two validation questions to select on.")
    y, g = pool.labels, pool.groups

    def on(rows, probs):
        return value(probs[rows], y[rows], g[rows], objective)

    scores = [on(pick, c.probs) for c in pool.candidates]
    single = min(range(len(scores)), key=lambda i: objective.best_first(scores[i]))
    counts = np.zeros(len(pool.candidates), dtype=int)
    total = np.zeros_like(pool.candidates[0].probs)
    current = None
    for step in range(1, k + 1):
        tries = [on(pick, (total + c.probs) / step) for c in pool.candidates]
        best = min(range(len(tries)), key=lambda i: objective.best_first(tries[i]))
        if current is not None and not _strictly_better(objective, tries[best], current):
            break  # no member makes it better: stop early
        counts[best] += 1
        total += pool.candidates[best].probs
        current = tries[best]
    e_held = on(held, total / counts.sum())
    s_held = on(held, pool.candidates[single].probs)
    wins = (counts > 0).sum() > 1 and _strictly_better(objective, e_held, s_held)
    if not wins:  # the single best trial, alone
        counts = np.zeros_like(counts)
        counts[single] = 1
    weights = {
        pool.candidates[i].number: float(n / counts.sum()) for i, n in enumerate(counts) if n
    }
    used = "ensemble" if wins else "single"
    return Selection(weights, pool.candidates[single].number, e_held, s_held, used)


def _strictly_better(objective: Objective, a: float, b: float) -> bool:
    return a != b and objective.better(a, b)


def write(sweep_dir: Path, pool: Pool, sel: Selection, objective: Objective) -> None:
    """`ensemble.json` and `experiment/ensemble.yaml` in the sweep directory."""
    from lorahpo.sweep.best import trial_experiment

    by_number = {c.number: c for c in pool.candidates}
    members = [
        {"trial": n, "run_dir": str(by_number[n].run_dir), "weight": w}
        for n, w in sel.weights.items()
    ]
    write_json(
        sweep_dir / ENSEMBLE_FILE,
        {
            "objective": objective.metric,
            "members": members,
            "used": sel.used,
            "single_trial": sel.single,
            "heldout": {"ensemble": sel.ensemble_heldout, "single": sel.single_heldout},
        },
    )
    groups, _ = trial_experiment(Path(members[0]["run_dir"]))
    params = [
        {"trial": m["trial"], "weight": m["weight"], "params": trial_experiment(m["run_dir"])[1]}
        for m in members
    ]
    header = (
        f"# @package _global_\n# Ensemble of sweep {sweep_dir} ({sel.used}): held-out "
        f"{objective.metric} {sel.ensemble_heldout:.6f}, best single trial "
        f"{sel.single_heldout:.6f}\n# Retrain: python train.py --config-dir {sweep_dir} "
        "experiment=ensemble data.val_fold=null hydra.run.dir=<dir>\n"
    )
    body = {"defaults": groups, "ensemble": {"members": params}}
    exp_dir = sweep_dir / "experiment"
    exp_dir.mkdir(exist_ok=True)
    (exp_dir / "ensemble.yaml").write_text(header + yaml.safe_dump(body, sort_keys=False))


def build(sweep_dir: Path, objective: Objective, k: int = K) -> tuple[Selection, str]:
    """Select, write, and the lines to print."""
    pool = load_pool(sweep_dir)
    sel = select(pool, objective, k)
    write(sweep_dir, pool, sel, objective)
    members = ", ".join(f"trial {n} x {w:.2f}" for n, w in sel.weights.items())
    verdict = (
        f"ensemble ({members}) on the held-out half of the validation questions: "
        f"{objective.metric} {sel.ensemble_heldout:.4f} against {sel.single_heldout:.4f} for "
        f"the best single trial ({sel.single})"
        if sel.used == "ensemble"
        else f"no ensemble beat the best single trial ({sel.single}) on the held-out half of "
        f"the validation questions ({objective.metric} {sel.single_heldout:.4f}): it is kept "
        "alone"
    )
    lines = [f"note: {s}" for s in pool.skipped] + [
        verdict,
        f"retrain it: python train.py --config-dir {sweep_dir} experiment=ensemble "
        "data.val_fold=null hydra.run.dir=<dir>; or predict with the trials' adapters: "
        f"python infer.py run_dir={sweep_dir} data.test_path=<test.csv>",
    ]
    return sel, "\n".join(lines)


def retrain(cfg: DictConfig, run: Any, run_dir: Path) -> None:
    """Train each member of `cfg.ensemble` into `<run_dir>/members/<i>/` (a member already
    completed there is kept), then write the ensemble's `ensemble.json`."""
    members = []
    for i, member in enumerate(cfg.ensemble.members):
        member_cfg = copy.deepcopy(cfg)
        for key, val in member.params.items():
            OmegaConf.update(member_cfg, key, val, merge=False)
        member_cfg.ensemble.members = []
        rd = RunDir(run_dir / MEMBERS_DIR / str(i))
        done = rd.read_result()
        if done is not None and done.status == Status.COMPLETED and rd.has_adapter():
            log.info("member %d (trial %s): already trained in %s", i, member.trial, rd.path)
        else:
            log.info(
                "member %d (trial %s), weight %.2f -> %s", i, member.trial, member.weight, rd.path
            )
            rd.path.mkdir(parents=True, exist_ok=True)
            (rd.path / ".hydra").mkdir(exist_ok=True)
            (rd.path / ".hydra" / "config.yaml").write_text(
                OmegaConf.to_yaml(member_cfg, resolve=True)
            )
            run(member_cfg, rd.path)
        members.append({"trial": member.trial, "run_dir": str(rd.path), "weight": member.weight})
    write_json(run_dir / ENSEMBLE_FILE, {"members": members})


def members_of(run_dir: Path) -> list[tuple[Path, float]] | None:
    """The members (run directory, weight) of an ensemble in `run_dir`, or None."""
    manifest = read_json(run_dir / ENSEMBLE_FILE)
    if manifest is None:
        return None
    return [(Path(m["run_dir"]), float(m["weight"])) for m in manifest["members"]]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog="python -m lorahpo.ensemble", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument("sweep_dir", type=Path)
    ap.add_argument("--k", type=int, default=K, help="members at most (default %(default)s)")
    args = ap.parse_args(argv)
    sweep_dir = args.sweep_dir.expanduser().resolve()
    try:
        saved = sweep_dir / "multirun.yaml"  # the sweep's config: its objective
        objective = parse_objective(
            OmegaConf.load(saved).objective if saved.exists() else "log_loss"
        )
        _, text = build(sweep_dir, objective, args.k)
    except UserError as e:
        report_user_error(e)
    print(text)


if __name__ == "__main__":
    main(sys.argv[1:])
