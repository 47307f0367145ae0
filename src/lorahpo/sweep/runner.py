"""The sweep driver behind the Hydra sweeper: space -> Ray Tune `Tuner` -> summary.

It never trains anything: it chooses overrides, starts trials of the same task on Ray with
the hardware's resources, listens to their reports and writes the sweep summary.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import signal
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from ray.tune import Callback

from lorahpo import tracking
from lorahpo.errors import UserError, first_line
from lorahpo.rundir import RunDir, RunResult
from lorahpo.sweep import algorithms, table
from lorahpo.sweep.lock import hold_sweep_lock
from lorahpo.sweep.retry import retry_only_lost_workers
from lorahpo.sweep.space import (
    Param,
    build_space,
    plain_params,
    start_points,
    trial_overrides,
)
from lorahpo.sweep.strays import record_ray_processes, stop_strays
from lorahpo.sweep.summary import LiveSummary, request_summary, summarize
from lorahpo.sweep.trial import TrialSpec, record_event, run_trial
from lorahpo.sweep.warm_start import evaluated_points, sweep_dirs, warm_start

log = logging.getLogger(__name__)
TUNE_DIR = ".tune"  # Ray Tune's own experiment state, inside the sweep directory
BUDGET_KEYS = ("train.epochs", "train.batch_size", "train.grad_accum", "train.eval_every")


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


def _check_model_weights(cfg: DictConfig) -> None:
    """A real model's weights must be found before any trial starts, not once per trial
    (the tiny model is built by its first trial)."""
    if cfg.model.get("builder") == "tiny":
        return
    from lorahpo.modeling import resolve_model_path

    resolve_model_path(cfg.model, [], int(cfg.data.num_labels), 0, cfg.paths.cache_dir)


class TrialEvents(Callback):
    """Records trial start / end times and parameters in the sweep directory; after every
    finished trial prints one line and rewrites the summary (trials.csv, best experiment,
    plots); while trials run, prints a status line every `status_every` seconds. (Ray's own
    per-trial tables are too loud for long sweeps.)"""

    def __init__(
        self,
        sweep_dir: Path,
        n_trials: int | None,
        concurrency: int,
        status_every: float = 30.0,
    ) -> None:
        self.sweep_dir, self.n_trials = sweep_dir, n_trials
        self.concurrency, self.status_every = concurrency, status_every
        self.began = self.last_status = time.time()
        self.durations: list[float] = []
        self.started: dict[str, float] = {}

    def on_trial_start(self, iteration, trials, trial, **info):
        self.started[trial.trial_id] = time.time()
        record_event(self.sweep_dir, trial.trial_id, "start", params=plain_params(trial.config))

    def on_trial_complete(self, iteration, trials, trial, **info):
        record_event(self.sweep_dir, trial.trial_id, "complete")
        self._finished(trials, trial, failed=False)

    def on_trial_error(self, iteration, trials, trial, **info):
        record_event(self.sweep_dir, trial.trial_id, "error")
        self._record_missing_result(trial)
        self._finished(trials, trial, failed=True)

    def on_trial_recover(self, iteration, trials, trial, **info):
        """Ray retries a trial whose worker or node was lost (lorahpo.sweep.retry)."""
        record_event(self.sweep_dir, trial.trial_id, "retry")
        num = table.read_trial_numbers(self.sweep_dir).get(trial.trial_id, "?")
        why = first_line(_ray_error(trial) or "its worker was lost")[:200]
        print(
            f"[sweep] trial {num} lost its worker ({why}): running it again from its latest "
            f"checkpoint (retry {trial.run_metadata.num_failures} of {trial.max_failures})",
            flush=True,
        )

    def _record_missing_result(self, trial) -> None:
        """A trial that left no result (its worker process died, killed from outside,
        typically by the kernel's out-of-memory killer; or it never started its job) is
        recorded as failed, saying why."""
        num = table.read_trial_numbers(self.sweep_dir).get(trial.trial_id)
        if num is None:
            return
        rd = RunDir(self.sweep_dir / str(num))
        result = rd.read_result()
        if result is not None and result.status == "failed":
            return  # the trial recorded its own failure
        ray_error = _ray_error(trial) or "the trial ended without a result"
        rd.path.mkdir(parents=True, exist_ok=True)
        if not rd.error_path.exists():  # the worker's own traceback, if it left one, stays
            rd.error_path.write_text(ray_error + "\n")
        died = any(sign in ray_error for sign in WORKER_DIED)
        message = worker_died_message(ray_error) if died else first_line(ray_error)
        rd.write_result(RunResult(status="failed", error=message))

    def on_step_end(self, iteration, trials, **info):
        now = time.time()
        if now - self.last_status < self.status_every:
            return
        self.last_status = now
        running = [t for t in trials if t.status == "RUNNING"]
        if running:
            print(f"[sweep] {self._status(trials, running, now)}", flush=True)

    def _finished(self, trials, trial, failed: bool) -> None:
        if trial.trial_id in self.started:
            self.durations.append(time.time() - self.started.pop(trial.trial_id))
        line = table.progress_line(self.sweep_dir, trial.trial_id, failed, trial.last_result or {})
        done = 1 + sum(t.is_finished() and t is not trial for t in trials)
        running = {t.trial_id for t in trials if t.status == "RUNNING" and t is not trial}
        total = self.n_trials or len(trials)
        print(f"[sweep] {line} | {done}/{total} done, {len(running)} running", flush=True)
        request_summary(self.sweep_dir, running)

    def _status(self, trials, running, now: float) -> str:
        """`3:10 elapsed | 5/16 done | trial 5 eval 3/12 0.8123, ... | best 0.4419 | ~6 min
        left` from what Ray knows of each trial."""
        done = sum(t.is_finished() for t in trials)
        total = self.n_trials or len(trials)
        parts = []
        for t in running:
            r = t.last_result or {}
            if "objective" in r:
                parts.append(
                    f"trial {r.get('trial_num', '?')} eval {r.get('training_iteration', '?')}"
                    f"/{r.get('planned_evals') or '?'} {r['objective']:.4f}"
                )
            else:
                parts.append("a trial starting")
        finished = [t.last_result.get("objective") for t in trials if t.is_finished()]
        finished = [x for x in finished if isinstance(x, float)]
        best = f"best so far {min(finished):.4f}" if finished else "no trial finished yet"
        line = f"{_clock(now - self.began)} elapsed | {done}/{total} done | "
        line += ", ".join(parts) + f" | {best}"
        if self.durations:
            mean = sum(self.durations) / len(self.durations)
            left = (total - done) * mean / max(1, min(self.concurrency, len(running)))
            line += f" | ~{_clock(left)} left"
        return line


# how Ray reports a trial whose worker process died (killed, or by Ray's memory monitor)
WORKER_DIED = ("actor died", "worker process has died", "ActorDiedError", "WorkerCrashedError")
WORKER_DIED += ("OutOfMemoryError: Task was killed",)


def _ray_error(trial) -> str:
    """The error Ray recorded for a trial (its text file in the trial's Tune folder, written
    before the callbacks run), without Ray's `Failure # n` header."""
    path = trial.error_file
    text = Path(path).read_text(errors="replace") if path and Path(path).exists() else ""
    lines = [x for x in text.splitlines() if x.strip() and not x.startswith("Failure #")]
    return "\n".join(lines)


def worker_died_message(ray_error: str) -> str:
    """What to tell a user whose trial lost its worker process."""
    import psutil

    mem = psutil.virtual_memory()
    return (
        f"the trial's worker process died ({first_line(ray_error)[:200]}). It was killed "
        "from outside, most often by the kernel's out-of-memory killer: this machine has "
        f"{mem.total / 2**30:.1f} GiB of memory ({mem.available / 2**30:.1f} GiB free now). "
        "If it ran out of memory, lower hardware.concurrency, train.batch_size or "
        "data.max_length, or use hardware.quantization=nf4; the other trials go on."
    )


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    h, m, s = seconds // 3600, seconds // 60 % 60, seconds % 60
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _start_ray(hw: DictConfig, root: Path) -> None:
    import ray

    env = {
        "RAY_CHDIR_TO_TRIAL_DIR": "0",
        "TOKENIZERS_PARALLELISM": "false",
        "RAY_AIR_NEW_OUTPUT": "0",  # the classic reporter is silent at verbose=0
        # a worker is reused for the next trial (and keeps its loaded base) only if the last
        # trial's thread ends within this many seconds; Ray's default of 2 is short for
        # freeing an 8B trial's optimizer and Trainer
        "TUNE_FUNCTION_THREAD_TIMEOUT_S": "30",
    }
    os.environ.update(env)
    kwargs: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": False,
        "logging_level": logging.WARNING,
        "runtime_env": {"env_vars": env},
    }
    if hw.get("ray_address"):
        log.info("connecting to the Ray cluster at %s", hw.ray_address)
        ray.init(address=hw.ray_address, **kwargs)
    else:
        ray.init(**kwargs)


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


def _check_retries(hw: DictConfig) -> int:
    """`hardware.max_retries`, checked before Ray starts (a bad value would otherwise end the
    sweep with a traceback once Ray is up)."""
    retries = hw.get("max_retries", 1)
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise UserError(
            f"hardware.max_retries={retries!r}: must be a whole number >= 0 (how many times a "
            "trial whose worker or node was lost runs again from its checkpoint; 0: never)."
        )
    return retries


def _check_resources(hw: DictConfig) -> None:
    """Before any trial: a trial no node can hold is an error (Ray would wait for ever); a
    concurrency the cluster cannot reach is said once, with the fix."""
    import ray

    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    cpus, gpus = float(hw.cpus_per_trial), float(hw.gpus_per_trial)
    have = ", ".join(
        f"{res.get('CPU', 0):g} CPU{'s' * (res.get('CPU', 0) != 1)} / {res.get('GPU', 0):g} GPU"
        for res in nodes
    )
    fit = trials_that_fit(nodes, cpus, gpus)
    if fit == 0:
        need = f"{cpus:g} CPU(s)" + (f" and {gpus:g} GPU(s)" if gpus else "")
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
    if fit < hw.concurrency:
        print(
            f"[sweep] note: hardware.concurrency={hw.concurrency}, but the Ray cluster "
            f"({have}) holds {fit} trial(s) of {cpus:g} CPU(s)"
            + (f" and {gpus:g} GPU(s)" if gpus else "")
            + f" at once: {fit} will run at a time. For more, lower hardware.cpus_per_trial"
            + (" (e.g. hardware.cpus_per_trial=1)" if cpus > 1 else "")
            + " or add nodes.",
            flush=True,
        )


def run_sweep(
    hydra_context,
    task_function,
    config: DictConfig,
    arguments: list[str],
    resume: bool,
    warm_trials: bool = True,
    status_every: float = 30.0,
) -> float:
    """Run (or resume) the sweep; return the best objective. Exits non-zero if none completed."""
    from hydra.core.singleton import Singleton
    from ray import tune

    root = Path.cwd()
    sweep_dir = Path(str(config.hydra.sweep.dir)).expanduser().resolve()
    space, fixed = build_space(config.search.space, arguments)
    # the trial's config must not depend on where Ray runs it
    fixed += [f"hydra.sweep.dir={sweep_dir}", f"paths.root={root}"]
    load = hydra_context.config_loader.load_sweep_config
    # fail here, once, on a space that cannot compose (unknown key, bad value type)
    sample = {k: (p.values[0] if p.is_choice else p.low) for k, p in space.items()}
    try:
        load(config, fixed + trial_overrides(sample))
    except Exception as e:
        raise UserError(
            f"the sweep's overrides do not compose with the config: {first_line(e)}"
        ) from None
    defaults = load(config, fixed)  # a trial's config without the searched values
    _check_model_weights(defaults)
    max_retries = _check_retries(config.hardware)
    max_evals = planned_evals_upper_bound(defaults, space)
    if config.search.algorithm == "grid":  # every combination once: no room for start points
        if config.search.get("start_points"):
            print("[sweep] note: search=grid ignores search.start_points", flush=True)
        points, notes = [], []
    else:
        points, notes = start_points(config.search.get("start_points"), space, defaults)
    for note in notes:
        print(f"[sweep] note: {note}", flush=True)
    warm_points, warm_skipped = evaluated_points(sweep_dirs(config.search.get("warm_start")), space)
    scheduler = algorithms.make_scheduler(config.scheduler, max_evals)

    hold_sweep_lock(sweep_dir)  # before looking at its state: no other driver changes it
    tune_path = sweep_dir / TUNE_DIR
    if tune_path.exists() and not resume:
        raise UserError(
            f"{sweep_dir} already holds a sweep. Resume it with the same command "
            "plus hydra.sweeper.resume=true, or choose another hydra.sweep.dir."
        )
    sweep_dir.mkdir(parents=True, exist_ok=True)
    if resume:
        stop_strays(sweep_dir)  # a killed driver's Ray processes and trial workers
    OmegaConf.save(config, sweep_dir / "multirun.yaml")
    hw = config.hardware
    tracking.check_logger(config.logger)
    fixed += tracking.start_sweep(config, sweep_dir)  # trials attach to the sweep's run
    _start_ray(hw, root)
    if not hw.get("ray_address"):
        record_ray_processes(sweep_dir)  # what a resume stops if this driver is killed
    _check_resources(hw)
    spec = TrialSpec(
        hydra_context,
        task_function,
        config,
        Singleton.get_state(),
        fixed,
        str(sweep_dir),
        str(root),
        warm_trials,
    )
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, spec=spec),
        {"cpu": hw.cpus_per_trial, "gpu": hw.gpus_per_trial},
    )
    grid = config.search.algorithm == "grid"
    size = math.prod(len(p.values) for p in space.values()) if grid else config.search.n_trials
    print(
        f"[sweep] {config.search.algorithm} x {config.scheduler.name}: "
        f"{size} trials, {hw.concurrency} at once, "
        f"up to {max_evals} evaluations each -> {sweep_dir}",
        flush=True,
    )

    def new_tuner(name: str, num_samples: int, done: int):
        """A Tuner for `num_samples` more trials; a sweep that continues (done > 0) does not
        rerun its start points and warm-starts from its own completed trials."""
        searcher, param_space = algorithms.make_searcher(
            config.search, space, hw.concurrency, sweep_dir, [] if done else points
        )
        told = warm_points
        if done and not getattr(searcher, "warm_starts", False):
            told = told + evaluated_points([sweep_dir], space)[0]
        taken = warm_start(searcher, config.search.algorithm, told)
        if told:
            print(
                f"[sweep] warm start: the searcher was told {taken} earlier trial(s)"
                + (f", {warm_skipped} outside the space skipped" if warm_skipped else "")
                + (
                    "" if taken else f" (search={config.search.algorithm} does not learn from them)"
                ),
                flush=True,
            )
        return tune.Tuner(
            trainable,
            param_space=param_space,
            tune_config=tune.TuneConfig(
                search_alg=searcher,
                scheduler=scheduler,
                num_samples=num_samples,
                max_concurrent_trials=hw.concurrency,
                reuse_actors=True,
                trial_dirname_creator=lambda trial: trial.trial_id,  # short folder names
            ),
            run_config=tune.RunConfig(
                name=name,
                storage_path=str(sweep_dir),
                callbacks=[
                    TrialEvents(
                        sweep_dir,
                        None if grid else size,
                        hw.concurrency,
                        status_every,
                    )
                ],
                # a trial whose worker or node was lost is retried from its latest
                # checkpoint; one whose own code raised is not (lorahpo.sweep.retry)
                failure_config=tune.FailureConfig(max_failures=max_retries, fail_fast=False),
                verbose=0,
            ),
        )

    retry_only_lost_workers()
    live = LiveSummary(sweep_dir, space)  # rewritten as trials finish
    try:
        stages = sorted(sweep_dir.glob(f"{TUNE_DIR}*"), key=lambda p: p.stat().st_mtime)
        if resume and stages and tune.Tuner.can_restore(str(stages[-1])):
            # finish what the interrupted run had planned (finished trials are kept)
            _fit(
                tune.Tuner.restore(
                    str(stages[-1]),
                    trainable,
                    resume_unfinished=True,
                    resume_errored=False,
                    restart_errored=False,
                )
            )
        done = len(table.read_trial_numbers(sweep_dir))
        interrupted = (table.collect_trials(sweep_dir, [])["status"] == "interrupted").any()
        if done < size and not interrupted:
            # a new sweep, or more trials for one whose search continues from its history
            # (a grid is one pass over every combination: num_samples 1)
            name = TUNE_DIR if not done else f"{TUNE_DIR}-{done}"
            _fit(new_tuner(name, 1 if grid else size - done, done))
    finally:
        live.close()
    return _finish(sweep_dir, space, size, points, config)


def _fit(tuner) -> None:
    previous = signal.signal(signal.SIGTERM, lambda *_: os.kill(os.getpid(), signal.SIGINT))
    # a failed trial's traceback is in its error.txt; progress lines name the file
    logging.getLogger("ray.tune").setLevel(logging.CRITICAL)
    warnings.filterwarnings("ignore", module="optuna")  # re-reports of a resumed trial
    try:
        tuner.fit()
    finally:
        signal.signal(signal.SIGTERM, previous)


def _finish(
    sweep_dir: Path,
    space: dict[str, Param],
    planned: int,
    points: list[dict[str, Any]],
    config: DictConfig,
) -> float:
    param_keys = list(space)
    trials, best = summarize(sweep_dir, space)
    print(table.format_table(trials, param_keys))
    start = table.best_start_point(trials, param_keys, points)
    # a stop signal between trials leaves no trial unfinished, only some never started
    interrupted = (trials["status"] == "interrupted").any() or len(trials) < planned
    tracking.end_sweep(config, trials, None if best is None else dict(best), bool(interrupted))
    if interrupted:
        print(
            f"\nthe sweep was interrupted: rerun the same command with "
            f"hydra.sweeper.resume=true (and hydra.sweep.dir={sweep_dir}) to finish it.",
            file=sys.stderr,
        )
        raise SystemExit(130)
    if best is None or not (trials["status"] == "completed").any():
        print(
            f"error: no trial completed; see the error files listed in {sweep_dir}/trials.csv.",
            file=sys.stderr,
        )
        raise SystemExit(1)
    if start is not None:
        gain = start["objective"] - best["objective"]
        print(
            f"\nbest start point: trial {int(start['number'])}, objective "
            f"{start['objective']:.4f}; the search improved on it by {gain:.4f}"
        )
    print(
        f"\nbest: trial {int(best['number'])}, objective {best['objective']:.4f} "
        f"({best['run_dir']})\nretrain it: python train.py --config-dir {sweep_dir} "
        f"experiment=best\nall trials: {sweep_dir / 'trials.csv'}"
    )
    return float(best["objective"])
