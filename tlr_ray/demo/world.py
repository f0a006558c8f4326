"""Build (once) the offline demo world: text for LAs, NLI data in native formats, a tiny pretrained BERT.

    python -m tlr_ray.demo [ROOT]       # builds if needed, prints the folder

`ensure_demo_world()` is idempotent and safe with concurrent callers (e.g. several Ray workers): each
builder writes a private temporary sibling folder and `os.rename`s it into place; a folder holding `READY`
is complete. That fast path imports nothing heavy (no torch). See docs/demo-world.md.
"""
from __future__ import annotations

import csv
import json
import logging
import os
import random
import shutil
import tempfile
import time
from pathlib import Path

from tlr_ray.demo import ner_data, qa_data, ud_data
from tlr_ray.demo.language import LANGUAGES, VERSION, render, text_line
from tlr_ray.demo.pairs import LABELS, make_pairs

TASK_DATA = {"ner": ner_data, "qa": qa_data, "ud": ud_data}  # task -> its demo data module (write)

log = logging.getLogger(__name__)

TEXT_LINES = 4000
MULTINLI = {"train": 3000, "dev_matched": 300}
NO_CONSENSUS_DEV = 6     # extra dev rows with gold_label "-", as real MultiNLI has; loaders must drop them
ANLI = {"dev": 120, "test": 240}        # per language
ANLI_CODES = {"swa": "sw", "yor": "yo"}  # AmericasNLI-style code -> canonical demo language
XNLI = {"dev": 120, "test": 240}        # per language
XNLI_CODES = ("en", "sw", "th")         # the real XNLI files hold every language, English included
XNLI_HEADER = ("language", "gold_label", "sentence1_binary_parse", "sentence2_binary_parse",
               "sentence1_parse", "sentence2_parse", "sentence1", "sentence2", "promptID", "pairID", "genre",
               "label1", "label2", "label3", "label4", "label5", "sentence1_tokenized", "sentence2_tokenized",
               "match")
ANLI_HEADER = ("id", "language", "premise", "hypothesis", "label")


# The cache folder's name. Bump it whenever the world gains or changes content (e.g. a new task's
# *_data.py), so that an old cached world is not taken for the new one. VERSION (language.py) seeds the
# generators and stays put, so existing data does not change.
FOLDER = "demo-v3"


def default_root() -> Path:
    cache = os.environ.get("TLR_RAY_CACHE") or "~/.cache/tlr_ray"
    return Path(cache).expanduser() / FOLDER


def ensure_demo_world(root: str | Path | None = None) -> Path:
    """The demo world's folder, built first if it does not hold a `READY` marker yet."""
    root = Path(root).expanduser().absolute() if root is not None else default_root()
    if root.exists():   # worlds are renamed into place complete, so READY is there unless it is not ours
        if (root / "READY").is_file():
            return root
        raise RuntimeError(f"{root} exists but holds no READY marker, so it is not a complete demo world. "
                           "Delete it and retry.")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.building-", dir=root.parent))
    try:
        started = time.perf_counter()
        log.info("demo world: building %s (first use only; takes about half a minute)", root)
        sizes = write_demo_data(tmp)
        from tlr_ray.demo import model  # noqa: PLC0415  (torch: only when actually building)

        texts = [tmp / "text" / f"{code}.txt" for code in LANGUAGES]
        tokenizer = model.train_tokenizer(texts, tmp / "model")
        model_info = model.pretrain(tokenizer, texts, tmp / "model")
        ready = {"version": VERSION, "languages": list(LANGUAGES), "sizes": sizes,
                 "model": {"vocab_size": len(tokenizer), **model_info}}
        (tmp / "READY").write_text(json.dumps(ready, indent=2) + "\n", encoding="utf-8")
        os.chmod(tmp, 0o755)   # mkdtemp made it private; the finished world is an ordinary cache folder
        try:
            os.rename(tmp, root)
        except OSError:
            if not (root / "READY").is_file():   # not a lost race with another builder: a real failure
                raise
            log.info("demo world: another process finished %s first; using theirs", root)
        else:
            log.info("demo world: ready at %s after %.1f s", root, time.perf_counter() - started)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def write_demo_data(folder: str | Path) -> dict:
    """Write the text and NLI files (not the model) into `folder`; deterministic, pure Python.
    Returns the sizes recorded in READY."""
    folder = Path(folder)
    sizes: dict = {"text_lines": {}}
    for code in LANGUAGES:
        rng = random.Random(f"{VERSION}:text:{code}")
        lines = [text_line(rng, code) for _ in range(TEXT_LINES)]
        _write_lines(folder / "text" / f"{code}.txt", lines)
        sizes["text_lines"][code] = len(lines)
    sizes["multinli"] = _write_multinli(folder / "nli" / "multinli")
    sizes["americasnli"] = _write_anli(folder / "nli" / "anli")
    sizes["xnli"] = _write_xnli(folder / "nli" / "xnli")
    # Other tasks' demo data: a module tlr_ray/demo/<task>_data.py with `write(folder) -> sizes` each.
    for task, module in TASK_DATA.items():
        sizes[task] = module.write(folder)
    log.info("demo world: text and task data written")
    return sizes


def _write_lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def _write_multinli(folder: Path) -> dict:
    """MultiNLI 1.0 JSONL: one object per line, keys as in the real release (parse fields left empty)."""
    sizes = {}
    for split, n in MULTINLI.items():
        rows = [(pair.premise, pair.hypothesis, LABELS[pair.label])
                for pair in make_pairs(n, f"{VERSION}:multinli:{split}")]
        if split == "dev_matched":
            rows += [(p.premise, p.hypothesis, "-")
                     for p in make_pairs(NO_CONSENSUS_DEV, f"{VERSION}:multinli:no-consensus")]
        lines = []
        for i, (premise, hypothesis, gold) in enumerate(rows):
            lines.append(json.dumps({
                "annotator_labels": [gold], "genre": "demo", "gold_label": gold,
                "pairID": f"{split}{i}{gold[0]}", "promptID": f"{split}{i}",
                "sentence1": render(premise, "en"), "sentence1_binary_parse": "", "sentence1_parse": "",
                "sentence2": render(hypothesis, "en"), "sentence2_binary_parse": "", "sentence2_parse": "",
            }, ensure_ascii=False))
        _write_lines(folder / f"multinli_1.0_{split}.jsonl", lines)
        sizes[split] = n
    sizes["dev_matched_no_consensus"] = NO_CONSENSUS_DEV
    return sizes


def _write_tsv(path: Path, header: tuple[str, ...], rows: list[tuple]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, delimiter="\t", quoting=csv.QUOTE_NONE, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def _write_anli(folder: Path) -> dict:
    """AmericasNLI repo layout: {dev,test}/<code>.tsv, columns id, language, premise, hypothesis, label."""
    sizes = {}
    for split, n in ANLI.items():
        pairs = make_pairs(n, f"{VERSION}:anli:{split}")   # parallel: the same items in every language
        for code, lang in ANLI_CODES.items():
            rows = [(i, code, render(p.premise, lang), render(p.hypothesis, lang), LABELS[p.label])
                    for i, p in enumerate(pairs)]
            _write_tsv(folder / split / f"{code}.tsv", ANLI_HEADER, rows)
        sizes[split] = {code: n for code in ANLI_CODES}
    return sizes


def _write_xnli(folder: Path) -> dict:
    """XNLI 1.0 layout: xnli.{dev,test}.tsv, all languages in one file, told apart by `language`."""
    sizes = {}
    for split, n in XNLI.items():
        pairs = make_pairs(n, f"{VERSION}:xnli:{split}")
        rows = []
        for lang in XNLI_CODES:
            for i, p in enumerate(pairs):
                s1, s2, gold = render(p.premise, lang), render(p.hypothesis, lang), LABELS[p.label]
                rows.append((lang, gold, "", "", "", "", s1, s2, i, i, "demo", gold, gold, gold, gold, gold,
                             s1, s2, "True"))
        _write_tsv(folder / f"xnli.{split}.tsv", XNLI_HEADER, rows)
        sizes[split] = {lang: n for lang in XNLI_CODES}
    return sizes

