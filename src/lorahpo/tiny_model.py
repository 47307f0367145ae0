"""The embedded default model: a small Llama-architecture classifier built locally.

It is saved once to a cache folder and loaded back through `from_pretrained`, like any real
checkpoint, so the default run exercises the exact code path of an 8B model: a tokenizer with
no pad token, LoRA on the q/k/v/o/gate/up/down projections, a fresh classification head.
The tokenizer is a byte-level BPE trained on the run's own texts, so no download is needed.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lorahpo.config_keys import digest
from lorahpo.disk_cache import build_once

SPECIAL_TOKENS = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}


def _train_tokenizer(texts: Iterable[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=SPECIAL_TOKENS["unk_token"]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    bos = SPECIAL_TOKENS["bos_token"]
    # like Llama: a BOS token in front, no EOS, and deliberately no pad token
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A $B", special_tokens=[(bos, tok.token_to_id(bos))]
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok, **SPECIAL_TOKENS)


def build_tiny_model(
    texts: list[str], cache_dir: str | Path, num_labels: int, arch: dict[str, Any], seed: int
) -> Path:
    """Return the folder of the tiny model for these texts, building it on first use."""
    key = {**arch, "num_labels": num_labels, "seed": seed}
    target = Path(cache_dir) / f"tiny-llama-{digest(key, texts)}"
    return build_once(
        target,
        lambda folder: _build(folder, texts, num_labels, arch, seed),
        "building the tiny model",
    )


def _build(folder: Path, texts: list[str], num_labels: int, arch: dict[str, Any], seed: int):
    import torch
    from transformers import LlamaConfig, LlamaForSequenceClassification

    tokenizer = _train_tokenizer(texts, arch["vocab_size"])
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=arch["hidden_size"],
        intermediate_size=arch["intermediate_size"],
        num_hidden_layers=arch["num_layers"],
        num_attention_heads=arch["num_heads"],
        num_key_value_heads=arch["num_kv_heads"],
        max_position_embeddings=arch["max_position_embeddings"],
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=None,
        num_labels=num_labels,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlamaForSequenceClassification(config)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
