"""A real MLflow SQLite store filled as the sweep logs it; from_mlflow and the CLI read it back.

Every store and output lives under pytest's tmp dirs; subprocesses run with cwd there, so nothing
(mlruns/, mlflow.db) lands in the repo root.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from analysis.tidy import TIDY_COLUMNS, from_mlflow, from_parquet, validate

REPO = Path(__file__).resolve().parents[1]
SWEEP = "demo"


def _run(client, exp_id, tags, metrics, start, status="FINISHED"):
    run = client.create_run(exp_id, start_time=start, tags=tags)
    for key, value in metrics.items():
        client.log_metric(run.info.run_id, key, value)
    client.set_terminated(run.info.run_id, status=status, end_time=start + 10)


def _eval(job, variant, target, value, seed=1, ratio="", variants=None):
    tags = {"kind": "eval", "sweep": SWEEP, "job_id": job, "task": "nli",
            "dataset": "americas_nli", "variant": variant, "variants": variants or variant,
            "seed": str(seed), "ratio": ratio, "target": target, "languages": f"en,{target}"}
    # The metric of the run's dataset, plus a loss that is not a score and must be skipped.
    return tags, {f"americas_nli/{target}/accuracy": value, "train/loss": 0.7}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from mlflow import MlflowClient

    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root}/mlflow.db"
    client = MlflowClient(tracking_uri=uri)
    client.create_experiment("other-sweep")
    exp = client.create_experiment(SWEEP)
    _run(client, exp, {"kind": "sweep", "sweep": SWEEP}, {"jobs_done": 6}, start=1000)
    _run(client, exp, {"kind": "la", "sweep": SWEEP, "job_id": "la-gn"},
         {"americas_nli/gn/accuracy": 1.0, "mlm/gn/perplexity": 12.0}, start=1001)
    _run(client, exp, *_eval("e1", "MAD-X", "gn", 50.0), start=1002)
    _run(client, exp, *_eval("e2", "MAD-X", "quy", 40.0), start=1003)
    _run(client, exp, *_eval("e2", "MAD-X", "quy", 41.0), start=1009)  # a rerun: latest wins
    _run(client, exp, *_eval("e3", "TASK-MULTI", "gn", 55.0, variants="TASK-MULTI,ALL-MULTI"),
         start=1004)
    _run(client, exp, *_eval("e4", "BAD-X", "gn", 52.5, ratio="2:1"), start=1005)
    _run(client, exp, *_eval("e5", "MAD-X", "gn", 99.0, seed=2), start=1006, status="FAILED")
    return root, uri


EXPECTED = validate(pd.DataFrame([
    (SWEEP, "nli", "americas_nli", "ALL-MULTI", 1, None, "gn", "accuracy", 55.0),
    (SWEEP, "nli", "americas_nli", "BAD-X", 1, "2:1", "gn", "accuracy", 52.5),
    (SWEEP, "nli", "americas_nli", "MAD-X", 1, None, "gn", "accuracy", 50.0),
    (SWEEP, "nli", "americas_nli", "MAD-X", 1, None, "quy", "accuracy", 41.0),
    (SWEEP, "nli", "americas_nli", "TASK-MULTI", 1, None, "gn", "accuracy", 55.0),
], columns=TIDY_COLUMNS))


def _cli(*args, cwd, uri=None):
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    if uri is not None:
        env["MLFLOW_TRACKING_URI"] = uri
    return subprocess.run([sys.executable, "-m", "tlr_ray.results", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)


def test_from_mlflow_contract(store):
    _, uri = store
    with pytest.warns(UserWarning, match="2 FINISHED eval runs for job 'e2'"):
        df = from_mlflow(SWEEP, tracking_uri=uri)
    pd.testing.assert_frame_equal(df, EXPECTED)
    assert df.attrs["runs"] == 4  # e1, e2 (latest), e3 shared, e4; not the FAILED e5


def test_from_mlflow_env_default_and_errors(store, monkeypatch, tmp_path):
    _, uri = store
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    with pytest.warns(UserWarning):
        pd.testing.assert_frame_equal(from_mlflow(SWEEP), EXPECTED)
    with pytest.raises(ValueError, match=r"named 'nope'.*existing: .*'demo', 'other-sweep'"):
        from_mlflow("nope", tracking_uri=uri)
    missing = f"sqlite:///{tmp_path}/absent.db"
    with pytest.raises(ValueError, match="no MLflow store"):
        from_mlflow(SWEEP, tracking_uri=missing)
    assert not (tmp_path / "absent.db").exists()  # MLflow would have created an empty store


def test_cli_export_then_table(store, tmp_path):
    _, uri = store
    out = tmp_path / "results.parquet"
    proc = _cli("export", "--sweep", SWEEP, "--out", str(out), cwd=tmp_path, uri=uri)
    assert proc.returncode == 0, proc.stderr
    assert "exported 5 rows from 4 finished eval runs" in proc.stdout
    assert "warning: 2 FINISHED eval runs for job 'e2'" in proc.stderr
    pd.testing.assert_frame_equal(from_parquet(out), EXPECTED)

    proc = _cli("table", "--parquet", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("### nli / americas_nli (accuracy)\n")
    assert "| MAD-X | 50.00 | **41.00** | **45.50** |  |" in proc.stdout  # the best avg is bold
    assert "| ALL-MULTI | **55.00** | – | – | 1/1 |" in proc.stdout


def test_cli_table_default_uri_is_mlflow_db_in_cwd(store):
    root, _ = store  # the store is <root>/mlflow.db; no MLFLOW_TRACKING_URI set
    proc = _cli("table", "--sweep", SWEEP, cwd=root)
    assert proc.returncode == 0, proc.stderr
    assert "| BAD-X (2:1) | 52.50 | – | – |  |" in proc.stdout  # the paper gives BAD-X no Better count


def test_cli_user_errors_exit_2(store, tmp_path):
    _, uri = store
    proc = _cli("export", "--sweep", "nope", "--out", str(tmp_path / "x.parquet"),
                cwd=tmp_path, uri=uri)
    assert proc.returncode == 2
    assert "error: no MLflow experiment named 'nope'" in proc.stderr and "demo" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "x.parquet").exists()
    proc = _cli("table", "--parquet", str(tmp_path / "missing.parquet"), cwd=tmp_path)
    assert proc.returncode == 2 and "error: no such results file" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = _cli("table", cwd=tmp_path)  # neither --sweep nor --parquet: argparse usage error
    assert proc.returncode == 2 and "usage:" in proc.stderr
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlruns").exists()


def test_cli_help_names_default_uri(tmp_path):
    proc = _cli("export", "--help", cwd=tmp_path)
    assert proc.returncode == 0
    assert "MLFLOW_TRACKING_URI" in proc.stdout and "sqlite:///mlflow.db" in proc.stdout
