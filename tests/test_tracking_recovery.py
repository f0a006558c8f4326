"""MLflow after a sweep driver died: the next execution marks the dead one and its running job runs
FAILED, and a job keeps its single run when it runs again."""
from __future__ import annotations

import os
import subprocess
import sys

from tlr_ray.plan import plan_sweep
from tlr_ray.tracking import Tracker
from tlr_ray.validate import load_sweep


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_dead_driver_runs_are_failed_and_job_runs_reused(write_sweep, tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    job = plan_sweep(load_sweep(write_sweep())).jobs[0]
    first = Tracker(uri, "s", artifact_root=str(tmp_path / "a"))
    old_parent = first.start_execution({}, "{}", "")
    run = first.start_job(job)
    first.client.set_tag(old_parent, "driver_pid", str(dead_pid()))  # as if its process was killed

    second = Tracker(uri, "s", artifact_root=str(tmp_path / "a"))
    new_parent = second.start_execution({}, "{}", "")
    old = second.client.get_run(old_parent)
    assert old.info.status == "FAILED" and "died" in old.data.tags["error"]
    assert second.client.get_run(run).info.status == "FAILED"
    assert second.start_job(job) == run  # the same run, now RUNNING under the new execution
    reopened = second.client.get_run(run)
    assert reopened.info.status == "RUNNING" and reopened.data.tags["mlflow.parentRunId"] == new_parent


def test_a_live_driver_elsewhere_is_left_alone_and_a_reused_pid_is_not(write_sweep, tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    live = Tracker(uri, "s")
    other = live.start_execution({}, "{}", "")
    live.client.set_tag(other, "driver_pid", str(os.getppid()))  # a live process that is not us
    mine = live.start_execution({}, "{}", "")  # our pid: a dead driver's reused pid, since we made no run yet
    Tracker(uri, "s").start_execution({}, "{}", "")
    assert live.client.get_run(other).info.status == "RUNNING"
    assert live.client.get_run(mine).info.status == "FAILED"


def mlflow_error_from(cause: BaseException):
    """An MlflowException as MLflow's rest_utils raises it: from inside the `except` of the failed request."""
    from mlflow.exceptions import MlflowException
    try:
        raise cause
    except BaseException as e:
        try:
            url = "http://127.0.0.1:1/api/2.0/mlflow/runs/get"
            raise MlflowException(f"API request to {url} failed with exception {e}")
        except MlflowException as wrapped:
            return wrapped


def test_a_server_stopped_mid_answer_counts_as_lost_and_a_refusal_does_not():
    import requests
    from mlflow.exceptions import MlflowException
    from urllib3.exceptions import IncompleteRead, ProtocolError

    from tlr_ray.tracking import unreachable
    broken = ProtocolError("Connection broken: IncompleteRead(0 bytes read, 4129 more expected)",
                           IncompleteRead(0, 4129))
    assert unreachable(mlflow_error_from(requests.exceptions.ChunkedEncodingError(broken)))  # seen in CI
    assert unreachable(mlflow_error_from(requests.exceptions.ConnectionError("Connection refused")))
    assert not unreachable(MlflowException("RESOURCE_DOES_NOT_EXIST: Run 'x' not found"))  # an answer: raised
