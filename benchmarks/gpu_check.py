"""LA and TA training-step throughput of an mBERT-sized model on this machine's GPU: fp32 vs bf16 autocast,
eager vs SDPA attention, and 4 TA jobs packed on one GPU; tokens/s and MFU; a row for tlr_ray/step_times.yaml.

    bash benchmarks/gpu_check.sh                        # a GPU machine: writes its row into tlr_ray/step_times.yaml
    bash benchmarks/gpu_check.sh --no-write             # the same, the table left alone
    bash benchmarks/gpu_check.sh --toy --out /tmp/t.yaml   # CPU: a tiny config, a few steps (what the tests run)

The model is built from its config with random weights (no download): `BertConfig(vocab_size=119547,
hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)`, the size of
bert-base-multilingual-cased, which costs the same per step as the pretrained one. The LA job is MLM through
a MAD-X LA (SeqBnInvConfig, reduction 2) on the frozen model and its MLM head; the TA job is Stack(LA, TA)
with an NLI head, the LA frozen (benchmarks/train_throughput.py `build`, from a config instead of a
checkpoint). Seconds per step come from benchmarks/step_time.py `timed` (our training loop, run_loop, on a
fixed batch after 3 warm-up steps), the precision passed to run_loop ("fp32", or "bf16": autocast).

FLOPs per step: 4 * N * T, T the tokens of the batch, N the weights of the Linear layers each token passes
through (the encoder with its adapters; for the LA job also the MLM head's transform and its 119547-word
decoder; not the pooler and task head, which see one token per example): forward 2NT, backward through
the activations 2NT, and no weight gradients, the model's weights being frozen (the adapters' own weight
gradients, under 2% of N, and the attention scores QK^T and AV are not counted). This is 2/3 of the
6NT of full training. Evaluation (forward only): 2NT. MFU = FLOPs per second / the GPU's dense bf16 peak
(PEAK_BF16 below; fp32 runs are measured against the same peak).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks import step_time
from tlr_ray.train.loop import autocast

TABLE = Path(__file__).resolve().parent.parent / "tlr_ray" / "step_times.yaml"
MBERT = {"vocab_size": 119547, "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
         "intermediate_size": 3072}
TOY = {"vocab_size": 1000, "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
       "intermediate_size": 128}
# Dense bf16 tensor-core peaks (no sparsity), FLOP/s, by a substring of torch.cuda.get_device_name();
# the first match wins.
PEAK_BF16 = [("H100 PCIe", 756e12), ("H200", 989e12), ("H100", 989e12), ("A100", 312e12), ("3090", 71e12)]
PRECISIONS = ("fp32", "bf16")
ATTENTIONS = ("eager", "sdpa")


def peak_flops(device_name: str) -> float | None:
    return next((peak for key, peak in PEAK_BF16 if key.lower() in device_name.lower()), None)


def row_name(device_name: str) -> str:
    """tlr_ray/step_times.yaml's row for a device: h200, h100, a100, rtx3090, else a slug of the name."""
    for key, name in (("h200", "h200"), ("h100", "h100"), ("a100", "a100"), ("3090", "rtx3090")):
        if key in device_name.lower():
            return name
    return re.sub(r"[^a-z0-9]+", "-", device_name.lower().replace("nvidia", "")).strip("-") or "gpu"


# --- models ----------------------------------------------------------------------------------------------

def bert_config(size: dict, attention: str):
    from transformers import BertConfig
    return BertConfig(**size, attn_implementation=attention)


def la_model(config):
    """MLM through a MAD-X LA on the frozen model (as tlr_ray/train/mlm_adapter.py builds it)."""
    import adapters
    from transformers import BertForMaskedLM

    from tlr_ray.train.models import (
        _apply_inverse_before_decoder,
        bottleneck_config,
        freeze_all_but,
    )
    model = BertForMaskedLM(config)
    adapters.init(model)
    _apply_inverse_before_decoder(model)
    model.add_adapter("la", config=bottleneck_config(2, True, False, config.num_hidden_layers))
    model.set_active_adapters("la")
    freeze_all_but(model, "la", heads=False)
    return model


def ta_model(config):
    """Stack(LA, TA) with an NLI head, the LA frozen (benchmarks/train_throughput.py `build`)."""
    from adapters import AutoAdapterModel
    from adapters.composition import Stack

    from tlr_ray.tasks import get_task
    from tlr_ray.train.models import bottleneck_config, freeze_all_but
    model = AutoAdapterModel.from_config(config)
    for head in list(model.heads):
        model.delete_head(head)
    layers = config.num_hidden_layers
    model.add_adapter("la", config=bottleneck_config(2, True, True, layers))
    model.add_adapter("ta", config=bottleneck_config(16, False, True, layers))
    get_task("nli").add_head(model, "ta")
    freeze_all_but(model, "ta", heads=True)
    model.active_adapters = Stack("la", "ta")
    return model


def per_token_weights(model) -> int:
    """N of the FLOPs formula: weights of the Linear layers every token passes through."""
    return sum(m.weight.numel() for name, m in model.named_modules()
               if isinstance(m, torch.nn.Linear) and not name.startswith("heads.") and ".pooler." not in name)


def sdpa_support() -> tuple[bool, str]:
    """Whether `adapters` puts its own SDPA attention into BERT (so that attention_implementation="sdpa"
    keeps the adapter hooks in attention: prefix tuning, parallel composition)."""
    import adapters
    model = la_model(bert_config(TOY, "sdpa"))
    cls = type(model.bert.encoder.layer[0].attention.self)
    if model.config._attn_implementation == "sdpa" and cls.__name__ == "BertSdpaSelfAttentionWithAdapters":
        return True, (f"adapters {adapters.__version__} supports SDPA for BERT ({cls.__name__}, "
                      "adapters/models/bert/modeling_bert.py); it falls back to eager attention by itself only "
                      "for output_attentions=True, a head_mask or non-absolute position embeddings. The "
                      "bottleneck LAs/TAs sit after attention and see the same inputs either way. "
                      "transformers' default for BERT is already SDPA: the sweeps use it.")
    return False, (f"adapters {adapters.__version__} does NOT support SDPA for BERT: attn_implementation='sdpa' "
                   f"gives {cls.__name__} (config: {model.config._attn_implementation}); the sdpa rows below "
                   "are not the adapters' attention")


def max_difference(size: dict, device, seed: int = 0) -> float:
    """max |logits(sdpa) - logits(eager)| of the TA model in fp32, same weights, a padded batch."""
    torch.manual_seed(seed)
    eager = ta_model(bert_config(size, "eager")).to(device).eval()
    sdpa = ta_model(bert_config(size, "sdpa")).to(device).eval()
    sdpa.load_state_dict(eager.state_dict())
    ids = torch.randint(5, size["vocab_size"], (4, 32), device=device)
    mask = torch.ones_like(ids)
    mask[1:, 20:] = 0
    with torch.no_grad():
        a = eager(input_ids=ids, attention_mask=mask).logits
        b = sdpa(input_ids=ids, attention_mask=mask).logits
    return float((a - b).abs().max())


# --- timing ----------------------------------------------------------------------------------------------

def mlm_batch(vocab: int, batch: int, length: int, device) -> dict:
    ids = torch.randint(5, vocab, (batch, length), device=device)
    labels = torch.where(torch.rand(ids.shape, device=device) < 0.15, ids, torch.full_like(ids, -100))
    return {"input_ids": ids, "labels": labels}


def ta_batch(vocab: int, batch: int, length: int, device) -> dict:
    return {"input_ids": torch.randint(5, vocab, (batch, length), device=device),
            "labels": torch.randint(0, 3, (batch,), device=device)}


def seconds_per_step(model, batch: dict, steps: int, device, precision: str) -> float:
    return step_time.timed(model, batch, steps, device, precision)


def eval_seconds_per_example(model, batch: dict, steps: int, device, precision: str) -> float:
    model.eval()
    inputs = {"input_ids": batch["input_ids"]}
    with torch.no_grad(), autocast(device, precision):
        for _ in range(2):
            model(**inputs)
        sync(device)
        t0 = time.perf_counter()
        for _ in range(steps):
            model(**inputs)
        sync(device)
    return (time.perf_counter() - t0) / steps / len(batch["input_ids"])


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def packed_worker(a) -> None:
    """One of `--of` TA jobs sharing the GPU: build, warm up, wait for the others, time; one JSON line."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // a.of))
    size = TOY if a.toy else MBERT
    torch.manual_seed(a.index)
    model = ta_model(bert_config(size, a.attention)).to(device)
    batch = ta_batch(size["vocab_size"], a.ta_batch, a.ta_length, device)
    seconds_per_step(model, batch, 1, device, a.precision)  # CUDA context, kernels, allocator: warm
    barrier = Path(a.barrier)
    (barrier / f"ready-{a.index}").touch()
    deadline = time.time() + 600
    while len(list(barrier.glob("ready-*"))) < a.of and time.time() < deadline:
        time.sleep(0.05)
    start = time.time()
    seconds = seconds_per_step(model, batch, a.steps, device, a.precision)
    print(json.dumps({"seconds": seconds, "tokens": a.ta_batch * a.ta_length, "start": start, "end": time.time(),
                      "memory_gib": torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else 0.0}),
          flush=True)


def packed(a, n: int) -> list[dict]:
    """`n` TA jobs at once on this device, as `ta: {gpus_per_worker: 1/n}` packs them: n processes."""
    with tempfile.TemporaryDirectory() as barrier:
        cmd = [sys.executable, "-m", "benchmarks.gpu_check", "--worker", "--of", str(n), "--barrier", barrier,
               "--precision", "bf16", "--attention", "sdpa", "--steps", str(a.steps),
               "--ta-batch", str(a.ta_batch), "--ta-length", str(a.ta_length), *(["--toy"] if a.toy else [])]
        procs = [subprocess.Popen([*cmd, "--index", str(i)], stdout=subprocess.PIPE, text=True,
                                  cwd=Path(__file__).resolve().parent.parent) for i in range(n)]
        outs = [p.communicate(timeout=900)[0] for p in procs]
    if any(p.returncode for p in procs):
        raise RuntimeError(f"a packed TA process failed (exit codes {[p.returncode for p in procs]})")
    return [json.loads(out.strip().splitlines()[-1]) for out in outs]


# --- the step-time table ---------------------------------------------------------------------------------

def upsert_row(text: str, name: str, block: str) -> str:
    """`text` (tlr_ray/step_times.yaml) with the top-level entry `name` replaced by `block`, or `block`
    appended; every other line, comments included, stays as it was."""
    lines = text.splitlines(keepends=True)
    start = next((i for i, ln in enumerate(lines) if re.match(rf"{re.escape(name)}:(\s|$)", ln)), None)
    if start is None:
        return (text.rstrip("\n") + "\n" if text.strip() else "") + block
    end = start + 1
    while end < len(lines) and (lines[end].startswith((" ", "\t")) or not lines[end].strip()):
        end += 1
    while end > start + 1 and not lines[end - 1].strip():  # blank lines before the next entry stay
        end -= 1
    return "".join(lines[:start]) + block + "".join(lines[end:])


def table_row(name: str, model_key: str, note: str, mlm: tuple[float, int], ta: tuple[float, int],
              eval_per_example: float) -> str:
    return (f"{name}:                 # {note}\n  {model_key}:\n"
            f"    mlm: {{seconds: {mlm[0]:.4g}, tokens: {mlm[1]}}}\n"
            f"    ta: {{seconds: {ta[0]:.4g}, tokens: {ta[1]}}}\n"
            f"    eval_per_example: {eval_per_example:.3g}\n")


def write_row(path: Path, name: str, block: str) -> None:
    import yaml
    text = upsert_row(path.read_text() if path.exists() else "", name, block)
    parsed = yaml.safe_load(text)
    assert isinstance(parsed, dict) and name in parsed, f"the updated table lost its row {name!r}"
    path.write_text(text)


# --- main ------------------------------------------------------------------------------------------------

def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--toy", action="store_true", help="a tiny config and a few steps (what runs without a GPU)")
    p.add_argument("--out", help=f"the step-time table to update (default on a GPU: {TABLE}; with --toy: none)")
    p.add_argument("--no-write", action="store_true", help="print the row, update no table")
    p.add_argument("--device-name", help="the table's row (default from the GPU's name, e.g. h200)")
    p.add_argument("--steps", type=int, help="timed steps per setting (default 20; --toy 3)")
    p.add_argument("--mlm-batch", type=int, help="default 64 (--toy 4)")
    p.add_argument("--mlm-length", type=int, help="default 256 (--toy 32)")
    p.add_argument("--ta-batch", type=int, help="default 32 (--toy 4)")
    p.add_argument("--ta-length", type=int, help="default 128 (--toy 32)")
    p.add_argument("--eval-batch", type=int, help="default 64 (--toy 4)")
    p.add_argument("--pack", type=int, help="TA jobs packed on one GPU (default 4; --toy 2; 0: skip)")
    p.add_argument("--peak-tflops", type=float, help="the GPU's dense bf16 peak, if not in PEAK_BF16")
    # one packed TA process (started by `packed`)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    for flag in ("--of", "--index"):
        p.add_argument(flag, type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--barrier", help=argparse.SUPPRESS)
    p.add_argument("--precision", default="bf16", help=argparse.SUPPRESS)
    p.add_argument("--attention", default="sdpa", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    from tlr_ray.trial import quiet_libraries
    quiet_libraries()
    cuda = torch.cuda.is_available()
    if not cuda and not a.toy:
        print("no CUDA device: running at toy size (--toy); a full mBERT-sized run needs a GPU")
        a.toy = True
    defaults = {"steps": 3, "mlm_batch": 4, "mlm_length": 32, "ta_batch": 4, "ta_length": 32, "eval_batch": 4,
                "pack": 2} if a.toy else \
        {"steps": 20, "mlm_batch": 64, "mlm_length": 256, "ta_batch": 32, "ta_length": 128, "eval_batch": 64, "pack": 4}
    for k, v in defaults.items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    if a.worker:
        packed_worker(a)
        return 0
    out = None if a.no_write else Path(a.out) if a.out else (None if a.toy else TABLE)
    if a.toy and out is not None and out.resolve() == TABLE.resolve():
        print(f"error: --toy never writes {TABLE} (toy figures are no estimate); give another --out",
              file=sys.stderr)
        return 2
    device = torch.device("cuda" if cuda else "cpu")
    device_name = torch.cuda.get_device_name(0) if cuda else f"CPU ({torch.get_num_threads()} threads)"
    peak = a.peak_tflops * 1e12 if a.peak_tflops else peak_flops(device_name) if cuda else None
    size = TOY if a.toy else MBERT
    vocab = size["vocab_size"]
    print(f"device: {device_name}; torch {torch.__version__}; "
          f"{'toy config' if a.toy else 'mBERT-sized config'} {size}; {a.steps} timed steps per setting")
    print(f"SDPA: {sdpa_support()[1]}")
    print(f"SDPA vs eager, TA model, fp32, padded batch: max |logit difference| = "
          f"{max_difference(size, device):.2e}")

    rows, n_weights = [], {}
    for kind, build, make_batch, batch, length in (("LA (MLM)", la_model, mlm_batch, a.mlm_batch, a.mlm_length),
                                                   ("TA", ta_model, ta_batch, a.ta_batch, a.ta_length)):
        for attention in ATTENTIONS:
            torch.manual_seed(0)
            model = build(bert_config(size, attention)).to(device)
            n_weights[kind] = per_token_weights(model)
            data = make_batch(vocab, batch, length, device)
            for precision in PRECISIONS:
                rows.append((kind, precision, attention, batch * length,
                             seconds_per_step(model, data, a.steps, device, precision), 4 * n_weights[kind]))
            if kind == "TA" and attention == "sdpa":
                eval_data = ta_batch(vocab, a.eval_batch, a.ta_length, device)
                eval_s = eval_seconds_per_example(model, eval_data, a.steps, device, "bf16")
            del model
            if cuda:
                torch.cuda.empty_cache()
    cpu_note = "" if cuda else " (on CPU run_loop's bf16 autocast is off: both precisions run fp32)"

    def mfu(flops_per_token: float, tokens_per_s: float) -> str:
        return f"{100 * flops_per_token * tokens_per_s / peak:.1f}%" if peak else "n/a"

    print(f"\nN (per-token weights): LA job {n_weights['LA (MLM)'] / 1e6:.1f} M, TA job {n_weights['TA'] / 1e6:.1f} M; "
          f"FLOPs per step = 4 N T (forward 2NT + backward through activations 2NT, frozen weights: no weight "
          f"gradients); peak {f'{peak / 1e12:.0f} TFLOP/s dense bf16' if peak else 'unknown (MFU n/a)'}{cpu_note}\n")
    print("| job | precision | attention | tokens/step | s/step | tokens/s | TFLOP/s | MFU |")
    print("|---|---|---|---|---|---|---|---|")
    for kind, precision, attention, tokens, seconds, per_token in rows:
        tps = tokens / seconds
        print(f"| {kind} | {precision} | {attention} | {tokens} | {seconds:.4f} | {tps:,.0f} | "
              f"{per_token * tps / 1e12:.2f} | {mfu(per_token, tps)} |")
    eval_tps = a.ta_length / eval_s
    print(f"| TA eval (forward) | bf16 | sdpa | {a.eval_batch * a.ta_length} | "
          f"{eval_s * a.eval_batch:.4f} | {eval_tps:,.0f} | {2 * n_weights['TA'] * eval_tps / 1e12:.2f} | "
          f"{mfu(2 * n_weights['TA'], eval_tps)} |")
    single = next(s for k, pr, at, _, s, _ in rows if k == "TA" and pr == "bf16" and at == "sdpa")
    if a.pack > 1:
        results = packed(a, a.pack)
        tps = sum(r["tokens"] / r["seconds"] for r in results)
        mean_s = sum(r["seconds"] for r in results) / len(results)
        overlap = max(r["start"] for r in results) < min(r["end"] for r in results)
        print(f"| TA x{a.pack} packed, summed | bf16 | sdpa | {a.pack} x {a.ta_batch * a.ta_length} | "
              f"{mean_s:.4f} each | {tps:,.0f} | {4 * n_weights['TA'] * tps / 1e12:.2f} | "
              f"{mfu(4 * n_weights['TA'], tps)} |")
        memory = max(r["memory_gib"] for r in results)
        print(f"\npacked: {a.pack} TA processes at once give {tps * single / (a.ta_batch * a.ta_length):.2f}x the "
              f"tokens/s of one{'' if overlap else ' (their timed windows did not all overlap)'}"
              f"{f'; peak GPU memory {memory:.1f} GiB each' if cuda else ''}")
    by = {(k, pr, at): s for k, pr, at, _, s, _ in rows}
    for kind in ("LA (MLM)", "TA"):
        print(f"{kind}: bf16/fp32 speed-up {by[kind, 'fp32', 'sdpa'] / by[kind, 'bf16', 'sdpa']:.2f}x (sdpa), "
              f"sdpa/eager {by[kind, 'bf16', 'eager'] / by[kind, 'bf16', 'sdpa']:.2f}x (bf16), "
              f"{by[kind, 'fp32', 'eager'] / by[kind, 'fp32', 'sdpa']:.2f}x (fp32)")

    # The estimate's row: the settings sweeps run with on a GPU (bf16 autocast, transformers' default SDPA).
    name = a.device_name or (row_name(device_name) if cuda else "cpu-toy")
    note = (f"benchmarks/gpu_check.sh, {device_name}, {time.strftime('%Y-%m-%d')}: bf16 autocast, SDPA, "
            f"random-weight {'toy' if a.toy else 'mBERT-sized'} model, {a.steps} steps")
    block = table_row(name, "toy" if a.toy else "bert-base-multilingual-cased", note,
                      (by["LA (MLM)", "bf16", "sdpa"], a.mlm_batch * a.mlm_length),
                      (by["TA", "bf16", "sdpa"], a.ta_batch * a.ta_length), eval_s)
    print(f"\nrow for {out or 'tlr_ray/step_times.yaml (not written)'}:\n{block}", end="")
    if out is not None:
        write_row(out, name, block)
        print(f"updated {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
