"""Estimate a plan's compute before running it: steps per job x seconds per step (tlr_ray/step_times.yaml).

Steps come from each job's own arguments (max_steps, or epochs x training examples / batch, using the
catalog's `sizes.train`). Pure Python, no torch: part of `--dry-run`.
"""
from __future__ import annotations

import functools
import math
from collections import defaultdict
from pathlib import Path

import yaml

from tlr_ray.plan import Plan
from tlr_ray.specs import PretrainedSpec

TABLE = Path(__file__).parent / "step_times.yaml"


@functools.cache
def step_times() -> dict:
    return yaml.safe_load(TABLE.read_text())


def model_key(configured_model: str) -> str:
    """The step-time row of a sweep's `model:`: the Hub id's or folder's last part; "demo" for the demo."""
    return "demo" if configured_model.startswith("demo://") else Path(configured_model.rstrip("/")).name


def job_steps(job, train_sizes: dict[str, int]) -> int | None:
    args = getattr(job.spec, "args", None)  # a training job's TrainArgs
    if args is None:
        return None
    if args.max_steps:
        return args.max_steps
    size = train_sizes.get(job.dataset or "")
    if job.kind == "ta" and size and args.epochs:
        return math.ceil(args.epochs * math.ceil(size / args.batch_size))
    if job.kind in ("la", "ba") and args.steps_cap:
        return args.steps_cap  # the corpus size is known only once prepared: its upper bound
    return None


def estimate(plan: Plan, model: str, device: str, train_sizes: dict[str, int],
             eval_sizes: dict[str, int]) -> str:
    """A few lines: hours per job kind on `device`, or what is missing to estimate them.
    `model` is a row key of the table (see `model_key`)."""
    row = step_times().get(device, {}).get(model)
    if row is None:
        return (f"Compute estimate: no step time for model {model!r} on {device!r} in {TABLE.name}; "
                "measure one with benchmarks/step_time.py")
    hours, unknown = defaultdict(float), defaultdict(int)
    for job in plan.jobs:
        if isinstance(job.spec, PretrainedSpec) or job.kind == "corpus":  # corpus jobs run on CPUs
            continue
        if job.kind == "eval":
            hours["eval"] += eval_sizes.get(job.dataset, 1000) * row["eval_per_example"] / 3600
            continue
        steps = job_steps(job, train_sizes)
        if steps is None:
            unknown[job.kind] += 1
            continue
        ref = row["mlm"] if job.kind in ("la", "ba") else row["ta"]
        tokens = job.spec.args.batch_size * job.spec.args.max_seq_length
        hours[job.kind] += steps * ref["seconds"] * tokens / ref["tokens"] / 3600
    parts = [f"{k} {hours[k]:,.2f}" for k in ("la", "ba", "ta", "eval") if k in hours]
    lines = [f"Compute estimate on {device} (GPU-hours, {TABLE.name}): {', '.join(parts)}; "
             f"total {sum(hours.values()):,.2f}"]
    if unknown:
        lines.append("  not estimated (no max_steps and no dataset size): "
                     + ", ".join(f"{n} {k}" for k, n in unknown.items()))
    return "\n".join(lines)
