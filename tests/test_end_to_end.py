"""The whole slice on a local Ray cluster and a real MLflow SQLite store, through the real CLI:
plan -> Ray Tune/Train -> artifacts + MLflow -> table; then again, which must train nothing."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request
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
    return [r for r in runs if r.data.tags.get("kind") in ("corpus", "la", "ta", "eval")]


def table(stdout: str) -> str:
    """The printed tables (what follows them names this execution's report run and files)."""
    start = stdout.index("### ")
    end = min((i for i in (stdout.find("\nwrote ", start), stdout.find("\nreport: ", start)) if i > 0),
              default=len(stdout))
    return stdout[start:end]


def test_first_run_trains_every_job_and_logs_one_run_each(e2e):
    # corpora and LAs en, sw, th; TAs MAD-X [en], BILINGUAL [en,sw], [en,th]; evals 2 variants x 2 targets
    assert re.search(r"^13 jobs run, 0 reused, 0 failed", e2e["first"], re.M), e2e["first"]
    runs = job_runs(e2e["runs1"])
    assert len(runs) == 13 and len({r.data.tags["job_id"] for r in runs}) == 13
    assert sum(r.data.tags["kind"] == "corpus" for r in runs) == 3  # each corpus prepared once
    assert all(r.info.status == "FINISHED" for r in runs)
    evals = [r for r in runs if r.data.tags["kind"] == "eval"]
    for r in evals:  # metrics named <dataset>/<target>/<metric>, percent; the primary one also as `score`
        metrics = dict(r.data.metrics)
        score = metrics.pop("score")
        (name, value), = metrics.items()
        assert name == f"demo_xnli/{r.data.tags['target']}/accuracy" and 0 <= value <= 100
        assert score == value and r.data.tags["metric_name"] == "accuracy"
    parent = [r for r in e2e["runs1"] if r.data.tags.get("kind") == "sweep"]
    assert len(parent) == 1 and all(r.data.tags["mlflow.parentRunId"] == parent[0].info.run_id for r in runs)
    for r in evals:  # each eval run says where its per-example predictions are
        assert (Path(r.data.tags["artifact"]) / "predictions.parquet").is_file()
        assert Path(r.data.tags["artifact"]).name == r.data.tags["job_id"]


def test_second_run_trains_nothing_and_adds_no_job_run(e2e):
    assert re.search(r"^0 jobs run, 13 reused, 0 failed", e2e["second"], re.M), e2e["second"]
    assert len(job_runs(e2e["runs2"])) == len(job_runs(e2e["runs1"])) == 13
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


def report_avgs(md: str, dataset: str) -> dict[str, float]:
    """{variant: avg cell} of the report's table of `dataset` (Markdown; bold marks and significance stars off)."""
    section = md[md.index(f"/ {dataset} ("):]
    rows = re.findall(r"^\| ([^|]+?) \|(.*)\|$", section.split("\n\n### ")[0], re.M)
    head = next(cells for label, cells in rows if label == "Method").split("|")
    at = [c.strip() for c in head].index("avg")
    return {label: float(re.sub(r"[*\s]", "", cells.split("|")[at]))
            for label, cells in rows if label not in ("Method", "---")}


class Person:
    """Headless Chromium driven as a person uses the MLflow UI: by what is on the screen, waiting for it."""

    def __init__(self, driver, base: str):
        self.driver, self.base = driver, base

    def until(self, what, timeout: float = 60, why: str = ""):
        from selenium.common.exceptions import WebDriverException
        deadline = time.time() + timeout
        while True:
            try:
                if got := what():
                    return got
            except WebDriverException:  # not there yet, re-rendered, covered for a moment
                pass
            assert time.time() < deadline, f"timed out waiting for {why or what}; page: {self.text()[:1500]}"
            time.sleep(0.5)

    def click(self, xpath: str, timeout: float = 60):
        return self.until(lambda: self.driver.find_element("xpath", xpath).click() or True, timeout, xpath)

    def text(self) -> str:
        try:
            return self.driver.find_element("tag name", "body").text
        except Exception:  # noqa: BLE001
            return ""

    def escape(self):
        from selenium.webdriver.common.keys import Keys
        self.driver.find_element("tag name", "body").send_keys(Keys.ESCAPE)

    def close_assistant(self):
        close = "button[data-component-id='mlflow.assistant.chat_panel.close']"
        for b in self.driver.find_elements("css selector", close):
            b.click()

    def search(self, query: str):
        from selenium.webdriver.common.keys import Keys
        box = self.until(lambda: self.driver.find_element("css selector", "input[data-testid='search-box']"))
        box.click()
        box.send_keys(Keys.CONTROL, "a")
        box.send_keys(Keys.BACKSPACE, query, Keys.ENTER)
        self.until(lambda: urllib.parse.quote_plus(query) in self.driver.current_url, why=f"search {query!r}")

    def group_scores(self) -> dict[str, float]:
        """{group label: the number in its `score` cell} of the runs table's group rows."""
        out = {}
        for cell in self.driver.find_elements("xpath", "//*[@row-index]//*[@col-id='attributes.`Run Name`']"):
            label = next((line[len("Group: "):] for line in cell.text.split("\n") if line.startswith("Group: ")), None)
            if label is None:
                continue
            row = cell.find_element("xpath", "./ancestor::*[@row-index][1]").get_attribute("row-index")
            score = self.driver.find_element("xpath", f"//*[@row-index='{row}']//*[@col-id='metrics.`score`']")
            if m := re.match(r"-?\d+(\.\d+)?", score.get_attribute("textContent").strip()):
                out[label] = float(m.group(0))
        return out

    def shot(self, name: str) -> None:
        out = Path("test-artifacts")
        out.mkdir(exist_ok=True)
        self.driver.save_screenshot(str(out / name))


def test_mlflow_ui_compares_the_variants_like_a_person(e2e):
    """README "Results and MLflow", done by headless Chromium (Debian's chromium + chromium-driver, installed
    by `make test`) with a fresh profile, on `mlflow ui` over the finished store: the home page, the "Model
    training" switch, the experiment (for ours and for one an older version made, without our tags): its runs
    table with the job runs; then search / Group by / Columns, whose per-variant average of `score` is the
    report's avg cell; the saved view and its chart; the report in the latest execution run's Artifacts.
    Screenshots in test-artifacts/ (mlflow_ui.png is docs/mlflow-ui.png)."""
    from helpers import free_port
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    client = MlflowClient(e2e["uri"])
    exp = client.get_experiment_by_name("e2e")
    older = client.create_experiment("e2e-older")  # as an older version left it: no tags, no views, no `score`
    client.set_terminated(client.create_run(older, run_name="older eval run", tags={"kind": "eval"}).info.run_id)
    parents = sorted((r for r in e2e["runs2"] if r.data.tags.get("kind") == "sweep"), key=lambda r: r.info.start_time)
    latest = parents[-1].info.run_id
    assert {a.path for a in client.list_artifacts(latest, "report")} >= {
        "report/report.html", "report/report.md", "report/report-summary.png", "report/results.parquet"}
    md = Path(client.download_artifacts(latest, "report/report.md", str(e2e["tmp"] / "ui"))).read_text()
    avgs = report_avgs(md, "demo_xnli")
    assert set(avgs) == {"MAD-X", "BILINGUAL"}
    jobs = [r.data.tags["mlflow.runName"] for r in e2e["runs2"] if r.data.tags.get("kind") != "sweep"]

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
        me = Person(driver, f"http://127.0.0.1:{port}")

        # 1. The home page; "Model training" at the top of the sidebar; the sweep's experiment: its runs table.
        driver.get(me.base + "/")
        me.click("//*[@role='button'][normalize-space(.)='Model training']", timeout=90)
        me.click("//a[@data-testid='experiment-list-item-link'][normalize-space(.)='e2e']")
        me.until(lambda: f"/experiments/{exp.experiment_id}/runs" in driver.current_url, why="the runs page")
        me.until(lambda: f"{len(e2e['runs2'])} matching runs" in me.text(), why="the runs table")
        me.close_assistant()

        def unfolded():  # job runs are nested under their execution run: unfold it, as a person would
            for button in driver.find_elements("css selector", "button[data-component-id*='runnamecellrenderer']"):
                try:
                    if button.get_attribute("aria-expanded") != "true":
                        button.click()
                except Exception:  # noqa: BLE001  (re-rendered while we clicked: again next round)
                    pass
            return all(name in me.text() for name in jobs)
        me.until(unfolded, why=f"the job runs {jobs}")
        assert parents[-1].info.run_name in me.text()

        # 2. search the dataset's eval runs, 3. Group by: variant, 4. Columns: score.
        me.search("tags.kind = 'eval' and tags.dataset = 'demo_xnli'")
        me.click("//button[normalize-space(.)='Group by']")
        me.click("//*[@role='menuitemcheckbox'][normalize-space(.)='variant']")
        me.escape()
        me.click("//button[normalize-space(.)='Columns']")
        me.click("//*[@role='dialog']//*[normalize-space(text())='score']")
        me.escape()
        scores = me.until(lambda: (got := me.group_scores()) and set(got) == set(avgs) and got, why="group averages")
        me.shot("mlflow_ui_steps.png")
        for variant, avg in avgs.items():  # one seed: the mean over eval runs is the mean over languages
            assert abs(scores[variant] - avg) <= 0.005 + 1e-9, (variant, scores[variant], avg)

        # The same as the saved view of the dataset (Views), in the table and in the chart view.
        me.click("//button[@data-testid='saved-views-trigger']")
        me.click("//*[@role='menu']//*[normalize-space(text())='demo_xnli: variants']")
        me.until(lambda: "viewStateShareKey=" in driver.current_url, why="the saved view")
        again = me.until(lambda: (got := me.group_scores()) and set(got) == set(avgs) and got, why="the view's groups")
        assert again == scores
        for b in driver.find_elements("xpath", "//button[@aria-label='Hide banner']"):
            b.click()
        driver.execute_script("arguments[0].click()", driver.find_element("xpath", "//input[@value='CHART']"))
        labels = me.until(lambda: {t.text for t in driver.find_elements("xpath", "//*[name()='svg']//*[name()='text']")}
                          >= {f"{a:.2f}" for a in avgs.values()}, why=f"bar labels {avgs}")
        assert labels
        time.sleep(1)
        me.shot("mlflow_ui.png")

        # The report: the latest execution run ("sweep ..."), Artifacts, report/report.html.
        driver.execute_script("arguments[0].click()", driver.find_element("xpath", "//input[@value='TABLE']"))
        me.click("//button[starts-with(normalize-space(.),'Group by')]")
        me.click("//*[@role='menuitemcheckbox'][normalize-space(.)='variant']")  # grouping off again
        me.escape()
        me.search("tags.kind = 'sweep'")
        me.click(f"//a[normalize-space(.)='{parents[-1].info.run_name}']")
        me.until(lambda: latest in driver.current_url, why="the execution run's page")
        me.click("//*[@role='tab'][normalize-space(.)='Artifacts']")
        me.click("//*[normalize-space(text())='report']")
        me.click("//*[normalize-space(text())='report.html']")
        frame = me.until(lambda: driver.find_element("css selector", "iframe.mlflow-html-iframe"), why="the report")
        driver.switch_to.frame(frame)
        page = me.until(lambda: "nli / demo_xnli (accuracy)" in (t := me.text()) and t, why="the report's table")
        assert all(f"{a:.2f}" in page for a in avgs.values())
        assert me.until(lambda: driver.execute_script(
            "return document.images.length > 0 && Array.from(document.images).every(i => i.naturalWidth > 0)"),
            why="the report's figure")
        driver.switch_to.default_content()
        me.shot("mlflow_ui_report.png")

        # An experiment an older version made lands on its runs table the same way (the browser's switch).
        driver.get(me.base + "/")
        me.click("//a[@data-testid='experiment-list-item-link'][normalize-space(.)='e2e-older']")
        me.until(lambda: f"/experiments/{older}/runs" in driver.current_url, why="the older experiment's runs")
        me.until(lambda: "older eval run" in me.text(), why="its run")
    finally:
        if driver:
            driver.quit()
        server.terminate()
        server.wait(timeout=30)
        client.delete_experiment(older)
