"""The offline demo world: deterministic data, native layouts, balanced labels, a loadable tiny model."""
from __future__ import annotations

import collections
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tlr_ray.demo import ensure_demo_world, write_demo_data
from tlr_ray.demo.language import HOURS, LANGUAGES, NAMES, TARGETS

REPO = Path(__file__).resolve().parents[1]
DATA_DIRS = ("text", "nli")


@pytest.fixture(scope="session")
def world(demo_world) -> Path:
    """conftest's session-wide world (a tmp cache unless TLR_RAY_CACHE is set): built once, ~30 s."""
    return demo_world


def data_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes()
            for d in DATA_DIRS for p in sorted((root / d).rglob("*")) if p.is_file()}


def test_layout_and_ready(world):
    for code in LANGUAGES:
        lines = (world / "text" / f"{code}.txt").read_text(encoding="utf-8").splitlines()
        assert len(lines) == 4000 and all(line.strip() for line in lines)
    for name in ("multinli_1.0_train.jsonl", "multinli_1.0_dev_matched.jsonl"):
        assert (world / "nli" / "multinli" / name).is_file()
    for split in ("dev", "test"):
        for code in ("swa", "yor"):
            assert (world / "nli" / "anli" / split / f"{code}.tsv").is_file()
        assert (world / "nli" / "xnli" / f"xnli.{split}.tsv").is_file()
    for name in ("config.json", "model.safetensors", "tokenizer.json", "vocab.txt", "tokenizer_config.json"):
        assert (world / "model" / name).is_file()
    ready = json.loads((world / "READY").read_text())
    assert ready["version"] == "demo-v1" and ready["languages"] == list(LANGUAGES)
    assert ready["sizes"]["multinli"]["train"] == 3000
    assert not [p for p in world.parent.iterdir() if ".building-" in p.name]   # the temp folder is gone


def test_data_is_deterministic(world, tmp_path):
    sizes = write_demo_data(tmp_path)
    assert data_files(tmp_path) == data_files(world)
    assert sizes == json.loads((world / "READY").read_text())["sizes"]


def test_fast_path_returns_without_importing_torch(world):
    code = ("import sys; from tlr_ray.demo import ensure_demo_world; "
            f"print(ensure_demo_world({str(world)!r})); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.stdout.split() == [str(world), "False"]


def test_default_root_follows_env(monkeypatch, tmp_path):
    from tlr_ray.demo import default_root

    monkeypatch.setenv("TLR_RAY_CACHE", str(tmp_path))
    assert default_root() == tmp_path / "demo-v3"


def test_incomplete_folder_is_refused(tmp_path):
    (tmp_path / "demo-v3").mkdir()
    with pytest.raises(RuntimeError, match="READY"):
        ensure_demo_world(tmp_path / "demo-v3")


def read_tsv(path: Path) -> list[dict]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


def test_native_formats_and_label_balance(world):
    nli = world / "nli"
    train = [json.loads(line) for line in (nli / "multinli" / "multinli_1.0_train.jsonl").open()]
    assert {"gold_label", "sentence1", "sentence2", "genre", "pairID"} <= set(train[0])
    assert collections.Counter(r["gold_label"] for r in train) == {
        "entailment": 1000, "neutral": 1000, "contradiction": 1000}
    dev = [json.loads(line) for line in (nli / "multinli" / "multinli_1.0_dev_matched.jsonl").open()]
    assert collections.Counter(r["gold_label"] for r in dev)["-"] == 6      # no-consensus rows, to be dropped

    anli = read_tsv(nli / "anli" / "test" / "swa.tsv")
    assert list(anli[0]) == ["id", "language", "premise", "hypothesis", "label"]
    assert {r["language"] for r in anli} == {"swa"}
    assert set(collections.Counter(r["label"] for r in anli).values()) == {80}

    xnli = read_tsv(nli / "xnli" / "xnli.test.tsv")
    assert list(xnli[0])[:2] == ["language", "gold_label"] and {"sentence1", "sentence2"} <= set(xnli[0])
    by_lang = collections.defaultdict(collections.Counter)
    for r in xnli:
        by_lang[r["language"]][r["gold_label"]] += 1
    assert {lang: set(c.values()) for lang, c in by_lang.items()} == {"en": {80}, "sw": {80}, "th": {80}}


def test_targets_differ_from_english_but_share_names(world):
    text = {code: (world / "text" / f"{code}.txt").read_text(encoding="utf-8") for code in LANGUAGES}
    vocab = {code: set(t.split()) for code, t in text.items()}
    shared = set(NAMES) | {str(h) for h in HOURS} | {"."}      # the only anchors between the languages
    for code in TARGETS:
        assert text[code] != text["en"]
        assert vocab[code] & vocab["en"] <= shared, code
        assert len(vocab[code] - shared) > 150, code              # a lexicon of its own
        assert {"Amani", "Tunde"} <= vocab[code]
    assert any("\u0e00" <= ch <= "\u0e7f" for ch in text["th"])   # Thai script


def test_parallel_target_sets_share_labels(world):
    anli = {code: read_tsv(world / "nli" / "anli" / "test" / f"{code}.tsv") for code in ("swa", "yor")}
    assert [r["label"] for r in anli["swa"]] == [r["label"] for r in anli["yor"]]
    assert anli["swa"][0]["premise"] != anli["yor"][0]["premise"]


def test_tokenizer_and_model_load_offline(world):
    import torch
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(world / "model")
    model = AutoModelForMaskedLM.from_pretrained(world / "model")
    assert 1000 < len(tokenizer) <= 4000 and model.config.vocab_size == len(tokenizer)
    th_line = (world / "text" / "th.txt").read_text(encoding="utf-8").splitlines()[0]
    assert tokenizer.unk_token not in tokenizer.tokenize(th_line)
    assert tokenizer.tokenize("Amani sees the goat .")[0] == "Amani"                    # cased
    batch = tokenizer(["Amani [MASK] the red goat .", th_line], padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape[:2] == batch["input_ids"].shape and torch.isfinite(logits).all()


def test_tokenizer_vocabulary_is_deterministic(world, tmp_path):
    from tlr_ray.demo.model import train_tokenizer

    train_tokenizer([world / "text" / f"{code}.txt" for code in LANGUAGES], tmp_path)
    assert (tmp_path / "vocab.txt").read_bytes() == (world / "model" / "vocab.txt").read_bytes()
