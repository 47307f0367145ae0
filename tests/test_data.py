"""Loading and validating users' CSV files: every bad input gets a message that says what to
fix and names the file and the problem."""

import numpy as np
import pandas as pd
import pytest

from lorahpo.data import Columns, format_texts, read_csv, split_by_question, subset_by_question
from lorahpo.errors import UserError
from lorahpo.toy import make_toy_frame

from conftest import compose_cfg

pytestmark = pytest.mark.unit


def _read(path, num_labels=7):
    return read_csv(path, "data.train_path", Columns(), num_labels)


def _write(tmp_path, text, name="data.csv", mode="w"):
    p = tmp_path / name
    p.write_bytes(text) if isinstance(text, bytes) else p.write_text(text)
    return p


def test_reads_a_good_file_and_treats_missing_responses_as_empty(tmp_path):
    p = _write(tmp_path, 'Question,Response,target\nq1,hello,0\nq1,,6\n"q,2","multi\nline",3\n')
    frame = _read(p)
    assert list(frame["Response"]) == ["hello", "", "multi\nline"]
    assert list(frame["target"]) == [0, 6, 3]
    assert frame["target"].dtype.kind == "i"


def test_missing_column_is_named(tmp_path):
    p = _write(tmp_path, "Question,Answer,target\nq,a,1\n")
    with pytest.raises(
        UserError, match=r"missing column\(s\) 'Response'.*has 'Question', 'Answer'"
    ):
        _read(p)


@pytest.mark.parametrize("value,row", [("7", 2), ("-1", 2), ("1.5", 2), ("abc", 2), ("", 2)])
def test_label_outside_range_names_row_and_value(tmp_path, value, row):
    p = _write(tmp_path, f"Question,Response,target\nq,a,0\nq,b,{value}\n")
    with pytest.raises(UserError) as e:
        _read(p)
    msg = str(e.value)
    assert f"on data row {row} (line {row + 1} of the file)" in msg
    assert "0..6" in msg and str(p) in msg


def test_bad_label_after_multiline_fields_names_the_physical_lines(tmp_path):
    text = 'Question,Response,target\nq,"one\ntwo\nthree",0\n\nq,"four\nfive",9\n'
    p = _write(tmp_path, text)
    with pytest.raises(UserError) as e:
        _read(p)
    assert "on data row 2 (lines 6-7 of the file)" in str(e.value)


def test_label_range_follows_num_labels(tmp_path):
    p = _write(tmp_path, "Question,Response,target\nq,a,0\nq,b,2\n")
    assert list(_read(p, num_labels=3)["target"]) == [0, 2]
    with pytest.raises(UserError, match="0..1"):
        _read(p, num_labels=2)


def test_empty_file(tmp_path):
    with pytest.raises(UserError, match="the file is empty"):
        _read(_write(tmp_path, ""))


def test_header_only(tmp_path):
    with pytest.raises(UserError, match="no data rows"):
        _read(_write(tmp_path, "Question,Response,target\n"))


def test_not_csv_text(tmp_path):
    blob = bytes(range(256)) * 8
    with pytest.raises(UserError, match="not CSV text"):
        _read(_write(tmp_path, blob, name="model.bin"))


def test_latin1_file_is_not_utf8_text(tmp_path):
    p = _write(tmp_path, "Question,Response,target\ncaf\xe9,r\xe9sum\xe9,1\n".encode("latin-1"))
    with pytest.raises(UserError, match="not UTF-8"):
        _read(p)


def test_path_that_does_not_exist(tmp_path):
    with pytest.raises(UserError, match=r"data.train_path=.*nope.csv: no such file"):
        _read(tmp_path / "nope.csv")


def test_a_folder_is_not_a_file(tmp_path):
    with pytest.raises(UserError, match="is a folder"):
        _read(tmp_path)


def test_test_file_needs_no_label_column(tmp_path):
    p = _write(tmp_path, "id,Question,Response\n7,q,a\n")
    assert len(read_csv(p, "data.test_path", Columns(), num_labels=None)) == 1


def test_split_keeps_each_question_on_one_side():
    frame = make_toy_frame(30, seed=0)
    tr, va = split_by_question(frame, "Question", folds=5, val_fold=2)
    assert len(tr) + len(va) == len(frame) and len(va) == 6 * 7
    assert set(frame["Question"].iloc[tr]).isdisjoint(frame["Question"].iloc[va])
    folds = [set(split_by_question(frame, "Question", 5, k)[1]) for k in range(5)]
    assert set().union(*folds) == set(range(len(frame)))


def test_eval_subset_is_whole_questions_stratified_and_fixed():
    """train.eval_subset's rows: about the share of the questions asked, every answer of a
    question in or out together, each label as often as in the fold, the same every run."""
    frame = make_toy_frame(40, seed=0)
    labels, groups = frame["target"].to_numpy(), frame["Question"].to_numpy()
    half = subset_by_question(labels, groups, 0.5, seed=0)
    questions = set(groups[half])
    assert len(questions) == 20 and len(half) == 20 * 7
    assert set(np.flatnonzero(np.isin(groups, list(questions)))) == set(half)
    assert np.bincount(labels[half], minlength=7).tolist() == [20] * 7
    assert (subset_by_question(labels, groups, 0.5, seed=0) == half).all()
    assert len(set(groups[subset_by_question(labels, groups, 0.25, seed=0)])) == 10
    assert len(subset_by_question(labels[:7], groups[:7], 0.5, seed=0)) == 0  # one question


def test_split_rejects_bad_fold_settings():
    frame = make_toy_frame(3, seed=0)
    with pytest.raises(UserError, match="3 distinct question"):
        split_by_question(frame, "Question", folds=5, val_fold=0)
    with pytest.raises(UserError, match="data.val_fold=5"):
        split_by_question(frame, "Question", folds=5, val_fold=5)


def test_template_fills_columns_and_names_unknown_ones():
    frame = pd.DataFrame({"Question": ["q {x}"], "Response": ["r"], "target": [np.int64(1)]})
    assert format_texts(frame, "Q: {Question} A: {Response}") == ["Q: q {x} A: r"]
    with pytest.raises(UserError, match="names column 'Answer'"):
        format_texts(frame, "{Answer}")


def test_tokenised_data_is_cached_by_content(tmp_path, monkeypatch):
    """A second load of the same rows does not tokenise again; other rows do."""
    from lorahpo import data as data_lib
    from lorahpo.inputs import load_inputs

    overrides = ["debug=smoke", f"paths.cache_dir={tmp_path}"]
    first = load_inputs(compose_cfg(*overrides))
    calls = []
    real = data_lib.tokenize
    monkeypatch.setattr(data_lib, "tokenize", lambda *a, **k: calls.append(1) or real(*a, **k))
    again = load_inputs(compose_cfg(*overrides, "data.val_fold=1"))  # another fold: same rows
    assert calls == []
    assert len(again.train_ds) + len(again.val_ds) == len(first.train_ds) + len(first.val_ds)
    assert list(again.train_lengths) == [len(x) for x in again.train_ds["input_ids"]]
    load_inputs(compose_cfg(*overrides, "data.max_length=32"))
    assert calls == [1]
    assert len(list((tmp_path / "tokens").iterdir())) == 2


@pytest.mark.parametrize(
    "excess,keep",
    [
        (0, {"Question": 50, "Response": 100}),
        (30, {"Question": 20, "Response": 100}),  # the question first, down to the floor
        (60, {"Question": 16, "Response": 74}),  # then the response
        (130, {"Question": 16, "Response": 4}),
        (145, {"Question": 5, "Response": 0}),  # then the question again, to nothing
    ],
)
def test_a_long_row_loses_its_question_then_its_response(excess, keep):
    from lorahpo.truncation import budget

    kept = budget({"Question": 50, "Response": 100}, excess, "Response", floor=16)
    assert kept == keep
