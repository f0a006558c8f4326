"""python -m tlr_ray.corpus FILE --model MODEL [--block-size N] [--storage ROOT]

Prepare one text file (one sentence or document per line) for language-adapter training, with the code
the sweep's `corpus` job runs: tokenised by MODEL's fast tokenizer on every core, cut into blocks of N
tokens, split into train and held-out, written as memory-mapped files and published with checksums.
The result goes to --storage (a sweep's storage root: its LAs then reuse it) or else the local cache
($TLR_RAY_CACHE/corpora, default ~/.cache/tlr_ray/corpora). Run again, it finds the prepared corpus
and returns at once. MODEL: a Hub id, a local model folder, or demo://model.
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

from tlr_ray.config import LA_DEFAULTS, LanguageAdapters
from tlr_ray.tasks import DataError


def parse_args(argv=None) -> argparse.Namespace:
    la = LanguageAdapters()
    p = argparse.ArgumentParser(prog="python -m tlr_ray.corpus", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", help="a UTF-8 text file, one sentence or document per line")
    p.add_argument("--model", required=True, help="Hub id, local model folder, or demo://model")
    p.add_argument("--revision", help="the model's Hub revision")
    p.add_argument("--language", help="its language code (default: the file name, e.g. sw.txt -> sw)")
    p.add_argument("--block-size", type=int, default=LA_DEFAULTS["max_seq_length"],
                   help="tokens per block (the LA's max_seq_length; default %(default)s)")
    p.add_argument("--heldout-fraction", type=float, default=la.heldout_fraction,
                   help="as the sweep's (per_language) value, or the sweep prepares its own (default %(default)s)")
    p.add_argument("--heldout-split", choices=("random", "first"), default=la.heldout_split)
    p.add_argument("--heldout-seed", type=int, default=la.heldout_seed)
    p.add_argument("--max-lines", type=int, help="use only the first N non-empty lines")
    p.add_argument("--storage", help="storage root to publish into (default: the local cache)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="tokenizer processes (default: every core)")
    return p.parse_args(argv)


def peak_mib() -> tuple[float, float]:
    """Peak resident memory (MiB) of this process and of its largest finished child (the tokenizers)."""
    scale = 1 / 1024  # ru_maxrss is in KiB on Linux
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale,
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * scale)


def corpus_job(args) -> dict:
    """The job a sweep would plan for this file (same spec, so the same id)."""
    from tlr_ray import languages
    from tlr_ray.fingerprint import path_fingerprint
    from tlr_ray.plan import Job, job_id_of, model_fingerprint
    from tlr_ray.specs import CorpusSpec, Inputs
    from tlr_ray.validate import resolve_path
    path = Path(args.file).expanduser().resolve()
    if not path.is_file():
        raise DataError(f"{args.file} does not exist")
    lang = args.language or path.stem
    try:
        lang = languages.canonical(lang)
    except languages.UnknownLanguage as e:
        raise DataError(f"{e} Give the file's language with --language.") from None
    local = args.model.startswith(("demo://", ".", "/", "~")) or Path(args.model).exists()  # as the sweep check
    model = str(resolve_path(args.model)) if local else args.model
    spec = CorpusSpec(model=model_fingerprint(model, args.revision), language=lang,
                      corpus=path_fingerprint(str(path)), block_size=args.block_size,
                      heldout_fraction=args.heldout_fraction, heldout_split=args.heldout_split,
                      heldout_seed=args.heldout_seed, max_lines=args.max_lines)
    return Job(id=job_id_of("corpus", spec), kind="corpus", task=None, dataset=None,
               variant=None, variants=(), seed=None, ratio=None, languages=(lang,), target=None, needs=(),
               spec=spec, inputs=Inputs(model, args.revision, corpus={"path": str(path)}))


def main(argv=None) -> int:
    args = parse_args(argv)
    from tlr_ray import artifacts
    from tlr_ray import storage as store
    storage = store.resolve(args.storage or str(Path(os.environ.get("TLR_RAY_CACHE") or "~/.cache/tlr_ray")
                                                .expanduser() / "corpora"))
    try:
        job = corpus_job(args)
        manifest = artifacts.verify(storage, job.id)
        if manifest is not None:
            print(f"already prepared: {artifacts.location(storage, job.id)}/corpus")
            print(_figures(manifest["metrics"]))
            return 0
        from tlr_ray.runner import run_job
        from tlr_ray.train.context import JobContext
        t0 = time.perf_counter()
        metrics = run_job(job, storage, JobContext(device="cpu", cpus=args.workers, progress=True))  # no torch
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    wall = time.perf_counter() - t0
    own, child = peak_mib()
    print(f"prepared: {artifacts.location(storage, job.id)}/corpus")
    print(_figures({**metrics, "wall_seconds": wall, "peak_rss_mib": own, "peak_rss_mib_worker": child}))
    return 0


def _figures(m: dict) -> str:
    parts = [f"{m['lines']:,} lines", f"{m['train_tokens']:,} training tokens",
             f"{m['train_blocks']:,} + {m['heldout_blocks']:,} held-out blocks",
             f"{m['prepare_seconds']:.1f} s"]
    if "mib_per_second" in m:
        parts.append(f"{m['mib_per_second']:.2f} MiB/s")
    if "peak_rss_mib" in m:
        parts.append(f"peak memory {m['peak_rss_mib']:.0f} MiB (largest tokenizer process "
                     f"{m['peak_rss_mib_worker']:.0f} MiB)")
    return "; ".join(parts)


if __name__ == "__main__":
    sys.exit(main())
