"""Which config keys change what, defined once, and the one way this project hashes.

Three things depend on a run's config, and each is keyed by exactly the keys that change it:

- NUMBERS: what the run trains and reports. A checkpoint is continued only by a run whose
  NUMBERS key matches (lorahpo.resume).
- BASE: the loaded (quantised, k-bit prepared) base model. A sweep worker keeps it for the
  next trial whose BASE key matches (lorahpo.base_cache).
- TOKENS: the rows, their split, the tokenizer and the tokenised folds; kept the same way.

Every key of every config group must match a rule below (tests/test_config_keys.py walks them
all), so a new key cannot silently change a run without changing its key. A whole-group rule
(`train.*`) says that anything in that group changes the same things.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
from collections.abc import Iterable
from enum import Flag, auto
from typing import Any

from omegaconf import DictConfig, OmegaConf


class Affects(Flag):
    NOTHING = 0
    NUMBERS = auto()
    BASE = auto()
    TOKENS = auto()


N, B, T = Affects.NUMBERS, Affects.BASE, Affects.TOKENS
LOADED = N | B | T  # what the model is, and so what its tokenizer is

# first match wins; patterns are fnmatch patterns over dotted keys
RULES: tuple[tuple[str, Affects], ...] = (
    ("seed", N),
    ("objective", N),  # which evaluation is the best
    ("progress_bar", Affects.NOTHING),
    ("lora.*", N),
    ("train.*", N),
    ("data.num_labels", N | B | T),  # the head's size
    ("data.test_path", Affects.NOTHING),  # read by inference only
    ("data.*", N | T),
    ("model.template", N | T),
    # hyperparameter defaults and search settings: they reach a run through train.* / lora.*
    ("model.default_lr", Affects.NOTHING),
    ("model.lr_space", Affects.NOTHING),
    ("model.lr_grid", Affects.NOTHING),
    ("model.lora_target_modules", Affects.NOTHING),
    ("model.start_points", Affects.NOTHING),
    ("model.name", LOADED),
    ("model.path", LOADED),
    ("model.hub_id", LOADED),
    ("model.gguf_file", LOADED),
    ("model.install", Affects.NOTHING),  # a message
    ("model.builder", LOADED),
    ("model.seed", LOADED),
    ("model.arch", LOADED),  # null: a model that is not built here
    ("model.arch.*", LOADED),
    ("model.trust_remote_code", LOADED),
    ("model.allow_download", LOADED),
    ("hardware.device", N | B),
    ("hardware.precision", N | B),
    ("hardware.quantization", N | B),
    ("hardware.gradient_checkpointing", N | B),  # k-bit preparation at load time
    ("hardware.optim", N),
    # where and how many trials run: never what one trains
    ("hardware.name", Affects.NOTHING),
    ("hardware.concurrency", Affects.NOTHING),
    ("hardware.cpus_per_trial", Affects.NOTHING),
    ("hardware.gpus_per_trial", Affects.NOTHING),
    ("hardware.max_retries", Affects.NOTHING),
    ("hardware.ray_address", Affects.NOTHING),
    ("paths.cache_dir", B | T),  # where the tiny model and the tokenised data are kept
    ("paths.root", Affects.NOTHING),
    ("search.*", Affects.NOTHING),
    ("scheduler.*", Affects.NOTHING),
    ("logger.*", Affects.NOTHING),
    ("ensemble.*", Affects.NOTHING),  # a run of an ensemble trains its members, not itself
)
NOT_WALKED = ("hydra",)  # Hydra's own settings: where a run goes, never what it trains


class Unclassified(KeyError):
    """A config key no rule names."""


def classify(key: str) -> Affects:
    """What `key` (dotted) changes; Unclassified if no rule names it."""
    for pattern, affects in RULES:
        if fnmatch.fnmatchcase(key, pattern):
            return affects
    raise Unclassified(f"config key {key!r} is not classified in lorahpo.config_keys.RULES")


def leaf_keys(cfg: DictConfig) -> list[str]:
    """Every dotted leaf key of a config (a list is one leaf), Hydra's own left out."""
    out: list[str] = []

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict) and node:
            for k, v in node.items():
                walk(v, f"{prefix}.{k}" if prefix else str(k))
        else:
            out.append(prefix)

    tree = OmegaConf.to_container(cfg, resolve=False)
    walk({k: v for k, v in tree.items() if k not in NOT_WALKED}, "")
    return out


def config_key(cfg: DictConfig, affects: Affects, extra: Any = None) -> str:
    """A hash of the values of every key that changes `affects` (plus `extra`: what is not in
    the config, such as a file's identity)."""
    values = {}
    for key in leaf_keys(cfg):
        if classify(key) & affects:
            value = OmegaConf.select(cfg, key)
            if OmegaConf.is_config(value):
                value = OmegaConf.to_container(value, resolve=True)
            values[key] = value
    return digest({"config": values, "extra": extra})


def digest(obj: Any, texts: Iterable[str] = ()) -> str:
    """The project's one hash: a JSON-able object, then any number of texts (by content)."""
    h = hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode())
    for t in texts:
        h.update(t.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    return h.hexdigest()[:16]
