"""`python train.py -m`: real Hydra sweeper plugin, real Ray Tune, real trials (tiny, smoke)."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import (
    ROOT,
    SMOKE,
    read_events,
    read_jsonl,
    run_cli,
    run_here,
    start_sweep,
    wait_for_event,
)


def _sweep(tmp_path, *args, ok=True, env=None):
    proc = run_cli("-m", *SMOKE, *args, f"hydra.sweep.dir={tmp_path}", env=env)
    if ok:
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc, (
        pd.read_csv(tmp_path / "trials.csv") if (tmp_path / "trials.csv").exists() else None
    )


def _check_run_dirs(sweep_dir, trials, params):
    for row in trials.itertuples():
        run_dir = sweep_dir / str(row.number)
        assert str(run_dir) == row.run_dir
        cfg = yaml.safe_load((run_dir / ".hydra/config.yaml").read_text())
        for key in params:  # the parameters in trials.csv are the ones the trial ran with
            section, name = key.split(".")
            expected = trials.loc[row.Index, key]
            if isinstance(cfg[section][name], float):
                assert cfg[section][name] == pytest.approx(expected, rel=1e-9), key
            else:
                assert cfg[section][name] == expected, key
        assert json.loads((run_dir / "result.json").read_text())["status"] == row.status
        if row.status == "completed":
            assert (run_dir / "adapter/adapter_model.safetensors").exists()
        assert not (run_dir / "checkpoints").exists()


def _check_study(sweep_dir, trials):
    """Whatever the searcher, the sweep is an Optuna study in study.db, trial for trial."""
    import optuna

    study = optuna.load_study(study_name="sweep", storage=f"sqlite:///{sweep_dir}/study.db")
    states = {"completed": "COMPLETE", "stopped": "PRUNED", "failed": "FAIL"}
    assert len(study.trials) == len(trials)
    for t in study.trials:
        row = trials[trials["number"] == t.user_attrs["number"]].iloc[0]
        assert t.state.name == states[row["status"]]
        assert len(t.intermediate_values) == row["evals_done"]
        if row["status"] == "completed":
            assert t.value == pytest.approx(row["objective"])
        assert t.params["lora.r"] == row["lora.r"]


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory):
    """Sweeps that several tests read, each run once: `sweeps(*args)` -> (dir, proc, table)."""
    done = {}

    def sweep(*args):
        if args not in done:
            sweep_dir = tmp_path_factory.mktemp("sweep")
            done[args] = (sweep_dir, *_sweep(sweep_dir, *args))
        return done[args]

    return sweep


SEARCHED = ("search.n_trials=3", "train.lr=tag(log,interval(3e-4,5e-3))", "lora.r=choice(8,16)")
# read by the searcher x scheduler test, the 4-bit test, the retrain test and the dashboard
# test: the QLoRA path on CPU (NF4 base), as a sweep
RANDOM_FIFO = ("search=random", "scheduler=fifo", "hardware.quantization=nf4", *SEARCHED)
# read by the searcher x scheduler test and the maximised-objective test: TPE and ASHA
# maximising accuracy
TPE_MAXIMISED = ("search=tpe", "scheduler=asha", *SEARCHED, "objective=accuracy")
ASHA = [  # the same random trials, stopped early by ASHA or not
    "search=random",
    "search.n_trials=6",
    "train.epochs=2",
    "train.eval_every=0.25",
    "train.lr=tag(log,interval(1e-5,5e-3))",
]


@pytest.fixture(scope="module")
def asha_sweep(tmp_path_factory):
    """An ASHA sweep (the default, promotion type) tracked in MLflow's classic folder store,
    given as a plain folder (as many users keep it): (dir, table, MLflow store), read by
    three tests."""
    sweep_dir = tmp_path_factory.mktemp("asha")
    store = str(sweep_dir / "mlruns")
    args = ["scheduler=asha", "scheduler.grace_period=1", "logger=mlflow"]
    _, trials = _sweep(sweep_dir / "sweep", *ASHA, *args, f"logger.tracking_uri={store}")
    return sweep_dir / "sweep", trials, store


SWEEPS = [  # every searcher and every scheduler, each once (hyperopt, the default searcher:
    # tests/test_user_data.py; gp: tests/test_openbox_search.py, with its extra)
    pytest.param(RANDOM_FIFO, marks=pytest.mark.xdist_group("random_fifo")),
    (
        "search=grid",
        "scheduler=median",
        "lora.r=choice(8)",
        "train.lr_scheduler=choice(cosine)",
    ),
    pytest.param(TPE_MAXIMISED, marks=pytest.mark.xdist_group("tpe_maximised")),
    ("search=optuna_gp", "scheduler=hyperband", *SEARCHED, "search.lr_range=auto"),
    ("search=cmaes", "scheduler=asha", "scheduler.type=stopping", *SEARCHED),
]


@pytest.mark.unit
def test_the_sweeps_cover_every_searcher_and_scheduler():
    from lorahpo.sweep import searchers

    args = [a for p in SWEEPS for a in (p.values[0] if hasattr(p, "values") else p)]
    swept = {a.split("=")[1] for a in args if a.startswith("search=")}
    assert swept | {"hyperopt", "gp"} == set(searchers.registry())
    scheduled = {a.split("=")[1] for a in args if a.startswith("scheduler=")}
    assert scheduled == {p.stem for p in (ROOT / "conf" / "scheduler").glob("*.yaml")}


@pytest.mark.ray
@pytest.mark.parametrize(
    "args", SWEEPS, ids=lambda args: "-".join(a.split("=")[1] for a in args[:2])
)
def test_every_search_algorithm_and_scheduler(sweeps, args):
    search = args[0].split("=")[1]
    tmp_path, proc, trials = sweeps(*args)
    assert len(trials) == 3 and list(trials["number"]) == [0, 1, 2]
    assert set(trials["status"]) <= {"completed", "stopped"}
    assert trials["objective"].notna().all()
    params = ["train.lr", "lora.r", "train.lr_scheduler"]
    assert set(params) <= set(trials.columns)
    _check_run_dirs(tmp_path, trials, params)
    best = yaml.safe_load((tmp_path / "experiment/best.yaml").read_text())
    completed = trials[trials.status == "completed"]
    maximised = "objective=accuracy" in args
    top = completed["objective"].max() if maximised else completed["objective"].min()
    winners = completed[completed["objective"] == top]  # accuracies can tie
    assert any(best["train"]["lr"] == pytest.approx(lr) for lr in winners["train.lr"])
    for png in ["learning_curves", "optimization_history", "slice", "parallel_coordinate"]:
        assert (tmp_path / f"{png}.png").stat().st_size > 1000, png
    _check_study(tmp_path, trials)
    assert any(f"best: trial {n}" in proc.stdout for n in winners["number"])
    assert "Traceback" not in proc.stdout + proc.stderr
    if search != "grid":  # the first trial is the default run (start point), for every searcher
        first = trials.loc[0]
        assert first["train.lr"] == pytest.approx(1e-3) and first["lora.r"] == 16
        assert first["train.lr_scheduler"] == "cosine"
        if first["status"] == "completed":
            assert "best start point: trial 0" in proc.stdout
    else:
        assert "search=grid ignores search.start_points" in proc.stdout
    if "search.lr_range=auto" in args:
        _check_range_test(tmp_path, trials, proc.stdout)


def _check_range_test(sweep_dir, trials, out):
    """The real learning-rate range test, as the sweep ran it (its own process, before the
    first trial): the learning rate rose over the steps, the loss of each was kept, the loss
    fell clearly on the tiny model, and the trials drew train.lr from the range it chose."""
    from lorahpo.lr_finder import STEPS
    from lorahpo.sweep import lr_range

    found = json.loads((sweep_dir / "lr_range/lr_range.json").read_text())
    assert (sweep_dir / "lr_range/lr_range.png").stat().st_size > 10_000
    assert 5 <= len(found["losses"]) <= STEPS and all(map(math.isfinite, found["losses"][:5]))
    assert found["lrs"] == sorted(found["lrs"]) and found["lrs"][0] == pytest.approx(1e-7)
    assert found["fall"] >= found["needed_fall"]
    low, high = found["range"]
    assert 10 <= high / low <= 100 and high == pytest.approx(found["lr_lowest_loss"] / 3)
    assert trials["train.lr"].between(low, high).all(), (found["range"], trials)
    assert f"train.lr searched in [{low:.2g}, {high:.2g}]" in out
    assert lr_range.found_range(sweep_dir, None) == found  # recorded: a resume reads it


@pytest.mark.xdist_group("asha_sweep")  # shares a module fixture: one worker runs them
@pytest.mark.ray
def test_asha_stops_trials_short_of_their_plan_evaluating_only_at_its_rungs(asha_sweep):
    """Every trial plans the same steps (2 epochs, one batch size): the stopped ones end at
    a rung before their last evaluation, the completed ones train them all; each evaluates
    only at ASHA's rungs (1, 2, 4, 8 for grace 1, factor 2) and at its end."""
    sweep_dir, asha, _ = asha_sweep
    stopped = asha[asha["status"] == "stopped"]
    completed = asha[asha["status"] == "completed"]
    assert len(stopped) >= 1 and len(completed) >= 1
    full = completed["steps"].max()
    assert (completed["steps"] == full).all()
    for row in asha.itertuples():
        records = read_jsonl(sweep_dir / str(row.number) / "metrics.jsonl")
        planned = records[-1]["planned_evals"]
        assert {r["eval"] for r in records} <= {1, 2, 4, 8, planned}
        if row.status == "stopped":
            assert records[-1]["eval"] < planned and row.steps < full
        else:
            assert records[-1]["eval"] == planned
    assert asha["steps"].sum() < full * len(asha)


@pytest.mark.xdist_group("asha_sweep")  # shares a module fixture: one worker runs them
@pytest.mark.ray
def test_promotion_asha_pauses_trials_at_rungs_and_resumes_the_promoted_ones(asha_sweep):
    """ASHA's default type, promotion: a trial pauses at a rung and, once in the top half
    there, continues from the checkpoint of that evaluation (none redone); the best trial at
    each rung that two or more reached went on; the sweep ends with one completed, the paused
    rest stopped (no checkpoints left)."""
    tmp_path, trials, _ = asha_sweep
    assert set(trials["status"]) == {"completed", "stopped"}
    events = read_events(tmp_path)
    assert any(e["event"] == "paused" for e in events)
    promoted = 0
    reached: dict[int, list[tuple[float, int]]] = {}
    for row in trials.itertuples():
        records = read_jsonl(tmp_path / str(row.number) / "metrics.jsonl")
        evals = [r["eval"] for r in records]
        assert evals == sorted(set(evals)) and set(evals) <= {1, 2, 4, 8, 9}  # none redone
        assert [r["step"] for r in records] == [4 * e for e in evals]
        mine = [e for e in events if e["trial_id"] == row.trial_id]
        starts = [e["time"] for e in mine if e["event"] == "start"]
        if len(starts) > 1:  # a start after a pause: promoted, continued from its checkpoint
            promoted += 1
            assert records[0]["time"] < starts[-1]  # its first evaluation was not redone
            log = (tmp_path / str(row.number) / "train.log").read_text()
            assert log.count("resuming from checkpoint-") == len(starts) - 1, log
            assert "starting from step 0" not in log, log
            span = pd.Timestamp(row.ended_at) - pd.Timestamp(row.started_at)
            assert row.duration_s < span.total_seconds()  # the time it waited paused left out
        for r in records:
            reached.setdefault(r["eval"], []).append((r["objective"], row.number))
        if row.status == "stopped":
            assert not (tmp_path / str(row.number) / "checkpoints").exists()
    assert promoted >= 1
    for rung, nxt in ((1, 2), (2, 4), (4, 8)):
        if len(reached.get(rung, [])) >= 2:  # its best trial went on to the next rung
            assert min(reached[rung])[1] in {n for _, n in reached.get(nxt, [])}, reached
    assert len(reached[1]) == len(trials) and len(reached[2]) < len(trials)


@pytest.mark.ray
def test_failed_trial_is_recorded_and_the_sweep_goes_on(tmp_path):
    proc, trials = _sweep(
        tmp_path,
        "search=grid",
        "lora.r=choice(0,8)",
        "train.lr=choice(1e-3)",
        "train.lr_scheduler=choice(cosine)",
        "scheduler=fifo",
        "hardware.max_retries=2",  # for lost workers: a trial whose code raised is not retried
    )
    failed = trials[trials["lora.r"] == 0].iloc[0]
    assert failed["status"] == "failed" and pd.isna(failed["objective"])
    assert "lora.r=0" in Path(failed["error_file"]).read_text()
    assert (trials[trials["lora.r"] == 8]["status"] == "completed").all()
    assert "lora.r=0" in proc.stdout  # the progress line says why
    numbers = json.loads((tmp_path / "trial_numbers.json").read_text())
    trial_id = next(t for t, n in numbers.items() if n == failed["number"])
    events = [e["event"] for e in read_events(tmp_path) if e["trial_id"] == trial_id]
    assert events.count("worker") == 1 and "retry" not in events, events


@pytest.mark.ray
def test_no_completed_trial_exits_non_zero_with_a_message(tmp_path):
    proc, trials = _sweep(
        tmp_path,
        "search=grid",
        "lora.r=choice(0)",
        "train.lr=choice(1e-3)",
        "train.lr_scheduler=choice(cosine)",
        ok=False,
    )
    assert proc.returncode == 1
    assert "no trial completed" in proc.stderr and "Traceback" not in proc.stderr
    assert list(trials["status"]) == ["failed"]


@pytest.mark.cli
def test_bad_space_is_reported_before_any_trial(tmp_path):
    proc, _ = _sweep(tmp_path, "lora.rank=choice(8,16)", ok=False)
    assert proc.returncode == 2 and "lora.rank" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.cli
def test_a_real_model_without_weights_stops_the_sweep_before_any_trial(tmp_path):
    env = {"HF_HUB_CACHE": str(tmp_path / "empty-hub-cache")}
    proc, trials = _sweep(tmp_path, "model=mistral", "search=tpe", ok=False, env=env)
    assert proc.returncode == 2 and trials is None
    message = " ".join(proc.stderr.split())
    assert "model=mistral_7b needs its weights" in message
    assert "hf download mistralai/Mistral-7B-v0.1" in message and "model.path" in message
    assert "Traceback" not in proc.stderr and not list(tmp_path.glob("[0-9]*"))


# random trials of 1 epoch (seconds) or 400 (minutes: longer than the whole budget on any
# machine); with search seed 3 the first two, which start together, are a 1-epoch and a
# 400-epoch one (then 1, 1, ...)
BUDGET = [
    "search=random",
    "search.seed=3",
    "search.n_trials=null",
    "scheduler=fifo",
    "hardware.concurrency=2",
    "hardware.cpus_per_trial=1",
    "train.epochs=choice(1,400)",
]


@pytest.mark.alone  # its trials race a wall-clock budget
@pytest.mark.ray
def test_a_time_budget_runs_trials_asynchronously_and_pauses_the_last_ones(tmp_path):
    """`search.time_budget` without a trial count: trials start while the budget can carry
    them, two at a time without a batch barrier; the ones still running at the end are
    paused with their checkpoints; a resume with a larger budget continues them; a resume
    with a spent budget stops before Ray starts."""
    from lorahpo.sweep.budget import clock

    # the budget counts from the driver's start (Ray's start and the first trials' imports
    # included). A third trial starts only if, when the first ends, the budget left exceeds
    # the first's time (its worker's start and imports included): alone on 2 cores the first
    # ends at ~16 s, 8 s after it started; with a CPU hog on the other core (as a one-core
    # test beside it is) it takes ~20 s; on the CI machine once, end and time passed 40 s
    proc, trials = _sweep(tmp_path, *BUDGET, "search.time_budget=75s")
    state = json.loads((tmp_path / "budget.json").read_text())
    # spent: up to the end, then the time it takes to stop the running trials
    assert state["ended"] and state["time_budget_s"] == 75 and 75 <= state["spent_s"] < 105, state
    assert "time budget 1:15: " in proc.stdout and "paused" in proc.stdout
    paused = trials[trials["status"] == "paused"]
    assert len(paused) >= 1 and (trials["status"] == "completed").any()
    assert set(trials["status"]) <= {"completed", "paused"}
    assert (trials[trials["train.epochs"] == 400]["status"] == "paused").all()
    assert paused["objective"].notna().all()  # the best of the evaluations it did
    for n in paused["number"]:
        assert (tmp_path / str(n) / "checkpoints").is_dir()  # kept for a resume
    _check_asynchronous(trials)
    before = {n: read_jsonl(tmp_path / str(n) / "metrics.jsonl") for n in paused["number"]}

    # the resume's own share: 45 s more than the first run spent (Ray's start and restoring
    # the paused trials take ~8 s of it alone on 2 cores, over 25 s with a CPU hog beside)
    total = math.ceil(state["spent_s"]) + 45
    larger = [*BUDGET, f"search.time_budget={total}s", "hydra.sweeper.resume=true"]
    resumed, after = _sweep(tmp_path, *larger)
    assert json.loads((tmp_path / "budget.json").read_text())["spent_s"] >= total
    for n, records in before.items():  # continued from its checkpoint, not started again
        now = read_jsonl(tmp_path / str(n) / "metrics.jsonl")
        # the evaluations up to its last checkpoint stay (one after it may be redone)
        assert len(now) > len(records) and now[: len(records) - 1] == records[:-1]
        assert [r["eval"] for r in now] == list(range(1, len(now) + 1))
        assert after.loc[n, "evals_done"] == len(now)

    spent, _ = _sweep(tmp_path, *larger, ok=False)
    said = " ".join(spent.stderr.split())
    assert spent.returncode == 2 and f"search.time_budget={clock(total)} is spent" in said
    assert "larger search.time_budget" in said and "Traceback" not in said


def _check_asynchronous(trials: pd.DataFrame) -> None:
    """Two trials at once, and a later trial starts as soon as some trial ends, not when its
    batch-mate does: with batches of 2 (trials 0-1, 2-3, ...), some trial starts while a
    trial of an earlier batch still runs, which a batch barrier never allows (an order of
    events, not a time limit). A paused trial's end is the sweep's."""
    from lorahpo.sweep.table import epoch_seconds

    start, end = epoch_seconds(trials["started_at"]), epoch_seconds(trials["ended_at"])
    end = end.where(trials["status"] != "paused", float("inf"))
    assert len(trials) >= 3
    overlaps = sum(
        (start[i] < end[j]) and (start[j] < end[i])
        for i in range(len(trials))
        for j in range(i + 1, len(trials))
    )
    assert overlaps >= 2  # two trials at once
    earlier_batch_running = [
        start[j] < start[i] < end[j] for i in range(2, len(trials)) for j in range(i // 2 * 2)
    ]
    assert any(earlier_batch_running), trials[["number", "started_at", "ended_at"]]


@pytest.mark.ray
def test_interrupted_sweep_resumes_without_rerunning_finished_trials(tmp_path):
    """Stopped; a second sweep into the same folder must say resume; the resume, with a
    larger budget, first finishes what the stopped run had planned (finished trials kept),
    then adds trials, the searcher told the earlier ones."""
    sweep = [
        *SMOKE,
        "search=tpe",
        "search.n_trials=3",
        "scheduler=fifo",
        f"hydra.sweep.dir={tmp_path}",
    ]
    args = [sys.executable, "train.py", "-m", *sweep]
    proc = subprocess.Popen(
        args,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TOKENIZERS_PARALLELISM": "false"},
    )
    deadline = time.time() + 240
    while time.time() < deadline and not (tmp_path / "1/result.json").exists():
        time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, out[-2000:] + err[-2000:]
    assert "hydra.sweeper.resume=true" in err
    first = pd.read_csv(tmp_path / "trials.csv")
    done = first[first["status"] == "completed"]
    assert 1 <= len(done) < 3
    mtimes = {n: (tmp_path / str(n) / "result.json").stat().st_mtime_ns for n in done["number"]}

    proc = run_cli("-m", *sweep)  # the same command without resume=true
    assert proc.returncode == 2 and "hydra.sweeper.resume=true" in proc.stderr

    resumed = run_cli("-m", *sweep, "search.n_trials=4", "hydra.sweeper.resume=true")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    final = pd.read_csv(tmp_path / "trials.csv")
    assert list(final["number"]) == [0, 1, 2, 3]
    assert (final["status"] == "completed").all()
    for n, mtime in mtimes.items():  # finished trials were not run again
        assert (tmp_path / str(n) / "result.json").stat().st_mtime_ns == mtime
        assert final.loc[n, "started_at"] == first.loc[n, "started_at"]
    # the stopped run's 3 trials were finished first, the 4th proposed knowing them
    assert "the searcher was told 3 earlier trial(s)" in resumed.stdout


@pytest.mark.xdist_group("cluster")  # starts a Ray cluster of its own: one at a time
@pytest.mark.ray
def test_sweep_on_an_existing_ray_cluster(tmp_path):
    from ray.cluster_utils import Cluster

    # a one-machine cluster on the loopback interface, started outside the sweep, without
    # token auth (nothing leaves this machine); its shutdown stops only its own processes
    loopback = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled"}
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    try:
        cluster.wait_for_nodes()
        proc, trials = _sweep(
            tmp_path,
            "search=random",
            "search.n_trials=2",
            "scheduler=fifo",
            f"hardware.ray_address={cluster.address}",
            env=loopback,
        )
        assert (trials["status"] == "completed").all()
        assert cluster.address in proc.stdout + proc.stderr
    finally:
        cluster.shutdown()


@pytest.mark.ray
def test_plain_hydra_multirun_with_the_basic_sweeper(tmp_path):
    proc = run_here(
        "-m", "hydra/sweeper=basic", "debug=smoke", "lora.r=4,8", f"hydra.sweep.dir={tmp_path}"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for n, r in [(0, 4), (1, 8)]:
        assert json.loads((tmp_path / f"{n}/result.json").read_text())["status"] == "completed"
        assert json.loads((tmp_path / f"{n}/adapter/adapter_config.json").read_text())["r"] == r


@pytest.mark.unit
def test_plugin_is_discovered_by_hydra():
    from hydra.core.plugins import Plugins
    from hydra.plugins.sweeper import Sweeper

    names = [p.__name__ for p in Plugins.instance().discover(Sweeper)]
    assert "LorahpoSweeper" in names


@pytest.mark.ray
def test_plain_hydra_multirun_through_hydra_ray_launcher(tmp_path):
    proc = run_cli(
        "-m",
        "hydra/sweeper=basic",
        "hydra/launcher=ray",
        "hydra.launcher.ray.init.address=local",  # its own Ray, whatever else runs here
        "debug=smoke",
        "lora.r=4,8",
        f"hydra.sweep.dir={tmp_path}",
        env={"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"},
    )  # local Ray on loopback
    assert proc.returncode == 0, proc.stderr[-3000:]
    for n in (0, 1):
        assert json.loads((tmp_path / f"{n}/result.json").read_text())["status"] == "completed"


@pytest.mark.xdist_group("random_fifo")  # shares a module fixture: one worker runs them
@pytest.mark.ray
def test_best_trial_retrains_with_one_command(tmp_path, sweeps):
    sweep, _, trials = sweeps(*RANDOM_FIFO)
    best = trials.loc[trials["objective"].idxmin()]
    run_dir = tmp_path / "final"
    proc = run_here(
        f"--config-dir={sweep}", "experiment=best", "data.val_fold=null", f"hydra.run.dir={run_dir}"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    cfg = yaml.safe_load((run_dir / ".hydra/config.yaml").read_text())
    assert cfg["train"]["lr"] == pytest.approx(best["train.lr"], rel=1e-12)
    assert cfg["lora"]["r"] == best["lora.r"]
    assert cfg["train"]["lr_scheduler"] == best["train.lr_scheduler"]
    assert json.loads((run_dir / "result.json").read_text())["validated"] is False


@pytest.mark.unit
def test_a_replayed_trial_keeps_its_first_start(tmp_path):
    """A trial that finished as the sweep was stopped is replayed, not rerun, on resume:
    the table keeps the start of the attempt that did the work."""
    from lorahpo.sweep.ledger import EVENTS_FILE, NUMBERS_FILE
    from lorahpo.sweep.table import collect_trials

    (tmp_path / NUMBERS_FILE).write_text(json.dumps({"a": 0}))
    events = [("start", 100.0), ("start", 200.0), ("replayed", 201.0), ("complete", 202.0)]
    (tmp_path / EVENTS_FILE).write_text(
        "".join(
            json.dumps({"trial_id": "a", "event": e, "time": t, "params": {"lora.r": 8}}) + "\n"
            for e, t in events
        )
    )
    (tmp_path / "0").mkdir()
    (tmp_path / "0/result.json").write_text(json.dumps({"status": "completed", "objective": 1.0}))
    row = collect_trials(tmp_path, ["lora.r"]).iloc[0]
    assert row["started_at"] == pd.Timestamp(100.0, unit="s").isoformat(timespec="milliseconds")
    assert (row["status"], row["lora.r"], row["duration_s"]) == ("completed", 8, 102.0)


@pytest.mark.unit
def test_a_trials_duration_leaves_out_its_pauses(tmp_path):
    """duration_s counts the seconds a trial ran: promoted once (paused 10 s), it ran 30 s;
    paused and then stopped at the sweep's end, 5 s; left paused for a resume, 8 s. The
    times read back as they were written (`epoch_seconds`)."""
    from lorahpo.sweep.ledger import EVENTS_FILE, NUMBERS_FILE
    from lorahpo.sweep.table import collect_trials, epoch_seconds

    (tmp_path / NUMBERS_FILE).write_text(json.dumps({"a": 0, "b": 1, "c": 2}))
    events = [
        ("a", "start", 100.0),
        ("a", "paused", 110.0),
        ("b", "start", 110.0),
        ("b", "paused", 115.0),
        ("a", "start", 120.0),
        ("c", "start", 120.5),
        ("c", "paused", 128.5),
        ("a", "complete", 140.0),
        ("b", "complete", 141.0),
    ]
    (tmp_path / EVENTS_FILE).write_text(
        "".join(
            json.dumps({"trial_id": i, "event": e, "time": t, "params": {}}) + "\n"
            for i, e, t in events
        )
    )
    table = collect_trials(tmp_path, [])
    assert list(table["duration_s"]) == [30.0, 5.0, 8.0]
    assert list(table["status"]) == ["stopped", "stopped", "paused"]
    assert list(epoch_seconds(table["started_at"])) == [100.0, 110.0, 120.5]
    assert list(epoch_seconds(table["ended_at"]))[:2] == [140.0, 141.0]
    assert math.isnan(epoch_seconds(table["ended_at"])[2])


@pytest.mark.xdist_group("random_fifo")  # shares a module fixture: one worker runs them
@pytest.mark.ray
def test_trials_share_a_worker_and_its_4bit_base(sweeps):
    """The QLoRA path on CPU, as a sweep: later trials reuse the first one's NF4 base."""
    tmp_path, _, trials = sweeps(*RANDOM_FIFO)
    assert (trials["status"] == "completed").all()
    assert trials["worker"].nunique() == 1  # one worker ran every trial
    results = [json.loads((tmp_path / str(n) / "result.json").read_text()) for n in trials.number]
    assert [r["base_reused"] for r in results] == [False, True, True]
    assert all(r["startup_s"] < results[0]["startup_s"] for r in results[1:])
    cfg = yaml.safe_load((tmp_path / "0/.hydra/config.yaml").read_text())
    assert cfg["hardware"]["quantization"] == "nf4"


@pytest.mark.xdist_group("random_fifo")  # shares a module fixture: one worker runs them
@pytest.mark.ray
def test_the_gpu_checks_sweep_part_reads_a_warm_sweep(sweeps):
    """bench/gpu_check.py part B's table rows, from a real warm 3-trial sweep."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "bench/gpu_check.py")
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)
    sweep_dir, _, trials = sweeps(*RANDOM_FIFO)
    rows = gpu_check.sweep_rows(sweep_dir, 12.5)
    assert [r["setting"] for r in rows] == [
        "trial 0 (loads the base)",
        "trial 1 (warm)",
        "trial 2 (warm)",
    ]
    assert all(r["ok"] and r["part"] == "B" and r["wall_s"] == 12.5 for r in rows)
    assert [r["objective"] for r in rows] == pytest.approx(list(trials["objective"]))
    assert all(r["note"].startswith("rss ") and r["peak_gb"] is None for r in rows)
    assert "| B | 3-trial sweep | trial 1 (warm) |" in gpu_check.format_table(rows)


@pytest.mark.unit
def test_trials_that_fit_count_per_node():
    from lorahpo.sweep.preflight import trials_that_fit

    two_cpu = [{"CPU": 2.0}]
    assert trials_that_fit(two_cpu, 2, 0) == 1 and trials_that_fit(two_cpu, 1, 0) == 2
    assert trials_that_fit(two_cpu, 8, 0) == 0 and trials_that_fit(two_cpu, 1, 1) == 0
    # a trial runs on one node: two 4-CPU nodes do not hold a 6-CPU trial
    assert trials_that_fit([{"CPU": 4.0}, {"CPU": 4.0}], 6, 0) == 0
    assert trials_that_fit([{"CPU": 16.0, "GPU": 4.0}, {"CPU": 8.0, "GPU": 1.0}], 4, 1) == 5


@pytest.mark.ray
def test_preflight_stops_the_sweep_before_any_trial(tmp_path):
    """Resources no node has: one message, no trial started (every case of the check, and
    the checks before Ray, are tests/test_preflight.py's, in-process)."""
    proc, trials = _sweep(tmp_path, "hardware=gpu", ok=False)
    message = " ".join(proc.stderr.split())
    assert proc.returncode == 2 and trials is None, proc.stderr[-2000:]
    assert "1 GPU(s)" in message and "use hardware=cpu" in message, message
    assert "Traceback" not in proc.stderr and not list(tmp_path.glob("[0-9]*"))


@pytest.mark.ray
def test_a_running_sweep_can_be_watched_and_is_not_disturbed(tmp_path):
    """While a sweep runs: trials.csv is rewritten after each finished trial (running trials
    marked), a status line reports the running trials, and a second sweep into its directory
    stops at once. A concurrency the machine cannot reach is said before the first trial."""
    args = ["search=random", "search.n_trials=3", "scheduler=fifo", "hardware.concurrency=512"]
    first = start_sweep(tmp_path, *args, "hydra.sweeper.status_every=1")
    wait_for_event(tmp_path, "start")
    second = start_sweep(tmp_path, "search=random", "hydra.sweeper.resume=true")
    seen = set()
    while first.poll() is None:  # snapshots of trials.csv while the sweep runs
        try:
            table = pd.read_csv(tmp_path / "trials.csv")
            seen.add(tuple(sorted(table["status"])))
        except (FileNotFoundError, pd.errors.EmptyDataError, KeyError):
            pass
        time.sleep(0.2)
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err[-2000:]
    assert any(len(s) < 3 or "running" in s for s in seen), seen  # written before the end
    status = [line for line in out.splitlines() if " elapsed | " in line]
    assert status and "done |" in status[0], out[-2000:]
    assert "[sweep] note: hardware.concurrency=512, but the Ray cluster" in out
    assert "will run at a time" in out
    _, second_err = second.communicate(timeout=120)
    message = " ".join(second_err.split())
    assert second.returncode == 2 and "another sweep is running in" in message
    assert f"pid {first.pid}" in message and "Traceback" not in second_err
    assert len(pd.read_csv(tmp_path / "trials.csv")) == 3  # the first was not disturbed


@pytest.mark.xdist_group("asha_sweep")  # shares a module fixture: one worker runs them
@pytest.mark.ray
def test_mlflow_logger_makes_a_sweep_a_parent_run_with_a_child_run_per_trial(
    asha_sweep, monkeypatch
):
    from mlflow.tracking import MlflowClient

    _, trials, store = asha_sweep
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow's own switch for reading
    client = MlflowClient(tracking_uri=Path(store).as_uri())
    experiment = client.get_experiment_by_name("lorahpo")
    assert (Path(store) / experiment.experiment_id / "meta.yaml").is_file()  # a folder store
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    parent = parents[0]
    assert parent.data.metrics["best_objective"] == pytest.approx(
        trials[trials.status == "completed"]["objective"].min()
    )
    children = {r.data.tags["lorahpo.run_dir"]: r for r in runs if r is not parent}
    assert len(children) == len(trials)
    status = {"completed": "FINISHED", "stopped": "KILLED", "failed": "FAILED"}
    for row in trials.itertuples():
        child = children[row.run_dir]
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.info.status == status[row.status], row
        history = client.get_metric_history(child.info.run_id, "eval_log_loss")
        assert len(history) == row.evals_done  # every evaluation, stopped trials included
        assert child.data.params["cfg.lora.r"] == str(trials.loc[row.Index, "lora.r"])
        assert child.data.params["cfg.train.epochs"] == "2"


@pytest.mark.xdist_group("tpe_maximised")  # shares a module fixture: one worker runs them
@pytest.mark.ray
def test_a_maximised_objective_is_maximised_end_to_end(sweeps):
    """`objective=accuracy`: trials report their best accuracy, the searcher and scheduler
    maximise it, the study's direction is maximize, and the best trial has the highest."""
    import optuna

    tmp_path, proc, trials = sweeps(*TPE_MAXIMISED)
    assert set(trials["status"]) <= {"completed", "stopped"}
    for row in trials.itertuples():
        records = [json.loads(x) for x in (tmp_path / f"{row.number}/metrics.jsonl").open()]
        assert all(r["objective"] == r["eval_accuracy"] for r in records)
        assert row.objective == pytest.approx(max(r["eval_accuracy"] for r in records))
    completed = trials[trials["status"] == "completed"]
    best = completed["objective"].max()
    study = optuna.load_study(study_name="sweep", storage=f"sqlite:///{tmp_path}/study.db")
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE
    assert study.best_value == pytest.approx(best)
    assert f"objective {best:.4f}" in proc.stdout.split("best: trial")[1]
    header = (tmp_path / "experiment/best.yaml").read_text().splitlines()[1]
    assert f"objective {best:.6f}" in header


@pytest.mark.xdist_group("random_fifo")  # shares a module fixture: one worker runs them
@pytest.mark.ray
def test_the_dashboard_serves_a_sweeps_study_over_loopback(sweeps):
    """`python -m lorahpo.dashboard <sweep_dir>` on a free local port: its page and its API
    answer, and the API lists the sweep's study with every trial."""
    import socket
    import urllib.request

    pytest.importorskip("optuna_dashboard", reason='pip install -e ".[dashboard]"')
    sweep, _, trials = sweeps(*RANDOM_FIFO)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "lorahpo.dashboard", str(sweep), "--port", str(port)]
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        page = None
        deadline = time.monotonic() + 60
        while page is None and time.monotonic() < deadline and server.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
                    page = r.read().decode()
            except OSError:
                time.sleep(0.5)
        assert page is not None, server.stdout.read() if server.poll() is not None else "no page"
        assert "Optuna Dashboard" in page
        api = f"http://127.0.0.1:{port}/api/studies"
        with urllib.request.urlopen(api, timeout=5) as r:
            studies = json.loads(r.read())["study_summaries"]
        assert [s["study_name"] for s in studies] == ["sweep"]
        with urllib.request.urlopen(f"{api}/{studies[0]['study_id']}", timeout=5) as r:
            study = json.loads(r.read())
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert study["directions"] == ["minimize"] and len(study["trials"]) == len(trials) == 3


@pytest.mark.xdist_group("random_fifo")  # shares a module fixture: one worker runs them
@pytest.mark.ray
def test_an_ensemble_of_the_trials_predicts_and_retrains(tmp_path, sweeps):
    """`python -m lorahpo.ensemble` selects from the sweep's trials; an ensemble predicts
    with every member's adapter on one base (the weighted mean of their probabilities), and
    `experiment=ensemble` retrains its members, skipping the ones already trained."""
    import numpy as np
    from scipy.special import softmax

    from lorahpo import ensemble
    from lorahpo.objective import DEFAULT
    from lorahpo.toy import make_toy_frame

    sweep, _, trials = sweeps(*RANDOM_FIFO)
    proc = subprocess.run(
        [sys.executable, "-m", "lorahpo.ensemble", str(sweep)],
        cwd=ROOT,
        text=True,
        capture_output=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "on the held-out half of the validation questions" in proc.stdout
    chosen = json.loads((sweep / "ensemble.json").read_text())
    assert chosen["used"] in ("ensemble", "single")
    assert (sweep / "experiment/ensemble.yaml").exists()
    assert sum(m["weight"] for m in chosen["members"]) == pytest.approx(1.0)

    # two members, whatever the selection chose: the path of every ensemble of several
    pool = ensemble.load_pool(sweep)
    a, b = (c.number for c in pool.candidates[:2])
    two = ensemble.Selection({a: 0.75, b: 0.25}, a, 0.0, 0.0, "ensemble")
    ensemble.write(sweep, pool, two, DEFAULT)
    val = {n: pd.read_csv(sweep / str(n) / "val_predictions.csv") for n in (a, b)}
    rows = make_toy_frame(25, seed=0).iloc[val[a]["row"]].reset_index(drop=True)  # debug=smoke
    rows.insert(0, "id", val[a]["row"].to_numpy())
    rows.to_csv(tmp_path / "val.csv", index=False)
    out = tmp_path / "sub.csv"
    args = [f"data.test_path={tmp_path / 'val.csv'}", "postprocess=none", "progress_bar=false"]
    proc = run_here(f"run_dir={sweep}", f"output={out}", *args, script="infer.py")
    assert proc.returncode == 0, proc.stderr[-3000:]
    probs = {n: softmax(v[[f"logit_{k}" for k in range(7)]], axis=1) for n, v in val.items()}
    got, mix = pd.read_csv(out).iloc[:, 1:].to_numpy(), 0.75 * probs[a] + 0.25 * probs[b]
    # a 4-bit base computes in bf16: as tests/test_predict.py, 2e-3 of the run's own values;
    # the mixture, not either member alone
    np.testing.assert_allclose(got, mix, atol=2e-3)
    assert min(np.abs(got - p).max() for p in probs.values()) > 3 * np.abs(got - mix).max()

    final = tmp_path / "final"
    retrain = [f"--config-dir={sweep}", "experiment=ensemble", "data.val_fold=null"]
    proc = run_here(*retrain, f"hydra.run.dir={final}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    members = json.loads((final / "ensemble.json").read_text())["members"]
    assert [m["weight"] for m in members] == [0.75, 0.25]
    firsts = [(Path(m["run_dir"]) / "result.json").stat().st_mtime for m in members]
    cfg = yaml.safe_load((Path(members[1]["run_dir"]) / ".hydra/config.yaml").read_text())
    assert cfg["lora"]["r"] == trials.set_index("number").loc[b, "lora.r"]
    assert cfg["data"]["val_fold"] is None and cfg["ensemble"]["members"] == []
    proc = run_here(*retrain, f"hydra.run.dir={final}")  # again: nothing to train
    assert proc.returncode == 0 and "already trained" in proc.stdout + proc.stderr
    again = [(Path(m["run_dir"]) / "result.json").stat().st_mtime for m in members]
    assert again == firsts
    proc = run_here(f"run_dir={final}", *args, script="infer.py")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(pd.read_csv(final / "submission.csv")) == len(rows)
