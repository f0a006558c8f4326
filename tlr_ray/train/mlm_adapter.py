"""The MLM adapter recipe, for LAs (MAD-X) and BAs/MAs (BAD-X): masked language modelling through one
adapter on one or several corpora. Which corpus a batch comes from follows the job's schedule
(tlr_ray/sampling.py): [0] for an LA, N source then M target batches for a BA at ratio N:M, the source
alternating with each target for an MA. The checkpoint with the lowest held-out perplexity on the
`select_on` corpora (the LA's own text; a BA's target text) wins.
A pretrained LA (a folder or Hub id) is not trained: it is loaded and saved in our artifact layout.
"""
from __future__ import annotations

import time
from pathlib import Path

import torch
from transformers import set_seed

from tlr_ray.domains import check_job_fits
from tlr_ray.plan import Job
from tlr_ray.sampling import interleave
from tlr_ray.train.context import JobContext
from tlr_ray.train.loop import endless, run_loop, total_steps
from tlr_ray.train.mlm_data import MLMData, perplexity
from tlr_ray.train.models import bottleneck_config, freeze_all_but, load_tokenizer, mlm_model

NAME = "la"  # the adapter's name while training; saved folders are renamed on load


def train_mlm_adapter(job: Job, out_dir: Path, ctx: JobContext) -> dict:
    spec, inputs = job.spec, job.inputs
    started = time.perf_counter()  # phase timers (the time_*_s metrics), outside the training loop
    model = mlm_model(inputs.model, inputs.model_revision)
    if inputs.pretrained:
        model.load_adapter(inputs.pretrained, load_as=NAME, with_head=False)
        if ctx.rank == 0:
            model.save_adapter(str(out_dir / "adapter"), NAME, with_head=False)
        return {"pretrained": 1}
    args = spec.args
    knobs = "language_adapters" if job.kind == "la" else "bilingual_adapters"
    check_job_fits(model.config, inputs.model,  # before any step (a Hub model unchecked at plan time)
                   factors=[(f"{knobs}.reduction_factor", spec.reduction_factor, spec.invertible)],
                   lengths=[(f"{knobs}.train_args.max_seq_length", args.max_seq_length)])
    set_seed(spec.seed)
    tokenizer = load_tokenizer(inputs.model, inputs.model_revision)
    layers = model.config.num_hidden_layers
    # Trained on every layer: MAD-X 2.0 drops the last layer's LA when it is *loaded* under a TA
    # (tlr_ray/train/models.py load_la), as the reference does; one LA serves both settings.
    model.add_adapter(NAME, config=bottleneck_config(spec.reduction_factor, spec.invertible, False, layers))
    model.set_active_adapters(NAME)
    freeze_all_but(model, NAME, heads=False)
    model.to(ctx.device)
    loaded = time.perf_counter()
    # Each corpus was prepared once by its `corpus` job; its blocks are memory-mapped, not loaded.
    data = [MLMData(ctx.dep(corpus_id) / "corpus", tokenizer, args.max_seq_length, args.batch_size,
                    spec.seed + i, args.eval_batch_size, ctx.rank, ctx.world_size)
            for i, corpus_id in enumerate(spec.corpora)]
    langs = spec.languages
    eval_seconds = [0.0]  # summed over evaluations (those in the loop are part of train_seconds)

    def evaluate(corpora=spec.select_on) -> dict:
        t = time.perf_counter()
        # During training only the corpora that select the checkpoint (a BA's target): scoring the
        # source's held-out text too would cost a BA about twice its training on English Wikipedia.
        ppl = {f"perplexity_{langs[i]}": perplexity(model, data[i].heldout_batches(), ctx.device) for i in corpora}
        ppl["perplexity"] = sum(ppl[f"perplexity_{langs[i]}"] for i in spec.select_on) / len(spec.select_on)
        eval_seconds[0] += time.perf_counter() - t
        return ppl

    # An epoch is a pass over the corpora in the schedule's proportions. An LA trains 100 epochs, at
    # least 30,000 and at most 100,000 steps (METHOD.md); BAs a fixed max_steps.
    steps_per_epoch = sum(len(data[i].loader) for i in set(spec.schedule))
    batches = interleave([endless(d.loader, spec.seed + i) for i, d in enumerate(data)], spec.schedule)
    data_ready = time.perf_counter()
    result = run_loop(model, batches, activate=lambda step: None, evaluate=evaluate, args=args,
                      total_steps=total_steps(args, steps_per_epoch), score_key="perplexity", mode="min", ctx=ctx)
    model.load_state_dict(result.best_state, strict=False)  # the best evaluation, not the last step
    saving = time.perf_counter()
    if ctx.rank == 0:
        model.save_adapter(str(out_dir / "adapter"), NAME, with_head=False)
    saved = time.perf_counter()
    final = {}
    if len(data) > len(spec.select_on):  # a BA/MA: its source perplexity too, once, at the chosen step
        model.eval()
        with torch.no_grad():
            final = evaluate(range(len(data)))
    best = result.history[[h["step"] for h in result.history].index(result.best_step)]
    return {"heldout_perplexity": result.best_score,
            **{k: v for k, v in {**best, **final}.items() if k.startswith("perplexity_")},
            "best_step": result.best_step, "steps": result.steps, "train_seconds": result.train_seconds,
            "resumed_from_step": result.resumed_from_step,
            "time_model_s": loaded - started, "time_data_s": data_ready - loaded, "time_eval_s": eval_seconds[0],
            "time_save_s": saved - saving,
            "history": result.history}
