"""Experiment trackers (`logger=`), through the Hugging Face Trainer's own integrations.

The Trainer's `report_to` callbacks do the logging (TensorBoard event files, MLflow runs,
W&B runs; metrics at every evaluation); this module only points them at the right place
through the environment variables they read, adds the run's own hyperparameters (LoRA, data,
training) as parameters, and gives a run that did not finish the status it ended with. A sweep
is one MLflow parent run with a nested child run per trial, or one W&B group.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from omegaconf import DictConfig, OmegaConf

from lorahpo.errors import UserError
from lorahpo.rundir import Status, read_json, write_json

PACKAGES = {"tensorboard": "tensorboardX", "mlflow": "mlflow", "wandb": "wandb"}
TRACKING_FILE = "tracking.json"  # a sweep's parent run, or a run's own, kept for resume
PARAM_GROUPS = ("lora", "train", "data", "hardware")


def check_logger(cfg: DictConfig) -> None:
    """Fail before anything loads if the tracker cannot record: its package is missing, its
    MLflow server does not answer, or the folder it writes to cannot be written. A sweep runs
    this in preflight, so a tracker that cannot work stops it once, not once per trial."""
    lg = cfg.logger
    for name in lg.report_to:
        package = PACKAGES.get(name)
        if package is None:
            raise UserError(f"logger={lg.name}: unknown tracker {name!r}.")
        if importlib.util.find_spec(package) is None:
            raise UserError(
                f"logger={lg.name} needs the {package} package, which is not "
                f"installed: pip install {package} (or choose another logger=)."
            )
    if "mlflow" in lg.report_to:
        _check_mlflow_store(mlflow_uri(cfg))
    if "tensorboard" in lg.report_to and lg.log_dir:
        _check_writable(Path(str(lg.log_dir)), "logger.log_dir")


def mlflow_uri(cfg: DictConfig) -> str:
    """`logger.tracking_uri` as MLflow should get it: a plain folder (`mlruns`, `/data/mlruns`)
    becomes a `file:` URI, a relative one under the project root (trials run elsewhere)."""
    uri = str(cfg.logger.tracking_uri)
    if "://" in uri or uri.startswith("file:"):
        return uri
    path = Path(uri).expanduser()
    if not path.is_absolute():
        path = Path(str(cfg.paths.root)) / path
    return path.resolve().as_uri()


def _check_mlflow_store(uri: str) -> None:
    parsed = urlparse(uri)
    if parsed.scheme in ("http", "https"):
        url = uri.rstrip("/") + "/health"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                response.read(64)
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise UserError(
                f"logger.tracking_uri={uri}: the MLflow server does not answer ({reason}). "
                "Start it (mlflow server --host ... --port ...), correct the address, or keep "
                "the runs in a local store: logger.tracking_uri=sqlite:///path/to/mlflow.db."
            ) from None
    elif parsed.scheme == "file":
        _check_writable(Path(parsed.path), "logger.tracking_uri")
    elif parsed.scheme == "sqlite" and parsed.path not in ("", "/:memory:"):
        # sqlite:///relative.db and sqlite:////absolute.db: the path follows the third slash
        _check_writable(Path(parsed.path[1:]).parent, "logger.tracking_uri")


def _check_writable(folder: Path, key: str) -> None:
    """Create `folder` if it is missing and write a file in it, or say which key to change."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".lorahpo-write-check-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise UserError(
            f"{key}: cannot write to {folder} ({e.strerror or e}). Point {key} at a folder "
            "this user can create and write."
        ) from None


def configure(cfg: DictConfig, run_dir: Path) -> None:
    """Point the Trainer's tracker callbacks at this run (they read the environment)."""
    lg = cfg.logger
    if "tensorboard" in lg.report_to:
        os.environ["TENSORBOARD_LOGGING_DIR"] = str(tensorboard_dir(cfg, run_dir))
    if "mlflow" in lg.report_to:
        _mlflow_environment(cfg)
        os.environ["MLFLOW_EXPERIMENT_NAME"] = str(lg.experiment_name)
        os.environ["MLFLOW_FLATTEN_PARAMS"] = "true"
        tags = {"lorahpo.run_dir": str(run_dir)}
        if lg.parent_run_id:
            tags["mlflow.parentRunId"] = str(lg.parent_run_id)  # shown nested in MLflow
        os.environ["MLFLOW_TAGS"] = json.dumps(tags)
    if "wandb" in lg.report_to:
        os.environ["WANDB_MODE"] = str(lg.mode)
        os.environ["WANDB_PROJECT"] = str(lg.project)
        os.environ["WANDB_DIR"] = str(run_dir)
        if lg.group:
            os.environ["WANDB_RUN_GROUP"] = str(lg.group)


def continue_run(run_dir: Path, resuming: bool) -> None:
    """A run that continues from its checkpoint (a resumed, retried or promoted trial)
    continues its MLflow run too: HF's MLflow callback reattaches to `MLFLOW_RUN_ID`. Any
    other run starts its own (the variable is cleared: a worker runs many trials)."""
    saved = read_json(run_dir / TRACKING_FILE) if resuming else None
    run_id = (saved or {}).get("mlflow_run_id")
    if run_id:
        os.environ["MLFLOW_RUN_ID"] = str(run_id)
    else:
        os.environ.pop("MLFLOW_RUN_ID", None)


def remember_run(run_dir: Path) -> None:
    """Keep the run's MLflow run id in its run directory, for `continue_run`."""
    import mlflow

    active = mlflow.active_run()
    if active is not None:
        write_json(run_dir / TRACKING_FILE, {"mlflow_run_id": active.info.run_id})


def tensorboard_dir(cfg: DictConfig, run_dir: Path) -> Path:
    """The run's own `tensorboard/` folder, or `<logger.log_dir>/<sweep or date>/<run>` when
    the user keeps one TensorBoard folder for everything."""
    log_dir = cfg.logger.log_dir
    if not log_dir:
        return run_dir / "tensorboard"
    return Path(str(log_dir)).expanduser() / run_dir.parent.name / run_dir.name


def _mlflow_environment(cfg: DictConfig) -> str:
    """What MLflow reads, in this process and the Trainer's callback; a folder store is what
    many users keep, so MLflow is told to allow it (it refuses new ones by default). Returns
    the tracking URI."""
    uri = mlflow_uri(cfg)
    os.environ["MLFLOW_TRACKING_URI"] = uri
    if uri.startswith("file:"):
        os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    return uri


def run_params(cfg: DictConfig) -> dict[str, Any]:
    """The run's own hyperparameters, flat (`lora.r`, `train.lr`, ...)."""
    out: dict[str, Any] = {"model.name": cfg.model.name, "seed": cfg.seed}
    out["objective"] = cfg.objective
    for group in PARAM_GROUPS:
        for key, value in OmegaConf.to_container(cfg[group], resolve=True).items():
            if isinstance(value, str | int | float | bool) or value is None:
                out[f"{group}.{key}"] = value
            else:
                out[f"{group}.{key}"] = json.dumps(value)
    return out


def end_run(status: str) -> None:
    """A run that did not reach the end of training: FAILED, or KILLED when the scheduler
    stopped it (the Trainer's callbacks only end runs that finish)."""
    if "mlflow" in sys.modules:
        import mlflow

        if mlflow.active_run() is not None:
            mlflow.end_run(status=status)
    if "wandb" in sys.modules:
        import wandb

        if wandb.run is not None:
            wandb.finish(exit_code=0 if status == "KILLED" else 1)


def start_sweep(cfg: DictConfig, sweep_dir: Path) -> list[str]:
    """The sweep's own tracker run; returns the overrides that attach trials to it."""
    lg = cfg.logger
    if "mlflow" in lg.report_to:
        import mlflow

        saved = sweep_dir / TRACKING_FILE
        parent = (read_json(saved) or {}).get("mlflow_parent_run_id")
        mlflow.set_tracking_uri(_mlflow_environment(cfg))
        mlflow.set_experiment(str(lg.experiment_name))
        run = mlflow.start_run(
            run_id=parent, run_name=None if parent else f"sweep {sweep_dir.name}"
        )
        if not parent:
            mlflow.log_params(
                {
                    "search.algorithm": cfg.search.algorithm,
                    "search.n_trials": cfg.search.n_trials,
                    "scheduler.name": cfg.scheduler.name,
                    "model.name": cfg.model.name,
                }
            )
            mlflow.set_tag("lorahpo.sweep_dir", str(sweep_dir))
            write_json(saved, {"mlflow_parent_run_id": run.info.run_id})
        return [f"logger.parent_run_id={run.info.run_id}"]
    if "wandb" in lg.report_to:
        return [f"logger.group=sweep-{sweep_dir.name}"]
    return []


def end_sweep(cfg: DictConfig, trials, best: dict[str, Any] | None, interrupted: bool) -> None:
    """Close the sweep's parent run with the best trial's figures, and give every child run
    still marked RUNNING the status its trial ended with (a worker that was stopped or died
    at the very end never got to close its own run)."""
    if "mlflow" not in cfg.logger.report_to or "mlflow" not in sys.modules:
        return
    import mlflow
    from mlflow.tracking import MlflowClient

    parent = mlflow.active_run()
    if parent is None:
        return
    client = MlflowClient()
    ended = {Status.COMPLETED: "FINISHED", Status.STOPPED: "KILLED", Status.FAILED: "FAILED"}
    by_dir = dict(zip(trials["run_dir"], trials["status"], strict=True))
    children = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
    )
    for child in children:
        status = ended.get(by_dir.get(child.data.tags.get("lorahpo.run_dir"), ""))
        if child.info.status == "RUNNING" and status:
            client.set_terminated(child.info.run_id, status=status)
    if best is not None:
        mlflow.log_metric("best_objective", float(best["objective"]))
        mlflow.set_tag("lorahpo.best_trial", str(int(best["number"])))
    mlflow.end_run(status="KILLED" if interrupted else "FINISHED")
