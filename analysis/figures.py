"""The summary bar figure: per dataset, one bar per variant, the dataset average (PNG).

Drawn on a bare `matplotlib.figure.Figure` (Agg canvas) rather than pyplot: no global backend is
switched and no window can open, so it works on headless machines and inside other programs.
matplotlib is imported here only, so tables and tests of them do not need it.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd


def summary_figure(summary: pd.DataFrame, path: str | Path, title: str | None = None) -> Path:
    """Grouped bars of `analysis.summary.summary_table` (rows = variants, columns = datasets),
    each labelled with its value; a missing average is a gap labelled "n/a". Returns the path."""
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    datasets, variants = list(summary.columns), list(summary.index)
    metrics = summary.attrs.get("metrics", {})
    n_var = max(len(variants), 1)
    width = 0.8 / n_var
    # About a quarter inch per bar, within what a page or screen shows without zooming.
    fig = Figure(figsize=(min(16.0, max(6.0, 1.0 + len(datasets) * (0.22 * n_var + 0.5))), 5.0))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    cmap = colormaps["tab10" if n_var <= 10 else "tab20"]
    colors = [cmap(i % cmap.N) for i in range(len(variants))]
    top = float(summary.max().max()) if summary.notna().any().any() else 1.0
    for i, (variant, color) in enumerate(zip(variants, colors, strict=True)):
        xs = [d + (i - (n_var - 1) / 2) * width for d in range(len(datasets))]
        values = [summary.at[variant, c] for c in datasets]
        shown = [0.0 if pd.isna(v) else float(v) for v in values]
        bars = ax.bar(xs, shown, width=width * 0.95, label=variant, color=color)
        for bar, v in zip(bars, values, strict=True):
            text = "n/a" if pd.isna(v) else f"{v:.1f}"
            ax.annotate(text, (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        xytext=(0, 2), textcoords="offset points", ha="center", va="bottom",
                        fontsize=7, rotation=90 if n_var > 3 else 0)
    # Datasets may use different metrics (accuracy, F1, LAS): name each under its label.
    ax.set_xticks(range(len(datasets)))
    ax.set_xticklabels([f"{d}\n({metrics[d].split('/')[0]})" if d in metrics else d
                        for d in datasets])
    ax.set_ylabel("average over target languages (%)")
    ax.set_ylim(0, top * 1.18 + 1)
    ax.set_title(title or "Average score per dataset and variant")
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    if variants:
        ax.legend(title="variant", fontsize=8, ncols=min(4, n_var), loc="upper center",
                  bbox_to_anchor=(0.5, -0.16), frameon=False)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return path
