"""The HF Trainer as this project uses it: the training arguments, the Trainer subclass, and
the callbacks that record and report each evaluation (the plan of steps and evaluations is in
`lorahpo.plan`).

Callbacks, not forks of the training loop: everything a run records goes through
`EvalRecorder`, which writes `metrics.jsonl` and forwards each evaluation to `lorahpo.report`.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import numpy as np
from omegaconf import DictConfig
from torch.utils.data import SequentialSampler
from transformers import TrainerCallback, TrainingArguments
from transformers.trainer_callback import ProgressCallback

from lorahpo import scoring, tracking
from lorahpo.batching import PooledLengthSampler
from lorahpo.compat.transformers_trainer import TrainerHooks
from lorahpo.errors import UserError
from lorahpo.objective import Objective
from lorahpo.plan import TrainingPlan
from lorahpo.report import report
from lorahpo.rundir import EvalRecord, RunDir, deciding

log = logging.getLogger(__name__)


class TrainingDiverged(UserError):
    """The validation loss became NaN or infinite."""


def training_arguments(
    cfg: DictConfig,
    output_dir: Path,
    eval_steps: int,
    objective: Objective,
    validate: bool = True,
) -> TrainingArguments:
    """HF `TrainingArguments` from the `train` and `hardware` config groups; the best
    checkpoint is the best `objective`."""
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
        # a full checkpoint (optimizer, scheduler, RNG too) at every evaluation, so that an
        # interrupted run continues from its last one; lorahpo.resume keeps the latest and
        # the best (the Trainer's rotation would delete the previous one before the new one
        # is complete), and the run removes both when it ends
        save_strategy="steps",
        save_steps=eval_steps,
        save_total_limit=None,
        save_only_model=False,
        metric_for_best_model=objective.metric if validate else None,
        greater_is_better=objective.maximise,
        load_best_model_at_end=validate,
        # `pooled` batching is our own sampler (InOrderEvalTrainer); HF's for the other two
        train_sampling_strategy="group_by_length" if t.batching == "length" else "random",
        seed=cfg.seed,
        data_seed=cfg.seed,
        use_cpu=hw.device == "cpu",
        bf16=hw.precision == "bf16",
        optim=hw.optim,
        activation_checkpointing=bool(hw.gradient_checkpointing),
        dataloader_num_workers=0,
        report_to=list(cfg.logger.report_to) or "none",
        run_name=output_dir.parent.name,  # the run directory's name: the trial number in a sweep
        disable_tqdm=not cfg.progress_bar,
    )


class InOrderEvalTrainer(TrainerHooks):
    """The HF Trainer with `pooled` training batches (lorahpo.batching) and evaluation in
    dataset order. With length grouping on, HF's Trainer also shuffles evaluation batches by
    length; our validation set is already sorted by length, and its predictions must line up
    with its rows (val_predictions.csv).

    `pool_batches`: batches per length-sorted pool (None: the sampler TrainingArguments name);
    `train_lengths`: tokens per training row, for the pools. `subset_ds`: the rows the
    evaluations before the last use (train.eval_subset). Whether the evaluation under way is
    on them is the `EvalScorer`'s `subset` (it picks the rows' questions by it, the recorder
    marks the record by it); this trainer alone sets it, and an evaluation on the subset
    never becomes the best checkpoint.
    """

    def __init__(
        self,
        *args,
        pool_batches: int | None = None,
        train_lengths=None,
        subset_ds=None,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.pool_batches = pool_batches  # None: the sampler TrainingArguments name
        self.train_lengths = train_lengths  # tokens per training example, if known
        self.subset_ds = subset_ds  # evaluations before the last use these rows
        if subset_ds is not None and not isinstance(self.compute_metrics, EvalScorer):
            raise TypeError("subset_ds needs an EvalScorer as compute_metrics")

    def _on_subset(self, subset: bool) -> None:
        if self.subset_ds is not None:
            self.compute_metrics.subset = subset

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix="eval"):
        subset = (
            eval_dataset is None
            and self.subset_ds is not None
            and self.state.global_step < self.state.max_steps
        )
        self._on_subset(subset)
        rows = self.subset_ds if subset else eval_dataset
        return super().evaluate(rows, ignore_keys, metric_key_prefix)

    def predict(self, test_dataset, *args, **kwargs):
        self._on_subset(False)  # after a run stopped at a subset evaluation, too
        return super().predict(test_dataset, *args, **kwargs)

    def counts_for_best(self) -> bool:
        return not getattr(self.compute_metrics, "subset", False)

    def train_sampler(self, dataset):
        if self.pool_batches is None:
            return None
        lengths = self.train_lengths
        if lengths is None or len(lengths) != len(dataset):
            lengths = [len(x) for x in dataset["input_ids"]]
        return PooledLengthSampler(
            lengths,
            self.args.train_batch_size * self.args.gradient_accumulation_steps,
            self.pool_batches,
            self.args.data_seed if self.args.data_seed is not None else self.args.seed,
        )

    def eval_sampler(self, dataset):
        return SequentialSampler(dataset) if dataset is not None else None


def classifier_trainer(cfg: DictConfig, inputs, model, args: TrainingArguments, **kwargs):
    """The run's `InOrderEvalTrainer` on its training rows, with the batching and padding
    `cfg` asks for; `kwargs` go to the Trainer (evaluation set, metrics, callbacks)."""
    from transformers import DataCollatorWithPadding

    return InOrderEvalTrainer(
        model=model,
        args=args,
        train_dataset=inputs.train_ds,
        data_collator=DataCollatorWithPadding(
            inputs.tokenizer, pad_to_multiple_of=8 if cfg.hardware.device == "cuda" else None
        ),
        processing_class=inputs.tokenizer,
        pool_batches=int(cfg.train.pool_batches) if cfg.train.batching == "pooled" else None,
        train_lengths=inputs.train_lengths,
        **kwargs,
    )


class EvalScorer:
    """`Trainer` `compute_metrics` hook: every method's log loss (`scoring.score`), keeping the
    last evaluation's logits so the best one's can be saved without another pass.

    `groups`: the question of each validation row, in evaluation order (enables the
    post-processed metrics); `subset_groups` those of the train.eval_subset rows, used while
    `subset` (set by `InOrderEvalTrainer` for each evaluation).
    """

    def __init__(
        self, groups: np.ndarray | None = None, subset_groups: np.ndarray | None = None
    ) -> None:
        self.groups, self.subset_groups = groups, subset_groups
        self.subset = False
        self.logits: np.ndarray | None = None

    def __call__(self, eval_pred) -> dict[str, float]:
        logits = eval_pred.predictions
        if isinstance(logits, tuple):
            logits = logits[0]
        self.logits = np.asarray(logits, dtype=np.float64)
        groups = self.subset_groups if self.subset else self.groups
        return scoring.score(self.logits, eval_pred.label_ids, groups)


class EvalRecorder(TrainerCallback):
    """Append one `EvalRecord` per evaluation to `metrics.jsonl` and send it through `report`
    (once the evaluation's checkpoint is saved, where one is).

    A non-finite validation loss stops training at once: the run is failed, never scored.

    `history`: the evaluations a resumed run did before its checkpoint (`metrics.jsonl` is
    cut back to them), with the best one's logits.
    """

    def __init__(
        self,
        run_dir: RunDir,
        plan: TrainingPlan,
        scorer: EvalScorer,
        objective: Objective,
        history: list[EvalRecord] | None = None,
        best_logits: np.ndarray | None = None,
    ) -> None:
        self.run_dir, self.plan = run_dir, plan
        self.planned_evals = plan.planned_evals
        self.objective = objective
        self.scorer = scorer
        self.best_logits = best_logits
        self.records: list[EvalRecord] = list(history or [])
        self.last_train_loss: float | None = None
        self.diverged = False
        self.train_started_at: float | None = None
        self.unreported: EvalRecord | None = None  # until its checkpoint is saved
        if self.records:
            run_dir.write_metrics(self.records)
        else:
            run_dir.metrics_path.unlink(missing_ok=True)

    def is_best_last(self) -> bool:
        """Whether the latest evaluation is the best so far (and of the whole fold)."""
        if not self.records or self.records[-1].objective is None or self.records[-1].subset:
            return False
        best = self.objective.best(r.objective for r in deciding(self.records))
        return best is not None and self.objective.better(self.records[-1].objective, best)

    def on_train_begin(self, args, state, control, **kwargs):
        self.train_started_at = time.time()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.last_train_loss = float(logs["loss"])

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        metrics = dict(metrics or {})
        record = EvalRecord(
            eval=self.plan.slot(state.global_step),  # with train.eval_at, some are skipped
            step=state.global_step,
            epoch=round(float(state.epoch or 0.0), 4),
            objective=metrics.get(self.objective.eval_key),
            eval_log_loss=metrics.pop("eval_log_loss", None),
            eval_accuracy=metrics.pop("eval_accuracy", None),
            train_loss=self.last_train_loss,
            planned_evals=self.planned_evals,
            subset=self.scorer.subset,
            time=round(time.time(), 3),
            train_started_at=round(self.train_started_at or 0.0, 3),
            metrics={k: v for k, v in metrics.items() if k.startswith("eval_")},
        )
        self.records.append(record)
        self.run_dir.append_metrics(record)
        log.info(
            "eval %d/%d  step %d  epoch %.2f  log_loss %.4f  accuracy %.4f%s",
            record.eval,
            self.planned_evals,
            record.step,
            record.epoch,
            record.eval_log_loss,
            record.eval_accuracy,
            "  (train.eval_subset's rows)" if record.subset else "",
        )
        losses = (record.objective, record.eval_log_loss)
        if any(x is None or not math.isfinite(x) for x in losses):
            self.diverged = True
            control.should_training_stop = True
            return control
        if self.is_best_last():
            self.best_logits = self.scorer.logits
        if control.should_save:  # told once its checkpoint exists: a scheduler that pauses
            self.unreported = record  # the trial here resumes it from this evaluation
        else:
            report(record.to_json())
        return control

    def on_save(self, args, state, control, **kwargs):
        if self.unreported is not None:
            record, self.unreported = self.unreported, None
            report(record.to_json())
        return control

    def best(self) -> EvalRecord:
        return self.objective.best_record(deciding(self.records))


class EvalSchedule(TrainerCallback):
    """Skips the evaluations `train.eval_at` leaves out (and the checkpoint that goes with
    each): a sweep's trials evaluate only where the scheduler decides, and at their end. Runs
    after the Trainer's own flow callback, which asks for an evaluation every eval_steps."""

    def __init__(self, plan: TrainingPlan) -> None:
        self.plan = plan

    def on_step_end(self, args, state, control, **kwargs):
        if control.should_evaluate and not self.plan.evaluates(state.global_step, state.max_steps):
            control.should_evaluate = control.should_save = False
        return control


class QuietProgress(ProgressCallback):
    """HF's progress bars without the raw metric dicts it prints at every log and evaluation
    (each evaluation is logged once, readably, by `EvalRecorder`)."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        return control


class RunParams(TrainerCallback):
    """Adds the run's own hyperparameters to the tracker's run (the Trainer's callbacks log
    the TrainingArguments and the model config, not LoRA's settings or the data's)."""

    def __init__(self, cfg: DictConfig, run_dir: Path) -> None:
        self.params = tracking.run_params(cfg)
        self.report_to = list(cfg.logger.report_to)
        self.run_dir = run_dir

    def on_train_begin(self, args, state, control, **kwargs):
        if "mlflow" in self.report_to:
            import mlflow

            if mlflow.active_run() is not None:
                mlflow.log_params({f"cfg.{k}": v for k, v in self.params.items()})
                tracking.remember_run(self.run_dir)  # a resumed run continues this one
        if "wandb" in self.report_to:
            import wandb

            if wandb.run is not None:
                wandb.config.update(self.params, allow_val_change=True)
