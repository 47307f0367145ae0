"""A pretrained model shipped as a GGUF file (`model.gguf_file`), converted once to a
Hugging Face folder.

Transformers reads GGUF (llama.cpp's format) with the `gguf` package, dequantising the
weights to float; the conversion is saved as safetensors with the tokenizer under
`paths.cache_dir`, so every run after the first loads it with `from_pretrained` exactly as it
would an 8B checkpoint on disk (and the 4-bit path quantises it the same way).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from lorahpo.config_keys import digest
from lorahpo.disk_cache import build_once
from lorahpo.errors import UserError


def from_gguf(gguf: Path, cache_dir: str | Path, install: str) -> Path:
    """The converted folder of `gguf`, converting it on first use. `install` says how to get
    what is missing."""
    if not gguf.is_file():
        raise UserError(f"{gguf}: no such GGUF file. {install}")
    if importlib.util.find_spec("gguf") is None:
        raise UserError(f"reading {gguf.name} needs the gguf package. {install}")
    key = {"file": gguf.name, "size": gguf.stat().st_size}
    target = Path(cache_dir) / f"{gguf.stem}-{digest(key)}"
    return build_once(target, lambda folder: _convert(gguf, folder), f"converting {gguf}")


def _convert(gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = {"gguf_file": gguf.name, "local_files_only": True}
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, **kwargs)
    try:  # transformers' GGUF loader may keep weights in GGUF blocks: ask for dense ones
        from transformers import GgufConfig

        kwargs["quantization_config"] = GgufConfig(gguf_file=gguf.name, dequantize=True)
    except ImportError:  # older releases always dequantise
        pass
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, dtype=torch.float32, **kwargs)
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:  # dense float weights now: a plain checkpoint to save
        quantizer.remove_quantization_config(model)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
