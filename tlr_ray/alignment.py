"""How close are source and target representations inside a TA setup? (the TLR paper's Figure 3)

For each chosen variant, the TA of (dataset, target) from a finished sweep is loaded with its LAs; N
source examples (the training dataset's validation split) pass through Stack(LA(source), TA) and N target
examples (the evaluation split) through Stack(LA(target), TA). Per layer, we take the [CLS] vectors, average
each language's, and report the cosine similarity of the two means (sets need not be parallel).

    python -m tlr_ray.alignment sweeps/demo.yaml --dataset demo_xnli --target sw \
        --variants MAD-X ALL-MULTI --examples 500 --out runs/alignment
writes alignment.csv (variant, layer, cosine) and alignment.png, and prints the table.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tlr_ray import artifacts
from tlr_ray.plan import plan_sweep
from tlr_ray.storage import resolve
from tlr_ray.validate import load_sweep


def find_jobs(plan, variant: str, dataset: str, target: str):
    """(eval job, TA job, source-LA job id) of `variant` on (dataset, target), first seed."""
    by_id = {j.id: j for j in plan.jobs}
    evals = sorted((j for j in plan.of_kind("eval") if variant in j.variants and j.dataset == dataset
                    and j.target == target), key=lambda j: j.seed)
    if not evals:
        raise SystemExit(f"error: no eval job of {variant} on {dataset}/{target} in this sweep")
    ta = by_id[evals[0].needs[0]]
    return evals[0], ta, ta.spec.validation_adapter or (ta.spec.cycle or [None])[0]


def cls_means(model, tokenized, task, tokenizer, device, batch_size: int = 64):
    """Per layer (embeddings = 0), the mean [CLS] vector over the examples."""
    import torch
    sums, n = None, 0
    cols = [c for c in ("input_ids", "token_type_ids", "attention_mask") if c in tokenized.column_names]
    rows = tokenized.select_columns(cols)
    model.eval()
    with torch.no_grad():
        for start in range(0, len(rows), batch_size):
            chunk = rows[start:start + batch_size]
            examples = [dict(zip(chunk, v, strict=True)) for v in zip(*chunk.values(), strict=True)]
            batch = task.collate(examples, tokenizer)
            out = model.base_model(**{k: v.to(device) for k, v in batch.items() if k in cols},
                                   output_hidden_states=True)
            cls = torch.stack([h[:, 0] for h in out.hidden_states])  # layers x batch x hidden
            sums = cls.sum(1) if sums is None else sums + cls.sum(1)
            n += cls.shape[1]
    return sums / n


def measure(sweep, plan, storage: str, variant: str, dataset: str, target: str, examples: int):
    import torch
    from adapters.composition import Stack

    from tlr_ray.tasks import get_task
    from tlr_ray.train.models import load_la, load_tokenizer, task_model
    ev, ta, source_adapter = find_jobs(plan, variant, dataset, target)
    for needed in [ta.id, *(n for n in (ev.spec.adapter, source_adapter) if n)]:
        if artifacts.verify(storage, needed) is None:
            raise SystemExit(f"error: {needed} has no artifact in {storage}; run the sweep first")
    task = get_task(ta.task, ta.spec.task_options or {})
    tokenizer = load_tokenizer(sweep.model, sweep.config.model_revision)
    model = task_model(sweep.model, sweep.config.model_revision)
    model.load_adapter(str(artifacts.local_copy(storage, ta.id) / "adapter"), load_as="ta", with_head=True)
    args = sweep.task_args[next(k for k, s in sweep.config.tasks.items() if s.name(k) == ta.task)]
    sides = {}
    for side, adapter_id, source, split, code in (
            ("source", source_adapter, ta.inputs.train, "validation", None),
            ("target", ev.spec.adapter, ev.inputs.data, ev.spec.split, ev.spec.code)):
        name = f"{side}_adapter"
        if adapter_id:
            # as the TA was trained and evaluated: MAD-X 2.0 drops the LA's last layer at load
            load_la(model, artifacts.local_copy(storage, adapter_id) / "adapter", name,
                    ta.spec.leave_out_last_layer)
        model.active_adapters = Stack(name, "ta") if adapter_id else Stack("ta")
        data = task.load(source, split, code)
        data = data.shuffle(seed=0).select(range(min(examples, len(data))))
        sides[side] = cls_means(model, task.tokenize(data, tokenizer, args.max_seq_length), task, tokenizer,
                                torch.device("cpu"))
    cos = torch.nn.functional.cosine_similarity(sides["source"], sides["target"], dim=-1)
    return [{"variant": variant, "layer": i, "cosine": float(c)} for i, c in enumerate(cos)]


def plot(rows, path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for variant in dict.fromkeys(r["variant"] for r in rows):
        pts = [(r["layer"], r["cosine"]) for r in rows if r["variant"] == variant]
        ax.plot(*zip(*pts, strict=True), marker="o", label=variant)
    ax.set(xlabel="layer (0 = embeddings)", ylabel="cosine(source [CLS], target [CLS])", title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m tlr_ray.alignment", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sweep")
    p.add_argument("--dataset", required=True)
    p.add_argument("--target", required=True, help="canonical language code, e.g. sw")
    p.add_argument("--variants", nargs="+", default=["MAD-X", "ALL-MULTI"])
    p.add_argument("--examples", type=int, default=500)
    p.add_argument("--storage", help="artifact root, folder or URI (default: the sweep's execution.storage)")
    p.add_argument("--out", default="alignment", help="folder for alignment.csv and alignment.png")
    a = p.parse_args(argv)
    from tlr_ray.trial import quiet_libraries
    quiet_libraries()
    sweep = load_sweep(a.sweep)
    plan = plan_sweep(sweep)
    storage = resolve(a.storage or sweep.config.execution.storage)
    rows = [r for v in a.variants for r in measure(sweep, plan, storage, v, a.dataset, a.target, a.examples)]
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    import pandas as pd
    table = pd.DataFrame(rows).pivot(index="layer", columns="variant", values="cosine")[a.variants]
    table.to_csv(out / "alignment.csv")
    plot(rows, out / "alignment.png", f"{a.dataset}: en vs {a.target}, {a.examples} examples each")
    print(table.round(4).to_string())
    print(f"wrote {out / 'alignment.csv'} and {out / 'alignment.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
