"""The QA task: SQuAD scoring, span post-processing, native-format readers and their errors, the Hub path,
tokenize/collate/evaluate on a tiny model, the demo data, and a tiny end-to-end MAD-X run (all offline)."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import datasets
import pytest
import torch
from helpers import fake_hub, run_tiny_sweep

from tlr_ray.tasks import DataError, DataSource, get_task
from tlr_ray.tasks.squad_metric import (
    Window,
    best_over_gold,
    best_span,
    exact_match,
    f1_score,
    normalize_answer,
    squad_scores,
)


def squad_file(path: Path, paragraphs: list[tuple[str, list[tuple[str, str, list[tuple[str, int]]]]]]) -> Path:
    """A SQuAD v1.1 JSON file: paragraphs of (context, [(id, question, [(answer, answer_start)])])."""
    data = [{"title": f"T{i}", "paragraphs": [{"context": c, "qas": [
        {"id": qid, "question": q, "answers": [{"text": t, "answer_start": s} for t, s in answers]}
        for qid, q, answers in qas]}]} for i, (c, qas) in enumerate(paragraphs)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"data": data, "version": "1.1"}, ensure_ascii=False), encoding="utf-8")
    return path


@pytest.fixture
def task():
    return get_task("qa")


# ---- options ----
def test_options(task):
    assert task.name == "qa" and task.metric == "f1"
    assert (task.doc_stride, task.max_answer_length, task.n_best) == (128, 30, 20)
    assert get_task("qa", {"doc_stride": 64, "n_best": 5}).doc_stride == 64
    with pytest.raises(ValueError, match=r"unknown qa task option\(s\) 'stride'; valid options: doc_stride "
                                         r"\(default 128\), max_answer_length \(default 30\), n_best"):
        get_task("qa", {"stride": 64})
    with pytest.raises(ValueError, match=r"n_best must be a positive integer, got 0"):
        get_task("qa", {"n_best": 0})


# ---- SQuAD F1 / EM (values computed by hand) ----
def test_normalisation():
    assert normalize_answer("The  Cat, a dog!") == "cat dog"          # case, punctuation, articles, spaces
    assert normalize_answer("U.S.A.") == "usa" and normalize_answer("theatre") == "theatre"
    assert normalize_answer("An apple") == "apple"


def test_f1_and_exact_match():
    assert exact_match("the Market.", "market") == 1.0
    assert f1_score("the red goat", "goat") == pytest.approx(2 / 3)    # P 1/2, R 1
    assert f1_score("an apple pie", "apple tart") == pytest.approx(0.5)  # P 1/2, R 1/2
    assert f1_score("a", "the") == 0.0 and f1_score("cat", "dog") == 0.0
    golds = ["Broncos", "Denver Broncos", "the Denver Broncos"]
    assert best_over_gold(exact_match, "Denver Broncos", golds) == 1.0
    assert best_over_gold(f1_score, "Broncos Denver team", golds) == pytest.approx(0.8)  # P 2/3, R 1
    scores = squad_scores(["Broncos", "in the park", "Paris."],
                          [["Denver Broncos"], ["a park bench", "park"], ["paris"]])
    # per example F1: 2/3 (P 1, R 1/2); max(1/2, 2/3) = 2/3; 1. EM: 0, 0, 1.
    assert scores["f1"] == pytest.approx(100 * (2 / 3 + 2 / 3 + 1) / 3)
    assert scores["exact_match"] == pytest.approx(100 / 3)


# ---- post-processing over windows ----
CONTEXT = "alpha beta gamma delta epsilon"
W1 = [None, None, (0, 5), (6, 10), (11, 16), None]          # [CLS] q [SEP]-masked; alpha beta gamma
W2 = [None, None, (11, 16), (17, 22), (23, 30), None]        # gamma delta epsilon (overlap: gamma)


def test_best_span_is_found_across_windows():
    first = Window([9.0, 0, 2.0, 0, 0, 0], [9.0, 0, 0, 1.0, 0, 0], W1)   # CLS scores highest: not a span
    second = Window([0, 0, 0, 3.0, 0, 0], [0, 0, 0, 0, 2.5, 0], W2)
    span = best_span([first, second], CONTEXT)
    assert (span.text, span.window, span.score) == ("delta epsilon", 1, 5.5)
    assert best_span([first], CONTEXT).text == "alpha beta"
    nothing = Window([0.0] * 6, [0.0] * 6, [None] * 6)
    assert best_span([nothing], CONTEXT) is None


def test_spans_longer_than_max_answer_length_are_skipped():
    offsets = [None] + [(6 * i, 6 * i + 5) for i in range(8)] + [None]  # eight 5-letter words
    context = " ".join(["word" + str(i) for i in range(8)])
    start = [0.0] * 10
    end = [0.0] * 10
    start[1], end[8], end[2], end[0] = 5.0, 5.0, 1.0, 7.0      # best: tokens 1..8 (8 tokens long)
    window = Window(start, end, offsets)
    assert best_span([window], context, max_answer_length=30).text == context
    span = best_span([window], context, max_answer_length=3)
    assert (span.text, span.score) == ("word0 word1", 6.0)
    end[1], start[5] = -1.0, 9.0                               # an end before its start is never taken
    assert best_span([Window(start, end, offsets)], context, max_answer_length=4).text == "word4 word5 word6 word7"


# ---- readers ----
@pytest.fixture
def squad(tmp_path) -> DataSource:
    folder = tmp_path / "squad"
    squad_file(folder / "train-v1.1.json", [
        (" The cat sat on the mat.", [("q1", "Who sat?", [("cat", 5)]), ("q2", "On what?", [("the mat", 16)])])])
    squad_file(folder / "dev-v1.1.json", [
        ("Denver Broncos won.", [("d1", "Who won?", [("Denver Broncos", 0), ("Broncos", 7), ("Broncos", 7)])])])
    squad_file(folder / "xquad.sw.json", [("Amani alinunua mbuzi.", [("x1", "Nani?", [("Amani", 0)])])])
    return DataSource("squad", local_path=str(folder), local_format="squad-json")


def test_squad_json_and_xquad(task, squad):
    train = task.load(squad, "train", None)
    assert train.column_names == ["id", "context", "question", "answers"] and train["id"] == ["q1", "q2"]
    assert train["context"][0] == " The cat sat on the mat."       # never stripped: offsets count the space
    assert train["answers"][1] == {"text": ["the mat"], "answer_start": [16]}
    assert task.load(squad, "validation", None)["answers"][0]["text"] == ["Denver Broncos", "Broncos", "Broncos"]
    assert task.load(squad, "validation", "sw")["id"] == ["x1"]     # xquad.<lang>.json comes first
    assert task.load(squad, "validation", "en")["id"] == ["d1"]     # no xquad.en.json: the SQuAD dev file


TYDIQA_ROWS = [("Cairo is big.", [("arabic-1-0", "Where?", [("Cairo", 0)])]),
               ("Nairobi ni mji.", [("swahili-2-0", "Wapi?", [("Nairobi", 0)]),
                                    ("swahili-3-0", "Nini?", [("mji", 11)])]),
               ("Paris is old.", [("english-4-0", "What?", [("Paris", 0)])])]
THAI = "กรุงเทพฯ เป็นเมืองหลวง"        # Thai letters are 3 bytes each in UTF-8


def thai_line(passage: str, answer: str, **extra) -> str:
    start_byte = len(passage[:passage.index(answer)].encode("utf-8"))
    return json.dumps({"id": "thai-9-0", "language": "thai", "document_title": "t", "passage_text": passage,
                       "question_text": "อะไร", "answers": {"text": [answer], "start_byte": [start_byte],
                                                           "limit_byte": [start_byte + len(answer.encode())]},
                       **extra}, ensure_ascii=False) + "\n"


def test_tydiqa_filters_the_mixed_file_by_id_prefix(task, tmp_path):
    squad_file(tmp_path / "tydiqa-goldp-v1.1-dev.json", TYDIQA_ROWS)
    source = DataSource("tydiqa", local_path=str(tmp_path), local_format="tydiqa-goldp")
    assert task.load(source, "validation", "sw")["id"] == ["swahili-2-0", "swahili-3-0"]
    assert task.load(source, "validation", "swa")["id"] == ["swahili-2-0", "swahili-3-0"]   # an alias
    assert task.load(source, "validation", "ar")["context"] == ["Cairo is big."]
    with pytest.raises(DataError, match=r"tydiqa .*'te'.*'telugu-'.*languages in the file: arabic, english, "
                                        r"swahili"):
        task.load(source, "validation", "te")
    with pytest.raises(DataError, match=r"no Thai.*khalidalt/tydiqa-goldp.*dev/thai-dev.jsonl"):
        task.load(source, "validation", "th")
    (tmp_path / "dev").mkdir()                                 # Thai beside the official file: read from there
    (tmp_path / "dev" / "thai-dev.jsonl").write_text(thai_line(THAI, "เมืองหลวง"), encoding="utf-8")
    thai = task.load(source, "validation", "th")
    assert thai["answers"][0] == {"text": ["เมืองหลวง"], "answer_start": [THAI.index("เมืองหลวง")]}


def test_thai_jsonl_byte_offsets(task, tmp_path):
    passage = "ก ข " + THAI + " Bangkok"
    lines = thai_line(passage, "เป็น") + "\n" + thai_line(passage, "Bangkok")
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "thai-dev.jsonl").write_text(lines, encoding="utf-8")
    source = DataSource("tydiqa_th", local_path=str(tmp_path), local_format="tydiqa-goldp-jsonl")
    ds = task.load(source, "validation", "th")
    assert [a["answer_start"][0] for a in ds["answers"]] == [passage.index("เป็น"), passage.index("Bangkok")]
    assert passage.index("Bangkok") != len(passage[:passage.index("Bangkok")].encode())   # bytes != chars
    bad = json.loads(thai_line(passage, "เป็น"))
    bad["answers"]["start_byte"] = [5]                          # inside the 3-byte letter ข
    (tmp_path / "dev" / "thai-dev.jsonl").write_text(json.dumps(bad) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"tydiqa_th .*line 1: start_byte 5 falls inside a multi-byte"):
        task.load(source, "validation", "th")


def test_data_errors(task, squad, tmp_path):
    squad_file(tmp_path / "xq" / "xquad.sw.json", [("A b.", [("x", "q", [("A", 0)])])])
    xquad = DataSource("xquad", local_path=str(tmp_path / "xq"), local_format="squad-json")
    where = r"xquad \(local squad-json files at .*xq\), split 'validation', language 'ar'"
    with pytest.raises(DataError, match=where + r": missing file: .*xquad.ar.json or dev-v1.1.json"):
        task.load(xquad, "validation", "ar")
    squad_file(Path(squad.local_path) / "dev-v1.1.json", [("Denver won.", [("d1", "Who?", [("Denvr", 0)])])])
    with pytest.raises(DataError, match=r"squad .*split 'validation'.*d1: answer 'Denvr' at answer_start 0, "
                                        r"but the context has 'Denve'"):
        task.load(squad, "validation", None)
    squad_file(Path(squad.local_path) / "dev-v1.1.json", [])
    with pytest.raises(DataError, match=r"squad .*'validation'.*the split is empty"):
        task.load(squad, "validation", None)
    doc = {"data": [{"title": "t", "paragraphs": [{"context": "c", "qas": [{"id": "1", "answers": []}]}]}]}
    (Path(squad.local_path) / "train-v1.1.json").write_text(json.dumps(doc))
    with pytest.raises(DataError, match=r"squad .*'train'.*question 1: missing key\(s\) question"):
        task.load(squad, "train", None)
    with pytest.raises(DataError, match=r"unknown local_format 'squad-csv'.*squad-json, tydiqa-goldp"):
        task.load(DataSource("squad", local_path=str(tmp_path), local_format="squad-csv"), "train", None)


def hub_rows(rows) -> datasets.Dataset:
    """Rows as the Hub's SQuAD-style parquet holds them (title column, answers as a list feature)."""
    flat = [(qid, c, q, a) for c, qas in rows for qid, q, a in qas]
    return datasets.Dataset.from_dict({
        "id": [r[0] for r in flat], "title": ["t"] * len(flat), "context": [r[1] for r in flat],
        "question": [r[2] for r in flat],
        "answers": [{"text": [t for t, _ in r[3]], "answer_start": [s for _, s in r[3]]} for r in flat]})


def test_hub(task, monkeypatch):
    calls = []
    fake_hub(monkeypatch, hub_rows(TYDIQA_ROWS), calls)
    xquad = DataSource("xquad", hub_id="google/xquad", config="xquad.{lang}", revision="abc")
    assert len(task.load(xquad, "validation", "ar")) == 4           # per-language config: no filtering
    assert calls[-1] == ("google/xquad", "validation", {"name": "xquad.ar", "revision": "abc"})
    tydiqa = DataSource("tydiqa", hub_id="google-research-datasets/tydiqa", config="secondary_task")
    ds = task.load(tydiqa, "validation", "sw")
    assert ds.column_names == ["id", "context", "question", "answers"] and len(ds) == 2
    with pytest.raises(DataError, match=r"tydiqa \(Hub dataset google-research-datasets/tydiqa .*'th'.*"
                                        r"'thai-'.*arabic, english, swahili.*no Thai"):
        task.load(tydiqa, "validation", "th")
    fake_hub(monkeypatch, hub_rows(TYDIQA_ROWS).remove_columns("question"))
    with pytest.raises(DataError, match=r"xquad .*missing column\(s\) question"):
        task.load(xquad, "validation", "ar")
    fake_hub(monkeypatch, ConnectionError("offline"))
    with pytest.raises(DataError) as e:
        task.load(xquad, "validation", "hi")
    assert all(s in str(e.value) for s in ("google/xquad", "revision abc", "config xquad.hi", "offline"))


# ---- tokenize, collate, head, evaluate: a tiny tokenizer and model built here ----
WORDS = "Who sat won Where is the cat mat on Nairobi Paris Denver Broncos big old city a . ?".split()


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from transformers import BertTokenizerFast

    vocab = tmp_path_factory.mktemp("tok") / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    return BertTokenizerFast(vocab_file=str(vocab), do_lower_case=False)


def examples() -> datasets.Dataset:
    long = "the cat is big . " * 6 + "Nairobi is a city . " + "the mat is old . " * 4
    return datasets.Dataset.from_dict({
        "id": ["a", "b"], "context": [long, "Paris is old ."], "question": ["Where is a city ?", "Who is old ?"],
        "answers": [{"text": ["Nairobi"], "answer_start": [long.index("Nairobi")]},
                    {"text": ["Paris"], "answer_start": [0]}]})


def test_tokenize_windows_and_labels(task, tokenizer):
    tokenized = task.tokenize(examples(), tokenizer, max_length=24)
    assert tokenized["example_index"].count(0) >= 3 and tokenized["example_index"][-1] == 1
    assert {len(ids) for ids in tokenized["input_ids"]} <= set(range(1, 25))
    for f in tokenized:
        s, e, offsets = f["start_positions"], f["end_positions"], f["offset_mapping"]
        assert all(o is None for o in offsets[:f["input_ids"].index(3) + 1])   # question tokens masked
        if s == 0:       # CLS: the answer is not (wholly) in this window
            assert e == 0 and not any(o and o[0] <= f["answers"]["answer_start"][0] < o[1] for o in offsets)
        else:
            assert f["context"][offsets[s][0]:offsets[e][1]] == f["answers"]["text"][0]
    assert sum(1 for f in tokenized if f["example_index"] == 0 and f["start_positions"] > 0) >= 1
    batch = task.collate([tokenized[i] for i in range(3)], tokenizer)
    assert set(batch) == {"input_ids", "token_type_ids", "attention_mask", "start_positions", "end_positions"}


class Oracle(torch.nn.Module):
    """Points start and end at the answer tokens, wherever a window holds them."""

    def __init__(self, answer_ids: list[int]):
        super().__init__()
        self.answer_ids = torch.tensor(answer_ids)

    def forward(self, input_ids, **kwargs):
        hits = torch.isin(input_ids, self.answer_ids).float() * 10
        return SimpleNamespace(start_logits=hits, end_logits=hits)


def test_evaluate_maps_logits_back_to_text(task, tokenizer):
    tokenized = task.tokenize(examples(), tokenizer, max_length=24)
    oracle = Oracle(tokenizer.convert_tokens_to_ids(["Nairobi", "Paris"]))
    metrics, records = task.evaluate(oracle, tokenized, tokenizer, batch_size=2, device="cpu")
    assert [(r["id"], r["prediction"], r["answers"]) for r in records] == [("a", "Nairobi", ["Nairobi"]),
                                                                          ("b", "Paris", ["Paris"])]
    assert metrics == {"f1": 100.0, "exact_match": 100.0}


def test_head_loss_and_real_model(task, tokenizer):
    from adapters import AutoAdapterModel
    from transformers import BertConfig

    torch.manual_seed(0)
    model = AutoAdapterModel.from_config(BertConfig(vocab_size=32, hidden_size=16, num_hidden_layers=1,
                                                    num_attention_heads=2, intermediate_size=32))
    task.add_head(model, "qa_test")
    assert model.config.prediction_heads["qa_test"]["head_type"] == "question_answering"
    tokenized = task.tokenize(examples(), tokenizer, max_length=24)
    assert model(**task.collate([tokenized[i] for i in range(4)], tokenizer)).loss is not None
    metrics, records = task.evaluate(model, tokenized, tokenizer, batch_size=3, device="cpu")
    assert not model.training and len(records) == 2
    assert metrics["f1"] == pytest.approx(sum(r["f1"] for r in records) / 2) and 0 <= metrics["f1"] <= 100
    assert all(r["prediction"] in examples()["context"][r["index"]] for r in records)


# ---- demo data and a tiny end-to-end run ----
def test_demo_files_load_and_need_windows(task, demo_world):
    from transformers import AutoTokenizer

    qa = demo_world / "qa"
    sources = {("train", None): ("demo_squad", qa / "squad", "squad-json", 1000),
               ("validation", "th"): ("demo_xquad", qa / "xquad", "squad-json", 150),
               ("validation", "yo"): ("demo_tydiqa", qa / "tydiqa", "tydiqa-goldp", 150)}
    tokenizer = AutoTokenizer.from_pretrained(demo_world / "model")
    for (split, lang), (name, path, fmt, n) in sources.items():
        ds = task.load(DataSource(name, local_path=str(path), local_format=fmt), split, lang)
        windows = task.tokenize(ds, tokenizer, max_length=64)["example_index"]
        assert len(ds) == n and len(windows) > n, (name, len(windows))          # some need 2+ windows
    dev = task.load(DataSource("demo_squad", local_path=str(qa / "squad"), local_format="squad-json"),
                    "validation", None)
    assert max(len(a["text"]) for a in dev["answers"]) == 2                     # several gold answers


def test_tiny_end_to_end_mad_x(demo_world, tmp_path):
    tasks = {"qa": {"train": "demo_squad", "eval": ["demo_xquad"], "train_args": {"max_seq_length": 64}}}
    plan, metrics = run_tiny_sweep(tmp_path, tasks, ("en", "sw", "th"))
    assert len(plan.of_kind("eval")) == 2
    for m in metrics.values():
        assert 0 <= m["f1"] <= 100 and 0 <= m["exact_match"] <= 100 and m["examples"] == 150

