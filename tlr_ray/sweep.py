"""python -m tlr_ray.sweep SWEEP.yaml [--dry-run [--json]]

Load and check the sweep, plan it, run the plan on Ray (local cluster, RAY_ADDRESS, or the cluster of a
`ray job submit`), log to MLflow, and print the paper-style table. Running it again reuses every
finished job: nothing is trained twice and the same table comes out.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

from tlr_ray.plan import describe, plan_sweep
from tlr_ray.storage import check as storage_problem
from tlr_ray.tasks import DataError
from tlr_ray.typed_yaml import ConfigError
from tlr_ray.validate import load_sweep


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tlr_ray.sweep", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sweep", help="a sweep file, e.g. sweeps/demo.yaml")
    p.add_argument("--dry-run", action="store_true", help="print the plan and exit (no Ray, no torch)")
    p.add_argument("--json", action="store_true", help="with --dry-run: the plan as JSON (docs/plan-json.md)")
    p.add_argument("--storage", help="storage root, a folder or an s3://, gs://... URI (overrides "
                   "execution.storage)")
    p.add_argument("--verbose", action="store_true", help="stream Ray worker logs to this terminal")
    p.add_argument("--tracking-uri", help="MLflow store (overrides execution.tracking_uri; "
                   "MLFLOW_TRACKING_URI overrides both)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.storage and (problem := storage_problem(args.storage)):
        print(f"error: --storage {problem}", file=sys.stderr)
        return 2
    try:
        sweep = load_sweep(args.sweep)
        plan = plan_sweep(sweep)
    except (ConfigError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001  a mistake the checks missed: still an error line, not a traceback
        if args.verbose:
            raise
        print(f"error: {args.sweep}: the sweep could not be checked and planned ({type(e).__name__}: {e}). "
              "This is a gap in tlr_ray's checks, which should have named the key: please report it; "
              "--verbose shows the traceback", file=sys.stderr)
        return 2
    if args.dry_run:
        print(plan.to_json() if args.json else f"{describe(plan, args.sweep)}\n{estimate_for(sweep, plan)}")
        if sweep.config.search and not args.json:
            s = sweep.config.search
            print(f"Search: {s.num_samples} Optuna trials of {s.variant} on {s.task} over "
                  f"{', '.join(s.params)} run before the ta stage; the ta and eval ids above use the sweep's "
                  "train_args and change to the best arguments found")
        for problem in sweep.problems:
            print(f"before running, fix: {problem}", file=sys.stderr)
        return 0
    if sweep.problems:
        for problem in sweep.problems:
            print(f"error: {problem}", file=sys.stderr)
        return 2
    return run(sweep, plan, args)


def estimate_for(sweep, plan) -> str:
    from tlr_ray.cost import estimate, model_key
    sizes = {name: d.sizes for name, d in sweep.datasets.items()}
    return estimate(plan, model_key(sweep.config.model), sweep.config.execution.estimate_on,
                    {n: s["train"] for n, s in sizes.items() if "train" in s},
                    {n: s["eval"] for n, s in sizes.items() if "eval" in s})


def run(sweep, plan, args) -> int:
    from analysis.render import format_all
    from analysis.tidy import from_mlflow
    from tlr_ray import storage as store
    from tlr_ray.execute import execute
    from tlr_ray.tracking import Tracker, tracking_uri, unreachable
    storage = store.resolve(args.storage or sweep.config.execution.storage)
    uri = tracking_uri(args.tracking_uri or sweep.config.execution.tracking_uri)
    os.environ["MLFLOW_TRACKING_URI"] = uri  # one store for this process and what it starts
    print(describe(plan, args.sweep).split("\nJobs:")[0])
    print(f"artifacts: {storage}\nMLflow:    {uri} (experiment {sweep.name!r})", flush=True)
    if problem := store.unwritable(storage):
        print(f"error: storage {problem}", file=sys.stderr)
        return 2
    try:
        tracker = Tracker(uri, sweep.name, artifact_root=store.join(storage, "mlflow-artifacts"))
    except Exception as e:  # noqa: BLE001
        if not unreachable(e):
            raise
        print(f"error: MLflow at {uri} is unreachable ({str(e).splitlines()[0][:300]}); start the tracking "
              "server, or give another store with --tracking-uri (default: a SQLite file)", file=sys.stderr)
        return 2
    tracker.start_execution(dataclasses.asdict(sweep.config), plan.to_json(), Path(args.sweep).read_text())
    tracker.save_views(plan.of_kind("eval"))  # the runs page's Views: one comparison of the variants per dataset
    status = "FAILED"  # what an exception leaves: the execution and its open job runs marked failed
    try:
        summary = execute(sweep, plan, storage, tracker, args.verbose)
        status = "KILLED" if summary.interrupted else "FAILED" if summary.failed else "FINISHED"
    except KeyboardInterrupt:  # a second Ctrl-C, or one outside Tune's run
        status = "KILLED"
        print("\ninterrupted: nothing finished is lost; run the same command again to resume", file=sys.stderr)
        return 130
    finally:
        tracker.end_execution(status)
    print(f"\n{len(summary.ran)} jobs run, {len(summary.reused)} reused, {len(summary.failed)} failed "
          f"in {summary.seconds:.0f} s")
    if summary.trial_seconds:
        print(summary.overhead())
    for job_id, why in summary.failed.items():
        print(f"  FAILED {job_id}: {why}")
    if summary.interrupted:
        print("interrupted (Ctrl-C): the running jobs were stopped and their MLflow runs marked KILLED; "
              "finished jobs and the last checkpoints are kept. Run the same command again to resume.",
              file=sys.stderr)
        return 130
    if tracker.lost:
        print(f"error: MLflow at {uri} stopped answering ({tracker.lost}). Training went on: every job that "
              f"finished is stored under {storage}, but its results are not all in MLflow. Once the server is "
              "back, run the same command: it logs what is missing and trains nothing again.", file=sys.stderr)
        return 1
    print()
    print(format_all(from_mlflow(sweep.name, uri)))
    write_report(sweep.name, uri, storage, tracker)
    datasets = sorted({j.dataset for j in plan.of_kind("eval") if j.dataset})
    if datasets:
        print(f"MLflow UI: mlflow ui --backend-store-uri {uri}, then (\"Model training\", experiment "
              f"{sweep.name!r}, Views):")
        for dataset in datasets:
            print(f"  {dataset}: {tracker.view_url(dataset)}")
    return 1 if summary.failed else 0


def write_report(name: str, uri: str, storage: str, tracker=None) -> None:
    """The sweep's report (docs/report.md), Markdown and HTML with its figure, and the tidy table
    `results.parquet`, in <storage>/reports/<name>/; with `tracker`, also the artifacts `report/...` of its
    execution run, viewable in the MLflow UI. For a remote store it is written to a local temp folder, then
    every file is uploaded there (the HTML links its figure by a relative name, so the uploaded folder stays
    whole). A report that cannot be written is reported, not fatal: every result is in MLflow and
    `python -m analysis.report` can retry."""
    import shutil
    import tempfile

    from analysis import report
    from tlr_ray import storage as store
    target = store.join(storage, "reports", name)
    folder = Path(target) if store.is_local(storage) else Path(tempfile.mkdtemp(prefix=f"tlr_ray-report-{name}-"))
    try:
        for fmt, file in (("markdown", "report.md"), ("html", "report.html")):
            code = report.main([f"mlflow:{name}", "--tracking-uri", uri, "--format", fmt,
                                "--out", str(folder / file)])
            if code:
                raise RuntimeError(f"analysis.report exited with {code}")
        try:
            from analysis.tidy import from_mlflow, to_parquet
            to_parquet(from_mlflow(name, uri), folder / "results.parquet")
        except Exception as e:  # noqa: BLE001  (the report stands without it)
            print(f"warning: no results.parquet next to the report ({e})", file=sys.stderr)
        if not store.is_local(storage):
            fs, root = store.filesystem(storage)
            for f in sorted(folder.iterdir()):
                store.upload(fs, f, f"{root}/reports/{name}/{f.name}")
        others = ", ".join(f.name for f in sorted(folder.iterdir()) if f.name != "report.html")
        print(f"report: {store.join(target, 'report.html')} (and {others})")
        if tracker is not None and tracker.parent_id:
            try:
                tracker.log_report(folder)
                run = tracker.client.get_run(tracker.parent_id)
                print(f"         and in MLflow: artifacts report/ of run {run.info.run_name!r}")
            except Exception as e:  # noqa: BLE001
                print(f"warning: the report is not in MLflow ({e})", file=sys.stderr)
    except Exception as e:  # noqa: BLE001
        out = store.join(target, "report.html") if store.is_local(storage) else f"reports/{name}/report.html"
        print(f"warning: no report written ({e}); retry with: python -m analysis.report mlflow:{name} "
              f"--tracking-uri {uri} --format html --out {out}", file=sys.stderr)
    finally:
        if not store.is_local(storage):
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
