"""The run directory's records: a status is one word of `Status` on disk and in memory, a
record written by something else counts as unreadable, and the ledger takes only its events."""

from __future__ import annotations

import json
import logging

import pytest

from lorahpo.rundir import RunDir, RunResult, Status
from lorahpo.sweep import ledger

pytestmark = pytest.mark.unit


def test_a_status_is_written_and_read_back_as_its_word(tmp_path):
    rd = RunDir(tmp_path)
    rd.write_result(RunResult(status=Status.STOPPED, objective=1.25))
    assert json.loads(rd.result_path.read_text())["status"] == "stopped"
    back = rd.read_result()
    assert back.status is Status.STOPPED and back.objective == 1.25
    assert back.status == "stopped"  # a str: the CSV and JSON readers compare the word


@pytest.mark.parametrize("written", [{"status": "finished"}, {"objective": 1.0}])
def test_a_result_without_a_known_status_counts_as_unfinished(tmp_path, caplog, written):
    rd = RunDir(tmp_path)
    rd.result_path.write_text(json.dumps(written))
    with caplog.at_level(logging.WARNING):
        assert rd.read_result() is None
    assert str(rd.result_path) in caplog.text and "unfinished" in caplog.text


def test_the_ledger_records_only_its_events(tmp_path):
    ledger.record_event(tmp_path, "t0", ledger.Event.START, params={"lr": 1e-3})
    ledger.record_event(tmp_path, "t0", "complete")  # the word is the event
    assert [e["event"] for e in ledger.read_events(tmp_path)] == ["start", "complete"]
    with pytest.raises(ValueError, match="'finished' is not a valid Event"):
        ledger.record_event(tmp_path, "t0", "finished")
