"""Rows longer than `data.max_length` tokens, cut where it costs least (`data.truncation`).

The head reads a row's last token, and what tells one model's answer from another's sits at
both ends of the answer: how it opens and how it signs off. Cutting a row's end, as a
tokenizer does, loses the sign-off and the template's own closing text, and keeps all of a
long question, which says nothing of who answered. `fields` (the default) therefore cuts,
in this order: the other fields (the question) down to a quarter of max_length each, keeping
their start; then the middle of the text column (the response), keeping its start and end
joined by GAP; then the other fields down to nothing. The template's own text is always
kept. Rows that fit are left exactly as they are. `end` is the tokenizer's plain cut.
"""

from __future__ import annotations

from string import Formatter

import pandas as pd
from omegaconf import DictConfig

from lorahpo.data import format_texts, template_for
from lorahpo.errors import UserError

POLICIES = ("fields", "end")  # data.truncation
GAP = " ... "  # where a response's middle was cut
TRIES = 4  # re-cuts of a row whose pieces tokenise longer joined than apart


def row_texts(
    frame: pd.DataFrame, cfg: DictConfig, tokenizer, texts: list[str] | None = None
) -> list[str]:
    """Each row as the model reads it: the template filled (or `texts`, filled already),
    fitted to data.max_length as data.truncation says."""
    template = template_for(cfg)
    return fit_texts(
        format_texts(frame, template) if texts is None else texts,
        frame,
        template,
        tokenizer,
        int(cfg.data.max_length),
        cfg.data.text_column,
        cfg.data.truncation,
    )


def check_policy(policy: str) -> None:
    if policy not in POLICIES:
        raise UserError(
            f"data.truncation={policy!r} is not a way to cut long rows: use "
            f"{' or '.join(POLICIES)} (fields keeps the template and both ends of the "
            "response; end is the tokenizer's plain cut)."
        )


def fit_texts(
    texts: list[str],
    frame: pd.DataFrame,
    template: str,
    tokenizer,
    max_length: int,
    text_column: str,
    policy: str = "fields",
) -> list[str]:
    """`texts` (the template filled per row of `frame`) with, under `fields`, each row over
    `max_length` tokens (special tokens included) cut as the module says. The tokenizer's
    own truncation at `max_length` still applies after this, as a last guard."""
    check_policy(policy)
    if policy == "end" or not texts:
        return texts
    lengths = [len(ids) for ids in tokenizer(texts, verbose=False)["input_ids"]]
    rows = frame.to_dict("records")
    out = list(texts)
    for i, n in enumerate(lengths):
        if n > max_length:
            out[i] = _fit_row(rows[i], template, tokenizer, max_length, text_column, n)
    return out


def _fit_row(row: dict, template: str, tokenizer, max_length: int, text: str, n: int) -> str:
    names = {name for _, name, _, _ in Formatter().parse(template) if name}
    ids = {f: _ids(tokenizer, str(row[f])) for f in names}
    excess, fitted = n - max_length, template.format_map(row)
    for _ in range(TRIES):
        keep = budget({f: len(v) for f, v in ids.items()}, excess, text, max_length // 4)
        cut = {f: _shorten(tokenizer, row[f], ids[f], keep[f], f == text) for f in names}
        fitted = template.format_map({**row, **cut})
        n = len(_ids(tokenizer, fitted, special=True))
        if n <= max_length:
            break
        excess += n - max_length  # pieces merge differently once joined: cut that much more
    return fitted


def budget(lengths: dict[str, int], excess: int, text: str, floor: int) -> dict[str, int]:
    """Tokens to keep per field so that `excess` tokens go: the other fields down to `floor`
    first, then the text field, then the other fields down to none."""
    keep = dict(lengths)
    others = [f for f in keep if f != text]
    order = [(f, min(keep[f], floor)) for f in others]
    order += [(f, 0) for f in keep if f == text] + [(f, 0) for f in others]
    for field, low in order:
        cut = max(0, min(excess, keep[field] - low))
        keep[field] -= cut
        excess -= cut
    return keep


def _shorten(tokenizer, value, ids: list[int], keep: int, middle: bool) -> str:
    """`value` itself when it keeps every token; else its first `keep` tokens, or (`middle`)
    its first and last halves of them around GAP."""
    if keep >= len(ids):
        return value
    if keep <= 0:
        return ""
    if not middle:
        return tokenizer.decode(ids[:keep])
    head = keep - keep // 2
    tail = ids[len(ids) - keep // 2 :] if keep // 2 else []
    return tokenizer.decode(ids[:head]).rstrip() + GAP + tokenizer.decode(tail).lstrip()


def _ids(tokenizer, text: str, special: bool = False) -> list[int]:
    return tokenizer(text, add_special_tokens=special, verbose=False)["input_ids"]
