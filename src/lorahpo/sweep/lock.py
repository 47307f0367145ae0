"""One sweep per sweep directory at a time.

The driver holds an exclusive lock on `<sweep_dir>/.sweep.lock` for as long as it runs; the
kernel releases it when the process ends, however it ends (a SIGKILL included), so a resumed
sweep never waits on a dead one. A second driver pointed at the same directory stops at once
with a message naming the running one.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import IO

from lorahpo.errors import UserError

LOCK_FILE = ".sweep.lock"
_held: list[IO] = []  # the open lock files of this process (closing one releases its lock)


def hold_sweep_lock(sweep_dir: Path) -> None:
    """Take the sweep directory's lock for the life of this process, or stop with a message."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    path = sweep_dir / LOCK_FILE
    f = path.open("a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        try:
            owner = json.loads(f.read() or "{}")
        except ValueError:
            owner = {}
        f.close()
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(owner.get("since", 0)))
        raise UserError(
            f"another sweep is running in {sweep_dir}: pid {owner.get('pid', '?')} on "
            f"{owner.get('host', '?')}, since {since} (`{owner.get('command', '?')}`). Two "
            "sweeps must not share a directory: wait for it to end (then resume with "
            "hydra.sweeper.resume=true if needed), or choose another hydra.sweep.dir."
        ) from None
    f.seek(0)
    f.truncate()
    owner = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "since": time.time(),
        "command": " ".join(["python", *sys.argv]),
    }
    f.write(json.dumps(owner))
    f.flush()
    _held.append(f)
