"""One sweep trial inside a Ray worker: an ordinary Hydra job of the training task.

As hydra-ray-launcher does, the worker composes the trial's config with Hydra's own config
loader and runs the task through `run_job`, so `<sweep_dir>/<n>/` is a normal run directory.
Each evaluation is forwarded to Ray Tune through `lorahpo.report`.
"""

from __future__ import annotations

import fcntl
import gc
import json
import logging
import os
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, open_dict

from lorahpo import base_cache, modeling
from lorahpo.report import listening
from lorahpo.rundir import RunDir, read_json, write_json
from lorahpo.sweep.space import trial_overrides

log = logging.getLogger(__name__)
NUMBERS_FILE = "trial_numbers.json"
EVENTS_FILE = "trial_events.jsonl"


def claim_number(sweep_dir: Path, trial_id: str) -> int:
    """This trial's number 0..N-1, stable across resumes (Ray's own ids are hashes).

    A file lock makes concurrent trials, even on other nodes of a shared file system, agree.
    """
    sweep_dir.mkdir(parents=True, exist_ok=True)
    with (sweep_dir / ".numbers.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        path = sweep_dir / NUMBERS_FILE
        numbers = load_trial_numbers(sweep_dir)
        if trial_id not in numbers:
            numbers[trial_id] = len(numbers)
            write_json(path, numbers)
        return numbers[trial_id]


def load_trial_numbers(sweep_dir: Path) -> dict[str, int]:
    """Ray trial id -> trial number. Should the file be unreadable (a full disk), the numbers
    are rebuilt from the trials' own `.hydra/hydra.yaml` (job id and number), with a warning,
    rather than restarting the numbering over finished trials."""
    path = sweep_dir / NUMBERS_FILE
    numbers = read_json(path)
    if numbers is not None or not path.exists():
        return numbers or {}
    from omegaconf import OmegaConf

    rebuilt = {}
    for run in sweep_dir.iterdir():
        hydra_file = run / ".hydra" / "hydra.yaml"
        if run.name.isdigit() and hydra_file.exists():
            job = OmegaConf.load(hydra_file).hydra.job
            if job.get("id") is not None:
                rebuilt[str(job.id)] = int(job.num)
    log.warning(
        "%s was unreadable: rebuilt %d trial numbers from the run directories", path, len(rebuilt)
    )
    return rebuilt


@dataclass
class TrialSpec:
    """Everything a worker needs to run trials of this sweep (pickled once to Ray)."""

    hydra_context: Any
    task_function: Any
    master_config: DictConfig
    singleton_state: Any
    fixed_overrides: list[str]
    sweep_dir: str
    cwd: str  # the driver's working directory: relative paths in overrides resolve from it
    warm_trials: bool = True  # keep inputs and base model for the worker's next trial


def run_trial(config: dict[str, Any], spec: TrialSpec) -> None:
    """Ray Tune function trainable: compose, run the Hydra job, report, return the result."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.singleton import Singleton
    from hydra.core.utils import JobStatus, run_job, setup_globals
    from ray import tune

    os.chdir(spec.cwd)
    base_cache.keep_between_runs(spec.warm_trials)  # the worker's next trial reuses the base
    trial_id = tune.get_context().get_trial_id()
    num = claim_number(Path(spec.sweep_dir), trial_id)
    record_event(Path(spec.sweep_dir), trial_id, "worker", **_this_worker())
    overrides = spec.fixed_overrides + trial_overrides(config)

    setup_globals()
    Singleton.set_state(spec.singleton_state)
    try:
        job_config = spec.hydra_context.config_loader.load_sweep_config(
            spec.master_config, overrides
        )
    except Exception:  # the job never started: leave its traceback where a run's would be
        rd = RunDir(Path(spec.sweep_dir) / str(num))
        rd.path.mkdir(parents=True, exist_ok=True)
        rd.error_path.write_text(traceback.format_exc())
        raise
    with open_dict(job_config):
        job_config.hydra.job.id = trial_id
        job_config.hydra.job.num = num
    HydraConfig.instance().set_config(job_config)

    best = float("inf")

    def forward(record: dict[str, Any]) -> None:
        nonlocal best
        best = min(best, record["objective"])
        tune.report(
            {
                "objective": best,
                "eval_log_loss": record["eval_log_loss"],
                "eval_accuracy": record["eval_accuracy"],
                "step": record["step"],
                "planned_evals": record.get("planned_evals"),
                "trial_num": num,
            }
        )

    if _replay_finished(RunDir(Path(spec.sweep_dir) / str(num)), forward):
        record_event(Path(spec.sweep_dir), trial_id, "replayed")
        return None
    try:
        with listening(forward):
            ret = run_job(
                hydra_context=spec.hydra_context,
                task_function=spec.task_function,
                config=job_config,
                job_dir_key="hydra.sweep.dir",
                job_subdir_key="hydra.sweep.subdir",
            )
    finally:
        gc.collect()  # the trial's Trainer and optimizer: before the next trial allocates
        modeling.empty_device_cache()
        record_event(Path(spec.sweep_dir), trial_id, "released", **modeling.memory_in_use())
    if ret.status == JobStatus.FAILED:
        raise ret._return_value  # Ray records the trial as errored; the searcher sees no value
    return None  # the last report stands (returning a value would count as an evaluation)


def _this_worker() -> dict[str, Any]:
    """pid, start time (a pid alone may be reused), host and Ray node of this worker."""
    import ray

    from lorahpo.sweep.strays import process_id  # strays reads this module's events

    return {**process_id(os.getpid()), "node": ray.get_runtime_context().get_node_id()}


def record_event(sweep_dir: Path, trial_id: str, event: str, **fields: Any) -> None:
    """Append one trial event with the wall time: start / complete / error (the driver),
    worker / released (the worker: its pid, then its memory after the trial), replayed."""
    with (sweep_dir / EVENTS_FILE).open("a") as f:
        f.write(
            json.dumps({"trial_id": trial_id, "event": event, "time": time.time(), **fields}) + "\n"
        )


def _replay_finished(rd: RunDir, forward) -> bool:
    """A trial that completed just as the sweep was interrupted, before Ray recorded it, is
    not run again on resume: its evaluations are reported from its run directory instead."""
    result = rd.read_result()
    if result is None or result.status != "completed":
        return False
    for record in rd.read_metrics():
        forward(record.to_json())
    return True
