"""Paper-style tables from the tidy results table (METHOD.md, "How results are reported").

One table per (task, evaluation dataset): rows = variants, columns = target languages (upper-case),
then `avg` and `Better` = "k/n" versus the baseline row. Cells are means over seeds. Rules that
need a decision (documented in docs/results.md):
- a missing cell makes the row's avg missing: averaging over fewer languages would flatter a row;
- bold and Better compare the values *as displayed* (two decimals), so a reader can check them
  and float noise from seed means never decides a tie;
- a variant with a ratio (BAD-X) is one row per ratio, labelled "BAD-X (2:1)";
- QA tables also carry EM (`attrs["secondary"]`) so cells read "F1/EM"; bold, Better and
  significance are decided on F1 alone, as in the papers;
- which rows compete for bold, whether avg is bolded and which rows get no Better count are data,
  `TableRules` (default `PAPER_RULES`, the TLR paper's); `paper_tables` applies them once and
  records the outcome in `attrs` ("no_bold", "bold_avg"), which `bold_cells` reads for every
  renderer, the significance marks and the summary.
Spread over seeds (`attrs["std"]`) and the secondary metric are plain dicts {row: {column: value}}
so that pandas can copy and compare `attrs` without tripping over nested DataFrames.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import pandas as pd

from analysis.tidy import validate

# The task's headline metric, as in the papers' tables.
PRIMARY_METRIC = {"nli": "accuracy", "ner": "f1", "dp": "las", "pos": "accuracy", "qa": "f1"}
# Shown after the primary metric in each cell ("F1/EM"); the QA task logs `exact_match`, older
# runs or hand-made tables may say `em`: the first present is used.
SECONDARY_METRIC = {"qa": ("exact_match", "em")}
DEFAULT_VARIANT_ORDER = ("MAD-X", "BAD-X", "TARGET", "BILINGUAL", "TASK-MULTI", "ALL-MULTI",
                         "LEAVE-OUT-TASK", "LEAVE-OUT-TARG")
MISSING = "–"
_EXTRA = ("avg", "Better")


@dataclass(frozen=True)
class TableRules:
    """The rules of a table that are a choice of the paper, as data (docs/results.md).

    `no_bold`: variants whose rows never compete for bold (their scores are shown, not bolded, and
    do not keep another row from being bold); the significance mark follows bold, so they are never
    marked either. `no_better`: variants whose rows get no Better count (blank, like the baseline).
    `bold_avg`: avg competes for bold too (among the same rows).
    Rules name variants, not row labels: they cover every ratio row of BAD-X.
    """
    no_bold: frozenset = frozenset({"LEAVE-OUT-TASK", "LEAVE-OUT-TARG"})
    no_better: frozenset = frozenset({"BAD-X"})
    bold_avg: bool = True

    def __post_init__(self):
        for name in ("no_bold", "no_better"):
            value = getattr(self, name)
            if isinstance(value, str) or not all(isinstance(v, str) for v in value):
                raise TypeError(f"TableRules.{name} must be a collection of variant names")
            object.__setattr__(self, name, frozenset(value))

    def describe(self, column: str = "language", avg: bool = True, ties: bool = True) -> str:
        """The bold rule in words, no final stop: "Bold = best per language and best avg (ties
        all bold), not counting LEAVE-OUT-TASK, LEAVE-OUT-TARG". `avg`: the table has an avg
        column. The all-rows rules give the earlier text, "Bold = best per language (ties all
        bold)"."""
        text = f"Bold = best per {column}" + (" and best avg" if avg and self.bold_avg else "")
        text += " (ties all bold)" if ties else ""
        if self.no_bold:
            text += f", not counting {', '.join(_variant_sorted(self.no_bold))}"
        return text

    def describe_better(self) -> str:
        """" (blank for BAD-X)", or "" when every non-baseline row has a Better count."""
        return f" (blank for {', '.join(_variant_sorted(self.no_better))})" if self.no_better \
            else ""


# The TLR paper: ablations LEAVE-OUT-TASK / LEAVE-OUT-TARG do not compete for bold, the best avg is
# bold, BAD-X has no Better count.
PAPER_RULES = TableRules()
# The rules used before the paper's (`--bold-all-rows`): every row competes for bold, every
# non-baseline row has a Better count, avg is never bold.
ALL_ROWS_RULES = TableRules(no_bold=frozenset(), no_better=frozenset(), bold_avg=False)


def _variant_sorted(variants) -> list[str]:
    """Variant names in the papers' order, then alphabetically."""
    order = DEFAULT_VARIANT_ORDER
    return sorted(variants, key=lambda v: (order.index(v) if v in order else len(order), v))


def _shown(x: float) -> float:
    """The value a reader sees: the same rounding as the two-decimal text."""
    return float(f"{x:.2f}")


def _label(variant: str, ratio: str | None) -> str:
    return variant if ratio is None else f"{variant} ({ratio})"


def row_labels(df: pd.DataFrame) -> list[str]:
    """The table row label of every tidy row ("BAD-X (2:1)" for a variant with a ratio)."""
    return [_label(v, r) for v, r in zip(df["variant"], df["ratio"], strict=True)]


def ordered_rows(df: pd.DataFrame, variant_order=None) -> list[str]:
    """All row labels of `df`, in table order (see `_row_order`)."""
    return [_label(v, r) for v, r in _row_order(set(zip(df["variant"], df["ratio"], strict=True)),
                                                 variant_order)]


def value_columns(table: pd.DataFrame) -> list[str]:
    """The columns holding scores (languages, or datasets in a summary); all compete for bold."""
    return [c for c in table.columns if c not in _EXTRA]


def bold_columns(table: pd.DataFrame) -> list[str]:
    """The columns that compete for bold: the value columns, and avg where the rules say so."""
    avg = ["avg"] if table.attrs.get("bold_avg", False) and "avg" in table.columns else []
    return value_columns(table) + avg


def bold_rows(table: pd.DataFrame) -> list[str]:
    """The rows that compete for bold: all but those the table's rules keep out (attrs
    "no_bold", row labels). A table not made by paper_tables has no such attrs: all rows."""
    excluded = set(table.attrs.get("no_bold", ()))
    return [r for r in table.index if r not in excluded]


def best_shown(table: pd.DataFrame) -> dict[str, float | None]:
    """Per bold column, the best score as displayed among the bold rows (None if none)."""
    rows = bold_rows(table)
    return {c: max((_shown(v) for v in table.loc[rows, c] if pd.notna(v)), default=None)
            for c in bold_columns(table)}


def bold_cells(table: pd.DataFrame) -> set[tuple[str, str]]:
    """The (row, column) cells shown in bold: per bold column, every bold row whose displayed
    score equals the best (ties all bold). The one place renderers and marks read bold from."""
    best = best_shown(table)
    return {(row, col) for col, b in best.items() if b is not None for row in bold_rows(table)
            if pd.notna(table.at[row, col]) and _shown(table.at[row, col]) == b}


def _nested(frame: pd.DataFrame) -> dict[str, dict[str, float]]:
    return {str(row): {str(c): float(v) for c, v in values.items()}
            for row, values in frame.iterrows()}


def _row_order(pairs, variant_order) -> list[tuple[str, str | None]]:
    """Listed variants first, in the given order; the rest alphabetically (never dropped)."""
    order = list(variant_order) if variant_order is not None else list(DEFAULT_VARIANT_ORDER)

    def key(pair):
        variant, ratio = pair
        rank = order.index(variant) if variant in order else len(order)
        return rank, variant, ratio or ""
    return sorted(pairs, key=key)


def _means(sel: pd.DataFrame, rows, langs) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Mean and standard deviation (ddof=1; NaN for one seed) over seeds, rows x languages."""
    grouped = sel.assign(row=row_labels(sel)).groupby(["row", "language"])["value"]
    mean = grouped.mean().unstack("language").reindex(index=rows, columns=langs)
    std = grouped.std(ddof=1).unstack("language").reindex(index=rows, columns=langs)
    return mean, std


def _secondary(sel2: pd.DataFrame, metric2: str, rows, langs) -> dict:
    """The second number of a cell ("F1/EM"), with its row avg under the same missing rule."""
    mean, std = _means(sel2, rows, langs)
    values = mean.copy()
    values.columns = [c.upper() for c in langs]
    values["avg"] = mean.mean(axis=1, skipna=False)
    std.columns = [c.upper() for c in langs]
    return {"metric": metric2, "values": _nested(values), "std": _nested(std)}


def _one_table(sel: pd.DataFrame, baseline: str, variant_order, metric: str,
               sel2: pd.DataFrame | None = None, metric2: str | None = None,
               rules: TableRules = PAPER_RULES) -> pd.DataFrame:
    sel = sel.assign(row=row_labels(sel))
    rows = ordered_rows(sel, variant_order)
    variant_of = dict(zip(sel["row"], sel["variant"], strict=True))
    langs = sorted(sel["language"].unique())
    grouped = sel.groupby(["row", "language"])
    cells, std = _means(sel, rows, langs)
    # A cell averaged over fewer seeds than its row's others is not comparable: say so.
    n_seeds = grouped["seed"].nunique().unstack("language").reindex(index=rows)
    for row, counts in n_seeds.iterrows():
        if counts.dropna().nunique() > 1:
            warnings.warn(f"{metric} table, row {row}: languages have different numbers of seeds "
                          f"({counts.dropna().astype(int).to_dict()})", stacklevel=3)
    table = cells.copy()
    table.columns = [c.upper() for c in langs]
    table["avg"] = cells.mean(axis=1, skipna=False)
    if baseline in cells.index:
        base = cells.loc[baseline]
        better = []
        for row in rows:
            if row == baseline or variant_of[row] in rules.no_better:
                better.append("")
                continue
            both = [lang for lang in langs
                    if pd.notna(cells.at[row, lang]) and pd.notna(base[lang])]
            k = sum(_shown(cells.at[row, lang]) > _shown(base[lang]) for lang in both)
            better.append(f"{k}/{len(both)}")
        table["Better"] = better
    table.index.name = "Method"
    std.columns = [c.upper() for c in langs]
    table.attrs.update(metric=metric, baseline=baseline if baseline in cells.index else None,
                       seeds=sorted(int(s) for s in sel["seed"].unique()), std=_nested(std),
                       no_bold=[r for r in rows if variant_of[r] in rules.no_bold],
                       bold_avg=rules.bold_avg)
    if sel2 is not None and not sel2.empty:
        table.attrs["secondary"] = _secondary(sel2, metric2, rows, langs)
    return table


def paper_tables(df: pd.DataFrame, baseline: str = "MAD-X", variant_order=None,
                 metric: str | None = None,
                 rules: TableRules = PAPER_RULES) -> dict[tuple[str, str], pd.DataFrame]:
    """One numeric table per (task, dataset), keyed and ordered by (task, dataset).

    Each table is indexed by row label ("Method"); columns are the upper-case language codes, then
    `avg` (NaN if any language is missing) and `Better` ("k/n", "" on the baseline row and on the
    rules' `no_better` rows; absent if the baseline has no row). `table.attrs` holds metric, baseline and seeds.
    `metric` defaults to the task's PRIMARY_METRIC (or the dataset's only metric); datasets without
    that metric are skipped with a warning. When the shown metric is the primary one of a task
    with a SECONDARY_METRIC (QA: EM), `attrs["secondary"]` holds it for "F1/EM" cells.
    `attrs["std"]` holds the standard deviation over seeds per cell (NaN with one seed).
    `rules` (TableRules, default PAPER_RULES; ALL_ROWS_RULES = the earlier rules): Better is blank
    on its `no_better` rows; `attrs["no_bold"]` lists the row labels kept out of bold and
    `attrs["bold_avg"]` says whether avg is bolded (see `bold_cells`).
    """
    if not isinstance(rules, TableRules):
        raise TypeError(f"rules must be a TableRules (e.g. PAPER_RULES), not {rules!r}")
    df = validate(df)
    tables = {}
    for (task, dataset), part in df.groupby(["task", "dataset"], sort=True):
        chosen = metric or PRIMARY_METRIC.get(task)
        if chosen is None and part["metric"].nunique() == 1:
            chosen = part["metric"].iloc[0]
        if chosen is None:
            warnings.warn(f"{task}/{dataset}: no primary metric known for task {task!r}; pass "
                          f"metric= (have {sorted(part['metric'].unique())})", stacklevel=2)
            continue
        sel = part[part["metric"] == chosen]
        if sel.empty:
            warnings.warn(f"{task}/{dataset}: no {chosen!r} scores (have "
                          f"{sorted(part['metric'].unique())}), skipped", stacklevel=2)
            continue
        sel2 = metric2 = None
        if chosen == PRIMARY_METRIC.get(task):
            metric2 = next((m for m in SECONDARY_METRIC.get(task, ())
                            if m in set(part["metric"])), None)
            sel2 = part[part["metric"] == metric2] if metric2 else None
        table = _one_table(sel, baseline, variant_order, chosen, sel2, metric2, rules)
        table.attrs.update(task=task, dataset=dataset)
        tables[(task, dataset)] = table
    if not tables and not df.empty:
        raise ValueError(f"no table could be built for metric {metric!r}; metrics present: "
                         f"{sorted(df['metric'].unique())}")
    return tables


def heading(table: pd.DataFrame) -> str:
    """"nli / americas_nli (accuracy)", or "qa / xquad (f1/exact_match)" for F1/EM cells."""
    metric = table.attrs["metric"]
    if "secondary" in table.attrs:
        metric += "/" + table.attrs["secondary"]["metric"]
    return f"{table.attrs['task']} / {table.attrs['dataset']} ({metric})"
