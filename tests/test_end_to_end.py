"""The whole slice on a local Ray cluster and a real MLflow SQLite store, through the real CLI:
plan -> Ray Tune/Train -> artifacts + MLflow -> table; then again, which must train nothing."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.slow
TINY = {"max_steps": 20, "eval_every": 10, "batch_size": 16, "max_seq_length": 48}


@pytest.fixture(scope="module")
def e2e(demo_world, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    sweep = yaml.safe_load(open("sweeps/demo.yaml"))
    sweep.update(name="e2e", variants=["MAD-X", "BILINGUAL"])
    sweep["tasks"]["nli"].update(eval=["demo_xnli"], train_args={**TINY, "max_eval_examples": 50})
    sweep["language_adapters"].update(train_args=TINY, max_corpus_lines=400)
    del sweep["language_adapters"]["corpora"]["yo"]
    path = tmp / "e2e.yaml"
    path.write_text(yaml.safe_dump(sweep))
    uri = f"sqlite:///{tmp}/mlflow.db"
    cmd = [sys.executable, "-m", "tlr_ray.sweep", str(path), "--storage", str(tmp / "runs"), "--tracking-uri", uri]
    env = {**os.environ, "RAY_ADDRESS": "local"}  # always a fresh local cluster of our own
    env.pop("MLFLOW_TRACKING_URI", None)
    first = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("e2e")
    runs_after_first = client.search_runs([exp.experiment_id], max_results=1000)
    second = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    runs_after_second = client.search_runs([exp.experiment_id], max_results=1000)
    return dict(tmp=tmp, uri=uri, first=first.stdout, second=second.stdout,
                runs1=runs_after_first, runs2=runs_after_second)


def job_runs(runs):
    return [r for r in runs if r.data.tags.get("kind") in ("la", "ta", "eval")]


def table(stdout: str) -> str:
    return stdout[stdout.index("### "):]


def test_first_run_trains_every_job_and_logs_one_run_each(e2e):
    # LAs en, sw, th; TAs MAD-X [en], BILINGUAL [en,sw], [en,th]; evals 2 variants x 2 targets
    assert re.search(r"^10 jobs run, 0 reused, 0 failed", e2e["first"], re.M), e2e["first"]
    runs = job_runs(e2e["runs1"])
    assert len(runs) == 10 and len({r.data.tags["job_id"] for r in runs}) == 10
    assert all(r.info.status == "FINISHED" for r in runs)
    evals = [r for r in runs if r.data.tags["kind"] == "eval"]
    for r in evals:  # metrics named <dataset>/<target>/<metric>, percent
        (name, value), = ((k, v) for k, v in r.data.metrics.items())
        assert name == f"demo_xnli/{r.data.tags['target']}/accuracy" and 0 <= value <= 100
    parent = [r for r in e2e["runs1"] if r.data.tags.get("kind") == "sweep"]
    assert len(parent) == 1 and all(r.data.tags["mlflow.parentRunId"] == parent[0].info.run_id for r in runs)
    for r in evals:  # each eval run says where its per-example predictions are
        assert (Path(r.data.tags["artifact"]) / "predictions.parquet").is_file()
        assert Path(r.data.tags["artifact"]).name == r.data.tags["job_id"]


def test_second_run_trains_nothing_and_adds_no_job_run(e2e):
    assert re.search(r"^0 jobs run, 10 reused, 0 failed", e2e["second"], re.M), e2e["second"]
    assert len(job_runs(e2e["runs2"])) == len(job_runs(e2e["runs1"])) == 10
    assert len([r for r in e2e["runs2"] if r.data.tags.get("kind") == "sweep"]) == 2  # one per execution
    assert table(e2e["second"]) == table(e2e["first"])  # the same table comes out


def test_report_written_at_the_end_of_the_sweep(e2e):
    folder = e2e["tmp"] / "runs" / "reports" / "e2e"
    md = (folder / "report.md").read_text()
    assert "### nli / demo_xnli (accuracy)" in md and "| MAD-X |" in md and "| BILINGUAL |" in md
    html = (folder / "report.html").read_text()
    pngs = list(folder.glob("*.png"))
    assert "<table" in html and pngs and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    assert any(p.name in html for p in pngs)  # the figure is part of the HTML report


def test_table_and_export(e2e):
    t = table(e2e["first"])
    assert "### nli / demo_xnli (accuracy)" in t
    assert re.search(r"^\| Method \| SW \| TH \| avg \| Better \|$", t, re.M)
    assert re.search(r"^\| BILINGUAL \|.*\| [0-2]/2 \|$", t, re.M)
    out = e2e["tmp"] / "results.parquet"
    subprocess.run([sys.executable, "-m", "tlr_ray.results", "export", "--sweep", "e2e", "--out", str(out),
                    "--tracking-uri", e2e["uri"]], check=True, capture_output=True)
    df = pd.read_parquet(out)
    assert list(df.columns) == ["sweep", "task", "dataset", "variant", "seed", "ratio", "language", "metric", "value"]
    assert len(df) == 4 and set(df.variant) == {"MAD-X", "BILINGUAL"} and set(df.language) == {"sw", "th"}


def test_alignment_analysis_on_the_finished_sweep(e2e):
    out = e2e["tmp"] / "alignment"
    r = subprocess.run([sys.executable, "-m", "tlr_ray.alignment", str(e2e["tmp"] / "e2e.yaml"), "--dataset",
                        "demo_xnli", "--target", "sw", "--variants", "MAD-X", "BILINGUAL", "--examples", "40",
                        "--storage", str(e2e["tmp"] / "runs"), "--out", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    table = pd.read_csv(out / "alignment.csv", index_col="layer")
    assert list(table.columns) == ["MAD-X", "BILINGUAL"]
    assert list(table.index) == list(range(len(table))) and len(table) >= 3  # embeddings + every layer
    assert ((table >= -1) & (table <= 1)).all().all()
    assert (table["MAD-X"] != table["BILINGUAL"]).any()  # two different TA setups
    assert (out / "alignment.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_mlflow_ui_shows_the_sweep_runs(e2e):
    """The MLflow UI on loopback against the finished store, read by headless Chromium (Debian's
    chromium + chromium-driver, installed by `make test`); the screenshot is kept in test-artifacts/."""
    import time
    import urllib.request

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    from test_job_submit import free_port
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", e2e["uri"],
                               "--host", "127.0.0.1", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    driver = None
    try:
        deadline = time.time() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except OSError:
                assert time.time() < deadline, "the MLflow UI did not start"
                time.sleep(1)
        options = webdriver.ChromeOptions()
        options.binary_location = "/usr/bin/chromium"
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                    "--no-first-run", "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--window-size=1600,1000"):
            options.add_argument(arg)
        driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
        exp = MlflowClient(e2e["uri"]).get_experiment_by_name("e2e")
        driver.get(f"http://127.0.0.1:{port}/#/experiments/{exp.experiment_id}/runs"
                   "?searchFilter=tags.kind%20%3D%20%27eval%27")
        expected = [r.data.tags["mlflow.runName"] for r in job_runs(e2e["runs1"]) if r.data.tags["kind"] == "eval"]
        deadline = time.time() + 90
        while True:
            # job runs are nested under the sweep's parent run: expand it
            for button in driver.find_elements("css selector", "button[data-component-id*='runnamecellrenderer']"):
                try:
                    button.click()
                except Exception:  # noqa: BLE001  (re-rendered while we clicked: try again next round)
                    pass
            time.sleep(2)
            body = driver.find_element("tag name", "body").text
            if all(name in body for name in expected) or time.time() > deadline:
                break
        out = Path("test-artifacts")
        out.mkdir(exist_ok=True)
        driver.save_screenshot(str(out / "mlflow_ui.png"))
        assert len(expected) == 4 and all(name in body for name in expected), body[:2000]
        assert "e2e" in body and "Training runs" in body
    finally:
        if driver:
            driver.quit()
        server.terminate()
        server.wait(timeout=30)
