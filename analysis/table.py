"""Paper-style tables from the tidy results table (METHOD.md, "How results are reported").

One table per (task, evaluation dataset): rows = variants, columns = target languages (upper-case),
then `avg` and `Better` = "k/n" versus the baseline row. Cells are means over seeds. Rules that
need a decision (documented in docs/results.md):
- a missing cell makes the row's avg missing: averaging over fewer languages would flatter a row;
- bold and Better compare the values *as displayed* (two decimals), so a reader can check them
  and float noise from seed means never decides a tie;
- a variant with a ratio (BAD-X) is one row per ratio, labelled "BAD-X (2:1)".
"""
from __future__ import annotations

import math
import warnings

import pandas as pd

from analysis.tidy import validate

# The task's headline metric, as in the papers' tables.
PRIMARY_METRIC = {"nli": "accuracy", "ner": "f1", "dp": "las", "pos": "accuracy", "qa": "f1"}
DEFAULT_VARIANT_ORDER = ("MAD-X", "BAD-X", "TARGET", "BILINGUAL", "TASK-MULTI", "ALL-MULTI",
                         "LEAVE-OUT-TASK", "LEAVE-OUT-TARG")
MISSING = "–"
_EXTRA = ("avg", "Better")


def _shown(x: float) -> float:
    """The value a reader sees: the same rounding as the two-decimal text."""
    return float(f"{x:.2f}")


def _label(variant: str, ratio: str | None) -> str:
    return variant if ratio is None else f"{variant} ({ratio})"


def _row_order(pairs, variant_order) -> list[tuple[str, str | None]]:
    """Listed variants first, in the given order; the rest alphabetically (never dropped)."""
    order = list(variant_order) if variant_order is not None else list(DEFAULT_VARIANT_ORDER)

    def key(pair):
        variant, ratio = pair
        rank = order.index(variant) if variant in order else len(order)
        return rank, variant, ratio or ""
    return sorted(pairs, key=key)


def _one_table(sel: pd.DataFrame, baseline: str, variant_order, metric: str) -> pd.DataFrame:
    sel = sel.assign(row=[_label(v, r) for v, r in zip(sel["variant"], sel["ratio"])])
    pairs = set(zip(sel["variant"], sel["ratio"]))
    rows = [_label(v, r) for v, r in _row_order(pairs, variant_order)]
    langs = sorted(sel["language"].unique())
    grouped = sel.groupby(["row", "language"])
    cells = grouped["value"].mean().unstack("language").reindex(index=rows, columns=langs)
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
    table.attrs.update(metric=metric, baseline=baseline if baseline in cells.index else None,
                       seeds=sorted(int(s) for s in sel["seed"].unique()))
    return table


def paper_tables(df: pd.DataFrame, baseline: str = "MAD-X", variant_order=None,
                 metric: str | None = None) -> dict[tuple[str, str], pd.DataFrame]:
    """One numeric table per (task, dataset), keyed and ordered by (task, dataset).

    Each table is indexed by row label ("Method"); columns are the upper-case language codes, then
    `avg` (NaN if any language is missing) and `Better` ("k/n", "" on the baseline row; absent if
    the baseline has no row). `table.attrs` holds metric, baseline and seeds.
    `metric` defaults to the task's PRIMARY_METRIC (or the dataset's only metric); datasets without
    that metric are skipped with a warning.
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
        table = _one_table(sel, baseline, variant_order, chosen)
        table.attrs.update(task=task, dataset=dataset)
        tables[(task, dataset)] = table
    if not tables and not df.empty:
        raise ValueError(f"no table could be built for metric {metric!r}; metrics present: "
                         f"{sorted(df['metric'].unique())}")
    return tables


def render_markdown(table: pd.DataFrame) -> str:
    """A markdown table: two decimals, best per language in bold (all tied bold), '–' if missing."""
    langs = [c for c in table.columns if c not in _EXTRA]
    best = {c: max((_shown(v) for v in table[c] if pd.notna(v)), default=None) for c in langs}

    def fmt(v, bold_if=None) -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return MISSING
        text = f"{v:.2f}"
        return f"**{text}**" if bold_if is not None and _shown(v) == bold_if else text

    header = [table.index.name or "Method", *table.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, row in table.iterrows():
        cells = [str(label)] + [fmt(row[c], best[c]) for c in langs] + [fmt(row["avg"])]
        if "Better" in table.columns:
            cells.append(row["Better"])
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def format_all(df: pd.DataFrame, baseline: str = "MAD-X", variant_order=None,
               metric: str | None = None) -> str:
    """Every dataset's table under a heading "### task / dataset (metric)"."""
    tables = paper_tables(df, baseline=baseline, variant_order=variant_order, metric=metric)
    if not tables:
        return "_No evaluation results._\n"
    parts = []
    for (task, dataset), table in tables.items():
        parts.append(f"### {task} / {dataset} ({table.attrs['metric']})\n")
        seeds = table.attrs["seeds"]
        if len(seeds) > 1:  # the papers report multi-seed means: make that visible
            parts.append(f"Mean over seeds {', '.join(map(str, seeds))}.\n")
        parts.append(render_markdown(table))
    return "\n".join(parts)
