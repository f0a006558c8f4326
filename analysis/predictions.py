"""Per-example scores from an eval job's `predictions.parquet`, for significance tests.

The task modules (tlr_ray/tasks/*.py, `evaluate`) write one record per evaluated example; these
readers depend only on the record fields, never on the task code:

| task | record fields used | unit | metric from the units |
|---|---|---|---|
| nli | index, correct (bool) | example | accuracy = mean |
| pos | index, upos, predicted_upos (lists; None = cut off) | word | accuracy = mean |
| qa | id (else index), f1, exact_match (or em), percent | question | F1 / EM = mean |
| ner | index, gold, prediction (BIO tag lists) | sentence | entity micro P/R/F1 (corpus) |
| dp | index, heads, predicted_heads, deprels, predicted_deprels | sentence | UAS / LAS (corpus) |

Every metric is a function of summed per-unit statistics (`parts`), which is what a paired
bootstrap resamples. Where the metric is the plain mean of a per-unit score (`scores` is set), a
paired t-test over units applies instead. POS accuracy is over words (as the task computes it),
so its units are words, keyed by (sentence, position).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

PREDICTIONS_FILE = "predictions.parquet"


@dataclass(frozen=True)
class ExampleScores:
    keys: pd.Index                          # unit ids, unique: pairs two systems' units
    parts: np.ndarray                       # (units, k) statistics summed by `metric`
    metric: Callable[[np.ndarray], np.ndarray]   # sums (..., k) -> score in percent
    unit: str                               # "example", "word", "question", "sentence"
    scores: np.ndarray | None = None        # per-unit score whose mean is the metric, if any

    def value(self) -> float:
        return float(self.metric(self.parts.sum(axis=0)))


def _ratio(s: np.ndarray) -> np.ndarray:
    return s[..., 0] / s[..., 1]


def _mean_scores(keys, scores, unit: str) -> ExampleScores:
    scores = np.asarray(scores, dtype=float)
    parts = np.column_stack([scores, np.ones(len(scores))])
    return ExampleScores(_unique(keys, unit), parts, _ratio, unit, scores)


def _unique(keys, unit: str) -> pd.Index:
    index = pd.Index(keys)
    if not index.is_unique:
        raise ValueError(f"predictions name some {unit}s twice: cannot pair them")
    return index


def _as_list(x) -> list:
    return [] if x is None else list(x)


def _same(a, b) -> bool:
    """Gold equals prediction; a None/NaN prediction (word cut off by truncation) is wrong."""
    return b is not None and not (isinstance(b, float) and np.isnan(b)) and a == b


def _nli(frame: pd.DataFrame, metric: str) -> ExampleScores:
    if "correct" in frame:
        correct = frame["correct"].astype(bool)
    else:
        correct = frame["label"] == frame["prediction"]
    return _mean_scores(frame["index"], 100.0 * correct.to_numpy(float), "example")


def _pos(frame: pd.DataFrame, metric: str) -> ExampleScores:
    keys, scores = [], []
    for index, gold, pred in zip(frame["index"], frame["upos"], frame["predicted_upos"], strict=True):
        gold, pred = _as_list(gold), _as_list(pred)
        pred += [None] * (len(gold) - len(pred))
        for i, (g, p) in enumerate(zip(gold, pred, strict=False)):
            keys.append((index, i))
            scores.append(100.0 * _same(g, p))
    return _mean_scores(pd.MultiIndex.from_tuples(keys) if keys else [], scores, "word")


def _qa(frame: pd.DataFrame, metric: str) -> ExampleScores:
    column = {"f1": "f1", "exact_match": "exact_match", "em": "exact_match"}[metric]
    if column not in frame and column == "exact_match":
        column = "em"   # the brief's and older runs' name for the same score
    keys = frame["id"].astype(str) if "id" in frame else frame["index"]
    return _mean_scores(keys, frame[column].to_numpy(float), "question")


def entities(tags: list[str]) -> set[tuple[str, int, int]]:
    """(type, start, end) chunks of a BIO/IOBES sequence, as seqeval's default (conlleval) mode
    finds them: an I-X after O or after another type starts a chunk, as the task's F1 counts."""
    chunks, prev_tag, prev_type, begin = set(), "O", "", 0
    for i, chunk in enumerate(list(tags) + ["O"]):
        chunk = str(chunk) if chunk else "O"   # None or "" (no tag) reads as outside
        tag, type_ = chunk[0], chunk[1:].split("-", maxsplit=1)[-1] or "_"
        ends = (prev_tag in "ES" or (prev_tag in "BI" and tag in "BSO")
                or (prev_tag not in "O." and prev_type != type_))
        starts = (tag in "BS" or (prev_tag in "ESO" and tag in "EI")
                  or (tag not in "O." and prev_type != type_))
        if ends:
            chunks.add((prev_type, begin, i - 1))
        if starts:
            begin = i
        prev_tag, prev_type = tag, type_
    return chunks


def _ner_metric(metric: str) -> Callable[[np.ndarray], np.ndarray]:
    # parts: tp, predicted, gold. zero_division = 0, as the task's seqeval call.
    num, den = {"f1": (lambda s: 2 * s[..., 0], lambda s: s[..., 1] + s[..., 2]),
                "precision": (lambda s: s[..., 0], lambda s: s[..., 1]),
                "recall": (lambda s: s[..., 0], lambda s: s[..., 2])}[metric]

    def score(s: np.ndarray) -> np.ndarray:
        d = den(s)
        return 100.0 * np.divide(num(s), d, out=np.zeros_like(d, dtype=float), where=d > 0)
    return score


def _ner(frame: pd.DataFrame, metric: str) -> ExampleScores:
    parts = []
    for gold, pred in zip(frame["gold"], frame["prediction"], strict=True):
        g, p = entities(_as_list(gold)), entities(_as_list(pred))
        parts.append((len(g & p), len(p), len(g)))
    return ExampleScores(_unique(frame["index"], "sentence"), np.array(parts, float).reshape(-1, 3),
                         _ner_metric(metric), "sentence")


def _dp(frame: pd.DataFrame, metric: str) -> ExampleScores:
    parts = []   # labeled right, head right, words
    for gh, ph, gr, pr in zip(frame["heads"], frame["predicted_heads"], frame["deprels"],
                              frame["predicted_deprels"], strict=True):
        gh, ph, gr, pr = map(_as_list, (gh, ph, gr, pr))
        heads = [_same(a, b) for a, b in zip(gh, ph, strict=False)]
        labeled = sum(h and _same(a, b) for h, a, b in zip(heads, gr, pr, strict=False))
        parts.append((labeled, sum(heads), len(gh)))
    column = {"las": 0, "uas": 1}[metric]
    return ExampleScores(_unique(frame["index"], "sentence"), np.array(parts, float).reshape(-1, 3),
                         lambda s: 100.0 * s[..., column] / s[..., 2], "sentence")


SCORERS = {("nli", "accuracy"): _nli, ("pos", "accuracy"): _pos,
           ("qa", "f1"): _qa, ("qa", "exact_match"): _qa, ("qa", "em"): _qa,
           ("ner", "f1"): _ner, ("ner", "precision"): _ner, ("ner", "recall"): _ner,
           ("dp", "las"): _dp, ("dp", "uas"): _dp}


def supported(task: str, metric: str) -> bool:
    return (task, metric) in SCORERS


def decomposes(task: str, metric: str) -> bool:
    """Whether the metric is a mean of per-unit scores (paired t-test), else corpus-level
    (bootstrap)."""
    return task in ("nli", "pos", "qa")


def from_frame(frame: pd.DataFrame, task: str, metric: str) -> ExampleScores:
    if not supported(task, metric):
        raise ValueError(f"no per-example scorer for task {task!r}, metric {metric!r}")
    try:
        return SCORERS[(task, metric)](frame, metric)
    except KeyError as e:
        raise ValueError(f"{task} predictions lack the field {e}; have "
                         f"{list(frame.columns)}") from e


def load(artifact: str | Path, task: str, metric: str) -> ExampleScores:
    """Per-unit scores of the predictions in an eval job's artifact folder, or at its URI (s3://...,
    the MLflow tag `artifact` of a sweep whose store is remote), read through pyarrow's filesystems."""
    import pyarrow.fs as pafs
    artifact = str(artifact)
    if "://" in artifact:
        fs, folder = pafs.FileSystem.from_uri(artifact.rstrip("/"))
    else:
        fs, folder = pafs.LocalFileSystem(), str(Path(artifact).resolve())
    path = f"{folder}/{PREDICTIONS_FILE}"
    if fs.get_file_info(path).type != pafs.FileType.File:
        raise FileNotFoundError(f"no {PREDICTIONS_FILE} in {artifact}")
    return from_frame(pd.read_parquet(path, engine="pyarrow", filesystem=fs), task, metric)
