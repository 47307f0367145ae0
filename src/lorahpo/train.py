"""One training run: data -> model -> Trainer -> run directory; returns the objective.

Called by `train.py` for a single run and, unchanged, for every trial of a sweep.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig

from lorahpo import data as data_lib
from lorahpo import modeling
from lorahpo.errors import UserError
from lorahpo.metrics import OBJECTIVES

log = logging.getLogger(__name__)
VAL_PREDICTIONS = "val_predictions.csv"
CALIBRATION = "calibration.json"


class TrainingDiverged(UserError):
    """The validation loss became NaN or infinite."""


def run(cfg: DictConfig, run_dir: str | Path | None = None) -> float:
    """Train once and return the best validation log loss (the objective to minimise).

    Whatever happens, `result.json` says how the run ended; a crash also leaves `error.txt`
    with the traceback, so a failed trial can be reviewed from its folder.
    """
    run_dir = Path(run_dir or _hydra_run_dir())
    run_dir.mkdir(parents=True, exist_ok=True)
    start = time.time()
    try:
        result = _train(cfg, run_dir)
    except Exception as e:
        _write_json(
            run_dir / "result.json",
            {
                "status": "failed",
                "objective": None,
                "error": f"{type(e).__name__}: {e}",
                "wall_time_s": round(time.time() - start, 2),
            },
        )
        (run_dir / "error.txt").write_text(traceback.format_exc())
        raise
    result["wall_time_s"] = round(time.time() - start, 2)
    _write_json(run_dir / "result.json", result)
    (run_dir / "error.txt").unlink(missing_ok=True)  # from an earlier failed run in this folder
    if result["validated"]:
        log.info(
            "done: best eval log loss %.4f at step %d (%s)",
            result["objective"],
            result["best_step"],
            run_dir,
        )
    else:
        log.info("done: trained on all %d rows, no validation (%s)", result["train_rows"], run_dir)
    return result["objective"]


def _hydra_run_dir() -> str:
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get().runtime.output_dir if HydraConfig.initialized() else os.getcwd()


def _write_json(path: Path, obj: dict[str, Any]) -> None:
    path.write_text(json.dumps(obj, indent=2) + "\n")


def _train(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    from transformers import DataCollatorWithPadding, set_seed
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from lorahpo.callbacks import EvalRecorder, QuietProgress
    from lorahpo.metrics import MetricsWithLogits

    modeling.quiet_transformers()
    modeling.check_hardware(cfg.hardware)
    set_seed(cfg.seed)
    num_labels = int(cfg.data.num_labels)

    # data: rows -> texts -> train/validation split
    frame = data_lib.load_frame(cfg.data)
    texts = data_lib.format_texts(frame, cfg.model.template or cfg.data.template)
    labels = frame[cfg.data.label_column].to_numpy()
    validate = cfg.data.val_fold is not None  # null: the final model, trained on every row
    if validate:
        train_idx, val_idx = data_lib.split_by_question(
            frame, cfg.data.question_column, cfg.data.folds, cfg.data.val_fold
        )
    else:
        train_idx, val_idx = np.arange(len(frame)), np.arange(0)

    # model: weights -> tokenizer -> base model (per hardware) -> LoRA. The tiny model's
    # tokenizer is fitted on every row's text (no labels), so that each fold, and the final
    # model trained on all rows, share one base model, as they would share an 8B one
    path = modeling.resolve_model_path(
        cfg.model,
        texts,
        num_labels,
        cfg.model.get("seed", 0),
        cfg.paths.cache_dir,
    )
    tokenizer = modeling.load_tokenizer(path, cfg.model)
    train_ds = data_lib.tokenize(
        [texts[i] for i in train_idx], labels[train_idx], tokenizer, cfg.data.max_length
    )
    val_ds = data_lib.tokenize(
        [texts[i] for i in val_idx], labels[val_idx], tokenizer, cfg.data.max_length
    )
    # evaluation order does not matter: sort by length so that batches carry little padding
    val_lengths = [len(x) for x in val_ds["input_ids"]]
    val_order = sorted(range(len(val_ds)), key=val_lengths.__getitem__)
    val_ds = val_ds.select(val_order)
    val_rows = val_idx[val_order]  # row of the data frame behind each evaluation row
    if cfg.objective not in OBJECTIVES:
        raise UserError(
            f"objective={cfg.objective!r} is not known; use one of {', '.join(OBJECTIVES)}."
        )
    model = modeling.load_base_model(
        path, cfg.model, cfg.hardware, num_labels, tokenizer.pad_token_id
    )
    model = modeling.add_lora(model, cfg.lora)
    trainable, total = model.get_nb_trainable_parameters()
    log.info(
        "%s: %d train / %d validation rows, %s trainable of %s parameters",
        cfg.model.name,
        len(train_ds),
        len(val_ds),
        f"{trainable:,}",
        f"{total:,}",
    )

    # training
    plan = training_plan(len(train_ds), cfg.train, validate)
    metrics_fn = MetricsWithLogits(frame[cfg.data.question_column].to_numpy()[val_rows])
    objective = OBJECTIVES[cfg.objective]
    recorder = EvalRecorder(run_dir / "metrics.jsonl", plan["planned_evals"], metrics_fn, objective)
    (run_dir / "metrics.jsonl").unlink(missing_ok=True)
    ckpt_dir = run_dir / "checkpoints"
    trainer = _trainer_class()(
        model=model,
        args=training_arguments(cfg, ckpt_dir, plan["eval_steps"], validate, objective),
        train_dataset=train_ds,
        eval_dataset=val_ds if validate else None,
        data_collator=DataCollatorWithPadding(
            tokenizer, pad_to_multiple_of=8 if cfg.hardware.device == "cuda" else None
        ),
        processing_class=tokenizer,
        compute_metrics=metrics_fn if validate else None,
        callbacks=[recorder],
    )
    trainer.pop_callback(PrinterCallback)  # raw metric dicts: EvalRecorder logs them readably
    if trainer.pop_callback(ProgressCallback):
        trainer.add_callback(QuietProgress)
    output = trainer.train()
    if recorder.diverged:
        bad = recorder.records[-1]
        raise TrainingDiverged(
            f"training diverged: validation log loss is {bad['eval_log_loss']} at step "
            f"{bad['step']} (train.lr={cfg.train.lr}). Lower train.lr or raise "
            "train.warmup_ratio."
        )

    # results: the best adapter (Trainer has loaded it back) and a summary
    model.save_pretrained(run_dir / "adapter", safe_serialization=True)
    tokenizer.save_pretrained(run_dir / "adapter")
    shutil.rmtree(ckpt_dir, ignore_errors=True)  # only the best adapter is kept
    eval_time = sum(r.get("eval_runtime", 0.0) for r in recorder.records)
    train_time = max(output.metrics["train_runtime"] - eval_time, 1e-9)
    train_tokens = sum(len(x) for x in train_ds["input_ids"]) * cfg.train.epochs
    if validate:
        best = min(recorder.records, key=lambda r: r["objective"])
        _write_calibration(run_dir / CALIBRATION, best)
        _write_predictions(
            run_dir / VAL_PREDICTIONS, frame, val_rows, recorder.best_logits, cfg.data
        )
    else:
        best = {
            "objective": None,
            "eval_log_loss": None,
            "step": output.global_step,
            "epoch": cfg.train.epochs,
            "eval_accuracy": None,
        }
    return {
        "status": "completed",
        "objective": best["objective"],
        "objective_name": cfg.objective,
        "best_log_loss_raw": best["eval_log_loss"],
        **{f"best_{k}": best.get(f"eval_{k}") for k in list(OBJECTIVES.values())[1:]},
        "temperature": best.get("eval_temperature"),
        "validated": validate,
        "train_rows": len(train_ds),
        "best_step": best["step"],
        "best_epoch": best["epoch"],
        "best_accuracy": best["eval_accuracy"],
        "evals_done": len(recorder.records),
        "planned_evals": plan["planned_evals"],
        "train_steps": output.global_step,
        "train_time_s": round(train_time, 2),
        "eval_time_s": round(eval_time, 2),
        "train_tokens": int(train_tokens),
        "train_tokens_per_s": round(train_tokens / train_time, 1),
        "trainable_params": trainable,
        "total_params": total,
        "model_path": path,
    }


def _write_calibration(path: Path, best: dict[str, Any]) -> None:
    """What inference needs to post-process like the best evaluation did."""
    _write_json(
        path,
        {
            "temperature": best.get("eval_temperature"),
            "fitted_on": "the validation fold's logits at the best evaluation",
            "val_log_loss": {m: best.get(f"eval_{k}") for m, k in OBJECTIVES.items()},
            "step": best["step"],
        },
    )


def _write_predictions(path: Path, frame, rows, logits, data_cfg: DictConfig) -> None:
    """The best evaluation's logits per validation row: what inference must reproduce, and
    what calibration is fitted on."""
    out = frame.iloc[rows][[data_cfg.question_column, data_cfg.label_column]].copy()
    out.insert(0, "row", rows)
    for k in range(logits.shape[1]):
        out[f"logit_{k}"] = logits[:, k]
    out.sort_values("row").to_csv(path, index=False)


def _trainer_class():
    from torch.utils.data import SequentialSampler
    from transformers import Trainer

    class InOrderEvalTrainer(Trainer):
        """Evaluates in dataset order. With length grouping on, HF's Trainer also shuffles
        evaluation batches by length; our validation set is already sorted by length, and
        its predictions must line up with its rows (val_predictions.csv)."""

        def _get_eval_sampler(self, eval_dataset):
            return SequentialSampler(eval_dataset) if eval_dataset is not None else None

    return InOrderEvalTrainer


def training_plan(n_train: int, train_cfg: DictConfig, validate: bool = True) -> dict[str, int]:
    """Steps and evaluations the run will do, so budgets can be stated in evaluations."""
    per_step = train_cfg.batch_size * train_cfg.grad_accum
    steps_per_epoch = math.ceil(n_train / per_step)
    total = math.ceil(steps_per_epoch * train_cfg.epochs)
    if train_cfg.eval_every <= 0:
        raise UserError(
            f"train.eval_every={train_cfg.eval_every}: must be > 0 (in epochs, "
            "e.g. 0.25 for four evaluations per epoch)."
        )
    eval_steps = max(1, round(steps_per_epoch * train_cfg.eval_every))
    planned = (total // eval_steps + (1 if total % eval_steps else 0)) if validate else 0
    return {
        "steps_per_epoch": steps_per_epoch,
        "total_steps": total,
        "eval_steps": eval_steps,
        "planned_evals": planned,
    }


def training_arguments(
    cfg: DictConfig,
    output_dir: Path,
    eval_steps: int,
    validate: bool = True,
    objective: str = "log_loss",
):
    """HF `TrainingArguments` from the `train` and `hardware` config groups."""
    from transformers import TrainingArguments

    t, hw = cfg.train, cfg.hardware
    return TrainingArguments(
        output_dir=str(output_dir),
        learning_rate=t.lr,
        num_train_epochs=t.epochs,
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=t.eval_batch_size,
        gradient_accumulation_steps=t.grad_accum,
        weight_decay=t.weight_decay,
        warmup_steps=float(t.warmup_ratio),  # a float < 1 is a ratio of all steps
        lr_scheduler_type=t.lr_scheduler,
        label_smoothing_factor=t.label_smoothing,
        max_grad_norm=t.max_grad_norm,
        eval_strategy="steps" if validate else "no",
        eval_steps=eval_steps,
        logging_strategy="steps",
        logging_steps=eval_steps,
        # a checkpoint only when the objective improves, and only the best one kept (disks
        # fill up in sweeps); without validation the final weights are the result
        save_strategy="best" if validate else "no",
        save_total_limit=1,
        save_only_model=True,
        metric_for_best_model=objective if validate else None,
        greater_is_better=False,
        load_best_model_at_end=validate,
        train_sampling_strategy="group_by_length" if t.group_by_length else "random",
        seed=cfg.seed,
        data_seed=cfg.seed,
        use_cpu=hw.device == "cpu",
        bf16=hw.precision == "bf16",
        optim=hw.optim,
        activation_checkpointing=bool(hw.gradient_checkpointing),
        dataloader_num_workers=0,
        report_to="none",
        disable_tqdm=not cfg.progress_bar,
    )
