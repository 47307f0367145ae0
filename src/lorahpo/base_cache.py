"""The loaded inputs and base model of a run, kept between the trials of one sweep worker.

Trials of a sweep differ in their LoRA adapters, classification head and training settings;
the tokenizer, the tokenised folds and the frozen (quantised, k-bit prepared) base model are the
same. A sweep worker calls `keep_between_runs()`; from then on each run borrows what it needs
(`inputs_for`, `base_for`) and gives the base back (`give_back`) when it ends, however it
ends. A later run whose key matches reuses both; one whose key differs loads its own, after
the old base is freed (memory holds one base at a time).

A base given back is checked to be exactly as loaded (no LoRA layer or PEFT state left,
nothing trainable, the same forward hooks, the head as loaded); anything off drops it, and the
next run loads afresh. A base is never reused silently.
"""

from __future__ import annotations

import gc
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from lorahpo import modeling
from lorahpo.compat.torch_hooks import count_hooks
from lorahpo.config_keys import Affects, config_key
from lorahpo.inputs import Inputs, load_base_model, load_inputs

log = logging.getLogger(__name__)


@dataclass
class _Loaded:
    """What a worker keeps between trials, each part with the key it was built for."""

    inputs_key: str  # inputs_key(cfg) of the data below
    inputs: Inputs
    base_key: str | None = None  # base_key(cfg, inputs) of the model below
    model: Any = None  # the base model, between trials without an adapter
    head_name: str = ""  # the classification head's attribute name (score, classifier, ...)
    head_module: Any = None  # the head itself, its weights reset to head_init after a trial
    head_init: dict[str, Any] | None = None  # the head's weights as loaded
    hooks: int = 0  # forward/backward hooks at load time (k-bit preparation adds one)


_keep = False
_loaded: _Loaded | None = None
stats = {"inputs_loads": 0, "base_loads": 0, "reuses": 0, "drops": 0}


def keep_between_runs(keep: bool = True) -> None:
    """Keep inputs and base after a run for the next one in this process (sweep workers)."""
    global _keep
    _keep = keep
    if not keep:
        drop("caching turned off")


def inputs_key(cfg: DictConfig) -> str:
    """Everything that changes the rows or their tokens (and the tokenizer behind them): the
    TOKENS keys (lorahpo.config_keys) and the identity of a CSV file."""
    file = None
    path = cfg.data.train_path
    if cfg.data.source == "csv" and path:
        p = Path(str(path)).expanduser()
        if p.is_file():
            st = p.stat()
            file = [str(p.resolve()), st.st_size, st.st_mtime_ns]
    return config_key(cfg, Affects.TOKENS, extra={"file": file})


def base_key(cfg: DictConfig, inputs: Inputs) -> str:
    """Everything that changes the loaded base model: the BASE keys, the folder it was found
    in and the pad token it was given."""
    extra = {"path": inputs.model_path, "pad_token_id": inputs.tokenizer.pad_token_id}
    return config_key(cfg, Affects.BASE, extra=extra)


def inputs_for(cfg: DictConfig) -> Inputs:
    """This run's inputs: the kept ones if their key matches, else freshly loaded."""
    global _loaded
    key = inputs_key(cfg)
    if _loaded is not None and _loaded.inputs_key == key:
        return _loaded.inputs
    inputs = load_inputs(cfg)
    stats["inputs_loads"] += 1
    if _keep:
        if _loaded is not None and _loaded.inputs.model_path == inputs.model_path:
            _loaded.inputs_key, _loaded.inputs = key, inputs  # same model: keep the base
        else:
            drop("other inputs")
            _loaded = _Loaded(key, inputs)
    return inputs


def base_for(cfg: DictConfig, inputs: Inputs):
    """The frozen base for this run: the kept one if its key matches, else freshly loaded."""
    global _loaded
    key = base_key(cfg, inputs)
    if _loaded is not None and _loaded.base_key == key and _loaded.inputs is inputs:
        stats["reuses"] += 1
        return _loaded.model
    if _loaded is not None and _loaded.model is not None:
        _free_base(_loaded)  # one base in memory at a time
    model = load_base_model(cfg, inputs)
    model.requires_grad_(False)  # PEFT freezes the base anyway; frozen is also what we check
    stats["base_loads"] += 1
    if _keep:
        if _loaded is None or _loaded.inputs is not inputs:
            _loaded = _Loaded(inputs_key(cfg), inputs)
        head_name, head = modeling.classification_head(model)
        _loaded.base_key, _loaded.model = key, model
        _loaded.head_name, _loaded.head_module = head_name, head
        _loaded.head_init = {k: v.detach().clone() for k, v in head.state_dict().items()}
        _loaded.hooks = count_hooks(model)
        # what is loaded now lives as long as the worker: keep it out of every later garbage
        # collection (a full collection over a loaded model and its libraries takes ~0.3 s,
        # and the Trainer runs one at the start of each trial)
        gc.collect()
        gc.freeze()
    return model


def give_back(model) -> None:
    """After a run, however it ended: check the kept base is as loaded, restore its head,
    or drop it. Without `keep_between_runs` nothing is kept."""
    if not _keep or _loaded is None or _loaded.model is not model:
        return
    problem = check_intact(model)
    if problem:
        log.warning("the base model was not restored after the run (%s): reloading it", problem)
        drop(problem)
        return
    _loaded.head_module.load_state_dict(_loaded.head_init)
    gc.collect()  # the run's optimizer and Trainer are unreachable now: free them


def check_intact(model) -> str | None:
    """What is wrong with a base given back, or None: cheap structural checks only."""
    from peft.tuners.tuners_utils import BaseTunerLayer
    from peft.utils.other import ModulesToSaveWrapper

    assert _loaded is not None
    if hasattr(model, "peft_config"):
        return "PEFT config left on the model"
    for name, module in model.named_modules():
        if isinstance(module, BaseTunerLayer | ModulesToSaveWrapper):
            return f"adapter layer left at {name}"
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    if trainable:
        return f"{len(trainable)} trainable base parameter(s), e.g. {trainable[0]}"
    if getattr(model, _loaded.head_name, None) is not _loaded.head_module:
        return f"the classification head ({_loaded.head_name}) was replaced"
    hooks = count_hooks(model)
    if hooks != _loaded.hooks:
        return f"{hooks} module hooks, {_loaded.hooks} at load"
    return None


def kept() -> tuple[Inputs | None, Any]:
    """The kept inputs and base (tests, benchmarks)."""
    return (_loaded.inputs, _loaded.model) if _loaded is not None else (None, None)


def drop(reason: str = "") -> None:
    """Forget the kept inputs and base, and give their memory back."""
    global _loaded
    if _loaded is not None:
        stats["drops"] += 1
        if _loaded.model is not None:
            _free_base(_loaded)
        _loaded = None
        log.debug("dropped the kept base (%s)", reason)


def _free_base(loaded: _Loaded) -> None:
    loaded.model = loaded.head_module = loaded.head_init = None
    loaded.base_key = None
    gc.unfreeze()  # the old base's objects become collectable again
    gc.collect()
    modeling.empty_device_cache()
