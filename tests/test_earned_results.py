"""A result must have been earned: a training loop that trains no step, diverges (NaN/inf loss), or whose
evaluation gives a NaN/inf metric or no selection score fails with a message saying so; and no NaN or
inf is ever logged to MLflow as a score."""
from __future__ import annotations

import math
import re

import pytest
import torch
from helpers import eval_spec, hand_job

from tlr_ray.config import TrainArgs
from tlr_ray.plan import plan_sweep
from tlr_ray.tracking import Tracker
from tlr_ray.train.context import JobContext
from tlr_ray.train.loop import run_loop
from tlr_ray.validate import load_sweep


class LogToy(torch.nn.Module):
    """loss = (log w + 1)^2 (x = -1): fine for w > 0; one too-large step makes w negative and the loss NaN."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(3))

    def forward(self, x):
        return type("Out", (), {"loss": ((torch.log(self.w) - x) ** 2).sum()})()


def batches():
    while True:
        yield {"x": -torch.ones(3)}


def loop(evaluate, *, lr=1e-2, total_steps=8, eval_every=4, score_key="accuracy", model=None):
    args = TrainArgs(batch_size=1, lr=lr, max_steps=max(total_steps, 1), eval_every=eval_every)
    return run_loop(model or LogToy(), batches(), lambda step: None, evaluate, args=args,
                    total_steps=total_steps, score_key=score_key, ctx=JobContext())


def test_a_sane_run_earns_its_result():
    result = loop(lambda: {"accuracy": 50.0})
    assert result.steps == 8 and result.best_score == 50.0
    assert all(math.isfinite(h["train_loss"]) for h in result.history)


def test_a_diverging_loss_fails_at_the_next_evaluation_with_the_fix():
    seen = []
    with pytest.raises(RuntimeError) as e:
        loop(lambda: seen.append(1) or {"accuracy": 50.0}, lr=10.0)  # Adam's first step: w = 1 - 10 < 0
    # The loss is read at evaluations only (no host-device sync per step): step 4 is the first one.
    msg = str(e.value)
    assert "loss is nan at step 4" in msg and "lower the learning rate" in msg, msg
    assert not seen  # checked before evaluating: nothing is scored after the loss went bad


def test_an_infinite_loss_fails_too():
    class InfToy(LogToy):
        def forward(self, x):
            return type("Out", (), {"loss": self.w.sum() * 0 + float("inf")})()

    with pytest.raises(RuntimeError, match="loss is inf at step 4"):
        loop(lambda: {"accuracy": 50.0}, model=InfToy())


def test_a_step_budget_below_one_fails_before_training():
    for steps in (0, -5):
        with pytest.raises(RuntimeError, match=f"the step budget is {steps} steps"):
            loop(lambda: {"accuracy": 50.0}, total_steps=steps)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_an_evaluation_with_a_non_finite_metric_fails(bad):
    with pytest.raises(RuntimeError) as e:
        loop(lambda: {"accuracy": 50.0, "perplexity_sw": bad})
    assert f"perplexity_sw = {bad}" in str(e.value) and "at step 4" in str(e.value)
    with pytest.raises(RuntimeError, match=f"accuracy = {bad}"):
        loop(lambda: {"accuracy": bad})  # the selection score itself


def test_an_evaluation_without_the_selection_score_fails():
    with pytest.raises(RuntimeError, match="no selection score 'accuracy'"):
        loop(lambda: {"f1": 50.0})


def test_non_finite_metrics_are_never_logged(write_sweep, tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    plan = plan_sweep(load_sweep(write_sweep()))
    ta, ev = plan.of_kind("ta")[0], plan.of_kind("eval")[0]
    tracker = Tracker(uri, "s", artifact_root=str(tmp_path / "a"))
    tracker.start_execution({}, "{}", "")
    bad = {"nan": float("nan"), "inf": float("inf"), "minus_inf": float("-inf")}

    live = tracker.start_job(ta)
    tracker.log_live(live, {"best_score": 40.0, "train_loss": 1.5, **bad}, step=4)
    assert set(tracker.client.get_run(live).data.metrics) == {"best_score", "train_loss"}

    run = tracker.start_job(ev)
    tracker.finish_job(ev, run, {"metrics": {"accuracy": float("nan"), "f1": 50.0, "examples": 10}}, "here")
    prefix = f"{ev.dataset}/{ev.target}"
    assert tracker.client.get_run(run).data.metrics == {f"{prefix}/f1": 50.0}

    # A job reused from its artifact into a new store goes through the same filter.
    other = Tracker(f"sqlite:///{tmp_path}/other.db", "s", artifact_root=str(tmp_path / "b"))
    assert other.ensure_logged(ev, {"metrics": {"accuracy": float("inf"), "f1": 60.0}}, "here")
    found = other.find_run(ev.id)
    assert found.info.status == "FINISHED" and found.data.metrics == {f"{prefix}/f1": 60.0}


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_job_with_a_non_finite_metric_publishes_nothing(tmp_path, monkeypatch, bad):
    """An eval job (no training loop to catch it) whose metric is NaN/inf fails in run_job, before publishing."""
    from tlr_ray import artifacts, runner
    from tlr_ray.train.context import JobContext
    job = hand_job("eval-x", eval_spec())
    monkeypatch.setattr(runner, "recipe", lambda kind: lambda job, out, ctx: {"accuracy": bad, "examples": 0})
    with pytest.raises(RuntimeError) as e:
        runner.run_job(job, str(tmp_path), JobContext())
    assert f"accuracy = {bad}" in str(e.value) and "nothing is published" in str(e.value)
    assert artifacts.verify(str(tmp_path), "eval-x") is None
    assert not list((tmp_path / "staging").iterdir())  # the failed attempt's staging folder is gone


@pytest.mark.slow
def test_a_diverging_ta_in_a_real_sweep_is_a_failure_not_a_result(cluster):
    """End to end on a local Ray cluster with the real CLI and MLflow: a TA whose learning rate makes its loss
    NaN fails with the reason, its evaluation does not run, the sweep exits 1, and neither MLflow, the
    report's tidy table nor the printed table holds a score for it."""
    import subprocess

    import pandas as pd
    import yaml
    from helpers import mlflow_runs, sweep_cmd, tiny_sweep

    path = tiny_sweep(cluster["tmp"], "diverge", la_steps=10)
    sweep = yaml.safe_load(path.read_text())
    sweep["variants"] = ["TA-ONLY"]  # no LA, no corpus: one TA and its evaluation
    sweep["tasks"]["nli"]["train_args"]["lr"] = 1e30  # in its domain (positive, finite); weights overflow
    path.write_text(yaml.safe_dump(sweep))
    out = subprocess.run(sweep_cmd(cluster, path), env=cluster["env"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 1, out.stdout[-3000:] + out.stderr[-2000:]
    assert "Traceback" not in out.stdout
    ta_line = next(ln for ln in out.stdout.splitlines() if ln.strip().startswith("FAILED ta-"))
    assert re.search(r"loss is (nan|inf) at step \d+", ta_line) and "lower the learning rate" in ta_line, ta_line
    ta_id = ta_line.split()[1].rstrip(":")
    assert re.search(rf"FAILED eval-\w+: needs {ta_id}, which failed", out.stdout), out.stdout[-3000:]
    assert "0 jobs run, 0 reused, 2 failed" in out.stdout

    runs = mlflow_runs(cluster["uri"], "diverge")
    assert [r.info.status for r in runs if r.data.tags.get("kind") == "ta"] == ["FAILED"]
    assert not [r for r in runs if r.data.tags.get("kind") == "eval" and r.info.status == "FINISHED"]
    assert all(math.isfinite(v) for r in runs for v in r.data.metrics.values())  # no NaN logged anywhere
    parquet = cluster["storage"] / "reports" / "diverge" / "results.parquet"
    assert not parquet.exists() or pd.read_parquet(parquet).empty  # no score in the tidy table
    assert "| TA-ONLY |" not in out.stdout  # nor a row in the printed table
