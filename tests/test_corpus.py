"""LA corpora prepared once (tlr_ray/train/corpus_prepare.py): the same blocks as tokenising line by line,
whatever the number of workers or chunk size; a seeded held-out split; memory-mapped reading with a
disjoint share per rank; checksummed artifacts that are prepared again when damaged; clear errors."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import run_corpora
from transformers import AutoTokenizer

from tlr_ray import artifacts
from tlr_ray.corpus import main as corpus_cli
from tlr_ray.plan import plan_sweep
from tlr_ray.runner import run_job
from tlr_ray.tasks import DataError
from tlr_ray.train import corpus_prepare as cp
from tlr_ray.train.context import JobContext
from tlr_ray.train.mlm_data import MLMData
from tlr_ray.typed_yaml import ConfigError
from tlr_ray.validate import load_sweep


@pytest.fixture(scope="module")
def tokenizer(demo_world):
    return AutoTokenizer.from_pretrained(str(demo_world / "model"))


@pytest.fixture(scope="module")
def text(demo_world) -> Path:
    return demo_world / "text" / "sw.txt"


def prepared(tokenizer, path: Path, out: Path, workers=1, block=32, fraction=0.05, first=None, seed=0) -> dict:
    return cp.prepare(cp.file_chunks(path, "sw", None), tokenizer, out, block_size=block, heldout_fraction=fraction,
                      heldout_seed=seed, first=first, workers=workers, describe=f"corpus file {path}")


def blocks(folder: Path, name: str, block=32) -> np.ndarray:
    return np.fromfile(folder / name, dtype=np.uint32).reshape(-1, block)


def test_blocks_are_the_lines_tokenised_with_special_tokens_concatenated(tokenizer, text, tmp_path):
    meta = prepared(tokenizer, text, tmp_path, fraction=0.1)
    lines = [ln.strip() for ln in text.read_text(encoding="utf-8").splitlines() if ln.strip()]
    held = cp.heldout_mask(0, len(lines), 0.1, 0, None)
    ids = tokenizer([ln for ln, h in zip(lines, held, strict=True) if not h], add_special_tokens=True)["input_ids"]
    flat = [i for seq in ids for i in seq]
    n = len(flat) // 32
    assert meta["train_blocks"] == n and meta["lines"] == len(lines) and meta["heldout_lines"] == int(held.sum())
    assert blocks(tmp_path, cp.TRAIN).tolist() == [flat[i * 32:(i + 1) * 32] for i in range(n)]
    assert 0.05 < held.mean() < 0.15  # about the fraction


def test_same_files_whatever_the_workers_and_chunks(tokenizer, text, tmp_path, monkeypatch):
    a = prepared(tokenizer, text, tmp_path / "one", workers=1)
    monkeypatch.setattr(cp, "CHUNK_BYTES", 10_000)  # many small chunks, two processes
    b = prepared(tokenizer, text, tmp_path / "two", workers=2)
    for name in (cp.TRAIN, cp.HELDOUT):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
    assert a["train_blocks"] == b["train_blocks"] and b["workers"] == 2


def test_heldout_split_is_seeded_and_first_takes_the_first_lines(tokenizer, text, tmp_path):
    assert (cp.heldout_mask(0, 1000, 0.05, 0, None) == cp.heldout_mask(0, 1000, 0.05, 0, None)).all()
    assert (cp.heldout_mask(0, 1000, 0.05, 0, None) != cp.heldout_mask(0, 1000, 0.05, 1, None)).any()
    # independent of where a chunk starts
    assert (cp.heldout_mask(0, 1000, 0.05, 3, None)[400:] == cp.heldout_mask(400, 600, 0.05, 3, None)).all()
    meta = prepared(tokenizer, text, tmp_path, first=200)
    lines = [ln.strip() for ln in text.read_text(encoding="utf-8").splitlines() if ln.strip()]
    ids = tokenizer(lines[:200], add_special_tokens=True)["input_ids"]
    flat = [i for seq in ids for i in seq]
    assert meta["heldout_lines"] == 200 and blocks(tmp_path, cp.HELDOUT)[0].tolist() == flat[:32]


def test_ranks_read_disjoint_shares_from_the_map(tokenizer, text, tmp_path):
    meta = prepared(tokenizer, text, tmp_path)
    rows = blocks(tmp_path, cp.TRAIN)
    seen = []
    for rank in (0, 1):
        data = MLMData(tmp_path, tokenizer, 32, 8, seed=1, rank=rank, world_size=2)
        assert isinstance(data.train.map, np.memmap)  # mapped, not loaded
        seen.append({tuple(data.train[i]["input_ids"].tolist()) for i in range(len(data.train))})
    assert not seen[0] & seen[1] and len(seen[0]) == len(seen[1]) == len(rows) // 2  # disjoint halves
    assert meta["train_blocks"] == len(rows)


def test_heldout_batches_are_masked_the_same_every_time(tokenizer, text, tmp_path):
    prepared(tokenizer, text, tmp_path)
    data = MLMData(tmp_path, tokenizer, 32, 8, seed=1, eval_batch_size=4)
    first, again = list(data.heldout_batches()), list(data.heldout_batches())
    assert len(first) > 1 and all((a["labels"] == b["labels"]).all() and (a["input_ids"] == b["input_ids"]).all()
                                  for a, b in zip(first, again, strict=True))
    assert any((b["labels"] != -100).any() for b in first)


@pytest.fixture
def sweep_with(demo_world, tmp_path):
    """A demo-world sweep whose sw corpus is `content` (bytes)."""
    def make(content: bytes | None = None, **la):
        corpora = {lang: f"demo://text/{lang}.txt" for lang in ("en", "sw")}
        if content is not None:
            bad = tmp_path / "sw.txt"
            bad.write_bytes(content)
            corpora["sw"] = str(bad)
        tiny = {"max_steps": 4, "eval_every": 2, "batch_size": 8, "max_seq_length": 32}
        return load_sweep("sweeps/demo.yaml", {
            "variants": ["MAD-X", "BAD-X"], "bilingual_adapters": {"ratios": ["1:1", "2:1"], "train_args": tiny},
            "tasks": {"nli": {"train": "demo_multinli", "eval": ["demo_xnli"]}},
            "datasets": {"demo_xnli": {"languages": ["sw"]}},
            "language_adapters": {"corpora": corpora, "train_args": tiny, "max_corpus_lines": 400, **la}})
    return make


def test_one_corpus_job_per_language_whatever_reads_it(sweep_with):
    plan = plan_sweep(sweep_with())
    corpora = {j.languages[0]: j for j in plan.of_kind("corpus")}
    readers = [j for j in plan.jobs if corpora["en"].id in j.needs]
    assert len(plan.of_kind("corpus")) == 2  # en and sw, once each (LAs and BAs cut blocks of one size)
    assert {j.kind for j in readers} == {"la", "ba"} and len([j for j in readers if j.kind == "ba"]) == 2
    ba = plan.of_kind("ba")[0]
    assert ba.needs == (corpora["en"].id, corpora["sw"].id)


def test_per_language_heldout_fraction_and_eval_every(sweep_with):
    plan = plan_sweep(sweep_with(per_language={"en": {"heldout_fraction": 0.01, "eval_every": 3}}))
    corpora = {j.languages[0]: j for j in plan.of_kind("corpus")}
    las = {j.languages[0]: j for j in plan.of_kind("la")}
    assert corpora["en"].spec.heldout_fraction == 0.01 and corpora["sw"].spec.heldout_fraction == 0.05
    assert las["en"].spec.args.eval_every == 3 and las["sw"].spec.args.eval_every == 2
    with pytest.raises(ConfigError, match="per_language.en.heldout_fraction"):
        sweep_with(per_language={"en": {"heldout_fraction": 1.5}})


def test_damaged_corpus_is_detected_and_prepared_again(sweep_with, tmp_path):
    plan = plan_sweep(sweep_with())
    sw = next(j for j in plan.of_kind("corpus") if j.languages == ("sw",))
    storage = str(tmp_path / "store")
    run_job(sw, storage, JobContext())
    train = Path(artifacts.location(storage, sw.id)) / "corpus" / cp.TRAIN
    digest = hashlib.sha256(train.read_bytes()).hexdigest()
    with open(train, "r+b") as f:
        f.truncate(train.stat().st_size // 2)
    assert artifacts.verify(storage, sw.id) is None  # reported and moved aside, never used
    assert any(p.name.startswith(sw.id) for p in (tmp_path / "store" / "corrupt").iterdir())
    run_job(sw, storage, JobContext())
    assert artifacts.verify(storage, sw.id) is not None
    assert hashlib.sha256(train.read_bytes()).hexdigest() == digest


def test_interrupted_preparation_leaves_no_artifact(sweep_with, tmp_path, monkeypatch):
    plan = plan_sweep(sweep_with())
    sw = next(j for j in plan.of_kind("corpus") if j.languages == ("sw",))

    def crash(*a, **kw):
        raise KeyboardInterrupt
    monkeypatch.setattr(cp, "_tokenize_chunk", crash)
    with pytest.raises(KeyboardInterrupt):
        run_job(sw, str(tmp_path), JobContext())
    assert artifacts.verify(str(tmp_path), sw.id) is None and not list((tmp_path / "staging").iterdir())


@pytest.mark.parametrize("content, at_load, message", [
    (b"", True, "is empty"),
    (b"  \n\n \n", True, "is empty"),
    ("caf\u00e9 ok\n".encode("latin-1"), True, "not UTF-8 text: line 1"),
    (b"short line\n", False, "fewer than one block of 32"),
])
def test_bad_corpora_get_clear_errors(sweep_with, tmp_path, content, at_load, message):
    if at_load:  # caught while the sweep file is checked, before anything starts
        with pytest.raises(ConfigError, match=message) as e:
            sweep_with(content)
        assert "sw.txt" in str(e.value) and "language sw" in str(e.value)
        return
    plan = plan_sweep(sweep_with(content))
    sw = next(j for j in plan.of_kind("corpus") if j.languages == ("sw",))
    with pytest.raises(DataError, match=message) as e:
        run_job(sw, str(tmp_path / "store"), JobContext())
    assert "sw.txt" in str(e.value) and "language sw" in str(e.value)


def test_non_utf8_deep_in_a_file_fails_the_corpus_job_with_its_line(sweep_with, tmp_path):
    good = "".join(f"line {i} of text\n" for i in range(10_000)).encode()
    plan = plan_sweep(sweep_with(good + b"bad \xff byte\n"))  # past what the load-time check reads
    sw = next(j for j in plan.of_kind("corpus") if j.languages == ("sw",))
    with pytest.raises(DataError, match="line 10001"):
        run_job(sw, str(tmp_path / "store"), JobContext())


def test_la_on_a_prepared_corpus_is_reproducible(sweep_with, tmp_path):
    plan = plan_sweep(sweep_with())
    storage = str(tmp_path / "store")
    run_corpora(plan, storage)
    la = next(j for j in plan.of_kind("la") if j.languages == ("sw",))
    first = run_job(la, storage, JobContext())
    again = run_job(la, storage, JobContext())  # trained again from scratch (the artifact is kept)
    assert [h["perplexity"] for h in first["history"]] == [h["perplexity"] for h in again["history"]]


def test_cli_prepares_once_then_finds_it(text, tmp_path, capsys):
    args = [str(text), "--model", "demo://model", "--block-size", "32", "--storage", str(tmp_path)]
    assert corpus_cli(args) == 0
    out = capsys.readouterr().out
    assert "prepared: " in out and "MiB/s" in out and "peak memory" in out
    folder = Path(out.split("prepared: ")[1].split()[0])
    assert (folder / cp.TRAIN).is_file()
    assert corpus_cli(args) == 0
    assert f"already prepared: {folder}" in capsys.readouterr().out
    assert corpus_cli([str(tmp_path / "missing.txt"), "--model", "demo://model"]) == 2


def test_resumed_la_equals_an_uninterrupted_one(sweep_with, tmp_path):
    import copy

    from tlr_ray.train.context import Checkpoints
    plan = plan_sweep(sweep_with())
    storage = str(tmp_path / "store")
    run_corpora(plan, storage)
    la = next(j for j in plan.of_kind("la") if j.languages == ("sw",))
    saves = []
    whole = run_job(la, storage, JobContext(checkpoints=Checkpoints(
        every=2, load=lambda: None, save=lambda state, m: saves.append(copy.deepcopy(state)))))
    assert [s["step"] for s in saves] == [2]
    resumed = run_job(la, storage, JobContext(checkpoints=Checkpoints(every=2, load=lambda: saves[0],
                                                                      save=lambda state, m: None)))
    assert resumed["resumed_from_step"] == 2
    assert [h["perplexity"] for h in resumed["history"]] == [h["perplexity"] for h in whole["history"]]


def test_a_line_without_end_is_refused_not_read_whole(tmp_path, monkeypatch):
    monkeypatch.setattr(cp, "CHUNK_BYTES", 500)
    monkeypatch.setattr(cp, "LONG_LINE", 1000)
    old_mac = tmp_path / "sw.txt"
    old_mac.write_bytes(b"a sentence\r" * 300)  # \r line endings: one 3,300-byte line
    with pytest.raises(DataError, match=r"has a line of over .* after line 0: give one sentence"):
        list(cp.file_chunks(old_mac, "sw", None))


def test_only_the_added_special_tokens_are_never_masked(tokenizer, text, tmp_path):
    """As run_mlm's special_tokens_mask: [CLS]/[SEP] are spared, an [UNK] in the text can be masked."""
    prepared(tokenizer, text, tmp_path)
    data = MLMData(tmp_path, tokenizer, 32, 8, seed=1)
    item = data.train[0]
    ids, mask = item["input_ids"].tolist(), item["special_tokens_mask"].tolist()
    specials = (tokenizer.cls_token_id, tokenizer.sep_token_id)
    assert [i for i, m in zip(ids, mask, strict=True) if m] == [i for i in ids if i in specials]
    unk = tokenizer.unk_token_id
    row = torch.tensor([[tokenizer.cls_token_id, unk, unk, tokenizer.sep_token_id]])
    assert data.train.special.tolist() == sorted([tokenizer.cls_token_id, tokenizer.sep_token_id])
    assert np.isin(row.numpy(), data.train.special).tolist() == [[True, False, False, True]]
