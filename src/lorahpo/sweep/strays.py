"""Processes a killed sweep left behind, stopped before its resume starts.

A driver killed with SIGKILL cannot shut down the local Ray instance it started: some of
Ray's processes (its agents) outlive it, and a trial worker busy in a training step can too,
still writing into a run directory the resumed sweep is about to continue. The driver writes
the processes it started (the Ray instance's, then each trial worker's) to the sweep
directory; a resume, once it holds the sweep's lock (so the old driver is gone), stops any of
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

import psutil

from lorahpo.rundir import read_json, read_jsonl, write_json
from lorahpo.sweep.trial import EVENTS_FILE  # trial workers: their `worker` events

log = logging.getLogger(__name__)
PROCESSES_FILE = ".ray_processes.json"  # the local Ray instance's processes


def process_id(pid: int) -> dict | None:
    """pid, start time and host of a live process (None if it is gone)."""
    try:
        p = psutil.Process(pid)
        return {"pid": pid, "started": p.create_time(), "host": socket.gethostname()}
    except psutil.Error:
        return None


def record_ray_processes(sweep_dir: Path) -> None:
    """After starting a local Ray instance: its processes (the driver's descendants)."""
    me = psutil.Process()
    found = [process_id(p.pid) for p in me.children(recursive=True)]
    write_json(sweep_dir / PROCESSES_FILE, [p for p in found if p])


def stop_strays(sweep_dir: Path) -> list[int]:
    """Stop the processes an earlier driver of this sweep started that are still alive on
    this host; returns their pids. Call only while holding the sweep's lock."""
    recorded = list(read_json(sweep_dir / PROCESSES_FILE) or [])
    recorded += [e for e in read_jsonl(sweep_dir / EVENTS_FILE) if e.get("event") == "worker"]
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
        print(
            f"[sweep] stopped {len(pids)} process(es) the interrupted sweep left running "
            f"(pids {', '.join(map(str, pids))})",
            flush=True,
        )
        log.info("stopped stray processes: %s", json.dumps(pids))
    return sorted(p.pid for p in alive)


def _alive(p: psutil.Process) -> bool:
    """Running, not a zombie (a killed orphan waits for init to reap it)."""
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
