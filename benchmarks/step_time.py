"""Measure seconds per optimizer step of our MLM-adapter and TA training on this device, and print a
row for tlr_ray/step_times.yaml (the compute estimate of `--dry-run`).

    python benchmarks/step_time.py                                   # the demo model, on CPU
    python benchmarks/step_time.py --model bert-base-multilingual-cased --device-name h100 \
        --mlm-batch 64 --mlm-length 256 --ta-batch 32 --ta-length 128
"""
from __future__ import annotations

import argparse
import time

import torch
from adapters.composition import Stack

from benchmarks.train_throughput import build, resolve_model
from tlr_ray.config import TrainArgs
from tlr_ray.train.context import JobContext
from tlr_ray.train.loop import run_loop
from tlr_ray.train.models import bottleneck_config, freeze_all_but, load_tokenizer, mlm_model
from tlr_ray.trial import quiet_libraries


def timed(model, batch: dict, steps: int, device, precision: str = "auto") -> float:
    """Seconds per step over `steps` steps on a fixed batch (after 3 warm-up steps), at `precision` as
    run_loop takes it ("auto": bf16 autocast on GPU)."""
    def batches():
        while True:
            yield batch
    args = TrainArgs(batch_size=1, lr=1e-4, max_steps=steps, eval_every=10**9)
    kw = dict(activate=lambda s: None, evaluate=lambda: {"s": 0.0}, args=args, score_key="s", mode="max",
              ctx=JobContext(device=device, precision=precision))
    run_loop(model, batches(), total_steps=3, **kw)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    run_loop(model, batches(), total_steps=steps, **kw)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="demo")
    p.add_argument("--device-name", default="cpu-2core", help="the row name to print")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--mlm-batch", type=int, default=32)
    p.add_argument("--mlm-length", type=int, default=64)
    p.add_argument("--ta-batch", type=int, default=32)
    p.add_argument("--ta-length", type=int, default=64)
    a = p.parse_args()
    quiet_libraries()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    path = resolve_model(a.model)
    tok = load_tokenizer(path)
    vocab = tok.vocab_size

    mlm = mlm_model(path)
    layers = mlm.config.num_hidden_layers
    mlm.add_adapter("la", config=bottleneck_config(2, True, True, layers))
    mlm.set_active_adapters("la")
    freeze_all_but(mlm, "la", heads=False)
    ids = torch.randint(5, vocab, (a.mlm_batch, a.mlm_length), device=device)
    labels = torch.where(torch.rand(ids.shape, device=device) < 0.15, ids, torch.full_like(ids, -100))
    mlm_s = timed(mlm.to(device), {"input_ids": ids, "labels": labels}, a.steps, device)

    ta = build(path, seed=0).to(device)
    ta.active_adapters = Stack("la", "ta")
    ids = torch.randint(5, vocab, (a.ta_batch, a.ta_length), device=device)
    ta_s = timed(ta, {"input_ids": ids, "labels": torch.randint(0, 3, (a.ta_batch,), device=device)},
                 a.steps, device)
    key = "demo" if a.model == "demo" else a.model.rstrip("/").split("/")[-1]
    print(f"# measured on {device} ({torch.get_num_threads()} threads), {a.steps} steps each")
    print(f"{a.device_name}:\n  {key}:\n    mlm: {{seconds: {mlm_s:.3f}, tokens: {a.mlm_batch * a.mlm_length}}}\n"
          f"    ta: {{seconds: {ta_s:.3f}, tokens: {a.ta_batch * a.ta_length}}}")


if __name__ == "__main__":
    main()
