"""Helpers shared by the tests (fixtures live in conftest.py): files on disk, a fake Hub, tiny sweeps run
job by job without Ray, and real Ray head nodes and sweep drivers as processes."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest
import yaml

RAY = str(Path(sys.executable).parent / "ray")
TINY_ARGS = {"max_steps": 2, "eval_every": 2, "batch_size": 8, "max_seq_length": 32}


# --- hand-made jobs (tests that need a Job but no plan) -------------------------------------------------

def eval_spec(**fields):
    from tlr_ray.specs import EvalSpec
    return EvalSpec(**{**dict(ta="ta-1", adapter=None, task="nli", task_options=None, data="demo", code="sw",
                              split="test", batch_size=8, max_seq_length=32), **fields})


def ta_spec(**fields):
    from tlr_ray.config import TrainArgs
    from tlr_ray.specs import TASpec
    return TASpec(**{**dict(model="m", task="nli", task_options=None, train_data="demo",
                            args=TrainArgs(batch_size=8, lr=1e-4, max_steps=1), reduction_factor=16,
                            leave_out_last_layer=True, cycle=(), cycle_index="global_step",
                            validation_adapter=None, seed=1), **fields})


def changed(job, args: dict | None = None, **spec_changes):
    """A planned job with some of its spec's fields (and of its TrainArgs, `args`) replaced, as a plan
    would not make it (a knob a check would have refused, a shorter run)."""
    import dataclasses
    new_args = {"args": dataclasses.replace(job.spec.args, **args)} if args else {}
    return dataclasses.replace(job, spec=dataclasses.replace(job.spec, **spec_changes, **new_args))


def hand_job(job_id: str, spec, needs: tuple[str, ...] = ()):
    """A Job of `spec`'s kind with model "m" and nothing else planned about it."""
    from tlr_ray.plan import Job
    from tlr_ray.specs import EvalSpec, Inputs
    return Job(id=job_id, kind="eval" if isinstance(spec, EvalSpec) else job_id.split("-")[0], task=spec.task,
               dataset=None, variant=None, variants=(), seed=None, ratio=None, languages=(), target=None,
               needs=needs, spec=spec, inputs=Inputs("m"))


# --- files and data -------------------------------------------------------------------------------------

def write(path: Path, text: str) -> Path:
    """`text` as a UTF-8 file at `path` (its folders made)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def fake_hub(monkeypatch, result, calls: list | None = None) -> None:
    """`datasets.load_dataset` returns `result` (or raises it, an exception); `calls` records each call."""
    import datasets

    def load_dataset(path, split, **kwargs):
        if calls is not None:
            calls.append((path, split, kwargs))
        if isinstance(result, Exception):
            raise result
        return result
    monkeypatch.setattr(datasets, "load_dataset", load_dataset)


# --- sweeps without Ray ---------------------------------------------------------------------------------

def run_corpora(plan, storage) -> None:
    """Prepare the plan's corpora (the `corpus` jobs every LA/BA needs), as a sweep does first."""
    from tlr_ray.runner import run_job
    from tlr_ray.train.context import JobContext
    for job in plan.of_kind("corpus"):
        run_job(job, str(storage), JobContext())


def run_tiny_sweep(storage, tasks: dict, languages, variants=("MAD-X",), overrides: dict | None = None):
    """The demo sweep shrunk to a few steps for `tasks` (entries as in a sweep file; TINY_ARGS filled in),
    planned and run job by job without Ray. Returns (plan, {eval job id: its metrics})."""
    from tlr_ray.artifacts import verify
    from tlr_ray.plan import plan_sweep
    from tlr_ray.runner import run_job
    from tlr_ray.train.context import JobContext
    from tlr_ray.validate import load_sweep
    tasks = {k: {**v, "train_args": {**TINY_ARGS, "max_eval_examples": 20, **v.get("train_args", {})}}
             for k, v in tasks.items()}
    sweep = load_sweep("sweeps/demo.yaml", {
        "variants": list(variants), "tasks": tasks,
        "language_adapters": {"corpora": {lang: f"demo://text/{lang}.txt" for lang in languages},
                              "train_args": TINY_ARGS, "max_corpus_lines": 400},
        **(overrides or {})})
    plan = plan_sweep(sweep)
    for job in plan.jobs:
        run_job(job, str(storage), JobContext())
    return plan, {j.id: verify(str(storage), j.id)["metrics"] for j in plan.of_kind("eval")}


# --- Ray nodes and sweep drivers as processes -----------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def own_ports() -> list[str]:
    """`ray start` options giving a node free ports for what would otherwise listen on fixed defaults (the
    dashboard agent's 52365, the client server's 10001), so a node still shutting down cannot block it."""
    return [f"--dashboard-agent-listen-port={free_port()}", f"--ray-client-server-port={free_port()}"]


def token_env(tmp_path) -> dict:
    """An environment with token authentication and its own HOME (the token goes to HOME/.ray)."""
    env = {**os.environ, "HOME": str(tmp_path / "home"), "RAY_AUTH_MODE": "token",
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "RAY_ADDRESS": ""}
    env.pop("MLFLOW_TRACKING_URI", None)
    (tmp_path / "home").mkdir()
    subprocess.run([RAY, "get-auth-token", "--generate"], env=env, check=True, capture_output=True)
    return env


@contextlib.contextmanager
def head_node(tmp_path: Path, num_cpus: int = 1, dashboard_port: int | None = None):
    """A head node of a test's own: its HOME and token in tmp_path, its own ports and temp dir, a storage
    root and an MLflow SQLite store in tmp_path; stopped (only it) at the end. One CPU by default (one
    training job at a time, so a test knows whose worker it kills); the dashboard only where asked for
    (`ray job submit` needs it), on loopback."""
    port, ray_tmp = free_port(), tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: socket paths <= 107 bytes
    env = token_env(tmp_path)
    dashboard = (["--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard_port}"] if dashboard_port
                 else ["--include-dashboard=false"])
    r = subprocess.run([RAY, "start", "--head", f"--port={port}", f"--num-cpus={num_cpus}", *dashboard,
                        "--disable-usage-stats", *own_ports(), f"--temp-dir={ray_tmp}"], env=env, capture_output=True,
                       text=True, timeout=180)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    try:
        yield {"env": {**env, "RAY_ADDRESS": f"127.0.0.1:{port}"}, "port": port, "ray_tmp": ray_tmp,
               "tmp": tmp_path, "storage": tmp_path / "runs", "uri": f"sqlite:///{tmp_path}/mlflow.db"}
    finally:
        stop_cluster(ray_tmp)
        shutil.rmtree(ray_tmp, ignore_errors=True)


def stop_cluster(ray_tmp: str) -> None:
    """Stop only the cluster whose processes run under `ray_tmp` (`ray stop` would stop every Ray
    process on the machine, a user's own sweeps included), with their children: Ray's agents rename
    their process title, so matching `ray_tmp` alone would leave them holding their ports. SIGTERM first,
    then SIGKILL after a short grace: Ray's GCS server and autoscaler monitor ignore SIGTERM (measured: both
    still there after 20 s), and a test's cluster has nothing worth a graceful shutdown."""
    ours = [p for p in psutil.process_iter(["cmdline"]) if ray_tmp in " ".join(p.info["cmdline"] or [])]
    tree = {p for parent in ours for p in [parent, *_children(parent)]}
    for sig, grace in ((signal.SIGTERM, 2), (signal.SIGKILL, 20)):
        for p in tree:
            try:
                p.send_signal(sig)
            except psutil.NoSuchProcess:
                pass
        _, tree = psutil.wait_procs(list(tree), timeout=grace)
        if not tree:
            return


def _children(p: psutil.Process) -> list[psutil.Process]:
    try:
        return p.children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def tiny_sweep(tmp_path: Path, name: str, la_steps: int, ray_train: str = "auto") -> Path:
    """A tiny demo sweep file: LAs for en and sw, one MAD-X TA, one evaluation (6 jobs with the corpora).
    `ray_train`: "always" trains every job in Ray Train workers (by default one-CPU jobs train in their trial)."""
    sweep = yaml.safe_load(open("sweeps/demo.yaml"))
    sweep.update(name=name, variants=["MAD-X"])
    sweep["datasets"] = {"demo_xnli": {"languages": ["sw"]}}
    sweep["tasks"]["nli"].update(eval=["demo_xnli"], train_args={
        "max_steps": 20, "eval_every": 10, "batch_size": 16, "max_seq_length": 32, "max_eval_examples": 30})
    sweep["language_adapters"]["corpora"] = {k: v for k, v in sweep["language_adapters"]["corpora"].items()
                                             if k in ("en", "sw")}
    sweep["language_adapters"].update(max_corpus_lines=400, train_args={
        "max_steps": la_steps, "eval_every": 50, "batch_size": 16, "max_seq_length": 64})
    sweep["execution"].update(checkpoint_every=50, max_failures=2, ray_train=ray_train)  # at each LA evaluation
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(sweep))
    return path


def sweep_cmd(c, path: Path, storage: str | None = None) -> list[str]:
    """The sweep CLI on the `cluster` fixture's storage root and MLflow store."""
    return [sys.executable, "-m", "tlr_ray.sweep", str(path), "--storage", storage or str(c["storage"]),
            "--tracking-uri", c["uri"]]


def wait_for(what, condition, proc: subprocess.Popen, timeout: float = 600):
    """Poll `condition()` until it returns something truthy; fail if the sweep ends first."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        found = condition()
        if found:
            return found
        if proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            pytest.fail(f"the sweep ended (code {proc.returncode}) before {what}:\n{out[-3000:]}")
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def manifests(storage: Path) -> dict[str, dict]:
    """The published jobs under a storage root: job id -> manifest."""
    return {p.parent.name: json.loads(p.read_text()) for p in (storage / "jobs").glob("*/manifest.json")}


def mlflow_runs(uri: str, name: str, which: str = "tags.kind != 'sweep'") -> list:
    """The MLflow runs of experiment `name` (by default the job runs, not the sweep's execution run)."""
    from mlflow.tracking import MlflowClient
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(name)
    return client.search_runs([exp.experiment_id], which) if exp else []
