"""Where a sweep's time goes: a small demo sweep run as `python -m tlr_ray.sweep` would run it, in this
process, on a fresh local Ray cluster, with its own storage root and MLflow SQLite file in a temp folder.

    .venv/bin/python -m benchmarks.overhead                  # 3 LAs, 3 TAs, 4 evals (+ 3 corpus jobs), 20 steps
    .venv/bin/python -m benchmarks.overhead --steps 50 --keep --json overhead.json

It prints, per job kind and summed over the sweep, where a trial's time went, as a Markdown table
(docs/architecture.md, "Where a trial's time goes"), and training / wall. The figures come from
  - the trials' last Tune report (`time_*`, tlr_ray/execute.py `job_trial`): its imports, the Ray Train
    worker group's start (the trial's clock before `fit()` to the worker function's first line), the
    worker's imports, and what the worker measured (tlr_ray/runner.py `run_job`: checking inputs,
    importing the recipe, publishing; the recipe's `time_model_s`, `time_data_s`, `time_eval_s`,
    `time_save_s` and the loop's `train_seconds`);
  - this process, the driver: when Tune started and completed each trial (wrapping TrackingCallback's
    hooks) and how long each MLflow call took (wrapping the Tracker's methods).
The demo world and the token cache are the usual ones (~/.cache/tlr_ray, or TLR_RAY_CACHE): data loading
is then a cache hit, as in every sweep after the first; `--fresh-cache` starts from an empty cache
(building the demo world there first, about 30 s, not counted).
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
KINDS = ("corpus", "la", "ba", "ta", "eval")
# (row label, how it is computed from one job's figures; see `phases`)
ROWS = [
    ("trial start (Tune: process/actor, trial set-up)", "start"),
    ("imports (trial, Train worker, recipe)", "imports"),
    ("Ray Train worker-group start", "worker_start"),
    ("inputs: verify needed artifacts", "inputs"),
    ("model + adapter loading", "model"),
    ("data loading (tokenise / cache hit / memmap)", "data"),
    ("training loop (without its evaluations)", "train"),
    ("evaluation", "eval"),
    ("saving + publishing + verifying the artifact", "publish"),
    ("Ray Train: after the worker fn (stop, reports)", "train_stop"),
    ("rest (recipe set-up, Tune reporting, driver)", "rest"),
]


def small_sweep(folder: Path, steps: int, ray_train: str = "auto") -> Path:
    """sweeps/demo.yaml shrunk: LAs en, sw, th; TAs MAD-X [en], BILINGUAL [en,sw] and [en,th]; four evals
    (2 variants x 2 XNLI targets); `steps` training steps per adapter; `ray_train` as execution.ray_train."""
    sweep = yaml.safe_load((ROOT / "sweeps" / "demo.yaml").read_text())
    tiny = {"max_steps": steps, "eval_every": max(1, steps // 2), "batch_size": 16, "max_seq_length": 48}
    sweep.update(name="overhead", variants=["MAD-X", "BILINGUAL"])
    sweep["tasks"]["nli"].update(eval=["demo_xnli"], train_args={**tiny, "max_eval_examples": 50})
    sweep["language_adapters"].update(train_args=tiny, max_corpus_lines=400)
    del sweep["language_adapters"]["corpora"]["yo"]
    sweep["execution"]["ray_train"] = ray_train
    path = folder / "overhead.yaml"
    path.write_text(yaml.safe_dump(sweep, sort_keys=False))
    return path


class Probe:
    """What the driver sees: trial start/end times, final results, MLflow time per job kind."""

    def __init__(self):
        self.started: dict[str, float] = {}
        self.completed: dict[str, float] = {}
        self.results: dict[str, dict] = {}
        self.kinds: dict[str, str] = {}
        self.failed: set[str] = set()
        self.mlflow: dict[str, float] = defaultdict(float)
        self.mlflow_calls: dict[str, int] = defaultdict(int)
        self.run_kind: dict[str, str] = {}
        self.phases: dict[str, float] = defaultdict(float)
        self._depth = 0

    def install(self) -> None:
        from tlr_ray import execute, tracking
        from tlr_ray import sweep as sweep_cli
        for name in ("start_execution", "end_execution", "close_dead_executions", "find_run", "start_job",
                     "log_live", "finish_job", "fail_job", "ensure_logged"):
            if hasattr(tracking.Tracker, name):
                setattr(tracking.Tracker, name, self._mlflow(getattr(tracking.Tracker, name)))
        cb = execute.TrackingCallback
        cb.on_trial_start = self._hook(cb.on_trial_start, self._on_start)
        cb.on_trial_result = self._hook(cb.on_trial_result, self._on_result)
        cb.on_trial_complete = self._hook(cb.on_trial_complete, self._on_complete)
        cb.on_trial_error = self._hook(cb.on_trial_error, self._on_error)
        execute.connect = self._phase("ray start", execute.connect)
        execute.execute = self._phase("execute", execute.execute)
        sweep_cli.write_report = self._phase("report", sweep_cli.write_report)

    def _mlflow(self, method):
        from tlr_ray.plan import Job

        @functools.wraps(method)
        def timed(tracker, *args, **kwargs):
            if self._depth:  # called by another Tracker method: counted there
                return method(tracker, *args, **kwargs)
            job = next((a for a in args if isinstance(a, Job)), None)
            kind = job.kind if job else self.run_kind.get(args[0] if args and isinstance(args[0], str) else "",
                                                           "sweep")
            self._depth += 1
            t = time.perf_counter()
            try:
                out = method(tracker, *args, **kwargs)
            finally:
                self._depth -= 1
                self.mlflow[kind] += time.perf_counter() - t
                self.mlflow_calls[kind] += 1
            if method.__name__ == "start_job" and job and isinstance(out, str):
                self.run_kind[out] = job.kind
            return out
        return timed

    @staticmethod
    def _hook(method, before):
        @functools.wraps(method)
        def hooked(callback, iteration, trials, trial, *args, **kwargs):
            before(callback.job_for(trial), *args, **kwargs)
            return method(callback, iteration, trials, trial, *args, **kwargs)
        return hooked

    def _on_start(self, job, **info):
        self.started[job.id], self.kinds[job.id] = time.time(), job.kind

    def _on_result(self, job, result=None, **info):
        if result is not None and "job_seconds" in result:
            self.results[job.id] = {k: v for k, v in result.items() if isinstance(v, (int, float))}

    def _on_complete(self, job, **info):
        self.completed[job.id] = time.time()

    def _on_error(self, job, **info):
        self.completed[job.id] = time.time()
        self.failed.add(job.id)

    def _phase(self, name: str, fn):
        @functools.wraps(fn)
        def timed(*args, **kwargs):
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.phases[name] += time.perf_counter() - t
        return timed


def phases(kind: str, r: dict, trial_total: float, start: float) -> dict[str, float]:
    """One job's seconds per row of ROWS; they sum to `trial_total` (the driver's start to completion)."""
    def g(key: str) -> float:
        return float(r.get(key, 0.0))
    p = {"start": max(0.0, start),
         "imports": g("time_trial_imports_s") + g("time_worker_imports_s") + g("time_imports_s"),
         "worker_start": g("time_worker_start_s"), "inputs": g("time_inputs_s"),
         "model": g("time_model_s"), "data": g("time_data_s"), "eval": g("time_eval_s"),
         "publish": g("time_save_s") + g("time_publish_s") + g("time_verify_s")}
    if kind == "corpus":  # the preparation is the recipe: all of it data
        p["data"] = g("time_recipe_s")
    # The loop's evaluations are inside train_seconds (a BA's final source evaluation is not: small).
    p["train"] = max(0.0, g("train_seconds") - g("time_eval_s")) if kind != "eval" else 0.0
    if "time_fit_s" in r:  # the worker's figures, inside fit(): what is left is Train stopping its workers
        inside = p["worker_start"] + g("time_worker_imports_s") + g("time_inputs_s") + g("time_imports_s") \
            + g("time_recipe_s") + g("time_publish_s")
        p["train_stop"] = max(0.0, g("time_fit_s") - inside)
    else:
        p["train_stop"] = 0.0
    p["rest"] = trial_total - sum(p.values())
    return p


def table(probe: Probe) -> tuple[str, dict]:
    kinds = [k for k in KINDS if k in probe.kinds.values()]
    sums = {k: defaultdict(float) for k in [*kinds, "all"]}
    counts = defaultdict(int)
    for job_id, kind in probe.kinds.items():
        r = probe.results.get(job_id)
        if r is None or job_id not in probe.completed:
            continue
        total = probe.completed[job_id] - probe.started[job_id]
        start = r.get("time_trial_entered", probe.started[job_id]) - probe.started[job_id]
        counts[kind] += 1
        counts["all"] += 1
        for row, v in {**phases(kind, r, total, start), "total": total}.items():
            sums[kind][row] += v
            sums["all"][row] += v
    for kind in kinds:
        sums[kind]["mlflow"] = probe.mlflow.get(kind, 0.0)
    sums["all"]["mlflow"] = sum(probe.mlflow.values())
    cols = [*kinds, "all"]

    def cell(kind, row):
        v, total = sums[kind][row], sums[kind]["total"]
        return f"{v:.1f} ({100 * v / total:.0f}%)" if total else f"{v:.1f}"
    lines = ["| seconds, summed (% of the kind's trial time) | " + " | ".join(
                 f"{k} ({counts[k]})" for k in cols) + " |",
             "|---|" + "---|" * len(cols)]
    for label, row in ROWS:
        lines.append(f"| {label} | " + " | ".join(cell(k, row) for k in cols) + " |")
    lines.append("| **trial, start to completion (driver)** | " + " | ".join(
        f"**{sums[k]['total']:.1f}**" for k in cols) + " |")
    lines.append("| MLflow logging (driver, beside the trials) | " + " | ".join(
        f"{sums[k]['mlflow']:.1f}" for k in cols) + " |")
    return "\n".join(lines), {k: dict(v) for k, v in sums.items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=20, help="training steps of every LA and TA")
    p.add_argument("--keep", action="store_true", help="keep the temp folder (storage, MLflow, sweep file)")
    p.add_argument("--fresh-cache", action="store_true", help="an empty token cache and demo world")
    p.add_argument("--json", help="also write the per-job figures here")
    p.add_argument("--ray-train", choices=("auto", "always"), default="auto",
                   help="execution.ray_train: 'always' trains every job in Ray Train workers (the old path)")
    p.add_argument("--verbose", action="store_true", help="Ray's worker logs (python -m tlr_ray.sweep --verbose)")
    a = p.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="tlr_ray-overhead-"))
    saved_env = {k: os.environ.get(k) for k in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI", "TLR_RAY_CACHE")}
    try:
        os.environ["RAY_ADDRESS"] = "local"  # always a fresh local cluster of our own
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        if a.fresh_cache:
            os.environ["TLR_RAY_CACHE"] = str(tmp / "cache")
        from tlr_ray.demo.world import ensure_demo_world
        ensure_demo_world()  # built before the clock starts (once per cache)
        path = small_sweep(tmp, a.steps, a.ray_train)
        probe = Probe()
        probe.install()
        from tlr_ray import sweep as sweep_cli
        argv = [str(path), "--storage", str(tmp / "runs"), "--tracking-uri", f"sqlite:///{tmp}/mlflow.db"]
        t0 = time.perf_counter()
        code = sweep_cli.main(argv + (["--verbose"] if a.verbose else []))
        wall = time.perf_counter() - t0
        import ray
        ray.shutdown()
        if code:
            print(f"the sweep exited with {code}", file=sys.stderr)
            return code
        text, sums = table(probe)
        trials, train, loops = sums["all"]["total"], sums["all"]["train"], \
            sums["all"]["train"] + sum(sums[k].get("eval", 0.0) for k in ("la", "ba", "ta") if k in sums)
        ph = probe.phases
        print(f"\n## Where a trial's time goes: {len(probe.results)} jobs, {a.steps} steps per adapter, "
              f"{os.cpu_count()} CPUs, execution.ray_train: {a.ray_train}\n")
        print(text)
        print(f"\nwall {wall:.1f} s (python -m tlr_ray.sweep, in this process): Ray start {ph['ray start']:.1f} s, "
              f"execute {ph['execute']:.1f} s (Ray start included), report {ph['report']:.1f} s, "
              f"the rest (check, plan, table) {wall - ph['execute'] - ph['report']:.1f} s")
        print(f"trials summed {trials:.1f} s (they overlap: {trials / max(ph['execute'], 1e-9):.2f} at a time on "
              f"average while executing)")
        print(f"training loops without their evaluations {train:.1f} s summed: training / wall = "
              f"{train / wall:.2f}; with the loops' evaluations (train_seconds) {loops:.1f} s, {loops / wall:.2f}")
        print(f"MLflow on the driver: {sum(probe.mlflow.values()):.1f} s in {sum(probe.mlflow_calls.values())} "
              f"calls ({', '.join(f'{k} {v:.1f} s' for k, v in sorted(probe.mlflow.items()))})")
        if a.json:
            Path(a.json).write_text(json.dumps({"wall": wall, "phases": ph, "sums": sums, "kinds": probe.kinds,
                                                "started": probe.started, "completed": probe.completed,
                                                "results": probe.results, "mlflow": probe.mlflow}, indent=1))
        return 0
    finally:
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if a.keep:
            print(f"kept: {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
