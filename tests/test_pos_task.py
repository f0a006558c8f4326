"""The pos task: UPOS from the UD readers, schema errors, first-sub-token labels with the demo world's real
tokenizer, the tagging head, accuracy, and a tiny end-to-end MAD-X run (all offline)."""
from __future__ import annotations

from pathlib import Path

import datasets
import pytest
import torch
from helpers import run_tiny_sweep

from tlr_ray.tasks import DataError, DataSource, get_task
from tlr_ray.tasks.pos import IGNORE, TASK, accuracy, make_task
from tlr_ray.tasks.ud_sources import UPOS

# A multiword token (2-3) and an empty node (4.1) that the reader must drop.
CONLLU = """# sent_id = 1
1\tI\tI\tPRON\t_\t_\t4\tnsubj\t_\t_
2-3\tdon't\t_\t_\t_\t_\t_\t_\t_\t_
2\tdo\tdo\tAUX\t_\t_\t4\taux\t_\t_
3\tn't\tnot\tPART\t_\t_\t4\tadvmod\t_\t_
4\tunderstand\tunderstand\tVERB\t_\t_\t0\troot\t_\t_
4.1\tsee\tsee\tVERB\t_\t_\t_\t_\t0:root\t_
5\t.\t.\tPUNCT\t_\t_\t4\tpunct\t_\t_

# sent_id = 2
1\tAda\tAda\tPROPN\t_\t_\t2\tnsubj\t_\t_
2\tsings\tsing\tVERB\t_\t_\t0\troot\t_\t_

"""
TAGS = [["PRON", "AUX", "PART", "VERB", "PUNCT"], ["PROPN", "VERB"]]


def ids(tags: list[str]) -> list[int]:
    return [UPOS.index(t) for t in tags]


@pytest.fixture
def ud(tmp_path) -> DataSource:
    (tmp_path / "wo_wtb-ud-test.conllu").write_text(CONLLU, encoding="utf-8")
    return DataSource("ud_pos", local_path=str(tmp_path), local_format="conllu")


def test_task_is_registered_without_options():
    assert get_task("pos") is TASK and TASK.metric == "accuracy" and len(TASK.labels) == 17
    with pytest.raises(ValueError, match=r"unknown option\(s\) labels for task 'pos'; it takes no options"):
        make_task(labels="reduced")


def test_accuracy_by_hand():
    gold = [["NOUN", "VERB", "PUNCT"], ["ADJ"]]
    assert accuracy(gold, [["NOUN", "NOUN", "PUNCT"], ["ADJ"]]) == 75.0   # over words, not sentences
    with pytest.raises(DataError):
        accuracy([], [])


def test_conllu_words_and_tags(ud):
    ds = TASK.load(ud, "test", "wol")                   # wol is an alias of wo -> wo_wtb
    assert ds.column_names == ["tokens", "upos"]
    assert ds["tokens"] == [["I", "do", "n't", "understand", "."], ["Ada", "sings"]]
    assert ds["upos"] == [ids(t) for t in TAGS]


def test_unknown_tag_and_empty_split(ud):
    Path(ud.local_path, "wo_wtb-ud-test.conllu").write_text(CONLLU.replace("PROPN", "NAME"), encoding="utf-8")
    with pytest.raises(DataError, match=r"ud_pos .*'test', language 'wo': sentence 2: unknown tag\(s\) 'NAME'"):
        TASK.load(ud, "test", "wo")
    Path(ud.local_path, "wo_wtb-ud-test.conllu").write_text("\n", encoding="utf-8")
    with pytest.raises(DataError, match="the split is empty"):
        TASK.load(ud, "test", "wo")


def test_hub_maps_class_label_order(monkeypatch):
    hub_order = ["NOUN", "PUNCT", "ADP", "NUM", "SYM", "SCONJ", "ADJ", "PART", "DET", "CCONJ", "PROPN", "PRON",
                 "X", "_", "ADV", "INTJ", "VERB", "AUX"]
    features = datasets.Features({"tokens": datasets.List(datasets.Value("string")),
                                  "upos": datasets.List(datasets.ClassLabel(names=hub_order)),
                                  "head": datasets.List(datasets.Value("string"))})
    rows = datasets.Dataset.from_dict({"tokens": [["Ada", "au", "à", "le", "."]],
                                       "upos": [[hub_order.index(t)
                                                 for t in ("PROPN", "_", "ADP", "DET", "PUNCT")]],
                                       "head": [["0", "None", "4", "4", "1"]]}, features=features)
    monkeypatch.setattr(datasets, "load_dataset", lambda path, split, **kw: rows)
    source = DataSource("ud_pos", hub_id="universal-dependencies/universal_dependencies", data_dir="{lang}")
    ds = TASK.load(source, "test", "mt")
    assert ds["tokens"] == [["Ada", "à", "le", "."]] and ds["upos"] == [ids(["PROPN", "ADP", "DET", "PUNCT"])]
    monkeypatch.setattr(datasets, "load_dataset", lambda path, split, **kw: rows.remove_columns("upos"))
    with pytest.raises(DataError, match=r"language 'mt'.*missing column\(s\) upos"):
        TASK.load(source, "test", "mt")


@pytest.fixture(scope="module")
def tokenizer(demo_world):
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(demo_world / "model")


def test_first_sub_token_labels(ud, tokenizer):
    examples = datasets.Dataset.from_dict({"tokens": [["Amani", "n't", "\u200b", "mazepa", "."]],
                                           "upos": [ids(["PROPN", "PART", "SYM", "NOUN", "PUNCT"])]})
    row = TASK.tokenize(examples, tokenizer, max_length=64)[0]
    ids_, labels = row["input_ids"], row["labels"]
    assert labels[0] == labels[-1] == IGNORE                       # [CLS], [SEP]
    position = 1
    for word, tag in zip(examples[0]["tokens"], examples[0]["upos"], strict=True):
        pieces = tokenizer(word, add_special_tokens=False)["input_ids"] or [tokenizer.unk_token_id]
        assert ids_[position:position + len(pieces)] == pieces     # a word tokenized to nothing -> [UNK]
        assert labels[position:position + len(pieces)] == [tag] + [IGNORE] * (len(pieces) - 1)
        position += len(pieces)
    assert position == len(ids_) - 1 and any(len(tokenizer(w)["input_ids"]) > 3 for w in ("n't", "mazepa"))
    short = datasets.Dataset.from_dict({"tokens": [["Ada"]], "upos": [ids(["PROPN"])]})
    batch = TASK.collate([row, TASK.tokenize(short, tokenizer, 8)[0]], tokenizer)
    assert batch["labels"].shape == batch["input_ids"].shape == (2, len(ids_))
    assert batch["labels"][1, 3:].eq(IGNORE).all() and batch["attention_mask"][1, 3:].eq(0).all()


def test_head_and_evaluate(ud, demo_world, tokenizer):
    from adapters import AutoAdapterModel

    torch.manual_seed(0)
    model = AutoAdapterModel.from_pretrained(demo_world / "model")
    TASK.add_head(model, "pos_test")
    assert model.config.prediction_heads["pos_test"]["label2id"] == {t: i for i, t in enumerate(UPOS)}
    tokenized = TASK.tokenize(TASK.load(ud, "test", "wo"), tokenizer, max_length=32)
    assert model(**TASK.collate([tokenized[0], tokenized[1]], tokenizer)).loss is not None
    metrics, records = TASK.evaluate(model, tokenized, tokenizer, batch_size=2, device="cpu")
    assert not model.training and [r["upos"] for r in records] == TAGS
    assert [r["words"] for r in records] == [5, 2] and all(len(r["predicted_upos"]) == r["words"] for r in records)
    assert metrics["accuracy"] == pytest.approx(100 * sum(r["correct"] for r in records) / 7)
    # truncation: the cut words are predicted None, so they count as wrong (7 words scored either way)
    cut = TASK.tokenize(TASK.load(ud, "test", "wo"), tokenizer, max_length=4)
    assert sum(label != IGNORE for label in cut[0]["labels"]) == 2 and cut[0]["upos"] == ids(TAGS[0])
    metrics, records = TASK.evaluate(model, cut, tokenizer, batch_size=2, device="cpu")
    assert records[0]["predicted_upos"][2:] == [None] * 3 and records[0]["words"] == 5
    assert metrics["accuracy"] <= 100 * 4 / 7


def test_end_to_end_mad_x(demo_world, tmp_path):
    """LA (en, sw, yo) -> TA on demo_ud_pos_en -> eval on demo_ud_pos sw and yo, without Ray."""
    plan, metrics = run_tiny_sweep(tmp_path, {"pos": {"train": "demo_ud_pos_en", "eval": ["demo_ud_pos"]}},
                                   ("en", "sw", "yo"))
    assert sorted(j.target for j in plan.of_kind("eval")) == ["sw", "yo"]
    for m in metrics.values():
        assert 0 <= m["accuracy"] <= 100 and m["examples"] == 150

