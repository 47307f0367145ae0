"""The sweep's plots: objective per trial with the best so far, objective per parameter."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd


def plot_trials(sweep_dir: Path, trials: pd.DataFrame, param_keys: list[str]) -> list[Path]:
    """Objective per trial with best-so-far, and objective against each parameter (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scored = trials[trials["objective"].notna()]
    if scored.empty:
        return []
    colours = {"completed": "tab:blue", "stopped": "tab:orange"}
    fig, ax = plt.subplots(figsize=(7, 4))
    for status, part in scored.groupby("status"):
        ax.scatter(part["number"], part["objective"], label=status, c=colours.get(status, "k"))
    done = scored[scored["status"] == "completed"].sort_values("number")
    if len(done):
        ax.step(
            done["number"],
            done["objective"].cummin(),
            where="post",
            c="tab:green",
            label="best so far (completed)",
        )
    ax.set(xlabel="trial", ylabel="objective (validation log loss)", title="Objective per trial")
    ax.legend()
    fig.tight_layout()
    paths = [sweep_dir / "objective_per_trial.png"]
    fig.savefig(paths[0], dpi=100)
    plt.close(fig)

    n = len(param_keys)
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax, key in zip(axes.flat, param_keys, strict=False):
        values = scored[key]
        x = values if pd.api.types.is_numeric_dtype(values) else values.astype(str)
        for status, part in scored.groupby("status"):
            ax.scatter(x[part.index], part["objective"], c=colours.get(status, "k"), s=18)
        if (
            pd.api.types.is_numeric_dtype(values)
            and values.min() > 0
            and values.max() / values.min() > 20
        ):
            ax.set_xscale("log")
        ax.set(xlabel=key, ylabel="objective")
    for ax in list(axes.flat)[n:]:
        ax.remove()
    fig.tight_layout()
    paths.append(sweep_dir / "params_vs_objective.png")
    fig.savefig(paths[1], dpi=100)
    plt.close(fig)
    return paths
