"""The one training loop shared by every adapter kind.

The recipes differ in two pluggable pieces only:
  - `batches`: what the data is (one MLM corpus for an LA; task data for a TA; two corpora interleaved
    for a BA), an iterator of ready batches;
  - `activate(step)`: which adapters are active at step s (the LA alone; Stack(cycle[s % K], TA)).
BAD-X alternates data, TLR alternates adapters: both are one argument here.
Freezing is the recipe's job (it knows which adapter trains); the loop optimizes whatever requires grad.
"""
from __future__ import annotations

import contextlib
import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from transformers import get_linear_schedule_with_warmup

from tlr_ray.config import TrainArgs
from tlr_ray.progress import Throttle
from tlr_ray.train.context import Checkpoints


@dataclass
class LoopResult:
    best_step: int = -1
    best_score: float | None = None
    best_state: dict[str, torch.Tensor] = field(default_factory=dict)  # trainable params at the best eval
    history: list[dict] = field(default_factory=list)                # every evaluation
    steps: int = 0
    stopped_early: bool = False
    train_seconds: float = 0.0
    resumed_from_step: int = 0                                       # > 0: continued from a checkpoint


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of the trainable parameters: all a best checkpoint needs (adapters are small)."""
    return {n: p.detach().to("cpu", copy=True) for n, p in model.named_parameters() if p.requires_grad}


def autocast(device: torch.device, precision: str):
    """bf16 autocast on GPU ("auto" or "bf16"); fp32 elsewhere."""
    if device.type == "cuda" and precision in ("auto", "bf16"):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def rng_state() -> dict:
    return {"torch": torch.random.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(state: dict) -> None:
    torch.random.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def run_loop(
    model: torch.nn.Module,
    batches: Iterator[dict],
    activate: Callable[[int], None],
    evaluate: Callable[[], dict[str, float]],
    *,
    args: TrainArgs,
    total_steps: int,
    score_key: str,
    higher_is_better: bool,
    device: torch.device,
    precision: str = "auto",
    report: Callable[[dict], None] = lambda metrics: None,
    ddp_model: torch.nn.Module | None = None,
    checkpoints: Checkpoints | None = None,
    live: Callable[[dict], None] | None = None,
) -> LoopResult:
    """Train for `total_steps`, evaluating every `args.eval_every` steps and at the end.

    `evaluate()` returns metrics incl. `score_key`; the best evaluation's trainable parameters are kept
    (not the last's). `report(metrics)` is called after every evaluation (Ray Train reporting).
    `ddp_model` is the DistributedDataParallel wrapper when training on several workers.
    `live(progress)`: where rank 0 sends {step, total, loss, rate} at most every few seconds (the
    driver's live display, tlr_ray/progress.py).
    `checkpoints`: save the whole training state every `checkpoints.every` steps (rounded up to a
    multiple of `eval_every`; default: at each evaluation) and, when a saved state exists, continue from it.
    The result is then the same as an uninterrupted run's on one worker: the batches before the checkpoint
    are drawn again and skipped (cheap next to training on them), and the random state is restored after
    skipping.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise RuntimeError("no trainable parameters: the recipe must leave its adapter trainable")
    # A result must have been earned: at least one step, finite losses and metrics, a selection score.
    if total_steps < 1:
        raise RuntimeError(f"the step budget is {total_steps} steps, so nothing would be trained and no result "
                           "earned; give max_steps >= 1, or epochs > 0 with a non-empty training set")
    # Fused AdamW on CUDA: one kernel for all adapter tensors instead of several per tensor.
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay, fused=device.type == "cuda")
    sched = get_linear_schedule_with_warmup(opt, int(args.warmup_ratio * total_steps), total_steps)
    forward = ddp_model or model
    result, since_best, elapsed = LoopResult(), 0, 0.0
    running, n_running, start = 0.0, 0, 0
    # Checkpoints fall on evaluations (every is rounded up to a multiple of eval_every): each checkpoint's
    # report then carries the evaluation's metrics, which Tune schedulers and searchers require.
    every = -(-(checkpoints.every or args.eval_every) // args.eval_every) * args.eval_every if checkpoints else None
    saved = checkpoints.load() if checkpoints else None
    if saved is not None:
        model.load_state_dict(saved["params"], strict=False)
        for k in ("best_step", "best_score", "best_state", "history", "stopped_early"):
            setattr(result, k, saved[k])
        start = result.resumed_from_step = saved["step"]
        if result.stopped_early:  # it had finished: nothing to train
            result.steps, result.train_seconds = start, saved["elapsed"]
            return result
        opt.load_state_dict(saved["optimizer"])
        sched.load_state_dict(saved["scheduler"])
        since_best, running, n_running, elapsed = (saved["since_best"], saved["running"], saved["n_running"],
                                                   saved["elapsed"])
        for _ in range(start):  # the data iterators are where they were at the checkpoint
            next(batches)
        set_rng_state(saved["rng"])
    t0 = time.perf_counter() - elapsed
    progress, last_loss = Throttle(live, total_steps, start), float("nan")
    for step in range(start, total_steps):
        model.train()
        activate(step)
        # From pinned memory (the loaders pin on CUDA) the copy overlaps with the previous step's work.
        batch = {k: v.to(device, non_blocking=True) for k, v in next(batches).items()}
        with autocast(device, precision):
            loss = forward(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        # Summed on the device: read (one host-device sync) at evaluations only, not at every step.
        running, n_running = running + loss.detach().float(), n_running + 1
        last = step + 1 == total_steps
        metrics = None
        if (step + 1) % args.eval_every == 0 or last:
            train_loss = float(running / n_running)
            if not math.isfinite(train_loss):
                raise RuntimeError(f"loss is {train_loss} at step {step + 1} (the mean training loss of steps "
                                   f"{step + 2 - n_running}-{step + 1}): training diverged, so no result is kept; "
                                   f"lower the learning rate (lr {args.lr:g}, e.g. {args.lr / 10:g}) or add warmup "
                                   "(warmup_ratio, e.g. 0.1)")
            model.eval()
            with torch.no_grad(), autocast(device, precision):
                metrics = dict(evaluate())
            bad = {k: v for k, v in metrics.items()
                   if isinstance(v, (int, float, np.number)) and not isinstance(v, bool) and not math.isfinite(v)}
            if bad:
                raise RuntimeError(f"the evaluation at step {step + 1} gave "
                                   f"{', '.join(f'{k} = {v}' for k, v in bad.items())}: not a result, so none is "
                                   "kept; the adapter may have diverged (lower the learning rate) or the "
                                   "validation data may be empty (check the validation split)")
            score = metrics.get(score_key)
            if not isinstance(score, (int, float, np.number)) or isinstance(score, bool):
                raise RuntimeError(f"the evaluation at step {step + 1} produced no selection score "
                                   f"{score_key!r} (it gave {score_key}={score!r}; metrics: "
                                   f"{', '.join(metrics) or 'none'}), so no checkpoint can be chosen")
            better = result.best_score is None or (score > result.best_score if higher_is_better
                                                   else score < result.best_score)
            if better:
                result.best_step, result.best_score, result.best_state = step + 1, score, trainable_state(model)
                since_best = 0
            else:
                since_best += 1
            metrics.update(step=step + 1, train_loss=train_loss, best_score=result.best_score)
            running, n_running, last_loss = 0.0, 0, train_loss
            result.history.append(metrics)
            result.stopped_early = args.patience is not None and since_best >= args.patience
        if every and (step + 1) % every == 0 and not last:
            state = {"step": step + 1, "params": trainable_state(model), "optimizer": opt.state_dict(),
                     "scheduler": sched.state_dict(), "since_best": since_best, "running": float(running),
                     "n_running": n_running, "elapsed": time.perf_counter() - t0, "rng": rng_state(),
                     **{k: getattr(result, k) for k in ("best_step", "best_score", "best_state", "history",
                                                         "stopped_early")}}
            checkpoints.save(state, metrics)
        elif metrics is not None:
            report(metrics)
        progress(step + 1, lambda r=running, n=n_running, last=last_loss: float(r / n) if n else last)
        if result.stopped_early:
            result.steps = step + 1
            break
    else:
        result.steps = total_steps
    result.train_seconds = time.perf_counter() - t0
    if result.steps < 1 or result.best_score is None:
        raise RuntimeError(f"the run trained {result.steps} steps and produced no selection score "
                           f"({score_key!r}), so there is no result to keep")
    return result


def total_steps(args: TrainArgs, batches_per_epoch: int) -> int:
    """max_steps if set, else epochs x batches per epoch, capped at steps_cap and raised to min_steps
    (an LA: max(30k, min(100 epochs, 100k)))."""
    if args.max_steps is not None:
        return args.max_steps
    steps = max(1, math.ceil(args.epochs * batches_per_epoch))
    if args.steps_cap is not None:
        steps = min(steps, args.steps_cap)
    if args.min_steps is not None:
        steps = max(steps, args.min_steps)
    return steps


def endless(loader, seed: int) -> Iterator[dict]:
    """Batches of `loader` forever, reshuffled each epoch with a seeded generator (reproducible)."""
    epoch = 0
    while True:
        if hasattr(loader.sampler, "generator") and loader.sampler.generator is not None:
            loader.sampler.generator.manual_seed(seed + epoch)
        yield from loader
        epoch += 1
