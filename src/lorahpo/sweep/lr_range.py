"""`search.lr_range=auto`: the learning-rate range the searchers draw from, found by a range
test (lorahpo.lr_finder) on the sweep's own data and model before the first trial.

The test runs once per sweep, in a process of its own; its result stays in
`<sweep_dir>/lr_range/`, so a resumed sweep searches the same range without running it again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from lorahpo.errors import UserError
from lorahpo.sweep.console import say
from lorahpo.sweep.space import Param

FOLDER = "lr_range"  # in the sweep directory: the test's result, plot and any error
RESULT_FILE, PLOT_FILE = "lr_range.json", "lr_range.png"
KEY = "train.lr"


def narrow(
    setting: str | None, space: dict[str, Param], sweep_dir: Path, cfg: DictConfig
) -> tuple[dict[str, Param], str | None]:
    """The space with `train.lr` replaced by the range test's range (log scale), and a note
    for the user; the space as it is when `search.lr_range` is null."""
    if setting is None:
        return space, None
    if setting != "auto":
        raise UserError(
            f"search.lr_range={setting} is not a setting: use search.lr_range=auto (a "
            "learning-rate range test chooses train.lr's range) or null (the space's own)."
        )
    if KEY not in space:
        return space, f"search.lr_range=auto left out: {KEY} is not searched"
    result = found_range(sweep_dir, cfg)
    if result["range"] is None:
        own = space[KEY]
        own = list(own.values) if own.is_choice else f"[{own.low:.2g}, {own.high:.2g}]"
        fell = (  # a result recorded before `fall` was kept: its loss never fell at all
            f"fell {max(result['fall'], 0.0):.1%} at most, under the "
            f"{result['needed_fall']:.1%} it takes to tell a fall from noise"
            if "fall" in result
            else "did not fall"
        )
        return space, (
            f"learning-rate range test: from {result['lrs'][0]:.0e} to {result['lrs'][-1]:.0e} "
            f"the smoothed training loss {fell}, so it suggests no range: {KEY} searched in "
            f"the space's own {own} ({sweep_dir / FOLDER / PLOT_FILE})"
        )
    low, high = result["range"]
    narrowed = {**space, KEY: Param(KEY, low=low, high=high, log=True)}
    note = (
        f"learning-rate range test: loss lowest at {result['lr_lowest_loss']:.2g}, falling "
        f"fastest at {result['lr_steepest']:.2g}: {KEY} searched in [{low:.2g}, {high:.2g}] "
        f"({sweep_dir / FOLDER / PLOT_FILE})"
    )
    return narrowed, note


def found_range(sweep_dir: Path, cfg: DictConfig) -> dict:
    """The range test's result for this sweep: the one recorded, or a new run's."""
    folder = sweep_dir / FOLDER
    if not (folder / RESULT_FILE).exists():
        run_range_test(cfg, folder)
    return json.loads((folder / RESULT_FILE).read_text())


def run_range_test(cfg: DictConfig, folder: Path) -> None:
    """`python -m lorahpo.lr_finder` on the trial config `cfg` (searched keys at their
    defaults); its failure is the sweep's, with the test's last words."""
    folder.mkdir(parents=True, exist_ok=True)
    trial_cfg = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", dir=folder, delete=False) as f:
        f.write(OmegaConf.to_yaml(trial_cfg, resolve=True))
    say(f"learning-rate range test -> {folder}")
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    result, plot = folder / RESULT_FILE, folder / PLOT_FILE
    cmd = [sys.executable, "-m", "lorahpo.lr_finder", f.name, str(result), str(plot)]
    proc = subprocess.run(cmd, env=env, text=True, capture_output=True)
    Path(f.name).unlink(missing_ok=True)
    if proc.returncode != 0 or not result.exists():
        (folder / "error.txt").write_text(proc.stdout + proc.stderr)
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(
            f"the learning-rate range test (search.lr_range=auto) failed: {last}. Its output "
            f"is in {folder}/error.txt; fix what it says, or run without it "
            "(search.lr_range=null searches the space's own train.lr range)."
        )
