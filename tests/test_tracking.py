"""Trackers as users keep them: what stops a run or sweep before it trains, where the records
go, and a sweep's parent run in MLflow's default SQLite store."""

import re
import socket

import pytest

from lorahpo import tracking
from lorahpo.errors import UserError
from lorahpo.sweep.preflight import preflight

from conftest import compose_cfg

pytestmark = pytest.mark.unit


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _preflight(tmp_path, *overrides):
    base = [f"hydra.sweep.dir={tmp_path / 'sweep'}", *overrides]
    return preflight(compose_cfg(*base), [], lambda o: compose_cfg(*base, *o))


def test_a_tracking_server_that_does_not_answer_stops_the_sweep_in_preflight(tmp_path):
    uri = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    with pytest.raises(UserError) as e:
        _preflight(tmp_path, "logger=mlflow", f"logger.tracking_uri={uri}")
    message = str(e.value)
    assert f"logger.tracking_uri={uri}" in message and "does not answer" in message
    assert "sqlite:///" in message  # the local alternative
    assert not (tmp_path / "sweep").exists()  # stopped before anything was written


@pytest.mark.parametrize(
    "overrides,key",
    [
        (["logger=mlflow", "logger.tracking_uri=file://{blocked}/mlruns"], "logger.tracking_uri"),
        (["logger=mlflow", "logger.tracking_uri=sqlite:///{blocked}/m.db"], "logger.tracking_uri"),
        (["logger=tensorboard", "logger.log_dir={blocked}/tb"], "logger.log_dir"),
    ],
)
def test_a_tracker_folder_that_cannot_be_written_stops_the_sweep(tmp_path, overrides, key):
    blocked = tmp_path / "a-file"  # a file where a folder would have to be created
    blocked.write_text("")
    overrides = [o.format(blocked=blocked) for o in overrides]
    with pytest.raises(UserError, match=re.escape(f"{key}: cannot write to {blocked}")):
        _preflight(tmp_path, *overrides)


def test_a_plain_folder_store_becomes_a_file_uri_under_the_project_root(tmp_path):
    cfg = compose_cfg("logger=mlflow", "logger.tracking_uri=mlruns", f"paths.root={tmp_path}")
    assert tracking.mlflow_uri(cfg) == (tmp_path / "mlruns").as_uri()
    cfg = compose_cfg("logger=mlflow", f"logger.tracking_uri={tmp_path}/abs")
    assert tracking.mlflow_uri(cfg) == (tmp_path / "abs").as_uri()
    cfg = compose_cfg("logger=mlflow")
    assert tracking.mlflow_uri(cfg) == str(cfg.logger.tracking_uri)  # sqlite: unchanged


def test_a_tensorboard_log_dir_gathers_runs_by_sweep_and_trial(tmp_path):
    run_dir = tmp_path / "multirun" / "my-sweep" / "3"
    cfg = compose_cfg("logger=tensorboard")
    assert tracking.tensorboard_dir(cfg, run_dir) == run_dir / "tensorboard"
    cfg = compose_cfg("logger=tensorboard", f"logger.log_dir={tmp_path}/tb")
    assert tracking.tensorboard_dir(cfg, run_dir) == tmp_path / "tb" / "my-sweep" / "3"


def test_a_sweep_is_one_parent_run_in_the_default_sqlite_store(tmp_path, monkeypatch):
    import mlflow
    import pandas as pd
    from mlflow.tracking import MlflowClient

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = compose_cfg("logger=mlflow", f"logger.tracking_uri={store}")
    sweep_dir = tmp_path / "sweep"
    sweep_dir.mkdir()
    try:
        overrides = tracking.start_sweep(cfg, sweep_dir)
        parent_id = mlflow.active_run().info.run_id
        trials = pd.DataFrame({"run_dir": [str(sweep_dir / "0")], "status": ["completed"]})
        tracking.end_sweep(cfg, trials, {"objective": 0.5, "number": 0}, interrupted=False)
    finally:
        while mlflow.active_run() is not None:
            mlflow.end_run()
    assert overrides == [f"logger.parent_run_id={parent_id}"]
    run = MlflowClient(tracking_uri=store).get_run(parent_id)
    assert run.info.status == "FINISHED" and run.data.metrics["best_objective"] == 0.5
    assert run.data.params["search.algorithm"] == cfg.search.algorithm
