"""The sweep's own bookkeeping, in two files of the sweep directory: which Ray trial is trial
number n (`trial_numbers.json`), and what happened to each trial when (`trial_events.jsonl`).

Ray Tune's trial ids are hashes and its state does not survive a killed driver; these files
do. The driver records starts and ends, the worker records itself (pid, start time, host,
node: a process is identified by pid *and* start time, never by pid alone), the table is built
from them, and a resume stops the processes they name. Every reader and writer is here.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import time
from enum import StrEnum
from pathlib import Path
from typing import Any

import psutil

from lorahpo.rundir import read_json, read_jsonl, write_json

log = logging.getLogger(__name__)
NUMBERS_FILE = "trial_numbers.json"
EVENTS_FILE = "trial_events.jsonl"


class Event(StrEnum):
    """What `trial_events.jsonl` records of a trial (its `event` field)."""

    START = "start"  # the driver: Ray started (or promoted) the trial; with its params
    COMPLETE = "complete"  # the driver: it ended with a result
    ERROR = "error"  # the driver: it failed
    RETRY = "retry"  # the driver: Ray restarts it after a lost worker
    PAUSED = "paused"  # the driver: promotion-type ASHA paused it at a rung; with the rung
    WORKER = "worker"  # the worker: the process running it (pid, start time, host, node)
    RELEASED = "released"  # the worker: it let go of the kept base model; with memory in use
    REPLAYED = "replayed"  # the worker: Ray replayed its start after a driver restart


def claim_number(sweep_dir: Path, trial_id: str) -> int:
    """This trial's number 0..N-1, stable across resumes (Ray's own ids are hashes).

    A file lock makes concurrent trials, even on other nodes of a shared file system, agree.
    """
    sweep_dir.mkdir(parents=True, exist_ok=True)
    with (sweep_dir / ".numbers.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        numbers = trial_numbers(sweep_dir)
        if trial_id not in numbers:
            numbers[trial_id] = len(numbers)
            write_json(sweep_dir / NUMBERS_FILE, numbers)
        return numbers[trial_id]


def trial_numbers(sweep_dir: Path) -> dict[str, int]:
    """Ray trial id -> trial number, for every trial the sweep has started. Should the file be
    unreadable (a full disk), the numbers are rebuilt from the trials' own
    `.hydra/hydra.yaml` (job id and number), with a warning, rather than restarting the
    numbering over finished trials."""
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


def record_event(sweep_dir: Path, trial_id: str, event: Event, **fields: Any) -> None:
    """Append one trial event with the wall time."""
    event = Event(event)
    with (sweep_dir / EVENTS_FILE).open("a") as f:
        f.write(
            json.dumps({"trial_id": trial_id, "event": event, "time": time.time(), **fields}) + "\n"
        )


def read_events(sweep_dir: Path) -> list[dict[str, Any]]:
    """Every event so far, in the order written (a line cut short is skipped)."""
    return read_jsonl(sweep_dir / EVENTS_FILE)


def process_id(pid: int) -> dict | None:
    """pid, start time and host of a live process (None if it is gone)."""
    try:
        p = psutil.Process(pid)
        return {"pid": pid, "started": p.create_time(), "host": socket.gethostname()}
    except psutil.Error:
        return None


def this_process() -> dict[str, Any]:
    """This process's identity (a trial worker records it in its `worker` event)."""
    return process_id(os.getpid()) or {"pid": os.getpid()}
