"""Searchers as a sweep builds them: start points first, parallel-aware TPE, stopped trials
told as what they are."""

import math

import pytest

from lorahpo.objective import DEFAULT
from lorahpo.schema import group_node
from lorahpo.sweep import searchers
from lorahpo.sweep.space import build_space, start_points

from conftest import CONF, NEEDS_OPENBOX, ROOT, compose_cfg

pytestmark = pytest.mark.unit

SPACE, _ = build_space(
    {
        "train.lr": "tag(log, interval(1e-4, 1e-2))",
        "lora.r": "choice(8, 16, 32)",
        "lora.dropout": "interval(0.0, 0.2)",
    },
    [],
)


def _searcher(algorithm, points=None, tmp_path=None, **search):
    cfg = group_node("search", algorithm=algorithm, seed=0, n_initial=2, **search)
    ctx = searchers.BuildContext(cfg, SPACE, DEFAULT, 4, tmp_path, points or [])
    searcher, domains = searchers.build(ctx)
    if domains:
        searcher.set_search_properties("objective", "min", domains)
    return searcher


def _loss(p):
    return (math.log10(p["train.lr"]) + 3) ** 2 + p["lora.dropout"]


def test_start_points_are_the_default_run_and_published_bests():
    defaults = compose_cfg()
    points, notes = start_points(["default", {"lora.r": 32}], SPACE, defaults)
    assert points == [
        {"train.lr": 1e-3, "lora.r": 16, "lora.dropout": 0.05},
        {"train.lr": 1e-3, "lora.r": 32, "lora.dropout": 0.05},
    ]
    assert notes == []
    points, notes = start_points([{"lora.r": 12}], SPACE, defaults)
    assert points == [] and "lora.r=12 outside the search space" in notes[0]
    # the 8B models carry the reference task's published best as a second start point
    big = compose_cfg("model=deepseek")
    assert big.search.start_points[0] == "default"
    assert big.search.start_points[1]["train.lr"] == pytest.approx(2.35e-4)


def _every(can: str) -> list:
    """The registry's searchers that declare `can`, each needing its extra where it has one."""
    return [
        pytest.param(name, marks=NEEDS_OPENBOX) if spec.extra == "openbox" else name
        for name, spec in searchers.registry().items()
        if getattr(spec, can)
    ]


def test_one_name_per_searcher():
    """`search=X` is conf/search/X.yaml and lorahpo/sweep/searchers/X.py, declaring X."""
    modules = ROOT / "src" / "lorahpo" / "sweep" / "searchers"
    names = list(searchers.registry())
    assert names == sorted(p.stem for p in (CONF / "search").glob("*.yaml"))
    assert names == sorted(p.stem for p in modules.glob("[!_]*.py") if p.stem != "__main__")
    for name in names:
        assert compose_cfg(f"search={name}").search.algorithm == name


@pytest.mark.parametrize("algorithm", _every("takes_start_points"))
def test_every_searcher_proposes_the_start_points_first(algorithm, tmp_path):
    points = [
        {"train.lr": 1e-3, "lora.r": 16, "lora.dropout": 0.05},
        {"train.lr": 2.35e-4, "lora.r": 32, "lora.dropout": 0.1},
    ]
    searcher = _searcher(algorithm, points, tmp_path)
    if algorithm == "random":  # Ray's generator resolves its domains itself
        from ray.tune.search import BasicVariantGenerator

        assert isinstance(searcher, BasicVariantGenerator)
        assert searcher._points_to_evaluate == points
        return
    got = [searcher.suggest(f"t{i}") for i in range(3)]
    assert got[0] == pytest.approx(points[0]) and got[1] == pytest.approx(points[1])
    assert got[2] not in points


def test_tpe_sends_free_slots_to_different_points():
    """Four slots free at once after the start-up trials: constant_liar counts the running
    trials as bad results, so the four proposals are not the same point four times."""
    searcher = _searcher("tpe")
    for i in range(4):  # start-up trials, finished
        p = searcher.suggest(f"done{i}")
        result = {"objective": _loss(p), "training_iteration": 1, "evals": 1}
        searcher.on_trial_result(f"done{i}", result)
        searcher.on_trial_complete(f"done{i}", result)
    running = [searcher.suggest(f"run{i}") for i in range(4)]
    lrs = sorted(math.log10(p["train.lr"]) for p in running)
    assert min(b - a for a, b in zip(lrs, lrs[1:], strict=False)) > 0.01  # > 2% apart
    sampler = searcher.study().sampler
    assert sampler._constant_liar and sampler._multivariate


def test_a_stopped_trial_is_pruned_with_its_intermediate_values():
    from optuna.trial import TrialState

    searcher = _searcher("tpe")
    for name, evals in (("stopped", 2), ("finished", 12)):
        searcher.suggest(name)
        for step in range(1, evals + 1):
            result = {"objective": 2.0 - 0.1 * step, "training_iteration": step, "evals": step}
            searcher.on_trial_result(name, {**result, "planned_evals": 12})
        searcher.on_trial_complete(name, {**result, "planned_evals": 12})
    stopped, finished = searcher.study().trials
    # PRUNED with the values it reported per evaluation; TPE ranks pruned trials by the
    # evaluation they reached, below every completed one
    assert stopped.state == TrialState.PRUNED
    assert stopped.intermediate_values == pytest.approx({1: 1.9, 2: 1.8})
    assert finished.state == TrialState.COMPLETE and finished.value == pytest.approx(0.8)
    # a failed trial stays failed
    searcher.suggest("failed")
    searcher.on_trial_complete("failed", None, error=True)
    assert searcher.study().trials[-1].state == TrialState.FAIL


@pytest.mark.parametrize("algorithm", _every("learns_from_history"))
def test_warm_start_tells_the_searcher_earlier_trials(algorithm, tmp_path):
    """Earlier sweeps' completed trials (from their trials.csv) reach the searcher's own
    history before it proposes; trials outside the current space are skipped and counted."""
    import pandas as pd

    from lorahpo.sweep.warm_start import evaluated_points, warm_start

    old = tmp_path / "old"
    old.mkdir()
    pd.DataFrame(
        {
            "number": [0, 1, 2, 3],
            "status": ["completed", "completed", "stopped", "completed"],
            "objective": [0.5, 0.7, 1.5, 0.6],
            "train.lr": [1e-3, 2e-3, 1e-3, 5e-2],  # 5e-2 is outside the space
            "lora.r": [16, 8, 8, 16],
            "lora.dropout": [0.05, 0.1, 0.1, 0.05],
        }
    ).to_csv(old / "trials.csv", index=False)
    points, skipped = evaluated_points([old], SPACE)
    assert [v for _, v in points] == [0.5, 0.7] and skipped == 1
    searcher = _searcher(algorithm, None, tmp_path)
    assert warm_start(searcher, searchers.get(algorithm), points) == 2
    if hasattr(searcher, "study"):  # Optuna's samplers: tpe, cmaes, optuna_gp
        told = [(t.params, t.value) for t in searcher.study().trials]
    elif algorithm == "hyperopt":
        told = [({**p, "lora.r": (8, 16, 32)[p["lora.r"]]}, v) for p, v in searcher.history()]
    else:
        told = [
            (o.config.get_dictionary(), o.objectives[0])
            for o in searcher.advisor.get_history().observations
        ]
    assert len(told) == len(points)
    for (got, value), (params, objective) in zip(told, points, strict=True):
        assert got == pytest.approx(params) and value == objective
    assert searcher.suggest("next") is not None
