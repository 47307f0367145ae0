"""Promotion-type ASHA: its rule, its config, and the limiter that lets a paused trial's slot
go to a new one. The sweep itself is in test_sweep.py."""

from pathlib import Path

import pytest

from lorahpo.errors import UserError
from lorahpo.objective import DEFAULT, parse_objective
from lorahpo.schema import group_node
from lorahpo.sweep.promotion import PromotionASHA, promotable
from lorahpo.sweep.schedulers import make_scheduler

pytestmark = pytest.mark.unit


def test_a_trial_is_promoted_once_in_the_top_fraction_of_its_rung():
    rung = {"a": 0.9}
    assert promotable(rung, set(), 2, DEFAULT) == []  # one result: the top half is empty
    rung.update(b=0.7, c=1.2, d=0.8)
    assert promotable(rung, set(), 2, DEFAULT) == ["b", "d"]  # lower log loss first
    assert promotable(rung, {"b"}, 2, DEFAULT) == ["d"]  # each trial once
    assert promotable(rung, set(), 3, DEFAULT) == ["b"]
    accuracy = parse_objective("accuracy")
    assert promotable(rung, set(), 2, accuracy) == ["c", "a"]  # higher is better


def test_promotion_type_is_chosen_by_scheduler_type():
    asha = group_node("scheduler", name="asha", grace_period=1, reduction_factor=2, type="stopping")
    assert type(make_scheduler(asha, 8, DEFAULT, Path())).__name__ == "AsyncHyperBandScheduler"
    asha.type = "promotion"
    scheduler = make_scheduler(asha, 8, DEFAULT, Path())
    assert isinstance(scheduler, PromotionASHA)
    assert scheduler.rungs == [1, 2, 4, 8] and scheduler.factor == 2  # as Ray's ASHA's rungs
    asha.type = "pause"
    with pytest.raises(UserError, match="scheduler.type='pause' is not an ASHA type"):
        make_scheduler(asha, 8, DEFAULT, Path())


def test_a_paused_trial_frees_its_slot_for_a_new_one(tmp_path):
    """Ray Tune's limiter counts a trial as running until it completes; the sweep's gate
    counts the ones that run, so that two paused trials do not hold both slots of a 2-slot
    sweep. Its count survives a restored experiment."""
    from ray import tune
    from ray.tune.experiment import Experiment
    from ray.tune.search import BasicVariantGenerator

    from lorahpo.sweep.budget_gate import gate

    def experiment():
        config = {"x": tune.uniform(0, 1)}
        return Experiment("x", _trainable, config=config, num_samples=9, storage_path=tmp_path)

    gated = gate(BasicVariantGenerator(random_state=0), 2)
    gated.add_configurations([experiment()])
    t1, t2 = gated.next_trial().trial_id, gated.next_trial().trial_id
    assert gated.next_trial() is None  # two running
    gated.on_pause(t1)
    t3 = gated.next_trial().trial_id  # t1's slot
    assert gated.next_trial() is None
    gated.on_unpause(t1)  # promoted: t1, t2, t3 run
    gated.on_trial_complete(t2, {"objective": 0.5})
    assert gated.next_trial() is None  # still two running
    gated.on_trial_result(t3, {"objective": 0.4})
    gated.on_trial_complete(t3)  # (Ray passes no result for a trial stopped while paused)
    gated.on_pause(t1)
    gated.save_to_dir(str(tmp_path), session_str="s")
    again = gate(BasicVariantGenerator(random_state=0), 2)
    again.restore_from_dir(str(tmp_path))
    assert again.live == {t1} and again.paused == {t1}


def _trainable(config):
    return None
