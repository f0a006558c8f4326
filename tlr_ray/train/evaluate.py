"""The eval job: one TA stacked on its inference adapter (LA or BA of the target), zero-shot on one
language of one dataset."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
from adapters.composition import Stack

from tlr_ray.artifacts import MANIFEST
from tlr_ray.plan import Job
from tlr_ray.tasks import get_task
from tlr_ray.train.context import JobContext
from tlr_ray.train.models import load_la, load_tokenizer, task_model
from tlr_ray.train.token_cache import tokenized


def ta_leaves_out_last(ta_dir: Path) -> bool:
    """Whether the TA was trained with its LAs' last layer dropped (MAD-X 2.0). Read from the TA's own
    published manifest, so an eval loads the LA as its TA saw it; the eval spec does not repeat it."""
    return bool(json.loads((Path(ta_dir) / MANIFEST).read_text())["spec"]["leave_out_last_layer"])


def run_eval(job: Job, out_dir: Path, ctx: JobContext) -> dict:
    spec, inputs = job.spec, job.inputs
    started = time.perf_counter()  # phase timers, returned under "timings" (below)
    task = get_task(spec.task, spec.task_options or {})
    tokenizer = load_tokenizer(inputs.model, inputs.model_revision)
    model = task_model(inputs.model, inputs.model_revision)
    model.load_adapter(str(ctx.dep(spec.ta) / "adapter"), load_as="ta", with_head=True)
    if spec.adapter:  # the LA (or BA/MA) of the target; none for TA-ONLY
        leave_out_last = ta_leaves_out_last(ctx.dep(spec.ta))  # as the TA was trained
        load_la(model, ctx.dep(spec.adapter) / "adapter", "la", leave_out_last)
        model.active_adapters = Stack("la", "ta")
    else:
        model.active_adapters = Stack("ta")
    model.to(ctx.device)
    loaded = time.perf_counter()
    data = tokenized(task, spec.task_options or {}, inputs.data, spec.split,
                     spec.code, tokenizer, spec.max_seq_length)
    data_ready = time.perf_counter()
    metrics, predictions = task.evaluate(model, data, tokenizer, spec.batch_size, ctx.device)
    evaluated = time.perf_counter()
    # Per-example predictions let reports recompute any metric and run significance tests later.
    pd.DataFrame(predictions).to_parquet(out_dir / "predictions.parquet", index=False)
    # Timings nested, not numeric: an eval run's numbers are its scores alone (<dataset>/<language>/<metric>).
    timings = {"time_model_s": loaded - started, "time_data_s": data_ready - loaded,
               "time_eval_s": evaluated - data_ready, "time_save_s": time.perf_counter() - evaluated}
    return {**metrics, "examples": len(predictions), "timings": timings}
