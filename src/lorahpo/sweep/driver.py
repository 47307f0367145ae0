"""The sweep driver behind the Hydra sweeper: preflight -> lock -> Ray -> Tuner -> finish.

It never trains anything: it chooses overrides, starts trials of the same task on Ray with
the hardware's resources, listens to their reports and writes the sweep summary.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from lorahpo import ensemble, tracking
from lorahpo.errors import UserError
from lorahpo.rundir import Status
from lorahpo.sweep import budget, config_failure, ledger, searchers
from lorahpo.sweep.budget_gate import BudgetWatch, gate
from lorahpo.sweep.console import say
from lorahpo.sweep.lock import hold_sweep_lock
from lorahpo.sweep.preflight import SweepPlan, check_resources, preflight
from lorahpo.sweep.progress import TrialEvents
from lorahpo.sweep.ray_session import failure_config, start_ray, stop_strays, tune_callbacks
from lorahpo.sweep.searchers import BuildContext
from lorahpo.sweep.study import importances
from lorahpo.sweep.summary import LiveSummary, summarize
from lorahpo.sweep.table import best_start_point, collect_trials, format_table
from lorahpo.sweep.trial import TrialSpec, run_trial
from lorahpo.sweep.warm_start import evaluated_points, warm_start

TUNE_DIR = ".tune"  # Ray Tune's own experiment state, inside the sweep directory


def run_sweep(
    hydra_context,
    task_function,
    config: DictConfig,
    arguments: list[str],
    resume: bool,
    warm_trials: bool,
    status_every: float,
) -> float:
    """Run (or resume) the sweep; return the best objective. Exits non-zero if none completed.
    The last three are the sweeper's settings (LorahpoSweeperConf; `status_every`: seconds)."""
    began = time.time()  # a time budget counts from here (a learning-rate range test too)
    plan = preflight(
        config, arguments, lambda o: hydra_context.config_loader.load_sweep_config(config, o)
    )
    for note in plan.notes:
        say(f"note: {note}")
    take_directory(plan.sweep_dir, config, resume)
    timer = start_budget(plan, began)  # before Ray: a resume needs some of its budget left
    plan.fixed += tracking.start_sweep(config, plan.sweep_dir)  # trials attach to its run
    nodes = start_ray(config.hardware, plan.sweep_dir)
    note = check_resources(config.hardware, nodes)
    if note:
        say(f"note: {note}")
    trainable = make_trainable(hydra_context, task_function, config, plan, warm_trials)
    say(
        f"{plan.searcher.name} x {config.scheduler.name}: {planned(plan)}, "
        f"{config.hardware.concurrency} at once, up to {plan.max_evals} evaluations each, "
        f"{plan.objective.direction} {plan.objective.metric} -> {plan.sweep_dir}"
    )
    live = LiveSummary(plan.sweep_dir, plan.space, plan.objective)  # rewritten as trials end
    try:
        run_trials(plan, config, trainable, resume, status_every, timer)
    finally:
        live.close()
        budget.activate(None)
    stopped_by = config_failure.read(plan.sweep_dir)
    if stopped_by is not None:
        summarize(plan.sweep_dir, plan.space, plan.objective)  # trials.csv says what ran
        raise UserError(config_failure.explain(stopped_by, config, plan.space, plan.sweep_dir))
    return finish(plan, config)


def planned(plan: SweepPlan) -> str:
    """`16 trials`, `3:00:00 of trials`, `up to 16 trials in 3:00:00`."""
    if plan.time_budget_s is None:
        return f"{plan.size} trials"
    span = budget.clock(plan.time_budget_s)
    return f"up to {plan.size} trials in {span}" if plan.size else f"{span} of trials"


def take_directory(sweep_dir: Path, config: DictConfig, resume: bool) -> None:
    """Hold the sweep directory's lock (no other driver changes it from now on); a new sweep
    must not land on an old one; a resume first stops what a killed driver left running."""
    hold_sweep_lock(sweep_dir)
    if (sweep_dir / TUNE_DIR).exists() and not resume:
        raise UserError(
            f"{sweep_dir} already holds a sweep. Resume it with the same command "
            "plus hydra.sweeper.resume=true, or choose another hydra.sweep.dir."
        )
    if resume:
        stop_strays(sweep_dir)
    OmegaConf.save(config, sweep_dir / "multirun.yaml")


def make_trainable(hydra_context, task_function, config: DictConfig, plan: SweepPlan, warm: bool):
    """The trial function with what every trial needs, and the hardware's resources."""
    from hydra.core.singleton import Singleton
    from ray import tune

    spec = TrialSpec(
        hydra_context,
        task_function,
        config,
        Singleton.get_state(),
        plan.fixed,
        str(plan.sweep_dir),
        str(plan.root),
        plan.objective,
        warm,
    )
    hw = config.hardware
    resources = {"cpu": hw.cpus_per_trial, "gpu": hw.gpus_per_trial}
    return tune.with_resources(tune.with_parameters(run_trial, spec=spec), resources)


def run_trials(
    plan: SweepPlan,
    config: DictConfig,
    trainable,
    resume: bool,
    every: float,
    timer: budget.Budget | None,
):
    """Finish what an interrupted run had planned (finished trials are kept), then start the
    trials still missing: a new sweep, or more trials for one whose search continues from its
    history (a grid is one pass over every combination), while the time budget lasts."""
    from ray import tune

    try:
        stages = sorted(plan.sweep_dir.glob(f"{TUNE_DIR}*"), key=lambda p: p.stat().st_mtime)
        if resume and stages and tune.Tuner.can_restore(str(stages[-1])):
            restored = tune.Tuner.restore(
                str(stages[-1]),
                trainable,
                resume_unfinished=True,
                resume_errored=False,
                restart_errored=False,
            )
            fit(restored)
        done = len(ledger.trial_numbers(plan.sweep_dir))
        interrupted = (collect_trials(plan.sweep_dir, [])["status"] == Status.INTERRUPTED).any()
        more = plan.size is None or done < plan.size
        in_time = timer is None or (not timer.ended and timer.allows_new_trial())
        if more and in_time and not interrupted:
            name = TUNE_DIR if not done else f"{TUNE_DIR}-{done}"
            fit(new_tuner(plan, config, trainable, name, done, every))
    finally:
        if timer is not None:
            timer.save()


def start_budget(plan: SweepPlan, began: float) -> budget.Budget | None:
    """This run's share of the sweep's time budget (the one the searcher's gate and the
    callbacks consult from now on); a resume needs some left."""
    budget.activate(None)  # none left over from an earlier sweep in this process
    if plan.time_budget_s is None:
        return None
    timer = budget.Budget(plan.sweep_dir, plan.time_budget_s, plan.milestone, began)
    if timer.left() <= 0:
        raise UserError(
            f"search.time_budget={budget.clock(plan.time_budget_s)} is spent: the sweep in "
            f"{plan.sweep_dir} has run {budget.clock(timer.spent_before)}. Resume it with a "
            "larger search.time_budget to continue its paused trials and start more."
        )
    budget.activate(timer)
    return timer


def new_tuner(plan: SweepPlan, config: DictConfig, trainable, name: str, done: int, every: float):
    """A Tuner for the trials not yet run; a sweep that continues (done > 0) does not rerun its
    start points and warm-starts from its own completed trials."""
    from ray import tune

    hw, spec = config.hardware, plan.searcher
    context = BuildContext(
        config.search,
        plan.space,
        plan.objective,
        hw.concurrency,
        plan.sweep_dir,
        [] if done else plan.points,
    )
    searcher, param_space = searchers.build(context)
    tell_history(searcher, plan, done)
    callback = TrialEvents(plan.sweep_dir, plan.size, hw.concurrency, plan.objective, every)
    # a grid: every combination once; -1: new trials until the time budget ends
    samples = 1 if spec.exhaustive else (-1 if plan.size is None else plan.size - done)
    return tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(
            search_alg=gate(searcher, hw.concurrency),  # also holds it to hw.concurrency
            scheduler=plan.scheduler,
            num_samples=samples,
            reuse_actors=True,
            trial_dirname_creator=lambda trial: trial.trial_id,  # short folder names
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=str(plan.sweep_dir),
            callbacks=[callback, BudgetWatch(), *tune_callbacks()],
            failure_config=failure_config(plan.max_retries),
            stop=config_failure.StopOnConfigError(plan.sweep_dir),
            verbose=0,
        ),
    )


def tell_history(searcher: Any, plan: SweepPlan, done: int) -> None:
    """Warm start: earlier sweeps' results, and a continued sweep's own (unless the searcher
    restores its own history)."""
    told = plan.warm_points
    if done and not plan.searcher.keeps_own_history:
        told = told + evaluated_points([plan.sweep_dir], plan.space)[0]
    if not told:
        return
    taken = warm_start(searcher, plan.searcher, told)
    skipped = f", {plan.warm_skipped} outside the space skipped" if plan.warm_skipped else ""
    why = "" if taken else f" (search={plan.searcher.name} does not learn from them)"
    say(f"warm start: the searcher was told {taken} earlier trial(s){skipped}{why}")


def fit(tuner) -> None:
    """Run the Tuner; SIGTERM stops it as Ctrl-C does (an interrupted sweep can resume)."""
    previous = signal.signal(signal.SIGTERM, lambda *_: os.kill(os.getpid(), signal.SIGINT))
    # a failed trial's traceback is in its error.txt; progress lines name the file
    logging.getLogger("ray.tune").setLevel(logging.CRITICAL)
    warnings.filterwarnings("ignore", module="optuna")  # re-reports of a resumed trial
    try:
        tuner.fit()
    finally:
        signal.signal(signal.SIGTERM, previous)


def finish(plan: SweepPlan, config: DictConfig) -> float:
    """The final summary, the table on the console, the exit status."""
    keys, objective = list(plan.space), plan.objective
    trials, best = summarize(plan.sweep_dir, plan.space, objective)
    print(format_table(trials, keys, objective=objective))
    if plan.time_budget_s is not None:
        print(budget.bought(plan.sweep_dir, trials["status"].value_counts().to_dict()))
    start = best_start_point(trials, keys, plan.points, objective)
    # a stop signal between trials leaves no trial unfinished, only some never started
    short = plan.time_budget_s is None and len(trials) < plan.size
    interrupted = (trials["status"] == Status.INTERRUPTED).any() or short
    tracking.end_sweep(config, trials, None if best is None else dict(best), bool(interrupted))
    if interrupted:
        print(
            "\nthe sweep was interrupted: rerun the same command with hydra.sweeper.resume=true"
            f" (and hydra.sweep.dir={plan.sweep_dir}) to finish it.",
            file=sys.stderr,
        )
        raise SystemExit(130)
    if best is None or not (trials["status"] == Status.COMPLETED).any():
        why = f"see the error files listed in {plan.sweep_dir}/trials.csv"
        if (trials["status"] == Status.PAUSED).any():
            why = "the paused ones continue on a resume with a larger search.time_budget"
        print(f"error: no trial completed; {why}.", file=sys.stderr)
        raise SystemExit(1)
    if start is not None:
        gain = abs(start["objective"] - best["objective"])
        print(
            f"\nbest start point: trial {int(start['number'])}, objective "
            f"{start['objective']:.4f}; the search improved on it by {gain:.4f}"
        )
    mattered = importances(plan.sweep_dir)
    if mattered:
        done = int((trials["status"] == Status.COMPLETED).sum())
        print(f"\nwhich hyperparameters mattered ({objective.metric}, fANOVA, {done} trials):")
        for key, share in mattered.items():
            print(f"  {key:<24} {share:.2f}")
    if config.search.ensemble == "auto":
        try:
            print("\n" + ensemble.build(plan.sweep_dir, objective)[1])
        except UserError as e:
            print(f"\nno ensemble: {e}")
    print(
        f"\nbest: trial {int(best['number'])}, objective {best['objective']:.4f} "
        f"({objective.metric}, {best['run_dir']})\nretrain it: python train.py --config-dir "
        f"{plan.sweep_dir} experiment=best\nall trials: {plan.sweep_dir / 'trials.csv'}"
    )
    return float(best["objective"])
