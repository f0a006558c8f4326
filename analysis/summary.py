"""Averages across datasets: one row per variant, one column per evaluation dataset (the TLR
paper's Tables 3/4), and the data behind the summary bar figure.

A cell is the `avg` of that dataset's table, so it inherits its rules: the mean over the
dataset's languages of the seed means, missing ("–") when the variant lacks any language of the
dataset. QA columns carry EM too ("F1/EM"), as in the per-dataset tables. Bold = best per column,
among the rows the tables' rules let compete for bold (`attrs["no_bold"]`: a row kept out of bold
in a dataset table, the paper's ablations, is kept out here too).
"""
from __future__ import annotations

import pandas as pd


def column_names(tables: dict) -> dict[tuple[str, str], str]:
    """The dataset's name, or "task/dataset" where two tasks evaluate a dataset of that name."""
    datasets = [dataset for _, dataset in tables]
    return {(task, dataset): dataset if datasets.count(dataset) == 1 else f"{task}/{dataset}"
            for task, dataset in tables}


def summary_table(tables: dict, row_order: list[str] | None = None) -> pd.DataFrame:
    """Variant x dataset averages from `paper_tables` output (same key order as `tables`).

    `row_order`: the row labels in order (e.g. `analysis.table.ordered_rows(df, order)`);
    rows found only in the tables follow in order of appearance.
    """
    names = column_names(tables)
    present = [r for table in tables.values() for r in table.index]
    # Rows with no table at all are left out; a row missing languages stays, shown as "–".
    rows = [r for r in (row_order or []) if r in present]
    rows += [r for r in dict.fromkeys(present) if r not in rows]
    out = pd.DataFrame(index=pd.Index(rows, name="Method"),
                       columns=[names[k] for k in tables], dtype=float)
    second, metrics = {}, {}
    for key, table in tables.items():
        col = names[key]
        out[col] = table["avg"].reindex(rows).astype(float)
        metrics[col] = table.attrs["metric"]
        if "secondary" in table.attrs:   # QA: "F1/EM" averages
            values = table.attrs["secondary"]["values"]
            for row in rows:
                second.setdefault(row, {})[col] = values.get(row, {}).get("avg", float("nan"))
            metrics[col] += "/" + table.attrs["secondary"]["metric"]
    out.attrs["metrics"] = metrics
    excluded = {r for table in tables.values() for r in table.attrs.get("no_bold", ())}
    out.attrs["no_bold"] = [r for r in rows if r in excluded]
    if second:
        out.attrs["secondary"] = {"metric": "EM", "values": second, "std": {}}
    return out
