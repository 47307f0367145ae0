"""A run killed mid-way continues from its latest checkpoint when run again in its folder."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from conftest import ROOT, compose_cfg, read_jsonl, run_here

RUN = ["debug=smoke", "train.epochs=4"]  # 8 evaluations, a checkpoint at each


def _kill_when(run_dir, ready, *args: str) -> None:
    """Start `python train.py` in `run_dir` and SIGKILL it once `ready(run_dir)` holds
    (nothing of the run gets a chance to clean up)."""
    cmd = [sys.executable, "train.py", *RUN, *args, f"hydra.run.dir={run_dir}"]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    deadline = time.time() + 180
    while time.time() < deadline and proc.poll() is None and not ready(run_dir):
        time.sleep(0.05)
    assert proc.poll() is None, proc.stderr.read()[-2000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def _kill_after(run_dir, evals: int, *args: str) -> None:
    """Kill the run once `evals` evaluations are written."""

    def written(d):
        metrics = d / "metrics.jsonl"
        return metrics.exists() and len(metrics.read_text().splitlines()) >= evals

    _kill_when(run_dir, written, *args)


@pytest.fixture(scope="module")
def killed(tmp_path_factory):
    """A run SIGKILLed after 3 of its 8 evaluations, kept as it was left; each test that
    continues it works on its own copy."""
    run_dir = tmp_path_factory.mktemp("killed") / "run"
    _kill_after(run_dir, 3)

    def copy(to):
        shutil.copytree(run_dir, to)
        return to

    return copy


@pytest.mark.xdist_group("killed")  # shares a module fixture: one worker runs them
@pytest.mark.faults
def test_a_killed_run_continues_from_its_last_checkpoint_as_if_never_stopped(tmp_path, killed):
    whole = tmp_path / "whole"
    assert run_here(*RUN, f"hydra.run.dir={whole}").returncode == 0

    cut = killed(tmp_path / "cut")
    before = read_jsonl(cut / "metrics.jsonl")
    marks = {
        int(p.parent.name.split("-")[1]): json.loads(p.read_text())
        for p in (cut / "checkpoints").glob("checkpoint-*/resume.json")
    }
    assert marks, "no complete checkpoint when the run was killed"
    assert len(marks) <= 2  # the latest and the best
    latest = max(marks)
    proc = run_here(*RUN, f"hydra.run.dir={cut}")
    assert proc.returncode == 0, proc.stderr[-3000:]

    result = json.loads((cut / "result.json").read_text())
    assert result["resumed_from_step"] == latest
    after, reference = read_jsonl(cut / "metrics.jsonl"), read_jsonl(whole / "metrics.jsonl")
    assert [r["eval"] for r in after] == list(range(1, 9))  # none missing, none twice
    # the evaluations up to the checkpoint are the first process's, not done again
    done_before = [r for r in after if r["step"] <= result["resumed_from_step"]]
    assert done_before == before[: len(done_before)] and len(done_before) >= 2
    assert marks[latest]["evals"] == len(done_before)
    # optimizer, scheduler, RNG and data order restored: the same run as never stopped
    for a, b in zip(after, reference, strict=True):
        assert a["step"] == b["step"]
        assert a["objective"] == pytest.approx(b["objective"], abs=1e-6)
    preds = pd.read_csv(cut / "val_predictions.csv")
    pd.testing.assert_frame_equal(preds, pd.read_csv(whole / "val_predictions.csv"), atol=1e-5)
    assert (cut / "adapter" / "adapter_model.safetensors").exists()
    assert not (cut / "checkpoints").exists()  # only the best adapter remains


@pytest.mark.xdist_group("killed")  # shares a module fixture: one worker runs them
@pytest.mark.faults
def test_a_checkpoint_of_another_config_is_not_continued(tmp_path, killed):
    run_dir = killed(tmp_path / "run")
    assert list((run_dir / "checkpoints").glob("checkpoint-*/resume.json"))
    started = time.time()
    proc = run_here(*RUN, "train.lr=0.002", f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "checkpoint of another config" in proc.stdout + proc.stderr
    result = json.loads((run_dir / "result.json").read_text())
    assert "resumed_from_step" not in result
    records = read_jsonl(run_dir / "metrics.jsonl")
    assert [r["eval"] for r in records] == list(range(1, 9))
    assert all(r["time"] >= started for r in records)  # every evaluation done anew


@pytest.mark.xdist_group("killed")  # shares a module fixture: one worker runs them
@pytest.mark.faults
def test_a_damaged_checkpoint_is_reported_and_not_continued(tmp_path, killed):
    from lorahpo.resume import _damage

    run_dir = killed(tmp_path / "run")
    marked = [p.parent for p in (run_dir / "checkpoints").glob("checkpoint-*/resume.json")]
    ckpt = max(marked, key=lambda p: int(p.name.split("-")[1]))  # the latest
    assert _damage(ckpt) is None
    for name in ("adapter_model.safetensors", "optimizer.pt", "trainer_state.json"):
        copy = tmp_path / f"copy-{name}"
        shutil.copytree(ckpt, copy)
        with (copy / name).open("r+b") as f:  # cut short, as by a full disk
            f.truncate((copy / name).stat().st_size // 2)
        assert _damage(copy), name
        shutil.rmtree(copy)

    with (ckpt / "optimizer.pt").open("r+b") as f:
        f.truncate((ckpt / "optimizer.pt").stat().st_size - 100)
    proc = run_here(*RUN, f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "is damaged" in proc.stdout + proc.stderr
    assert [r["eval"] for r in read_jsonl(run_dir / "metrics.jsonl")] == list(range(1, 9))


@pytest.mark.faults
def test_a_run_without_validation_resumes_to_the_same_adapter(tmp_path):
    """The final retrain on every row (no validation fold) checkpoints and resumes too."""
    from safetensors.torch import load_file

    final = ["data.val_fold=null"]
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert run_here(*RUN, *final, f"hydra.run.dir={whole}").returncode == 0
    _kill_when(cut, lambda d: any(d.glob("checkpoints/*/resume.json")), *final)
    assert run_here(*RUN, *final, f"hydra.run.dir={cut}").returncode == 0
    result = json.loads((cut / "result.json").read_text())
    assert result["status"] == "completed" and result["resumed_from_step"] > 0
    a = load_file(whole / "adapter" / "adapter_model.safetensors")
    b = load_file(cut / "adapter" / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert (a[key] - b[key]).abs().max().item() < 1e-6, key


@pytest.mark.unit
def test_the_fingerprint_follows_what_is_trained_not_how_a_sweep_schedules_it():
    from lorahpo.resume import fingerprint

    base = fingerprint(compose_cfg())
    for same in (["hardware.concurrency=3", "hardware.max_retries=0"], ["logger=tensorboard"]):
        assert fingerprint(compose_cfg(*same)) == base, same
    for other in (["train.lr=0.002"], ["seed=7"], ["hardware.quantization=nf4"], ["lora.r=8"]):
        assert fingerprint(compose_cfg(*other)) != base, other
