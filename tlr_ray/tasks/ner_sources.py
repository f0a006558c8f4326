"""NER tag sets, and readers for NER data in each dataset's native file format and on the Hub.

Every reader returns plain columns {"tokens": [[str]], "ner_tags": [[int]]} with tags already in the ids
of the task's `TagSet`, or raises `DataError` naming the file (and line) and what was expected.
Formats (checked against the public releases, see docs/tasks/ner.md):
- conll2003: a folder with `train.txt`, `valid.txt`, `test.txt` (the common distribution, e.g. the
  deepai.org zip the Hub script used; IOB2 tags) or the original `eng.train`, `eng.testa`, `eng.testb`
  (IOB1 tags). Four space-separated columns "token POS chunk NER", a blank line between sentences,
  `-DOCSTART- ...` lines between documents (skipped).
- conll-ner: the MasakhaNER GitHub layout `data/<code>/{train,dev,test}.txt` (the path may be the repo
  or its `data/` folder); two columns "token TAG", a blank line between sentences, IOB2 tags.
Tags are always normalised to IOB2 before mapping (a no-op on IOB2 data, the standard repair of IOB1).
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import datasets

from tlr_ray.tasks.base import DataError, DataSource
from tlr_ray.tasks.common import hub_dataset

# The reference's 7 labels; ids 0-6 coincide with CoNLL-2003's and MasakhaNER's own ids.
REDUCED = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC")
# The union of both datasets' tags: CoNLL-2003 keeps its ids 0-8, MasakhaNER's DATE (its 7, 8) moves to 9, 10.
FULL = (*REDUCED, "B-MISC", "I-MISC", "B-DATE", "I-DATE")
# The sources' own label orders (DATASETS.md), used when the Hub's feature carries no ClassLabel names.
HUB_TAG_NAMES = {
    "eriktks/conll2003": (*REDUCED, "B-MISC", "I-MISC"),
    "masakhane/masakhaner": (*REDUCED, "B-DATE", "I-DATE"),
}


@dataclass(frozen=True)
class TagSet:
    name: str                      # "reduced" or "full": the task option `labels`
    labels: tuple[str, ...]        # id -> tag
    dropped: frozenset[str] = frozenset()   # entity types mapped to O

    def describe(self) -> str:
        dropped = f"; {', '.join(sorted(self.dropped))} tags become O" if self.dropped else ""
        return f"the {self.name} tag set ({', '.join(self.labels)}{dropped})"

    def encode(self, tags: Iterable[str]) -> list[int]:
        """Tag strings (IOB1 or IOB2) -> our ids; an unknown tag raises DataError."""
        index = {t: i for i, t in enumerate(self.labels)}
        ids = []
        for tag in to_iob2(list(tags)):
            if tag[2:] in self.dropped and tag[:2] in ("B-", "I-"):
                tag = "O"
            if tag not in index:
                raise DataError(f"tag {tag!r} outside {self.describe()}")
            ids.append(index[tag])
        return ids


TAG_SETS = {"reduced": TagSet("reduced", REDUCED, frozenset({"MISC", "DATE"})), "full": TagSet("full", FULL)}


def to_iob2(tags: list[str]) -> list[str]:
    """IOB1 -> IOB2: an I-X that does not continue an X entity starts one (becomes B-X)."""
    out, previous = [], "O"
    for tag in tags:
        if tag.startswith("I-") and previous[2:] != tag[2:]:   # after O, or after another type
            tag = "B-" + tag[2:]
        out.append(tag)
        previous = tag
    return out


# per format and split (ours, or the source's own name): candidate files, first existing wins
_CONLL = {"train": ("train.txt", "eng.train"), "validation": ("valid.txt", "eng.testa"),
          "test": ("test.txt", "eng.testb")}
_MASAKHANE = {s: (f"{{code}}/{f}.txt", f"data/{{code}}/{f}.txt")
              for s, f in (("train", "train"), ("validation", "dev"), ("test", "test"))}
SPLIT_FILES = {
    "conll2003": {**_CONLL, "valid": _CONLL["validation"], "dev": _CONLL["validation"]},
    "conll-ner": {**_MASAKHANE, "dev": _MASAKHANE["validation"]},
}
COLUMNS = {"conll2003": 4, "conll-ner": 2}
DOCSTART = "-DOCSTART-"


def read_local(source: DataSource, split: str, language: str | None, tagset: TagSet) -> dict[str, list]:
    """Sentences of one split (the source's split name) from local files in `source.local_format`."""
    fmt = source.local_format
    if fmt not in SPLIT_FILES:
        raise DataError(f"unknown local_format {fmt!r} for the ner task; known formats: "
                        f"{', '.join(SPLIT_FILES)}")
    files = SPLIT_FILES[fmt]
    if split not in files:
        raise DataError(f"no split {split!r} in {fmt} files; known splits: {', '.join(files)}")
    if fmt == "conll-ner" and not language:
        raise DataError("conll-ner data has one folder per language, but no language code was given")
    folder = Path(source.local_path or "")
    candidates = [folder / name.format(code=language) for name in files[split]]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        raise DataError(f"missing file: {fmt} split {split!r} expects "
                        f"{' or '.join(str(p) for p in candidates)}")
    return _read_columns(path, COLUMNS[fmt], tagset)


def _read_columns(path: Path, n_columns: int, tagset: TagSet) -> dict[str, list]:
    """Token per line, tag in the last column, blank line between sentences, -DOCSTART- skipped."""
    expected = "token POS chunk NER" if n_columns == 4 else "token TAG"
    tokens: list[list[str]] = []
    tags: list[list[int]] = []
    words: list[str] = []
    raw: list[str] = []
    start = 0

    def flush() -> None:
        if words:
            try:
                tags.append(tagset.encode(raw))
            except DataError as e:
                raise DataError(f"{path}, sentence starting at line {start}: {e}") from None
            tokens.append(list(words))
        words.clear()
        raw.clear()

    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                flush()
                continue
            if fields[0] == DOCSTART:   # a document boundary is a sentence boundary too
                flush()
                continue
            if len(fields) != n_columns:
                raise DataError(f"{path}, line {n}: {len(fields)} columns, expected {n_columns} "
                                f"({expected}, separated by spaces)")
            if not words:
                start = n
            words.append(fields[0])
            raw.append(fields[-1])
    flush()
    return {"tokens": tokens, "ner_tags": tags}


def load_hub(source: DataSource, split: str, language: str | None, tagset: TagSet) -> dict[str, list]:
    """One split from the Hub as columns, the source's integer ids mapped to ours through tag names."""
    ds = hub_dataset(source, split, language)
    missing = [c for c in ("tokens", "ner_tags") if c not in ds.column_names]
    if missing:
        raise DataError(f"missing column(s) {', '.join(missing)} (found: {', '.join(ds.column_names)}); "
                        "expected tokens and ner_tags")
    names = _tag_names(ds.features["ner_tags"], source.hub_id)
    tokens, tags = [], []
    for i, (words, ids) in enumerate(zip(ds["tokens"], ds["ner_tags"], strict=True)):
        try:
            if names is not None:   # integer ids: through the source's names (strings are used as they are)
                bad = [x for x in ids if not isinstance(x, int) or not 0 <= x < len(names)]
                if bad:
                    raise DataError(f"tag id(s) {sorted(set(bad))} outside the source's label names "
                                    f"{', '.join(names)}")
                ids = [names[x] for x in ids]
            tags.append(tagset.encode(ids))
        except DataError as e:
            raise DataError(f"row {i}: {e}") from None
        tokens.append(words)
    return {"tokens": tokens, "ner_tags": tags}


def _tag_names(feature, hub_id: str | None) -> tuple[str, ...] | None:
    """The source's id -> tag names: its ClassLabel names, else DATASETS.md's order; None for strings."""
    inner = getattr(feature, "feature", None)
    if isinstance(inner, datasets.ClassLabel):
        return tuple(inner.names)
    if isinstance(inner, datasets.Value) and inner.dtype == "string":
        return None
    if hub_id in HUB_TAG_NAMES:
        return HUB_TAG_NAMES[hub_id]
    raise DataError(f"ner_tags are {feature} without label names, and {hub_id} has no known label order; "
                    f"known: {', '.join(HUB_TAG_NAMES)}")
