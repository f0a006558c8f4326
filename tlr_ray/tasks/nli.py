"""NLI: sentence-pair classification into entailment (0), neutral (1), contradiction (2).

MultiNLI (English training), XNLI and AmericasNLI (targets) share that label order. Data comes from the Hub
or from local files in each dataset's native format (readers in `nli_sources.py`); either way `load`
returns a `datasets.Dataset` with exactly `premise`, `hypothesis`, `label` and checks it before returning.
"""
from __future__ import annotations

from typing import Any

import datasets
import torch
from transformers import DataCollatorWithPadding

from tlr_ray.tasks import DataError, DataSource
from tlr_ray.tasks.common import dispatch, feature_batches, require_columns, where
from tlr_ray.tasks.nli_sources import LABELS, load_hub, read_local

COLUMNS = ("premise", "hypothesis", "label")
MODEL_INPUTS = ("input_ids", "token_type_ids", "attention_mask", "labels")


class NliTask:
    name = "nli"
    metric = "accuracy"
    labels = LABELS

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
        model.add_classification_head(name, num_labels=len(LABELS), id2label=dict(enumerate(LABELS)))

    def evaluate(self, model: Any, tokenized: datasets.Dataset, tokenizer: Any, batch_size: int,
                 device: Any) -> tuple[dict[str, float], list[dict]]:
        """Accuracy in percent, and one record per example. The model must already be on `device`."""
        device = torch.device(device) if device is not None else next(model.parameters()).device
        columns = [c for c in MODEL_INPUTS if c in tokenized.column_names]
        rows = tokenized.select_columns(columns)
        model.eval()
        records: list[dict] = []
        with torch.no_grad():
            for start, features in feature_batches(rows, batch_size):
                batch = self.collate(features, tokenizer)
                labels = batch.pop("labels")
                logits = model(**{k: v.to(device) for k, v in batch.items()}).logits
                predictions = logits.argmax(dim=-1).cpu()
                for i, (label, prediction) in enumerate(zip(labels.tolist(), predictions.tolist())):
                    records.append({"index": start + i, "label": label, "prediction": prediction,
                                    "correct": label == prediction})
        if not records:
            raise DataError("nothing to evaluate: the tokenized split is empty")
        accuracy = 100.0 * sum(r["correct"] for r in records) / len(records)
        return {"accuracy": accuracy}, records




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


TASK = NliTask()


def make_task() -> NliTask:
    """NLI has no options."""
    return TASK
