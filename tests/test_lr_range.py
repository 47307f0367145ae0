"""The learning-rate range test (`search.lr_range=auto`): its suggestion from a loss curve and
the sweep plan it narrows (the real test on the tiny model runs in a sweep of
tests/test_sweep.py)."""

import json

import numpy as np
import pytest

from lorahpo.errors import UserError
from lorahpo.lr_finder import MIN_FALL, smooth, suggest
from lorahpo.sweep import lr_range
from lorahpo.sweep.preflight import preflight

from conftest import compose_cfg


def _curve(lowest_at: float, n: int = 100) -> tuple[list[float], list[float]]:
    """A range test's loss: flat, falling towards `lowest_at`, then diverging."""
    lrs = np.geomspace(1e-7, 1.0, n)
    x = np.log10(lrs / lowest_at)
    return lrs.tolist(), (
        2.0 - 1.0 / (1.0 + np.exp(-4 * (x + 1.5))) + np.maximum(x, 0) ** 2
    ).tolist()


@pytest.mark.unit
def test_the_range_is_the_decade_around_a_tenth_of_the_lowest_loss():
    lrs, losses = _curve(lowest_at=1e-2)
    found = suggest(lrs, losses)
    # the smoothed loss lags the raw one by some steps: its lowest is past 1e-2, within
    # the decade
    assert 1e-2 <= found["lr_lowest_loss"] < 1e-1
    low, high = found["range"]
    # from the steepest fall to a third of the lowest loss: both suggestions inside
    assert low == found["lr_steepest"] < found["lr_lowest_loss"] / 10 < high
    assert high == pytest.approx(found["lr_lowest_loss"] / 3) and 10 <= high / low <= 100
    assert found["smoothed"] == pytest.approx(smooth(losses))
    with pytest.raises(ValueError, match="too few"):
        suggest(lrs[:3], losses[:3])
    rising = suggest(lrs, [2.0 + 0.01 * i for i in range(len(lrs))])
    assert rising["range"] is None  # a loss that never fell suggests nothing


@pytest.mark.unit
def test_a_flat_loss_whose_lowest_is_noise_suggests_no_range():
    """A pretrained model that learns slowly: the loss stays at ln 7 (a 7-way guess) with
    step-to-step noise until the learning rate is large enough to make it diverge. Its lowest
    point is noise (here at ~1e-6, three decades below any useful rate), not a range."""
    lrs = np.geomspace(1e-7, 1.0, 100)
    noise = np.random.default_rng(0).normal(0, 0.02, lrs.size)
    losses = np.log(7) + noise + np.maximum(np.log10(lrs / 1e-2), 0) * 3
    found = suggest(lrs.tolist(), losses.tolist())
    assert found["range"] is None and 0 < found["fall"] < found["needed_fall"] == MIN_FALL
    # the same curve with a real fall before it diverges does suggest one
    dip = 0.5 / (1 + np.exp(-4 * (np.log10(lrs / 1e-3))))
    assert suggest(lrs.tolist(), (losses - dip).tolist())["range"] is not None


def _preflight(tmp_path, *overrides, arguments=()):
    base = [f"hydra.sweep.dir={tmp_path}", *overrides]
    return preflight(compose_cfg(*base), list(arguments), lambda o: compose_cfg(*base, *o))


def _record(sweep_dir, low, high):
    folder = sweep_dir / lr_range.FOLDER
    folder.mkdir(parents=True)
    if low is None:  # the loss never fell
        result = {"lr_lowest_loss": 0.1, "lr_steepest": 0.1, "range": None, "lrs": [1e-7, 1.0]}
        result |= {"fall": 0.003, "needed_fall": 0.02}
    else:
        result = {"lr_lowest_loss": high * 3, "lr_steepest": low * 2, "range": [low, high]}
    (folder / lr_range.RESULT_FILE).write_text(json.dumps(result))


@pytest.mark.unit
def test_a_recorded_range_test_narrows_the_searched_learning_rate(tmp_path):
    """A sweep (or a resumed one) with the test's result in its folder searches train.lr in
    its range, log scale, says so, and keeps only the start points inside it."""
    _record(tmp_path, 4e-4, 4e-3)
    plan = _preflight(tmp_path, "search.lr_range=auto")
    lr = plan.space["train.lr"]
    assert (lr.low, lr.high, lr.log) == (4e-4, 4e-3, True)
    assert plan.notes[0].startswith("learning-rate range test: loss lowest at 0.012")
    assert "train.lr searched in [0.0004, 0.004]" in plan.notes[0]
    assert plan.points[0]["train.lr"] == pytest.approx(1e-3)  # the default run, inside
    tmp_other = tmp_path / "other"
    _record(tmp_other, 2e-3, 2e-2)
    plan = _preflight(tmp_other, "search.lr_range=auto")
    assert plan.points == [] and "train.lr=0.001 outside the search space" in plan.notes[1]


@pytest.mark.unit
def test_a_range_test_that_suggests_nothing_leaves_the_space_as_it_is(tmp_path):
    _record(tmp_path, None, None)
    plan = _preflight(tmp_path, "search.lr_range=auto")
    lr = plan.space["train.lr"]
    assert (lr.low, lr.high) == (2e-4, 3e-3)  # the tiny model's own range
    said = plan.notes[0]
    assert "from 1e-07 to 1e+00 the smoothed training loss fell 0.3% at most" in said
    assert "under the 2.0% it takes to tell a fall from noise" in said
    assert "train.lr searched in the space's own [0.0002, 0.003]" in said
    # a resumed sweep whose result was recorded before `fall` was kept reads it too
    result_file = tmp_path / lr_range.FOLDER / lr_range.RESULT_FILE
    old = {k: v for k, v in json.loads(result_file.read_text()).items() if "fall" not in k}
    result_file.write_text(json.dumps(old))
    said = _preflight(tmp_path, "search.lr_range=auto").notes[0]
    assert "from 1e-07 to 1e+00 the smoothed training loss did not fall, so it" in said
    assert "train.lr searched in the space's own [0.0002, 0.003]" in said


@pytest.mark.unit
def test_lr_range_settings_that_do_not_apply(tmp_path):
    with pytest.raises(UserError, match="search.lr_range=yes is not a setting"):
        _preflight(tmp_path, "search.lr_range=yes")
    plan = _preflight(tmp_path, "search.lr_range=auto", arguments=["train.lr=1e-3"])
    assert plan.notes[0] == "search.lr_range=auto left out: train.lr is not searched"
    assert not (tmp_path / lr_range.FOLDER).exists()  # no test run for nothing
