"""NLI: sentence-pair classification into entailment (0), neutral (1), contradiction (2).

MultiNLI (English training), XNLI and AmericasNLI (targets) share that label order. Data comes from the Hub
or from local files in each dataset's native format (readers in `nli_sources.py`); either way `load`
returns a `datasets.Dataset` with exactly `premise`, `hypothesis`, `label` and checks it before returning.

Head (option `head`, docs/tasks/nli.md):
- `adapters` (default): the `adapters` classification head on the [CLS] hidden state: dropout, linear
  (hidden -> hidden), tanh, dropout, linear (hidden -> 3), all trained with the TA.
- `pooler`: the reference implementation's head, `AutoModelForSequenceClassification`'s for BERT: the
  MMT's pretrained pooler (linear + tanh on [CLS], frozen with the MMT), dropout, one linear layer
  (hidden -> 3), the only head layer trained. Needs a checkpoint with a pretrained pooler (mBERT has one).
"""
from __future__ import annotations

from typing import Any

import datasets
import torch
from transformers import DataCollatorWithPadding

from tlr_ray.tasks.base import DataError, DataSource
from tlr_ray.tasks.common import dispatch, predictions, require_columns, where
from tlr_ray.tasks.nli_sources import LABELS, load_hub, read_local
from tlr_ray.tasks.registry import TASKS

COLUMNS = ("premise", "hypothesis", "label")
MODEL_INPUTS = ("input_ids", "token_type_ids", "attention_mask", "labels")
HEADS = ("adapters", "pooler")
OPTIONS = {"head": "adapters (default: the adapters classification head, two layers on [CLS]) or pooler "
                   "(the reference's AutoModelForSequenceClassification head: the frozen pretrained pooler, "
                   "dropout and one linear layer)"}
# AutoModelForSequenceClassification uses no pooler for these model types (XLM-R's head: dense, tanh and
# out_proj on <s>, i.e. the `adapters` head), so `pooler` would not be the reference there.
_NO_POOLER_MODEL_TYPES = ("roberta", "xlm-roberta")


class NliTask:
    name = "nli"
    metric = TASKS["nli"].metric
    labels = LABELS

    def __init__(self, head: str = "adapters"):
        if head not in HEADS:
            raise ValueError(f"task 'nli' option head must be one of {', '.join(HEADS)}, got {head!r}")
        self.head = head

    def load(self, source: DataSource, split: str, language: str | None) -> datasets.Dataset:
        return _checked(dispatch(source, split, language, _read_local_dataset, load_hub),
                        where(source, split, language))

    def tokenize(self, examples: datasets.Dataset, tokenizer: Any, max_length: int) -> datasets.Dataset:
        def encode(batch: dict) -> dict:
            # no padding here: `collate` pads each batch to its own longest pair
            out = tokenizer(batch["premise"], batch["hypothesis"], truncation=True, max_length=max_length)
            out["labels"] = batch["label"]
            return out

        return examples.map(encode, batched=True, remove_columns=examples.column_names,
                            desc="tokenize nli")

    def collate(self, features: list[dict], tokenizer: Any) -> dict:
        return DataCollatorWithPadding(tokenizer, return_tensors="pt")(features)

    def add_head(self, model: Any, name: str) -> None:
        """`adapters`: the library's default (layers=2, tanh, on the [CLS] hidden state). `pooler`:
        `layers=1, use_pooler=True`, i.e. Dropout then Linear(hidden, 3) on the model's pooled output,
        which is BertForSequenceClassification's head; the pooler (`bert.pooler`) is part of the MMT, so
        `freeze_all_but` keeps it frozen, and it is not saved with the head: an eval job's fresh model
        has the same pretrained one."""
        id2label = dict(enumerate(LABELS))
        if self.head == "adapters":
            model.add_classification_head(name, num_labels=len(LABELS), id2label=id2label)
            return
        if model.config.model_type in _NO_POOLER_MODEL_TYPES:
            raise ValueError(f"task 'nli' option head: pooler is BERT's sequence-classification head; for "
                             f"model type {model.config.model_type!r}, AutoModelForSequenceClassification "
                             "uses no pooler (dense, tanh, linear on <s>: the `adapters` head); use head: "
                             "adapters to match the reference")
        _check_pretrained_pooler(model)
        model.add_classification_head(name, num_labels=len(LABELS), id2label=id2label, layers=1,
                                      use_pooler=True)

    def evaluate(self, model: Any, tokenized: datasets.Dataset, tokenizer: Any, batch_size: int,
                 device: Any) -> tuple[dict[str, float], list[dict]]:
        """Accuracy in percent, and one record per example. The model must already be on `device`."""
        device = torch.device(device) if device is not None else next(model.parameters()).device
        active = model.active_head
        if isinstance(active, str) and active in model.heads and model.heads[active].config.get("use_pooler"):
            _check_pretrained_pooler(model)   # also for a TA loaded by an eval job
        columns = [c for c in MODEL_INPUTS if c in tokenized.column_names]
        rows = tokenized.select_columns(columns)
        records: list[dict] = []
        for start, _, labels, predicted in predictions(model, rows, batch_size,
                                                       lambda f: self.collate(f, tokenizer), device):
            for i, (label, prediction) in enumerate(zip(labels.tolist(), predicted.tolist(), strict=True)):
                records.append({"index": start + i, "label": label, "prediction": prediction,
                                "correct": label == prediction})
        if not records:
            raise DataError("nothing to evaluate: the tokenized split is empty")
        accuracy = 100.0 * sum(r["correct"] for r in records) / len(records)
        return {"accuracy": accuracy}, records


def _check_pretrained_pooler(model: Any) -> None:
    """A head on the pooled output needs the checkpoint's trained pooler. A checkpoint without one (an
    MLM-only checkpoint such as the demo model's) gets a newly initialised pooler from `from_pretrained`
    (Linear: bias exactly zero), different in every process: a TA job and its eval jobs would not see the
    same model."""
    pooler = getattr(model.base_model, "pooler", None)
    dense = getattr(pooler, "dense", None)
    if dense is None:
        raise ValueError("task 'nli' option head: pooler needs a model with a pooler layer; "
                         f"{type(model.base_model).__name__} has none: use head: adapters")
    if dense.bias is not None and not dense.bias.detach().any():
        raise ValueError(f"task 'nli' option head: pooler needs a pretrained pooler, but the checkpoint "
                         f"{model.name_or_path} has none (its pooler was newly initialised: bias all zero); "
                         "use head: adapters, or a checkpoint saved with its pooler")


def _read_local_dataset(source: DataSource, split: str, language: str | None) -> datasets.Dataset:
    return datasets.Dataset.from_dict(read_local(source, split, language), features=_FEATURES)


_FEATURES = datasets.Features({"premise": datasets.Value("string"), "hypothesis": datasets.Value("string"),
                               "label": datasets.Value("int64")})


def _checked(ds: datasets.Dataset, where: str) -> datasets.Dataset:
    """The schema every caller relies on: the three columns, at least one row, labels in {0, 1, 2}."""
    expected = f"expected columns {', '.join(COLUMNS)} with labels 0-2 ({', '.join(LABELS)})"
    ds = require_columns(ds, COLUMNS, where, expected)
    bad = sorted(set(ds.unique("label")) - set(range(len(LABELS))))
    if bad:
        raise DataError(f"{where}: label value(s) {bad} outside 0-2; {expected}")
    return ds


TASK = NliTask()   # the default (head: adapters)


def make_task(**options) -> NliTask:
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ValueError(f"unknown option(s) {', '.join(unknown)} for task 'nli'; valid options: "
                         + "; ".join(f"{k} ({v})" for k, v in OPTIONS.items()))
    head = options.get("head", "adapters")
    return TASK if head == "adapters" else NliTask(head=head)
