"""Readers for NLI data in each dataset's native file format, and the Hub loader.

Every reader returns plain columns {"premise": [...], "hypothesis": [...], "label": [int]} or raises
`DataError` naming the file and what was expected. Formats (verified against the public releases):
- multinli-jsonl: MultiNLI 1.0, `multinli_1.0_{train,dev_matched,dev_mismatched}.jsonl`, one JSON object a
  line with `gold_label`, `sentence1`, `sentence2` (and genre, pairID, parses, ...). gold_label "-" means
  the annotators reached no consensus; those rows are dropped, as everyone does.
- americasnli-tsv: the AmericasNLI GitHub repo, `{dev,test}/<code>.tsv`, header
  `id language premise hypothesis label`, string labels.
- xnli-tsv: XNLI 1.0, `xnli.{dev,test}.tsv`, all languages in one file; columns `language`, `gold_label`,
  `sentence1`, `sentence2` among 19 others.
"""
from __future__ import annotations

import csv
import logging
import sys
from pathlib import Path

import datasets

from tlr_ray.tasks.base import DataError, DataSource
from tlr_ray.tasks.common import hub_dataset, jsonl_records

log = logging.getLogger(__name__)

LABELS = ("entailment", "neutral", "contradiction")
LABEL_IDS = {name: i for i, name in enumerate(LABELS)} | {"contradictory": 2}  # XNLI-derived files say so
NO_CONSENSUS = "-"

# per format: the split names a source may use -> the file to read (relative to the folder);
# "{code}" is the dataset-specific language code
SPLIT_FILES = {
    "multinli-jsonl": {"train": "multinli_1.0_train.jsonl",
                       "validation": "multinli_1.0_dev_matched.jsonl",
                       "validation_matched": "multinli_1.0_dev_matched.jsonl",
                       "dev_matched": "multinli_1.0_dev_matched.jsonl",
                       "validation_mismatched": "multinli_1.0_dev_mismatched.jsonl",
                       "dev_mismatched": "multinli_1.0_dev_mismatched.jsonl"},
    "americasnli-tsv": {"validation": "dev/{code}.tsv", "dev": "dev/{code}.tsv", "test": "test/{code}.tsv"},
    "xnli-tsv": {"validation": "xnli.dev.tsv", "dev": "xnli.dev.tsv", "test": "xnli.test.tsv"},
}


def label_id(value: str, where: str) -> int:
    try:
        return LABEL_IDS[value.strip()]
    except KeyError:
        raise DataError(f"{where}: unknown label {value!r}; expected one of {', '.join(LABELS)}") from None


def read_local(source: DataSource, split: str, language: str | None) -> dict[str, list]:
    """Rows of one split (the source's split name) from local files in `source.local_format`."""
    fmt = source.local_format
    if fmt not in SPLIT_FILES:
        raise DataError(f"unknown local_format {fmt!r} for the nli task; known formats: "
                        f"{', '.join(SPLIT_FILES)}")
    folder = Path(source.local_path or "")
    if not folder.is_dir():
        expected = sorted(set(SPLIT_FILES[fmt].values()))
        raise DataError(f"local_path {folder} is not a folder; {fmt} expects a folder holding "
                        f"{', '.join(expected)}")
    files = SPLIT_FILES[fmt]
    if split not in files:
        raise DataError(f"no split {split!r} in {fmt} files; known splits: {', '.join(files)}")
    if fmt != "multinli-jsonl" and not language:
        raise DataError(f"{fmt} data is multilingual, but no language code was given")
    path = folder / files[split].format(code=language)
    if not path.is_file():
        raise DataError(f"missing file {path}; {fmt} split {split!r} expects the file "
                        f"{files[split].format(code=language)} in {folder}")
    if fmt == "multinli-jsonl":
        return _read_multinli(path)
    if fmt == "americasnli-tsv":
        return _read_tsv(path, premise="premise", hypothesis="hypothesis", label="label")
    return _read_tsv(path, premise="sentence1", hypothesis="sentence2", label="gold_label",
                     language_column="language", language=language)


def _columns(rows: list[tuple[str, str, int]]) -> dict[str, list]:
    premises, hypotheses, labels = zip(*rows, strict=True) if rows else ((), (), ())
    return {"premise": list(premises), "hypothesis": list(hypotheses), "label": list(labels)}


def _read_multinli(path: Path) -> dict[str, list]:
    rows, dropped = [], 0
    for _, where, obj in jsonl_records(path, ("gold_label", "sentence1", "sentence2"), "MultiNLI"):
        if obj["gold_label"] == NO_CONSENSUS:
            dropped += 1
            continue
        rows.append((obj["sentence1"], obj["sentence2"], label_id(obj["gold_label"], where)))
    if dropped:
        log.info("%s: dropped %d rows without annotator consensus (gold_label '-')", path, dropped)
    return _columns(rows)


def _read_tsv(path: Path, premise: str, hypothesis: str, label: str, language_column: str | None = None,
              language: str | None = None) -> dict[str, list]:
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    rows, dropped, seen = [], 0, set()
    with path.open(encoding="utf-8", newline="") as f:
        # QUOTE_NONE: the releases do not quote fields, and their sentences contain bare '"' characters
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, [])
        wanted = [c for c in (language_column, premise, hypothesis, label) if c]
        missing = [c for c in wanted if c not in header]
        if missing:
            raise DataError(f"{path}: missing column(s) {', '.join(missing)} in the header; expected a "
                            f"tab-separated header with {', '.join(wanted)} "
                            f"(found: {', '.join(header) or 'none'})")
        idx = {c: header.index(c) for c in wanted}
        for n, fields in enumerate(reader, 2):
            if not any(fields):
                continue
            if len(fields) < len(header):
                raise DataError(f"{path}, line {n}: {len(fields)} fields, expected {len(header)} as in the "
                                "header (is the file tab-separated?)")
            if language_column:
                seen.add(fields[idx[language_column]])
                if fields[idx[language_column]] != language:
                    continue
            if fields[idx[label]] == NO_CONSENSUS:
                dropped += 1
                continue
            rows.append((fields[idx[premise]], fields[idx[hypothesis]],
                         label_id(fields[idx[label]], f"{path}, line {n}")))
    if dropped:
        log.info("%s: dropped %d rows without annotator consensus (label '-')", path, dropped)
    if language_column and not rows:
        raise DataError(f"{path}: no rows with {language_column} == {language!r}; languages in the file: "
                        f"{', '.join(sorted(seen)) or 'none'}")
    return _columns(rows)


def load_hub(source: DataSource, split: str, language: str | None) -> datasets.Dataset:
    """One split from the Hub as a `datasets.Dataset` with premise / hypothesis / label (ints)."""
    ds = hub_dataset(source, split, language)
    renames = {"sentence1": "premise", "sentence2": "hypothesis", "gold_label": "label"}
    cols = ds.column_names
    ds = ds.rename_columns({a: b for a, b in renames.items() if a in cols and b not in cols})
    per_language = "{lang}" in (source.config or "") + (source.data_dir or "")
    if language and "language" in cols and not per_language:   # e.g. AmericasNLI's all_languages config
        ds = ds.filter(lambda lang: lang == language, input_columns="language")
    if "label" in ds.column_names:
        ds = _labels_to_ids(ds)
    return ds


def _labels_to_ids(ds: datasets.Dataset) -> datasets.Dataset:
    """Labels as ints in our order: strings mapped by name, ClassLabels re-mapped if their order differs,
    and -1 (no gold label, e.g. hidden test labels) dropped."""
    feature = ds.features["label"]
    if isinstance(feature, datasets.ClassLabel) and tuple(feature.names) != LABELS:
        where = f"label names {feature.names}"
        mapping = {i: label_id(name, where) for i, name in enumerate(feature.names)}
        ds = ds.map(lambda b: {"label": [mapping.get(x, -1) for x in b["label"]]}, batched=True,
                    features=_int_labels(ds.features))
    elif isinstance(feature, datasets.Value) and feature.dtype == "string":
        ds = ds.filter(lambda x: x != NO_CONSENSUS, input_columns="label")
        where = "label column"
        ds = ds.map(lambda b: {"label": [label_id(x, where) for x in b["label"]]}, batched=True,
                    features=_int_labels(ds.features))
    return ds.filter(lambda x: x != -1, input_columns="label")


def _int_labels(features: datasets.Features) -> datasets.Features:
    features = features.copy()
    features["label"] = datasets.Value("int64")
    return features
