"""The sweep's Ray: starting it (or joining a cluster), what it is told about failures, and
the processes a killed driver leaves behind.

- Start: a local instance on the loopback interface, or `hardware.ray_address`; quiet, with
  the environment every trial needs.
- Failures: a trial whose own code fails ends with a failed report and never raises
  (lorahpo.sweep.trial), so Ray's own `FailureConfig(max_failures=hardware.max_retries)` only
  ever retries trials whose worker process died or whose node left the cluster; they continue
  from their latest checkpoint (lorahpo.resume).
- Strays: a driver killed with SIGKILL cannot shut down the local Ray instance it started:
  some of Ray's processes (its agents) outlive it, and a trial worker busy in a training step
  can too, still writing into a run directory the resumed sweep is about to continue. The
  driver writes the processes it started (the Ray instance's here, each trial worker's in the
  ledger); a resume, once it holds the sweep's lock (so the old driver is gone), stops any of
  them still alive. A process is matched by pid and start time, never by pid alone.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any

import psutil
from omegaconf import DictConfig

from lorahpo.rundir import read_json, write_json
from lorahpo.sweep import ledger
from lorahpo.sweep.console import say

log = logging.getLogger(__name__)
PROCESSES_FILE = ".ray_processes.json"  # the local Ray instance's processes
ENV = {
    "RAY_CHDIR_TO_TRIAL_DIR": "0",
    "TOKENIZERS_PARALLELISM": "false",
    "RAY_AIR_NEW_OUTPUT": "0",  # the classic reporter is silent at verbose=0
    # a worker is reused for the next trial (and keeps its loaded base) only if the last
    # trial's thread ends within this many seconds; Ray's default of 2 is short for freeing
    # an 8B trial's optimizer and Trainer
    "TUNE_FUNCTION_THREAD_TIMEOUT_S": "30",
    # a failed trial's last report carries no objective when it failed before its first
    # evaluation (lorahpo.sweep.reported); the schedulers skip such a result
    "TUNE_DISABLE_STRICT_METRIC_CHECKING": "1",
    # Tune's own loggers: only its JSON result log per trial is kept (tune_callbacks); its
    # TensorBoard and CSV copies duplicate the run directories, and the TensorBoard one
    # costs the driver an import of torch per sweep
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
}


def start_ray(hw: DictConfig, sweep_dir: Path) -> list[dict[str, float]]:
    """Start (or join) Ray; record a local instance's processes; return the alive nodes'
    resources."""
    import ray

    os.environ.update(ENV)
    kwargs: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": False,
        "logging_level": logging.WARNING,
        "runtime_env": {"env_vars": ENV},
    }
    if hw.ray_address:
        log.info("connecting to the Ray cluster at %s", hw.ray_address)
        ray.init(address=hw.ray_address, **kwargs)
    else:
        # a new local instance, even where `ray start` left a cluster's address behind
        # (ray.init() alone would join that cluster)
        ray.init(address="local", **kwargs)
        record_ray_processes(sweep_dir)  # what a resume stops if this driver is killed
    return [n["Resources"] for n in ray.nodes() if n.get("Alive")]


def tune_callbacks() -> list:
    """Ray Tune's own callbacks the sweep keeps: each trial's results as JSON lines in its
    folder under `<sweep_dir>/.tune*/` (what Tune's scheduler was given, for review)."""
    from ray.tune.logger import JsonLoggerCallback

    return [JsonLoggerCallback()]


def failure_config(max_retries: int):
    """Retry a trial whose worker or node was lost from its latest checkpoint, up to
    `max_retries` times (trials whose code failed never raise, so are never retried)."""
    from ray import tune

    return tune.FailureConfig(max_failures=max_retries, fail_fast=False)


def record_ray_processes(sweep_dir: Path) -> None:
    """After starting a local Ray instance: its processes (the driver's descendants)."""
    me = psutil.Process()
    found = [ledger.process_id(p.pid) for p in me.children(recursive=True)]
    write_json(sweep_dir / PROCESSES_FILE, [p for p in found if p])


def stop_strays(sweep_dir: Path) -> list[int]:
    """Stop the processes an earlier driver of this sweep started that are still alive on
    this host; returns their pids. Call only while holding the sweep's lock."""
    recorded = list(read_json(sweep_dir / PROCESSES_FILE) or [])
    recorded += [e for e in ledger.read_events(sweep_dir) if e.get("event") == ledger.Event.WORKER]
    host, alive = socket.gethostname(), []
    for entry in recorded:
        if entry.get("host") != host or not entry.get("started") or entry["pid"] == os.getpid():
            continue
        try:
            p = psutil.Process(int(entry["pid"]))
            if abs(p.create_time() - float(entry["started"])) < 0.01 and _alive(p):
                alive.append(p)
        except psutil.Error:
            continue
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.kill()  # SIGKILL: a training step would not heed SIGTERM before its end
    deadline = time.time() + 10
    while time.time() < deadline and any(_alive(p) for p in alive):
        time.sleep(0.1)
    if alive:
        pids = sorted(p.pid for p in alive)
        say(
            f"stopped {len(pids)} process(es) the interrupted sweep left running "
            f"(pids {', '.join(map(str, pids))})"
        )
        log.info("stopped stray processes: %s", json.dumps(pids))
    return sorted(p.pid for p in alive)


def _alive(p: psutil.Process) -> bool:
    """Running, not a zombie (a killed orphan waits for init to reap it)."""
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
