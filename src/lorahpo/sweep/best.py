"""The best trial of a sweep as a ready `experiment` config: retrain it with one command."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import yaml

BEST_EXPERIMENT = "best_experiment.yaml"


def trial_experiment(run_dir: str | Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """A trial's overrides as an experiment's parts: its group choices (`override /data:
    csv`) and its values by dotted key (the sweep's own settings and paths left out)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    run_dir = Path(run_dir)
    overrides = yaml.safe_load((run_dir / ".hydra/overrides.yaml").read_text()) or []
    choices = yaml.safe_load((run_dir / ".hydra/hydra.yaml").read_text())["hydra"]["runtime"][
        "choices"
    ]
    groups, values = [], {}
    for o in OverridesParser.create().parse_overrides(overrides):
        key = o.get_key_element()
        if key.startswith(("hydra.", "hydra/", "paths.", "search", "scheduler")):
            continue
        if key in choices:
            groups.append({f"override /{key}": o.value()})
        else:
            values[key] = o.value()
    return groups, values


def write_best_experiment(sweep_dir: Path, best: pd.Series) -> Path:
    """The best trial's overrides as a ready `experiment` config (`# @package _global_`)."""
    from omegaconf import OmegaConf

    groups, values = trial_experiment(best["run_dir"])
    body = OmegaConf.create()
    for key, value in values.items():
        OmegaConf.update(body, key, value, force_add=True)
    header = (
        f"# @package _global_\n# Best trial {int(best['number'])} of sweep {sweep_dir}: "
        f"objective {best['objective']:.6f}\n# Retrain: python train.py "
        f"--config-dir {sweep_dir} experiment=best\n"
    )
    text = yaml.safe_dump({"defaults": groups, **OmegaConf.to_container(body)}, sort_keys=False)
    path = sweep_dir / BEST_EXPERIMENT
    path.write_text(header + text)
    exp_dir = sweep_dir / "experiment"  # so that `--config-dir <sweep_dir>` finds it
    exp_dir.mkdir(exist_ok=True)
    (exp_dir / "best.yaml").write_text(header + text)
    return path
