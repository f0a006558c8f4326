"""The NLI task: native-format readers, schema errors, tokenization, head and evaluation (all offline)."""
from __future__ import annotations

import collections
import json
from pathlib import Path

import datasets
import pytest
import torch
from helpers import fake_hub, write

from tlr_ray.tasks import DataError, DataSource, get_task
from tlr_ray.tasks.nli import TASK

LABELS = ["entailment", "neutral", "contradiction"]
XNLI_HEADER = "\t".join([  # the real XNLI 1.0 header
    "language", "gold_label", "sentence1_binary_parse", "sentence2_binary_parse", "sentence1_parse",
    "sentence2_parse", "sentence1", "sentence2", "promptID", "pairID", "genre", "label1", "label2", "label3",
    "label4", "label5", "sentence1_tokenized", "sentence2_tokenized", "match"])


def mnli_line(gold: str, s1: str, s2: str, **extra) -> str:
    return json.dumps({"annotator_labels": [gold], "genre": "fiction", "gold_label": gold, "pairID": "1e",
                       "promptID": "1", "sentence1": s1, "sentence2": s2, **extra}) + "\n"


def xnli_row(lang: str, gold: str, s1: str, s2: str) -> str:
    parses, annotators = ["", "", "", ""], [gold] * 5
    fields = [lang, gold, *parses, s1, s2, "1", "1", "facetoface", *annotators, s1, s2, "True"]
    return "\t".join(fields) + "\n"


@pytest.fixture
def mnli(tmp_path) -> DataSource:
    folder = tmp_path / "multinli"
    write(folder / "multinli_1.0_train.jsonl",
          mnli_line("entailment", "A man sleeps.", "A person sleeps.")
          + mnli_line("-", "Nobody agreed.", "On this label.")
          + mnli_line("contradiction", 'He said "no".', "He said yes.")
          + "\n" + mnli_line("neutral", "A dog runs.", "A dog runs home."))
    write(folder / "multinli_1.0_dev_matched.jsonl", mnli_line("neutral", "Rain.", "Rain today."))
    return DataSource("multi_nli", local_path=str(folder), local_format="multinli-jsonl",
                      splits={"validation": "validation_matched"})


@pytest.fixture
def anli(tmp_path) -> DataSource:
    folder = tmp_path / "americasnli"
    header = "id\tlanguage\tpremise\thypothesis\tlabel\n"
    write(folder / "test" / "aym.tsv", header + "1\taym\tJupax sanwa.\tJupax janiw.\tcontradiction\n"
          "2\taym\tUkhamawa \"jupax\".\tUkhamawa.\tentailment\n")
    write(folder / "dev" / "aym.tsv", header + "7\taym\tSarxasmawa.\tSarxasma.\tneutral\n")
    return DataSource("americas_nli", local_path=str(folder), local_format="americasnli-tsv")


@pytest.fixture
def xnli(tmp_path) -> DataSource:
    folder = tmp_path / "xnli"
    write(folder / "xnli.test.tsv", XNLI_HEADER + "\n" + xnli_row("en", "neutral", "One.", "Two.")
          + xnli_row("sw", "entailment", "Moja.", "Mbili.") + xnli_row("th", "contradiction", "หนึ่ง", "สอง")
          + xnli_row("sw", "contradiction", "Tatu.", "Nne."))
    write(folder / "xnli.dev.tsv", XNLI_HEADER + "\n" + xnli_row("sw", "neutral", "Tano.", "Sita."))
    return DataSource("xnli", local_path=str(folder), local_format="xnli-tsv")


def test_task_is_registered():
    assert get_task("nli") is TASK and TASK.name == "nli" and TASK.metric == "accuracy"


def test_multinli_jsonl_drops_no_consensus_and_maps_labels(mnli):
    train = TASK.load(mnli, "train", "en")
    assert train.column_names == ["premise", "hypothesis", "label"]
    assert train["label"] == [0, 2, 1] and train["premise"][1] == 'He said "no".'
    assert TASK.load(mnli, "validation", "en")["label"] == [1]       # splits maps it to validation_matched


def test_americasnli_tsv(anli):
    test = TASK.load(anli, "test", "aym")
    assert test["label"] == [2, 0] and test["premise"][1] == 'Ukhamawa "jupax".'
    assert TASK.load(anli, "validation", "aym")["hypothesis"] == ["Sarxasma."]


def test_xnli_tsv_filters_one_language(xnli):
    test = TASK.load(xnli, "test", "sw")
    assert test["premise"] == ["Moja.", "Tatu."] and test["label"] == [0, 2]
    assert TASK.load(xnli, "test", "th")["label"] == [2]
    assert TASK.load(xnli, "validation", "sw")["label"] == [1]


def test_missing_file(anli):
    with pytest.raises(DataError) as e:
        TASK.load(anli, "test", "quy")
    message = str(e.value)
    assert "americas_nli" in message and "test/quy.tsv" in message and "missing file" in message


def test_missing_column(tmp_path):
    write(tmp_path / "test" / "aym.tsv", "id\tlanguage\tpremise\tlabel\n1\taym\tA.\tneutral\n")
    source = DataSource("americas_nli", local_path=str(tmp_path), local_format="americasnli-tsv")
    with pytest.raises(DataError) as e:
        TASK.load(source, "test", "aym")
    message = str(e.value)
    assert "americas_nli" in message and "missing column(s) hypothesis" in message and "'test'" in message


def test_missing_key_in_jsonl(tmp_path):
    line = json.dumps({"gold_label": "neutral", "sentence1": "A man."})
    write(tmp_path / "multinli_1.0_train.jsonl", line + "\n")
    source = DataSource("multi_nli", local_path=str(tmp_path), local_format="multinli-jsonl")
    with pytest.raises(DataError, match=r"multi_nli.*line 1: missing key\(s\) sentence2"):
        TASK.load(source, "train", None)


def test_bad_label(xnli, tmp_path):
    write(Path(xnli.local_path) / "xnli.test.tsv", XNLI_HEADER + "\n" + xnli_row("sw", "maybe", "A.", "B."))
    with pytest.raises(DataError) as e:
        TASK.load(xnli, "test", "sw")
    message = str(e.value)
    assert "xnli" in message and "'maybe'" in message and "entailment, neutral, contradiction" in message


def test_empty_split(mnli, xnli):
    write(Path(mnli.local_path) / "multinli_1.0_dev_matched.jsonl", mnli_line("-", "A.", "B."))
    with pytest.raises(DataError, match=r"multi_nli .*'validation'.*empty"):
        TASK.load(mnli, "validation", "en")
    with pytest.raises(DataError, match=r"xnli .*language 'yo'.*languages in the file: en, sw, th"):
        TASK.load(xnli, "test", "yo")


def test_hub_renames_maps_and_drops_unlabelled(monkeypatch):
    names = datasets.ClassLabel(names=["contradiction", "entailment", "neutral"])   # another order
    raw = datasets.Dataset.from_dict(
        {"sentence1": ["a", "b", "c"], "sentence2": ["x", "y", "z"], "gold_label": [0, 1, -1]},
        features=datasets.Features({"sentence1": datasets.Value("string"),
                                    "sentence2": datasets.Value("string"), "gold_label": names}))
    fake_hub(monkeypatch, raw)
    ds = TASK.load(DataSource("multi_nli", hub_id="nyu-mll/multi_nli"), "train", None)
    assert ds.column_names == ["premise", "hypothesis", "label"] and ds["label"] == [2, 0]


def test_hub_bad_label_and_load_failure(monkeypatch):
    fake_hub(monkeypatch, datasets.Dataset.from_dict({"premise": ["a"], "hypothesis": ["b"], "label": [7]}))
    source = DataSource("xnli", hub_id="facebook/xnli", config="{lang}", revision="abc123")
    with pytest.raises(DataError, match=r"xnli \(Hub dataset facebook/xnli .*'sw'.*\[7\] outside 0-2"):
        TASK.load(source, "test", "sw")
    fake_hub(monkeypatch, ConnectionError("offline"))
    with pytest.raises(DataError) as e:
        TASK.load(source, "test", "sw")
    assert all(s in str(e.value) for s in ("facebook/xnli", "revision abc123", "config sw", "offline"))


# ---- tokenize, collate, head, evaluate: a tiny tokenizer and model built here, offline ----
@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from transformers import BertTokenizerFast

    words = "A a man dog person sleeps runs home rain today He said no yes Moja Tatu . \" , Mbili Nne".split()
    vocab = tmp_path_factory.mktemp("tok") / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    return BertTokenizerFast(vocab_file=str(vocab), do_lower_case=False)


@pytest.fixture(scope="module")
def model():
    from adapters import AutoAdapterModel
    from transformers import BertConfig

    torch.manual_seed(0)
    config = BertConfig(vocab_size=32, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64)
    return AutoAdapterModel.from_config(config)


def test_tokenize_and_collate(mnli, tokenizer):
    examples = TASK.load(mnli, "train", "en")
    assert {len(ids) for ids in TASK.tokenize(examples, tokenizer, max_length=8)["input_ids"]} == {8}
    tokenized = TASK.tokenize(examples, tokenizer, max_length=64)
    assert set(tokenized.column_names) >= {"input_ids", "attention_mask", "labels"}
    assert "premise" not in tokenized.column_names and tokenized["labels"] == [0, 2, 1]
    lengths = [len(ids) for ids in tokenized["input_ids"]]
    assert len(set(lengths)) > 1                                        # not padded: the collator pads
    batch = TASK.collate([tokenized[i] for i in range(3)], tokenizer)
    assert batch["input_ids"].shape == batch["attention_mask"].shape == (3, max(lengths))
    assert batch["labels"].tolist() == [0, 2, 1]


def test_add_head_and_evaluate(mnli, xnli, tokenizer, model):
    TASK.add_head(model, "nli_test")
    assert model.active_head == "nli_test"
    assert model.config.prediction_heads["nli_test"]["label2id"] == {name: i for i, name in enumerate(LABELS)}
    examples = datasets.concatenate_datasets([TASK.load(mnli, "train", "en"), TASK.load(xnli, "test", "sw")])
    tokenized = TASK.tokenize(examples, tokenizer, max_length=16)
    batch = TASK.collate([tokenized[i] for i in range(2)], tokenizer)
    assert model(**batch).loss is not None                               # labels reach the head
    metrics, records = TASK.evaluate(model, tokenized, tokenizer, batch_size=2, device="cpu")
    assert not model.training
    assert [r["index"] for r in records] == list(range(5))
    assert [r["label"] for r in records] == [0, 2, 1, 0, 2]
    assert all(r["correct"] == (r["label"] == r["prediction"]) and r["prediction"] in (0, 1, 2)
               for r in records)
    assert 0 <= metrics["accuracy"] <= 100
    assert metrics["accuracy"] == pytest.approx(100 * sum(r["correct"] for r in records) / len(records))


def test_demo_world_files_load(tmp_path):
    """The demo world's native files go through the same readers, with balanced labels."""
    from tlr_ray.demo import write_demo_data

    write_demo_data(tmp_path)
    nli = tmp_path / "nli"
    sources = {
        ("multinli", "validation", None): DataSource("multi_nli", local_path=str(nli / "multinli"),
                                                     local_format="multinli-jsonl"),
        ("anli", "test", "yor"): DataSource("americas_nli", local_path=str(nli / "anli"),
                                            local_format="americasnli-tsv"),
        ("xnli", "test", "th"): DataSource("xnli", local_path=str(nli / "xnli"), local_format="xnli-tsv"),
    }
    for (_, split, lang), source in sources.items():
        counts = collections.Counter(TASK.load(source, split, lang)["label"])
        assert len(counts) == 3 and len(set(counts.values())) == 1, (source.dataset, counts)


# ---- option head: adapters (default) or pooler (the reference: AutoModelForSequenceClassification) ----
def test_head_option_is_checked():
    from tlr_ray.tasks.nli import make_task

    assert make_task() is TASK and make_task(head="adapters") is TASK and TASK.head == "adapters"
    assert get_task("nli", {"head": "pooler"}).head == "pooler"
    with pytest.raises(ValueError, match=r"unknown option\(s\) heads for task 'nli'; valid options: head \("):
        make_task(heads="pooler")
    with pytest.raises(ValueError, match="option head must be one of adapters, pooler, got 'linear'"):
        make_task(head="linear")


def test_default_head_is_the_adapters_two_layer_head(tokenizer):
    from adapters import AutoAdapterModel
    from transformers import BertConfig

    model = AutoAdapterModel.from_config(BertConfig(vocab_size=32, hidden_size=16, num_hidden_layers=1,
                                                    num_attention_heads=2, intermediate_size=32))
    TASK.add_head(model, "nli_default")
    head = model.heads["nli_default"]
    layers = [type(m).__name__ for m in head]
    assert layers == ["Dropout", "Linear", "Activation_Function_Class", "Dropout", "Linear"]
    assert head.config["activation_function"] == "tanh" and not head.config["use_pooler"]
    assert (head[1].in_features, head[1].out_features, head[4].out_features) == (16, 16, 3)


@pytest.fixture(scope="module")
def pooler_checkpoint(demo_world, tmp_path_factory) -> Path:
    """The demo model saved with a pooler. The demo checkpoint is MLM-only (no pooler, as a checkpoint
    trained without NSP), so its pooler is set here to stand in for mBERT's pretrained one."""
    from transformers import AutoTokenizer, BertModel

    torch.manual_seed(0)
    base = BertModel.from_pretrained(demo_world / "model")
    with torch.no_grad():
        base.pooler.dense.bias.normal_(0, 0.02)
    folder = tmp_path_factory.mktemp("pooler_model")
    base.save_pretrained(folder)
    AutoTokenizer.from_pretrained(demo_world / "model").save_pretrained(folder)
    return folder


def test_pooler_head_is_the_reference_head_frozen_pooler_and_reloads(mnli, xnli, pooler_checkpoint, tmp_path):
    from adapters.composition import Stack
    from transformers import AutoTokenizer, BertForSequenceClassification

    from tlr_ray.train.models import bottleneck_config, freeze_all_but, task_model

    task = get_task("nli", {"head": "pooler"})
    tokenizer = AutoTokenizer.from_pretrained(pooler_checkpoint)
    examples = datasets.concatenate_datasets([task.load(mnli, "train", "en"), task.load(xnli, "test", "sw")])
    tokenized = task.tokenize(examples, tokenizer, max_length=32)
    batch = task.collate([tokenized[i] for i in range(len(tokenized))], tokenizer)
    inputs = {k: v for k, v in batch.items() if k != "labels"}

    torch.manual_seed(1)
    model = task_model(str(pooler_checkpoint))
    pooler = {k: v.clone() for k, v in model.bert.pooler.state_dict().items()}
    assert pooler["dense.bias"].any()                                  # the checkpoint's, not a fresh one
    model.add_adapter("ta", config=bottleneck_config(16, False, True, model.config.num_hidden_layers))
    task.add_head(model, "ta")
    head = model.heads["ta"]
    assert [type(m).__name__ for m in head] == ["Dropout", "Linear"] and head[1].out_features == 3
    assert head.config["use_pooler"] and head.config["layers"] == 1
    freeze_all_but(model, "ta", heads=True)                            # as the TA recipe does
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert [n for n in trainable if n.startswith("heads.")] == ["heads.ta.1.weight", "heads.ta.1.bias"]
    assert all(".ta." in n for n in trainable) and not any("pooler" in n for n in trainable)

    # no adapter active: exactly BertForSequenceClassification with the same classifier
    reference = BertForSequenceClassification.from_pretrained(pooler_checkpoint, num_labels=3).eval()
    reference.classifier.load_state_dict(head[1].state_dict())
    model.eval()
    with torch.no_grad():
        assert torch.allclose(model(**inputs).logits, reference(**inputs).logits, atol=1e-6)

    # a few training steps under Stack(ta): the head and the TA move, the pooler does not
    model.active_adapters = Stack("ta")
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    before = head[1].weight.detach().clone()
    for _ in range(3):
        opt.zero_grad()
        model(**batch).loss.backward()
        opt.step()
    assert not torch.equal(head[1].weight, before)
    assert all(torch.equal(v, pooler[k]) for k, v in model.bert.pooler.state_dict().items())

    # saved with its head, loaded for evaluation on a fresh model: the same logits and metrics
    model.save_adapter(str(tmp_path / "adapter"), "ta", with_head=True)
    fresh = task_model(str(pooler_checkpoint))
    fresh.load_adapter(str(tmp_path / "adapter"), load_as="ta", with_head=True)
    fresh.active_adapters = Stack("ta")
    assert fresh.heads["ta"].config["use_pooler"] and len(fresh.heads["ta"]) == 2
    model.eval(), fresh.eval()
    with torch.no_grad():
        assert torch.allclose(model(**inputs).logits, fresh(**inputs).logits, atol=1e-6)
    metrics, records = task.evaluate(fresh, tokenized, tokenizer, batch_size=2, device="cpu")
    assert (metrics, records) == task.evaluate(model, tokenized, tokenizer, batch_size=2, device="cpu")


def test_pooler_head_refuses_a_pooler_the_checkpoint_lacks(demo_world, pooler_checkpoint, tokenizer, tmp_path):
    from adapters import AutoAdapterModel
    from adapters.composition import Stack
    from transformers import XLMRobertaConfig

    from tlr_ray.train.models import task_model

    task = get_task("nli", {"head": "pooler"})
    raw = task_model(str(demo_world / "model"))       # MLM-only checkpoint: a newly initialised pooler
    with pytest.raises(ValueError, match=r"needs a pretrained pooler.*newly initialised.*head: adapters"):
        task.add_head(raw, "ta")
    # an eval job loading a pooler-head TA onto such a model is refused too
    model = task_model(str(pooler_checkpoint))
    model.add_adapter("ta")
    task.add_head(model, "ta")
    model.save_adapter(str(tmp_path / "adapter"), "ta", with_head=True)
    raw.load_adapter(str(tmp_path / "adapter"), load_as="ta", with_head=True)
    raw.active_adapters = Stack("ta")                  # as run_eval does; this activates the head "ta"
    assert raw.active_head == "ta"
    data = TASK.tokenize(datasets.Dataset.from_dict({"premise": ["A man."], "hypothesis": ["A dog."],
                                                     "label": [0]}), tokenizer, max_length=16)
    with pytest.raises(ValueError, match="needs a pretrained pooler"):
        task.evaluate(raw, data, tokenizer, batch_size=1, device="cpu")
    # XLM-R: AutoModelForSequenceClassification uses no pooler there (its head is the adapters one)
    xlmr = AutoAdapterModel.from_config(XLMRobertaConfig(vocab_size=32, hidden_size=16, num_hidden_layers=1,
                                                         num_attention_heads=2, intermediate_size=32))
    with pytest.raises(ValueError, match=r"model type 'xlm-roberta'.*use head: adapters"):
        task.add_head(xlmr, "ta")
