"""Report a sweep's results: the paper's per-dataset tables with significance marks, a summary
across datasets and its bar figure, as markdown, LaTeX, CSV or a static HTML page.

    python -m analysis.report RESULTS [--baseline MAD-X] [--format markdown|latex|csv|html]
        [--out FILE] [--order V1,V2,...] [--metric M] [--show-std] [--bold-all-rows]
        [--test ttest_ind|ttest_rel|welch] [--alpha 0.05] [--resamples 1000] [--bootstrap-seed 0]
        [--figure PNG] [--tracking-uri URI]

RESULTS is a tidy Parquet file or `mlflow:<experiment>`. See docs/report.md.
User errors print `error: ...` and exit 2; data warnings print `warning: ...` (as tlr_ray.results).
"""
from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

import pandas as pd

from analysis.cli import run_command
from analysis.document import FORMATS, Report, Section, render_document
from analysis.significance import SEED_TESTS, table_marks
from analysis.summary import summary_table
from analysis.table import ALL_ROWS_RULES, PAPER_RULES, TableRules, heading, ordered_rows, paper_tables
from analysis.tidy import from_mlflow, from_parquet, validate

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"   # the same default as tlr_ray.results


def load(source: str, tracking_uri: str | None = None) -> pd.DataFrame:
    """The tidy table of `mlflow:<experiment>` or of a Parquet file."""
    if source.startswith("mlflow:"):
        uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
        return from_mlflow(source[len("mlflow:"):], tracking_uri=uri)
    if tracking_uri is not None:
        raise ValueError("--tracking-uri only applies to RESULTS of the form mlflow:<experiment>")
    return from_parquet(source)


def _notes(table: pd.DataFrame, show_std: bool) -> list[str]:
    notes = []
    seeds = table.attrs["seeds"]
    if len(seeds) > 1:
        notes.append(f"Mean over seeds {', '.join(map(str, seeds))}."
                     + (" ± = standard deviation over seeds." if show_std else ""))
    if "secondary" in table.attrs:
        notes.append("Cells are F1/EM; bold, Better and significance are decided on F1.")
    return notes


def build(df: pd.DataFrame, baseline: str = "MAD-X", order=None, metric: str | None = None,
          test: str = "ttest_ind", alpha: float = 0.05, show_std: bool = False,
          resamples: int = 1000, seed: int = 0, rules: TableRules = PAPER_RULES) -> Report:
    """Everything a report shows, format-free. `rules`: analysis.table.TableRules, default the
    TLR paper's (PAPER_RULES); ALL_ROWS_RULES is `--bold-all-rows`."""
    df = validate(df)
    tables = paper_tables(df, baseline=baseline, variant_order=order, metric=metric, rules=rules)
    sections = []
    for table in tables.values():
        marks = table_marks(table, df, test=test, alpha=alpha, resamples=resamples, seed=seed)
        sections.append(Section(heading(table), table, marks, _notes(table, show_std),
                                [marks.note()]))
    summary = None
    if tables:
        s = summary_table(tables, ordered_rows(df, order))
        summary = Section("Summary: average per dataset", s, None,
                          ["Each cell is the avg column of that dataset's table (primary metric; "
                           "QA F1/EM); – = the variant lacks a language of the dataset. "
                           + rules.describe("dataset", avg=False, ties=False) + "."])
    sweeps = sorted(df["sweep"].unique())
    title = f"Results of sweep {', '.join(sweeps)}" if sweeps else "Results"
    intro = (f"Rows are variants, columns target languages; avg = mean over the languages "
             f"(– if any is missing); Better = k/n, the languages (of n where both have a score) "
             f"where the row beats {baseline}{rules.describe_better()}. {rules.describe()}; values "
             f"in percent, two decimals.")
    return Report(title, intro, sections, summary, show_std=show_std)


def write(report: Report, fmt: str, out: str | None, figure: str | None = None) -> list[Path]:
    """Print or write the report; writes the summary PNG where asked (always for html with --out,
    next to the page). Returns the files written."""
    written = []
    if figure is None and fmt == "html" and out is not None:
        figure = str(Path(out).with_name(Path(out).stem + "-summary.png"))
    if figure is not None and report.summary is not None and len(report.summary.table.columns):
        from analysis.figures import summary_figure  # matplotlib only when a figure is made
        Path(figure).parent.mkdir(parents=True, exist_ok=True)
        written.append(summary_figure(report.summary.table, figure,
                                      title=f"{report.title}: average per dataset"))
        base = Path(out).resolve().parent if out is not None else Path.cwd()
        report.figure = os.path.relpath(Path(figure).resolve(), base)
    text = render_document(report, fmt)
    if out is None:
        sys.stdout.write(text)
    else:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text, encoding="utf-8")
        written.insert(0, Path(out))
    return written


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m analysis.report", description=__doc__.split(
        "\n\n")[0] + " See docs/report.md.")
    p.add_argument("results", metavar="RESULTS",
                   help="tidy Parquet file, or mlflow:<experiment> (the sweep name)")
    p.add_argument("--baseline", default="MAD-X", help="row compared against (default: MAD-X)")
    p.add_argument("--format", choices=FORMATS, default="markdown", help="default: markdown")
    p.add_argument("--out", metavar="FILE", help="write here instead of stdout (html: the PNG "
                                                 "figure is written next to it)")
    p.add_argument("--order", help="row order, comma-separated (unlisted variants follow)")
    p.add_argument("--metric", help="metric to show (default: each task's primary metric)")
    p.add_argument("--show-std", action="store_true", help="cells read 'mean ± std' over seeds")
    p.add_argument("--bold-all-rows", action="store_true",
                   help="the rules before the TLR paper's: every row competes for bold (the "
                        "ablations LEAVE-OUT-TASK/-TARG too, so the mark may sit on them), BAD-X "
                        "has a Better count, avg is not bolded")
    p.add_argument("--test", choices=list(SEED_TESTS), default="ttest_ind",
                   help="t-test over seeds (default: ttest_ind)")
    p.add_argument("--alpha", type=float, default=0.05, help="significance level (default 0.05)")
    p.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (default 1000)")
    p.add_argument("--bootstrap-seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--figure", metavar="PNG", help="also write the summary bar figure here")
    p.add_argument("--tracking-uri", metavar="URI",
                   help="for mlflow:<experiment> (default: $MLFLOW_TRACKING_URI if set, else "
                        f"{DEFAULT_TRACKING_URI})")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    errors: tuple = (ValueError, OSError)
    if args.results.startswith("mlflow:"):   # importing mlflow is slow: only when reading it
        from mlflow.exceptions import MlflowException
        errors += (MlflowException,)
    return run_command(lambda: _report(args), errors)


def _report(args: argparse.Namespace) -> int:
    if not 0 < args.alpha < 1 or args.resamples < 1:
        raise ValueError("--alpha must be in (0, 1) and --resamples at least 1")
    order = [v.strip() for v in args.order.split(",") if v.strip()] if args.order else None
    df = load(args.results, args.tracking_uri)
    if df.empty:
        warnings.warn(f"no evaluation results in {args.results}", stacklevel=1)
    report = build(df, baseline=args.baseline, order=order, metric=args.metric,
                   test=args.test, alpha=args.alpha, show_std=args.show_std,
                   resamples=args.resamples, seed=args.bootstrap_seed,
                   rules=ALL_ROWS_RULES if args.bold_all_rows else PAPER_RULES)
    written = write(report, args.format, args.out, args.figure)
    if written:
        print("wrote " + ", ".join(map(str, written)), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
