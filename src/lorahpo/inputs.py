"""What a training run loads before it trains: rows, split, tokenizer, tokenised folds, base
model. All of it depends only on the data, model and hardware configs (never on the LoRA or
training hyperparameters), so trials of one sweep can share it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from lorahpo import data as data_lib
from lorahpo import modeling

log = logging.getLogger(__name__)


@dataclass
class Inputs:
    """The data side of a run: rows, the split, the tokenizer and the tokenised folds."""

    frame: pd.DataFrame
    train_rows: np.ndarray  # rows of `frame` in the training set
    val_rows: np.ndarray  # rows of `frame` behind each validation example, in eval order
    model_path: str  # the base model's folder (or hub id, with downloads allowed)
    tokenizer: Any
    train_ds: Any  # datasets.Dataset: input_ids, attention_mask, labels
    val_ds: Any
    validate: bool  # False: the final model, trained on every row

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
        cfg.model, texts, int(cfg.data.num_labels), cfg.model.get("seed", 0), cfg.paths.cache_dir
    )
    tokenizer = modeling.load_tokenizer(path, cfg.model)

    def tokenize(rows: np.ndarray):
        return data_lib.tokenize(
            [texts[i] for i in rows], labels[rows], tokenizer, cfg.data.max_length
        )

    train_ds, val_ds = tokenize(train_rows), tokenize(val_rows)
    val_order = np.argsort([len(x) for x in val_ds["input_ids"]], kind="stable")
    return Inputs(
        frame=frame,
        train_rows=train_rows,
        val_rows=val_rows[val_order],
        model_path=path,
        tokenizer=tokenizer,
        train_ds=train_ds,
        val_ds=val_ds.select(val_order),
        validate=cfg.data.val_fold is not None,
    )


def load_base_model(cfg: DictConfig, inputs: Inputs):
    """The frozen base classifier for these inputs, in the hardware's precision."""
    return modeling.load_base_model(
        inputs.model_path,
        cfg.model,
        cfg.hardware,
        int(cfg.data.num_labels),
        inputs.tokenizer.pad_token_id,
    )
