"""The LA recipe (MAD-X): masked language modelling on one language's text through one adapter
(SeqBnInvConfig, reduction factor 2); the checkpoint with the lowest held-out perplexity wins."""
from __future__ import annotations

from pathlib import Path

from transformers import set_seed

from tlr_ray.config import TrainArgs
from tlr_ray.train.context import JobContext
from tlr_ray.train.loop import endless, run_loop, total_steps
from tlr_ray.train.mlm_data import MLMData, perplexity, read_corpus
from tlr_ray.train.models import bottleneck_config, freeze_all_but, load_tokenizer, mlm_model

NAME = "la"  # the adapter's name while training; saved folders are renamed on load


def train_la(job: dict, out_dir: Path, ctx: JobContext) -> dict:
    spec, inputs = job["spec"], job["inputs"]
    args = TrainArgs(**spec["args"])
    set_seed(spec["seed"])
    tokenizer = load_tokenizer(inputs["model"], inputs["model_revision"])
    model = mlm_model(inputs["model"], inputs["model_revision"])
    layers = model.config.num_hidden_layers
    model.add_adapter(NAME, config=bottleneck_config(spec["reduction_factor"], spec["invertible"],
                                                     spec["leave_out_last_layer"], layers))
    model.set_active_adapters(NAME)
    freeze_all_but(model, NAME, heads=False)
    model.to(ctx.device)
    lines = read_corpus(inputs["corpus"], spec["max_corpus_lines"])
    data = MLMData(lines, tokenizer, args.max_seq_length, args.batch_size, spec["heldout_fraction"],
                   spec["seed"], args.eval_batch_size, ctx.rank, ctx.world_size)
    steps = total_steps(args, len(data.loader))
    result = run_loop(
        model, endless(data.loader, spec["seed"]), activate=lambda step: None,
        evaluate=lambda: {"perplexity": perplexity(model, data.heldout, ctx.device)},
        args=args, total_steps=steps, score_key="perplexity", higher_is_better=False,
        device=ctx.device, precision=ctx.precision, report=ctx.report, ddp_model=ctx.wrap(model))
    model.load_state_dict(result.best_state, strict=False)  # the best evaluation, not the last step
    if ctx.rank == 0:
        model.save_adapter(str(out_dir / "adapter"), NAME, with_head=False)
    return {"heldout_perplexity": result.best_score, "best_step": result.best_step, "steps": result.steps,
            "train_seconds": result.train_seconds, "history": result.history}
