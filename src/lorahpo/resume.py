"""Continuing an interrupted run from its latest checkpoint.

A validated run saves a full Trainer checkpoint (LoRA weights and head, optimizer, scheduler,
RNG states, trainer state) at every evaluation. `ResumeMarks` adds a small `resume.json` to
each, written once the checkpoint is complete: how many evaluations it holds, and a
fingerprint of the run's config; then it removes every checkpoint but this latest one and the
best (so there is a complete checkpoint at every moment: the Trainer's own rotation would
delete the previous one before the new one is marked). A run that
finds a marked checkpoint of the same config in its folder continues from it: a sweep trial
restarted after its sweep or its worker was killed, or `python train.py` run again with
`hydra.run.dir=<the interrupted run's folder>`. Its `metrics.jsonl` keeps the evaluations up
to that checkpoint and continues from there.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from omegaconf import DictConfig
from transformers import TrainerCallback

from lorahpo.config_keys import Affects, config_key
from lorahpo.objective import Objective
from lorahpo.rundir import EvalRecord, RunDir, deciding, read_json, write_json

log = logging.getLogger(__name__)
MARK = "resume.json"  # in a checkpoint folder: it is complete, and what it continues
BEST_LOGITS = "val_logits.npy"  # in the best evaluation's checkpoint: its validation logits


def fingerprint(cfg: DictConfig) -> str:
    """A hash of everything that decides what a run trains (the NUMBERS keys of
    lorahpo.config_keys; not its logger, progress bar or how a sweep schedules it)."""
    return config_key(cfg, Affects.NUMBERS)


@dataclass
class ResumePoint:
    """Where an interrupted run continues: its latest complete checkpoint, the evaluations
    done up to it, and the validation logits of the best of them (for val_predictions.csv)."""

    checkpoint: Path
    step: int  # optimizer steps done at the checkpoint
    history: list[EvalRecord]
    best_logits: np.ndarray | None


def resume_point(rd: RunDir, cfg: DictConfig, objective: Objective) -> ResumePoint | None:
    """The latest marked checkpoint of this config in `rd`, or None (then whatever is in
    `checkpoints/` is left over from another config or a cut-short save, and is removed)."""
    found = _marked_checkpoints(rd.checkpoints_path)
    want = fingerprint(cfg) if found else None  # a new run (the usual case) needs no hash
    records = rd.read_metrics() if found else []
    for step, path, mark in reversed(found):
        if mark.get("config") != want:
            log.warning("%s is a checkpoint of another config: starting this run from step 0", path)
            break
        damage = _damage(path)
        if damage:  # a disk that filled up, a file cut short: try the older one (the best)
            log.warning("%s is damaged (%s): not continued", path, damage)
            shutil.rmtree(path, ignore_errors=True)
            continue
        evals = int(mark.get("evals", 0))
        if len(records) < evals:
            log.warning(
                "%s names %d evaluations but %s holds %d: starting from step 0",
                path,
                evals,
                rd.metrics_path,
                len(records),
            )
            break
        history = records[:evals]
        log.info("resuming from %s (step %d, %d evaluation(s) done)", path.name, step, len(history))
        return ResumePoint(path, step, history, _best_logits(rd, history, objective))
    if rd.checkpoints_path.exists():
        log.warning("starting from step 0: no usable checkpoint in %s", rd.checkpoints_path)
        shutil.rmtree(rd.checkpoints_path, ignore_errors=True)
    return None


def _damage(path: Path) -> str | None:
    """What is wrong with a marked checkpoint's files, if anything: each torch file is read
    through (its zip records carry CRCs), the adapter's safetensors opened, the trainer state
    parsed. Reading a few hundred MB once per resume costs less than a failed trial."""
    from safetensors import safe_open

    try:
        for name in ("optimizer.pt", "scheduler.pt", "rng_state.pth"):
            if (path / name).exists():
                with zipfile.ZipFile(path / name) as z:
                    bad = z.testzip()
                if bad:
                    return f"{name}: {bad} fails its checksum"
        with safe_open(str(path / "adapter_model.safetensors"), "pt") as f:
            for key in list(f.keys()):
                f.get_tensor(key)
        json.loads((path / "trainer_state.json").read_text())
    except Exception as e:  # any reader's error means the same: do not continue from it
        return f"{type(e).__name__}: {e}"[:300]
    return None


def _marked_checkpoints(folder: Path) -> list[tuple[int, Path, dict]]:
    out = []
    for path in folder.glob("checkpoint-*") if folder.exists() else []:
        m = re.fullmatch(r"checkpoint-(\d+)", path.name)
        mark = read_json(path / MARK) if m else None
        if mark is not None:
            out.append((int(m.group(1)), path, mark))
    return sorted(out, key=lambda x: x[0])


def _best_logits(rd: RunDir, history: list[EvalRecord], objective: Objective) -> np.ndarray | None:
    if not history:
        return None
    best = objective.best_record(deciding(history))
    path = rd.checkpoints_path / f"checkpoint-{best.step}" / BEST_LOGITS
    return np.load(path) if path.exists() else None


class ResumeMarks(TrainerCallback):
    """Marks each checkpoint complete once the Trainer has saved it (HF calls `on_save` after
    the model, optimizer, scheduler, RNG and trainer state are written), with the best
    evaluation's logits in its own checkpoint; then keeps only the latest and the best."""

    def __init__(self, cfg: DictConfig, recorder) -> None:
        self.config = fingerprint(cfg)
        self.recorder = recorder  # trainer.EvalRecorder: the evaluations and best logits

    def on_save(self, args, state, control, **kwargs):
        path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if not path.is_dir():
            return control
        records = self.recorder.records
        latest = bool(records) and records[-1].step == state.global_step
        best_now = latest and self.recorder.is_best_last()
        if best_now and self.recorder.best_logits is not None:
            np.save(path / BEST_LOGITS, self.recorder.best_logits)
        write_json(path / MARK, {"evals": len(records), "config": self.config})
        keep = {path.name}
        if state.best_model_checkpoint:
            keep.add(Path(state.best_model_checkpoint).name)
        for other in path.parent.glob("checkpoint-*"):
            if other.name not in keep:
                shutil.rmtree(other, ignore_errors=True)
        return control
