"""MLflow: one experiment per sweep, a parent run per sweep execution, one run per job.

Only the driver writes to MLflow (from a Ray Tune callback), so the embedded SQLite store has a single
writer and workers on other nodes need no access to it. A job has at most one run, found by its
`job_id` tag: a resumed or retried job reuses its run instead of adding a second one.
Tags and metric names are a contract read by `analysis/` (docs/results.md).

A tracking server that stops answering mid-sweep (`lost`) does not stop the training: MLflow's client
retries each call (fewer, shorter retries than its default, see `Tracker`), then the Tracker stops
writing for the rest of this execution, the jobs go on publishing their artifacts, and the driver ends
with an error that says so; the same command, once the server is back, logs what is missing (one run per
job: `ensure_logged`).
"""
from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import socket
import time
from pathlib import Path

from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from tlr_ray.leases import alive
from tlr_ray.plan import Job
from tlr_ray.storage import is_local, join

DEFAULT_URI = "sqlite:///mlflow.db"
# The experiment's description (shown on the MLflow home page and in the experiment's header).
NOTE_TAG, NOTE_MARK = "mlflow.note.content", "tlr_ray sweep"
# A saved view of the runs page (its "Views" menu) is an experiment tag `mlflow.sharedViewState.<id>`, opened by
# `#/experiments/<experiment>/runs?viewStateShareKey=<id>` (MLflow 3.17's JS bundle, module 53787).
VIEW_TAG = "mlflow.sharedViewState."
log = logging.getLogger(__name__)


def unreachable(error: BaseException) -> bool:
    """Whether `error` says the tracking server could not be reached (not that it refused a request). A server
    stopped while it answers breaks the response mid-body (ChunkedEncodingError, urllib3's IncompleteRead):
    that is a lost server too."""
    import requests
    lost = (requests.exceptions.ConnectionError, requests.exceptions.Timeout, requests.exceptions.ChunkedEncodingError,
            ConnectionError)
    seen = error
    while seen is not None:
        if isinstance(seen, lost):
            return True
        seen = seen.__cause__ or seen.__context__
    text = str(error)
    return any(s in text for s in ("Max retries exceeded", "Connection refused", "Failed to establish a new connection",
                                   "Read timed out", "Connection broken", "IncompleteRead"))


def while_reachable(default=None):
    """A Tracker write that, once the server is lost, is skipped (returns `default`) instead of raising:
    the first call that finds it unreachable records why in `tracker.lost`."""
    def wrap(method):
        @functools.wraps(method)
        def guarded(self, *args, **kwargs):
            if self.lost:
                return default
            try:
                return method(self, *args, **kwargs)
            except Exception as e:
                if not unreachable(e):
                    raise
                self.lost = f"{time.strftime('%H:%M:%S')}: {str(e).splitlines()[0][:300]}"
                log.warning("MLflow at %s is unreachable (%s); the sweep goes on without logging", self.uri, e)
                print(f"warning: MLflow at {self.uri} stopped answering; training goes on, the results are "
                      "logged by a rerun of the same command once it is back", flush=True)
                return default
        return guarded
    return wrap


@contextlib.contextmanager
def first_use(uri: str):
    """Hold a lock file next to a SQLite store while it is opened (MLflow creates and migrates its schema on
    first use: two processes doing that at once corrupt its version table) and its experiment is created.
    Other stores (a server) serialise that themselves."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    import fcntl
    db = Path(uri[len("sqlite:///"):])
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{db}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def tracking_uri(configured: str | None) -> str:
    """MLFLOW_TRACKING_URI wins over the sweep file, which wins over the default."""
    return os.environ.get("MLFLOW_TRACKING_URI") or configured or DEFAULT_URI


def run_name(job: Job) -> str:
    ratio = f" {job.ratio}" if job.ratio else ""
    if job.kind == "corpus":
        return f"corpus {job.languages[0]}"
    if job.kind == "la":
        return f"LA {job.languages[0]}"
    if job.kind == "ba":
        return f"BA {'+'.join(job.languages)}{ratio}"
    if job.kind == "ta":
        return f"TA {job.variant}{ratio} / {job.task} / [{','.join(job.languages)}] / seed {job.seed}"
    return f"{job.variant}{ratio} / {job.task} / {job.dataset} / {job.target} / seed {job.seed}"


def job_tags(sweep: str, job: Job) -> dict[str, str]:
    tags = {"kind": job.kind, "sweep": sweep, "job_id": job.id, "task": job.task or "",
            "dataset": job.dataset or "", "variant": job.variant or "", "variants": ",".join(job.variants),
            "seed": "" if job.seed is None else str(job.seed), "ratio": job.ratio or "",
            "languages": ",".join(job.languages), "target": job.target or "",
            "mlflow.runName": run_name(job)}
    return tags


def _flatten(prefix: str, obj) -> dict[str, str]:
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            out.update(_flatten(f"{prefix}.{k}" if prefix else str(k), v))
        return out
    return {prefix: json.dumps(obj) if isinstance(obj, (list, tuple)) else str(obj)}


def describe_experiment(sweep: str) -> str:
    return (f"{NOTE_MARK} {sweep}. Runs: the \"Model training\" view (top of the sidebar). Views: per evaluation "
            "dataset, the average `score` per variant. Report: Artifacts of a \"sweep ...\" run.")


def primary_metric(task: str | None, metrics: dict) -> str | None:
    """The name of the metric (of an eval job's raw `metrics`) that the report's tables show: the task's primary
    metric (tlr_ray/tasks/registry.py), or the only metric of another task; None if it has neither."""
    from tlr_ray.tasks.registry import TASKS
    names = [k for k, v in metrics.items()
             if k != "examples" and isinstance(v, (int, float)) and not isinstance(v, bool)]
    name = TASKS[task].metric if task in TASKS else None
    if name is None and len(names) == 1:
        name = names[0]
    return name if name in names else None


def view_id(dataset: str) -> str:
    return "tlr_ray-variants-" + "".join(c if c.isalnum() or c in "-_" else "-" for c in dataset)


def comparison_view(dataset: str, with_ratio: bool = False) -> dict:
    """The runs-page state that compares the variants on `dataset`: its eval runs, grouped by tag `variant`
    (and `ratio` when BAD-X ratios are swept), the average of `score` per group in the table and the chart."""
    keys = [{"mode": "tag", "groupByData": "variant"}]
    if with_ratio:
        keys.append({"mode": "tag", "groupByData": "ratio"})
    return {"searchFilter": f"tags.kind = 'eval' and tags.dataset = '{dataset}'",
            "orderByKey": "attributes.start_time", "orderByAsc": False, "startTime": "ALL",
            "lifecycleFilter": "Active", "datasetsFilter": [], "modelVersionFilter": "All Runs",
            "selectedColumns": ["metrics.`score`", "tags.`metric_name`", "tags.`target`", "tags.`seed`"],
            "runsHiddenMode": "SHOW_ALL", "groupBy": {"aggregateFunction": "average", "groupByKeys": keys},
            "useGroupedValuesInCharts": True, "hideEmptyCharts": True, "chartsSearchFilter": "score"}


class Tracker:
    def __init__(self, uri: str, sweep: str, artifact_root: str | None = None):
        """`artifact_root`: where a new experiment keeps MLflow's own artifacts (the plan, the sweep file),
        a folder or a URI; by default MLflow's, a `mlruns/` folder in the current directory.
        An unreachable server fails here, before any job runs (the caller reports it)."""
        if uri.startswith(("http://", "https://")):
            # MLflow's default retries a call for about 4 minutes (7 tries, backoff 2 s); per callback of a
            # sweep that is too long: about 30 s, then the sweep goes on without the server (`lost`).
            for k, v in (("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "4"), ("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1"),
                         ("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")):
                os.environ.setdefault(k, v)
        self.lost: str | None = None      # why and since when the server is unreachable, once it is
        self.open_runs: set[str] = set()  # job runs started by this execution and not yet ended
        self.uri, self.sweep = uri, sweep
        location = (None if not artifact_root else join(artifact_root, sweep) if not is_local(artifact_root)
                    else Path(artifact_root, sweep).resolve().as_uri())
        with first_use(uri):  # two drivers starting at once on a new store: one creates it, the other waits
            self.client = MlflowClient(tracking_uri=uri)
            exp = self.client.get_experiment_by_name(sweep)
            self.experiment_id = exp.experiment_id if exp else self.client.create_experiment(sweep, location)
        # The experiment kind of MLflow builds that read it (MLflow 3.17's own UI does not: its landing page
        # follows the browser's "GenAI / Model training" switch, see docs/results.md "In the MLflow UI").
        self.client.set_experiment_tag(self.experiment_id, "mlflow.experimentKind", "custom_model_development")
        note = (exp.tags.get(NOTE_TAG, "") if exp else "")
        if not note or note.startswith(NOTE_MARK):  # ours, or none yet: never a description a person wrote
            self.client.set_experiment_tag(self.experiment_id, NOTE_TAG, describe_experiment(sweep))
        self.parent_id: str | None = None

    @while_reachable()
    def start_execution(self, config: dict, plan_json: str, sweep_yaml: str) -> str:
        self.close_dead_executions()
        run = self.client.create_run(self.experiment_id, run_name=f"sweep {time.strftime('%Y-%m-%d %H:%M:%S')}",
                                     tags={"kind": "sweep", "sweep": self.sweep, "driver_host": socket.gethostname(),
                                           "driver_pid": str(os.getpid())})
        self.parent_id = run.info.run_id
        params = [Param(k[:250], v[:6000]) for k, v in _flatten("", config).items()]
        for i in range(0, len(params), 100):
            self.client.log_batch(self.parent_id, params=params[i:i + 100])
        self.client.log_text(self.parent_id, plan_json, "plan.json")
        self.client.log_text(self.parent_id, sweep_yaml, "sweep.yaml")
        return self.parent_id

    @while_reachable()
    def end_execution(self, status: str) -> None:
        """End the execution run, and every job run it left open (a Ctrl-C: KILLED; a crash: FAILED)."""
        for run_id in sorted(self.open_runs):
            self.fail_job(run_id, "the sweep ended before this job did",
                          status=status if status == "KILLED" else "FAILED")
        if self.parent_id:
            self.client.set_terminated(self.parent_id, status)

    @while_reachable()
    def tag_run(self, run_id: str, tags: dict[str, str]) -> None:
        for k, v in tags.items():
            self.client.set_tag(run_id, k, v)

    @while_reachable([])
    def save_views(self, eval_jobs) -> list[str]:
        """A saved view of the runs page per evaluation dataset of `eval_jobs` (see `comparison_view`); a rerun
        replaces the sweep's views. Returns their names, as the UI lists them under Views."""
        names = []
        for dataset in sorted({j.dataset for j in eval_jobs if j.dataset}):
            ratio = any(j.ratio for j in eval_jobs if j.dataset == dataset)
            name, now = f"{dataset}: variants", int(time.time() * 1000)
            envelope = {"name": name, "createdAt": now, "updatedAt": now,
                        "state": json.dumps(comparison_view(dataset, ratio))}
            self.client.set_experiment_tag(self.experiment_id, VIEW_TAG + view_id(dataset), json.dumps(envelope))
            names.append(name)
        return names

    def view_url(self, dataset: str, base: str = "http://127.0.0.1:5000") -> str:
        """The address of the saved view of `dataset` in `mlflow ui` served at `base`."""
        return (f"{base}/#/experiments/{self.experiment_id}/runs?viewStateShareKey={view_id(dataset)}"
                "&workflowType=machine_learning")

    @while_reachable()
    def log_report(self, folder: Path, run_id: str | None = None) -> None:
        """The files of the report folder (report.html, report.md, figures, results.parquet) as artifacts
        `report/...` of the execution run. MLflow shows an HTML artifact from a blob: URL, where a relative
        <img src> does not load, so its copy of report.html carries its figures inline."""
        import base64
        import re
        import shutil
        import tempfile
        run_id = run_id or self.parent_id
        if not run_id:
            return
        with tempfile.TemporaryDirectory(prefix="tlr_ray-report-") as tmp:
            for f in sorted(Path(folder).iterdir()):
                if not f.is_file():
                    continue
                if f.suffix == ".html":
                    def inline(m, here=f.parent):
                        img = here / m.group(2)
                        if m.group(2).endswith(".png") and img.is_file():
                            return f'{m.group(1)}"data:image/png;base64,{base64.b64encode(img.read_bytes()).decode()}"'
                        return m.group(0)
                    text = re.sub(r'(<img[^>]*\bsrc=)"([^":]+)"', inline, f.read_text(encoding="utf-8"))
                    Path(tmp, f.name).write_text(text, encoding="utf-8")
                else:
                    shutil.copy2(f, Path(tmp, f.name))
            self.client.log_artifacts(run_id, tmp, "report")

    def close_dead_executions(self) -> None:
        """Runs left RUNNING by a sweep driver that was killed (SIGKILL, OOM, a lost node) are marked FAILED,
        the execution and its unfinished job runs, so the UI does not show them as still going. Only a
        driver known dead is judged: one on this host whose process is gone."""
        running = "attributes.status = 'RUNNING'"
        for parent in self.client.search_runs([self.experiment_id], f"tags.kind = 'sweep' and {running}"):
            tags = parent.data.tags
            pid = int(tags.get("driver_pid", 0))
            # Our own pid can only be a dead driver's reused one (a restarted container): we have no run yet.
            if tags.get("driver_host") != socket.gethostname() or (pid != os.getpid() and alive(pid)):
                continue
            why = f"the sweep driver (pid {tags.get('driver_pid')}) died"
            children = f"tags.mlflow.parentRunId = '{parent.info.run_id}' and {running}"
            for run in self.client.search_runs([self.experiment_id], children):
                self.fail_job(run.info.run_id, why)
            self.fail_job(parent.info.run_id, why)

    def find_run(self, job_id: str):
        runs = self.client.search_runs([self.experiment_id], f"tags.job_id = '{job_id}'",
                                       order_by=["attributes.start_time DESC"], max_results=10)
        return runs[0] if runs else None

    @while_reachable()
    def start_job(self, job: Job) -> str:
        """The run for `job`: its existing one if it has one (a retried, resumed or retrained job keeps
        its single run, now under this execution), else a new one."""
        existing = self.find_run(job.id)
        if existing is not None:
            self.client.update_run(existing.info.run_id, status="RUNNING")
            if self.parent_id:
                self.client.set_tag(existing.info.run_id, "mlflow.parentRunId", self.parent_id)
            self.open_runs.add(existing.info.run_id)
            return existing.info.run_id
        tags = job_tags(self.sweep, job)
        if self.parent_id:
            tags["mlflow.parentRunId"] = self.parent_id
        run = self.client.create_run(self.experiment_id, tags=tags)
        params = [Param(k[:250], v[:6000]) for k, v in _flatten("", job.record()).items()]
        for i in range(0, len(params), 100):
            self.client.log_batch(run.info.run_id, params=params[i:i + 100])
        self.open_runs.add(run.info.run_id)
        return run.info.run_id

    @while_reachable()
    def log_live(self, run_id: str, metrics: dict, step: int) -> None:
        from math import isfinite  # NaN or inf is never a score: such a value is not logged
        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in metrics.items()
                 if isinstance(v, (int, float)) and not isinstance(v, bool) and isfinite(v)]
        if batch:
            self.client.log_batch(run_id, metrics=batch)

    @while_reachable()
    def finish_job(self, job: Job, run_id: str, manifest: dict, location: str) -> None:
        """`location`: the job's artifact folder or URI (adapter, predictions.parquet, manifest.json)."""
        self.log_live(run_id, final_metrics(job, manifest["metrics"]), step=0)
        self._tag_score(job, run_id, manifest["metrics"])
        self.client.set_tag(run_id, "artifact", location)
        self.client.set_terminated(run_id, "FINISHED")
        self.open_runs.discard(run_id)

    def _tag_score(self, job: Job, run_id: str, metrics: dict) -> None:
        if job.kind == "eval" and (name := primary_metric(job.task, metrics)):
            self.client.set_tag(run_id, "metric_name", name)

    @while_reachable()
    def fail_job(self, run_id: str, error: str, status: str = "FAILED") -> None:
        self.client.set_tag(run_id, "error", error[:5000])
        self.client.set_terminated(run_id, status)
        self.open_runs.discard(run_id)

    @while_reachable(False)
    def ensure_logged(self, job: Job, manifest: dict, location: str) -> bool:
        """A job finished earlier (its artifact verified): make sure it has one finished run.
        Returns True when a run had to be created or completed (e.g. a new tracking store)."""
        existing = self.find_run(job.id)
        if existing is not None and existing.info.status == "FINISHED":
            if job.kind == "eval" and "score" not in existing.data.metrics:  # logged by a version before `score`
                score = final_metrics(job, manifest["metrics"]).get("score")
                self.log_live(existing.info.run_id, {} if score is None else {"score": score}, step=0)
                self._tag_score(job, existing.info.run_id, manifest["metrics"])
            return False
        self.finish_job(job, self.start_job(job), manifest, location)
        return True


def final_metrics(job: Job, metrics: dict) -> dict:
    """Eval metrics become `<dataset>/<target>/<metric>` (percent); others keep their names. An eval run also
    gets its primary metric (`primary_metric`) under the one name `score`, tagged `metric_name`, so the MLflow
    UI can average one column per variant across languages."""
    numeric = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    if job.kind != "eval":
        return numeric
    out = {f"{job.dataset}/{job.target}/{k}": v for k, v in numeric.items() if k != "examples"}
    if name := primary_metric(job.task, numeric):
        out["score"] = numeric[name]
    return out
