"""What a training run loads before it trains: rows, split, tokenizer, tokenised folds, base
model. All of it depends only on the data, model and hardware configs (never on the LoRA or
training hyperparameters), so trials of one sweep can share it.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from lorahpo import data as data_lib
from lorahpo import modeling, truncation
from lorahpo.config_keys import digest

log = logging.getLogger(__name__)


@dataclass
class Inputs:
    """The data side of a run: rows, the split, the tokenizer and the tokenised folds."""

    frame: pd.DataFrame
    train_rows: np.ndarray  # rows of `frame` in the training set
    val_rows: np.ndarray  # rows of `frame` behind each validation example, in eval order
    model_path: str  # the base model's folder (or hub id, with downloads allowed)
    tokenizer: Any  # transformers' tokenizer of the base model, pad token set
    train_ds: Any  # datasets.Dataset: input_ids, attention_mask, labels
    val_ds: Any  # the same, for the validation rows (empty when not validate)
    validate: bool  # False: the final model, trained on every row
    train_lengths: np.ndarray  # tokens per training example (batching, throughput)

    def val_groups(self, question_column: str) -> np.ndarray:
        """The question of each validation example, in evaluation order."""
        return self.frame[question_column].to_numpy()[self.val_rows]


def load_inputs(cfg: DictConfig) -> Inputs:
    """Rows -> texts -> split -> tokenizer -> tokenised train and validation sets.

    With `data.val_fold=null` (the final model) every row trains and nothing validates. The
    validation set is sorted by length: evaluation order does not matter, and sorted batches
    carry little padding.
    """
    frame = data_lib.load_frame(cfg.data)
    texts = data_lib.format_texts(frame, data_lib.template_for(cfg))
    labels = frame[cfg.data.label_column].to_numpy()
    if cfg.data.val_fold is not None:
        train_rows, val_rows = data_lib.split_by_question(
            frame, cfg.data.question_column, cfg.data.folds, cfg.data.val_fold
        )
    else:
        train_rows, val_rows = np.arange(len(frame)), np.arange(0)
    # the tiny model's tokenizer is fitted on every row's text (no labels), so that each fold,
    # and the final model trained on all rows, share one base model, as they would an 8B one
    path = modeling.resolve_model_path(
        cfg.model, texts, int(cfg.data.num_labels), cfg.model.seed, cfg.paths.cache_dir
    )
    tokenizer = modeling.load_tokenizer(path, cfg.model)
    texts = truncation.row_texts(frame, cfg, tokenizer, texts)
    every = tokenised(texts, labels, tokenizer, int(cfg.data.max_length), cfg.paths.cache_dir)
    lengths = np.asarray(every["length"])
    val_rows = val_rows[np.argsort(lengths[val_rows], kind="stable")]
    columns = ["input_ids", "attention_mask", "labels"]
    return Inputs(
        frame=frame,
        train_rows=train_rows,
        val_rows=val_rows,
        model_path=path,
        tokenizer=tokenizer,
        train_ds=every.select(train_rows).select_columns(columns),
        val_ds=every.select(val_rows).select_columns(columns),
        validate=cfg.data.val_fold is not None,
        train_lengths=lengths[train_rows],
    )


def tokenised(texts: list[str], labels: np.ndarray, tokenizer, max_length: int, cache_dir: str):
    """Every row tokenised (plus a `length` column), from `<cache_dir>/tokens/` when the same
    texts, labels, tokenizer and max length were tokenised before: a second run, any fold,
    any trial, does not tokenise again. Keyed by content, so an edited file is a new entry."""
    from datasets import disable_progress_bars, load_from_disk

    disable_progress_bars()  # saving a few thousand rows needs no progress bar
    key = _tokens_key(texts, labels, tokenizer, max_length)
    folder = Path(cache_dir) / "tokens" / key
    if folder.is_dir():
        try:
            return load_from_disk(str(folder))
        except Exception as e:  # a damaged entry: tokenise again and replace it
            log.warning("tokenised data in %s unreadable (%s): tokenising again", folder, e)
            shutil.rmtree(folder, ignore_errors=True)
    ds = data_lib.tokenize(texts, labels, tokenizer, max_length)
    ds = ds.add_column("length", [len(x) for x in ds["input_ids"]])
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=folder.parent))
    try:
        ds.save_to_disk(str(tmp))
        tmp.rename(folder)  # atomic: concurrent trials either see all of it or none
    except OSError:  # another process got there first
        shutil.rmtree(tmp, ignore_errors=True)
    return load_from_disk(str(folder)) if folder.is_dir() else ds


def _tokens_key(texts: list[str], labels: np.ndarray, tokenizer, max_length: int) -> str:
    """By content: the texts, the labels and the tokenizer's full serialised state."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    state = backend.to_str() if backend is not None else sorted(tokenizer.get_vocab().items())
    settings = [tokenizer.pad_token_id, tokenizer.padding_side, tokenizer.truncation_side]
    head = {
        "version": 2,
        "max_length": max_length,
        "tokenizer": [type(tokenizer).__name__, state, settings],
        "labels": np.asarray(labels, dtype=np.int64).tolist(),
    }
    return digest(head, texts)


def load_base_model(cfg: DictConfig, inputs: Inputs):
    """The frozen base classifier for these inputs, in the hardware's precision."""
    return modeling.load_base_model(
        inputs.model_path,
        cfg.model,
        cfg.hardware,
        int(cfg.data.num_labels),
        inputs.tokenizer.pad_token_id,
    )
