"""POS tagging (UD UPOS, the BAD-X paper's second task): the `adapters` tagging head, accuracy in percent.

Same UD data and readers as `dp` (`ud_sources`); `load` returns a `datasets.Dataset` with exactly `tokens`
and `upos` (ids into `ud_sources.UPOS`, 17 tags). Words, not sub-tokens: multiword-token and empty-node
lines are dropped; each word is labelled (and predicted) at its first sub-token, the other sub-tokens and
the special tokens are ignored (-100). Accuracy counts every word, punctuation included; words cut off by
truncation to max_seq_length count as wrong.
"""
from __future__ import annotations

from typing import Any

import datasets
import torch
from transformers import DataCollatorWithPadding

from tlr_ray.tasks.base import DataError, DataSource
from tlr_ray.tasks.common import predictions
from tlr_ray.tasks.registry import TASKS
from tlr_ray.tasks.ud_sources import UPOS, align_words, pad, read_checked, tokenized_dataset

COLUMNS = ("tokens", "upos")
MODEL_INPUTS = ("input_ids", "token_type_ids", "attention_mask")
IGNORE = -100   # CrossEntropyLoss's ignore_index: sub-tokens after a word's first, special tokens, padding
TAG_IDS = {tag: i for i, tag in enumerate(UPOS)}
_FEATURES = datasets.Features({"tokens": datasets.List(datasets.Value("string")),
                               "upos": datasets.List(datasets.Value("int64"))})


class PosTask:
    name = "pos"
    metric = TASKS["pos"].metric
    labels = UPOS

    def load(self, source: DataSource, split: str, language: str | None) -> datasets.Dataset:
        return datasets.Dataset.from_dict(read_checked(source, split, language, COLUMNS, _checked),
                                          features=_FEATURES)

    def tokenize(self, examples: datasets.Dataset, tokenizer: Any, max_length: int) -> datasets.Dataset:
        """Sub-token ids, `labels` (the tag at each fitting word's first sub-token, -100 elsewhere), the
        gold tags of the whole sentence (`upos`, for scoring) and `index`, the sentence's row in
        `examples`. Words cut off by truncation are not trained on and count as wrong."""
        rows = align_words(tokenizer, list(examples["tokens"]), max_length)
        out: dict[str, list] = {}
        truncated = 0
        for i, (row, tags) in enumerate(zip(rows, examples["upos"], strict=True)):
            truncated += len(row["starts"]) < len(tags)
            labels = [IGNORE] * len(row["input_ids"])
            for position, tag in zip(row["starts"], tags, strict=False):
                labels[position] = tag
            feature = {k: row[k] for k in MODEL_INPUTS if k in row}
            feature.update(labels=labels, upos=list(tags), index=i)
            for k, v in feature.items():
                out.setdefault(k, []).append(v)
        return tokenized_dataset(out, truncated, max_length)

    def collate(self, features: list[dict], tokenizer: Any) -> dict:
        batch = DataCollatorWithPadding(tokenizer, return_tensors="pt")(
            [{k: f[k] for k in MODEL_INPUTS if k in f} for f in features])
        length = batch["input_ids"].shape[1]
        batch["labels"] = torch.tensor([pad(f["labels"], length, IGNORE) for f in features])
        return batch

    def add_head(self, model: Any, name: str) -> None:
        model.add_tagging_head(name, num_labels=len(UPOS), id2label=dict(enumerate(UPOS)))

    def evaluate(self, model: Any, tokenized: datasets.Dataset, tokenizer: Any, batch_size: int,
                 device: Any) -> tuple[dict[str, float], list[dict]]:
        """Accuracy in percent over all words, and one record per sentence. Model already on `device`."""
        device = torch.device(device) if device is not None else next(model.parameters()).device
        records: list[dict] = []
        for _, features, labels, predicted in predictions(model, tokenized, batch_size,
                                                          lambda f: self.collate(f, tokenizer), device):
            for b, f in enumerate(features):
                pred = predicted[b][labels[b] != IGNORE].tolist()   # first sub-tokens, in word order
                pred = [UPOS[t] for t in pred] + [None] * (len(f["upos"]) - len(pred))  # None: cut off
                gold = [UPOS[t] for t in f["upos"]]
                records.append({"index": f["index"], "words": len(gold), "upos": gold, "predicted_upos": pred,
                                "correct": sum(g == p for g, p in zip(gold, pred, strict=False))})
        if not records:
            raise DataError("nothing to evaluate: the tokenized split is empty")
        score = accuracy([r["upos"] for r in records], [r["predicted_upos"] for r in records])
        return {"accuracy": score}, records


def accuracy(gold: list[list], predicted: list[list]) -> float:
    """Percent of words tagged right, over all words of all sentences."""
    pairs = [(g, p) for gs, ps in zip(gold, predicted, strict=True) for g, p in zip(gs, ps, strict=False)]
    if not pairs:
        raise DataError("no words to score")
    return 100.0 * sum(g == p for g, p in pairs) / len(pairs)


def _checked(columns: dict[str, list], where: str) -> dict[str, list]:
    """Both columns, at least one sentence, tags of the 17 UPOS (as strings from the readers -> ids)."""
    expected = f"expected columns {', '.join(COLUMNS)} with UPOS tags ({', '.join(UPOS)})"
    missing = [c for c in COLUMNS if c not in columns]
    if missing:
        raise DataError(f"{where}: missing column(s) {', '.join(missing)}; {expected}")
    out: dict[str, list] = {"tokens": [], "upos": []}
    for i, (tokens, tags) in enumerate(zip(columns["tokens"], columns["upos"], strict=True), 1):
        if not tokens:
            continue
        if len(tokens) != len(tags):
            raise DataError(f"{where}: sentence {i} has {len(tokens)} tokens but {len(tags)} tags; {expected}")
        bad = [t for t in tags if t not in TAG_IDS]
        if bad:
            raise DataError(f"{where}: sentence {i}: unknown tag(s) {', '.join(map(repr, bad))}; {expected}")
        out["tokens"].append(tokens)
        out["upos"].append([TAG_IDS[t] for t in tags])
    if not out["tokens"]:
        raise DataError(f"{where}: the split is empty; {expected} and at least one sentence")
    return out


TASK = PosTask()


def make_task(**options) -> PosTask:
    """POS has no options."""
    if options:
        raise ValueError(f"unknown option(s) {', '.join(sorted(options))} for task 'pos'; it takes no "
                         "options")
    return TASK
