"""Faults a long sweep meets, each made real: a SIGKILLed driver, a SIGKILLed trial worker, a
node that leaves the Ray cluster mid-trial. Real processes, real Ray, smoke-sized trials."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest

from conftest import SMOKE, read_events, read_jsonl, run_cli, start_sweep, wait_for_event

pytestmark = pytest.mark.faults

ONE_AT_A_TIME = ["search=random", "scheduler=fifo", "hardware.cpus_per_trial=1"]


def _evals(run_dir: Path) -> int:
    path = run_dir / "metrics.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def _marked(run_dir: Path) -> bool:
    """Whether a run has a checkpoint marked complete (lorahpo.resume)."""
    return any((run_dir / "checkpoints").glob("checkpoint-*/resume.json"))


def _wait_until(check, timeout: float = 180, what: str = "") -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout} s: {what}")


def _ray_iterations(sweep_dir: Path) -> dict[int, list[int]]:
    """Per trial number, the evaluation counts Ray Tune (and so its scheduler) was given, in
    the order it got them (each trial's result log in Ray's own folders)."""
    numbers = json.loads((sweep_dir / "trial_numbers.json").read_text())
    out = {}
    for trial_id, num in numbers.items():
        logs = list(sweep_dir.glob(f".tune*/{trial_id}/result.json"))
        out[num] = [r["training_iteration"] for log in logs for r in read_jsonl(log)]
    return out


def _check_every_evaluation_once(sweep_dir: Path, trials: pd.DataFrame, planned: int) -> None:
    for n in trials["number"]:
        evals = [r["eval"] for r in read_jsonl(sweep_dir / str(n) / "metrics.jsonl")]
        assert evals == list(range(1, planned + 1)), (n, evals)
        assert not (sweep_dir / str(n) / "checkpoints").exists()  # only the best adapter


def test_a_sigkilled_driver_resumes_its_running_trials_mid_way_and_leaves_no_strays(tmp_path):
    sweep = [*ONE_AT_A_TIME, "search.n_trials=4", "train.epochs=3", "hardware.concurrency=2"]
    proc = start_sweep(tmp_path, *sweep)
    # trials 0 and 1 run first; kill when a later trial is past its first checkpoints
    _wait_until(lambda: _evals(tmp_path / "2") >= 3, what="trial 2 at its 3rd evaluation")
    started = psutil.Process(proc.pid).children(recursive=True)  # Ray's processes, workers
    proc.send_signal(signal.SIGKILL)  # no handler runs, nothing is saved
    proc.communicate(timeout=60)
    time.sleep(1)
    strays = [p for p in started if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    finished = {
        n: (tmp_path / str(n) / "result.json").stat().st_mtime_ns
        for n in range(4)
        if (tmp_path / str(n) / "result.json").exists()
    }
    # running trials with a complete checkpoint (one killed while writing its first starts
    # again from step 0, as it should)
    interrupted = [n for n in range(4) if n not in finished and _marked(tmp_path / str(n))]
    assert finished and interrupted

    resume = [f"hydra.sweep.dir={tmp_path}", "hydra.sweeper.resume=true"]
    resumed = run_cli("-m", *SMOKE, *sweep, *resume)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-3000:]
    # Ray processes and workers of the dead driver were stopped before the resume went on
    alive = [p for p in strays if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not alive, [(p.pid, p.name()) for p in alive]
    if strays:
        assert "the interrupted sweep left running" in resumed.stdout

    trials = pd.read_csv(tmp_path / "trials.csv")
    assert list(trials["number"]) == [0, 1, 2, 3]  # exactly N, numbering kept
    assert (trials["status"] == "completed").all()
    for n, mtime in finished.items():  # no completed trial was run again
        assert (tmp_path / str(n) / "result.json").stat().st_mtime_ns == mtime
    for n in interrupted:  # each running trial continued from its latest checkpoint
        result = json.loads((tmp_path / str(n) / "result.json").read_text())
        assert result.get("resumed_from_step", 0) > 0, (n, result)
    _check_every_evaluation_once(tmp_path, trials, 6)
    for n, counts in _ray_iterations(tmp_path).items():  # the scheduler saw 1..6 in the end
        assert counts and counts[-1] == 6, (n, counts)


def test_a_killed_worker_is_retried_from_its_checkpoint(tmp_path):
    sweep = start_sweep(tmp_path, *ONE_AT_A_TIME, "search.n_trials=2", "train.epochs=2")
    worker = wait_for_event(tmp_path, "worker")
    _wait_until(lambda: list((tmp_path / "0/checkpoints").glob("*/resume.json")), what="ckpt")
    os.kill(worker["pid"], signal.SIGKILL)  # as the kernel's out-of-memory killer does
    out, err = sweep.communicate(timeout=300)
    assert sweep.returncode == 0, err[-3000:]
    trials = pd.read_csv(tmp_path / "trials.csv")
    assert list(trials["status"]) == ["completed", "completed"]
    assert "lost its worker" in out and "retry 1 of 1" in out
    result = json.loads((tmp_path / "0" / "result.json").read_text())
    assert result["resumed_from_step"] > 0
    events = [e for e in read_events(tmp_path) if e["trial_id"] == worker["trial_id"]]
    assert [e["event"] for e in events].count("retry") == 1
    assert len({e["pid"] for e in events if e["event"] == "worker"}) == 2
    _check_every_evaluation_once(tmp_path, trials, 4)


def test_a_killed_worker_without_retries_fails_its_trial_with_a_memory_hint(tmp_path):
    sweep = start_sweep(
        tmp_path, *ONE_AT_A_TIME, "search.n_trials=2", "train.epochs=3", "hardware.max_retries=0"
    )
    worker = wait_for_event(tmp_path, "worker")
    time.sleep(3)  # inside the first trial
    os.kill(worker["pid"], signal.SIGKILL)
    out, err = sweep.communicate(timeout=300)
    assert sweep.returncode == 0, err[-3000:]
    trials = pd.read_csv(tmp_path / "trials.csv")
    assert list(trials["status"]) == ["failed", "completed"]
    result = json.loads((tmp_path / "0" / "result.json").read_text())
    assert "worker process died" in result["error"] and "GiB of memory" in result["error"]
    assert "out-of-memory killer" in out  # the progress line says it too


@pytest.mark.xdist_group("cluster")  # starts a Ray cluster of its own: one at a time
def test_a_lost_node_is_retried_on_another_from_the_trials_checkpoint(tmp_path):
    from ray.cluster_utils import Cluster

    # a head without CPUs and two one-CPU worker nodes, all on this machine
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    nodes = [cluster.add_node(num_cpus=1) for _ in range(2)]
    try:
        cluster.wait_for_nodes()
        sweep = start_sweep(
            tmp_path,
            *ONE_AT_A_TIME,
            "search.n_trials=1",
            "train.epochs=4",
            f"hardware.ray_address={cluster.address}",
        )
        first = wait_for_event(tmp_path, "worker", timeout=180)
        _wait_until(lambda: _evals(tmp_path / "0") >= 3, what="trial 0 at its 3rd evaluation")
        lost = next(n for n in nodes if n.node_id == first["node"])
        cluster.remove_node(lost, allow_graceful=False)  # the node is gone, as in a crash
        out, err = sweep.communicate(timeout=300)
        assert sweep.returncode == 0, out[-2000:] + err[-3000:]
    finally:
        cluster.shutdown()
    trials = pd.read_csv(tmp_path / "trials.csv")
    assert list(trials["status"]) == ["completed"]
    workers = [e for e in read_events(tmp_path) if e["event"] == "worker"]
    assert [w["node"] for w in workers] == [
        first["node"],
        next(n.node_id for n in nodes if n is not lost),
    ]
    result = json.loads((tmp_path / "0" / "result.json").read_text())
    assert result["resumed_from_step"] > 0
    _check_every_evaluation_once(tmp_path, trials, 8)
