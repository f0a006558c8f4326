"""Faults around the driver, with real processes on a real Ray head node and real MLflow:
(0) two drivers of one sweep at once: each job trained once, both print the same table;
(1) Ctrl-C (SIGINT) on the driver: running job runs and the execution marked KILLED, leases released,
    the same command resumes; (2) the MLflow server stops mid-sweep: training goes on, the driver ends
    with a clear error, a rerun logs what is missing without duplicate runs; (3) a storage root that is
    (or becomes) read-only, or fills up: an error naming the path and the cause, nothing partial published."""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import changed, free_port, manifests, mlflow_runs, sweep_cmd, tiny_sweep, wait_for

pytestmark = pytest.mark.slow
JOBS = 6  # tiny_sweep: 2 corpora, 2 LAs, 1 TA, 1 eval


def table(stdout: str) -> str:
    """The printed result table: from the first table line to the report line."""
    lines = stdout.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("|"))
    end = next(i for i in range(start, len(lines)) if lines[i].startswith("report:"))
    return "\n".join(lines[start:end]).strip()


def ran_and_reused(stdout: str) -> tuple[int, int]:
    m = re.search(r"(\d+) jobs run, (\d+) reused, 0 failed", stdout)
    assert m, stdout[-3000:]
    return int(m.group(1)), int(m.group(2))


def test_ctrl_c_marks_runs_killed_releases_leases_and_the_rerun_resumes(cluster):
    c = {**cluster, "name": "ctrlc"}
    path = tiny_sweep(c["tmp"], "ctrlc", la_steps=120)  # still training 3 s in
    proc = subprocess.Popen(sweep_cmd(c, path), env=c["env"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        def training():  # an LA under way (the corpora are done by then)
            return [r for r in mlflow_runs(c["uri"], c["name"]) if r.info.status == "RUNNING"
                    and r.data.tags.get("kind") == "la"]
        at_signal = wait_for("an LA training", training, proc)
        time.sleep(3)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=180)
    finally:
        proc.kill()
    assert proc.returncode == 130, out[-4000:]
    assert "Run the same command again to resume" in out and "Traceback" not in out, out[-4000:]
    statuses = {r.info.run_id: r.info.status for r in mlflow_runs(c["uri"], c["name"])}
    assert "RUNNING" not in statuses.values(), statuses
    assert all(statuses[r.info.run_id] == "KILLED" for r in at_signal), statuses
    [execution] = mlflow_runs(c["uri"], c["name"], "tags.kind = 'sweep'")
    assert execution.info.status == "KILLED"
    assert not list((c["storage"] / "leases").glob("*.json"))  # released: a rerun needs no wait
    before = manifests(c["storage"])

    again = subprocess.run(sweep_cmd(c, path), env=c["env"], capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stdout[-4000:] + again.stderr[-2000:]
    ran, reused = ran_and_reused(again.stdout)
    assert reused == len(before) and ran == JOBS - len(before)
    after = manifests(c["storage"])
    assert all(after[j]["created"] == m["created"] for j, m in before.items())  # nothing finished redone
    ids = [r.data.tags["job_id"] for r in mlflow_runs(c["uri"], c["name"])]
    assert sorted(ids) == sorted(after)  # the killed job's run was reused, not duplicated
    assert {r.info.run_id for r in at_signal} <= {r.info.run_id for r in mlflow_runs(c["uri"], c["name"])}


def test_two_drivers_of_one_sweep_train_each_job_once_and_print_the_same_table(cluster):
    """Two real drivers on one one-CPU head node, one storage root, one MLflow store, started together: each
    job is trained by one of them (its lease, tlr_ray/leases.py), the other waits for it and reuses it."""
    c = {**cluster, "name": "twodrivers"}
    path = tiny_sweep(c["tmp"], "twodrivers", la_steps=40)
    procs = [subprocess.Popen(sweep_cmd(c, path), env=c["env"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) for _ in range(2)]
    try:
        outs = [p.communicate(timeout=900)[0] for p in procs]
    finally:
        for p in procs:
            p.kill()
    for i, out in enumerate(outs):  # whole, for a failure (the assertions show their last lines)
        (c["tmp"] / f"driver{i}.log").write_text(out)
    for p, out in zip(procs, outs, strict=True):
        assert p.returncode == 0, out[-4000:]
        assert "Traceback" not in out, out[-4000:]
    counts = [ran_and_reused(out) for out in outs]
    assert sum(ran for ran, _ in counts) == JOBS, counts  # every job trained once, by one of the two
    assert all(ran + reused == JOBS for ran, reused in counts), counts
    assert any("run by another driver" in out for out in outs), outs[0][-3000:] + outs[1][-3000:]
    assert table(outs[0]) == table(outs[1])
    published = manifests(c["storage"])
    assert len(published) == JOBS
    ids = [r.data.tags["job_id"] for r in mlflow_runs(c["uri"], c["name"])]
    assert sorted(ids) == sorted(published)  # one MLflow run per job, none logged twice
    assert len(mlflow_runs(c["uri"], c["name"], "tags.kind = 'sweep'")) == 2  # one execution per driver
    assert not list((c["storage"] / "leases").glob("*.json"))


def mlflow_server(port: int, backend: str, artifacts: Path, log: Path) -> subprocess.Popen:
    mlflow = str(Path(sys.executable).with_name("mlflow"))
    proc = subprocess.Popen([mlflow, "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
                             "--backend-store-uri", backend, "--default-artifact-root", str(artifacts)],
                            stdout=open(log, "ab"), stderr=subprocess.STDOUT, start_new_session=True)
    import urllib.request
    for _ in range(240):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
            return proc
        except OSError:
            if proc.poll() is not None:
                pytest.fail(f"mlflow server exited: {log.read_text()[-2000:]}")
            time.sleep(0.5)
    pytest.fail(f"mlflow server did not start: {log.read_text()[-2000:]}")


def stop(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def test_an_mlflow_server_lost_mid_sweep_loses_no_training_and_a_rerun_logs_the_rest(cluster):
    c = {**cluster, "name": "lostmlflow"}
    port, backend = free_port(), f"sqlite:///{c['tmp']}/server.db"
    uri = f"http://127.0.0.1:{port}"
    c["uri"] = uri
    env = {**c["env"], "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}
    path = tiny_sweep(c["tmp"], "lostmlflow", la_steps=60)
    server = mlflow_server(port, backend, c["tmp"] / "server-artifacts", c["tmp"] / "server.log")
    proc = subprocess.Popen(sweep_cmd(c, path), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for("a first published job", lambda: manifests(c["storage"]), proc)
        stop(server)
        out, _ = proc.communicate(timeout=900)
    finally:
        proc.kill()
        if server.poll() is None:
            stop(server)
    assert proc.returncode == 1, out[-4000:]
    assert f"error: MLflow at {uri} stopped answering" in out and "run the same command" in out, out[-4000:]
    assert "Traceback" not in out, out[-4000:]
    assert len(manifests(c["storage"])) == JOBS  # training went on without the server

    server = mlflow_server(port, backend, c["tmp"] / "server-artifacts", c["tmp"] / "server.log")
    try:
        again = subprocess.run(sweep_cmd(c, path), env=env, capture_output=True, text=True, timeout=900)
        assert again.returncode == 0, again.stdout[-4000:] + again.stderr[-2000:]
        assert ran_and_reused(again.stdout) == (0, JOBS)
        job_runs = mlflow_runs(uri, c["name"])
        ids = [r.data.tags["job_id"] for r in job_runs]
        assert sorted(ids) == sorted(manifests(c["storage"]))  # each job once, none twice
        assert all(r.info.status == "FINISHED" for r in job_runs)
        assert "|" in table(again.stdout)
    finally:
        stop(server)


@pytest.fixture
def read_only_mount(tmp_path):
    """A real read-only filesystem: a tmpfs mounted here (root with CAP_SYS_ADMIN, as in this project's
    sandboxes and CI), or, for a user without that, a folder without write permission."""
    target = tmp_path / "ro"
    target.mkdir()
    if os.geteuid() != 0:
        target.chmod(0o555)
        yield target
        target.chmod(0o755)
        return
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=16m", "tmpfs", str(target)], capture_output=True,
                       text=True)
    assert r.returncode == 0, f"cannot mount a read-only tmpfs for this test: {r.stderr}"
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False)


def test_a_read_only_storage_root_is_an_error_before_any_job(read_only_mount, tmp_path, demo_world):
    path = tiny_sweep(tmp_path, "readonly", la_steps=10)
    r = subprocess.run([sys.executable, "-m", "tlr_ray.sweep", str(path), "--storage", str(read_only_mount),
                        "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 2, r.stdout[-2000:] + r.stderr[-2000:]
    assert f"error: storage '{read_only_mount}' cannot be written" in r.stderr, r.stderr
    assert "Read-only file system" in r.stderr or "Permission denied" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and "to run:" not in r.stdout  # nothing started


def remount_read_only(root: Path, timeout: float = 60) -> None:
    """Remount the tmpfs at `root` read-only. Linux refuses (EBUSY, "mount point is busy") while any file
    on it is open for writing, e.g. a corpus job still writing its blocks (CI hit that), so try again
    until it takes: the sweep is still mid-way then, since its LAs train for 120 steps."""
    t0 = time.time()
    while True:
        r = subprocess.run(["mount", "-o", "remount,ro", str(root)], capture_output=True, text=True)
        if r.returncode == 0:
            return
        if "busy" not in r.stderr or time.time() - t0 > timeout:
            pytest.fail(f"mount -o remount,ro {root} failed: {r.stderr}")
        time.sleep(0.05)


def test_storage_that_turns_read_only_mid_sweep_fails_jobs_with_the_path_and_publishes_nothing_partial(cluster):
    if os.geteuid() != 0:
        pytest.fail("this test remounts a tmpfs read-only: run it as root with CAP_SYS_ADMIN")
    c = {**cluster, "name": "turnsro"}
    root = c["tmp"] / "tmpfs"
    root.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512m", "tmpfs", str(root)], check=True)
    try:
        path = tiny_sweep(c["tmp"], "turnsro", la_steps=120)
        proc = subprocess.Popen(sweep_cmd(c, path, str(root)), env=c["env"], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        try:
            wait_for("a first published job", lambda: manifests(root), proc)
            remount_read_only(root)
            out, _ = proc.communicate(timeout=600)
        finally:
            proc.kill()
        assert proc.returncode != 0, out[-4000:]
        assert "Read-only file system" in out and str(root) in out, out[-4000:]
        from tlr_ray.artifacts import verify
        published = manifests(root)
        assert published and all(verify(str(root), j) is not None for j in published)  # only whole artifacts
        subprocess.run(["mount", "-o", "remount,rw", str(root)], check=True)
        again = subprocess.run(sweep_cmd(c, path, str(root)), env=c["env"], capture_output=True, text=True,
                               timeout=900)
        assert again.returncode == 0, again.stdout[-4000:] + again.stderr[-2000:]
        assert ran_and_reused(again.stdout)[1] >= len(published)
    finally:
        subprocess.run(["umount", "-l", str(root)], check=False)
        shutil.rmtree(root, ignore_errors=True)


def test_a_storage_root_that_fills_up_fails_the_job_with_the_path_and_the_cause(tmp_path, demo_world):
    """A job whose artifact does not fit (a 64 KiB tmpfs; torch.save alone says only "unexpected pos ...")
    fails with ENOSPC naming the storage and how to go on, and nothing of it is published."""
    import errno

    from tlr_ray import artifacts, runner
    from tlr_ray.plan import plan_sweep
    from tlr_ray.train.context import JobContext
    from tlr_ray.validate import load_sweep
    if os.geteuid() != 0:
        pytest.fail("this test mounts a tiny tmpfs: run it as root with CAP_SYS_ADMIN")
    root = tmp_path / "small"
    root.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(root)], check=True)
    try:
        ta = plan_sweep(load_sweep("sweeps/demo.yaml", {"variants": ["TA-ONLY"]})).of_kind("ta")[0]
        ta = changed(ta, args={"max_steps": 2, "eval_every": 2, "max_eval_examples": 10})
        with pytest.raises(OSError) as e:
            runner.run_job(ta, str(root), JobContext(progress=False))
        assert e.value.errno == errno.ENOSPC
        msg = str(e.value)
        assert f"No space left on device: {root}/staging has" in msg and "run the same command again" in msg, msg
        assert artifacts.verify(str(root), ta.id) is None and not (root / "jobs").exists()
        assert not list((root / "staging").iterdir())  # the partial files are gone: the space is free again
    finally:
        subprocess.run(["umount", "-l", str(root)], check=False)
