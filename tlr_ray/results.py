"""Command line for results: export a sweep's MLflow runs to the tidy Parquet table, print tables.

    python -m tlr_ray.results export --sweep NAME --out results.parquet [--tracking-uri URI]
    python -m tlr_ray.results table (--sweep NAME [--tracking-uri URI] | --parquet FILE)

Only a thin shell over `analysis` (which never imports training code), so it starts fast.
User errors (unknown experiment, missing file) print one line and exit with status 2.
"""
from __future__ import annotations

import argparse
import os
import sys

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"


def default_tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def _add_tracking_uri(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tracking-uri", default=None, metavar="URI",
                   help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI if set, else "
                        f"{DEFAULT_TRACKING_URI}, i.e. mlflow.db in the current folder)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tlr_ray.results",
        description="Export a sweep's evaluation results from MLflow and print the paper's tables. "
                    "The MLflow experiment is named after the sweep. Tracking URI default: "
                    f"$MLFLOW_TRACKING_URI if set, else {DEFAULT_TRACKING_URI} (mlflow.db in the "
                    "current folder). See docs/results.md.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{export,table}")

    exp = sub.add_parser("export", help="write the sweep's tidy results table to Parquet")
    exp.add_argument("--sweep", required=True, help="sweep name (= MLflow experiment name)")
    exp.add_argument("--out", required=True, metavar="FILE", help="Parquet file to write")
    _add_tracking_uri(exp)

    tab = sub.add_parser("table", help="print one markdown table per evaluation dataset")
    src = tab.add_mutually_exclusive_group(required=True)
    src.add_argument("--sweep", help="read this sweep from MLflow")
    src.add_argument("--parquet", metavar="FILE", help="read a table written by `export`")
    _add_tracking_uri(tab)
    tab.add_argument("--baseline", default="MAD-X", help="row that Better compares against "
                                                         "(default: MAD-X)")
    tab.add_argument("--metric", default=None,
                     help="metric to show (default: the task's primary metric)")
    return parser


def _export(args) -> int:
    from analysis.tidy import from_mlflow, to_parquet

    uri = args.tracking_uri or default_tracking_uri()
    df = from_mlflow(args.sweep, tracking_uri=uri)
    to_parquet(df, args.out)
    print(f"exported {len(df)} rows from {df.attrs.get('runs', 0)} finished eval runs "
          f"of sweep {args.sweep!r} ({uri}) to {args.out}")
    if df.empty:
        print("warning: no finished eval runs in this sweep", file=sys.stderr)
    return 0


def _table(args) -> int:
    from analysis.render import format_all
    from analysis.tidy import from_mlflow, from_parquet

    if args.parquet is not None:
        if args.tracking_uri is not None:
            raise ValueError("--tracking-uri only applies with --sweep")
        df = from_parquet(args.parquet)
    else:
        df = from_mlflow(args.sweep, tracking_uri=args.tracking_uri or default_tracking_uri())
    print(format_all(df, baseline=args.baseline, metric=args.metric), end="")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from mlflow.exceptions import MlflowException  # bad URI, unreachable server: user errors

    from analysis.cli import run_command
    return run_command(lambda: _export(args) if args.command == "export" else _table(args),
                       (ValueError, OSError, MlflowException))


if __name__ == "__main__":
    sys.exit(main())
