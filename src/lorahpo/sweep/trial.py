"""One sweep trial inside a Ray worker: an ordinary Hydra job of the training task.

As hydra-ray-launcher does, the worker composes the trial's config with Hydra's own config
loader and runs the task through `run_job`, so `<sweep_dir>/<n>/` is a normal run directory.
Each evaluation is forwarded to Ray Tune through `lorahpo.report`. A trial whose own code
fails does not raise: its run directory says why, and its last report says it failed
(lorahpo.sweep.reported), so Ray retries only trials whose worker or node was lost.
"""

from __future__ import annotations

import gc
import logging
import os
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, open_dict

from lorahpo import base_cache, modeling
from lorahpo.errors import first_line
from lorahpo.objective import Objective
from lorahpo.report import listening
from lorahpo.rundir import RunDir, RunResult, Status
from lorahpo.sweep import ledger, reported
from lorahpo.sweep.config_failure import problem
from lorahpo.sweep.space import trial_overrides

log = logging.getLogger(__name__)


@dataclass
class TrialSpec:
    """Everything a worker needs to run trials of this sweep (pickled once to Ray)."""

    hydra_context: Any  # Hydra's HydraContext, as the sweeper was given it
    task_function: Any  # the @hydra.main function (train.py's)
    master_config: DictConfig  # the sweep's composed config, overrides re-applied per trial
    singleton_state: Any  # Hydra's Singleton state, restored in the worker
    fixed_overrides: list[str]  # every trial's plain overrides (the command line's)
    sweep_dir: str
    cwd: str  # the driver's working directory: relative paths in overrides resolve from it
    objective: Objective  # the sweep's: what a trial reports as its best so far
    warm_trials: bool  # keep inputs and base model for the worker's next trial


class Reports:
    """The trial's reports to Ray Tune: one per evaluation, the best objective so far
    (`reported.BestSoFar`). `num`: the trial's number in the sweep."""

    def __init__(self, num: int, objective: Objective) -> None:
        self.num = num
        self.best = reported.BestSoFar(objective)
        self.last: dict[str, Any] | None = None

    def __call__(self, record: dict[str, Any]) -> None:
        from ray import tune

        self.last = reported.evaluation(record, self.best.add(record), self.num)
        tune.report(self.last)

    def failure(self, config_error: dict[str, str] | None) -> None:
        """The failure report; a configuration error says which key (it stops the sweep)."""
        from ray import tune

        tune.report({**reported.failure(self.last, self.num), **(config_error or {})})


def run_trial(config: dict[str, Any], spec: TrialSpec) -> None:
    """Ray Tune function trainable: compose, run the Hydra job, report each evaluation."""
    from ray import tune

    os.chdir(spec.cwd)
    base_cache.keep_between_runs(spec.warm_trials)  # the worker's next trial reuses the base
    sweep_dir = Path(spec.sweep_dir)
    trial_id = tune.get_context().get_trial_id()
    num = ledger.claim_number(sweep_dir, trial_id)
    ledger.record_event(sweep_dir, trial_id, ledger.Event.WORKER, **_this_worker())
    rd = RunDir(sweep_dir / str(num))
    reports = Reports(num, spec.objective)
    if _replay_finished(rd, reports):
        ledger.record_event(sweep_dir, trial_id, ledger.Event.REPLAYED)
        return None
    config_error: dict[str, str] | None = None
    try:
        failed, config_error = _run_job(spec, config, trial_id, num, reports)
    except Exception as e:  # the job never started (its config did not compose)
        _record_failure(rd, traceback.format_exc())
        failed, config_error = True, problem(e)
    finally:
        gc.collect()  # the trial's Trainer and optimizer: before the next trial allocates
        modeling.empty_device_cache()
        modeling.trim_host_memory()
        ledger.record_event(sweep_dir, trial_id, ledger.Event.RELEASED, **modeling.memory_in_use())
    if failed:
        reports.failure(config_error)
    return None  # the last report stands (returning a value would count as an evaluation)


def _run_job(
    spec: TrialSpec, config: dict[str, Any], trial_id: str, num: int, reports
) -> tuple[bool, dict[str, str] | None]:
    """Compose the trial's config and run the task as a Hydra job; (failed, the
    configuration error it failed on, if it was one). The exception itself is not kept: its
    frames hold the failed step's tensors, freed before the worker's next trial."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.singleton import Singleton
    from hydra.core.utils import JobStatus, run_job, setup_globals

    setup_globals()
    Singleton.set_state(spec.singleton_state)
    overrides = spec.fixed_overrides + trial_overrides(config)
    job_config = spec.hydra_context.config_loader.load_sweep_config(spec.master_config, overrides)
    with open_dict(job_config):
        job_config.hydra.job.id = trial_id
        job_config.hydra.job.num = num
    HydraConfig.instance().set_config(job_config)
    with listening(reports):
        ret = run_job(
            hydra_context=spec.hydra_context,
            task_function=spec.task_function,
            config=job_config,
            job_dir_key="hydra.sweep.dir",
            job_subdir_key="hydra.sweep.subdir",
        )
    if ret.status == JobStatus.COMPLETED:
        return False, None
    error: BaseException | None = None
    try:
        ret.return_value  # noqa: B018 (Hydra's public way to get the job's exception)
    except Exception as e:
        error = e
    rd = RunDir(Path(spec.sweep_dir) / str(num))
    if rd.read_result() is None and error is not None:  # failed before the task wrote one
        _record_failure(rd, "".join(traceback.format_exception(error)))
    return True, problem(error)


def _record_failure(rd: RunDir, text: str) -> None:
    """A failure the task could not record itself: its traceback where a run's would be."""
    rd.path.mkdir(parents=True, exist_ok=True)
    rd.error_path.write_text(text)
    last = [line for line in text.strip().splitlines() if line.strip()]
    rd.write_result(
        RunResult(status=Status.FAILED, error=first_line(last[-1] if last else "error"))
    )


def _this_worker() -> dict[str, Any]:
    """pid, start time (a pid alone may be reused), host and Ray node of this worker."""
    import ray

    return {**ledger.this_process(), "node": ray.get_runtime_context().get_node_id()}


def _replay_finished(rd: RunDir, reports: Reports) -> bool:
    """A trial that completed just as the sweep was interrupted, before Ray recorded it, is
    not run again on resume: its evaluations are reported from its run directory instead."""
    result = rd.read_result()
    if result is None or result.status != Status.COMPLETED:
        return False
    for record in rd.read_metrics():
        reports(record.to_json())
    return True
