"""The sweep's time budget: durations, the trial count it makes optional, the estimate that
gates new trials, and the gate around Ray Tune's search algorithms (the sweep itself:
tests/test_sweep.py)."""

import json
import time

import pytest
from omegaconf import OmegaConf

from lorahpo.errors import UserError
from lorahpo.objective import DEFAULT
from lorahpo.rundir import EvalRecord, RunDir
from lorahpo.schema import group_node
from lorahpo.sweep import budget, ledger, searchers
from lorahpo.sweep.budget_gate import TrialGate, gate
from lorahpo.sweep.preflight import planned_size
from lorahpo.sweep.schedulers import first_milestone


@pytest.mark.unit
@pytest.mark.parametrize(
    "text, seconds",
    [("3h", 10800), ("45m", 2700), ("1h30m", 5400), ("90s", 90), (600, 600), ("2.5h", 9000)],
)
def test_durations_in_hours_minutes_or_seconds(text, seconds):
    assert budget.parse_duration(text) == seconds


@pytest.mark.unit
@pytest.mark.parametrize("text", ["soon", "0", "3 days", "-5m", "h"])
def test_a_bad_duration_names_the_key_and_the_forms(text):
    with pytest.raises(UserError, match=r"search.time_budget=.* is not a duration.*=45m"):
        budget.parse_duration(text)


@pytest.mark.unit
def test_a_time_budget_makes_the_trial_count_optional():
    spec = searchers.get("tpe")
    space = {}
    assert planned_size(OmegaConf.create({"n_trials": 8}), spec, space, None) == 8
    assert planned_size(OmegaConf.create({"n_trials": None}), spec, space, 60.0) is None
    with pytest.raises(UserError, match="search.n_trials=null needs a search.time_budget"):
        planned_size(OmegaConf.create({"n_trials": None}), spec, space, None)
    with pytest.raises(UserError, match="search.n_trials=0"):
        planned_size(OmegaConf.create({"n_trials": 0}), spec, space, 60.0)


@pytest.mark.unit
def test_the_first_milestone_is_the_schedulers_first_judgement():
    assert first_milestone(OmegaConf.create({"name": "fifo"}), 12) == 12
    assert first_milestone(OmegaConf.create({"name": "asha", "grace_period": 2}), 12) == 2
    assert first_milestone(OmegaConf.create({"name": "median", "grace_period": 40}), 12) == 12


def _trial(sweep_dir, trial_id, started, eval_times, planned=None):
    num = ledger.claim_number(sweep_dir, trial_id)
    ledger.record_event(sweep_dir, trial_id, "start", params={})
    events = ledger.read_events(sweep_dir)
    events[-1]["time"] = started  # as if it had started then
    (sweep_dir / ledger.EVENTS_FILE).write_text("".join(json.dumps(e) + "\n" for e in events))
    rd = RunDir(sweep_dir / str(num))
    rd.path.mkdir(parents=True, exist_ok=True)
    for i, t in enumerate(eval_times, 1):
        rd.append_metrics(EvalRecord(i, i, i / 4, 1.0, 1.0, 0.5, planned_evals=planned, time=t))


@pytest.mark.unit
def test_no_new_trial_starts_that_could_not_reach_its_first_milestone(tmp_path):
    now = time.time()
    timer = budget.Budget(tmp_path, total_s=100.0, milestone=2)
    assert timer.to_milestone() is None and timer.allows_new_trial()  # nothing known yet
    _trial(tmp_path, "a", now - 50, [now - 40, now - 30])  # 20 s to its 2nd evaluation
    _trial(tmp_path, "b", now - 45, [now - 35, now - 5])  # 40 s
    _trial(tmp_path, "c", now - 44, [now - 20, now - 10])  # 34 s
    timer._estimate = (0.0, None)  # recompute now
    assert timer.to_milestone() == pytest.approx(34, abs=1)  # the median
    timer.spent_before = 100.0 - 40  # 40 s left: enough
    assert timer.allows_new_trial()
    timer.spent_before = 100.0 - 30  # 30 s left: a new trial would not reach its milestone
    assert not timer.allows_new_trial()


@pytest.mark.unit
def test_before_any_trial_reached_its_milestone_the_longest_running_one_bounds_it(tmp_path):
    now = time.time()
    _trial(tmp_path, "a", now - 25, [now - 5])  # one evaluation of the two in 25 s
    timer = budget.Budget(tmp_path, total_s=100.0, milestone=2)
    assert timer.to_milestone() == pytest.approx(25, abs=1)


@pytest.mark.unit
def test_a_trial_that_plans_fewer_evaluations_reaches_its_milestone_at_its_end(tmp_path):
    """FIFO's milestone is the longest trial's last evaluation; a shorter trial's end is the
    same judgement, so its time counts (not the longest running one's time so far)."""
    now = time.time()
    _trial(tmp_path, "short", now - 50, [now - 40, now - 30], planned=2)  # done in 20 s
    _trial(tmp_path, "long", now - 48, [now - 38, now - 28], planned=800)  # 48 s, going on
    timer = budget.Budget(tmp_path, total_s=100.0, milestone=800)
    assert timer.to_milestone() == pytest.approx(20, abs=1)


@pytest.mark.unit
def test_a_trial_started_again_after_its_milestone_counts_from_its_first_start(tmp_path):
    """A trial paused at a rung and promoted starts again (a new `start` event): its time
    to the milestone is from the start that got it there."""
    now = time.time()
    _trial(tmp_path, "a", now - 50, [now - 40, now - 30])  # 20 s to its 2nd evaluation
    ledger.record_event(tmp_path, "a", "start", params={})  # promoted just now
    timer = budget.Budget(tmp_path, total_s=100.0, milestone=2)
    assert timer.to_milestone() == pytest.approx(20, abs=1)


@pytest.mark.unit
def test_the_budget_is_the_sweeps_across_resumes(tmp_path):
    first = budget.Budget(tmp_path, total_s=60.0, milestone=1)
    first.spent_before = 42.0
    first.ended = True
    first.save()
    assert budget.ended_at_budget(tmp_path)
    again = budget.Budget(tmp_path, total_s=90.0, milestone=1)
    assert again.spent_before == pytest.approx(42.0, abs=0.5)
    assert 47 < again.left() <= 48
    budget.activate(again)  # a resumed run: its trials run again
    try:
        assert budget.active() is again and not budget.ended_at_budget(tmp_path)
    finally:
        budget.activate(None)
    line = budget.bought(tmp_path, {"completed": 3, "paused": 1})
    assert line.startswith("time budget 1:30: 0:4") and "4 trials (3 completed, 1 paused)" in line
    assert "larger search.time_budget" in line


@pytest.mark.unit
@pytest.mark.parametrize("name", ["random", "tpe"])
def test_the_gate_finishes_the_search_when_the_budget_is_spent(tmp_path, name):
    from ray.tune.search import SearchGenerator

    ctx = searchers.BuildContext(
        group_node("search", algorithm=name, seed=0, n_initial=2),
        {},
        DEFAULT,
        concurrency=2,
    )
    search_alg, _ = searchers.build(ctx)
    gated = gate(search_alg, 2)
    assert isinstance(gated, TrialGate) and gated.slots == 2
    if name == "tpe":  # a Searcher: asked through Tune's SearchGenerator
        assert isinstance(gated.inner, SearchGenerator)
    timer = budget.Budget(tmp_path, total_s=10.0, milestone=1)
    timer.spent_before = 10.0
    budget.activate(timer)
    try:
        if name == "random":  # (a SearchGenerator without an experiment yet has nothing to do)
            assert not gated.is_finished()
        assert gated.next_trial() is None
        assert gated.is_finished() and gated.inner.is_finished()
    finally:
        budget.activate(None)
