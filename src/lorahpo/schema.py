"""The typed schema of the config tree: which keys each config group has, their types, and
the values every option of a group shares.

`conf/train.yaml` extends `TrainSchema` (registered below as `train_schema`), so every option
of every group (`data=csv`, `scheduler=fifo`, a user's own `--config-dir` files) is merged
onto the same typed node: a key the code reads exists in every option, a misspelt key or a
value of the wrong type is an error at composition, and a run directory's `config.yaml` always
holds every key. Values that differ between options live in the option's YAML (a field here
is then MISSING, `???`: an option that leaves it out fails tests/test_schema.py); values that
options share, or that some options do not use, have their one default here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

SCHEMA_NAME = "train_schema"  # what conf/train.yaml's defaults list names first


@dataclass
class DataConfig:
    """`data=`: where the rows come from and how they are split and tokenised."""

    source: str = MISSING  # toy | csv
    train_path: str | None = None  # csv: the labelled CSV (data.train_path=...)
    test_path: str | None = None  # csv: the CSV inference predicts (infer.py)
    question_column: str = MISSING
    text_column: str = MISSING
    label_column: str = MISSING
    num_labels: int = MISSING  # classes (the reference task: 7)
    folds: int = MISSING  # GroupKFold folds, by question
    val_fold: int | None = MISSING  # null: train on every row, no validation
    max_length: int = MISSING  # tokens per row; longer rows are cut as `truncation` says
    # fields: a long row loses its question's end, then its response's middle, never the
    # template's text or the response's start and end | end: the tokenizer's plain cut
    truncation: str = "fields"
    template: str = MISSING  # how a row becomes text: {Question}, {Response}, ...
    n_questions: int | None = None  # toy: rows = num_labels x n_questions
    # the data seed, apart from the training seed: the toy rows, and which validation
    # questions the evaluations before a run's last use (train.eval_subset)
    seed: int = 0


@dataclass
class ModelConfig:
    """`model=`: the base model, its LoRA targets and its learning-rate range."""

    name: str = MISSING
    builder: str | None = None  # tiny: built locally under paths.cache_dir
    path: str | None = None  # a local folder (or pkg:<package>/<folder>); null: hub_id's cache
    hub_id: str | None = None  # looked up in the local Hugging Face cache, offline
    gguf_file: str | None = None  # a GGUF file in `path`, converted once under paths.cache_dir
    install: str | None = None  # how to install what the model needs, said when it is missing
    seed: int = 0  # weight initialisation of a built model (tiny)
    arch: dict[str, int] | None = None  # a built model's shape (tiny)
    template: str | None = None  # null: data.template
    default_lr: float = MISSING  # train.lr's default for this model
    lr_space: str = MISSING  # train.lr's range in sweeps (sweep grammar)
    lr_grid: str = MISSING  # train.lr's values in search=grid
    lora_target_modules: Any = MISSING  # module names, or all-linear
    trust_remote_code: bool = False
    allow_download: bool = False
    start_points: list[Any] = MISSING  # evaluated first by sweeps: `default`, or overrides


@dataclass
class HardwareConfig:
    """`hardware=`: device, precision, quantisation, and how many trials run where."""

    name: str = MISSING
    device: str = MISSING  # cpu | cuda
    precision: str = MISSING  # fp32 | bf16 (lorahpo.modeling.PRECISIONS)
    quantization: str = MISSING  # none | nf4 (lorahpo.modeling.QUANTIZATIONS)
    gradient_checkpointing: bool = MISSING
    optim: str = MISSING  # any Hugging Face optimizer name
    concurrency: int = MISSING  # trials at once in a sweep
    cpus_per_trial: Any = MISSING  # CPUs Ray gives each trial (a number)
    gpus_per_trial: Any = MISSING  # GPUs Ray gives each trial (0.5: two trials per GPU)
    max_retries: int = 1  # a trial whose worker or node died runs again from its checkpoint
    ray_address: str | None = None  # HOST:PORT of a running Ray cluster; null: a local one


@dataclass
class SearchConfig:
    """`search=`: the searcher (`algorithm`, one per conf/search/<name>.yaml) and what every
    searcher shares."""

    algorithm: str = MISSING
    space: dict[str, Any] = field(default_factory=dict)  # search/space=: the sweep grammar
    n_trials: int | None = 16  # trials in all; with a time_budget, a cap (null: none)
    # the sweep's wall-time budget (3h, 45m, 1h30m; a number: seconds), across resumes: no
    # trial starts that could not reach its first scheduler milestone in it
    time_budget: Any = None
    lr_range: str | None = None  # auto: a learning-rate range test sets train.lr's range
    seed: int | None = 0  # the searcher's seed
    n_initial: int = 5  # random trials before a model-based searcher proposes
    # evaluated first, the searcher told their results: `default` is what `python train.py`
    # runs; the 7-8B model configs add the reference task's published best
    start_points: Any = "${model.start_points}"
    # earlier sweeps (their hydra.sweep.dir, comma-separated) whose trials the searcher is told
    warm_start: str | None = None
    # auto: at the end of the sweep, an ensemble of its trials (lorahpo.ensemble) | off
    ensemble: str = "off"
    constant_liar: bool = True  # tpe: running trials count as bad (no duplicate proposals)
    multivariate: bool = True  # tpe: model the parameters jointly


@dataclass
class SchedulerConfig:
    """`scheduler=`: early stopping. Budgets are in evaluations (one per train.eval_every
    epochs); a scheduler reads only the keys it uses."""

    name: str = MISSING  # fifo | asha | hyperband | median
    grace_period: int = 1  # asha, median: evaluations before a trial can be stopped
    reduction_factor: float = 2.0  # asha, hyperband: 1/reduction_factor go on at a rung
    max_t: int | None = None  # null: the planned evaluations of the longest trial
    min_samples: int = 3  # median: trials needed before the rule applies
    # asha: milestones (trials evaluate only where ASHA decides, and at their end) | every
    evaluate: str = "every"
    # a share of the validation questions the rung evaluations use (null: the whole fold)
    eval_subset: Any = None  # a number in (0, 1), or null
    # asha: promotion (a trial below the cut pauses, to resume if promoted) | stopping
    type: str = "promotion"


@dataclass
class LoggerConfig:
    """`logger=`: experiment tracking through the Trainer's `report_to`."""

    name: str = MISSING  # none | tensorboard | mlflow | wandb
    report_to: list[str] = MISSING
    log_dir: str | None = None  # tensorboard: one folder for every run (null: each run's own)
    tracking_uri: str | None = None  # mlflow: the store
    experiment_name: str | None = None  # mlflow
    parent_run_id: str | None = None  # mlflow: set by a sweep for its trials
    project: str | None = None  # wandb
    mode: str | None = None  # wandb: offline | online
    group: str | None = None  # wandb: set by a sweep for its trials


@dataclass
class LoraConfig:
    """`lora.*`: the adapter (PEFT's LoraConfig)."""

    r: int = MISSING  # rank of the update matrices
    alpha: Any = MISSING  # a number: the update is scaled by alpha / r; null: r x alpha_ratio
    alpha_ratio: Any = MISSING  # a number: alpha as a multiple of r
    dropout: float = MISSING  # probability, 0..1, on the adapter's input
    target_modules: Any = MISSING  # module names (a list) or PEFT's all-linear
    bias: str = MISSING  # none | all | lora_only: which biases train


@dataclass
class TrainingConfig:
    """`train.*`: the optimisation (the HF Trainer's TrainingArguments)."""

    lr: float = MISSING  # peak learning rate (AdamW), after warm-up
    epochs: Any = MISSING  # passes over the training rows: a float is allowed
    batch_size: int = MISSING  # rows per forward pass, per device
    grad_accum: int = MISSING  # forward passes per optimizer step
    weight_decay: float = MISSING  # AdamW's decoupled decay, per step x lr
    warmup_ratio: float = MISSING  # share of the optimizer steps, 0..1
    lr_scheduler: str = MISSING  # any HF scheduler name: cosine, linear, ...
    label_smoothing: float = MISSING  # 0..1, share of the target spread over the classes
    eval_every: float = MISSING  # in epochs
    eval_at: list[int] | None = MISSING  # which evaluations run (null: every one)
    eval_subset: Any = MISSING  # a share in (0, 1), or null
    eval_batch_size: int = MISSING  # rows per forward pass in evaluations
    max_grad_norm: float = MISSING  # gradient clipping (L2 norm over every trained weight)
    batching: str = MISSING  # random | length | pooled
    pool_batches: int = MISSING  # pooled: batches per pool that is sorted by length


@dataclass
class EnsembleConfig:
    """`experiment=ensemble` (a sweep's lorahpo.ensemble): the members a run retrains, each
    {trial, weight, params: {dotted key: value}}; empty: a run trains one adapter."""

    members: list[Any] = field(default_factory=list)


@dataclass
class PathsConfig:
    root: str = MISSING
    cache_dir: str = MISSING


@dataclass
class TrainSchema:
    """The whole training config (`conf/train.yaml`): one typed node per config group."""

    seed: int = MISSING  # the training seed (weights' init, dropout, row order)
    progress_bar: bool = MISSING
    objective: str = MISSING  # lorahpo.objective: log_loss, accuracy, log_loss_assignment, ...
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    hardware: HardwareConfig = field(default_factory=HardwareConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    train: TrainingConfig = field(default_factory=TrainingConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    ensemble: EnsembleConfig = field(default_factory=EnsembleConfig)


GROUPS: dict[str, type] = {  # a config group's name -> its schema
    "data": DataConfig,
    "model": ModelConfig,
    "hardware": HardwareConfig,
    "search": SearchConfig,
    "scheduler": SchedulerConfig,
    "logger": LoggerConfig,
    "lora": LoraConfig,
    "train": TrainingConfig,
    "paths": PathsConfig,
    "ensemble": EnsembleConfig,
}


def register() -> None:
    """Put the schema in Hydra's ConfigStore (done on `import lorahpo`, before any compose)."""
    ConfigStore.instance().store(name=SCHEMA_NAME, node=TrainSchema, provider="lorahpo")


def group_node(group: str, **values: Any) -> DictConfig:
    """A typed node of one group with these values: what code that takes a group's config
    gets, for callers that build one by hand."""
    return OmegaConf.merge(OmegaConf.structured(GROUPS[group]), values)


def typed(cfg: DictConfig) -> DictConfig:
    """A saved run config (a run directory's `.hydra/config.yaml`) on the schema: keys added
    since it was written get their defaults."""
    return OmegaConf.merge(OmegaConf.structured(TrainSchema), cfg)
