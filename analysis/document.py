"""A whole report (every dataset's table, its notes, the summary, the figure) in one format.

The report's content is decided once (`Report`, built by analysis.report); this module only lays
it out. Tables come from analysis.render, so all formats show the same cells and marks.
"""
from __future__ import annotations

import csv
import html
import io
import re
from dataclasses import dataclass, field

import pandas as pd

from analysis import render

FORMATS = ("markdown", "latex", "csv", "html")


@dataclass
class Section:
    title: str                 # "nli / americas_nli (accuracy)"
    table: pd.DataFrame
    marks: object = None       # analysis.significance.Marks, or None (summary)
    notes: list[str] = field(default_factory=list)   # plain text, above the table
    footnotes: list[str] = field(default_factory=list)   # below it (the significance note)


@dataclass
class Report:
    title: str
    intro: str
    sections: list[Section]
    summary: Section | None = None
    figure: str | None = None       # path of the summary PNG, relative to the document
    show_std: bool = False


def _all(report: Report) -> list[Section]:
    return report.sections + ([report.summary] if report.summary is not None else [])


def markdown(report: Report) -> str:
    def esc(text: str) -> str:   # a note's "*" is the mark itself, not emphasis
        return text.replace("*", "\\*")
    out = [f"# {report.title}\n", esc(report.intro) + "\n"]
    if not report.sections:
        out.append("_No evaluation results._\n")
    for s in _all(report):
        out.append(f"### {s.title}\n")
        out += [esc(n) + "\n" for n in s.notes]
        out.append(render.render_markdown(s.table, s.marks, report.show_std))
        out += [esc(n) + "\n" for n in s.footnotes]
    if report.figure:
        out.append(f"![Average per dataset and variant]({report.figure})\n")
    return "\n".join(out)


def latex(report: Report) -> str:
    out = [f"% {report.title}. Tables need \\usepackage{{booktabs}}.",
           f"% {report.intro}", ""]
    for s in _all(report):
        label = re.sub(r"[^A-Za-z0-9]+", "-", s.title.split(" (")[0]).strip("-").lower()
        caption = " ".join([s.title + "."] + s.notes + s.footnotes)
        out += [r"\begin{table}[ht]", r"\centering",
                rf"\caption{{{render.latex_escape(caption)}}}", rf"\label{{tab:{label}}}",
                render.latex_table(s.table, s.marks, report.show_std).rstrip("\n"),
                r"\end{table}", ""]
    if report.figure:
        out += [r"\begin{figure}[ht]", r"\centering",
                rf"\includegraphics[width=\linewidth]{{{report.figure}}}",
                r"\caption{Average per dataset and variant.}", r"\end{figure}", ""]
    return "\n".join(out)


def csv_text(report: Report) -> str:
    """Blocks separated by an empty line: a title row, the header, the rows, then one row per
    note (a single cell, so a data row, which has a label and values, is never mistaken for one)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    for i, s in enumerate(_all(report)):
        if i:
            writer.writerow([])
        writer.writerow([s.title])
        writer.writerows(render.csv_rows(s.table, s.marks, report.show_std))
        writer.writerows([[n] for n in s.notes + s.footnotes])
    return buf.getvalue()


_CSS = """body{font-family:sans-serif;margin:2em;max-width:75em}
table{border-collapse:collapse;margin:.5em 0 1em}
th,td{border-bottom:1px solid #ccc;padding:.25em .6em;text-align:right}
thead th{border-bottom:2px solid #333}
tbody th{text-align:left;font-weight:normal}
.mark{color:#b00}
.note{color:#444;font-size:.9em;max-width:60em}
img{max-width:100%}"""


def html_page(report: Report) -> str:
    e = html.escape
    out = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
           f"<title>{e(report.title)}</title>", f"<style>\n{_CSS}\n</style>", "</head>", "<body>",
           f"<h1>{e(report.title)}</h1>", f'<p class="note">{e(report.intro)}</p>']
    if not report.sections:
        out.append("<p>No evaluation results.</p>")
    for s in _all(report):
        out.append(f"<h2>{e(s.title)}</h2>")
        out += [f'<p class="note">{e(n)}</p>' for n in s.notes]
        out.append(render.html_table(s.table, s.marks, report.show_std).rstrip("\n"))
        out += [f'<p class="note">{e(n)}</p>' for n in s.footnotes]
    if report.figure:
        out += ["<figure>", f'<img src="{e(report.figure)}" alt="Average per dataset and variant">',
                "<figcaption>Average per dataset and variant.</figcaption>", "</figure>"]
    out += ["</body>", "</html>", ""]
    return "\n".join(out)


def render_document(report: Report, fmt: str) -> str:
    writers = {"markdown": markdown, "latex": latex, "csv": csv_text, "html": html_page}
    if fmt not in writers:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return writers[fmt](report)
