"""Tokenised datasets cached on disk, so the many trials of a sweep on one machine tokenise each
(dataset, split, language) once. The key holds everything the result depends on: the task and its
options, the data's fingerprint, the tokenizer (its files' content) and the max length."""
from __future__ import annotations

import logging
import os
import shutil
import uuid
import weakref
from pathlib import Path

import datasets

from tlr_ray.fingerprint import digest, source_fingerprint

log = logging.getLogger(__name__)


def cache_root() -> Path:
    return Path(os.environ.get("TLR_RAY_CACHE") or "~/.cache/tlr_ray").expanduser() / "tokenized"


# Remembered while the tokenizer lives, not longer: a reused trial process loads one per job, and a plain
# cache keyed by the object would keep every one of them (a 250k-word vocabulary each) until it ends.
_fingerprints: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def tokenizer_fingerprint(tokenizer) -> str:
    """The tokenizer's identity: its vocabulary and settings, not its path."""
    found = _fingerprints.get(tokenizer)
    if found is None:
        found = _fingerprints[tokenizer] = digest({
            "cls": type(tokenizer).__name__, "vocab": sorted(tokenizer.get_vocab().items()),
            "kw": {k: str(v) for k, v in sorted(tokenizer.init_kwargs.items())
                   if k not in ("name_or_path", "tokenizer_file")}})
    return found


def tokenized(task, options: dict, source, split: str, language: str | None, tokenizer, max_length: int,
              prepare=None):
    """`task.tokenize(task.load(...))`, from the cache when the same inputs were tokenised before.
    `prepare(examples) -> examples` (e.g. a seeded subset) runs before tokenising and is part of the key
    through `prepare.key`."""
    key = digest({"task": task.name, "options": options, "split": split, "language": language,
                  "data": source_fingerprint(source.hub_id, source.revision, source.config, source.data_dir,
                                             source.local_path),
                  "tokenizer": tokenizer_fingerprint(tokenizer), "max_length": max_length,
                  "prepare": getattr(prepare, "key", None)})[:24]
    folder = cache_root() / key
    if (folder / "dataset_info.json").is_file():
        try:
            return datasets.load_from_disk(str(folder))
        except Exception as e:  # noqa: BLE001  (a damaged cache entry is rebuilt, never trusted)
            log.warning("tokenized cache %s unreadable (%s); rebuilding", folder, e)
            shutil.rmtree(folder, ignore_errors=True)
    examples = task.load(source, split, language)
    if prepare is not None:
        examples = prepare(examples)
    out = task.tokenize(examples, tokenizer, max_length)
    tmp = folder.with_name(f".{key}-{uuid.uuid4().hex[:8]}")
    out.save_to_disk(str(tmp))
    try:
        os.rename(tmp, folder)  # another trial may have won the race: then keep theirs
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    return datasets.load_from_disk(str(folder))


def subset(n: int | None):
    """A `prepare` keeping a seeded random `n` examples (all when n is None or larger)."""
    def prepare(examples):
        return examples.shuffle(seed=0).select(range(n)) if n and len(examples) > n else examples
    prepare.key = f"subset:seed0:{n}"
    return prepare
