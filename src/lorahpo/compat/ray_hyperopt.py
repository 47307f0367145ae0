"""Ray Tune's HyperOptSearch: Hyperopt's trial history (`_hpopt_trials`) and its choice
encoding (`_convert_categories_to_indices`), to add finished trials (warm start): Ray's adapter
takes start points but no evaluated ones."""

from __future__ import annotations

from typing import Any

from lorahpo.compat import attribute, broken, check_tested

PACKAGE = "ray"
TESTED = ">=2.60,<2.61"
check_tested(PACKAGE, TESTED)
check_tested("hyperopt", ">=0.2.7,<0.4")


def add_finished_trial(searcher: Any, parameters: dict[str, Any], loss: float) -> None:
    """Record `parameters` as a finished Hyperopt trial with loss `loss` (what Hyperopt's TPE
    reads when it proposes)."""
    from hyperopt import JOB_STATE_DONE, STATUS_OK
    from hyperopt.fmin import generate_trial

    config = dict(parameters)
    attribute(searcher, "_convert_categories_to_indices", PACKAGE)(config)  # a choice's index
    trials = attribute(searcher, "_hpopt_trials", PACKAGE)
    tid = trials.new_trial_ids(1)[0]
    doc = generate_trial(tid, config)
    doc["state"] = JOB_STATE_DONE
    doc["result"] = {"loss": float(loss), "status": STATUS_OK}
    trials.insert_trial_docs([doc])
    trials.refresh()


def finished_trials(searcher: Any) -> list[tuple[dict[str, Any], float]]:
    """(stored values, loss) of every finished trial Hyperopt knows; a choice as its index."""
    return [
        ({k: v[0] for k, v in t["misc"]["vals"].items() if v}, t["result"]["loss"])
        for t in attribute(searcher, "_hpopt_trials", PACKAGE).trials
        if t["result"].get("status") == "ok"
    ]


def contract() -> None:
    """A real HyperOptSearch: a finished trial added reads back, choice as index."""
    from ray import tune
    from ray.tune.search.hyperopt import HyperOptSearch

    domains = {"x": tune.uniform(0, 1), "c": tune.choice(["a", "b"])}
    searcher = HyperOptSearch(
        space=HyperOptSearch.convert_search_space(domains),
        metric="objective",
        mode="min",
        random_state_seed=0,
    )
    add_finished_trial(searcher, {"x": 0.5, "c": "b"}, 0.25)
    if finished_trials(searcher) != [({"x": 0.5, "c": 1}, 0.25)]:
        raise broken(PACKAGE, "a trial added to HyperOptSearch._hpopt_trials does not read back")
    if searcher.suggest("t0") is None:
        raise broken(PACKAGE, "HyperOptSearch does not propose after a trial was added")
