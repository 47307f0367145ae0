"""Everything a sweep checks before it starts Ray or any trial, and the plan it makes.

A space that does not compose, a real model without weights, a bad retry count, a scheduler
budget below the planned evaluations, a trial that no node can hold: each is one message
before the first trial (a request the machine cannot meet never waits silently). Nothing here
needs a running Ray: the resource check takes the nodes' resources as a list. The plan's
learning-rate range may come from a range test (`search.lr_range=auto`, lorahpo.sweep.
lr_range), run here once per sweep: the start points and the searchers see the final space.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from lorahpo import modeling, tracking
from lorahpo.errors import UserError, first_line
from lorahpo.objective import Objective, parse_objective
from lorahpo.plan import check_eval_subset
from lorahpo.sweep import lr_range, searchers
from lorahpo.sweep.budget import parse_duration
from lorahpo.sweep.schedulers import eval_milestones, first_milestone, make_scheduler
from lorahpo.sweep.searchers import SearcherSpec
from lorahpo.sweep.space import Param, build_space, start_points, trial_overrides
from lorahpo.sweep.warm_start import evaluated_points, sweep_dirs

Loader = Callable[[list[str]], DictConfig]  # overrides -> a trial's composed config
BUDGET_KEYS = ("train.epochs", "train.batch_size", "train.grad_accum", "train.eval_every")


@dataclass
class SweepPlan:
    """What the checks found: the space, the overrides every trial gets, the budgets."""

    sweep_dir: Path
    root: Path
    space: dict[str, Param]
    fixed: list[str]  # plain overrides every trial gets
    objective: Objective
    searcher: SearcherSpec
    size: int | None  # trials planned in all (None: as many as the time budget allows)
    time_budget_s: float | None  # search.time_budget, for the whole sweep
    milestone: int  # evaluations before the scheduler first judges a trial
    max_evals: int  # the most evaluations any trial does (the schedulers' budget)
    max_retries: int  # restarts of a trial whose worker was lost (hardware.max_retries)
    scheduler: Any  # the `scheduler` config group
    points: list[dict[str, Any]]  # start points
    warm_points: list[tuple[dict[str, Any], float]]  # earlier sweeps' results
    warm_skipped: int  # earlier sweeps' completed trials outside this space, left out
    notes: list[str]


def preflight(config: DictConfig, arguments: list[str], load: Loader) -> SweepPlan:
    """Check the sweep and plan it; raises UserError with the fix for anything wrong.
    `load(overrides)` composes a trial's config (Hydra's config loader, in a sweep)."""
    spec = searchers.get(config.search.algorithm)
    spec.check_installed()  # first: a missing extra is the cheapest thing to report
    root = Path.cwd()
    sweep_dir = Path(str(config.hydra.sweep.dir)).expanduser().resolve()
    space, fixed = build_space(config.search.space, arguments)
    # the trial's config must not depend on where Ray runs it
    fixed += [f"hydra.sweep.dir={sweep_dir}", f"paths.root={root}"]
    defaults = compose_check(load, space, fixed)
    modeling.check_hardware_settings(defaults.hardware)
    check_model_weights(defaults)
    tracking.check_logger(config)
    objective = parse_objective(config.objective)
    max_evals = planned_evals_upper_bound(defaults, space)
    budget = parse_duration(config.search.time_budget)
    space, lr_note = lr_range.narrow(config.search.lr_range, space, sweep_dir, defaults)
    if config.search.ensemble not in ("auto", "off"):
        raise UserError(
            f"search.ensemble={config.search.ensemble!r}: use auto (an ensemble of the "
            "sweep's trials at its end) or off."
        )
    points, notes = _start_points(config, spec, space, defaults)
    notes = [lr_note, *notes] if lr_note else notes
    warm_points, warm_skipped = evaluated_points(sweep_dirs(config.search.warm_start), space)
    rungs = eval_milestones(config.scheduler, max_evals)
    if rungs and not any(f.startswith("train.eval_at=") for f in fixed):
        fixed.append(f"train.eval_at=[{','.join(map(str, rungs))}]")
    share = config.scheduler.eval_subset
    check_eval_subset(share, "scheduler.eval_subset")
    if share is not None and not any(f.startswith("train.eval_subset=") for f in fixed):
        fixed.append(f"train.eval_subset={share}")  # the scheduler's decisions, on a subset
    return SweepPlan(
        sweep_dir=sweep_dir,
        root=root,
        space=space,
        fixed=fixed,
        objective=objective,
        searcher=spec,
        size=planned_size(config.search, spec, space, budget),
        time_budget_s=budget,
        milestone=first_milestone(config.scheduler, max_evals),
        max_evals=max_evals,
        max_retries=check_retries(config.hardware),
        scheduler=make_scheduler(config.scheduler, max_evals, objective, sweep_dir),
        points=points,
        warm_points=warm_points,
        warm_skipped=warm_skipped,
        notes=notes,
    )


def planned_size(search: DictConfig, spec: SearcherSpec, space, budget: float | None):
    """How many trials: a grid's every combination; else `search.n_trials`, which a time
    budget makes optional (a cap)."""
    if spec.exhaustive:
        return math.prod(len(p.values) for p in space.values())
    n = search.n_trials
    if n is None and budget is None:
        raise UserError(
            "search.n_trials=null needs a search.time_budget (e.g. search.time_budget=3h): "
            "give one, or a number of trials."
        )
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise UserError(f"search.n_trials={n!r}: must be a whole number >= 1, or null.")
    return n


def compose_check(load: Loader, space: dict[str, Param], fixed: list[str]) -> DictConfig:
    """Fail here, once, on a space that cannot compose (unknown key, bad value type); return
    a trial's config without the searched values."""
    sample = {k: (p.values[0] if p.is_choice else p.low) for k, p in space.items()}
    try:
        load(fixed + trial_overrides(sample))
    except Exception as e:
        raise UserError(
            f"the sweep's overrides do not compose with the config: {first_line(e)}"
        ) from None
    return load(fixed)


def _start_points(config: DictConfig, spec: SearcherSpec, space, defaults):
    if not spec.takes_start_points:
        notes = [f"search={spec.name} ignores search.start_points"]
        return [], notes if config.search.start_points else []
    return start_points(config.search.start_points, space, defaults)


def planned_evals_upper_bound(cfg: DictConfig, space: dict[str, Param]) -> int:
    """The most evaluations any trial of this space will do (the schedulers' budget);
    `cfg` is a trial's config without the searched values."""
    from lorahpo.data import load_frame, split_by_question
    from lorahpo.plan import training_plan

    frame = load_frame(cfg.data)
    n_train = len(
        split_by_question(frame, cfg.data.question_column, cfg.data.folds, cfg.data.val_fold)[0]
    )
    axes = []
    for key in BUDGET_KEYS:
        p = space.get(key)
        if p is None:
            axes.append([OmegaConf.select(cfg, key)])
        else:
            axes.append(list(p.values) if p.is_choice else [p.low, p.high])
    most = 0
    for combo in itertools.product(*axes):
        train = OmegaConf.create(dict(cfg.train))
        for key, value in zip(BUDGET_KEYS, combo, strict=True):
            train[key.split(".", 1)[1]] = value
        train.batch_size, train.grad_accum = int(train.batch_size), int(train.grad_accum)
        most = max(most, training_plan(n_train, train).planned_evals)
    return most


def check_model_weights(cfg: DictConfig) -> None:
    """A real model's weights must be found before any trial starts, not once per trial
    (the tiny model is built by its first trial)."""
    if cfg.model.builder == "tiny":
        return
    modeling.resolve_model_path(cfg.model, [], int(cfg.data.num_labels), 0, cfg.paths.cache_dir)


def check_retries(hw: DictConfig) -> int:
    """`hardware.max_retries`, checked before Ray starts (a bad value would otherwise end the
    sweep with a traceback once Ray is up)."""
    retries = hw.max_retries
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise UserError(
            f"hardware.max_retries={retries!r}: must be a whole number >= 0 (how many times a "
            "trial whose worker or node was lost runs again from its checkpoint; 0: never)."
        )
    return retries


def trials_that_fit(nodes: list[dict[str, float]], cpus: float, gpus: float) -> int:
    """How many trials of `cpus` CPUs and `gpus` GPUs the nodes' resources hold at once
    (a trial runs on one node)."""
    total = 0
    for res in nodes:
        fit = math.floor(res.get("CPU", 0) / cpus + 1e-9) if cpus > 0 else 10**6
        if gpus > 0:
            fit = min(fit, math.floor(res.get("GPU", 0) / gpus + 1e-9))
        total += fit
    return total


def check_resources(hw: DictConfig, nodes: list[dict[str, float]]) -> str | None:
    """Given the nodes' resources: a trial no node can hold is an error (Ray would wait for
    ever); a concurrency the cluster cannot reach is a note (returned), with the fix."""
    cpus, gpus = float(hw.cpus_per_trial), float(hw.gpus_per_trial)
    have = ", ".join(
        f"{res.get('CPU', 0):g} CPU{'s' * (res.get('CPU', 0) != 1)} / {res.get('GPU', 0):g} GPU"
        for res in nodes
    )
    fit = trials_that_fit(nodes, cpus, gpus)
    need = f"{cpus:g} CPU(s)" + (f" and {gpus:g} GPU(s)" if gpus else "")
    if fit == 0:
        fix = (
            "use hardware=cpu (or a machine or Ray cluster with GPUs)"
            if gpus and not any(res.get("GPU", 0) for res in nodes)
            else "lower hardware.cpus_per_trial / hardware.gpus_per_trial to fit a node"
        )
        raise UserError(
            f"hardware={hw.name}: each trial needs {need} (hardware.cpus_per_trial="
            f"{hw.cpus_per_trial}, hardware.gpus_per_trial={hw.gpus_per_trial}), and no node "
            f"of the Ray cluster has that much ({have}); no trial could ever start. {fix}."
        )
    if fit >= hw.concurrency:
        return None
    return (
        f"hardware.concurrency={hw.concurrency}, but the Ray cluster ({have}) holds {fit} "
        f"trial(s) of {need} at once: {fit} will run at a time. For more, lower "
        "hardware.cpus_per_trial"
        + (" (e.g. hardware.cpus_per_trial=1)" if cpus > 1 else "")
        + " or add nodes."
    )
