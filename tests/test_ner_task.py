"""The NER task: tag sets, native-format readers, schema errors, Hub mapping, sub-token alignment,
seqeval scoring, and a tiny LA -> TA -> eval run on the demo world (all offline)."""
from __future__ import annotations

from pathlib import Path

import datasets
import pytest
from helpers import fake_hub, run_tiny_sweep, write

from tlr_ray.tasks import DataError, DataSource, get_task
from tlr_ray.tasks.ner import NerTask, make_task, scores
from tlr_ray.tasks.ner_sources import FULL, REDUCED, TAG_SETS, to_iob2

TASK = make_task()
FULL_TASK = make_task(labels="full")
ID = {t: i for i, t in enumerate(FULL)}   # FULL extends REDUCED: ids 0-6 agree


@pytest.fixture
def conll(tmp_path) -> DataSource:
    """The common distribution (train.txt, IOB2, '-DOCSTART- -X- -X- O'), stray blank lines, no final
    blank line; and the original file names for validation (eng.testa, IOB1, '-DOCSTART- -X- O O')."""
    folder = tmp_path / "conll2003"
    write(folder / "train.txt", "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n"
          "German JJ B-NP B-MISC\ncall NN I-NP O\n. . O O\n\n\nPeter NNP B-NP B-PER\n"
          "Blackburn NNP I-NP I-PER\n-DOCSTART- -X- -X- O\nBRUSSELS NNP B-NP B-LOC\n1996-08-22 CD I-NP O")
    write(folder / "eng.testa", "-DOCSTART- -X- O O\n\nCRICKET NNP I-NP O\n- : O O\nLEICESTERSHIRE NNP I-NP I-ORG\n"
          "TAKE NNP I-NP O\n\nWest NNP I-NP I-MISC\nIndian NNP I-NP I-MISC\nPhil NNP I-NP I-PER\n"
          "Simmons NNP I-NP I-PER\nand CC O O\nSri NNP I-NP I-LOC\nLanka NNP I-NP I-LOC\nBrian NNP I-NP B-PER\n")
    return DataSource("conll2003", local_path=str(folder), local_format="conll2003")


@pytest.fixture
def masakhaner(tmp_path) -> DataSource:
    """MasakhaNER's repo layout data/<code>/..., pointed at the repo root."""
    write(tmp_path / "repo" / "data" / "swa" / "test.txt", "Rais O\nDonald B-PER\nTrump I-PER\nalisema O\n"
          "Jumapili B-DATE\nkatika O\nWhite B-LOC\nHouse I-LOC\n. O\n\nSauti B-ORG\nya I-ORG\nAmerika I-ORG\n. O\n\n")
    write(tmp_path / "repo" / "data" / "yor" / "dev.txt", "Ọjọ́ O\nAjé B-DATE\n\n")
    return DataSource("masakhaner", local_path=str(tmp_path / "repo"), local_format="conll-ner")


def test_task_and_options():
    task = get_task("ner")
    assert isinstance(task, NerTask) and task.name == "ner" and task.metric == "f1"
    assert task.labels == REDUCED and get_task("ner", {"labels": "full"}).labels == FULL
    with pytest.raises(ValueError, match=r"unknown option\(s\) 'label' .*valid options: labels \(reduced \| full\)"):
        make_task(label="full")
    with pytest.raises(ValueError, match=r"labels='iob' is not valid; choose one of reduced, full"):
        make_task(labels="iob")


def test_seqeval_hand_computed():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]                 # 3 entities
    predicted = [["B-PER", "I-PER", "O", "O"], ["O", "B-ORG"]]                # 2 predicted, 1 right
    assert scores(gold, predicted) == pytest.approx({"precision": 50.0, "recall": 100 / 3, "f1": 40.0})
    # a partial span is wrong at the entity level; no prediction at all: 0, not a warning
    assert scores([["B-PER", "I-PER"]], [["B-PER", "O"]])["f1"] == 0
    assert scores([["B-PER"]], [["O"]]) == {"f1": 0.0, "precision": 0.0, "recall": 0.0}


def test_tag_sets_and_iob1():
    tags = ["B-PER", "I-PER", "B-MISC", "I-MISC", "O", "B-DATE", "B-LOC", "I-LOC"]
    assert TAG_SETS["reduced"].encode(tags) == [1, 2, 0, 0, 0, 0, 5, 6]
    assert TAG_SETS["full"].encode(tags) == [1, 2, 7, 8, 0, 9, 5, 6]
    # IOB1: I- starts an entity unless it continues one of the same type; B- only between two of a type
    assert to_iob2(["I-ORG", "O", "I-PER", "I-PER", "B-PER", "I-LOC", "I-ORG"]) == \
        ["B-ORG", "O", "B-PER", "I-PER", "B-PER", "B-LOC", "B-ORG"]
    assert to_iob2(["B-PER", "I-PER", "O", "B-LOC"]) == ["B-PER", "I-PER", "O", "B-LOC"]   # IOB2 unchanged
    with pytest.raises(DataError,
                       match=r"tag 'B-GPE' outside the reduced tag set \(O, B-PER.*DATE, MISC tags become O"):
        TAG_SETS["reduced"].encode(["B-GPE"])


def test_conll2003_reader(conll):
    train = TASK.load(conll, "train", None)
    assert train.column_names == ["tokens", "ner_tags"]
    assert train["tokens"] == [["EU", "rejects", "German", "call", "."], ["Peter", "Blackburn"],
                               ["BRUSSELS", "1996-08-22"]]          # -DOCSTART- also ends a sentence
    assert train["ner_tags"] == [[3, 0, 0, 0, 0], [1, 2], [5, 0]]   # MISC -> O
    assert FULL_TASK.load(conll, "train", None)["ner_tags"][0] == [3, 0, 7, 0, 0]
    validation = FULL_TASK.load(conll, "validation", None)          # eng.testa, IOB1 -> IOB2
    assert [[FULL[i] for i in row] for row in validation["ner_tags"]] == [
        ["O", "O", "B-ORG", "O"],
        ["B-MISC", "I-MISC", "B-PER", "I-PER", "O", "B-LOC", "I-LOC", "B-PER"]]


def test_conll_ner_reader(masakhaner, tmp_path):
    test = TASK.load(masakhaner, "test", "swa")
    assert test["tokens"][1] == ["Sauti", "ya", "Amerika", "."]
    assert test["ner_tags"] == [[0, 1, 2, 0, 0, 0, 5, 6, 0], [3, 4, 4, 0]]   # DATE -> O
    assert FULL_TASK.load(masakhaner, "test", "swa")["ner_tags"][0][4] == ID["B-DATE"] == 9
    assert FULL_TASK.load(masakhaner, "validation", "yor")["ner_tags"] == [[0, 9]]   # dev.txt
    # the path may also be the data/ folder itself
    data = DataSource("masakhaner", local_path=str(tmp_path / "repo" / "data"), local_format="conll-ner")
    assert TASK.load(data, "test", "swa")["ner_tags"] == test["ner_tags"]


def test_data_errors(conll, masakhaner):
    with pytest.raises(DataError) as e:
        TASK.load(masakhaner, "test", "hau")
    assert all(s in str(e.value) for s in ("masakhaner (local conll-ner", "'test'", "language 'hau'",
                                           "missing file", "hau/test.txt"))
    folder = Path(conll.local_path)
    write(folder / "test.txt", "EU B-ORG\n")
    with pytest.raises(DataError, match=r"conll2003 .*'test'.*test.txt, line 1: 2 columns, expected 4 "
                                        r"\(token POS chunk NER"):
        TASK.load(conll, "test", None)
    write(folder / "test.txt", "-DOCSTART- -X- -X- O\n\n")
    with pytest.raises(DataError, match=r"conll2003 .*split 'test': the split is empty; expected columns "
                                        "tokens, ner_tags"):
        TASK.load(conll, "test", None)
    write(folder / "test.txt", "x X X O\n\nEU NNP B-NP B-GPE\n")
    with pytest.raises(DataError, match=r"conll2003 .*'test'.*sentence starting at line 3: tag 'B-GPE' outside"):
        TASK.load(conll, "test", None)
    with pytest.raises(DataError, match=r"unknown local_format 'iob'.*conll2003, conll-ner"):
        TASK.load(DataSource("x", local_path=str(folder), local_format="iob"), "test", None)
    with pytest.raises(DataError, match=r"conll-ner data has one folder per language"):
        TASK.load(masakhaner, "test", None)


def hub_rows(tags, names=None, **extra) -> datasets.Dataset:
    inner = datasets.ClassLabel(names=names) if names else datasets.Value("int64")
    features = {"tokens": datasets.List(datasets.Value("string")), "ner_tags": datasets.List(inner),
                **{k: datasets.List(datasets.Value("string")) for k in extra}}
    return datasets.Dataset.from_dict({"tokens": [[f"w{i}" for i in range(len(t))] for t in tags],
                                       "ner_tags": tags, **extra}, features=datasets.Features(features))


def test_hub_conll2003_class_labels(monkeypatch):
    names = [*REDUCED, "B-MISC", "I-MISC"]                     # eriktks/conll2003's order
    calls = []
    fake_hub(monkeypatch, hub_rows([[3, 0, 7, 0], [1, 2]], names, pos_tags=[["a"] * 4, ["b"] * 2]), calls)
    source = DataSource("conll2003", hub_id="eriktks/conll2003", revision="refs/convert/parquet",
                        splits={"validation": "validation"})
    ds = TASK.load(source, "validation", None)
    assert ds.column_names == ["tokens", "ner_tags"] and ds["ner_tags"] == [[3, 0, 0, 0], [1, 2]]
    assert FULL_TASK.load(source, "validation", None)["ner_tags"][0] == [3, 0, 7, 0]
    assert calls[0] == ("eriktks/conll2003", "validation", {"revision": "refs/convert/parquet"})
    # ClassLabel names win over the documented order: a shuffled order is mapped by name
    fake_hub(monkeypatch, hub_rows([[0, 1]], ["B-LOC", "O"]))
    assert TASK.load(source, "train", None)["ner_tags"] == [[5, 0]]


def test_hub_masakhaner_plain_ids(monkeypatch):
    calls = []
    fake_hub(monkeypatch, hub_rows([[1, 2, 0, 7, 8, 5]]), calls)     # no names: DATASETS.md's order
    source = DataSource("masakhaner", hub_id="masakhane/masakhaner", revision="refs/convert/parquet",
                        data_dir="{lang}")
    assert TASK.load(source, "test", "yor")["ner_tags"] == [[1, 2, 0, 0, 0, 5]]
    assert FULL_TASK.load(source, "test", "yor")["ner_tags"] == [[1, 2, 0, 9, 10, 5]]
    assert calls[0][2] == {"data_dir": "yor", "revision": "refs/convert/parquet"}
    fake_hub(monkeypatch, hub_rows([[0, 11]]))
    with pytest.raises(DataError, match=r"masakhaner \(Hub dataset .*'yor'.*row 0: tag id\(s\) \[11\] outside"):
        TASK.load(source, "test", "yor")
    fake_hub(monkeypatch, datasets.Dataset.from_dict({"tokens": [["a"]], "tags": [[0]]}))
    with pytest.raises(DataError, match=r"masakhaner .*'test', language 'yor': missing column\(s\) ner_tags"):
        TASK.load(source, "test", "yor")
    fake_hub(monkeypatch, ConnectionError("offline"))
    with pytest.raises(DataError) as e:
        TASK.load(source, "test", "yor")
    assert all(s in str(e.value) for s in ("masakhane/masakhaner", "refs/convert/parquet", "data_dir yor",
                                           "offline"))


# ---- tokenize, collate, head and evaluate: the demo world's real tokenizer and tiny model ----
@pytest.fixture(scope="module")
def tokenizer(demo_world):
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(demo_world / "model")


def test_first_sub_token_alignment(tokenizer):
    examples = datasets.Dataset.from_dict({"tokens": [["Amani", "Ouagadougou", "market", "."]],
                                           "ner_tags": [[1, 5, 5, 0]]})
    row = TASK.tokenize(examples, tokenizer, max_length=32)[0]
    pieces = tokenizer.convert_ids_to_tokens(row["input_ids"])
    n = len(tokenizer.tokenize("Ouagadougou"))
    assert n > 1 and pieces[0] == "[CLS]" and pieces[-1] == "[SEP]"
    assert row["labels"] == [-100, 1, 5, *[-100] * (n - 1), 5, 0, -100]
    assert row["words"] == [0, 1, 2, 3] and row["ner_tags"] == [1, 5, 5, 0]
    cut = TASK.tokenize(examples, tokenizer, max_length=4)[0]          # truncation keeps the alignment
    assert cut["labels"] == [-100, 1, 5, -100] and cut["words"] == [0, 1]


def test_collate_and_evaluate(demo_world, tokenizer):
    import torch
    from adapters import AutoAdapterModel

    source = DataSource("demo_masakhaner", local_path=str(demo_world / "ner" / "masakhaner"),
                        local_format="conll-ner")
    tokenized = TASK.tokenize(TASK.load(source, "test", "swa").select(range(5)), tokenizer, max_length=12)
    batch = TASK.collate([tokenized[i] for i in range(3)], tokenizer)
    assert set(batch) == {"input_ids", "token_type_ids", "attention_mask", "labels"}
    assert batch["labels"].shape == batch["input_ids"].shape
    assert (batch["labels"][batch["attention_mask"] == 0] == -100).all()
    torch.manual_seed(0)
    model = AutoAdapterModel.from_pretrained(demo_world / "model")
    TASK.add_head(model, "ner_test")
    assert model.config.prediction_heads["ner_test"]["label2id"] == {t: i for i, t in enumerate(REDUCED)}
    assert model(**batch).loss is not None
    metrics, records = TASK.evaluate(model, tokenized, tokenizer, batch_size=2, device="cpu")
    assert not model.training and [r["index"] for r in records] == list(range(5))
    cut = 0
    for r, row in zip(records, tokenized, strict=True):
        assert r["gold"] == [REDUCED[t] for t in row["ner_tags"]] and len(r["prediction"]) == len(r["gold"])
        unseen = [p for w, p in enumerate(r["prediction"]) if w not in row["words"]]
        assert set(unseen) <= {"O"}                                   # words cut off are predicted O
        cut += len(unseen)
    assert cut > 0
    assert metrics == pytest.approx(scores([r["gold"] for r in records], [r["prediction"] for r in records]))


def test_demo_world_files(demo_world):
    """The demo's native files go through the same readers; the target test sets are parallel."""
    conll = DataSource("demo_conll", local_path=str(demo_world / "ner" / "conll"), local_format="conll2003")
    assert len(TASK.load(conll, "train", None)) == 1500 and len(TASK.load(conll, "validation", None)) == 200
    assert ID["B-MISC"] in {t for row in FULL_TASK.load(conll, "validation", None)["ner_tags"] for t in row}
    source = DataSource("demo_masakhaner", local_path=str(demo_world / "ner" / "masakhaner"),
                        local_format="conll-ner")
    swa, yor = (FULL_TASK.load(source, "test", code) for code in ("swa", "yor"))
    assert len(swa) == len(yor) == 200
    entities = [sorted(t for t in row if t) for row in swa["ner_tags"]]
    assert entities == [sorted(t for t in row if t) for row in yor["ner_tags"]]   # same meanings
    assert set().union(*map(set, entities)) == set(range(1, 7)) | {ID["B-DATE"]}


def test_tiny_end_to_end(demo_world, tmp_path):
    plan, metrics = run_tiny_sweep(tmp_path, {"ner": {"train": "demo_conll", "eval": ["demo_masakhaner"]}},
                                   ("en", "sw", "yo"))
    assert [j.kind for j in plan.jobs].count("eval") == 2                 # swa and yor
    for m in metrics.values():
        assert 0 <= m["f1"] <= 100 and {"precision", "recall"} <= set(m)

