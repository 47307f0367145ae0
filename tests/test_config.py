"""Real Hydra composition of every config group option and the documented override names."""

import pytest
from omegaconf import OmegaConf

from conftest import CONF, compose_cfg

pytestmark = pytest.mark.unit

GROUPS = {
    g: sorted(p.stem for p in (CONF / g).glob("*.yaml"))
    for g in ("data", "model", "hardware", "debug")
}


def test_groups_have_the_documented_options():
    assert GROUPS["data"] == ["csv", "toy"]
    assert GROUPS["model"] == [
        "deepseek",
        "deepseek_r1_8b",
        "minilm",
        "mistral",
        "mistral_7b",
        "smollm2",
        "tiny",
    ]
    assert GROUPS["hardware"] == ["4xa800", "cpu", "gpu"]


@pytest.mark.parametrize("group,option", [(g, o) for g, opts in GROUPS.items() for o in opts])
def test_every_option_composes_and_resolves(group, option):
    extra = ["data.train_path=x.csv"] if (group, option) == ("data", "csv") else []
    cfg = compose_cfg(f"{group}={option}", *extra)
    # every interpolation resolves (the hydra node itself is resolved by Hydra at run time)
    task_cfg = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    resolved = OmegaConf.to_container(task_cfg, resolve=True)
    assert resolved["lora"]["target_modules"] == resolved["model"]["lora_target_modules"]
    assert resolved["train"]["lr"] == resolved["model"]["default_lr"]
    assert resolved["paths"]["cache_dir"].endswith("outputs/cache")


def test_defaults_are_the_embedded_cpu_setup():
    cfg = compose_cfg()
    assert (cfg.data.source, cfg.model.name, cfg.hardware.name) == ("toy", "tiny", "cpu")
    assert cfg.hardware.quantization == "none" and cfg.hardware.precision == "fp32"
    assert cfg.model.trust_remote_code is False and cfg.model.allow_download is False


def test_gpu_hardware_is_qlora_and_4xa800_adds_concurrency():
    gpu, box = compose_cfg("hardware=gpu").hardware, compose_cfg("hardware=4xa800").hardware
    assert (gpu.precision, gpu.quantization, gpu.gradient_checkpointing) == ("bf16", "nf4", True)
    assert gpu.optim == "adamw_torch_fused"  # not paged: workers run many trials
    assert (box.concurrency, box.gpus_per_trial) == (4, 1)
    assert {k: v for k, v in box.items() if k not in ("name", "concurrency")} == {
        k: v for k, v in gpu.items() if k not in ("name", "concurrency")
    }


def test_model_specific_learning_rates():
    assert compose_cfg().train.lr == pytest.approx(1e-3)
    assert compose_cfg("model=mistral_7b").train.lr == pytest.approx(2e-4)
    assert compose_cfg("model=deepseek_r1_8b", "train.lr=5e-5").train.lr == pytest.approx(5e-5)


def test_every_documented_override_name_exists():
    overrides = {
        "train.lr": 1e-4,
        "train.epochs": 2,
        "train.batch_size": 4,
        "train.grad_accum": 2,
        "train.weight_decay": 0.1,
        "train.warmup_ratio": 0.05,
        "train.lr_scheduler": "linear",
        "train.label_smoothing": 0.1,
        "train.eval_every": 0.5,
        "lora.r": 32,
        "lora.alpha": 64,
        "lora.dropout": 0.1,
        "lora.target_modules": "[q_proj,v_proj]",
        "data.train_path": "a.csv",
        "data.test_path": "b.csv",
        "data.max_length": 128,
        "model.path": "/models/x",
        "seed": 7,
    }
    cfg = compose_cfg(*(f"{k}={v}" for k, v in overrides.items()))
    for key, value in overrides.items():
        got = OmegaConf.select(cfg, key)
        if key == "lora.target_modules":
            assert list(got) == ["q_proj", "v_proj"]
        else:
            assert got == value, key


def test_debug_smoke_shrinks_the_run():
    cfg = compose_cfg("debug=smoke")
    assert cfg.data.n_questions < 50 and cfg.train.epochs == 1
