"""Model folders built once under `paths.cache_dir` (the tiny model, a converted GGUF file),
so that every later run loads them with `from_pretrained` like any checkpoint on disk."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)


def build_once(target: Path, build: Callable[[Path], None], what: str) -> Path:
    """`target`, built by `build(folder)` unless a complete one (with config.json) is there.
    Concurrent trials may race to build the same folder: each builds into a temporary folder
    and renames it into place, so readers only ever see a complete checkpoint."""
    if (target / "config.json").exists():
        return target
    log.info("%s in %s (once)", what, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=target.parent))
    try:
        build(tmp)
        os.replace(tmp, target)
    except OSError:
        if not (target / "config.json").exists():  # not a lost race: a real failure
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
