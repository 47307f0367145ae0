import pandas as pd
import pytest

from lorahpo.data import Columns, read_csv
from lorahpo.toy import SOURCES, make_toy_frame, write_toy_csvs

pytestmark = pytest.mark.unit


def test_same_seed_same_rows_other_seed_other_rows():
    a, b = make_toy_frame(40, seed=3), make_toy_frame(40, seed=3)
    pd.testing.assert_frame_equal(a, b)
    c = make_toy_frame(40, seed=4)
    assert not a["Response"].equals(c["Response"])


def test_every_question_answered_once_by_every_source():
    frame = make_toy_frame(50, seed=0)
    assert len(frame) == 50 * len(SOURCES)
    groups = frame.groupby("Question")["target"].apply(sorted)
    assert len(groups) == 50
    assert all(g == list(range(len(SOURCES))) for g in groups)


def test_responses_vary_in_length_and_style_overlaps():
    frame = make_toy_frame(200, seed=0)
    words = frame["Response"].str.split().str.len()
    assert words.min() < 30 and words.max() > 150  # tens to a few hundred tokens
    # sources tend to different lengths, but the ranges overlap
    by_source = words.groupby(frame["target"]).median()
    assert by_source.max() > 2 * by_source.min()
    first = frame["Response"].str.split().str[0]
    # a source's favourite opener is a tendency, not a rule: other sources use it too
    great = frame[first == "Great"]["target"]
    assert great.nunique() >= 3 and (great == 0).mean() > 0.3


def test_written_csvs_read_back_with_the_user_data_path(tmp_path):
    train_path, test_path = write_toy_csvs(tmp_path, n_questions=20, seed=0)
    train = read_csv(train_path, "data.train_path", Columns(), num_labels=7)
    test = read_csv(test_path, "data.test_path", Columns(), num_labels=None)
    assert len(train) + len(test) == 140
    assert set(train["Question"]).isdisjoint(set(test["Question"]))
    assert list(test["id"]) == list(map(str, range(len(test))))
