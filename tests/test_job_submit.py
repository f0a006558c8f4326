"""`ray job submit` exactly as users run it: a local head node with the dashboard on loopback and token
authentication (Ray 2.60), the demo-world sweep submitted with --working-dir, SUCCEEDED, results checked,
and the head stopped again."""
from __future__ import annotations

import subprocess
import time

import pytest
import yaml
from helpers import RAY, free_port, head_node
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.slow
@pytest.fixture(scope="module")
def head(tmp_path_factory, demo_world):
    """A fresh head node for this module's two tests, with its dashboard (job submission) on loopback."""
    dash = free_port()
    with head_node(tmp_path_factory.mktemp("head"), num_cpus=2, dashboard_port=dash) as c:
        yield {**c["env"], "RAY_ADDRESS": ""}, f"http://127.0.0.1:{dash}"  # the CLI's --address names it


def test_ray_job_submit_runs_the_sweep(head, tmp_path):
    env, address = head
    sweep = yaml.safe_load(open("sweeps/demo.yaml"))
    tiny = {"max_steps": 10, "eval_every": 5, "batch_size": 16, "max_seq_length": 48}
    sweep.update(name="submitted", variants=["MAD-X", "BILINGUAL"])
    sweep["tasks"]["nli"].update(eval=["demo_xnli"], train_args={**tiny, "max_eval_examples": 40})
    sweep["language_adapters"].update(train_args=tiny, max_corpus_lines=300)
    path = tmp_path / "submitted.yaml"
    path.write_text(yaml.safe_dump(sweep))
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    for _ in range(24):
        r = subprocess.run([RAY, "job", "submit", "--address", address, "--working-dir", ".", "--",
                            "python", "-m", "tlr_ray.sweep", str(path), "--storage", str(tmp_path / "runs"),
                            "--tracking-uri", uri], env=env, capture_output=True, text=True, timeout=900)
        out = r.stdout + r.stderr
        # A fresh head accepts jobs once its dashboard agent is up; Ray says to try again, and we do
        # (the job was not accepted, so nothing runs twice).
        if "No available agent to submit job" not in out:
            break
        time.sleep(5)
    assert r.returncode == 0 and "succeeded" in out.lower(), r.stdout[-3000:] + r.stderr[-1500:]
    assert "### nli / demo_xnli (accuracy)" in out and "13 jobs run" in out  # the sweep's own output
    jobs = subprocess.run([RAY, "job", "list", "--address", address], env=env, capture_output=True, text=True)
    assert "SUCCEEDED" in jobs.stdout
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("submitted")
    runs = client.search_runs([exp.experiment_id], "tags.kind = 'eval'")
    assert len(runs) == 4 and all(run.info.status == "FINISHED" for run in runs)


def test_submission_without_the_token_is_refused(head, tmp_path):
    env, address = head
    stranger = {**env, "HOME": str(tmp_path / "elsewhere")}  # no token there
    (tmp_path / "elsewhere").mkdir()
    r = subprocess.run([RAY, "job", "submit", "--address", address, "--", "true"], env=stranger,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
