"""The live view of a running sweep (tlr_ray/progress.py): what rank 0 sends, how often, and the line the
driver shows. Ray is not needed for these but the last, which runs the real CLI and display on a local
cluster (#12: status lines with step counts while the first training job runs)."""
from __future__ import annotations

import json
import re
import subprocess

import pytest
from helpers import sweep_cmd, tiny_sweep
from test_loop import Toy, batches

from tlr_ray import progress
from tlr_ray.config import TrainArgs
from tlr_ray.train.context import JobContext
from tlr_ray.train.loop import run_loop


def test_the_loop_sends_step_total_loss_and_rate_at_most_every_few_seconds(monkeypatch):
    sent = []
    clock = iter(range(0, 10_000, 2))  # every call to the clock advances 2 s
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    args = TrainArgs(batch_size=1, lr=0.1, max_steps=12, eval_every=4)
    run_loop(Toy(), batches(), lambda s: None, lambda: {"s": 1.0}, args=args, total_steps=12, score_key="s",
             ctx=JobContext(live=sent.append))
    assert sent and len(sent) < 12  # throttled: not every step
    assert all(m["total"] == 12 and 0 < m["step"] <= 12 and m["rate"] > 0 for m in sent)
    assert [m["step"] for m in sent] == sorted(m["step"] for m in sent)
    assert all(isinstance(m["loss"], float) for m in sent)


def test_no_sender_outside_a_sweep():
    assert progress.sender("la-0") is None  # no Ray, no board: the loop sends nothing


def test_the_status_line_has_each_job_and_the_sweeps_eta():
    d = progress.Display(board=None, total=5, labels={"la-1": "LA sw", "ta-1": "TA MAD-X"},
                         planned_steps={"la-1": 100, "ta-1": 50, "ta-2": 50}, done=lambda: 2, tty=False)
    line = d.line({"la-1": {"step": 40, "total": 100, "loss": 3.25, "rate": 2.0}})
    # left: 60 of the running LA + 50 + 50 planned = 160 steps at 2 steps/s = 80 s
    assert line.startswith("jobs 2/5, ETA 80 s") and "LA sw 40/100 loss 3.250 2.0 steps/s ETA 30 s" in line
    d.finished.add("ta-2")
    assert "ETA 55 s" in d.line({"la-1": {"step": 40, "total": 100, "loss": 3.25, "rate": 2.0}})
    assert d.line({}) == "jobs 2/5"  # nothing reporting yet: no ETA to give


@pytest.mark.slow
def test_a_running_sweep_prints_status_lines_with_step_counts_before_its_first_training_job_ends(cluster):
    """The real CLI on a local cluster, output not a terminal (as under `ray job logs`): while the first LA
    trains, status lines name it with its step count, total, loss and rate."""
    path = tiny_sweep(cluster["tmp"], "status", la_steps=60)
    env = {**cluster["env"], "TLR_RAY_STATUS_EVERY_S": "2"}
    out = subprocess.run(sweep_cmd(cluster, path), env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    lines = out.stdout.splitlines()
    first_la_done = next(i for i, ln in enumerate(lines) if re.match(r"\s*\[\d+/6\] LA ", ln))
    status = [ln for ln in lines[:first_la_done]
              if re.search(r"status: jobs \d+/6.*; LA \w+ \d+/60 loss \d+\.\d+ \d+\.\d+ steps/s", ln)]
    assert status, "\n".join(lines[:first_la_done])
    # On a cluster the driver did not start, trials still reuse their processes (Tune's reuse_actors,
    # tlr_ray/tune_patches.py): fewer trial processes than jobs.
    pids = {json.loads(f.read_text().splitlines()[-1])["pid"]
            for f in (cluster["storage"] / "ray").glob("status-*/*/result.json")}
    assert 1 <= len(pids) < 6, pids
