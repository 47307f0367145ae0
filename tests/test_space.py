"""The search space: Hydra's sweep grammar to parameters, and command-line edits."""

from pathlib import Path

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser

from lorahpo.errors import UserError
from lorahpo.objective import DEFAULT
from lorahpo.schema import group_node
from lorahpo.sweep.schedulers import make_scheduler
from lorahpo.sweep.searchers import tune_domains
from lorahpo.sweep.space import Param, build_space, parse_param, trial_overrides

pytestmark = pytest.mark.unit


def test_grammar_to_params():
    assert parse_param("lora.r", "choice(8, 16)") == Param("lora.r", values=(8, 16))
    assert parse_param("x", "range(1, 7, 2)").values == (1, 3, 5)
    lr = parse_param("train.lr", "tag(log, interval(5e-5, 5e-4))")
    assert (lr.low, lr.high, lr.log, lr.is_choice) == (5e-5, 5e-4, True, False)
    n = parse_param("n", "tag(int, interval(2, 6))")
    assert (n.integer, n.upper()) == (True, 6)
    assert parse_param("s", "choice(cosine, linear)").values == ("cosine", "linear")


@pytest.mark.parametrize(
    "expr,needle",
    [
        ("choice(8,", "not valid Hydra sweep grammar"),
        ("interval(3, 1)", "start must be below its end"),
        ("tag(log, interval(0, 1))", "log interval needs a start above 0"),
        ("5", "single value"),
    ],
)
def test_bad_entries_name_the_key(expr, needle):
    with pytest.raises(UserError, match=needle) as e:
        parse_param("train.lr", expr)
    assert "train.lr" in str(e.value)


def test_command_line_replaces_adds_and_pins():
    base = {
        "lora.r": "choice(8, 16, 32)",
        "train.epochs": "choice(2, 3)",
        "train.lr": "interval(1e-4, 1e-3)",
    }
    space, fixed = build_space(
        base, ["lora.r=choice(4,8)", "lora.dropout=interval(0,0.3)", "train.epochs=2", "model=tiny"]
    )
    assert space["lora.r"].values == (4, 8)  # replaced
    assert space["lora.dropout"].high == 0.3  # added
    assert "train.epochs" not in space  # pinned for every trial
    assert fixed == ["train.epochs=2", "model=tiny"]
    assert set(space) == {"lora.r", "lora.dropout", "train.lr"}


def test_empty_space_is_an_error():
    with pytest.raises(UserError, match="search space is empty"):
        build_space({"lora.r": "choice(8)"}, ["lora.r=8"])


def test_sampled_values_round_trip_through_hydra_overrides():
    params = {
        "train.lr": 0.000123456789,
        "lora.r": 16,
        "train.lr_scheduler": "cosine",
        "lora.dropout": 0.0,
        "flag": True,
        "path": "a b/c.csv",
    }
    parsed = OverridesParser.create().parse_overrides(trial_overrides(params))
    assert {o.key_or_group: o.value() for o in parsed} == params


def test_grid_needs_choices():
    with pytest.raises(UserError, match="search=grid cannot enumerate the interval of train.lr"):
        tune_domains({"train.lr": parse_param("train.lr", "interval(1e-4, 1e-3)")}, grid=True)


def test_one_name_per_scheduler():
    """`scheduler=X` is conf/scheduler/X.yaml and lorahpo/sweep/schedulers/X.py, declaring X;
    an unknown name lists the known ones."""
    from lorahpo.sweep import schedulers

    from conftest import CONF, ROOT

    modules = ROOT / "src" / "lorahpo" / "sweep" / "schedulers"
    names = list(schedulers.registry())
    assert names == sorted(p.stem for p in (CONF / "scheduler").glob("*.yaml"))
    assert names == sorted(p.stem for p in modules.glob("[!_]*.py"))
    with pytest.raises(UserError, match="use scheduler=asha, fifo, hyperband, median"):
        schedulers.get("pbt")


def test_scheduler_budget_is_checked_in_evaluations():

    asha = group_node(
        "scheduler", name="asha", grace_period=2, reduction_factor=2, max_t=4, type="stopping"
    )
    with pytest.raises(UserError, match="max_t=4 evaluations is below the 12"):
        make_scheduler(asha, max_evals=12, objective=DEFAULT, sweep_dir=Path())
    asha.max_t = None
    scheduler = make_scheduler(asha, max_evals=12, objective=DEFAULT, sweep_dir=Path())
    assert scheduler._max_t == 13  # one past the longest trial
    asha.grace_period = 20
    with pytest.raises(UserError, match="grace_period=20"):
        make_scheduler(asha, max_evals=12, objective=DEFAULT, sweep_dir=Path())
