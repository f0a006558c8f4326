"""Result analysis: read the tidy results table (from MLflow or its Parquet export) and render the
paper's tables. This package never imports `tlr_ray` or torch, so results can be inspected on a
machine that has only pandas, pyarrow and mlflow. See docs/results.md.

Reports (significance marks, summary, figure, LaTeX/CSV/HTML): `python -m analysis.report`, see
docs/report.md. Those modules (report, render, document, significance, predictions, summary,
figures) are not imported here, so `import analysis` stays free of scipy and matplotlib.
"""
from analysis.render import format_all, render_markdown
from analysis.table import PRIMARY_METRIC, paper_tables
from analysis.tidy import TIDY_COLUMNS, from_mlflow, from_parquet, to_parquet, validate

__all__ = [
    "PRIMARY_METRIC",
    "TIDY_COLUMNS",
    "format_all",
    "from_mlflow",
    "from_parquet",
    "paper_tables",
    "render_markdown",
    "to_parquet",
    "validate",
]
