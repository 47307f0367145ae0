"""The model path on the tiny model and the packaged MiniLM: real weights, real PEFT."""

import shutil
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from lorahpo import modeling
from lorahpo.errors import UserError
from lorahpo.tiny_model import build_tiny_model
from lorahpo.toy import make_toy_frame

from conftest import compose_cfg

pytestmark = pytest.mark.unit

TEXTS = list(make_toy_frame(20, seed=0)["Response"])


def _tiny(tmp_path):
    cfg = compose_cfg()
    arch = OmegaConf.to_container(cfg.model.arch)
    return cfg, build_tiny_model(TEXTS, tmp_path, 7, arch, seed=0)


def test_tiny_model_is_built_once_and_loads_like_a_real_checkpoint(tmp_path):
    cfg, path = _tiny(tmp_path)
    assert (path / "model.safetensors").exists() and (path / "tokenizer.json").exists()
    mtime = (path / "model.safetensors").stat().st_mtime_ns
    assert build_tiny_model(TEXTS, tmp_path, 7, OmegaConf.to_container(cfg.model.arch), 0) == path
    assert (path / "model.safetensors").stat().st_mtime_ns == mtime  # cached, not rebuilt
    tok = modeling.load_tokenizer(str(path), cfg.model)
    assert tok.pad_token == tok.eos_token == "</s>"  # Llama-style: no pad token of its own
    model = modeling.load_base_model(str(path), cfg.model, cfg.hardware, 7, tok.pad_token_id)
    assert type(model).__name__ == "LlamaForSequenceClassification"
    assert model.config.pad_token_id == tok.pad_token_id


def test_lora_wraps_all_projections_and_trains_the_head(tmp_path):
    cfg, path = _tiny(tmp_path)
    tok = modeling.load_tokenizer(str(path), cfg.model)
    base = modeling.load_base_model(str(path), cfg.model, cfg.hardware, 7, tok.pad_token_id)
    model = modeling.add_lora(base, cfg.lora)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    for proj in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"):
        assert any(f"{proj}.lora_A" in n for n in names), proj
    assert any("score" in n for n in names)
    batch = tok(
        ["short", "a much longer text than the other one"], padding=True, return_tensors="pt"
    )
    out = model(**batch)
    assert out.logits.shape == (2, 7)
    # padding must not change a row's prediction: the last real token is pooled
    alone = model(**tok(["short"], return_tensors="pt")).logits
    torch.testing.assert_close(out.logits[:1], alone, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(
    "key,value", [("r", 0), ("r", -4), ("r", 1.5), ("dropout", 1.0), ("dropout", -0.1)]
)
def test_bad_lora_settings_are_user_errors_before_a_model_loads(key, value):
    """The check `add_lora` runs first, before PEFT sees the model."""
    lora = OmegaConf.create({"r": 8, "dropout": 0.05, **{key: value}})
    with pytest.raises(UserError, match=f"lora.{key}={value}"):
        modeling.check_lora_config(lora)


def test_minilm_ships_in_a_package_and_takes_lora():
    cfg = compose_cfg("model=minilm")
    path = modeling.resolve_model_path(cfg.model, [], 7, 0, "unused")
    tok = modeling.load_tokenizer(path, cfg.model)
    base = modeling.load_base_model(path, cfg.model, cfg.hardware, 7, tok.pad_token_id)
    model = modeling.add_lora(base, cfg.lora)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert any("query.lora_A" in n for n in trainable)
    assert any("classifier" in n for n in trainable)
    assert model(**tok(["hello world"], return_tensors="pt")).logits.shape == (1, 7)


def test_real_model_without_weights_names_model_path(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub-cache"))
    cfg = compose_cfg("model=mistral_7b")
    for path, expected in [
        (None, "hf download mistralai/Mistral-7B-v0.1"),
        (str(tmp_path), "without config.json"),
        ("mistralai/Mistral-7B-v0.1", "downloads are off"),
    ]:
        cfg.model.path = path
        try:
            modeling.resolve_model_path(cfg.model, [], 7, 0, str(tmp_path))
        except UserError as e:
            assert "model.path" in str(e) and expected in str(e)
        else:
            raise AssertionError(f"model.path={path} was accepted")


def fake_hub_cache(root: Path, repo_id: str, model_folder: str) -> Path:
    """A hub cache laid out as `hf download` leaves it, holding `model_folder`'s files."""
    repo = root / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / "0123abcd"
    shutil.copytree(model_folder, snapshot)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abcd")
    return snapshot


def test_a_hub_model_is_found_in_the_local_cache(tmp_path, monkeypatch):
    from huggingface_hub import constants

    from lorahpo.inputs import load_inputs

    tiny = load_inputs(compose_cfg("debug=smoke")).model_path
    snapshot = fake_hub_cache(tmp_path, "deepseek-ai/DeepSeek-R1-Distill-Llama-8B", tiny)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    cfg = compose_cfg("model=deepseek")
    assert modeling.resolve_model_path(cfg.model, [], 7, 0, str(tmp_path)) == str(snapshot)
    cfg.model.path = "deepseek-ai/DeepSeek-R1-Distill-Llama-8B"  # a hub id as the path
    assert modeling.resolve_model_path(cfg.model, [], 7, 0, str(tmp_path)) == str(snapshot)
