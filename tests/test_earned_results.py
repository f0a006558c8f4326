"""A result must have been earned: a training loop that trains no step, diverges (NaN/inf loss), or whose
evaluation gives a NaN/inf metric or no selection score fails with a message saying so; and no NaN or
inf is ever logged to MLflow as a score."""
from __future__ import annotations

import math

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
