"""One paper table in four formats: markdown, LaTeX, CSV and HTML (and `format_all`: every table of a
sweep in markdown under its heading, as a sweep prints them).

Every format is printed from the same grid of cells (text, bold, significance star), so the formats
cannot disagree on a number, a bold cell or a mark; only the markup differs:

| | bold | star | missing | ± |
|---|---|---|---|---|
| markdown | `**61.00**` | `\\*` after the cell | `–` | `±` |
| LaTeX | `\\textbf{61.00}` | `*` after the cell | `--` | `$\\pm$` |
| CSV | none (no markup) | `*` after the number | `–` | `±` |
| HTML | `<strong>` | `*` after the cell | `–` | `±` |

The star is content, not markup (it is the paper's significance mark), so CSV keeps it.
Rules for the numbers (two decimals, bold on displayed values, missing cells) and which cells are
bold (`analysis.table.bold_cells`, following the table's TableRules) are table.py's.
"""
from __future__ import annotations

import html
from dataclasses import dataclass

import pandas as pd

from analysis.table import MISSING, PAPER_RULES, TableRules, bold_cells, heading, paper_tables, value_columns


@dataclass
class Cell:
    text: str
    bold: bool = False
    star: bool = False
    title: str | None = None   # hover text in HTML: the p-value of a tested cell


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and pd.isna(v))


def _number(v, std=None) -> str:
    if _missing(v):
        return MISSING
    if std is not None and not _missing(std):   # one seed: no spread to show
        return f"{v:.2f} ± {std:.2f}"
    return f"{v:.2f}"


def grid(table: pd.DataFrame, marks=None,
         show_std: bool = False) -> tuple[list[str], list[list[Cell]]]:
    """(header, rows of cells): the label, the value columns, avg, Better (if present).

    `marks`: an `analysis.significance.Marks` (or None): its `stars` are (row, column) cells
    to mark and `pvalues` their p-values. `show_std` appends "± std" over seeds to value cells.
    A cell with a secondary metric (QA EM) reads "F1/EM"; bold is decided on the first number.
    Bold cells are `analysis.table.bold_cells(table)`: the table's rules decide, not the format.
    """
    stars = getattr(marks, "stars", set()) or set()
    pvalues = getattr(marks, "pvalues", {}) or {}
    std = table.attrs.get("std", {}) if show_std else {}
    second = table.attrs.get("secondary")
    bold = bold_cells(table)
    header = [table.index.name or "Method", *table.columns]
    rows = []
    for label, row in table.iterrows():
        cells = [Cell(str(label))]
        for col in table.columns:
            if col == "Better":
                cells.append(Cell(str(row[col])))
                continue
            v = row[col]
            s = std.get(label, {}).get(col)
            text = _number(v, s)
            # Only columns that have a secondary metric (in a summary: the QA datasets).
            if second is not None and not _missing(v) and col in second["values"].get(label, {}):
                v2 = second["values"][label][col]
                s2 = second["std"].get(label, {}).get(col) if show_std else None
                sep = " / " if show_std else "/"   # keep "a ± b / c ± d" readable
                text += sep + _number(v2, s2)
            p = pvalues.get((label, col))
            cells.append(Cell(text, bold=(label, col) in bold, star=(label, col) in stars,
                              title=None if p is None else f"p = {p:.3g}"))
        rows.append(cells)
    return header, rows


def render_markdown(table: pd.DataFrame, marks=None, show_std: bool = False) -> str:
    """A markdown table: two decimals, bold as `bold_cells` says (all tied bold), '–' if missing;
    `marks`: significance stars (analysis.significance); `show_std`: `mean ± std` cells."""
    header, rows = grid(table, marks, show_std)

    def md(c: Cell) -> str:
        text = f"**{c.text}**" if c.bold else c.text
        return text + ("\\*" if c.star else "")   # escaped: "***" would be read as markup
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(md(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


_LATEX_SPECIAL = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
                  "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                  "\\": r"\textbackslash{}"}


def latex_escape(text: str) -> str:
    out = "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)
    return out.replace("±", r"$\pm$").replace("≥", r"$\geq$").replace(MISSING, "--")


def latex_table(table: pd.DataFrame, marks=None, show_std: bool = False) -> str:
    """A `tabular` (booktabs rules); the caller wraps it in a table environment."""
    header, rows = grid(table, marks, show_std)

    def tex(c: Cell) -> str:
        text = latex_escape(c.text)
        return (rf"\textbf{{{text}}}" if c.bold else text) + ("*" if c.star else "")
    spec = "l" + "r" * (len(header) - 1)
    lines = [rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
             " & ".join(latex_escape(h) for h in header) + r" \\", r"\midrule"]
    lines += [" & ".join(tex(c) for c in row) + r" \\" for row in rows]
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def csv_rows(table: pd.DataFrame, marks=None, show_std: bool = False) -> list[list[str]]:
    """Header then rows, as strings without markup (for the csv module)."""
    header, rows = grid(table, marks, show_std)
    return [header] + [[c.text + ("*" if c.star else "") for c in row] for row in rows]


def html_table(table: pd.DataFrame, marks=None, show_std: bool = False) -> str:
    header, rows = grid(table, marks, show_std)

    def td(c: Cell, tag: str = "td") -> str:
        text = html.escape(c.text)
        text = f"<strong>{text}</strong>" if c.bold else text
        text += '<span class="mark">*</span>' if c.star else ""
        title = f' title="{html.escape(c.title)}"' if c.title else ""
        return f"<{tag}{title}>{text}</{tag}>"
    lines = ["<table>", "<thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header)
             + "</tr></thead>", "<tbody>"]
    lines += ["<tr>" + td(row[0], "th") + "".join(td(c) for c in row[1:]) + "</tr>"
              for row in rows]
    lines += ["</tbody>", "</table>"]
    return "\n".join(lines) + "\n"



def format_all(df: pd.DataFrame, baseline: str = "MAD-X", variant_order=None,
               metric: str | None = None, rules: TableRules = PAPER_RULES) -> str:
    """Every dataset's table under a heading "### task / dataset (metric)"."""
    tables = paper_tables(df, baseline=baseline, variant_order=variant_order, metric=metric,
                          rules=rules)
    if not tables:
        return "_No evaluation results._\n"
    parts = []
    for table in tables.values():
        parts.append(f"### {heading(table)}\n")
        seeds = table.attrs["seeds"]
        if len(seeds) > 1:  # the papers report multi-seed means: make that visible
            parts.append(f"Mean over seeds {', '.join(map(str, seeds))}.\n")
        parts.append(render_markdown(table))
    return "\n".join(parts)

__all__ = ["Cell", "grid", "render_markdown", "format_all", "latex_table", "latex_escape", "csv_rows",
           "html_table", "value_columns"]
