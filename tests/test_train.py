"""`python train.py` end to end, as a user runs it: the run directory contract, overrides,
errors without tracebacks, and the default run really learning."""

import json
import math
import struct
from pathlib import Path

import pytest
import yaml

from conftest import compose_cfg, read_jsonl, run_cli, run_here

pytestmark = pytest.mark.cli


def _ok(proc):
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _user_error(proc, *needles):
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    assert proc.stderr.count("error:") == 1, proc.stderr
    message = " ".join(proc.stderr.split())  # the paragraph is wrapped at 100 columns
    for needle in needles:
        assert needle in message, (needle, proc.stderr)


def test_overrides_reach_config_adapter_and_run_directory(tmp_path):
    run_dir = tmp_path / "run"
    _ok(
        run_here(
            "debug=smoke", "lora.r=8", "train.lr=3e-4", "train.epochs=1", f"hydra.run.dir={run_dir}"
        )
    )
    cfg = yaml.safe_load((run_dir / ".hydra/config.yaml").read_text())
    assert (cfg["lora"]["r"], cfg["train"]["lr"], cfg["train"]["epochs"]) == (8, 3e-4, 1)
    assert "lora.r=8" in (run_dir / ".hydra/overrides.yaml").read_text()
    adapter = json.loads((run_dir / "adapter/adapter_config.json").read_text())
    assert adapter["r"] == 8 and cfg["lora"]["alpha"] is None
    assert adapter["lora_alpha"] == 8 * cfg["lora"]["alpha_ratio"]  # alpha = r x alpha_ratio
    assert (run_dir / "adapter/adapter_model.safetensors").exists()
    assert (run_dir / "adapter/tokenizer.json").exists()
    assert not (run_dir / "checkpoints").exists()  # only the best adapter is kept
    assert (run_dir / "train.log").read_text().count("eval ") >= 2

    records = read_jsonl(run_dir / "metrics.jsonl")
    assert len(records) == 2  # debug=smoke evaluates every half epoch
    for r in records:
        assert {"step", "epoch", "eval_log_loss", "eval_accuracy"} <= r.keys()
        assert 0 < r["eval_log_loss"] < 10 and 0 <= r["eval_accuracy"] <= 1
    result = json.loads((run_dir / "result.json").read_text())
    best = min(records, key=lambda r: r["eval_log_loss"])
    assert result["status"] == "completed"
    assert result["objective"] == best["eval_log_loss"] and result["best_step"] == best["step"]
    assert result["evals_done"] == result["planned_evals"] == 2
    # post-processed variants of every evaluation, and what inference needs to repeat them
    for r in records:
        assert r["objective"] == r["eval_log_loss"]  # objective=log_loss, the default
        assert {
            "eval_log_loss_temperature",
            "eval_log_loss_assignment",
            "eval_log_loss_temperature_assignment",
            "eval_temperature",
        } <= r.keys()
    assert result["best_log_loss_assignment"] == best["eval_log_loss_assignment"]
    calibration = json.loads((run_dir / "calibration.json").read_text())
    assert calibration["temperature"] == best["eval_temperature"]
    assert result["wall_time_s"] > 0 and result["train_tokens_per_s"] > 0


def test_default_run_learns_well_below_uniform(tmp_path):
    """The README's quickstart command, unchanged but for where the run goes."""
    run_dir = tmp_path / "run"
    _ok(run_here("progress_bar=false", f"hydra.run.dir={run_dir}"))
    result = json.loads((run_dir / "result.json").read_text())
    records = read_jsonl(run_dir / "metrics.jsonl")
    assert len(records) >= 3
    assert result["objective"] <= 1.0 < math.log(7)
    assert result["best_accuracy"] > 0.6
    assert result["wall_time_s"] < 300


def test_own_csv_with_missing_responses_trains(tmp_path, toy_csvs):
    import pandas as pd

    train_path, _ = toy_csvs
    frame = pd.read_csv(train_path)
    frame.loc[::5, "Response"] = None
    frame.to_csv(train_path, index=False)
    run_dir = tmp_path / "run"
    _ok(
        run_here(
            "data=csv", f"data.train_path={train_path}", "debug=smoke", f"hydra.run.dir={run_dir}"
        )
    )
    assert json.loads((run_dir / "result.json").read_text())["status"] == "completed"


@pytest.mark.parametrize(
    "args,needles",
    [
        (["model=mistral_7b"], ["model.path"]),
        (
            ["model=deepseek_r1_8b", "model.path=deepseek-ai/DeepSeek-R1-Distill-Llama-8B"],
            ["model.path", "downloads are off"],
        ),
        (["hardware=gpu"], ["hardware=gpu", "CUDA"]),
        (["data=csv"], ["data.train_path"]),
        (
            ["data=csv", "data.train_path=does/not/exist.csv"],
            ["does/not/exist.csv", "no such file"],
        ),
        (["train.lr=1e8", "train.max_grad_norm=0"], ["diverged", "train.lr"]),
        (["objective=brier"], ["objective='brier'", "temperature+assignment"]),
        (["logger=wandb"], ["logger=wandb", "pip install wandb"]),
        (["train.eval_at=[0,2]"], ["train.eval_at=", "list of evaluation numbers"]),
        (["train.eval_subset=1.5"], ["train.eval_subset=1.5", "between 0 and 1"]),
        (["data.truncation=middle"], ["data.truncation='middle'", "fields or end"]),
        (["hardware.precision=fp16"], ["hardware.precision='fp16'", "fp32 or bf16"]),
        (["hardware.quantization=int8"], ["hardware.quantization='int8'", "none or nf4"]),
    ],
)
def test_bad_settings_exit_with_one_clear_message(tmp_path, args, needles):
    args = [*args, "debug=smoke", f"hydra.run.dir={tmp_path}"]
    if any(a.startswith("model=") for a in args):  # a process that reads an empty hub cache
        env = {"HF_HUB_CACHE": str(tmp_path / "empty-hub-cache")}  # (read at import)
        _user_error(run_cli(*args, env=env), *needles)
    else:
        _user_error(run_here(*args), *needles)


def test_eval_at_runs_only_those_evaluations_and_the_last(tmp_path):
    """What a sweep's trial does under ASHA: evaluations 2 and 4 of 9, then the last; the
    objective and the best checkpoint come from those."""
    run_dir = tmp_path / "r"
    args = ["debug=smoke", "train.epochs=2", "train.eval_every=0.25", "train.eval_at=[2,4]"]
    _ok(run_here(*args, f"hydra.run.dir={run_dir}"))
    records = read_jsonl(run_dir / "metrics.jsonl")
    assert [r["eval"] for r in records] == [2, 4, 9]
    assert [r["step"] for r in records] == [8, 16, 36]  # 4 steps an evaluation slot
    result = json.loads((run_dir / "result.json").read_text())
    assert result["status"] == "completed" and result["planned_evals"] == 9
    assert result["objective"] == min(r["objective"] for r in records)
    assert result["eval_time_s"] == pytest.approx(sum(r["eval_runtime"] for r in records), 0.3)


def test_eval_subset_decides_nothing_the_whole_fold_must(tmp_path):
    """train.eval_subset=0.5: the evaluations before the last see half the validation
    questions (in less time); the last sees them all, and the objective, the best checkpoint,
    calibration and val_predictions.csv come from whole-fold evaluations only."""
    run_dir = tmp_path / "r"
    args = ["debug=smoke", "train.epochs=2", "train.eval_every=0.25", "train.eval_at=[2,4,6]"]
    _ok(run_here(*args, "train.eval_subset=0.5", f"hydra.run.dir={run_dir}"))
    records = read_jsonl(run_dir / "metrics.jsonl")
    assert [(r["eval"], r["subset"]) for r in records] == [
        (2, True),
        (4, True),
        (6, True),
        (9, False),
    ]
    rows = [r["eval_runtime"] * r["eval_samples_per_second"] for r in records]
    assert rows[-1] == pytest.approx(35, abs=0.5)  # 5 questions of 7 answers
    assert all(n == pytest.approx(21, abs=0.5) for n in rows[:-1])  # 3 of them
    result = json.loads((run_dir / "result.json").read_text())
    assert result["objective"] == records[-1]["objective"] and result["best_step"] == 36
    assert json.loads((run_dir / "calibration.json").read_text())["step"] == 36
    assert len((run_dir / "val_predictions.csv").read_text().splitlines()) == 36


def test_model_by_short_name_from_the_hub_cache(tmp_path):
    """`model=deepseek` without model.path: the weights come from the local HF cache."""
    from test_modeling import fake_hub_cache

    from lorahpo.inputs import load_inputs

    tiny = load_inputs(compose_cfg("debug=smoke")).model_path  # a Llama-shaped stand-in
    snapshot = fake_hub_cache(tmp_path / "hub", "deepseek-ai/DeepSeek-R1-Distill-Llama-8B", tiny)
    run_dir = tmp_path / "run"
    proc = run_cli(
        "model=deepseek",
        "debug=smoke",
        f"hydra.run.dir={run_dir}",
        env={"HF_HUB_CACHE": str(tmp_path / "hub")},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((run_dir / "result.json").read_text())
    assert result["status"] == "completed" and result["model_path"] == str(snapshot)
    env = json.loads((run_dir / "environment.json").read_text())  # what reproducing it needs
    assert env["model"]["hub_repo"] == "deepseek-ai/DeepSeek-R1-Distill-Llama-8B"
    assert env["model"]["hub_revision"] == "0123abcd"
    assert env["packages"]["torch"] and env["packages"]["peft"] and env["python"]
    assert len(env["git"]["commit"]) == 40  # the tests run from a checkout


def test_bad_csv_exits_with_message_naming_file_and_column(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("Question,Text,target\nq,a,1\n")
    _user_error(
        run_here("data=csv", f"data.train_path={bad}", f"hydra.run.dir={tmp_path}/r"),
        str(bad),
        "'Response'",
    )
    failed = json.loads((tmp_path / "r/result.json").read_text())
    assert failed["status"] == "failed" and "Response" in failed["error"]


def test_objective_can_be_the_post_processed_log_loss(tmp_path):
    _ok(
        run_here(
            "debug=smoke", "train.epochs=2", "objective=assignment", f"hydra.run.dir={tmp_path}"
        )
    )
    records = read_jsonl(tmp_path / "metrics.jsonl")
    result = json.loads((tmp_path / "result.json").read_text())
    best = min(records, key=lambda r: r["eval_log_loss_assignment"])
    assert all(r["objective"] == r["eval_log_loss_assignment"] for r in records)
    assert result["objective"] == best["eval_log_loss_assignment"]
    assert result["objective_name"] == "assignment" and result["best_step"] == best["step"]


def _tensorboard_scalars(folder: Path) -> dict[str, int]:
    """Tag -> number of scalar events in the TensorBoard event files under `folder`
    (the TFRecord framing: length, its CRC, the Event proto, its CRC)."""
    from tensorboardX.proto import event_pb2

    counts: dict[str, int] = {}
    for f in folder.rglob("events.out.tfevents.*"):
        data, i = f.read_bytes(), 0
        while i < len(data):
            (n,) = struct.unpack("<Q", data[i : i + 8])
            event = event_pb2.Event()
            event.ParseFromString(data[i + 12 : i + 12 + n])
            i += 12 + n + 4
            for value in event.summary.value:
                counts[value.tag] = counts.get(value.tag, 0) + 1
    return counts


def test_tensorboard_logger_writes_event_files_in_the_run_directory(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_here("debug=smoke", "logger=tensorboard", f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    scalars = _tensorboard_scalars(run_dir / "tensorboard")
    evals = len(read_jsonl(run_dir / "metrics.jsonl"))
    assert scalars.get("eval/log_loss") == evals, scalars  # every evaluation
    assert "train/loss" in scalars
