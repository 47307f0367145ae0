"""The embedded default data set: "which of 7 LLMs wrote this answer", generated in memory.

Every question is answered once by every source, as in the reference task. Sources differ in
style (openers, length, lists, hedging, vocabulary, closers) but each trait is only a tendency:
any source can use any opener or word, so the task is learnable while the best achievable log
loss stays well above zero. Everything is drawn from one seeded generator: the same seed and
sizes give the same rows, byte for byte.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

SOURCES = ("atlas", "breeze", "cobalt", "delta", "ember", "fable", "granite")

_TOPICS = (
    "photosynthesis",
    "compound interest",
    "plate tectonics",
    "vaccines",
    "black holes",
    "inflation",
    "machine learning",
    "the french revolution",
    "climate change",
    "sleep",
    "the immune system",
    "cryptography",
    "supply chains",
    "ocean currents",
    "democracy",
    "antibiotics",
    "solar panels",
    "memory",
    "language learning",
    "urban planning",
    "coffee",
    "electric cars",
    "the stock market",
    "volcanoes",
    "honey bees",
    "gravity",
    "jazz",
    "rainforests",
    "nuclear power",
    "social media",
    "chess",
    "bread baking",
)
_FORMS = (
    "How does {t} work?",
    "Why is {t} important?",
    "What are the main risks of {t}?",
    "Can you explain {t} to a beginner?",
    "What is the history of {t}?",
    "How will {t} change in the next decade?",
    "What do people misunderstand about {t}?",
    "Compare {t} with {u}.",
    "What is the link between {t} and {u}?",
    "Give me three facts about {t}.",
    "Is {t} overrated?",
    "How should a student study {t}?",
)
_OPENERS = (
    "Great question!",
    "Certainly.",
    "Sure, here is an overview.",
    "In short,",
    "Let me break this down.",
    "Well,",
    "Absolutely!",
    "Good question.",
    "Here is what you need to know.",
    "To put it simply,",
    "Okay, so",
)
_CLOSERS = (
    "I hope this helps!",
    "Let me know if you have more questions.",
    "In summary, it depends.",
    "Overall, it is a fascinating subject.",
    "Feel free to ask for details.",
    "That is the gist of it.",
    "Happy learning!",
)
_HEDGES = (
    "perhaps",
    "arguably",
    "it may be that",
    "in some cases",
    "to some extent",
    "generally speaking",
    "it seems that",
)
_SUBJECTS = (
    "researchers",
    "experts",
    "most people",
    "the evidence",
    "recent studies",
    "historians",
    "engineers",
    "many textbooks",
    "critics",
    "practitioners",
)
_VERBS = (
    "suggests",
    "shows",
    "explains",
    "highlights",
    "indicates",
    "demonstrates",
    "reveals",
    "emphasises",
    "implies",
    "confirms",
    "questions",
    "describes",
)
_ADJS = (
    "key",
    "complex",
    "important",
    "subtle",
    "surprising",
    "fundamental",
    "practical",
    "essential",
    "robust",
    "nuanced",
    "significant",
    "remarkable",
    "crucial",
    "simple",
    "interesting",
    "delicate",
    "powerful",
    "common",
    "critical",
    "notable",
    "vital",
)
_NOUNS = (
    "mechanism",
    "process",
    "balance",
    "trade-off",
    "factor",
    "pattern",
    "effect",
    "framework",
    "structure",
    "system",
    "principle",
    "dynamic",
    "relationship",
    "cycle",
    "outcome",
    "challenge",
    "approach",
    "perspective",
    "detail",
    "context",
    "signal",
)
_LINKS = (
    "because of",
    "alongside",
    "despite",
    "in terms of",
    "due to",
    "through",
    "beyond",
    "regarding",
    "within",
    "compared with",
)


# distinct questions the forms and topics can make (those with a second topic count 31 times)
_MAX_QUESTIONS = sum(len(_TOPICS) * (len(_TOPICS) - 1 if "{u}" in f else 1) for f in _FORMS)


@dataclass(frozen=True)
class _Style:
    """One source's tendencies; each is a probability or a mean, never a hard rule."""

    opener: int  # index of the signature opener
    p_opener: float  # chance of using it (else a random opener, or none)
    closer: int  # index of the signature closing line
    p_closer: float  # chance of ending with it
    mean_sentences: float  # sentences per answer, on average (Poisson)
    p_list: float  # chance of a bulleted list, in answers of 3+ sentences
    bullet: str  # the list's bullet
    p_hedge: float  # chance of a hedge, per sentence
    word_bias: float  # extra weight on this source's favoured slice of the vocabulary


_STYLES = (
    _Style(0, 0.55, 0, 0.50, 4.0, 0.10, "- ", 0.05, 2.0),
    _Style(1, 0.50, 1, 0.45, 2.0, 0.05, "* ", 0.30, 2.0),
    _Style(2, 0.45, 2, 0.40, 7.0, 0.55, "1. ", 0.10, 2.0),
    _Style(3, 0.50, 3, 0.35, 5.0, 0.30, "- ", 0.45, 2.0),
    _Style(4, 0.40, 4, 0.45, 9.0, 0.20, "* ", 0.15, 2.0),
    _Style(5, 0.50, 5, 0.40, 3.0, 0.40, "1. ", 0.25, 2.0),
    _Style(6, 0.45, 6, 0.50, 6.0, 0.05, "- ", 0.35, 2.0),
)


@functools.cache
def _cdf(n: int, source: int, bias: float) -> np.ndarray:
    """Cumulative word-choice weights: every word allowed, each source's slice of the list
    favoured."""
    w = np.ones(n)
    w[source :: len(SOURCES)] += bias
    cdf = (w / w.sum()).cumsum()
    return cdf / cdf[-1]


def _pick(rng: np.random.Generator, words: tuple[str, ...], source: int, bias: float) -> str:
    # what `rng.choice(len(words), p=weights)` draws (one uniform, searched in the CDF),
    # without its per-call checks of `p`: the same rows, a frame ~8x faster to generate
    return words[int(_cdf(len(words), source, bias).searchsorted(rng.random(), side="right"))]


def _sentence(rng: np.random.Generator, topic: str, s: int, style: _Style) -> str:
    b = style.word_bias
    subject = _pick(rng, _SUBJECTS, s, b)
    verb = _pick(rng, _VERBS, s, b)
    adj = _pick(rng, _ADJS, s, b)
    noun = _pick(rng, _NOUNS, s, b)
    link = _pick(rng, _LINKS, s, b)
    noun2 = _pick(rng, _NOUNS, s, b)
    hedge = f"{_HEDGES[rng.integers(len(_HEDGES))]}, " if rng.random() < style.p_hedge else ""
    article = "an" if adj[0] in "aeiou" else "a"
    return (
        f"{hedge}{subject} {verb} that {topic} involves {article} {adj} {noun} {link} the {noun2}."
    ).capitalize()


def _answer(rng: np.random.Generator, topic: str, s: int) -> str:
    style = _STYLES[s]
    parts: list[str] = []
    r = rng.random()
    if r < style.p_opener:
        parts.append(_OPENERS[style.opener])
    elif r < style.p_opener + 0.3:
        parts.append(_OPENERS[rng.integers(len(_OPENERS))])
    n = max(1, int(rng.poisson(style.mean_sentences)))
    sentences = [_sentence(rng, topic, s, style) for _ in range(n)]
    if n >= 3 and rng.random() < style.p_list:
        bullet = style.bullet if rng.random() < 0.7 else ("- ", "* ", "1. ")[rng.integers(3)]
        parts.append(sentences[0])
        parts.append("\n".join(bullet + x for x in sentences[1:]))
    else:
        parts.append(" ".join(sentences))
    r = rng.random()
    if r < style.p_closer:
        parts.append(_CLOSERS[style.closer])
    elif r < style.p_closer + 0.2:
        parts.append(_CLOSERS[rng.integers(len(_CLOSERS))])
    return "\n".join(parts) if "\n" in parts[-1] or rng.random() < 0.3 else " ".join(parts)


def make_toy_frame(n_questions: int = 300, seed: int = 0) -> pd.DataFrame:
    """`n_questions` x 7 rows (`Question`, `Response`, `target`), grouped by question."""
    if not 1 <= n_questions <= _MAX_QUESTIONS:
        raise ValueError(f"n_questions must be in 1..{_MAX_QUESTIONS}, got {n_questions}")
    rng = np.random.default_rng(seed)
    rows, seen = [], set()
    while len(seen) < n_questions:
        t, u = rng.choice(len(_TOPICS), size=2, replace=False)
        question = _FORMS[rng.integers(len(_FORMS))].format(t=_TOPICS[t], u=_TOPICS[u])
        if question in seen:  # each question is one group of exactly 7 answers
            continue
        seen.add(question)
        for s in range(len(SOURCES)):
            rows.append((question, _answer(rng, _TOPICS[t], s), s))
    return pd.DataFrame(rows, columns=["Question", "Response", "target"])


def write_toy_csvs(
    out_dir: str | Path, n_questions: int = 300, seed: int = 0, test_fraction: float = 0.2
) -> tuple[Path, Path]:
    """Write `train.csv` and `test.csv` (with `id`), split by question, to show the format."""
    frame = make_toy_frame(n_questions, seed)
    questions = frame["Question"].drop_duplicates()
    test_q = set(questions.sample(frac=test_fraction, random_state=seed))
    is_test = frame["Question"].isin(test_q)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    train_path, test_path = out / "train.csv", out / "test.csv"
    frame[~is_test].to_csv(train_path, index=False)
    test = frame[is_test].reset_index(drop=True)
    test.insert(0, "id", range(len(test)))
    test.to_csv(test_path, index=False)
    return train_path, test_path
