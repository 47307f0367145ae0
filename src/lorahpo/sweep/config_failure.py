"""A trial that fails on its configuration (a key missing, unset or of the wrong type) stops
the sweep: every other trial would fail the same way. The trial reports which key
(`problem`), a Ray Tune stopper ends the experiment on the first such report and keeps it in
the sweep directory (`StopOnConfigError`), and the driver turns it into one paragraph that
names the key and the config file to fix (`explain`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException
from ray.tune.stopper import Stopper

from lorahpo.errors import first_line
from lorahpo.sweep import reported

FILE = "config_error.json"  # in the sweep directory: the failure that stopped it
KEY_ATTR, MESSAGE_ATTR = "config_error_key", "config_error"  # in the trial's failure report
# where an omegaconf message names the key behind the one being read
_BEHIND = re.compile(r"(?:Missing mandatory value: |Interpolation key ')([\w.\[\]]+)")


def problem(error: BaseException | None) -> dict[str, str] | None:
    """{key, message} if `error` (or an error it was raised from) is a configuration error."""
    from hydra.errors import ConfigCompositionException

    seen, composing = error, False
    while seen is not None:
        composing = composing or isinstance(seen, ConfigCompositionException)
        if isinstance(seen, OmegaConfBaseException) and getattr(seen, "full_key", None):
            message = first_line(getattr(seen, "msg", None) or seen)
            behind = _BEHIND.search(message)
            return {
                KEY_ATTR: behind.group(1) if behind else str(seen.full_key),
                MESSAGE_ATTR: message,
            }
        seen = seen.__cause__ or seen.__context__
    if composing:
        return {KEY_ATTR: "", MESSAGE_ATTR: first_line(error)}
    return None


class StopOnConfigError(Stopper):
    """Ends the sweep at the first trial that reports a configuration error, and keeps that
    report in `<sweep_dir>/config_error.json` for the driver."""

    def __init__(self, sweep_dir: Path) -> None:
        self.path = Path(sweep_dir) / FILE
        self.path.unlink(missing_ok=True)  # from an earlier run of this sweep
        self.seen = False

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        if reported.failed(result) and result.get(MESSAGE_ATTR) and not self.seen:
            self.seen = True
            found = {k: result.get(k) for k in (KEY_ATTR, MESSAGE_ATTR, reported.TRIAL_ATTR)}
            self.path.write_text(json.dumps(found))
        return False

    def stop_all(self) -> bool:
        return self.seen


def read(sweep_dir: Path) -> dict[str, Any] | None:
    """The configuration error that stopped this sweep, if one did."""
    path = Path(sweep_dir) / FILE
    return json.loads(path.read_text()) if path.exists() else None


def explain(found: dict[str, Any], config: DictConfig, space_keys, sweep_dir: Path) -> str:
    """One paragraph: which trial, which key, why, and where to set it."""
    key, num = found.get(KEY_ATTR) or "", found.get(reported.TRIAL_ATTR, "?")
    what = f"{key}: {found[MESSAGE_ATTR]}" if key else found[MESSAGE_ATTR]
    return (
        f"trial {num} failed on its configuration ({what}). Other trials would meet the same "
        f"error, so the sweep stopped there. {_where(key, config, space_keys)} "
        f"then run the sweep again. The traceback is in {Path(sweep_dir) / str(num)}/error.txt."
    )


def _where(key: str, config: DictConfig, space_keys) -> str:
    """Where the user sets `key`: the search space, a group's config file, or train.yaml."""
    if key in space_keys:
        return f"Correct {key}'s values in the search space (search/space=, or the command line),"
    group = key.split(".", 1)[0] if "." in key else None
    option = config.hydra.runtime.choices.get(group) if group else None
    if not option:
        file = config_file(config, "", "train") if not group else None
        place = f"the primary config ({file})" if file else "the primary config"
        return f"Set {key} in {place}, or on the command line ({key}=...),"
    file = config_file(config, group, option)
    in_file = f" ({file})" if file else ""
    return (
        f"Set {key} in the {group}={option} config{in_file}, or on the command line "
        f"({key}=...); every option of a group has the keys lorahpo/schema.py declares,"
    )


def config_file(config: DictConfig, group: str, option: str) -> str | None:
    """The YAML file Hydra took `group=option` from: the first config source (the search
    path, in Hydra's order: --config-dir included) that holds it."""
    for source in config.hydra.runtime.config_sources:
        if source.schema != "file":
            continue
        path = Path(str(source.path)) / group / f"{option}.yaml"
        if path.is_file():
            return str(path)
    return None
