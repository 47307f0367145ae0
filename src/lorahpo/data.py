"""Data: load (toy or CSV), validate, format, split by question, tokenise.

Each step is a small function with explicit inputs so that tokenised data can later be cached
and shared between trials without touching the training code.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from lorahpo.errors import UserError, first_line
from lorahpo.toy import make_toy_frame


@dataclass
class Columns:
    question: str = "Question"
    text: str = "Response"
    label: str = "target"

    @classmethod
    def from_config(cls, data_cfg: DictConfig) -> Columns:
        return cls(data_cfg.question_column, data_cfg.text_column, data_cfg.label_column)


def template_for(cfg: DictConfig) -> str:
    """The text template: the model's own where it has one, else the data's."""
    return cfg.model.template or cfg.data.template


def read_csv(path: str | Path, key: str, columns: Columns, num_labels: int | None) -> pd.DataFrame:
    """Read and validate a user CSV; `key` is the config key that named it, for messages.

    Pass `num_labels=None` for a file without labels (a test file). Missing text values become
    empty strings: an empty answer is still an answer.
    """
    p = Path(path).expanduser()
    where = f"{key}={path}"
    if not p.exists():
        raise UserError(f"{where}: no such file. Point {key} at an existing CSV file.")
    if p.is_dir():
        raise UserError(f"{where} is a folder. Point {key} at a CSV file.")
    head = p.open("rb").read(4096)
    if not head.strip():
        raise UserError(
            f"{where}: the file is empty. It needs a header row "
            f"({columns.question},{columns.text},{columns.label}) and data rows."
        )
    if b"\0" in head or _undecodable(head):
        raise UserError(
            f"{where}: the file is not CSV text (binary or not UTF-8). Save it as a "
            "UTF-8 CSV file with a header row."
        )
    try:
        frame = pd.read_csv(p, dtype=str, keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, UnicodeDecodeError, csv.Error) as e:
        raise UserError(
            f"{where}: could not be parsed as CSV ({first_line(e)}). Check the "
            "quoting and the number of fields on each line."
        ) from None
    required = [columns.question, columns.text] + ([columns.label] if num_labels else [])
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise UserError(
            f"{where}: missing column(s) {', '.join(map(repr, missing))}; the file "
            f"has {', '.join(map(repr, frame.columns))}. Rename the columns, or set "
            "data.question_column / data.text_column / data.label_column."
        )
    if frame.empty:
        raise UserError(f"{where}: the file has a header but no data rows.")
    frame[columns.question] = frame[columns.question].fillna("")
    frame[columns.text] = frame[columns.text].fillna("")
    if num_labels:
        frame[columns.label] = _labels(frame[columns.label], where, num_labels, p)
    return frame


def _undecodable(head: bytes) -> bool:
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as e:
        return e.start < len(head) - 4  # a multi-byte character cut by the 4096-byte read is fine
    return False


def _labels(raw: pd.Series, where: str, num_labels: int, path: Path) -> pd.Series:
    values = pd.to_numeric(raw, errors="coerce")
    bad = values.isna() | (values % 1 != 0) | (values < 0) | (values >= num_labels)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        first, last = row_lines(path, i)
        lines = f"line {first}" if first == last else f"lines {first}-{last}"
        raise UserError(
            f"{where}: label {raw.iloc[i]!r} on data row {i + 1} ({lines} of the file) is "
            f"not an integer in 0..{num_labels - 1}; {int(bad.sum())} row(s) are like this. Fix "
            f"the labels, or set data.num_labels if there really are more than {num_labels} "
            "classes."
        )
    return values.astype(int)


def row_lines(path: Path, row: int) -> tuple[int, int]:
    """The physical lines (1-based, first and last) of data row `row` (0-based) of a CSV:
    a quoted field may span several lines, so row i is not always line i + 2."""
    with path.open(newline="", encoding="utf-8", errors="replace") as f:
        reader = csv.reader(f)
        next(reader, None)  # the header
        end = reader.line_num
        n = -1
        for record in reader:
            start, end = end + 1, reader.line_num
            if record:  # blank lines are not rows (as pandas reads them)
                n += 1
                if n == row:
                    return start, end
    return row + 2, row + 2


def load_frame(cfg: DictConfig) -> pd.DataFrame:
    """The labelled rows named by the data config: generated (`toy`) or read (`csv`)."""
    columns = Columns.from_config(cfg)
    if cfg.source == "toy":
        frame = make_toy_frame(cfg.n_questions, cfg.seed)
        return frame.rename(
            columns={
                "Question": columns.question,
                "Response": columns.text,
                "target": columns.label,
            }
        )
    if cfg.source == "csv":
        if not cfg.get("train_path"):
            raise UserError(
                "data=csv needs data.train_path=<your CSV file> (columns "
                f"{columns.question}, {columns.text}, {columns.label})."
            )
        return read_csv(cfg.train_path, "data.train_path", columns, cfg.num_labels)
    raise UserError(f"data.source={cfg.source!r} is not known; use data=toy or data=csv.")


def format_texts(frame: pd.DataFrame, template: str) -> list[str]:
    """Fill the model's text template (`{Question}`, `{Response}` or any column) per row."""
    try:
        return [template.format_map(row) for row in frame.to_dict("records")]
    except KeyError as e:
        raise UserError(
            f"the text template {template!r} names column {e} that the data does "
            f"not have (it has {', '.join(map(repr, frame.columns))}). Fix "
            "data.template or model.template."
        ) from None


def split_by_question(
    frame: pd.DataFrame, question_column: str, folds: int, val_fold: int
) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of train and validation: GroupKFold by question, so that all answers to a
    question stay on one side (the model must not see a question's other answers)."""
    from sklearn.model_selection import GroupKFold

    n_groups = frame[question_column].nunique()
    if folds < 2 or not 0 <= val_fold < folds:
        raise UserError(
            f"data.folds={folds}, data.val_fold={val_fold}: need folds >= 2 and "
            f"0 <= val_fold < folds."
        )
    if n_groups < folds:
        raise UserError(
            f"the data has {n_groups} distinct question(s), fewer than "
            f"data.folds={folds}; lower data.folds or add data."
        )
    splits = list(GroupKFold(n_splits=folds).split(frame, groups=frame[question_column]))
    return splits[val_fold]


def subset_by_question(
    labels: np.ndarray, groups: np.ndarray, share: float, seed: int
) -> np.ndarray:
    """Positions of a fixed subset of about `share` of the validation rows, whole questions
    only and stratified by label: one fold of StratifiedGroupKFold with round(1 / share)
    folds. Empty when there are too few questions to split that way."""
    from sklearn.model_selection import StratifiedGroupKFold

    k = max(2, round(1 / share))
    if len(set(groups.tolist())) < k:
        return np.arange(0)
    folds = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    _, subset = next(folds.split(np.zeros(len(labels)), labels, groups))
    return np.sort(subset)


def tokenize(texts: list[str], labels: np.ndarray | None, tokenizer, max_length: int):
    """A `datasets.Dataset` of token ids (and labels), unpadded: padding happens per batch."""
    from datasets import Dataset

    enc = (
        tokenizer(texts, truncation=True, max_length=max_length)
        if texts
        else {"input_ids": [], "attention_mask": []}
    )
    columns = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
    if labels is not None:
        columns["labels"] = [int(x) for x in labels]
    return Dataset.from_dict(columns)
