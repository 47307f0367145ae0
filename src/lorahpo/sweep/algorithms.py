"""Search algorithms and trial schedulers, all from Ray Tune and the libraries it wraps.

`search.algorithm` picks the searcher, `scheduler.name` the early-stopping rule. Budgets are
in evaluations: one `lorahpo.report` call is one Ray Tune iteration.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from lorahpo.errors import UserError
from lorahpo.sweep.space import Param

METRIC, MODE = "objective", "min"  # the best validation log loss so far in the trial
TIME_ATTR = "training_iteration"  # = evaluations done
PLANNED_ATTR = "planned_evals"  # reported with every evaluation: fewer done = stopped early


def stopped_early(result: dict | None) -> bool:
    """Whether a trial's last result is from before its last planned evaluation (the
    scheduler stopped it): its objective is not a final result."""
    if not result or result.get(PLANNED_ATTR) is None:
        return False
    return result.get(TIME_ATTR, 0) < result[PLANNED_ATTR]


def tune_domain(p: Param, grid: bool = False):
    """A Ray Tune domain for one parameter (a grid axis for the grid searcher)."""
    from ray import tune

    if grid:
        if not p.is_choice:
            raise UserError(
                f"search=grid cannot enumerate the interval of {p.key}: give it a "
                f"choice(...) or range(...), or use another search algorithm."
            )
        return tune.grid_search(list(p.values))
    if p.is_choice:
        return tune.choice(list(p.values))
    if p.integer:
        low, high = int(p.low), int(p.high) + 1  # Hydra's interval is inclusive
        return tune.lograndint(low, high) if p.log else tune.randint(low, high)
    return tune.loguniform(p.low, p.high) if p.log else tune.uniform(p.low, p.high)


def make_searcher(
    search: DictConfig,
    space: dict[str, Param],
    concurrency: int = 1,
    out_dir=None,
    start_points: list[dict[str, Any]] | None = None,
) -> tuple[Any, dict[str, Any]]:
    """(search algorithm, Ray Tune param_space) for `search.algorithm`. Ray Tune's own
    searchers get the space as Tune domains through `param_space` (Tune converts it for the
    library); OpenBox gets it in its own types.

    `start_points` (full parameter sets) are evaluated first, and the searcher learns from
    their results like from any other trial; a grid has no room for them.
    """
    import warnings

    from ray.tune.search import BasicVariantGenerator

    algorithm, seed = search.algorithm, search.get("seed")
    grid = algorithm == "grid"
    domains = {key: tune_domain(p, grid=grid) for key, p in space.items()}
    points = [dict(p) for p in start_points or []] or None
    if algorithm == "grid":  # every combination once: start points have no place
        return BasicVariantGenerator(random_state=seed), domains
    if algorithm == "random":
        return BasicVariantGenerator(random_state=seed, points_to_evaluate=points), domains
    n_initial = int(search.get("n_initial", 5))
    if algorithm in ("tpe", "cmaes"):
        import optuna

        from lorahpo.sweep.optuna_search import StopAwareOptunaSearch

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        if algorithm == "tpe":
            # constant_liar: trials still running count as bad results, so free slots are not
            # all sent to the same promising point; multivariate: models the parameters jointly
            sampler = optuna.samplers.TPESampler(
                seed=seed,
                n_startup_trials=n_initial,
                constant_liar=bool(search.get("constant_liar", True)),
                multivariate=bool(search.get("multivariate", True)),
            )
        else:
            sampler = optuna.samplers.CmaEsSampler(
                seed=seed, n_startup_trials=n_initial, warn_independent_sampling=False
            )
        # the space goes to the searcher itself (not to Tune), so that it can be told earlier
        # results before the first trial (warm start)
        searcher = StopAwareOptunaSearch(
            space=StopAwareOptunaSearch.convert_search_space(domains),
            metric=METRIC,
            mode=MODE,
            sampler=sampler,
            points_to_evaluate=points,
        )
        return searcher, {}
    if algorithm == "gp":
        from lorahpo.sweep.openbox_search import OpenBoxSearch

        searcher = OpenBoxSearch(
            space, METRIC, MODE, seed, n_initial, concurrency, out_dir, start_points=points
        )
        return searcher, {}
    if algorithm == "hyperopt":
        from lorahpo.sweep.hyperopt_search import WarmHyperOptSearch

        # the space goes to the searcher itself, so that it can be warm-started
        searcher = WarmHyperOptSearch(
            space=WarmHyperOptSearch.convert_search_space(domains),
            metric=METRIC,
            mode=MODE,
            n_initial_points=n_initial,
            random_state_seed=seed,
            points_to_evaluate=points,
        )
        return searcher, {}
    raise UserError(
        f"search.algorithm={algorithm!r} is not known; use search=random, grid, "
        "tpe, hyperopt, cmaes or gp."
    )


def make_scheduler(sched: DictConfig, max_evals: int):
    """The trial scheduler; its budget (`max_t`) is checked against the planned evaluations."""
    from ray.tune.schedulers import (
        ASHAScheduler,
        FIFOScheduler,
        HyperBandScheduler,
        MedianStoppingRule,
    )

    name = sched.name
    if name == "fifo":
        return FIFOScheduler()
    max_t = sched.get("max_t") or max_evals
    if max_t < max_evals:
        raise UserError(
            f"scheduler.max_t={max_t} evaluations is below the {max_evals} "
            "evaluations the longest trial plans (train.epochs / train.eval_every): "
            "trials would be cut short. Raise scheduler.max_t or leave it null."
        )
    grace = int(sched.get("grace_period", 1))
    if not 1 <= grace <= max_t:
        raise UserError(
            f"scheduler.grace_period={grace} must be between 1 and the budget of "
            f"{max_t} evaluations (train.epochs / train.eval_every)."
        )
    if grace == max_t:
        print(
            f"[sweep] note: scheduler.grace_period={grace} equals the budget of {max_t} "
            "evaluations, so no trial can be stopped early.",
            flush=True,
        )
    common = {"time_attr": TIME_ATTR, "metric": METRIC, "mode": MODE}
    # Ray's halving schedulers stop a trial when it reaches max_t; one more lets a trial that
    # survives every rung finish by itself, so that it saves its adapter and result.
    max_t += 1
    if name == "asha":
        return ASHAScheduler(
            max_t=max_t, grace_period=grace, reduction_factor=sched.reduction_factor, **common
        )
    if name == "hyperband":
        return HyperBandScheduler(max_t=max_t, reduction_factor=sched.reduction_factor, **common)
    if name == "median":
        return MedianStoppingRule(
            grace_period=grace, min_samples_required=sched.min_samples, **common
        )
    raise UserError(
        f"scheduler.name={name!r} is not known; use scheduler=fifo, asha, hyperband or median."
    )
