"""The TA recipe (MAD-X / TLR): a task adapter (SeqBnConfig, reduction factor 16) and its head,
stacked on frozen LAs. At step s the active setup is Stack(cycle[s % K], TA): K = 1 with the source LA
is MAD-X; more LAs make the TA "target-language-ready". Best checkpoint on source validation data."""
from __future__ import annotations

import time
from pathlib import Path

import torch
from adapters.composition import Stack
from torch.utils.data import DataLoader
from transformers import set_seed

from tlr_ray.domains import check_job_fits
from tlr_ray.plan import Job
from tlr_ray.sampling import item_at
from tlr_ray.tasks import get_task
from tlr_ray.tasks.registry import TASKS
from tlr_ray.train.context import JobContext, adapter_name
from tlr_ray.train.loop import endless, run_loop, total_steps
from tlr_ray.train.models import bottleneck_config, freeze_all_but, load_la, load_tokenizer, task_model
from tlr_ray.train.token_cache import subset, tokenized

NAME = "ta"


def train_ta(job: Job, out_dir: Path, ctx: JobContext) -> dict:
    spec, inputs = job.spec, job.inputs
    started = time.perf_counter()  # phase timers (the time_*_s metrics), outside the training loop
    args = spec.args
    task = get_task(spec.task, spec.task_options or {})
    set_seed(spec.seed)
    tokenizer = load_tokenizer(inputs.model, inputs.model_revision)
    model = task_model(inputs.model, inputs.model_revision)
    check_job_fits(model.config, inputs.model,  # before any step (a Hub model unchecked at plan time)
                   factors=[("task_adapters.reduction_factor", spec.reduction_factor, False)],
                   lengths=[(f"tasks.{inputs.entry or spec.task}.train_args.max_seq_length", args.max_seq_length)])
    val_adapter = spec.validation_adapter
    for adapter_id in dict.fromkeys([*spec.cycle, *([val_adapter] if val_adapter else [])]):
        # MAD-X 2.0: LAs are trained on all layers; the TA's switch drops their last layer here.
        load_la(model, ctx.dep(adapter_id) / "adapter", adapter_name(adapter_id), spec.leave_out_last_layer)
    cycle = [adapter_name(i) for i in spec.cycle]  # empty for TA-ONLY
    layers = model.config.num_hidden_layers
    model.add_adapter(NAME, config=bottleneck_config(spec.reduction_factor, False,
                                                     spec.leave_out_last_layer, layers))
    task.add_head(model, NAME)
    freeze_all_but(model, NAME, heads=True)  # the MMT and every LA stay frozen
    model.to(ctx.device)
    loaded = time.perf_counter()

    source = inputs.train
    code = inputs.train_code  # the source language as the training dataset writes it
    options = spec.task_options or {}
    train = tokenized(task, options, source, "train", code, tokenizer, args.max_seq_length)
    val = tokenized(task, options, source, "validation", code, tokenizer, args.max_seq_length,
                    prepare=subset(args.max_eval_examples))
    if ctx.world_size > 1:  # equal shards: every rank counts the same steps, or DDP waits on the shortest
        train = train.select(range(len(train) - len(train) % ctx.world_size)).shard(ctx.world_size, ctx.rank)
    loader = DataLoader(train, batch_size=args.batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(spec.seed),
                        collate_fn=lambda f: task.collate(f, tokenizer), drop_last=len(train) > args.batch_size,
                        pin_memory=ctx.device.type == "cuda")  # non-blocking copies to the GPU

    def setup(la: str | None):
        return Stack(la, NAME) if la else Stack(NAME)
    data_ready = time.perf_counter()
    eval_seconds = [0.0]  # summed over the loop's evaluations (part of train_seconds)

    def activate(step: int) -> None:
        if cycle:
            per_epoch = len(loader) if spec.cycle_index == "epoch_step" else None
            model.active_adapters = setup(item_at(cycle, step, per_epoch))
        else:
            model.active_adapters = setup(None)

    def evaluate() -> dict:
        # "source": validate with the source LA; "cycle": the mean score under each LA of the cycle
        # (the reference alternates LAs over validation batches; the per-LA mean is its order-free form).
        las = [adapter_name(val_adapter)] if val_adapter else (cycle or [None])
        t = time.perf_counter()
        scores = []
        for la in las:
            model.active_adapters = setup(la)
            metrics, _ = task.evaluate(model, val, tokenizer, args.eval_batch_size, ctx.device)
            scores.append(metrics)
        eval_seconds[0] += time.perf_counter() - t
        return {k: sum(m[k] for m in scores) / len(scores) for k in scores[0]}

    result = run_loop(model, endless(loader, spec.seed), activate, evaluate, args=args,
                      total_steps=total_steps(args, len(loader)), score_key=task.metric,
                      mode=TASKS[spec.task].mode, ctx=ctx)
    model.load_state_dict(result.best_state, strict=False)  # the best evaluation, not the last step
    saving = time.perf_counter()
    if ctx.rank == 0:
        model.save_adapter(str(out_dir / "adapter"), NAME, with_head=True)
    saved = time.perf_counter()
    return {f"validation_{task.metric}": result.best_score, "best_step": result.best_step,
            "steps": result.steps, "stopped_early": result.stopped_early,
            "train_seconds": result.train_seconds,
            "time_model_s": loaded - started, "time_data_s": data_ready - loaded, "time_eval_s": eval_seconds[0],
            "time_save_s": saved - saving,
            "resumed_from_step": result.resumed_from_step, "history": result.history}
