"""Warm trials: inputs and base model kept between runs of one process, restored exactly."""

from __future__ import annotations

import gc
import json
import warnings
from pathlib import Path

import pytest
import torch

from lorahpo import base_cache
from lorahpo.report import listening
from lorahpo.train import run

from conftest import compose_cfg, read_jsonl, run_cli

pytestmark = pytest.mark.cli

SMOKE = ["debug=smoke", "progress_bar=false"]


@pytest.fixture
def warm():
    base_cache.keep_between_runs(True)
    for k in base_cache.stats:
        base_cache.stats[k] = 0
    yield base_cache.stats
    base_cache.keep_between_runs(False)


def _state(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _assert_same_state(model, snapshot: dict[str, torch.Tensor]) -> None:
    now = model.state_dict()
    assert set(now) == set(snapshot)
    changed = [k for k in now if not torch.equal(now[k], snapshot[k])]
    assert not changed, changed[:5]


def _objectives(run_dir: Path) -> list[float]:
    return [r["objective"] for r in read_jsonl(run_dir / "metrics.jsonl")]


def _raise(exc):
    def listener(_record):
        raise exc

    return listener


def test_third_warm_trial_matches_a_cold_run(warm, tmp_path):
    """After a trial stopped by the scheduler and a failed one, a warm trial reproduces a
    cold `python train.py` of the same config and seed, and the base is as loaded between."""
    # trial 1: stopped at its first evaluation, as Ray stops a trial (SystemExit in report)
    with listening(_raise(SystemExit(0))), pytest.raises(SystemExit):
        run(compose_cfg(*SMOKE, "seed=1", "lora.r=4"), tmp_path / "stopped")
    inputs, base = base_cache.kept()
    assert base is not None and warm["base_loads"] == 1
    snapshot = _state(base)
    # trial 2: fails in the middle of training
    with listening(_raise(RuntimeError("boom"))), pytest.raises(RuntimeError):
        run(compose_cfg(*SMOKE, "seed=2", "lora.dropout=0.2"), tmp_path / "failed")
    assert base_cache.kept()[1] is base
    _assert_same_state(base, snapshot)
    # trial 3: completes on the same base
    run(compose_cfg(*SMOKE), tmp_path / "warm")
    assert base_cache.kept() == (inputs, base)
    _assert_same_state(base, snapshot)
    assert warm["base_loads"] == 1 and warm["inputs_loads"] == 1 and warm["reuses"] == 2

    cold = tmp_path / "cold"
    proc = run_cli(*SMOKE, f"hydra.run.dir={cold}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert _objectives(tmp_path / "warm") == pytest.approx(_objectives(cold), abs=1e-6)


def test_keys_decide_what_is_reloaded(warm, tmp_path):
    run(compose_cfg(*SMOKE), tmp_path / "a")
    _, base = base_cache.kept()
    # other tokens, same model: new inputs, same base
    run(compose_cfg(*SMOKE, "data.max_length=48"), tmp_path / "b")
    assert warm["inputs_loads"] == 2 and warm["base_loads"] == 1
    assert base_cache.kept()[1] is base
    # other hardware precision: a new base (and only one kept)
    run(compose_cfg(*SMOKE, "data.max_length=48", "hardware.precision=bf16"), tmp_path / "c")
    assert warm["base_loads"] == 2 and base_cache.kept()[1] is not base
    # ... while the same tokens are kept: the precision does not change them
    assert warm["inputs_loads"] == 2
    # a LoRA or training hyperparameter: nothing reloaded
    run(
        compose_cfg(*SMOKE, "data.max_length=48", "hardware.precision=bf16", "lora.r=8"),
        tmp_path / "d",
    )
    assert warm["base_loads"] == 2 and warm["inputs_loads"] == 2


def test_a_base_not_restored_is_dropped(warm, tmp_path):
    cfg = compose_cfg(*SMOKE)
    inputs = base_cache.inputs_for(cfg)
    base = base_cache.base_for(cfg, inputs)
    next(base.parameters()).requires_grad_(True)  # as if a run left a base weight trainable
    base_cache.give_back(base)
    assert base_cache.kept() == (None, None) and warm["drops"] == 1
    run(cfg, tmp_path / "after")
    assert warm["base_loads"] == 2


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    pytest.skip("no /proc/self/status")


def test_warm_trials_do_not_leak(warm, tmp_path):
    """Ten warm trials hold what two did: no Trainer, optimizer or PEFT model stays alive,
    and resident memory stays within a few percent."""
    from peft import PeftModel
    from transformers import Trainer

    rss = []
    for i in range(10):
        run(compose_cfg(*SMOKE, f"seed={i}", f"lora.r={4 + 4 * (i % 3)}"), tmp_path / str(i))
        gc.collect()
        rss.append(_rss_mb())
    kinds = Trainer | PeftModel | torch.optim.Optimizer
    with warnings.catch_warnings():  # isinstance on every object touches deprecated aliases
        warnings.simplefilter("ignore")
        alive = [o for o in gc.get_objects() if isinstance(o, kinds)]
    assert alive == []
    assert warm["base_loads"] == 1
    print("resident MB after each trial:", [round(x) for x in rss])
    assert rss[9] <= rss[1] * 1.03, rss


def test_out_of_gpu_memory_names_the_fixes_and_frees_the_trial(warm, tmp_path, monkeypatch):
    """CUDA out-of-memory in a training step (raised here on CPU: the GPU is the boundary):
    the run fails with the fixes named, and the worker's next trial runs on the same base."""
    from lorahpo.errors import UserError
    from lorahpo.trainer import InOrderEvalTrainer

    def out_of_memory(self, *args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    run(compose_cfg(*SMOKE), tmp_path / "first")
    base = base_cache.kept()[1]
    with monkeypatch.context() as m:
        m.setattr(InOrderEvalTrainer, "training_step", out_of_memory)
        with pytest.raises(UserError) as e:
            run(compose_cfg(*SMOKE, "seed=3"), tmp_path / "oom")
    message = str(e.value)
    assert "out of GPU memory" in message and "Tried to allocate 2.00 GiB" in message
    for fix in ("train.batch_size", "train.grad_accum", "nf4", "gradient_checkpointing"):
        assert fix in message
    assert e.value.__context__ is None  # the failed step's frames are not kept alive
    result = json.loads((tmp_path / "oom" / "result.json").read_text())
    assert result["status"] == "failed" and "train.batch_size" in result["error"]
    assert "OutOfMemoryError" in (tmp_path / "oom" / "error.txt").read_text()
    run(compose_cfg(*SMOKE, "seed=4"), tmp_path / "after")  # the next trial, warm
    assert base_cache.kept()[1] is base and warm["base_loads"] == 1
