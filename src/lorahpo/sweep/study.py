"""Every sweep, whatever its searcher, as an Optuna study: `<sweep_dir>/study.db`.

Built from the sweep's own files (trials.csv's rows and each trial's metrics.jsonl), so that
a hyperopt, random, grid or OpenBox sweep opens in Optuna's tools like a TPE one: `python -m
lorahpo.dashboard <sweep_dir>` (optuna-dashboard), or `optuna.load_study(study_name="sweep",
storage=...)`. Completed trials are COMPLETE with their objective, trials the scheduler
stopped are PRUNED, failed ones FAIL; every trial carries its objective per evaluation as
intermediate values (step = evaluation number), its trial number and run directory as user
attributes.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from pathlib import Path
from typing import Any

import pandas as pd

from lorahpo.objective import DEFAULT, Objective
from lorahpo.rundir import RunDir, Status
from lorahpo.sweep.space import Param

STUDY_FILE = "study.db"
STUDY_NAME = "sweep"


def distribution(p: Param):
    """The Optuna distribution of one searched parameter."""
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    if p.is_choice:
        return CategoricalDistribution(list(p.values))
    if p.integer:
        return IntDistribution(int(p.low), int(p.high), log=p.log)
    return FloatDistribution(float(p.low), float(p.high), log=p.log)


def frozen_trials(trials: pd.DataFrame, space: dict[str, Param]) -> list:
    """The finished trials of the table as Optuna trials (running and interrupted ones are
    left out: they have no result yet)."""
    import optuna
    from optuna.trial import TrialState

    states = {
        Status.COMPLETED: TrialState.COMPLETE,
        Status.STOPPED: TrialState.PRUNED,
        Status.FAILED: TrialState.FAIL,
    }
    out = []
    for row in trials.to_dict("records"):  # (itertuples would rename the dotted keys)
        state = states.get(row["status"])
        if state is None:
            continue
        params, dists = {}, {}
        for key, p in space.items():
            value = _plain(row.get(key))
            value = p.member(value) if value is not None else None
            if value is not None:
                params[key], dists[key] = value, distribution(p)
        metrics = RunDir(Path(row["run_dir"])).read_metrics()
        steps = {
            m.eval: m.objective
            for m in metrics
            if m.objective is not None and math.isfinite(m.objective)
        }
        value = _plain(row.get("objective"))
        if state == TrialState.COMPLETE and (value is None or not math.isfinite(value)):
            state = TrialState.FAIL
        out.append(
            optuna.trial.create_trial(
                state=state,
                value=value if state == TrialState.COMPLETE else None,
                params=params,
                distributions=dists,
                intermediate_values=steps,
                user_attrs={"number": int(row["number"]), "run_dir": row["run_dir"]},
            )
        )
    return out


def write_study(
    sweep_dir: Path, trials: pd.DataFrame, space: dict[str, Param], objective: Objective = DEFAULT
):
    """(Re)write `<sweep_dir>/study.db` from the table; returns the study (in memory)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    frozen = frozen_trials(trials, space)
    study = optuna.create_study(study_name=STUDY_NAME, direction=objective.direction)
    study.add_trials(frozen)
    tmp = sweep_dir / f".{STUDY_FILE}.tmp"
    tmp.unlink(missing_ok=True)
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna's experimental-API warnings
        on_disk = optuna.create_study(
            study_name=STUDY_NAME, storage=storage, direction=objective.direction
        )
        on_disk.add_trials(frozen)
    storage.engine.dispose()
    os.replace(tmp, sweep_dir / STUDY_FILE)  # readers never see half a database
    return study


def plot_study(sweep_dir: Path, study, trials: pd.DataFrame) -> list[Path]:
    """Optuna's own plots of the study (history, slices, parameter importances by fANOVA,
    parallel coordinates) and the learning curves of every trial, as PNGs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    logging.getLogger("matplotlib.legend").setLevel(logging.ERROR)  # legends of empty plots
    # categorical parameters whose values read as numbers (lora.r): plotted as categories, as
    # meant; matplotlib would say so four times per summary on the sweep's console
    logging.getLogger("matplotlib.category").setLevel(logging.WARNING)
    paths = [learning_curves(sweep_dir, trials)]
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    plots: list[tuple[str, Any]] = [
        ("optimization_history.png", ovm.plot_optimization_history),
        ("slice.png", ovm.plot_slice),
        ("parallel_coordinate.png", ovm.plot_parallel_coordinate),
    ]
    if len(complete) >= 2:
        plots.append(("param_importances.png", ovm.plot_param_importances))
    for name, plot in plots:
        with warnings.catch_warnings():  # Optuna's experimental API, matplotlib's layout
            warnings.simplefilter("ignore")
            try:
                ax = plot(study)
            except (ValueError, RuntimeError, ZeroDivisionError):
                continue  # e.g. importances of a parameter that never varied
            fig = (ax.flat[0] if hasattr(ax, "flat") else ax).get_figure()
            w, h = fig.get_size_inches()
            fig.set_size_inches(max(w, 8), max(h, 5))
            fig.tight_layout()
            fig.savefig(sweep_dir / name, dpi=100)
        plt.close(fig)
        paths.append(sweep_dir / name)
    return [p for p in paths if p is not None]


def importances(sweep_dir: Path) -> dict[str, float]:
    """Which hyperparameters mattered for the objective: fANOVA (Optuna's default evaluator,
    the one `param_importances.png` draws, seeded) on the completed trials of the sweep's
    study; empty with fewer than two, or when no parameter varied."""
    import optuna
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances

    study = optuna.load_study(study_name=STUDY_NAME, storage=f"sqlite:///{sweep_dir / STUDY_FILE}")
    if len([t for t in study.trials if t.state.name == "COMPLETE"]) < 2:
        return {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return get_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=0))
        except (ValueError, RuntimeError, ZeroDivisionError):
            return {}


def learning_curves(sweep_dir: Path, trials: pd.DataFrame) -> Path | None:
    """Objective per evaluation for every trial, coloured by how it ended: how one judges
    what the scheduler stopped. (Optuna's intermediate-values plot colours by trial.)"""
    import matplotlib.pyplot as plt

    colours = {Status.COMPLETED: "tab:blue", Status.STOPPED: "tab:orange", Status.FAILED: "tab:red"}
    fig, ax = plt.subplots(figsize=(8, 5))
    drawn = set()
    for row in trials.itertuples(index=False):
        metrics = RunDir(Path(row.run_dir)).read_metrics()
        points = [(m.eval, m.objective) for m in metrics if m.objective is not None]
        if not points:
            continue
        x, y = zip(*points, strict=True)
        colour = colours.get(row.status, "tab:gray")
        label = row.status if row.status not in drawn else None
        drawn.add(row.status)
        ax.plot(x, y, marker=".", c=colour, alpha=0.7, label=label)
    if not drawn:
        plt.close(fig)
        return None
    ax.set(xlabel="evaluation", ylabel="objective", title="Learning curves of every trial")
    ax.legend()
    fig.tight_layout()
    path = sweep_dir / "learning_curves.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _plain(value: Any) -> Any:
    """A table cell as a plain Python value (None for a missing one)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if hasattr(value, "item"):  # numpy scalar
        value = value.item()
        if isinstance(value, float) and math.isnan(value):
            return None
    return value
