"""Prepare one LA corpus once: stream its text, tokenise it in parallel, write fixed-length blocks of
token ids to two flat files (train and held-out), which every LA, BA and MA job then memory-maps.

Why a numpy memmap of uint32 and not Arrow: a block is a fixed-length row, so block i is a slice of one
flat file; a job (or a data-parallel rank) maps the file and reads only the blocks it draws, nothing is
loaded, and the file is one checksummed artifact file. uint32 because mBERT's and XLM-R's vocabularies
(119k, 250k) do not fit uint16.

Memory stays bounded while preparing: the text is read in chunks of about `CHUNK_BYTES` (1 MiB), at most
2 x workers chunks are in flight, and each worker returns its chunk's token ids as one numpy array that
is appended to the output files at once. Lines are tokenised one by one with special tokens, concatenated
in order and cut into blocks (run_mlm's group_texts); only the last partial block is dropped.

Held-out split, per non-empty line: `random` (default) holds out line i when a seeded hash of i falls
below the fraction: the same split for every job that reads the corpus, independent of chunking and of
the number of workers. `first` holds out the first fraction of the lines (the reference's
`train[:5%]`); it needs one extra pass to count the lines.
"""
from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from tlr_ray.plan import Job
from tlr_ray.tasks import DataError

log = logging.getLogger(__name__)
WIKIPEDIA = "wikimedia/wikipedia"
CHUNK_BYTES = 2**20  # a worker's encodings of one chunk take ~25x its size: keep it small
LONG_LINE = 8 * 2**20  # a longer line would make one chunk (and a worker's memory) unbounded
DTYPE = np.uint32
TRAIN, HELDOUT, META = "train.u32", "heldout.u32", "meta.json"


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64: a well-mixed 64-bit hash of each element."""
    with np.errstate(over="ignore"):
        x = (x + np.uint64(0x9E3779B97F4A7C15)).astype(np.uint64)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def heldout_mask(start: int, n: int, fraction: float, seed: int, first: int | None) -> np.ndarray:
    """Which of lines start..start+n-1 are held out: the first `first` lines, or a seeded hash < fraction."""
    idx = np.arange(start, start + n, dtype=np.uint64)
    if first is not None:
        return idx < np.uint64(first)
    u = (_mix(idx ^ _mix(np.array([seed], dtype=np.uint64))) >> np.uint64(11)).astype(np.float64) / 2.0**53
    return u < fraction


# --- reading the text, in chunks of non-empty lines --------------------------------------------------

class Progress:
    """A log line at most every `every` seconds: done, rate, ETA (when the total is known)."""

    def __init__(self, what: str, total: float | None, unit: str, report: Callable[[dict], None],
                 every: float = 10.0):
        self.what, self.total, self.unit, self.report, self.every = what, total, unit, report, every
        self.t0 = self.last = time.monotonic()

    def update(self, done: float, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < self.every:
            return
        self.last = now
        rate = done / max(now - self.t0, 1e-9)
        eta = (self.total - done) / rate if self.total and rate else None
        scale = 2**20 if self.unit == "MiB" else 1
        pct = f" of {self.total / scale:,.1f} {self.unit} ({100 * done / self.total:.0f}%)" if self.total else ""
        msg = (f"{self.what}: {done / scale:,.1f} {self.unit}{pct}, {rate / scale:,.2f} {self.unit}/s"
               + (f", ETA {eta:,.0f} s" if eta is not None else ""))
        log.info(msg)
        print(msg, flush=True)
        self.report({"prepared": done / self.total if self.total else 0.0, f"{self.unit.lower()}_per_s": rate / scale,
                     **({"eta_seconds": eta} if eta is not None else {})})


def file_chunks(path: Path, language: str, progress: Progress | None) -> Iterator[list[str]]:
    """Non-empty, stripped lines of a UTF-8 text file, about CHUNK_BYTES at a time."""
    done, lines_before = 0, 0
    with open(path, "rb") as f:  # buffered: peek() says whether a line went on past LONG_LINE
        while True:
            data = f.read(CHUNK_BYTES)
            if not data:
                break
            data += f.readline(LONG_LINE)  # end the chunk at a line break
            if not data.endswith(b"\n") and f.peek(1):
                after = lines_before + data.count(b"\n")
                raise DataError(f"corpus file {path} (language {language}) has a line of over {LONG_LINE >> 20} MiB "
                                f"after line {after}: give one sentence or document per "
                                "line, with \\n line breaks (a file with \\r line endings reads as one line)")
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as e:
                line = lines_before + data[:e.start].count(b"\n") + 1
                raise DataError(f"corpus file {path} (language {language}) is not UTF-8 text: line {line} has "
                                f"the byte {data[e.start:e.start + 1]!r}; convert it, e.g. with "
                                f"`iconv -f LATIN1 -t UTF-8`") from None
            lines_before += data.count(b"\n")
            done += len(data)
            if progress:
                progress.update(done)
            yield [s for s in (ln.strip() for ln in text.split("\n")) if s]


def wikipedia_chunks(config: str, progress: Progress | None) -> Iterator[list[str]]:
    """Paragraphs of wikimedia/wikipedia `config` (e.g. 20231101.sw), streamed: never a whole dump in
    memory. A row is an article; its paragraphs (lines) are the corpus's lines."""
    import datasets
    try:
        ds = datasets.load_dataset(WIKIPEDIA, config, split="train", streaming=True)
    except Exception as e:  # noqa: BLE001  (any Hub failure: say what we tried to load)
        raise DataError(f"could not load {WIKIPEDIA} config {config!r}: {e}. Give a local text file under "
                        "language_adapters.corpora instead.") from e
    if progress is not None:  # articles, when the dump's card says how many
        splits = getattr(ds.info, "splits", None) or {}
        progress.total = splits["train"].num_examples if "train" in splits else None
        progress.unit = "articles"
    chunk, size, done = [], 0, 0
    for done, row in enumerate(ds, 1):
        for p in row["text"].split("\n"):
            if p := p.strip():
                chunk.append(p)
                size += len(p)
        if size >= CHUNK_BYTES:
            if progress:
                progress.update(done)
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


def capped(chunks: Iterator[list[str]], max_lines: int | None) -> Iterator[list[str]]:
    seen = 0
    for chunk in chunks:
        if max_lines is not None and seen + len(chunk) >= max_lines:
            yield chunk[:max_lines - seen]
            return
        seen += len(chunk)
        yield chunk


# --- tokenising, in worker processes ----------------------------------------------------------------

_TOKENIZER = None


def _init_worker(tokenizer_json: str) -> None:
    """Each worker holds the fast (Rust) tokenizer, single-threaded: the parallelism is the processes."""
    global _TOKENIZER
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    from tokenizers import Tokenizer
    _TOKENIZER = Tokenizer.from_str(tokenizer_json)
    _TOKENIZER.no_truncation()
    _TOKENIZER.no_padding()


def _ids(lines: list[str]) -> np.ndarray:
    encodings = _TOKENIZER.encode_batch(lines, add_special_tokens=True) if lines else []
    lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(encodings))
    out = np.empty(int(lengths.sum()), dtype=DTYPE)
    pos = 0
    for e, n in zip(encodings, lengths, strict=True):
        out[pos:pos + n] = e.ids
        pos += n
    return out


def _tokenize_chunk(args: tuple[list[str], np.ndarray]) -> tuple[np.ndarray, np.ndarray, int]:
    lines, held = args
    train = [ln for ln, h in zip(lines, held, strict=True) if not h]
    heldout = [ln for ln, h in zip(lines, held, strict=True) if h]
    return _ids(train), _ids(heldout), int(held.sum())


def backend_json(tokenizer) -> str:
    """The fast tokenizer's own definition (what `tokenizer(...)` runs), to rebuild it in a worker."""
    if not getattr(tokenizer, "is_fast", False):
        raise DataError(f"{type(tokenizer).__name__} is not a fast (Rust) tokenizer; corpus preparation needs "
                        "one (AutoTokenizer gives it for mBERT and XLM-R)")
    return tokenizer.backend_tokenizer.to_str()


# --- the whole preparation ------------------------------------------------------------------------------

def prepare(chunks: Iterator[list[str]], tokenizer, out: Path, *, block_size: int, heldout_fraction: float,
            heldout_seed: int, first: int | None, workers: int, describe: str) -> dict:
    """Tokenise `chunks` into out/train.u32 and out/heldout.u32 (blocks of `block_size` ids) and
    out/meta.json. Returns the meta. `describe` names the corpus and language in errors."""
    out.mkdir(parents=True, exist_ok=True)
    t0, lines, held_lines = time.perf_counter(), 0, 0
    tokens = {TRAIN: 0, HELDOUT: 0}
    files = {name: open(out / name, "wb") for name in tokens}
    tokenizer_json = backend_json(tokenizer)

    def tasks():
        nonlocal lines
        for chunk in chunks:
            yield chunk, heldout_mask(lines, len(chunk), heldout_fraction, heldout_seed, first)
            lines += len(chunk)

    def write(result) -> None:
        nonlocal held_lines
        for name, ids in zip((TRAIN, HELDOUT), result[:2], strict=True):
            files[name].write(ids.tobytes())
            tokens[name] += len(ids)
        held_lines += result[2]

    try:
        if workers <= 1:
            _init_worker(tokenizer_json)
            for task in tasks():
                write(_tokenize_chunk(task))
        else:
            # Not fork: the parent may be a Ray worker with threads, and a forked copy could deadlock. A fork
            # server (started by fork+exec) that preloads this module forks the workers; each still runs the
            # parent's __main__ top level once (in Ray: its worker script, ~0.6 s), not torch.
            ctx = mp.get_context("forkserver")
            ctx.set_forkserver_preload([__name__])
            with ctx.Pool(workers, _init_worker, (tokenizer_json,)) as pool:
                pending: deque = deque()
                for task in tasks():
                    pending.append(pool.apply_async(_tokenize_chunk, (task,)))
                    if len(pending) >= 2 * workers:  # bounded: memory does not grow with the corpus
                        write(pending.popleft().get())
                while pending:
                    write(pending.popleft().get())
    finally:
        for f in files.values():
            f.close()
    if lines == 0:
        raise DataError(f"{describe} is empty: it has no non-empty line of text")
    blocks = {}
    for name, n in tokens.items():
        blocks[name] = n // block_size
        os.truncate(out / name, blocks[name] * block_size * np.dtype(DTYPE).itemsize)  # drop the last partial block
    if blocks[TRAIN] < 1:
        raise DataError(f"{describe} has {tokens[TRAIN]} training tokens, fewer than one block of {block_size}; "
                        "give more text (or a smaller max_seq_length)")
    if blocks[HELDOUT] < 1:
        raise DataError(f"{describe}: its held-out {heldout_fraction:g} of the lines ({held_lines} of {lines}) "
                        f"has {tokens[HELDOUT]} tokens, fewer than one block of {block_size}; give more text or a "
                        "larger language_adapters.heldout_fraction")
    meta = {"block_size": block_size, "dtype": np.dtype(DTYPE).name, "lines": lines, "heldout_lines": held_lines,
            "train_tokens": tokens[TRAIN], "heldout_tokens": tokens[HELDOUT], "train_blocks": blocks[TRAIN],
            "heldout_blocks": blocks[HELDOUT], "vocab_size": len(tokenizer),
            "heldout_fraction": heldout_fraction, "heldout_seed": heldout_seed, "heldout_first": first,
            "seconds": time.perf_counter() - t0, "workers": workers}
    (out / META).write_text(json.dumps(meta, indent=1))
    return meta


def count_lines(chunks: Iterator[list[str]]) -> int:
    return sum(len(c) for c in chunks)


# --- the corpus job's recipe ------------------------------------------------------------------------------

def run_corpus_job(job: Job, out_dir: Path, ctx) -> dict:
    """The `corpus` job: prepare one language's text for the tokenizer of the sweep's model into
    out_dir/corpus/ (published like every artifact: checksummed, manifest last)."""
    from transformers import AutoTokenizer  # not tlr_ray.train.models: no torch or adapters needed here
    spec, inputs = job.spec, job.inputs
    revision = {"revision": inputs.model_revision} if inputs.model_revision else {}
    tokenizer = AutoTokenizer.from_pretrained(inputs.model, **revision)
    where, lang = inputs.corpus, spec.language
    if "path" in where:
        path = Path(where["path"])
        if not path.is_file():
            raise DataError(f"corpus file {path} (language {lang}) does not exist (language_adapters.corpora)")
        describe, total = f"corpus file {path} (language {lang})", path.stat().st_size

        def chunks(progress=None):
            return capped(file_chunks(path, lang, progress), spec.max_lines)
    else:
        describe, total = f"Wikipedia {where['wikipedia']} (language {lang})", None

        def chunks(progress=None):
            return capped(wikipedia_chunks(where["wikipedia"], progress), spec.max_lines)
    first = None
    if spec.heldout_split == "first":  # the reference's train[:5%]: count the lines first
        first = max(1, round(count_lines(chunks()) * spec.heldout_fraction))
    progress = Progress(f"corpus {lang}", total, "MiB", ctx.report)
    meta = prepare(chunks(progress), tokenizer, out_dir / "corpus", block_size=spec.block_size,
                   heldout_fraction=spec.heldout_fraction, heldout_seed=spec.heldout_seed, first=first,
                   workers=ctx.cpus, describe=describe)
    if total:
        progress.update(total, force=True)
    mib = (total or 0) / 2**20
    return {"lines": meta["lines"], "train_tokens": meta["train_tokens"], "train_blocks": meta["train_blocks"],
            "heldout_blocks": meta["heldout_blocks"], "prepare_seconds": meta["seconds"],
            **({"mib_per_second": mib / max(meta["seconds"], 1e-9)} if total else {})}
