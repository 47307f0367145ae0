"""Ray Tune's OptunaSearch: its Optuna study and trials (`_ot_study`, `_ot_trials`,
`_completed_trials`), to tell Optuna that a trial was pruned (Ray's adapter can only say
COMPLETE or FAIL) and to read the study."""

from __future__ import annotations

from typing import Any

from lorahpo.compat import attribute, broken, check_tested

PACKAGE = "ray"
TESTED = ">=2.60,<2.61"
check_tested(PACKAGE, TESTED)


def study(searcher: Any):
    """The Optuna study behind a Ray OptunaSearch."""
    return attribute(searcher, "_ot_study", PACKAGE)


def tell_pruned(searcher: Any, trial_id: str) -> bool:
    """Tell the study that `trial_id` was pruned; False if it was told its end already."""
    from optuna.trial import TrialState

    completed = attribute(searcher, "_completed_trials", PACKAGE)
    if trial_id in completed:
        return False
    trials = attribute(searcher, "_ot_trials", PACKAGE)
    study(searcher).tell(trials[trial_id], None, state=TrialState.PRUNED)
    completed.add(trial_id)
    return True


def contract() -> None:
    """A real OptunaSearch: one suggestion, then that trial told pruned."""
    import optuna
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    searcher = OptunaSearch(
        space=OptunaSearch.convert_search_space({"x": tune.uniform(0, 1)}),
        metric="objective",
        mode="min",
        sampler=optuna.samplers.RandomSampler(seed=0),
    )
    searcher.suggest("t0")
    if not isinstance(study(searcher), optuna.Study):
        raise broken(PACKAGE, "OptunaSearch._ot_study is not an optuna.Study")
    if not tell_pruned(searcher, "t0") or study(searcher).trials[0].state.name != "PRUNED":
        raise broken(PACKAGE, "a trial told pruned through OptunaSearch._ot_trials is not PRUNED")
    searcher.on_trial_complete("t0", {"objective": 1.0})  # Ray's own path: told once only
    if study(searcher).trials[0].state.name != "PRUNED":
        raise broken(PACKAGE, "OptunaSearch._completed_trials no longer guards a told trial")
