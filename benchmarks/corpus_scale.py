"""How LA corpus preparation and LA training scale with the corpus: time, throughput and peak memory.

    python benchmarks/corpus_scale.py                 # 40 and 160 MiB, the demo tokenizer, every core
    python benchmarks/corpus_scale.py --sizes 8 32    # quicker

For each size it generates a text corpus (demo-world sentences, one per line), prepares it with the real
code path (`python -m tlr_ray.corpus`, the code the sweep's `corpus` job runs), then runs a few steps of
the real LA job on the prepared corpus, each in its own process, and prints: preparation time, MiB/s,
the peak resident memory of preparation (all its processes together) and of the LA job, and the raw
single-thread throughput of the same tokenizer's batch encoding on the same text
(TOKENIZERS_PARALLELISM=false, encoding only: no reading, no writing), with the ratio ours/raw.
Run it on an idle machine: the ratio compares two measurements of one run, but other load skews both.
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
LA_STEPS = 20
BLOCK = 128


def generate(path: Path, mib: int) -> None:
    """`mib` MiB of demo-language lines (a pool of distinct sentences, drawn at random)."""
    from tlr_ray.demo.language import text_line
    rng = random.Random(0)
    pool = [text_line(rng, code) for code in ("en", "sw", "yo", "th") for _ in range(5000)]
    target, size = mib * 2**20, 0
    with open(path, "w", encoding="utf-8") as f:
        while size < target:
            chunk = "\n".join(rng.choices(pool, k=10_000)) + "\n"
            f.write(chunk)
            size += len(chunk.encode())


def peak_rss(cmd: list[str], env: dict | None = None) -> tuple[float, float, str]:
    """(seconds, peak MiB resident summed over the process and its children, stdout) of running `cmd`."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    ps, peak = psutil.Process(proc.pid), 0
    while proc.poll() is None:
        try:
            procs = [ps, *ps.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in procs if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.05)
    out = proc.stdout.read()
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out}")
    return time.perf_counter() - t0, peak / 2**20, out


RAW = """
import os, sys, time
os.environ["TOKENIZERS_PARALLELISM"] = "false"
from tokenizers import Tokenizer
from transformers import AutoTokenizer
tok = Tokenizer.from_str(AutoTokenizer.from_pretrained(sys.argv[2]).backend_tokenizer.to_str())
tok.no_truncation(); tok.no_padding()
seconds = 0.0
with open(sys.argv[1], encoding="utf-8") as f:
    while lines := [ln.strip() for ln in f.readlines(4 << 20) if ln.strip()]:
        t0 = time.perf_counter(); tok.encode_batch(lines, add_special_tokens=True); seconds += time.perf_counter() - t0
print(seconds)
"""

LA_JOB = """
import json, pickle, sys
from tlr_ray.runner import run_job
from tlr_ray.train.context import JobContext
job, storage = pickle.loads(open(sys.argv[1], "rb").read()), sys.argv[2]
print(json.dumps({k: v for k, v in run_job(job, storage, JobContext(progress=False)).items() if k != "history"}))
"""


def jobs_for(text: Path):
    """The corpus and LA jobs a sweep plans for this file as the en corpus (the demo model)."""
    from tlr_ray.plan import plan_sweep
    from tlr_ray.validate import load_sweep
    sweep = load_sweep(ROOT / "sweeps" / "demo.yaml", {
        "variants": ["MAD-X"], "tasks": {"nli": {"train": "demo_multinli", "eval": ["demo_xnli"]}},
        "language_adapters": {"corpora": {"en": str(text), "sw": "demo://text/sw.txt", "th": "demo://text/th.txt"},
                              "train_args": {"max_steps": LA_STEPS, "eval_every": LA_STEPS, "batch_size": 32,
                                             "max_seq_length": BLOCK, "eval_batch_size": 64}}})
    plan = plan_sweep(sweep)
    corpus = next(j for j in plan.of_kind("corpus") if j.languages == ("en",))
    la = next(j for j in plan.of_kind("la") if j.languages == ("en",))
    return sweep, corpus, la


def measure(mib: int, work: Path, workers: int) -> dict:
    from tlr_ray import artifacts
    text = work / f"en-{mib}.txt"
    generate(text, mib)
    sweep, corpus, la = jobs_for(text)
    storage = work / "store"
    python = sys.executable
    prep_s, prep_mib, out = peak_rss([python, "-m", "tlr_ray.corpus", str(text), "--model", sweep.model,
                                      "--language", "en", "--block-size", str(BLOCK), "--storage", str(storage),
                                      "--workers", str(workers)])
    where = f"{artifacts.location(str(storage), corpus.id)}/corpus"
    assert f"prepared: {where}" in out, f"the CLI prepared another job than the sweep plans:\n{out}"
    meta = json.loads((Path(where) / "meta.json").read_text())
    job_file = work / "la.pickle"  # a Job (typed spec) as the sweep hands it to a worker
    job_file.write_bytes(pickle.dumps(la))
    la_s, la_mib, la_out = peak_rss([python, "-c", LA_JOB, str(job_file), str(storage)])
    raw_s = float(peak_rss([python, "-c", RAW, str(text), sweep.model])[2].strip().splitlines()[-1])
    size = text.stat().st_size / 2**20
    return {"MiB": size, "prep_s": meta["seconds"], "prep_wall_s": prep_s, "prep_MiB_s": size / meta["seconds"],
            "prep_peak_MiB": prep_mib, "raw_MiB_s": size / raw_s, "ratio": raw_s / meta["seconds"],
            "la_peak_MiB": la_mib, "la_s": la_s, "tokens": meta["train_tokens"],
            "la": json.loads(la_out.strip().splitlines()[-1])}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[40, 160], help="corpus sizes in MiB")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="corpus-scale-") as tmp:
        os.environ["TLR_RAY_CACHE"] = os.environ.get("TLR_RAY_CACHE") or str(Path(tmp) / "cache")
        rows = [measure(mib, Path(tmp), args.workers) for mib in args.sizes]
    print(f"\ncorpus preparation ({args.workers} workers, {os.cpu_count()} cores) and {LA_STEPS} LA steps "
          f"(batch 32 x {BLOCK} tokens), demo tokenizer")
    print(f"{'MiB':>6} {'tokens':>12} {'prep s':>7} {'MiB/s':>6} {'raw MiB/s':>9} {'ours/raw':>8} "
          f"{'prep peak MiB':>13} {'LA peak MiB':>11}")
    for r in rows:
        print(f"{r['MiB']:>6.0f} {r['tokens']:>12,} {r['prep_s']:>7.1f} {r['prep_MiB_s']:>6.2f} {r['raw_MiB_s']:>9.2f} "
              f"{r['ratio']:>8.2f} {r['prep_peak_MiB']:>13.0f} {r['la_peak_MiB']:>11.0f}")
    if len(rows) > 1:
        a, b = rows[0], rows[-1]
        print(f"from {a['MiB']:.0f} to {b['MiB']:.0f} MiB: "
              f"preparation peak x{b['prep_peak_MiB'] / a['prep_peak_MiB']:.2f}, "
              f"LA job peak x{b['la_peak_MiB'] / a['la_peak_MiB']:.2f}, time x{b['prep_s'] / a['prep_s']:.2f}")


if __name__ == "__main__":
    main()
