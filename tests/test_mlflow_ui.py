"""What the sweep gives the MLflow UI, without a browser: one stable metric `score` per eval run (tagged
`metric_name`), a saved runs-page view per evaluation dataset, the experiment's description, and the report
as artifacts of the execution run; also for an experiment an older version created. The browser test of
the same is tests/test_end_to_end.py::test_mlflow_ui_compares_the_variants_like_a_person."""
from __future__ import annotations

import json
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient

from analysis.tidy import from_mlflow
from tlr_ray.plan import plan_sweep
from tlr_ray.tracking import (
    NOTE_TAG,
    VIEW_TAG,
    Tracker,
    comparison_view,
    final_metrics,
    view_id,
)
from tlr_ray.validate import load_sweep

BUNDLE = Path(mlflow.__file__).parent / "server" / "js" / "build" / "static" / "js"


def evals(write_sweep):
    return plan_sweep(load_sweep(write_sweep())).of_kind("eval")


def test_an_eval_run_logs_its_primary_metric_as_score(write_sweep, tmp_path):
    ev = evals(write_sweep)[0]
    tracker = Tracker(f"sqlite:///{tmp_path}/mlflow.db", "s", artifact_root=str(tmp_path / "a"))
    tracker.start_execution({}, "{}", "")
    run = tracker.start_job(ev)
    tracker.finish_job(ev, run, {"metrics": {"accuracy": 41.5, "f1": 30.0, "examples": 10}}, "here")
    logged = tracker.client.get_run(run).data
    prefix = f"{ev.dataset}/{ev.target}"
    assert logged.metrics == {f"{prefix}/accuracy": 41.5, f"{prefix}/f1": 30.0, "score": 41.5}
    assert logged.tags["metric_name"] == "accuracy" and logged.tags["variant"] == ev.variant
    # analysis/ reads only <dataset>/<language>/<metric>: `score` is not a second measurement
    df = from_mlflow("s", tracker.uri)
    assert sorted(df.metric) == ["accuracy", "f1"]


def test_score_is_the_metric_the_report_shows(write_sweep):
    from dataclasses import replace
    qa = replace(evals(write_sweep)[0], task="qa")
    assert final_metrics(qa, {"f1": 60.0, "exact_match": 50.0})["score"] == 60.0  # the F1 of a QA cell
    other = replace(qa, task="mytask")
    assert final_metrics(other, {"bleu": 20.0, "examples": 5})["score"] == 20.0  # an unknown task's only metric
    assert "score" not in final_metrics(other, {"bleu": 20.0, "chrf": 30.0})


def test_saved_views_compare_the_variants_per_dataset(write_sweep, tmp_path):
    jobs = evals(write_sweep)
    tracker = Tracker(f"sqlite:///{tmp_path}/mlflow.db", "s", artifact_root=str(tmp_path / "a"))
    names = tracker.save_views(jobs)
    datasets = sorted({j.dataset for j in jobs})
    assert names == [f"{d}: variants" for d in datasets]
    tags = tracker.client.get_experiment(tracker.experiment_id).tags
    for dataset in datasets:
        envelope = json.loads(tags[VIEW_TAG + view_id(dataset)])  # the envelope MLflow's UI writes and reads
        assert set(envelope) == {"name", "createdAt", "updatedAt", "state"} and isinstance(envelope["createdAt"], int)
        state = json.loads(envelope["state"])
        assert state == comparison_view(dataset)
        assert state["searchFilter"] == f"tags.kind = 'eval' and tags.dataset = '{dataset}'"
        assert state["groupBy"] == {"aggregateFunction": "average",
                                    "groupByKeys": [{"mode": "tag", "groupByData": "variant"}]}
        assert "metrics.`score`" in state["selectedColumns"]
        url = tracker.view_url(dataset)
        assert url.endswith(f"/runs?viewStateShareKey={view_id(dataset)}&workflowType=machine_learning")
    tracker.save_views(jobs)  # a rerun replaces the views, it does not add more
    again = tracker.client.get_experiment(tracker.experiment_id).tags
    assert sum(k.startswith(VIEW_TAG) for k in again) == len(datasets)
    assert "Model training" in again[NOTE_TAG]


def test_an_experiment_of_an_older_version_is_brought_up_to_date(write_sweep, tmp_path):
    """Created without any experiment tag, its eval run logged without `score`: the next sweep adds the
    description and the score (to the same run), and keeps a description a person wrote."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    ev = evals(write_sweep)[0]
    client = MlflowClient(uri)
    exp = client.create_experiment("old")
    run = client.create_run(exp, tags={"kind": "eval", "job_id": ev.id}).info.run_id
    client.log_metric(run, f"{ev.dataset}/{ev.target}/accuracy", 40.0)
    client.set_terminated(run, "FINISHED")

    tracker = Tracker(uri, "old")
    assert tracker.client.get_experiment(exp).tags[NOTE_TAG].startswith("tlr_ray sweep old")
    assert tracker.ensure_logged(ev, {"metrics": {"accuracy": 40.0, "examples": 10}}, "here") is False
    logged = client.get_run(run).data
    assert logged.metrics["score"] == 40.0 and logged.tags["metric_name"] == "accuracy"
    assert len(client.search_runs([exp])) == 1

    client.set_experiment_tag(exp, NOTE_TAG, "my own notes")
    Tracker(uri, "old")
    assert client.get_experiment(exp).tags[NOTE_TAG] == "my own notes"


def test_the_report_is_an_artifact_of_the_execution_run(tmp_path):
    folder = tmp_path / "report"
    folder.mkdir()
    png = b"\x89PNG\r\n\x1a\n" + b"0" * 20
    (folder / "report-summary.png").write_bytes(png)
    (folder / "report.html").write_text('<h1>r</h1><img src="report-summary.png" alt="x">')
    (folder / "report.md").write_text("# r\n")
    (folder / "results.parquet").write_bytes(b"PAR1")
    tracker = Tracker(f"sqlite:///{tmp_path}/mlflow.db", "s", artifact_root=str(tmp_path / "a"))
    parent = tracker.start_execution({}, "{}", "")
    tracker.log_report(folder)
    listed = {a.path for a in tracker.client.list_artifacts(parent, "report")}
    assert listed == {f"report/{n}" for n in ("report-summary.png", "report.html", "report.md", "results.parquet")}
    html = Path(tracker.client.download_artifacts(parent, "report/report.html", str(tmp_path / "dl"))).read_text()
    assert 'src="data:image/png;base64,' in html and "report-summary.png" not in html  # shown whole by the UI
    assert (folder / "report.html").read_text().count('src="report-summary.png"') == 1  # the file itself unchanged


def test_the_installed_mlflow_ui_reads_what_we_write():
    """Guards the two things of MLflow's UI bundle the docs rely on: the saved-view tag and share key, and
    the workflow switch (`workflowType`, kept in the browser) that chooses an experiment's landing page."""
    text = "\n".join(p.read_text(errors="ignore") for p in BUNDLE.glob("*.js"))
    assert '"mlflow.sharedViewState."' in text and '"viewStateShareKey"' in text
    assert 'key:"mlflow.workflowType"' in text and 'e.MACHINE_LEARNING="machine_learning"' in text
