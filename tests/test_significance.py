"""Significance marks: seed t-tests agree with scipy, per-example tests read predictions files the
way the task modules write them, the bootstrap is seeded. All data is hand-made and tiny."""
from __future__ import annotations

import warnings
from contextlib import contextmanager

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis import predictions
from analysis.significance import Untestable, example_test, paired_bootstrap, seed_test, table_marks
from analysis.table import paper_tables
from analysis.tidy import TIDY_COLUMNS


def tidy(rows, task="nli", dataset="americas_nli", metric="accuracy"):
    """rows: (variant, seed, language, value[, artifact])."""
    out = [("s", task, dataset, r[0], r[1], None, r[2], metric, r[3],
            r[4] if len(r) > 4 else None) for r in rows]
    df = pd.DataFrame(out, columns=TIDY_COLUMNS + ["artifact"])
    return df if df["artifact"].notna().any() else df.drop(columns="artifact")


@contextmanager
def _quiet():
    """scipy warns on near-identical samples; the expected p-values are still what we compare."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def marks_of(df, **kw):
    table = next(iter(paper_tables(df).values()))
    return table, table_marks(table, df, **kw)


# Three seeds. Per language, the bold cell and its gain over MAD-X:
#   aym: BILINGUAL 60.0 vs 50.0, tiny spread -> significant, no star
#   gn:  BILINGUAL 61.0 vs 60.0, large spread -> not significant, star
#   quy: MAD-X is best -> nothing to test;  sw: TARGET ties MAD-X (both bold) -> star on TARGET
SEEDS = {
    ("MAD-X", "aym"): [49.9, 50.0, 50.1], ("BILINGUAL", "aym"): [59.9, 60.0, 60.1],
    ("MAD-X", "gn"): [55.0, 60.0, 65.0], ("BILINGUAL", "gn"): [54.0, 61.0, 68.0],
    ("MAD-X", "quy"): [70.0, 71.0, 72.0], ("BILINGUAL", "quy"): [60.0, 61.0, 62.0],
    ("MAD-X", "sw"): [40.0, 41.0, 42.0], ("TARGET", "sw"): [42.0, 41.0, 40.0],
}
MULTI = tidy([(v, seed, lang, x) for (v, lang), xs in SEEDS.items()
              for seed, x in zip((1, 2, 3), xs, strict=True)])


@pytest.mark.parametrize("test", ["ttest_ind", "welch", "ttest_rel"])
def test_seed_tests_agree_with_scipy(test):
    table, marks = marks_of(MULTI, test=test)
    expected = {}
    for row, lang in [("BILINGUAL", "aym"), ("BILINGUAL", "gn"), ("TARGET", "sw")]:
        a, b = SEEDS[(row, lang)], SEEDS[("MAD-X", lang)]
        with _quiet():
            if test == "ttest_rel":
                p = stats.ttest_rel(a, b).pvalue
            else:
                p = stats.ttest_ind(a, b, equal_var=test == "ttest_ind").pvalue
        expected[(row, lang.upper())] = p
    assert marks.pvalues.keys() == expected.keys()   # only bold non-baseline cells are tested
    for cell, p in expected.items():
        assert marks.pvalues[cell] == pytest.approx(p, rel=1e-12, nan_ok=True)
    stars = {cell for cell, p in expected.items()
             if not (p < 0.05 and table.at[cell] > table.at[("MAD-X", cell[1])])}
    assert marks.stars == stars == {("BILINGUAL", "GN"), ("TARGET", "SW")}
    assert "t-test over seeds" in marks.note() and not marks.untested


def test_alpha_changes_the_marks():
    _, strict = marks_of(MULTI, alpha=1e-9)
    assert ("BILINGUAL", "AYM") in strict.stars and "p < 1e-09" in strict.note()


def test_seed_test_edge_cases():
    with pytest.raises(Untestable, match="seeds in common"):
        seed_test({1: 1.0, 2: 2.0}, {2: 1.0, 3: 2.0}, "ttest_rel")
    with pytest.raises(ValueError, match="unknown test"):
        seed_test({1: 1.0}, {1: 1.0}, "ztest")
    df = pd.concat([MULTI, tidy([("TARGET", 1, "aym", 99.0)])])   # 1 seed vs 3: not comparable
    with pytest.warns(UserWarning, match="different numbers of seeds"):
        _, marks = marks_of(df)
    assert list(marks.untested.values()) == [[("TARGET", "AYM")]]
    assert "different numbers of seeds" in marks.note()


def _nli_predictions(path, correct):
    path.mkdir(parents=True, exist_ok=True)
    # The records of tlr_ray/tasks/nli.py's evaluate.
    pd.DataFrame({"index": range(len(correct)), "label": [1] * len(correct),
                  "prediction": [1 if c else 0 for c in correct],
                  "correct": [bool(c) for c in correct]}).to_parquet(path / "predictions.parquet")
    return str(path), 100.0 * sum(correct) / len(correct)


def test_paired_ttest_over_examples_agrees_with_scipy(tmp_path):
    base = np.random.default_rng(1).random(60) < 0.5
    wrong = np.flatnonzero(~base)
    strong, weak = base.copy(), base.copy()
    strong[wrong[:10]] = True                       # 10 more right: a clear gain
    weak[wrong[:1]] = True                          # 1 more right: not significant
    rows = []
    for name, correct, lang in [("MAD-X", base, "gn"), ("BILINGUAL", strong, "gn"),
                                ("MAD-X", base, "quy"), ("BILINGUAL", weak, "quy")]:
        art, value = _nli_predictions(tmp_path / f"{name}-{lang}", correct)
        rows.append((name, 1, lang, value, art))
    table, marks = marks_of(tidy(rows))
    for lang, variant in [("GN", strong), ("QUY", weak)]:
        p = stats.ttest_rel(100.0 * variant, 100.0 * base).pvalue
        assert marks.pvalues[("BILINGUAL", lang)] == pytest.approx(p, rel=1e-12)
    assert marks.pvalues[("BILINGUAL", "GN")] < 0.05 <= marks.pvalues[("BILINGUAL", "QUY")]
    assert marks.stars == {("BILINGUAL", "QUY")}
    assert "paired t-test over examples of per-example accuracy" in marks.note()


def test_single_seed_without_predictions_marks_nothing(tmp_path):
    df = tidy([("MAD-X", 1, "gn", 50.0), ("BILINGUAL", 1, "gn", 51.0)])
    _, marks = marks_of(df)
    assert not marks.stars and not marks.pvalues and "no artifact paths" in marks.note()
    art, _ = _nli_predictions(tmp_path / "a", [True, False])
    df = tidy([("MAD-X", 1, "gn", 49.0, str(tmp_path / "missing")),
               ("BILINGUAL", 1, "gn", 50.0, art)])
    _, marks = marks_of(df)
    assert not marks.stars and "unreadable" in marks.note()


def test_different_examples_and_logged_mismatch(tmp_path):
    a, va = _nli_predictions(tmp_path / "a", [True, False, True])
    b, vb = _nli_predictions(tmp_path / "b", [True, True])
    _, marks = marks_of(tidy([("MAD-X", 1, "gn", va, a), ("BILINGUAL", 1, "gn", vb, b)]))
    assert "do not cover the same examples" in marks.note() and not marks.stars
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        marks_of(tidy([("MAD-X", 1, "gn", 12.0, a), ("BILINGUAL", 1, "gn", 99.0, a)]))
    assert any("predictions give accuracy 66.6667, the run logged 12.0000" in str(w.message)
               for w in caught)


def _ner_frame(n, rng, error):
    """NER records (tlr_ray/tasks/ner.py): each sentence one PER entity, predicted wrong (O)
    with probability `error`."""
    gold = [["B-PER", "I-PER", "O"] for _ in range(n)]
    pred = [["O", "O", "O"] if rng.random() < error else list(g) for g in gold]
    return pd.DataFrame({"index": range(n), "gold": gold, "prediction": pred})


def test_bootstrap_seeded_and_detects_a_clear_difference(tmp_path):
    rng = np.random.default_rng(0)
    good = predictions.from_frame(_ner_frame(200, rng, 0.1), "ner", "f1")
    bad = predictions.from_frame(_ner_frame(200, rng, 0.6), "ner", "f1")
    assert good.scores is None                      # corpus-level F1: bootstrap, not a t-test
    p = example_test(good, bad, resamples=1000, seed=0)
    assert p < 0.01                                 # a clear difference is found
    close = predictions.from_frame(_ner_frame(200, rng, 0.55), "ner", "f1")
    p0 = paired_bootstrap(close.parts, bad.parts, bad.metric, 1000, seed=0)
    assert p0 == paired_bootstrap(close.parts, bad.parts, bad.metric, 1000, seed=0)
    assert p0 != paired_bootstrap(close.parts, bad.parts, bad.metric, 1000, seed=1)
    assert 0.01 < p0 <= 1.0


def test_bootstrap_through_the_table_is_reproducible(tmp_path):
    rng = np.random.default_rng(3)
    rows = []
    for name, error in [("MAD-X", 0.5), ("BILINGUAL", 0.1)]:
        frame = _ner_frame(100, rng, error)
        (tmp_path / name).mkdir()
        frame.to_parquet(tmp_path / name / "predictions.parquet")
        f1 = predictions.from_frame(frame, "ner", "f1").value()
        rows.append((name, 1, "hau", f1, str(tmp_path / name)))
    df = tidy(rows, task="ner", dataset="masakhaner", metric="f1")
    _, m1 = marks_of(df, seed=0)
    _, m2 = marks_of(df, seed=0)
    assert m1.pvalues == m2.pvalues and m1.pvalues[("BILINGUAL", "HAU")] < 0.05
    assert not m1.stars and "paired bootstrap over sentences" in m1.note()
    assert "1000 resamples, seed 0" in m1.note()


def test_ner_entities_match_seqeval():
    seqeval = pytest.importorskip("seqeval.metrics")
    rng = np.random.default_rng(5)
    tags = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "I-ORG"]
    gold = [[tags[i] for i in rng.integers(0, 6, 8)] for _ in range(40)]
    pred = [[tags[i] for i in rng.integers(0, 6, 8)] for _ in range(40)]
    frame = pd.DataFrame({"index": range(40), "gold": gold, "prediction": pred})
    for metric, fn in [("f1", seqeval.f1_score), ("precision", seqeval.precision_score),
                       ("recall", seqeval.recall_score)]:
        ours = predictions.from_frame(frame, "ner", metric).value()
        assert ours == pytest.approx(100 * fn(gold, pred, average="micro", zero_division=0))


def test_dp_pos_qa_scores_from_records():
    # DP: words cut off by truncation are predicted None and count as wrong.
    dp = pd.DataFrame({"index": [0, 1], "words": [3, 2], "heads": [[2, 0, 2], [0, 1]],
                       "predicted_heads": [[2, 0, 1], [0, None]],
                       "deprels": [["nsubj", "root", "obj"], ["root", "punct"]],
                       "predicted_deprels": [["amod", "root", "obj"], ["root", None]]})
    assert predictions.from_frame(dp, "dp", "las").value() == pytest.approx(100 * 2 / 5)
    assert predictions.from_frame(dp, "dp", "uas").value() == pytest.approx(100 * 3 / 5)
    # POS: accuracy over words, so the units are words (5 here), not sentences.
    pos = pd.DataFrame({"index": [0, 1], "words": [3, 2], "upos": [["NOUN", "VERB", "X"],
                                                                   ["DET", "NOUN"]],
                        "predicted_upos": [["NOUN", "VERB", "NOUN"], ["DET", None]],
                        "correct": [2, 1]})
    s = predictions.from_frame(pos, "pos", "accuracy")
    assert s.unit == "word" and len(s.scores) == 5 and s.value() == pytest.approx(60.0)
    qa = pd.DataFrame({"index": [0, 1], "id": ["q1", "q2"], "prediction": ["a", "b"],
                       "answers": [["a"], ["c"]], "f1": [100.0, 40.0],
                       "exact_match": [100.0, 0.0]})
    assert predictions.from_frame(qa, "qa", "f1").value() == pytest.approx(70.0)
    assert predictions.from_frame(qa, "qa", "exact_match").value() == pytest.approx(50.0)
    assert list(predictions.from_frame(qa, "qa", "f1").keys) == ["q1", "q2"]
    with pytest.raises(ValueError, match="no per-example scorer"):
        predictions.from_frame(qa, "xcopa", "accuracy")
    with pytest.raises(ValueError, match="lack the field"):
        predictions.from_frame(qa.drop(columns="f1"), "qa", "f1")
