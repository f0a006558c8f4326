"""The dp task: UD readers (CoNLL-U, Hub), schema errors, word alignment, the biaffine head, UAS/LAS, and a
tiny end-to-end MAD-X run on the demo world (all offline)."""
from __future__ import annotations

import logging
from pathlib import Path

import datasets
import pytest
import torch
from helpers import fake_hub, run_tiny_sweep, write

from tlr_ray.tasks import DataError, DataSource, get_task
from tlr_ray.tasks.dp import DpTask, attachment_scores, make_task
from tlr_ray.tasks.ud_sources import RELATIONS, SUBTYPES

# A multiword token (2-3) and an empty node (5.1): both dropped, word numbers (and so heads) unchanged.
CONLLU = """# sent_id = 1
# text = I don't know Amani's goat.
1\tI\tI\tPRON\tPRP\t_\t4\tnsubj\t_\t_
2-3\tdon't\t_\t_\t_\t_\t_\t_\t_\t_
2\tdo\tdo\tAUX\tVBP\t_\t4\taux\t_\t_
3\tn't\tnot\tPART\tRB\t_\t4\tadvmod\t_\t_
4\tknow\tknow\tVERB\tVB\t_\t0\troot\t_\t_
5\tAmani\tAmani\tPROPN\tNNP\t_\t7\tnmod:poss\t_\t_
6\t's\t's\tPART\tPOS\t_\t5\tcase\t_\t_
7\tgoat\tgoat\tNOUN\tNN\t_\t4\tobj\t_\tSpaceAfter=No
8\t.\t.\tPUNCT\t.\t_\t4\tpunct\t_\t_

# sent_id = 2
# text = Ada buys mangoes and Kofi melons .
1\tAda\tAda\tPROPN\t_\t_\t2\tnsubj\t2:nsubj\t_
2\tbuys\tbuy\tVERB\t_\t_\t0\troot\t0:root\t_
3\tmangoes\tmango\tNOUN\t_\t_\t2\tobj\t2:obj\t_
4\tand\tand\tCCONJ\t_\t_\t5\tcc\t5.1:cc\t_
5\tKofi\tKofi\tPROPN\t_\t_\t2\tconj\t5.1:nsubj\t_
5.1\tbuys\tbuy\tVERB\t_\t_\t_\t_\t2:conj\t_
6\tmelons\tmelon\tNOUN\t_\t_\t5\torphan\t5.1:obj\t_
7\t.\t.\tPUNCT\t_\t_\t2\tpunct\t2:punct\t_

"""
TOKENS = [["I", "do", "n't", "know", "Amani", "'s", "goat", "."],
          ["Ada", "buys", "mangoes", "and", "Kofi", "melons", "."]]
HEADS = [[4, 4, 4, 0, 7, 5, 4, 4], [2, 0, 2, 5, 2, 5, 2]]


@pytest.fixture
def ud(tmp_path) -> DataSource:
    """A UD-release layout (one folder per treebank) plus a bare file at the top."""
    write(tmp_path / "UD_English-EWT" / "en_ewt-ud-train.conllu", CONLLU)
    write(tmp_path / "UD_English-EWT" / "en_ewt-ud-dev.conllu", CONLLU.split("\n\n")[1] + "\n\n")
    write(tmp_path / "bm_crb-ud-test.conllu", CONLLU)
    return DataSource("ud", local_path=str(tmp_path), local_format="conllu")


def test_task_is_registered_and_options_are_checked():
    task = get_task("dp")
    assert isinstance(task, DpTask) and task.name == "dp" and task.metric == "las"
    assert len(task.labels) == 37 == len(RELATIONS) and task.strip_subtypes
    assert len(make_task(strip_subtypes=False).labels) == 37 + len(SUBTYPES)
    with pytest.raises(ValueError, match=r"unknown option\(s\) strip.*valid options: strip_subtypes"):
        make_task(strip=True)
    with pytest.raises(ValueError, match="strip_subtypes must be true or false"):
        make_task(strip_subtypes="no")
    assert task.root_words == "score" and get_task("dp", {"root_words": "ignore"}).root_words == "ignore"
    with pytest.raises(ValueError, match=r"unknown option\(s\) root.*valid options: strip_subtypes .*; root_w"):
        make_task(root=True)
    with pytest.raises(ValueError, match="root_words must be one of score, ignore, got 'skip'"):
        make_task(root_words="skip")


def test_attachment_scores_by_hand():
    gold = [([2, 0, 2, 2], ["nsubj", "root", "obj", "punct"])]
    pred = [([2, 0, 4, 2], ["nsubj", "root", "obj", "obl"])]   # word 3: wrong head; word 4: wrong label
    assert attachment_scores(gold, pred) == {"uas": 75.0, "las": 50.0}
    # micro-averaged over words, not sentences; a right label on a wrong head does not count for LAS
    gold.append(([0], ["root"]))
    pred.append(([0], ["root"]))
    assert attachment_scores(gold, pred) == {"uas": 80.0, "las": 60.0}


def test_conllu_drops_multiword_tokens_and_empty_nodes(ud):
    train = get_task("dp").load(ud, "train", None)    # the only treebank with a train file
    assert train.column_names == ["tokens", "head", "deprel"]
    assert train["tokens"] == TOKENS and train["head"] == HEADS
    assert train["deprel"][0][4] == "nmod" and train["deprel"][1][5] == "orphan"
    assert get_task("dp").load(ud, "validation", None)["tokens"] == TOKENS[1:]   # dev file
    assert get_task("dp").load(ud, "test", "bm")["head"] == HEADS                 # table: bm -> bm_crb


def test_subtypes_kept_or_mapped(ud, caplog):
    keep = make_task(strip_subtypes=False)
    assert keep.load(ud, "test", "bam")["deprel"][0][4] == "nmod:poss"           # alias of bm
    write(Path(ud.local_path) / "bm_crb-ud-test.conllu", CONLLU.replace("nmod:poss", "nmod:rare"))
    with caplog.at_level(logging.WARNING):
        assert keep.load(ud, "test", "bm")["deprel"][0][4] == "nmod"
    assert "nmod:rare (1)" in caplog.text


@pytest.mark.parametrize("change, message", [
    (("7\tgoat\tgoat\tNOUN\tNN\t_\t4\tobj", "7\tgoat\tgoat\tNOUN\tNN\t_\t9\tobj"),
     r"sentence 1, word 7 \('goat'\): head 9 outside 0-8"),
    (("\tobj\t_\tSpace", "\tfoo\t_\tSpace"), r"sentence 1: unknown relation 'foo'"),
    (("4\tknow\tknow\tVERB\tVB\t_\t0", "4\tknow\tknow\tVERB\tVB\t_\tx"), r"line 1: not valid CoNLL-U"),
    (("8\t.\t.\tPUNCT\t.\t_\t4\tpunct\t_\t_", "8\t.\t.\tPUNCT\t.\t_"), r"word 8 has 6 fields"),
])
def test_bad_conllu(ud, change, message):
    write(Path(ud.local_path) / "bm_crb-ud-test.conllu", CONLLU.replace(*change))
    with pytest.raises(DataError, match=message) as e:
        get_task("dp").load(ud, "test", "bm")
    assert all(s in str(e.value) for s in ("ud (local conllu files", "split 'test'", "language 'bm'"))


def test_missing_empty_and_ambiguous(ud):
    task = get_task("dp")
    with pytest.raises(DataError, match=r"language 'af'.*missing file.*af_afribooms-ud-test.conllu"):
        task.load(ud, "test", "af")
    write(Path(ud.local_path) / "bm_crb-ud-test.conllu", "# only a comment\n\n")
    with pytest.raises(DataError, match=r"ud .*'test'.*'bm'.*the split is empty"):
        task.load(ud, "test", "bm")
    write(Path(ud.local_path) / "UD_Bambara-Other" / "bm_other-ud-test.conllu", CONLLU)
    with pytest.raises(DataError, match=r"several treebanks with a test split .*no language code"):
        task.load(ud, "test", None)
    with pytest.raises(DataError, match="unknown local_format 'conll'"):
        task.load(DataSource("ud", local_path=ud.local_path, local_format="conll"), "test", "bm")


# ---- the Hub: universal-dependencies/universal_dependencies' parquet conversion, faked ----
HUB_UPOS = ["NOUN", "PUNCT", "ADP", "NUM", "SYM", "SCONJ", "ADJ", "PART", "DET", "CCONJ", "PROPN", "PRON",
            "X", "_", "ADV", "INTJ", "VERB", "AUX"]   # the Hub's ClassLabel order, not ours


def hub_rows(head=("2", "None", "0", "2", "_", "2"), deprel="obj") -> datasets.Dataset:
    """One sentence as the Hub has it: a multiword row (head "None") and an empty node (head "_")."""
    up = [HUB_UPOS.index(t) for t in ("PROPN", "_", "VERB", "NOUN", "VERB", "PUNCT")]
    strings = datasets.List(datasets.Value("string"))
    features = datasets.Features({"idx": datasets.Value("string"), "tokens": strings, "head": strings,
                                  "upos": datasets.List(datasets.ClassLabel(names=HUB_UPOS)), "deprel": strings})
    return datasets.Dataset.from_dict({"idx": ["s1"], "tokens": [["Ada", "buysit", "buys", "it", "buys", "."]],
                                       "upos": [up], "head": [list(head)],
                                       "deprel": [["nsubj", "_", "root", deprel, "_", "punct"]]},
                                      features=features)


HUB = DataSource("ud", hub_id="universal-dependencies/universal_dependencies", revision="refs/convert/parquet",
                 data_dir="{lang}")


def test_hub_fills_treebank_and_drops_rows(monkeypatch):
    calls = []
    fake_hub(monkeypatch, hub_rows(), calls)
    ds = get_task("dp").load(HUB, "test", "kpv")
    assert calls == [("universal-dependencies/universal_dependencies", "test",
                      {"data_dir": "kpv_lattice", "revision": "refs/convert/parquet"})]
    assert ds["tokens"] == [["Ada", "buys", "it", "."]] and ds["head"] == [[2, 0, 2, 2]]
    assert ds["deprel"] == [["nsubj", "root", "obj", "punct"]]
    train = DataSource("ud_en_ewt", hub_id=HUB.hub_id, revision=HUB.revision, data_dir="en_ewt")
    get_task("dp").load(train, "validation", None)
    assert calls[-1][1:] == ("validation", {"data_dir": "en_ewt", "revision": "refs/convert/parquet"})


def test_hub_errors(monkeypatch):
    task = get_task("dp")
    fake_hub(monkeypatch, hub_rows().remove_columns("deprel"))
    with pytest.raises(DataError, match=r"ud \(Hub dataset .*'test', language 'af'.*missing column\(s\) deprel"):
        task.load(HUB, "test", "af")
    fake_hub(monkeypatch, hub_rows(head=("2", "None", "0", "7", "_", "2")))
    with pytest.raises(DataError, match=r"sentence 1, word 3 \('it'\): head 7 outside 0-4"):
        task.load(HUB, "test", "af")
    fake_hub(monkeypatch, hub_rows(deprel="object"))
    with pytest.raises(DataError, match="unknown relation 'object'"):
        task.load(HUB, "test", "af")
    fake_hub(monkeypatch, hub_rows().select([]))
    with pytest.raises(DataError, match="the split is empty"):
        task.load(HUB, "test", "af")
    with pytest.raises(DataError, match=r"no UD treebank known for language 'xx'.*TREEBANKS"):
        task.load(HUB, "test", "xx")
    fake_hub(monkeypatch, ConnectionError("offline"))
    with pytest.raises(DataError) as e:
        task.load(HUB, "test", "af")
    assert all(s in str(e.value) for s in ("refs/convert/parquet", "data_dir af_afribooms", "offline"))


# ---- tokenize, collate, the biaffine head, evaluate: the demo world's real tokenizer and model ----
@pytest.fixture(scope="module")
def tokenizer(demo_world):
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(demo_world / "model")


def test_tokenize_marks_word_starts(ud, tokenizer):
    examples = get_task("dp").load(ud, "train", None)
    tokenized = get_task("dp").tokenize(examples, tokenizer, max_length=64)
    for row, words in zip(tokenized, TOKENS, strict=True):
        starts = row["word_starts"]
        assert len(starts) == len(words) + 1 and row["labels_arcs"] == HEADS[row["index"]]
        ids = row["input_ids"]
        for j, word in enumerate(words):   # each word's sub-tokens are exactly the span between starts
            assert ids[starts[j]:starts[j + 1]] == tokenizer(word, add_special_tokens=False)["input_ids"]
        assert ids[starts[-1]] == tokenizer.sep_token_id
    batch = get_task("dp").collate([tokenized[0], tokenized[1]], tokenizer)
    length = batch["input_ids"].shape[1]
    assert batch["word_starts"].shape == (2, length + 1) and batch["labels_arcs"].shape == (2, length)
    assert batch["labels_arcs"][1, len(HEADS[1]):].eq(-1).all()          # padding, ignored by the head


def test_head_trains_and_evaluates(ud, demo_world, tokenizer):
    from adapters import AutoAdapterModel

    task = get_task("dp")
    torch.manual_seed(0)
    model = AutoAdapterModel.from_pretrained(demo_world / "model")
    task.add_head(model, "dp_test")
    tokenized = task.tokenize(task.load(ud, "train", None), tokenizer, max_length=64)
    batch = task.collate([tokenized[0], tokenized[1]], tokenizer)
    loss = model(**batch).loss
    assert loss is not None and torch.isfinite(loss)
    assert model.config.pad_token_id == -1     # so the head counts root arcs (0) and ignores padding (-1)
    # as in an eval job: a fresh model gets the head; evaluate sets the head's padding and restores it
    fresh = AutoAdapterModel.from_pretrained(demo_world / "model")
    fresh.add_dependency_parsing_head("dp_test", num_labels=37)
    fresh.heads["dp_test"].load_state_dict(model.heads["dp_test"].state_dict())
    metrics, records = task.evaluate(fresh, tokenized, tokenizer, batch_size=1, device="cpu")
    assert fresh.config.pad_token_id == 0 and not fresh.training
    assert [r["index"] for r in records] == [0, 1] and [r["heads"] for r in records] == HEADS
    assert all(0 <= h <= r["words"] for r in records for h in r["predicted_heads"])
    assert metrics == attachment_scores([(r["heads"], r["deprels"]) for r in records],
                                        [(r["predicted_heads"], r["predicted_deprels"]) for r in records])
    assert metrics == task.evaluate(fresh, tokenized, tokenizer, batch_size=2, device="cpu")[0]  # padding-free


def test_truncated_words_are_not_trained_and_count_as_wrong(ud, demo_world, tokenizer, caplog):
    from adapters import AutoAdapterModel

    task = get_task("dp")
    with caplog.at_level(logging.WARNING):
        tokenized = task.tokenize(task.load(ud, "train", None), tokenizer, max_length=11)
    assert "1 of 2 sentences are longer than max_seq_length 11" in caplog.text
    cut, whole = tokenized[0], tokenized[1]
    k = len(cut["word_starts"]) - 1
    assert 0 < k < len(HEADS[0]) and len(whole["word_starts"]) == len(HEADS[1]) + 1
    assert cut["heads"] == HEADS[0]                                     # the whole gold tree, for scoring
    assert cut["labels_arcs"] == [h if h <= k else -1 for h in HEADS[0][:k]]   # head cut off: not trained
    model = AutoAdapterModel.from_pretrained(demo_world / "model")
    task.add_head(model, "dp_cut")
    metrics, records = task.evaluate(model, tokenized, tokenizer, batch_size=2, device="cpu")
    assert records[0]["predicted_heads"][k:] == [None] * (len(HEADS[0]) - k)
    assert records[0]["words"] + records[1]["words"] == 15
    assert metrics["uas"] <= 100 * (15 - (len(HEADS[0]) - k)) / 15


def test_root_words_ignore_as_the_reference(ud, demo_world, tokenizer):
    """root_words: ignore (the reference, whose padding id 0 is the root's index): words whose gold head
    is the root are masked out of the loss and left out of UAS/LAS; the default trains and scores them."""
    import pandas as pd
    from adapters import AutoAdapterModel

    from analysis.predictions import from_frame

    score, ignore = get_task("dp"), get_task("dp", {"root_words": "ignore"})
    examples = score.load(ud, "train", None)
    tok_score = score.tokenize(examples, tokenizer, max_length=64)
    tok_ignore = ignore.tokenize(examples, tokenizer, max_length=64)
    assert [r["labels_arcs"] for r in tok_score] == HEADS                     # default: root arcs trained
    assert [r["labels_arcs"] for r in tok_ignore] == [[h if h else -1 for h in hs] for hs in HEADS]
    for s_row, i_row in zip(tok_score, tok_ignore, strict=True):
        pairs = zip(s_row["heads"], s_row["labels_rels"], strict=True)
        assert i_row["labels_rels"] == [r if h else -1 for h, r in pairs]
        assert i_row["heads"] == s_row["heads"] and i_row["word_starts"] == s_row["word_starts"]

    torch.manual_seed(0)
    model = AutoAdapterModel.from_pretrained(demo_world / "model")
    ignore.add_head(model, "dp_root")
    with torch.no_grad():   # a fresh biaffine head scores everything 0: give it some opinions
        for p in model.heads["dp_root"].parameters():
            p.normal_(0, 0.01)
    model.eval()   # no dropout: the loss below is recomputed by hand from the same scores
    batch = ignore.collate([tok_ignore[0], tok_ignore[1]], tokenizer)
    with torch.no_grad():
        out = model(**batch)
        mask = batch["labels_arcs"].ne(-1)
        assert mask.sum() == sum(len(h) for h in HEADS) - 2                   # one root word per sentence
        arcs, rels = batch["labels_arcs"][mask], batch["labels_rels"][mask]
        ce = torch.nn.functional.cross_entropy
        by_hand = ce(out.arc_preds[mask], arcs) + ce(out.rel_preds[mask][torch.arange(len(arcs)), arcs], rels)
        assert torch.allclose(out.loss, by_hand)                              # only the non-root words
        with_root = model(**score.collate([tok_score[0], tok_score[1]], tokenizer)).loss
        assert not torch.allclose(out.loss, with_root)

    m_score, r_score = score.evaluate(model, tok_score, tokenizer, batch_size=2, device="cpu")
    m_ignore, r_ignore = ignore.evaluate(model, tok_ignore, tokenizer, batch_size=2, device="cpu")
    assert m_score == attachment_scores([(r["heads"], r["deprels"]) for r in r_score],        # unchanged
                                        [(r["predicted_heads"], r["predicted_deprels"]) for r in r_score])
    assert "scored_words" not in r_score[0] and len(r_score[0]["heads"]) == r_score[0]["words"]
    kept = [[j for j, h in enumerate(r["heads"]) if h] for r in r_score]    # the same model, same predictions
    assert [r["scored_words"] for r in r_ignore] == [[j + 1 for j in js] for js in kept]
    assert [r["words"] for r in r_ignore] == [len(h) for h in HEADS]
    for key in ("heads", "predicted_heads", "deprels", "predicted_deprels"):
        assert [r[key] for r in r_ignore] == [[r[key][j] for j in js] for r, js in zip(r_score, kept, strict=True)]
    assert all(0 not in r["heads"] for r in r_ignore)
    assert m_ignore == attachment_scores([(r["heads"], r["deprels"]) for r in r_ignore],
                                         [(r["predicted_heads"], r["predicted_deprels"]) for r in r_ignore])
    # the analysis recomputes the reported score from the records (significance tests)
    for metric in ("las", "uas"):
        assert from_frame(pd.DataFrame(r_ignore), "dp", metric).value() == pytest.approx(m_ignore[metric])
        assert from_frame(pd.DataFrame(r_score), "dp", metric).value() == pytest.approx(m_score[metric])


def test_demo_treebanks(demo_world):
    source = DataSource("demo_ud", local_path=str(demo_world / "ud"), local_format="conllu")
    task = get_task("dp")
    assert len(task.load(source, "train", None)) == 1000 and len(task.load(source, "validation", None)) == 150
    for code in ("sw", "yo"):
        test = task.load(source, "test", code)
        assert len(test) == 150 and all(h.count(0) == 1 for h in test["head"])   # one root per sentence
    for path in (demo_world / "ud").glob("*.conllu"):   # every file exercises both kinds of dropped lines
        ids = [line.split("\t")[0] for line in path.read_text(encoding="utf-8").splitlines() if "\t" in line]
        assert any("-" in i for i in ids) and any("." in i for i in ids), path.name


def test_end_to_end_mad_x(demo_world, tmp_path):
    """LA (en, sw, yo) -> TA on demo_ud_en -> eval on demo_ud sw and yo, without Ray."""
    plan, metrics = run_tiny_sweep(tmp_path, {"dp": {"train": "demo_ud_en", "eval": ["demo_ud"]}}, ("en", "sw", "yo"))
    assert sorted(j.target for j in plan.of_kind("eval")) == ["sw", "yo"]
    for m in metrics.values():
        assert 0 <= m["las"] <= m["uas"] <= 100 and m["examples"] == 150

