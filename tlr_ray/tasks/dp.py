"""Dependency parsing (UD): the `adapters` biaffine head, scored by UAS and LAS in percent.

Data: UD treebanks read by `ud_sources` (local CoNLL-U or the Hub's parquet conversion); `load` returns a
`datasets.Dataset` with exactly `tokens`, `head` (0 = root, else the 1-based word number) and `deprel`.
Conventions (docs/tasks/dp-pos.md):
- words, not sub-tokens: multiword-token and empty-node lines are dropped; the head represents a word by
  the mean of its sub-tokens (`word_starts`: where each word starts, then where the last one ends).
- relation subtypes are stripped by default (`nmod:poss` -> `nmod`), as the reference does: 37 labels.
  `make_task(strip_subtypes=False)` keeps the subtypes in `ud_sources.SUBTYPES` (65 labels); any other
  subtype becomes its base relation, with a warning.
- every word is scored, punctuation included, as in the `adapters` example and the CoNLL 2018 shared
  task, the word whose gold head is the root too (`root_words: score`). `make_task(root_words="ignore")`
  reproduces the reference implementation, whose padding id (0 for mBERT) equals the root's head index:
  root-headed words are then left out of the loss (labels PAD) and of UAS/LAS.
- heads are decoded greedily (argmax per word, no tree constraint), as the reference does, but only
  over real candidates (root and the sentence's own words, never padding).
"""
from __future__ import annotations

import contextlib
import logging
from collections import Counter
from typing import Any

import datasets
import torch
from transformers import DataCollatorWithPadding

from tlr_ray.tasks.base import DataError, DataSource
from tlr_ray.tasks.common import feature_batches
from tlr_ray.tasks.registry import TASKS
from tlr_ray.tasks.ud_sources import RELATIONS, SUBTYPES, align_words, pad, read_checked, tokenized_dataset

log = logging.getLogger(__name__)

COLUMNS = ("tokens", "head", "deprel")
MODEL_INPUTS = ("input_ids", "token_type_ids", "attention_mask")   # `collate` adds word_starts, labels_*
# The biaffine head ignores word_starts / labels equal to model.config.pad_token_id. BERT's is 0, which is
# also the root's head index (and XLM-R's 1 is the first word's start), so the adapters example sets it
# to -1; we pad with -1 and set the model's to -1 while the head is used (add_head, evaluate).
PAD = -1
OPTIONS = {"strip_subtypes": "bool, default true: nmod:poss -> nmod (37 labels); false keeps the "
                             "common subtypes of ud_sources.SUBTYPES",
           "root_words": "score (default: words whose gold head is the root are trained and scored, as "
                         "conll18_ud_eval.py does) or ignore (the reference implementation: left out of "
                         "the loss and of UAS/LAS)"}
ROOT_WORDS = ("score", "ignore")
_FEATURES = datasets.Features({"tokens": datasets.List(datasets.Value("string")),
                               "head": datasets.List(datasets.Value("int64")),
                               "deprel": datasets.List(datasets.Value("string"))})


class DpTask:
    name = "dp"
    metric = TASKS["dp"].metric

    def __init__(self, strip_subtypes: bool = True, root_words: str = "score"):
        if root_words not in ROOT_WORDS:
            raise ValueError(f"task 'dp' option root_words must be one of {', '.join(ROOT_WORDS)}, "
                             f"got {root_words!r}")
        self.strip_subtypes = strip_subtypes
        self.root_words = root_words
        self.labels = RELATIONS if strip_subtypes else RELATIONS + SUBTYPES
        self.label_ids = {label: i for i, label in enumerate(self.labels)}

    def load(self, source: DataSource, split: str, language: str | None) -> datasets.Dataset:
        return datasets.Dataset.from_dict(read_checked(source, split, language, COLUMNS, self._checked),
                                          features=_FEATURES)

    def _checked(self, columns: dict[str, list], where: str) -> dict[str, list]:
        """Every column, at least one sentence, heads inside the sentence, relations of our label set."""
        expected = (f"expected columns {', '.join(COLUMNS)}, heads 0 (root) to the number of words, and "
                    f"UD relations ({', '.join(RELATIONS)}, subtypes allowed)")
        missing = [c for c in COLUMNS if c not in columns]
        if missing:
            raise DataError(f"{where}: missing column(s) {', '.join(missing)}; {expected}")
        out: dict[str, list] = {c: [] for c in COLUMNS}
        unknown_subtypes: Counter[str] = Counter()
        for i, (tokens, heads, rels) in enumerate(zip(*(columns[c] for c in COLUMNS), strict=True), 1):
            if not tokens:
                continue
            if not len(tokens) == len(heads) == len(rels):
                raise DataError(f"{where}: sentence {i} has {len(tokens)} tokens, {len(heads)} heads and "
                                f"{len(rels)} relations; {expected}")
            for j, h in enumerate(heads, 1):
                if not 0 <= h <= len(tokens):
                    raise DataError(f"{where}: sentence {i}, word {j} ({tokens[j - 1]!r}): head {h} outside "
                                    f"0-{len(tokens)}; {expected}")
            out["tokens"].append(tokens)
            out["head"].append(heads)
            out["deprel"].append([self._relation(r, unknown_subtypes, f"{where}: sentence {i}", expected)
                                  for r in rels])
        if not out["tokens"]:
            raise DataError(f"{where}: the split is empty; {expected} and at least one sentence")
        if unknown_subtypes:
            log.warning("%s: relation subtypes outside the label set mapped to their base relation: %s",
                        where, ", ".join(f"{r} ({n})" for r, n in unknown_subtypes.most_common()))
        return out

    def _relation(self, rel: str, unknown: Counter, where: str, expected: str) -> str:
        base = rel.split(":")[0]
        if base not in RELATIONS:
            raise DataError(f"{where}: unknown relation {rel!r}; {expected}")
        if self.strip_subtypes or rel in self.label_ids:
            return base if self.strip_subtypes else rel
        unknown[rel] += 1
        return base

    def tokenize(self, examples: datasets.Dataset, tokenizer: Any, max_length: int) -> datasets.Dataset:
        """Per sentence: sub-token ids, `word_starts` (k + 1) and `labels_arcs` / `labels_rels` (k) for the
        k words that fit in `max_length` (a word whose head was cut off gets PAD: not trained on; with
        `root_words="ignore"` so does a word whose gold head is the root), the whole gold tree (`heads`,
        `rels`) for scoring, and `index`, the sentence's row in `examples`."""
        rows = align_words(tokenizer, list(examples["tokens"]), max_length)
        out: dict[str, list] = {}
        truncated = 0
        for i, (row, heads, deprels) in enumerate(zip(rows, examples["head"], examples["deprel"], strict=True)):
            k, rels = len(row["starts"]), [self.label_ids[r] for r in deprels]
            truncated += k < len(heads)
            feature = {key: row[key] for key in MODEL_INPUTS if key in row}
            feature.update(word_starts=row["starts"] + [row["end"]],
                           labels_arcs=[h if self._trained(h, k) else PAD for h in heads[:k]],
                           labels_rels=[r if self._trained(h, k) else PAD
                                        for h, r in zip(heads[:k], rels, strict=False)],
                           heads=list(heads), rels=rels, index=i)
            for key, value in feature.items():
                out.setdefault(key, []).append(value)
        return tokenized_dataset(out, truncated, max_length)

    def _trained(self, head: int, kept_words: int) -> bool:
        """Whether a word with gold `head` is trained on, `kept_words` words of its sentence fitting."""
        return head <= kept_words and (head != 0 or self.root_words == "score")

    def collate(self, features: list[dict], tokenizer: Any) -> dict:
        batch = DataCollatorWithPadding(tokenizer, return_tensors="pt")(
            [{k: f[k] for k in MODEL_INPUTS if k in f} for f in features])
        length = batch["input_ids"].shape[1]   # the head scores every sub-token slot as a word slot
        batch["word_starts"] = torch.tensor([pad(f["word_starts"], length + 1, PAD) for f in features])
        for key in ("labels_arcs", "labels_rels"):
            batch[key] = torch.tensor([pad(f[key], length, PAD) for f in features])
        return batch

    def add_head(self, model: Any, name: str) -> None:
        model.add_dependency_parsing_head(name, num_labels=len(self.labels), id2label=dict(enumerate(self.labels)))
        model.config.pad_token_id = PAD   # for training: see PAD

    def evaluate(self, model: Any, tokenized: datasets.Dataset, tokenizer: Any, batch_size: int,
                 device: Any) -> tuple[dict[str, float], list[dict]]:
        """UAS / LAS in percent over all words (with `root_words="ignore"`: all words whose gold head is
        not the root), and one record per sentence. Model already on `device`."""
        device = torch.device(device) if device is not None else next(model.parameters()).device
        model.eval()
        records: list[dict] = []
        with torch.no_grad(), _head_padding(model):
            for _, features in feature_batches(tokenized, batch_size):
                batch = self.collate(features, tokenizer)
                for key in ("labels_arcs", "labels_rels"):
                    batch.pop(key)
                out = model(**{k: v.to(device) for k, v in batch.items()})
                arc_scores = out.arc_preds.float().cpu()   # [batch, words, 1 + words]: 0 is the root
                rel_scores = out.rel_preds.float().cpu()   # [batch, words, 1 + words, labels]
                for b, f in enumerate(features):
                    k = len(f["labels_arcs"])   # words that fit; the rest of the sentence counts as wrong
                    heads = arc_scores[b, :k, :k + 1].argmax(-1)
                    rels = rel_scores[b, torch.arange(k), heads].argmax(-1)
                    records.append(self._record(f, heads.tolist(), rels.tolist()))
        if not records:
            raise DataError("nothing to evaluate: the tokenized split is empty")
        gold = [(r["heads"], r["deprels"]) for r in records]
        pred = [(r["predicted_heads"], r["predicted_deprels"]) for r in records]
        return attachment_scores(gold, pred), records

    def _record(self, f: dict, heads: list[int], rels: list[int]) -> dict:
        """Gold and predicted tree of one sentence; words cut off by truncation are predicted None.
        With `root_words="ignore"` the lists hold only the scored words (gold head not the root), so that
        whatever recomputes UAS/LAS from the records (analysis/predictions.py) gets the reported score;
        `scored_words` then gives their 1-based word numbers."""
        missing = [None] * (len(f["heads"]) - len(heads))
        record = {"index": f["index"], "words": len(f["heads"]), "heads": list(f["heads"]),
                  "predicted_heads": heads + missing, "deprels": [self.labels[r] for r in f["rels"]],
                  "predicted_deprels": [self.labels[r] for r in rels] + missing}
        if self.root_words == "ignore":
            scored = [j for j, h in enumerate(f["heads"]) if h != 0]
            for key in ("heads", "predicted_heads", "deprels", "predicted_deprels"):
                record[key] = [record[key][j] for j in scored]
            record["scored_words"] = [j + 1 for j in scored]
        return record


def attachment_scores(gold: list[tuple[list[int], list[str]]],
                      predicted: list[tuple[list[int], list[str]]]) -> dict[str, float]:
    """UAS (head right) and LAS (head and relation right) in percent over all words of all sentences."""
    words = unlabeled = labeled = 0
    for (gh, gr), (ph, pr) in zip(gold, predicted, strict=True):
        for a, b, c, d in zip(gh, ph, gr, pr, strict=False):
            words += 1
            unlabeled += a == b
            labeled += a == b and c == d
    if not words:
        raise DataError("no words to score")
    return {"uas": 100.0 * unlabeled / words, "las": 100.0 * labeled / words}


@contextlib.contextmanager
def _head_padding(model: Any):
    """model.config.pad_token_id = PAD while evaluating (an eval job loads the head onto a fresh model)."""
    before = model.config.pad_token_id
    model.config.pad_token_id = PAD
    try:
        yield
    finally:
        model.config.pad_token_id = before


def make_task(**options) -> DpTask:
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ValueError(f"unknown option(s) {', '.join(unknown)} for task 'dp'; valid options: "
                         + "; ".join(f"{k} ({v})" for k, v in OPTIONS.items()))
    strip = options.get("strip_subtypes", True)
    if not isinstance(strip, bool):
        raise ValueError(f"task 'dp' option strip_subtypes must be true or false, got {strip!r}")
    return DpTask(strip_subtypes=strip, root_words=options.get("root_words", "score"))
