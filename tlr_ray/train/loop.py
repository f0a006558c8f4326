"""The one training loop shared by every adapter kind.

The recipes differ in two pluggable pieces only:
  - `batches`: what the data is (one MLM corpus for an LA; task data for a TA; two corpora interleaved
    for a BA), an iterator of ready batches;
  - `activate(step)`: which adapters are active at step s (the LA alone; Stack(cycle[s % K], TA)).
BAD-X alternates data, TLR alternates adapters: both are one argument here, and both pick "the item at
step s" of a repeating sequence with the same helper (tlr_ray/sampling.py `item_at`): a BA the corpus of
each batch, a TLR TA the LA of each step.
Freezing is the recipe's job (it knows which adapter trains); the loop optimizes whatever requires grad.
"""
from __future__ import annotations

import contextlib
import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from transformers import get_linear_schedule_with_warmup

from tlr_ray.config import TrainArgs
from tlr_ray.progress import Throttle
from tlr_ray.train.context import JobContext


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


RESULT_FIELDS = ("best_step", "best_score", "best_state", "history", "stopped_early")  # saved with the state


@dataclass
class LoopState:
    """The loop's resumable counters. With the trainable weights, the optimizer, the schedule, the result
    so far and the random state they are the whole checkpoint: `save` writes it, `restore` is the way
    back, in one place."""
    step: int = 0          # steps done
    since_best: int = 0    # evaluations since the best one (patience)
    running: Any = 0.0     # training loss summed since the last evaluation (a device tensor while training)
    n_running: int = 0
    elapsed: float = 0.0   # training seconds of earlier attempts

    def save(self, model, opt, sched, result: LoopResult, elapsed: float) -> dict:
        return {"step": self.step, "params": trainable_state(model), "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(), "since_best": self.since_best, "running": float(self.running),
                "n_running": self.n_running, "elapsed": elapsed, "rng": rng_state(),
                **{k: getattr(result, k) for k in RESULT_FIELDS}}

    @classmethod
    def restore(cls, saved: dict, model, opt, sched, result: LoopResult, batches: Iterator) -> LoopState:
        """Put model, optimizer, schedule and result back as `saved` has them. The batches before the
        checkpoint are drawn again and skipped (cheap next to training on them), then the random state is
        restored, so that on one worker the rest of the run is the same as an uninterrupted one's."""
        model.load_state_dict(saved["params"], strict=False)
        for k in RESULT_FIELDS:
            setattr(result, k, saved[k])
        result.resumed_from_step = saved["step"]
        state = cls(saved["step"], saved["since_best"], saved["running"], saved["n_running"], saved["elapsed"])
        if result.stopped_early:  # it had finished: nothing to train, nothing to skip
            return state
        opt.load_state_dict(saved["optimizer"])
        sched.load_state_dict(saved["scheduler"])
        for _ in range(state.step):  # the data iterators are where they were at the checkpoint
            next(batches)
        set_rng_state(saved["rng"])
        return state


def run_loop(
    model: torch.nn.Module,
    batches: Iterator[dict],
    activate: Callable[[int], None],
    evaluate: Callable[[], dict[str, float]],
    *,
    args: TrainArgs,
    total_steps: int,
    score_key: str,
    mode: Literal["max", "min"] = "max",
    ctx: JobContext | None = None,
) -> LoopResult:
    """Train for `total_steps`, evaluating every `args.eval_every` steps and at the end.

    `evaluate()` returns metrics incl. `score_key`, which is better higher (`mode` "max") or lower ("min");
    the best evaluation's trainable parameters are kept (not the last's). From the job context `ctx`:
    the device and precision; `report(metrics)` after every evaluation (Ray Train or Tune reporting);
    `wrap(model)`, the DistributedDataParallel wrapper on several workers; `live(progress)`, where rank 0
    sends {step, total, loss, rate} at most every few seconds (the driver's live display,
    tlr_ray/progress.py); `checkpoints`: the whole training state (LoopState) is saved every
    `checkpoints.every` steps (rounded up to a multiple of `eval_every`; default: at each evaluation) and,
    when a saved state exists, the run continues from it with the result an uninterrupted run would give
    on one worker.
    """
    ctx = ctx or JobContext()
    device, checkpoints = ctx.device, ctx.checkpoints
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
    forward = ctx.wrap(model) or model
    result, state = LoopResult(), LoopState()
    # Checkpoints fall on evaluations (every is rounded up to a multiple of eval_every): each checkpoint's
    # report then carries the evaluation's metrics, which Tune schedulers and searchers require.
    every = -(-(checkpoints.every or args.eval_every) // args.eval_every) * args.eval_every if checkpoints else None
    saved = checkpoints.load() if checkpoints else None
    if saved is not None:
        state = LoopState.restore(saved, model, opt, sched, result, batches)
        if result.stopped_early:
            result.steps, result.train_seconds = state.step, state.elapsed
            return result
    t0 = time.perf_counter() - state.elapsed
    progress, last_loss = Throttle(ctx.live, total_steps, state.step), float("nan")
    for step in range(state.step, total_steps):
        model.train()
        activate(step)
        # From pinned memory (the loaders pin on CUDA) the copy overlaps with the previous step's work.
        batch = {k: v.to(device, non_blocking=True) for k, v in next(batches).items()}
        with autocast(device, ctx.precision):
            loss = forward(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        # Summed on the device: read (one host-device sync) at evaluations only, not at every step.
        state.running, state.n_running = state.running + loss.detach().float(), state.n_running + 1
        state.step = step + 1
        last = state.step == total_steps
        metrics = None
        if state.step % args.eval_every == 0 or last:
            train_loss = float(state.running / state.n_running)
            if not math.isfinite(train_loss):
                raise RuntimeError(f"loss is {train_loss} at step {state.step} (the mean training loss of steps "
                                   f"{state.step + 1 - state.n_running}-{state.step}): training diverged, so no "
                                   f"result is kept; lower the learning rate (lr {args.lr:g}, e.g. "
                                   f"{args.lr / 10:g}) or add warmup (warmup_ratio, e.g. 0.1)")
            model.eval()
            with torch.no_grad(), autocast(device, ctx.precision):
                metrics = dict(evaluate())
            bad = {k: v for k, v in metrics.items()
                   if isinstance(v, (int, float, np.number)) and not isinstance(v, bool) and not math.isfinite(v)}
            if bad:
                raise RuntimeError(f"the evaluation at step {state.step} gave "
                                   f"{', '.join(f'{k} = {v}' for k, v in bad.items())}: not a result, so none is "
                                   "kept; the adapter may have diverged (lower the learning rate) or the "
                                   "validation data may be empty (check the validation split)")
            score = metrics.get(score_key)
            if not isinstance(score, (int, float, np.number)) or isinstance(score, bool):
                raise RuntimeError(f"the evaluation at step {state.step} produced no selection score "
                                   f"{score_key!r} (it gave {score_key}={score!r}; metrics: "
                                   f"{', '.join(metrics) or 'none'}), so no checkpoint can be chosen")
            better = result.best_score is None or (score > result.best_score if mode == "max"
                                                   else score < result.best_score)
            if better:
                result.best_step, result.best_score, result.best_state = state.step, score, trainable_state(model)
                state.since_best = 0
            else:
                state.since_best += 1
            metrics.update(step=state.step, train_loss=train_loss, best_score=result.best_score)
            state.running, state.n_running, last_loss = 0.0, 0, train_loss
            result.history.append(metrics)
            result.stopped_early = args.patience is not None and state.since_best >= args.patience
        if every and state.step % every == 0 and not last:
            checkpoints.save(state.save(model, opt, sched, result, time.perf_counter() - t0), metrics)
        elif metrics is not None:
            ctx.report(metrics)
        progress(state.step, lambda r=state.running, n=state.n_running, last=last_loss: float(r / n) if n else last)
        if result.stopped_early:
            break
    result.steps = state.step
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
