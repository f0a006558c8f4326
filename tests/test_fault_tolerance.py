"""Processes really killed: (1) a Ray Train worker mid-job (`execution.ray_train: always`), and the trial
process of a job that trains in its trial (the default for one CPU worker): the job resumes from its
checkpoint and the sweep completes; (2) the sweep driver: the same command again completes the sweep,
retrains no finished job and keeps exactly one MLflow run per job (the crashed ones marked failed, then
reused); (3) a saved adapter file truncated: detected, moved aside, retrained.

Each kill test starts its own head node (own temp dir, stopped at the end); the driver's two tests share
one, and the kill and the rerun run once for both. Each runs the real CLI on a tiny demo sweep: LAs for en
and sw, one MAD-X TA, one evaluation. The first test's storage root is a file:// URI, so that the
object-store code path runs under real Ray with real kills too."""
from __future__ import annotations

import re
import signal
import subprocess

import psutil
import pytest
from helpers import manifests, mlflow_runs, sweep_cmd, tiny_sweep, wait_for
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.slow
LA_STEPS = 150  # checkpoints every 50: the kill lands after the first one, with steps left to resume


def train_workers(ray_tmp: str, title: str = "RayTrainWorker") -> list[psutil.Process]:
    """Ray Train worker processes of our cluster (children of the raylet started under `ray_tmp`), or with
    another process title (a Tune function trial is `ray::ImplicitFunc`)."""
    raylets = [p for p in psutil.process_iter(["cmdline"]) if "raylet" in " ".join(p.info["cmdline"] or [])
               and ray_tmp in " ".join(p.info["cmdline"] or [])]
    return [child for r in raylets for child in r.children(recursive=True)
            if title in " ".join(child.cmdline())]


def test_killed_training_worker_resumes_from_its_checkpoint(cluster):
    c = cluster
    path = tiny_sweep(c["tmp"], "killworker", la_steps=LA_STEPS, ray_train="always")
    # The storage root as a URI: the object-store code path of the artifact store, and Ray's storage_path
    # through pyarrow, on the local disk (file://) where the test can watch it.
    proc = subprocess.Popen(sweep_cmd(c, path, c["storage"].as_uri()), env=c["env"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        def checkpointed_job():
            # A checkpoint counts once Ray Train recorded it in the run's snapshot.
            for run in (c["storage"] / "ray" / "train").glob("*/checkpoint_manager_snapshot.json"):
                job_id = run.parent.name
                if job_id not in manifests(c["storage"]) and train_workers(c["ray_tmp"]):
                    return job_id
            return None
        job_id = wait_for("a training job checkpointed", checkpointed_job, proc)
        victims = train_workers(c["ray_tmp"])
        out = kill_and_wait(victims, proc)
    finally:
        proc.kill()
    assert_resumed_and_published(c, proc, out, victims, job_id)
    assert not (c["storage"] / "staging").exists()  # a remote root stages in local temp folders


def kill_and_wait(victims, proc) -> str:
    """SIGKILL `victims`; the sweep's whole output once it has ended."""
    for p in victims:
        p.send_signal(signal.SIGKILL)
    return proc.communicate(timeout=900)[0]


def assert_resumed_and_published(c, proc, out: str, victims, job_id: str) -> None:
    """The sweep ended well after its processes were killed: all 6 jobs published (2 corpora, 2 LAs, 1 TA,
    1 eval), the killed job resumed from a checkpoint (every 50 steps) and trained all its steps, and its
    checkpoints were removed once it was published."""
    assert proc.returncode == 0, out[-4000:]
    assert victims
    done = manifests(c["storage"])
    assert len(done) == 6, out[-3000:]
    metrics = done[job_id]["metrics"]
    assert metrics["resumed_from_step"] >= 50 and metrics["resumed_from_step"] % 50 == 0, metrics
    assert metrics["steps"] == LA_STEPS
    assert not (c["storage"] / "ray" / "train" / job_id).exists()


def test_killed_trial_of_a_job_training_in_its_trial_resumes_from_its_checkpoint(cluster):
    """One-CPU jobs train in their trial's process: kill that process once the job saved its state; Tune
    starts the trial again (execution.max_failures) and the job goes on from the saved step."""
    c = cluster
    path = tiny_sweep(c["tmp"], "killtrial", la_steps=LA_STEPS)
    proc = subprocess.Popen(sweep_cmd(c, path), env=c["env"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        def checkpointed_job():
            for state in (c["storage"] / "ray" / "train").glob("*/training_state.pt"):
                if state.parent.name not in manifests(c["storage"]):
                    return state.parent.name
            return None
        job_id = wait_for("a job training in its trial checkpointed", checkpointed_job, proc)
        assert not train_workers(c["ray_tmp"])  # no Ray Train worker group for a one-CPU job
        victims = train_workers(c["ray_tmp"], "ImplicitFunc")
        out = kill_and_wait(victims, proc)
    finally:
        proc.kill()
    assert_resumed_and_published(c, proc, out, victims, job_id)


@pytest.fixture(scope="module")
def killed_driver_then_rerun(module_cluster):
    """Kill the driver once a first job is published and an LA is under way; run again. Run once for
    the module: what the rerun left is kept here, so the next test may damage an adapter and run a third time."""
    c = {**module_cluster, "name": "killdriver"}
    path = tiny_sweep(c["tmp"], "killdriver", la_steps=150)
    proc = subprocess.Popen(sweep_cmd(c, path), env=c["env"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        wait_for("a first published job", lambda: manifests(c["storage"]), proc)
        # An LA (150 steps): a corpus job, also "under way" for an instant, may be done before the kill lands.
        wait_for("an LA under way", lambda: any(r.info.status == "RUNNING" and r.data.tags.get("kind") == "la"
                                                for r in mlflow_runs(c["uri"], c["name"])), proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        proc.kill()
    before = manifests(c["storage"])
    running = {r.info.run_id for r in mlflow_runs(c["uri"], c["name"]) if r.info.status == "RUNNING"}
    again = subprocess.run(sweep_cmd(c, path), env=c["env"], capture_output=True, text=True, timeout=900)
    client = MlflowClient(c["uri"])
    executions = client.search_runs([client.get_experiment_by_name(c["name"]).experiment_id], "tags.kind = 'sweep'",
                                    order_by=["attributes.start_time"])
    return {**c, "path": path, "before": before, "running_at_kill": running, "again": again,
            "after": manifests(c["storage"]), "job_runs": mlflow_runs(c["uri"], c["name"]), "executions": executions}


def test_killed_driver_rerun_completes_without_retraining_or_duplicate_runs(killed_driver_then_rerun):
    c = killed_driver_then_rerun
    assert c["again"].returncode == 0, c["again"].stdout[-4000:] + c["again"].stderr[-2000:]
    after = c["after"]
    assert len(after) == 6 and c["before"]  # 2 corpora, 2 LAs, 1 TA, 1 eval
    for job_id, manifest in c["before"].items():  # finished before the kill: reused, not retrained
        assert after[job_id]["created"] == manifest["created"]
    assert f"{6 - len(c['before'])} jobs run, {len(c['before'])} reused" in c["again"].stdout
    ids = [r.data.tags["job_id"] for r in c["job_runs"]]
    assert sorted(ids) == sorted(after) and len(set(ids)) == len(ids)  # exactly one run per job
    assert all(r.info.status == "FINISHED" for r in c["job_runs"])
    assert c["running_at_kill"] and c["running_at_kill"] <= {r.info.run_id for r in c["job_runs"]}  # reused
    executions = c["executions"]
    assert [e.info.status for e in executions] == ["FAILED", "FINISHED"]
    assert "driver" in executions[0].data.tags["error"] and "died" in executions[0].data.tags["error"]


def test_truncated_adapter_is_detected_and_retrained(killed_driver_then_rerun):
    c = killed_driver_then_rerun
    assert c["again"].returncode == 0, c["again"].stdout[-4000:]
    done = c["after"]
    assert manifests(c["storage"]) == done  # as the rerun left it: this test is the only one to change it
    la = next(j for j, m in done.items() if m["kind"] == "la" and m["spec"]["languages"] == ["sw"])
    weights = next(p for p in (c["storage"] / "jobs" / la / "adapter").iterdir()
                   if p.suffix in (".bin", ".safetensors"))
    weights.write_bytes(weights.read_bytes()[:100])
    third = subprocess.run(sweep_cmd(c, c["path"]), env=c["env"], capture_output=True, text=True, timeout=900)
    assert third.returncode == 0, third.stdout[-4000:] + third.stderr[-2000:]
    assert "1 jobs run, 5 reused" in third.stdout  # the LA only: its dependants' ids do not change
    assert re.search(rf"artifact of {la} at \S+ is damaged \(adapter/\S+ does not match its checksum\)",
                     third.stderr), third.stderr[-3000:]
    aside = [p.name for p in (c["storage"] / "corrupt").iterdir()]
    assert len(aside) == 1 and aside[0].startswith(la), aside
    new = manifests(c["storage"])[la]
    assert new["created"] > done[la]["created"]
    assert (c["storage"] / "jobs" / la / "adapter" / weights.name).stat().st_size > 100
    job_runs = mlflow_runs(c["uri"], c["name"])
    assert sorted(r.data.tags["job_id"] for r in job_runs) == sorted(done)  # still one run per job
