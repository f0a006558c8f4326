"""SQuAD v1.1 scoring and the span post-processing of extractive QA, in plain Python and NumPy.

Written here because the `evaluate` package fetches its metric scripts from the Hub. The scoring follows
the official SQuAD v1.1 evaluation script: answers are normalised (lower case, ASCII punctuation removed,
the articles a/an/the removed, whitespace collapsed), F1 is over the normalised whitespace tokens, and an
example's score is the maximum over its gold answers. XQuAD and TyDiQA-GoldP are scored the same way in
the papers (MLQA's mixed segmentation for Chinese is not used).
"""
from __future__ import annotations

import collections
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """The official normalisation; the order matters (punctuation goes before articles are matched)."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def f1_score(prediction: str, gold: str) -> float:
    """Token-level F1 in [0, 1] between two answers after normalisation."""
    predicted, expected = normalize_answer(prediction).split(), normalize_answer(gold).split()
    overlap = sum((collections.Counter(predicted) & collections.Counter(expected)).values())
    if overlap == 0:        # also when either side is empty, as in the official script
        return 0.0
    precision, recall = overlap / len(predicted), overlap / len(expected)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def best_over_gold(metric, prediction: str, golds: Sequence[str]) -> float:
    """An example's score: the best match among its gold answers (SQuAD dev has up to 3 per question)."""
    return max((metric(prediction, gold) for gold in golds), default=0.0)


def squad_scores(predictions: Sequence[str], golds: Sequence[Sequence[str]]) -> dict[str, float]:
    """Corpus-level {"f1", "exact_match"} in percent: the mean of the per-example scores."""
    if not predictions:
        raise ValueError("no predictions to score")
    f1 = [best_over_gold(f1_score, p, g) for p, g in zip(predictions, golds, strict=True)]
    em = [best_over_gold(exact_match, p, g) for p, g in zip(predictions, golds, strict=True)]
    return {"f1": 100.0 * sum(f1) / len(f1), "exact_match": 100.0 * sum(em) / len(em)}


@dataclass(frozen=True)
class Window:
    """The model's view of one window (feature) of an example: per-token logits, and for every token its
    (start, end) character span in the context, or None for question, special and padding tokens."""
    start_logits: Sequence[float]
    end_logits: Sequence[float]
    offsets: Sequence[tuple[int, int] | None]


@dataclass(frozen=True)
class Span:
    text: str
    score: float          # start logit + end logit
    window: int           # which window it came from
    start_char: int
    end_char: int


def best_span(windows: Sequence[Window], context: str, n_best: int = 20,
              max_answer_length: int = 30) -> Span | None:
    """The highest-scoring answer span over all windows of one example (None if no window has a valid
    one). Per window only the `n_best` top start and end positions are paired, as in the reference
    scripts; a span must lie in the context, end at or after its start and be at most
    `max_answer_length` tokens long. Windows overlap, so one span may be scored in two windows: the
    higher score wins, which is what taking the maximum over all candidates does."""
    best: Span | None = None
    for w, window in enumerate(windows):
        start_logits, end_logits = np.asarray(window.start_logits), np.asarray(window.end_logits)
        n = min(len(window.offsets), len(start_logits))     # logits of padding positions are ignored
        starts = np.argsort(start_logits[:n])[::-1][:n_best]
        ends = np.argsort(end_logits[:n])[::-1][:n_best]
        for s in starts:
            if window.offsets[s] is None:
                continue
            for e in ends:
                if window.offsets[e] is None or e < s or e - s + 1 > max_answer_length:
                    continue
                score = float(start_logits[s] + end_logits[e])
                if best is None or score > best.score:
                    first, last = window.offsets[s][0], window.offsets[e][1]
                    best = Span(context[first:last], score, w, first, last)
    return best
