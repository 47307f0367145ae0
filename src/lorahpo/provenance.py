"""What a run needs to be reproduced, recorded in its `environment.json`: the versions of the
packages that decide its numbers, Python, the GPU and CUDA when there is one, the model's
hub snapshot revision when it came from the Hugging Face cache, and the project's git commit.
"""

from __future__ import annotations

import functools
import platform
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = (
    "torch",
    "transformers",
    "peft",
    "accelerate",
    "datasets",
    "tokenizers",
    "bitsandbytes",
    "ray",
    "optuna",
    "hyperopt",
    "openbox",
    "hydra-core",
    "lorahpo",
)
_SNAPSHOT = re.compile(r"models--(?P<repo>[^/]+)/snapshots/(?P<revision>[0-9a-f]{6,64})")


def environment(root: str | Path, model_path: str | None) -> dict[str, Any]:
    """The record for one run: the process's environment plus the model it used."""
    out = dict(_process(str(root)))
    if model_path is not None:
        out["model"] = {"path": model_path, **hub_snapshot(model_path)}
    return out


def hub_snapshot(model_path: str) -> dict[str, str]:
    """Repository and revision of a folder inside the hub cache (`models--org--name/
    snapshots/<revision>`), or nothing for any other folder."""
    m = _SNAPSHOT.search(Path(model_path).as_posix())
    if not m:
        return {}
    return {"hub_repo": m["repo"].replace("--", "/"), "hub_revision": m["revision"]}


@functools.lru_cache(maxsize=4)
def _process(root: str) -> dict[str, Any]:
    """Everything that stays the same for the life of a process (sweep workers ask often)."""
    import torch

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    out: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": versions,
        "git": _git(root),
    }
    if torch.cuda.is_available():
        out["gpu"] = {
            "name": torch.cuda.get_device_name(),
            "count": torch.cuda.device_count(),
            "cuda": torch.version.cuda,
        }
    return out


def _git(root: str) -> dict[str, Any] | None:
    """The commit of the checkout the run came from, and whether it had local changes."""

    def git(*args: str) -> str | None:
        try:
            proc = subprocess.run(
                ["git", "-C", root, *args], capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return proc.stdout.strip() if proc.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return None
    changes = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(changes)}
