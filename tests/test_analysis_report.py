"""The report (python -m analysis.report) on a hand-made tidy table whose numbers are known by
hand: every format shows the same cells, bold and marks; the HTML page comes with a valid PNG."""
from __future__ import annotations

import html as html_lib
import re

import pandas as pd
import pytest

from analysis.document import render_document
from analysis.report import build, main
from analysis.tidy import TIDY_COLUMNS, to_parquet


def tidy(task, dataset, metric, rows):
    """rows: (variant, seed, language, value)."""
    return pd.DataFrame([("sw1", task, dataset, v, s, None, lang, metric, x)
                         for v, s, lang, x in rows], columns=TIDY_COLUMNS)


# nli, two seeds. Means: MAD-X 51 / 61 / 70 (avg 60.67); BILINGUAL 54 / 61 / 72 (avg 62.33,
# better on aym and quy, tie on gn: 2/3); TARGET 40 / 61 / missing (avg missing, 0/2).
# gn is a three-way tie (all bold). No gain is significant over two seeds: every bold
# non-baseline language cell is starred. In every table the best avg is bold (never starred).
NLI = tidy("nli", "americas_nli", "accuracy", [
    ("MAD-X", 1, "aym", 50.0), ("MAD-X", 2, "aym", 52.0), ("MAD-X", 1, "gn", 60.0),
    ("MAD-X", 2, "gn", 62.0), ("MAD-X", 1, "quy", 70.0), ("MAD-X", 2, "quy", 70.0),
    ("BILINGUAL", 1, "aym", 53.0), ("BILINGUAL", 2, "aym", 55.0), ("BILINGUAL", 1, "gn", 61.0),
    ("BILINGUAL", 2, "gn", 61.0), ("BILINGUAL", 1, "quy", 71.0), ("BILINGUAL", 2, "quy", 73.0),
    ("TARGET", 1, "aym", 40.0), ("TARGET", 2, "aym", 40.0), ("TARGET", 1, "gn", 60.5),
    ("TARGET", 2, "gn", 61.5)])
# ner, one seed, no predictions. TASK-MULTI's hau 79.996 shows as 80.00: a tie with MAD-X, so
# not "better" (2/3); its avg (79.996 + 71 + 61) / 3 = 70.665 shows as 70.67. ALL-MULTI lacks yor.
NER = tidy("ner", "masakhaner", "f1", [
    ("MAD-X", 1, "hau", 80.0), ("MAD-X", 1, "ibo", 70.0), ("MAD-X", 1, "yor", 60.0),
    ("ALL-MULTI", 1, "hau", 82.0), ("ALL-MULTI", 1, "ibo", 70.0),
    ("TASK-MULTI", 1, "hau", 79.996), ("TASK-MULTI", 1, "ibo", 71.0),
    ("TASK-MULTI", 1, "yor", 61.0)])
# qa, F1/EM: on ar TASK-MULTI has the better F1 (bold) but the worse EM; Better counts F1 only.
QA = pd.concat([
    tidy("qa", "xquad", "f1", [("MAD-X", 1, "ar", 60.0), ("MAD-X", 1, "hi", 50.0),
                                ("TASK-MULTI", 1, "ar", 62.0), ("TASK-MULTI", 1, "hi", 49.0)]),
    tidy("qa", "xquad", "exact_match", [("MAD-X", 1, "ar", 45.0), ("MAD-X", 1, "hi", 40.0),
                                         ("TASK-MULTI", 1, "ar", 44.0),
                                         ("TASK-MULTI", 1, "hi", 41.0)])])
DF = pd.concat([NLI, NER, QA], ignore_index=True)

# "!" = bold, "*" = significance mark, as the normalizers below write them.
EXPECTED = [
    ("ner / masakhaner (f1)", [
        ["Method", "HAU", "IBO", "YOR", "avg", "Better"],
        ["MAD-X", "80.00", "70.00", "60.00", "70.00", ""],
        ["TASK-MULTI", "80.00", "!71.00", "!61.00", "!70.67", "2/3"],
        ["ALL-MULTI", "!82.00", "70.00", "–", "–", "1/2"]]),
    ("nli / americas_nli (accuracy)", [
        ["Method", "AYM", "GN", "QUY", "avg", "Better"],
        ["MAD-X", "51.00", "!61.00", "70.00", "60.67", ""],
        ["TARGET", "40.00", "!61.00*", "–", "–", "0/2"],
        ["BILINGUAL", "!54.00*", "!61.00*", "!72.00*", "!62.33", "2/3"]]),
    ("qa / xquad (f1/exact_match)", [
        ["Method", "AR", "HI", "avg", "Better"],
        ["MAD-X", "60.00/45.00", "!50.00/40.00", "55.00/42.50", ""],
        ["TASK-MULTI", "!62.00/44.00", "49.00/41.00", "!55.50/42.50", "1/2"]]),
    ("Summary: average per dataset", [
        ["Method", "masakhaner", "americas_nli", "xquad"],   # the tables' order
        ["MAD-X", "70.00", "60.67", "55.00/42.50"],
        ["TARGET", "–", "–", "–"],
        ["BILINGUAL", "–", "!62.33", "–"],
        ["TASK-MULTI", "!70.67", "–", "!55.50/42.50"],
        ["ALL-MULTI", "–", "–", "–"]]),
]


def md_tables(text):
    out, title, rows = [], None, []
    for line in text.splitlines() + [""]:
        if line.startswith("### "):
            title = line[4:]
        elif line.startswith("|---"):
            continue
        elif line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split(" | ")]
            rows.append([re.sub(r"\*\*(.*?)\*\*", r"!\1", c).replace("\\*", "*") for c in cells])
        elif rows:
            out.append((title, rows))
            rows = []
    return out


def csv_tables(text):
    import csv
    import io
    blocks, block = [], []
    for row in csv.reader(io.StringIO(text)):
        if not row:
            blocks.append(block)
            block = []
        else:
            block.append(row)
    blocks.append(block)
    # title row, then header and data rows; notes are the trailing one-cell rows
    return [(b[0][0], [r for r in b[1:] if len(r) > 1]) for b in blocks]


def latex_tables(text):
    tables = re.findall(r"\\midrule\n(.*?)\\bottomrule", text, re.S)
    headers = re.findall(r"\\toprule\n(.*?) \\\\\n", text)

    def cell(c):
        c = re.sub(r"\\textbf\{(.*?)\}", r"!\1", c.strip()).replace("--", "–")
        return c.replace(r"$\pm$", "±").replace(r"\_", "_")
    return [[[cell(c) for c in h.split(" & ")]]
            + [[cell(c) for c in line.removesuffix(r" \\").split(" & ")]
               for line in body.strip().splitlines()] for h, body in zip(headers, tables, strict=True)]


def html_tables(text):
    out = []
    for title, table in re.findall(r"<h2>(.*?)</h2>.*?<table>(.*?)</table>", text, re.S):
        rows = []
        for tr in re.findall(r"<tr>(.*?)</tr>", table, re.S):
            cells = re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", tr)
            cells = [re.sub(r"<strong>(.*?)</strong>", r"!\1", c) for c in cells]
            rows.append([html_lib.unescape(re.sub(r"<[^>]+>", "", c)) for c in cells])
        out.append((html_lib.unescape(title), rows))
    return out


def unbold(rows):
    return [[c.lstrip("!") for c in row] for row in rows]


@pytest.fixture(scope="module")
def report():
    return build(DF, baseline="MAD-X")


def test_markdown_reproduces_the_known_numbers(report):
    assert md_tables(render_document(report, "markdown")) == EXPECTED


def test_every_format_shows_the_same_cells(report):
    md = md_tables(render_document(report, "markdown"))
    assert html_tables(render_document(report, "html")) == md
    assert latex_tables(render_document(report, "latex")) == [rows for _, rows in md]
    assert csv_tables(render_document(report, "csv")) == [(t, unbold(r)) for t, r in md]
    latex = render_document(report, "latex")
    assert (r"BILINGUAL & \textbf{54.00}* & \textbf{61.00}* & \textbf{72.00}* & \textbf{62.33} "
            r"& 2/3 \\") in latex
    assert r"TARGET & 40.00 & \textbf{61.00}* & -- & -- & 0/2 \\" in latex


def test_notes_name_the_test_or_why_none(report):
    text = render_document(report, "markdown")
    ner, nli, qa = text.split("### ")[1:4]
    assert "Mean over seeds 1, 2." in nli
    assert "not significant at p < 0.05 (Student's t-test over seeds, scipy.stats.ttest_ind" in nli
    assert "no artifact paths" in ner and "\\*" not in ner       # nothing tested, nothing marked
    assert "ALL-MULTI on HAU, TASK-MULTI on IBO, TASK-MULTI on YOR" in ner
    assert "Cells are F1/EM; bold, Better and significance are decided on F1." in qa


def test_show_std_and_other_test(report):
    r = build(NLI, show_std=True, test="welch")
    rows = md_tables(render_document(r, "markdown"))[0][1]
    assert rows[1] == ["MAD-X", "51.00 ± 1.41", "!61.00 ± 1.41", "70.00 ± 0.00", "60.67", ""]
    assert "± = standard deviation over seeds" in render_document(r, "markdown")
    assert "Welch's t-test" in r.sections[0].footnotes[0]
    one_seed = md_tables(render_document(build(NER, show_std=True), "markdown"))[0][1]
    assert one_seed == EXPECTED[0][1]          # one seed: no spread shown


def test_cli_order_baseline_and_csv(tmp_path, capsys):
    path = tmp_path / "r.parquet"
    to_parquet(NLI, path)
    assert main([str(path), "--format", "csv", "--order", "BILINGUAL,TARGET",
                 "--baseline", "BILINGUAL"]) == 0
    title, rows = csv_tables(capsys.readouterr().out)[0]
    assert [r[0] for r in rows] == ["Method", "BILINGUAL", "TARGET", "MAD-X"]
    assert [r[-1] for r in rows[1:]] == ["", "0/2", "0/3"]


def test_cli_html_page_and_png(tmp_path, capsys):
    import matplotlib.image
    path = tmp_path / "r.parquet"
    to_parquet(DF, path)
    out = tmp_path / "site" / "report.html"
    assert main([str(path), "--format", "html", "--out", str(out)]) == 0
    png = out.with_name("report-summary.png")
    assert out.is_file() and png.is_file()
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(png)
    assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 300
    page = out.read_text()
    assert '<img src="report-summary.png"' in page
    assert [t for t, _ in html_tables(page)] == [t for t, _ in EXPECTED]
    assert "wrote" in capsys.readouterr().err


def test_cli_errors_and_empty(tmp_path, capsys):
    assert main([str(tmp_path / "missing.parquet")]) == 2
    assert "error: no such results file" in capsys.readouterr().err
    assert main([str(tmp_path / "x.parquet"), "--tracking-uri", "sqlite:///x.db"]) == 2
    assert "only applies" in capsys.readouterr().err
    assert main(["mlflow:nope", "--tracking-uri", f"sqlite:///{tmp_path}/absent.db"]) == 2
    assert "error: no MLflow store" in capsys.readouterr().err
    path = tmp_path / "empty.parquet"
    to_parquet(NLI.head(0), path)
    assert main([str(path)]) == 0
    captured = capsys.readouterr()
    assert "No evaluation results" in captured.out and "warning: no evaluation" in captured.err


def test_report_from_mlflow_reads_predictions(tmp_path, capsys):
    """Eval runs tagged with their artifact folder: single seed, tested over examples."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("sw1")
    for job, variant, correct in [("e1", "MAD-X", [1, 0, 0, 1, 0, 0, 1, 0]),
                                  ("e2", "BILINGUAL", [1, 1, 0, 1, 0, 0, 1, 0])]:
        folder = tmp_path / "jobs" / job
        folder.mkdir(parents=True)
        pd.DataFrame({"index": range(8), "label": 1, "prediction": correct,
                      "correct": [bool(c) for c in correct]}).to_parquet(
            folder / "predictions.parquet")
        run = client.create_run(exp, tags={
            "kind": "eval", "sweep": "sw1", "job_id": job, "task": "nli",
            "dataset": "americas_nli", "variant": variant, "variants": variant, "seed": "1",
            "ratio": "", "target": "gn", "languages": "en,gn", "artifact": str(folder)})
        client.log_metric(run.info.run_id, "americas_nli/gn/accuracy", 100 * sum(correct) / 8)
        client.set_terminated(run.info.run_id, "FINISHED")
    from analysis.tidy import from_mlflow, from_parquet
    df = from_mlflow("sw1", tracking_uri=uri)
    assert list(df.columns) == TIDY_COLUMNS + ["artifact"]
    assert sorted(df["artifact"]) == [str(tmp_path / "jobs" / j) for j in ("e1", "e2")]
    to_parquet(df, tmp_path / "plain.parquet")                  # the export contract: no paths
    assert list(from_parquet(tmp_path / "plain.parquet").columns) == TIDY_COLUMNS
    to_parquet(df, tmp_path / "paths.parquet", keep_artifact=True)
    assert list(from_parquet(tmp_path / "paths.parquet").columns) == TIDY_COLUMNS + ["artifact"]

    assert main(["mlflow:sw1", "--tracking-uri", uri]) == 0
    text = capsys.readouterr().out
    # One more example right of 8: not significant, so the bold BILINGUAL cell is starred.
    assert "| BILINGUAL | **50.00**\\* | **50.00** | 1/1 |" in text
    assert "paired t-test over examples of per-example accuracy" in text


def test_module_entry_point(tmp_path):
    """`python -m analysis.report` runs as a program (one subprocess: imports are slow)."""
    import subprocess
    import sys
    from pathlib import Path

    to_parquet(NER, tmp_path / "r.parquet")
    proc = subprocess.run([sys.executable, "-m", "analysis.report", str(tmp_path / "r.parquet"),
                           "--format", "latex"], cwd=Path(__file__).resolve().parents[1],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert r"ALL-MULTI & \textbf{82.00} & 70.00 & -- & -- & 1/2 \\" in proc.stdout
