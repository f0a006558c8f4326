"""Paper tables from hand-made tidy tables whose avg, Better and bold are known by hand."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from analysis.render import format_all, render_markdown
from analysis.table import paper_tables
from analysis.tidy import TIDY_COLUMNS, from_parquet, to_parquet, validate

REPO = Path(__file__).resolve().parents[1]


def tidy(rows, task="nli", dataset="americas_nli", metric="accuracy"):
    """rows: (variant, seed, language, value[, ratio])."""
    out = []
    for r in rows:
        variant, seed, lang, value = r[:4]
        ratio = r[4] if len(r) > 4 else None
        out.append(("s", task, dataset, variant, seed, ratio, lang, metric, value))
    return pd.DataFrame(out, columns=TIDY_COLUMNS)


# Two seeds each. Means: MAD-X 51 / 61 / 70 (avg 60.67); BILINGUAL 54 / 61 / 72 (avg 62.33,
# beats MAD-X on aym and quy, ties on gn -> 2/3); TARGET 40 / 61 / missing (avg missing, 0/2).
# gn is a three-way tie at 61.00: all bold. BILINGUAL has the best avg: bold (the TLR paper's rule).
MAIN = tidy([
    ("MAD-X", 1, "aym", 50.0), ("MAD-X", 2, "aym", 52.0),
    ("MAD-X", 1, "gn", 60.0), ("MAD-X", 2, "gn", 62.0),
    ("MAD-X", 1, "quy", 70.0), ("MAD-X", 2, "quy", 70.0),
    ("BILINGUAL", 1, "aym", 53.0), ("BILINGUAL", 2, "aym", 55.0),
    ("BILINGUAL", 1, "gn", 61.0), ("BILINGUAL", 2, "gn", 61.0),
    ("BILINGUAL", 1, "quy", 71.0), ("BILINGUAL", 2, "quy", 73.0),
    ("TARGET", 1, "aym", 40.0), ("TARGET", 2, "aym", 40.0),
    ("TARGET", 1, "gn", 60.5), ("TARGET", 2, "gn", 61.5),
])

MAIN_MD = """\
| Method | AYM | GN | QUY | avg | Better |
|---|---|---|---|---|---|
| MAD-X | 51.00 | **61.00** | 70.00 | 60.67 |  |
| TARGET | 40.00 | **61.00** | – | – | 0/2 |
| BILINGUAL | **54.00** | **61.00** | **72.00** | **62.33** | 2/3 |
"""


def test_numbers_known_by_hand():
    tables = paper_tables(MAIN)
    assert list(tables) == [("nli", "americas_nli")]
    t = tables[("nli", "americas_nli")]
    assert list(t.index) == ["MAD-X", "TARGET", "BILINGUAL"]  # default order, not data order
    assert list(t.columns) == ["AYM", "GN", "QUY", "avg", "Better"]
    assert t.at["MAD-X", "AYM"] == pytest.approx(51.0)  # mean over seeds
    assert t.at["MAD-X", "avg"] == pytest.approx((51 + 61 + 70) / 3)
    assert t.at["BILINGUAL", "avg"] == pytest.approx((54 + 61 + 72) / 3)
    assert pd.isna(t.at["TARGET", "QUY"]) and pd.isna(t.at["TARGET", "avg"])
    assert list(t["Better"]) == ["", "0/2", "2/3"]
    assert t.attrs["metric"] == "accuracy" and t.attrs["seeds"] == [1, 2]


def test_markdown_bold_ties_and_missing():
    assert render_markdown(paper_tables(MAIN)[("nli", "americas_nli")]) == MAIN_MD


def test_format_all_heading_and_seed_note():
    text = format_all(MAIN)
    assert text.startswith("### nli / americas_nli (accuracy)\n")
    assert "Mean over seeds 1, 2." in text
    assert MAIN_MD in text


def test_baseline_absent_drops_better():
    t = paper_tables(MAIN[MAIN["variant"] != "MAD-X"])[("nli", "americas_nli")]
    assert "Better" not in t.columns
    md = render_markdown(t)
    assert md.splitlines()[0] == "| Method | AYM | GN | QUY | avg |"
    assert "| BILINGUAL | **54.00** | **61.00** | **72.00** | **62.33** |" in md


def test_other_baseline_and_variant_order():
    t = paper_tables(MAIN, baseline="BILINGUAL", variant_order=["BILINGUAL", "MAD-X"])
    t = t[("nli", "americas_nli")]
    assert list(t.index) == ["BILINGUAL", "MAD-X", "TARGET"]  # unlisted rows are kept, at the end
    assert list(t["Better"]) == ["", "0/3", "0/2"]


def test_unknown_variants_alphabetical_and_ratio_rows():
    df = tidy([("ZETA", 1, "gn", 1.0), ("ALPHA", 1, "gn", 2.0), ("MAD-X", 1, "gn", 3.0),
               ("BAD-X", 1, "gn", 4.0, "5:1"), ("BAD-X", 1, "gn", 5.0, "2:1")])
    t = paper_tables(df)[("nli", "americas_nli")]
    assert list(t.index) == ["MAD-X", "BAD-X (2:1)", "BAD-X (5:1)", "ALPHA", "ZETA"]
    assert list(t["Better"]) == ["", "", "", "0/1", "0/1"]    # the paper gives BAD-X no Better


def test_metric_choice_per_task():
    df = pd.concat([
        MAIN,
        tidy([("MAD-X", 1, "gn", 10.0)], metric="f1"),  # not nli's primary metric: not shown
        tidy([("MAD-X", 1, "hau", 80.0)], task="ner", dataset="masakhaner", metric="f1"),
        tidy([("MAD-X", 1, "hau", 0.5)], task="ner", dataset="masakhaner", metric="precision"),
    ])
    tables = paper_tables(df)
    assert list(tables) == [("ner", "masakhaner"), ("nli", "americas_nli")]
    assert tables[("ner", "masakhaner")].at["MAD-X", "HAU"] == 80.0
    assert tables[("nli", "americas_nli")].at["MAD-X", "GN"] == 61.0
    assert "### ner / masakhaner (f1)" in format_all(df)
    with pytest.warns(UserWarning, match="no 'f1' scores"):
        only_f1 = paper_tables(pd.concat([df[df["task"] == "ner"], MAIN]), metric="f1")
    assert list(only_f1) == [("ner", "masakhaner")]
    with pytest.raises(ValueError, match="no table"), pytest.warns(UserWarning):
        paper_tables(MAIN, metric="bleu")


def test_display_rounding_decides_ties():
    # 61.004 and 60.996 both show as 61.00: tied, so both bold and not "better" (in gn and in
    # avg, which is bold too).
    df = tidy([("MAD-X", 1, "gn", 61.004), ("BILINGUAL", 1, "gn", 60.996)])
    t = paper_tables(df)[("nli", "americas_nli")]
    assert list(t["Better"]) == ["", "0/1"]
    assert render_markdown(t).count("**61.00**") == 4


def test_uneven_seeds_warn():
    df = tidy([("MAD-X", 1, "gn", 1.0), ("MAD-X", 2, "gn", 3.0), ("MAD-X", 1, "quy", 5.0)])
    with pytest.warns(UserWarning, match="different numbers of seeds"):
        t = paper_tables(df)[("nli", "americas_nli")]
    assert t.at["MAD-X", "GN"] == 2.0


def test_validate_and_parquet_round_trip(tmp_path):
    path = tmp_path / "r.parquet"
    df = pd.concat([MAIN, tidy([("BAD-X", 1, "gn", 4.0, "2:1")])])
    to_parquet(df, path)
    back = from_parquet(path)
    pd.testing.assert_frame_equal(back, validate(df))
    assert back["ratio"].tolist()[-1] == "2:1" and back["ratio"].tolist()[0] is None
    assert render_markdown(paper_tables(back)[("nli", "americas_nli")]).startswith("| Method")
    with pytest.raises(ValueError, match="expected columns"):
        validate(MAIN.drop(columns=["seed"]))
    with pytest.raises(ValueError, match="repeated measurements"):
        validate(pd.concat([MAIN, MAIN.head(1)]))
    with pytest.raises(FileNotFoundError):
        from_parquet(tmp_path / "missing.parquet")


def test_analysis_never_imports_training_code():
    for path in (REPO / "analysis").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n.split(".")[0] in ("tlr_ray", "torch") for n in names), path
    code = ("import sys, analysis; import analysis.tidy, analysis.table, analysis.report,"
            "analysis.render, analysis.significance, analysis.predictions, analysis.summary,"
            "analysis.document, analysis.figures;"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'tlr_ray')];"
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


def test_qa_cells_f1_em_decided_on_f1():
    # ar: TASK-MULTI has the better F1 (bold, better) but the worse EM; EM never decides.
    df = pd.concat([
        tidy([("MAD-X", 1, "ar", 60.0), ("MAD-X", 1, "hi", 50.0), ("TASK-MULTI", 1, "ar", 62.0),
              ("TASK-MULTI", 1, "hi", 49.0)], task="qa", dataset="xquad", metric="f1"),
        tidy([("MAD-X", 1, "ar", 45.0), ("MAD-X", 1, "hi", 40.0), ("TASK-MULTI", 1, "ar", 44.0)],
             task="qa", dataset="xquad", metric="exact_match")])
    t = paper_tables(df)[("qa", "xquad")]
    assert t.attrs["secondary"]["metric"] == "exact_match"
    assert list(t["Better"]) == ["", "1/2"]
    md = render_markdown(t)
    assert "| MAD-X | 60.00/45.00 | **50.00/40.00** | 55.00/42.50 |  |" in md
    # EM missing for one language: shown missing after the F1, and the EM avg is missing too.
    assert "| TASK-MULTI | **62.00/44.00** | 49.00/– | **55.50/–** | 1/2 |" in md
    assert format_all(df).startswith("### qa / xquad (f1/exact_match)")
    # Asked for EM itself: plain EM cells.
    em = paper_tables(df, metric="exact_match")[("qa", "xquad")]
    assert "secondary" not in em.attrs and em.at["MAD-X", "AR"] == 45.0


def test_std_over_seeds_and_show_std():
    t = paper_tables(MAIN)[("nli", "americas_nli")]
    assert t.attrs["std"]["MAD-X"]["AYM"] == pytest.approx(2 ** 0.5)
    assert render_markdown(t, show_std=True).splitlines()[2] == \
        "| MAD-X | 51.00 ± 1.41 | **61.00 ± 1.41** | 70.00 ± 0.00 | 60.67 |  |"
    assert render_markdown(t) == MAIN_MD            # default unchanged


def test_optional_artifact_column(tmp_path):
    df = MAIN.assign(artifact=[f"/runs/{i}" for i in range(len(MAIN))])
    out = validate(df)
    assert list(out.columns) == TIDY_COLUMNS + ["artifact"]
    assert validate(MAIN.assign(artifact="")).loc[0, "artifact"] is None
    assert render_markdown(paper_tables(df)[("nli", "americas_nli")]) == MAIN_MD
    to_parquet(df, tmp_path / "a.parquet")          # the export contract: tidy columns only
    assert list(from_parquet(tmp_path / "a.parquet").columns) == TIDY_COLUMNS
    to_parquet(df, tmp_path / "b.parquet", keep_artifact=True)
    assert from_parquet(tmp_path / "b.parquet")["artifact"].tolist() == df["artifact"].tolist()
    with pytest.raises(ValueError, match="unexpected \\['path'\\]"):
        validate(MAIN.assign(path="x"))
