"""The best trial of a sweep as a ready `experiment` config: retrain it with one command."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml

BEST_EXPERIMENT = "best_experiment.yaml"


def write_best_experiment(sweep_dir: Path, best: pd.Series) -> Path:
    """The best trial's overrides as a ready `experiment` config (`# @package _global_`)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    run_dir = Path(best["run_dir"])
    overrides = yaml.safe_load((run_dir / ".hydra/overrides.yaml").read_text()) or []
    choices = yaml.safe_load((run_dir / ".hydra/hydra.yaml").read_text())["hydra"]["runtime"][
        "choices"
    ]
    body = OmegaConf.create()
    groups = []
    for o in OverridesParser.create().parse_overrides(overrides):
        key = o.get_key_element()
        if key.startswith(("hydra.", "hydra/", "paths.", "search", "scheduler")):
            continue
        if key in choices:
            groups.append({f"override /{key}": o.value()})
        else:
            OmegaConf.update(body, key, o.value(), force_add=True)
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
