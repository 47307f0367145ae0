"""One training run: check the config -> load inputs and base model -> train an adapter ->
write the run directory; returns the objective.

Called by `train.py` for a single run and, unchanged, for every trial of a sweep.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
import traceback
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from lorahpo import base_cache, modeling, provenance, scoring, tracking, truncation
from lorahpo import data as data_lib
from lorahpo.errors import UserError, first_line
from lorahpo.inputs import Inputs
from lorahpo.objective import parse_objective
from lorahpo.plan import check_train_config, training_plan
from lorahpo.report import report
from lorahpo.rundir import EvalRecord, RunDir, RunResult, Status, write_json

log = logging.getLogger(__name__)


def run(cfg: DictConfig, run_dir: str | Path | None = None) -> float | None:
    """Train once and return the best validation objective (None without validation); an
    ensemble's run (experiment=ensemble) trains each member in a run directory of its own.

    Whatever happens, `result.json` says how the run ended; a crash also leaves `error.txt`
    with the traceback, so a failed trial can be reviewed from its folder.
    """
    rd = RunDir(run_dir or _hydra_run_dir())
    rd.path.mkdir(parents=True, exist_ok=True)
    if cfg.ensemble.members:  # experiment=ensemble: one run per member
        from lorahpo.ensemble import retrain

        retrain(cfg, run, rd.path)
        return None
    return _run_one(cfg, rd)


def _run_one(cfg: DictConfig, rd: RunDir) -> float | None:
    start = time.time()
    root = cfg.paths.root
    write_json(rd.environment_path, provenance.environment(root, None))
    failure: Exception | None = None
    try:
        check_config(cfg)
        inputs = base_cache.inputs_for(cfg)
        write_json(rd.environment_path, provenance.environment(root, inputs.model_path))
        loads = base_cache.stats["base_loads"]
        base = base_cache.base_for(cfg, inputs)
        tracking.configure(cfg, rd.path)
        try:
            result = train_adapter(cfg, inputs, base, rd, started_at=start)
        except SystemExit:  # the scheduler stopped the trial
            tracking.end_run("KILLED")
            raise
        except Exception:
            tracking.end_run("FAILED")
            raise
        finally:  # also when a scheduler stops the trial (SystemExit) or training fails
            base_cache.give_back(base)
        result.base_reused = base_cache.stats["base_loads"] == loads
    except Exception as e:
        failure = explain(e)
        rd.write_result(
            RunResult(
                status=Status.FAILED,
                error=f"{type(failure).__name__}: {failure}",
                wall_time_s=round(time.time() - start, 2),
            )
        )
        rd.error_path.write_text(traceback.format_exc())
        if failure is e:
            raise
    if failure is not None:
        # raised out here, not inside `except`: the original exception and its frames (which
        # hold the failed step's GPU tensors) are gone before the worker's next trial
        raise failure
    result.wall_time_s = round(time.time() - start, 2)
    rd.write_result(result)
    rd.error_path.unlink(missing_ok=True)  # from an earlier failed run in this folder
    if result.validated:
        log.info(
            "done: best %s %.4f at step %d (%s)",
            parse_objective(cfg.objective).metric,
            result.objective,
            result.best_step,
            rd.path,
        )
    else:
        log.info("done: trained on all %d rows, no validation (%s)", result.train_rows, rd.path)
    return result.objective


def explain(e: Exception) -> Exception:
    """The error to report for `e`: running out of GPU memory becomes one that names the
    fixes; anything else is itself."""
    import torch

    if isinstance(e, torch.OutOfMemoryError):
        return UserError(
            f"out of GPU memory while training ({first_line(e)}). Lower train.batch_size "
            "(raising train.grad_accum keeps the effective batch), quantise the base with "
            "hardware.quantization=nf4, or set hardware.gradient_checkpointing=true; in a "
            "sweep, a smaller hardware.concurrency per GPU or data.max_length helps too."
        )
    return e


def check_config(cfg: DictConfig) -> None:
    """Everything that can be checked without data or a model, before either loads."""
    parse_objective(cfg.objective)
    check_train_config(cfg.train)
    truncation.check_policy(cfg.data.truncation)
    modeling.check_lora_config(cfg.lora)
    modeling.check_hardware(cfg.hardware)
    tracking.check_logger(cfg)


def train_adapter(
    cfg: DictConfig, inputs: Inputs, base_model, rd: RunDir, started_at: float | None = None
) -> RunResult:
    """Fresh LoRA adapters and head on `base_model`, trained with the HF Trainer; the best
    adapter, its calibration and validation predictions are written to `rd`. The base model
    comes back without adapters, whatever happens (its head is restored by the caller)."""
    import torch
    from transformers import set_seed

    modeling.quiet_transformers()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    set_seed(cfg.seed)  # LoRA and head initialisation follow the run's seed
    modeling.init_head(base_model, cfg.seed)
    model = modeling.add_lora(base_model, cfg.lora)
    try:
        return _train(cfg, inputs, model, rd, started_at)
    finally:
        try:
            modeling.remove_lora(model)
        except Exception as e:  # the base cache sees what is left and reloads
            log.warning("could not remove the LoRA adapters: %s", e)


def _train(
    cfg: DictConfig, inputs: Inputs, model, rd: RunDir, started_at: float | None
) -> RunResult:
    from lorahpo.resume import resume_point
    from lorahpo.trainer import EvalRecorder, EvalScorer, TrainingDiverged

    trainable, total = model.get_nb_trainable_parameters()
    log.info(
        "%s: %d train / %d validation rows, %s trainable of %s parameters",
        cfg.model.name,
        len(inputs.train_ds),
        len(inputs.val_ds),
        f"{trainable:,}",
        f"{total:,}",
    )
    plan = training_plan(len(inputs.train_ds), cfg.train, inputs.validate)
    groups = inputs.val_groups(cfg.data.question_column)
    subset = _eval_subset(cfg, inputs, groups)
    scorer = EvalScorer(groups, None if subset is None else groups[subset])
    objective = parse_objective(cfg.objective)  # checked before anything loaded
    resume = resume_point(rd, cfg, objective)  # an interrupted run of this config left one
    recorder = EvalRecorder(
        rd,
        plan,
        scorer,
        objective,
        history=resume.history if resume else None,
        best_logits=resume.best_logits if resume else None,
    )
    trainer = _trainer(cfg, inputs, model, rd, plan, scorer, recorder, subset)
    for record in recorder.records:  # the evaluations before the checkpoint, told again:
        report(record.to_json())  # a restarted sweep trial counts them from 1 again
    tracking.continue_run(rd.path, resume is not None)
    output = trainer.train(resume_from_checkpoint=str(resume.checkpoint) if resume else None)
    if recorder.diverged:
        bad = recorder.records[-1]
        raise TrainingDiverged(
            f"training diverged: validation log loss is {bad.eval_log_loss} at step "
            f"{bad.step} (train.lr={cfg.train.lr}). Lower train.lr or raise "
            "train.warmup_ratio."
        )
    # the best adapter (the Trainer has loaded it back) and only that: checkpoints go
    model.save_pretrained(rd.adapter_path, safe_serialization=True)
    inputs.tokenizer.save_pretrained(rd.adapter_path)
    shutil.rmtree(rd.checkpoints_path, ignore_errors=True)
    result = _result(cfg, inputs, output, recorder, resume, started_at)
    result.planned_evals = plan.planned_evals
    result.trainable_params, result.total_params = trainable, total
    if inputs.validate:
        best = recorder.best()
        _fill_best(result, best)
        rd.write_calibration(_calibration(best))
        logits = recorder.best_logits
        if logits is None:  # best before a resume whose checkpoint kept no logits
            trainer.predict(inputs.val_ds)  # the best adapter is loaded: the scorer keeps them
            logits = scorer.logits
        _write_predictions(rd, inputs, logits, cfg.data)
    return result


def _eval_subset(cfg: DictConfig, inputs: Inputs, groups):
    """Positions in the validation set of the train.eval_subset rows; None: whole fold."""
    share = cfg.train.eval_subset
    if share is None or not inputs.validate:
        return None
    labels = np.asarray(inputs.val_ds["labels"])
    subset = data_lib.subset_by_question(labels, groups, float(share), int(cfg.data.seed))
    if len(subset) == 0:
        log.warning(
            "train.eval_subset=%s: the validation fold has too few questions to take that "
            "share of them; every evaluation uses the whole fold",
            share,
        )
        return None
    log.info(
        "evaluations before the last: %d of %d validation rows (train.eval_subset=%s)",
        len(subset),
        len(labels),
        share,
    )
    return subset


def _trainer(cfg: DictConfig, inputs: Inputs, model, rd: RunDir, plan, scorer, recorder, subset):
    """The HF Trainer of this run, with the project's callbacks and quiet progress."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from lorahpo.resume import ResumeMarks
    from lorahpo.trainer import (
        EvalSchedule,
        QuietProgress,
        RunParams,
        classifier_trainer,
        training_arguments,
    )

    validate = inputs.validate
    trainer = classifier_trainer(
        cfg,
        inputs,
        model,
        training_arguments(cfg, rd.checkpoints_path, plan.eval_steps, recorder.objective, validate),
        eval_dataset=inputs.val_ds if validate else None,
        subset_ds=None if subset is None else inputs.val_ds.select(subset),
        compute_metrics=scorer if validate else None,
        # the recorder after ResumeMarks: a checkpoint is marked usable before its evaluation
        # is reported (a scheduler may pause the trial there, to resume from that checkpoint)
        callbacks=[EvalSchedule(plan), ResumeMarks(cfg, recorder), recorder]
        + ([RunParams(cfg, rd.path)] if cfg.logger.report_to else []),
    )
    trainer.pop_callback(PrinterCallback)  # raw metric dicts: EvalRecorder logs them readably
    if trainer.pop_callback(ProgressCallback):
        trainer.add_callback(QuietProgress)
    return trainer


def _result(cfg: DictConfig, inputs: Inputs, output, recorder, resume, started_at) -> RunResult:
    """How the run went: steps, times and tokens/s of this process's part (a resumed run
    trained only the rest)."""
    import torch

    start_step = resume.step if resume else 0
    this_part = recorder.records[len(resume.history) if resume else 0 :]
    eval_time = sum(r.metrics.get("eval_runtime", 0.0) for r in this_part)
    train_time = max(output.metrics["train_runtime"] - eval_time, 1e-9)
    train_tokens = int(inputs.train_lengths.sum()) * cfg.train.epochs
    part = (output.global_step - start_step) / max(output.global_step, 1)
    started = recorder.train_started_at
    return RunResult(
        status=Status.COMPLETED,
        objective_name=cfg.objective,
        validated=inputs.validate,
        train_rows=len(inputs.train_ds),
        evals_done=len(recorder.records),
        best_step=output.global_step,
        best_epoch=cfg.train.epochs,
        train_steps=output.global_step,
        train_time_s=round(train_time, 2),
        eval_time_s=round(eval_time, 2),
        startup_s=round(started - started_at, 2) if started_at and started else None,
        train_tokens=int(train_tokens),
        train_tokens_per_s=round(train_tokens * part / train_time, 1),
        resumed_from_step=start_step or None,
        model_path=inputs.model_path,
        peak_gpu_memory_mb=(
            round(torch.cuda.max_memory_allocated() / 2**20, 1)
            if torch.cuda.is_available()
            else None
        ),
    )


def _fill_best(result: RunResult, best: EvalRecord) -> None:
    """The best evaluation's figures, under the `best_*` names of result.json."""
    result.objective = best.objective
    result.best_step, result.best_epoch = best.step, best.epoch
    result.best_log_loss, result.best_accuracy = best.eval_log_loss, best.eval_accuracy
    result.temperature = best.metrics.get("eval_temperature")
    for method in scoring.METHODS[1:]:
        for base in ("log_loss", "accuracy"):
            name = scoring.metric_name(base, method)
            result.best_metrics[f"best_{name}"] = best.metrics.get(f"eval_{name}")


def _calibration(best: EvalRecord) -> dict:
    """What inference needs to post-process like the best evaluation did."""
    return {
        "temperature": best.metrics.get("eval_temperature"),
        "fitted_on": "the validation fold's logits at the best evaluation",
        "val_log_loss": {
            m: best.get("eval_" + scoring.metric_name("log_loss", m)) for m in scoring.METHODS
        },
        "step": best.step,
    }


def _write_predictions(rd: RunDir, inputs: Inputs, logits, data_cfg: DictConfig) -> None:
    """The best evaluation's logits per validation row: what inference must reproduce, and
    what calibration is fitted on."""
    rows = inputs.val_rows
    out = inputs.frame.iloc[rows][[data_cfg.question_column, data_cfg.label_column]].copy()
    out.insert(0, "row", rows)
    for k in range(logits.shape[1]):
        out[f"logit_{k}"] = logits[:, k]
    out.sort_values("row").to_csv(rd.predictions_path, index=False)


def _hydra_run_dir() -> str:
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get().runtime.output_dir if HydraConfig.initialized() else os.getcwd()
