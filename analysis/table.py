"""Paper-style tables from the tidy results table (METHOD.md, "How results are reported").

One table per (task, evaluation dataset): rows = variants, columns = target languages (upper-case),
then `avg` and `Better` = "k/n" versus the baseline row. Cells are means over seeds. Rules that
need a decision (documented in docs/results.md):
- a missing cell makes the row's avg missing: averaging over fewer languages would flatter a row;
- bold and Better compare the values *as displayed* (two decimals), so a reader can check them
  and float noise from seed means never decides a tie;
- a variant with a ratio (BAD-X) is one row per ratio, labelled "BAD-X (2:1)";
- QA tables also carry EM (`attrs["secondary"]`) so cells read "F1/EM"; bold, Better and
  significance are decided on F1 alone, as in the papers.
Spread over seeds (`attrs["std"]`) and the secondary metric are plain dicts {row: {column: value}}
so that pandas can copy and compare `attrs` without tripping over nested DataFrames.
"""
from __future__ import annotations

import warnings

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


def _shown(x: float) -> float:
    """The value a reader sees: the same rounding as the two-decimal text."""
    return float(f"{x:.2f}")


def _label(variant: str, ratio: str | None) -> str:
    return variant if ratio is None else f"{variant} ({ratio})"


def row_labels(df: pd.DataFrame) -> list[str]:
    """The table row label of every tidy row ("BAD-X (2:1)" for a variant with a ratio)."""
    return [_label(v, r) for v, r in zip(df["variant"], df["ratio"])]


def ordered_rows(df: pd.DataFrame, variant_order=None) -> list[str]:
    """All row labels of `df`, in table order (see `_row_order`)."""
    return [_label(v, r) for v, r in _row_order(set(zip(df["variant"], df["ratio"])),
                                                 variant_order)]


def value_columns(table: pd.DataFrame) -> list[str]:
    """The columns holding scores that compete for bold (languages, or datasets in a summary)."""
    return [c for c in table.columns if c not in _EXTRA]


def best_shown(table: pd.DataFrame) -> dict[str, float | None]:
    """Per value column, the best score as displayed (None if the column is empty)."""
    return {c: max((_shown(v) for v in table[c] if pd.notna(v)), default=None)
            for c in value_columns(table)}


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
               sel2: pd.DataFrame | None = None, metric2: str | None = None) -> pd.DataFrame:
    sel = sel.assign(row=row_labels(sel))
    rows = ordered_rows(sel, variant_order)
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
            if row == baseline:
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
                       seeds=sorted(int(s) for s in sel["seed"].unique()), std=_nested(std))
    if sel2 is not None and not sel2.empty:
        table.attrs["secondary"] = _secondary(sel2, metric2, rows, langs)
    return table


def paper_tables(df: pd.DataFrame, baseline: str = "MAD-X", variant_order=None,
                 metric: str | None = None) -> dict[tuple[str, str], pd.DataFrame]:
    """One numeric table per (task, dataset), keyed and ordered by (task, dataset).

    Each table is indexed by row label ("Method"); columns are the upper-case language codes, then
    `avg` (NaN if any language is missing) and `Better` ("k/n", "" on the baseline row; absent if
    the baseline has no row). `table.attrs` holds metric, baseline and seeds.
    `metric` defaults to the task's PRIMARY_METRIC (or the dataset's only metric); datasets without
    that metric are skipped with a warning. When the shown metric is the primary one of a task
    with a SECONDARY_METRIC (QA: EM), `attrs["secondary"]` holds it for "F1/EM" cells.
    `attrs["std"]` holds the standard deviation over seeds per cell (NaN with one seed).
    """
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
        table = _one_table(sel, baseline, variant_order, chosen, sel2, metric2)
        table.attrs.update(task=task, dataset=dataset)
        tables[(task, dataset)] = table
    if not tables and not df.empty:
        raise ValueError(f"no table could be built for metric {metric!r}; metrics present: "
                         f"{sorted(df['metric'].unique())}")
    return tables


def render_markdown(table: pd.DataFrame, marks=None, show_std: bool = False) -> str:
    """A markdown table: two decimals, best per language in bold (all tied bold), '–' if missing.
    `marks` (significance, see analysis.significance) and `show_std` as in analysis.render."""
    from analysis.render import markdown_table  # render builds on this module's rules
    return markdown_table(table, marks=marks, show_std=show_std)


def heading(table: pd.DataFrame) -> str:
    """"nli / americas_nli (accuracy)", or "qa / xquad (f1/exact_match)" for F1/EM cells."""
    metric = table.attrs["metric"]
    if "secondary" in table.attrs:
        metric += "/" + table.attrs["secondary"]["metric"]
    return f"{table.attrs['task']} / {table.attrs['dataset']} ({metric})"


def format_all(df: pd.DataFrame, baseline: str = "MAD-X", variant_order=None,
               metric: str | None = None) -> str:
    """Every dataset's table under a heading "### task / dataset (metric)"."""
    tables = paper_tables(df, baseline=baseline, variant_order=variant_order, metric=metric)
    if not tables:
        return "_No evaluation results._\n"
    parts = []
    for (task, dataset), table in tables.items():
        parts.append(f"### {heading(table)}\n")
        seeds = table.attrs["seeds"]
        if len(seeds) > 1:  # the papers report multi-seed means: make that visible
            parts.append(f"Mean over seeds {', '.join(map(str, seeds))}.\n")
        parts.append(render_markdown(table))
    return "\n".join(parts)
