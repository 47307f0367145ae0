"""The sweep's preflight, in-process and without Ray: every check that must stop a sweep
before its first trial, and the plan it makes."""

import re

import pytest
from omegaconf import OmegaConf

from lorahpo.errors import UserError
from lorahpo.sweep.preflight import check_resources, preflight
from lorahpo.sweep.searchers import SearcherSpec

from conftest import HAS_OPENBOX, compose_cfg

pytestmark = pytest.mark.unit


def _preflight(tmp_path, *overrides, arguments=()):
    base = [f"hydra.sweep.dir={tmp_path}", *overrides]
    config = compose_cfg(*base)
    return preflight(config, list(arguments), lambda o: compose_cfg(*base, *o))


def test_the_default_sweep_plan(tmp_path):
    plan = _preflight(tmp_path)
    assert plan.searcher.name == "hyperopt" and plan.size == 16
    # 3 epochs of 4 evaluations: 13 with the last step's own (train.grad_accum=1)
    assert plan.sweep_dir == tmp_path and plan.max_evals == 13
    assert len(plan.points) == 1 and plan.notes == []  # the default run
    assert plan.points[0]["train.lr"] == pytest.approx(1e-3) and plan.points[0]["lora.r"] == 16
    assert plan.objective.mode == "min"
    assert type(plan.scheduler).__name__ == "PromotionASHA" and plan.scheduler.rungs == [2, 4, 8]


def test_under_asha_trials_evaluate_where_it_decides_and_at_their_end(tmp_path):
    """ASHA's rungs for 13 evaluations, grace 2, factor 2 are 2, 4 and 8 (Ray's own
    ASHAScheduler puts them there for max_t 14): the trials evaluate there, and last."""
    assert "train.eval_at=[2,4,8]" in _preflight(tmp_path).fixed
    plan = _preflight(tmp_path, "scheduler.grace_period=1", "scheduler.reduction_factor=3")
    assert "train.eval_at=[1,3,9]" in plan.fixed
    for overrides in (["scheduler.evaluate=every"], ["scheduler=fifo"], ["scheduler=median"]):
        assert not any(
            f.startswith("train.eval_at") for f in _preflight(tmp_path, *overrides).fixed
        )
    mine = _preflight(tmp_path, arguments=["train.eval_at=[3]"]).fixed  # the user's stands
    assert [f for f in mine if f.startswith("train.eval_at")] == ["train.eval_at=[3]"]


def test_scheduler_eval_subset_reaches_the_trials(tmp_path):
    """scheduler.eval_subset (0.5 under the default asha) becomes every trial's
    train.eval_subset; the user's own train.eval_subset stands; null turns it off."""
    plan = _preflight(tmp_path)
    assert "train.eval_subset=0.5" in plan.fixed and "train.eval_at=[2,4,8]" in plan.fixed
    off = _preflight(tmp_path, "scheduler.eval_subset=null").fixed
    assert not any(f.startswith("train.eval_subset") for f in off)
    mine = _preflight(tmp_path, arguments=["train.eval_subset=0.25"])
    assert [f for f in mine.fixed if f.startswith("train.eval_subset")] == [
        "train.eval_subset=0.25"
    ]


def test_a_time_budget_plans_trials_until_it_ends(tmp_path):
    plan = _preflight(tmp_path, "search.time_budget=1h30m", "search.n_trials=null")
    assert plan.size is None and plan.time_budget_s == 5400 and plan.milestone == 2
    plan = _preflight(tmp_path, "search.time_budget=45m", "scheduler=fifo")
    assert plan.size == 16 and plan.milestone == 13  # a cap; a trial's every evaluation


def test_a_grid_plans_every_combination_and_no_start_points(tmp_path):
    plan = _preflight(tmp_path, "search=grid")
    assert plan.size == 12 and plan.points == []
    assert plan.notes == ["search=grid ignores search.start_points"]


def test_command_line_sweep_overrides_edit_the_space(tmp_path):
    plan = _preflight(tmp_path, arguments=["lora.r=choice(4,8)", "train.epochs=1"])
    assert plan.space["lora.r"].values == (4, 8) and "train.epochs" not in plan.space
    assert "train.epochs=1" in plan.fixed and plan.max_evals == 5
    assert plan.notes == ["search.start_points[0] left out: lora.r=16 outside the search space"]


@pytest.mark.parametrize(
    "overrides,arguments,needle",
    [
        ((), ["lora.rank=choice(8,16)"], "lora.rank"),
        (("hardware.max_retries=-1",), [], "hardware.max_retries=-1: must be a whole number"),
        (("scheduler.max_t=3",), [], "scheduler.max_t=3 evaluations is below the 13"),
        (("search.algorithm=annealing",), [], "search.algorithm='annealing' is not known"),
        (("objective=brier",), [], "objective='brier' is not known"),
        (("search.time_budget=soon",), [], "search.time_budget='soon' is not a duration"),
        (("search.n_trials=null",), [], "search.n_trials=null needs a search.time_budget"),
        (("scheduler.eval_subset=2",), [], "scheduler.eval_subset=2: give the share"),
        (("data=csv", "data.train_path=does/not/exist.csv"), [], "no such file"),
        (("hardware.precision=fp16",), [], "hardware.precision='fp16' is not a precision"),
        (("hardware.quantization=int8",), [], "hardware.quantization='int8' is not a"),
    ],
)
def test_what_stops_a_sweep_before_ray_starts(tmp_path, overrides, arguments, needle):
    with pytest.raises(UserError, match=re.escape(needle)):
        _preflight(tmp_path, *overrides, arguments=arguments)


def test_a_real_model_without_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub-cache"))
    with pytest.raises(UserError, match="model=mistral_7b needs its weights"):
        _preflight(tmp_path, "model=mistral")


def test_a_searcher_whose_library_is_missing_names_its_extra():
    spec = SearcherSpec("x", "", None, False, False, False, False, extra="x", module="no_such_lib")
    with pytest.raises(UserError, match=r'pip install "lorahpo\[x\]"'):
        spec.check_installed()


def _hw(**kw):
    base = {"name": "cpu", "cpus_per_trial": 2, "gpus_per_trial": 0, "concurrency": 1}
    return OmegaConf.create({**base, **kw})


def test_resources_given_a_list_of_nodes():
    two_cpus = [{"CPU": 2.0}]
    assert check_resources(_hw(), two_cpus) is None
    note = check_resources(_hw(concurrency=2), two_cpus)
    assert "holds 1 trial(s) of 2 CPU(s) at once" in note and "cpus_per_trial=1" in note
    with pytest.raises(UserError, match="hardware.cpus_per_trial=512.*no node"):
        check_resources(_hw(cpus_per_trial=512), two_cpus)
    with pytest.raises(UserError, match="use hardware=cpu"):
        check_resources(_hw(name="gpu", gpus_per_trial=1), two_cpus)
    assert check_resources(_hw(gpus_per_trial=1, concurrency=5), [{"CPU": 16, "GPU": 8}]) is None


@pytest.mark.skipif(HAS_OPENBOX, reason="runs where the openbox extra is absent (as in CI)")
def test_without_the_openbox_extra_search_gp_stops_before_anything_naming_it(tmp_path):
    with pytest.raises(UserError, match=re.escape('pip install "lorahpo[openbox]"')):
        _preflight(tmp_path, "search=gp")
