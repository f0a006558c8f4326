"""NER: token classification, scored by entity-level micro F1 (seqeval) over IOB2 tags.

CoNLL-2003 (English training) and MasakhaNER (targets) come from the Hub or from local files in their
native formats (readers and tag sets in `ner_sources.py`); either way `load` returns a `datasets.Dataset`
with exactly `tokens` (list of words) and `ner_tags` (list of our tag ids) and checks it before returning.
Task option `labels`: "reduced" (default, the reference's 7 tags: MISC and DATE become O) or "full" (the
union tag set: O, B/I-PER, B/I-ORG, B/I-LOC, B/I-MISC = 7/8, B/I-DATE = 9/10).
Words are labelled on their first sub-token; the other sub-tokens and special tokens get -100.
"""
from __future__ import annotations

from typing import Any

import datasets
import torch
from seqeval.metrics import f1_score, precision_score, recall_score
from transformers import DataCollatorForTokenClassification

from tlr_ray.tasks.base import DataError, DataSource
from tlr_ray.tasks.common import dispatch, predictions, where
from tlr_ray.tasks.ner_sources import TAG_SETS, TagSet, load_hub, read_local
from tlr_ray.tasks.registry import TASKS

COLUMNS = ("tokens", "ner_tags")
MODEL_INPUTS = ("input_ids", "token_type_ids", "attention_mask", "labels")
OPTIONS = {"labels": tuple(TAG_SETS)}   # option -> valid values; the first value is the default
IGNORE = -100                           # CrossEntropyLoss's ignore_index


class NerTask:
    name = "ner"
    metric = TASKS["ner"].metric

    def __init__(self, labels: str = "reduced") -> None:
        self.tagset: TagSet = TAG_SETS[labels]
        self.labels = self.tagset.labels
        self._features = datasets.Features({"tokens": datasets.List(datasets.Value("string")),
                                            "ner_tags": datasets.List(datasets.Value("int64"))})

    def load(self, source: DataSource, split: str, language: str | None) -> datasets.Dataset:
        columns = dispatch(source, split, language, read_local, load_hub, self.tagset)
        return self._checked(datasets.Dataset.from_dict(columns, features=self._features),
                             where(source, split, language))

    def tokenize(self, examples: datasets.Dataset, tokenizer: Any, max_length: int) -> datasets.Dataset:
        """Model inputs and `labels` (first sub-token of each word), plus what `evaluate` needs to score
        whole sentences: the word-level gold `ner_tags` and `words`, the word index of each labelled
        position (words cut off by truncation have none and are predicted O)."""
        if not getattr(tokenizer, "is_fast", False):
            raise TypeError(f"the ner task needs a fast tokenizer (for word_ids()); got "
                            f"{type(tokenizer).__name__}")

        def encode(batch: dict) -> dict:
            # no padding here: `collate` pads each batch to its own longest sentence
            out = tokenizer(batch["tokens"], is_split_into_words=True, truncation=True,
                            max_length=max_length)
            out["labels"], out["words"] = [], []
            for i, tags in enumerate(batch["ner_tags"]):
                labels, words, previous = [], [], None
                for word in out.word_ids(i):
                    if word is None or word == previous:   # special token, or not a word's first piece
                        labels.append(IGNORE)
                    else:
                        labels.append(tags[word])
                        words.append(word)
                    previous = word
                out["labels"].append(labels)
                out["words"].append(words)
            out["ner_tags"] = batch["ner_tags"]
            return out

        return examples.map(encode, batched=True, remove_columns=examples.column_names,
                            desc="tokenize ner")

    def collate(self, features: list[dict], tokenizer: Any) -> dict:
        # the word-level columns (ner_tags, words) have other lengths: keep only the model's inputs
        inputs = [{k: f[k] for k in MODEL_INPUTS if k in f} for f in features]
        return DataCollatorForTokenClassification(tokenizer, label_pad_token_id=IGNORE,
                                                  return_tensors="pt")(inputs)

    def add_head(self, model: Any, name: str) -> None:
        model.add_tagging_head(name, num_labels=len(self.labels), id2label=dict(enumerate(self.labels)))

    def evaluate(self, model: Any, tokenized: datasets.Dataset, tokenizer: Any, batch_size: int,
                 device: Any) -> tuple[dict[str, float], list[dict]]:
        """Entity-level micro precision / recall / F1 in percent over whole sentences, and one record per
        sentence (index, gold tags, predicted tags). The model must already be on `device`."""
        device = torch.device(device) if device is not None else next(model.parameters()).device
        records: list[dict] = []
        batches = predictions(model, tokenized, batch_size, lambda f: self.collate(f, tokenizer), device)
        for start, features, labels, predicted in batches:
            for i, feature in enumerate(features):
                first_pieces = predicted[i][labels[i] != IGNORE].tolist()   # in word order
                gold = [self.labels[t] for t in feature["ner_tags"]]
                tags = ["O"] * len(gold)
                for word, tag_id in zip(feature["words"], first_pieces, strict=False):
                    tags[word] = self.labels[tag_id]
                records.append({"index": start + i, "gold": gold, "prediction": tags})
        if not records:
            raise DataError("nothing to evaluate: the tokenized split is empty")
        return scores([r["gold"] for r in records], [r["prediction"] for r in records]), records

    def _checked(self, ds: datasets.Dataset, where: str) -> datasets.Dataset:
        """The schema every caller relies on: both columns, at least one sentence, one tag per token,
        tags in our label set."""
        expected = f"expected columns tokens, ner_tags with tags from {self.tagset.describe()}"
        missing = [c for c in COLUMNS if c not in ds.column_names]
        if missing:
            raise DataError(f"{where}: missing column(s) {', '.join(missing)}; {expected}")
        if len(ds) == 0:
            raise DataError(f"{where}: the split is empty; {expected} and at least one sentence")
        for i, (tokens, tags) in enumerate(zip(ds["tokens"], ds["ner_tags"], strict=True)):
            if len(tokens) != len(tags):
                raise DataError(f"{where}: sentence {i} has {len(tokens)} tokens but {len(tags)} tags")
            bad = sorted({t for t in tags if not 0 <= t < len(self.labels)})
            if bad:
                raise DataError(f"{where}: sentence {i} has tag id(s) {bad} outside 0-{len(self.labels) - 1}; "
                                f"{expected}")
        return ds


def scores(gold: list[list[str]], predicted: list[list[str]]) -> dict[str, float]:
    """seqeval's entity-level micro scores in percent. Default (conlleval) mode, as the reference's
    run_ner scripts: a predicted I-X after O still counts as an entity. No entities predicted: P = 0."""
    kwargs = {"average": "micro", "zero_division": 0}
    return {"f1": 100.0 * float(f1_score(gold, predicted, **kwargs)),
            "precision": 100.0 * float(precision_score(gold, predicted, **kwargs)),
            "recall": 100.0 * float(recall_score(gold, predicted, **kwargs))}


def make_task(**options: Any) -> NerTask:
    """`labels`: "reduced" (default) or "full"."""
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        valid = "; ".join(f"{key} ({' | '.join(values)})" for key, values in OPTIONS.items())
        raise ValueError(f"unknown option(s) {', '.join(map(repr, unknown))} for the ner task; valid "
                         f"options: {valid}")
    for key, value in options.items():
        if value not in OPTIONS[key]:
            raise ValueError(f"ner task option {key}={value!r} is not valid; choose one of "
                             f"{', '.join(OPTIONS[key])}")
    return NerTask(**options)
