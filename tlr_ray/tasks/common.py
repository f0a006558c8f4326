"""What every task's loading shares: naming where data came from, the local-or-Hub dispatch, and the
Hub call with one clear error. Task modules keep only what is their own (formats, columns, checks)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import datasets
import torch

from tlr_ray.tasks.base import DataError, DataSource


def where(source: DataSource, split: str, language: str | None) -> str:
    """'demo_xnli (local xnli-tsv files at ...), split 'test', language 'sw'' for error messages."""
    source_split = source.splits.get(split, split)
    return (f"{source.dataset} ({source.describe()}), split {split!r}"
            + (f" (source split {source_split!r})" if source_split != split else "")
            + (f", language {language!r}" if language else ""))


def dispatch(source: DataSource, split: str, language: str | None,
             read_local: Callable[..., Any], load_hub: Callable[..., Any], *extra) -> Any:
    """`read_local` or `load_hub` (source, source split, language, *extra), errors prefixed with `where`."""
    source_split = source.splits.get(split, split)
    try:
        if source.local_path:
            return read_local(source, source_split, language, *extra)
        if source.hub_id:
            return load_hub(source, source_split, language, *extra)
        raise DataError("the source has neither hub_id nor local_path")
    except DataError as e:
        raise DataError(f"{where(source, split, language)}: {e}") from None


def hub_dataset(source: DataSource, split: str, lang_value: str | None) -> datasets.Dataset:
    """`datasets.load_dataset` with "{lang}" in config/data_dir replaced by `lang_value`."""
    def fill(s: str | None) -> str | None:
        return s.replace("{lang}", lang_value or "") if s else s
    kwargs = {"name": fill(source.config), "data_dir": fill(source.data_dir), "revision": source.revision}
    kwargs = {k: v for k, v in kwargs.items() if v}
    try:
        return datasets.load_dataset(source.hub_id, split=split, **kwargs)
    except Exception as e:  # noqa: BLE001  (network, auth, missing config/split: all one message)
        raise DataError(f"could not load Hub dataset {source.hub_id} at revision "
                        f"{source.revision or 'main (unpinned)'}, config {kwargs.get('name')}, data_dir "
                        f"{kwargs.get('data_dir')}, split {split!r}: {type(e).__name__}: {e}") from e


def jsonl_records(path, required: tuple[str, ...], what: str):
    """(line number, where, object) per non-empty line of a JSON-lines file, each checked to have
    `required` keys; `where` ("<file>, line N") starts any error message about that line."""
    import json
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}, line {n}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{where}: not JSON ({e}); expected one {what} object per line") from None
            missing = [k for k in required if k not in obj]
            if missing:
                raise DataError(f"{where}: missing key(s) {', '.join(missing)}; expected {what} keys "
                                f"{', '.join(required)}")
            yield n, where, obj


def require_columns(ds: datasets.Dataset, columns, where: str, expected: str) -> datasets.Dataset:
    """`ds` reduced to `columns`, or a DataError if one is missing or the split is empty."""
    missing = [c for c in columns if c not in ds.column_names]
    if missing:
        raise DataError(f"{where}: missing column(s) {', '.join(missing)} (found: "
                        f"{', '.join(ds.column_names)}); {expected}")
    ds = ds.select_columns(list(columns))
    if len(ds) == 0:
        raise DataError(f"{where}: the split is empty; {expected} and at least one example")
    return ds


def feature_batches(tokenized: datasets.Dataset, batch_size: int):
    """(start index, list of feature dicts) per batch, for evaluation loops."""
    for start in range(0, len(tokenized), batch_size):
        chunk = tokenized[start:start + batch_size]   # dict of columns -> list of values
        yield start, [dict(zip(chunk, values, strict=True)) for values in zip(*chunk.values(), strict=True)]


@torch.no_grad()  # on a generator: only while it runs, so an error in the caller's loop leaves grad mode as it was
def predictions(model: Any, rows: datasets.Dataset, batch_size: int, collate: Callable[[list[dict]], dict],
                device: Any):
    """A classifier's evaluation, batch by batch: (start index, feature dicts, labels, argmax of the logits
    on the CPU), in eval mode without gradients. The model must already be on `device`."""
    model.eval()
    for start, features in feature_batches(rows, batch_size):
        batch = collate(features)
        labels = batch.pop("labels")
        logits = model(**{k: v.to(device) for k, v in batch.items()}).logits
        yield start, features, labels, logits.argmax(dim=-1).cpu()
