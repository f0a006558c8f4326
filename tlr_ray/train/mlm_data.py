"""Unlabelled text for language adapters: a local file or Wikipedia, as fixed-length MLM blocks."""
from __future__ import annotations

import random
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from transformers import DataCollatorForLanguageModeling

from tlr_ray.tasks import DataError

WIKIPEDIA = "wikimedia/wikipedia"


def read_corpus(corpus: dict, max_lines: int | None) -> list[str]:
    """`{"path": file}` (one sentence or document per line) or `{"wikipedia": "20231101.sw"}`."""
    if "path" in corpus:
        path = Path(corpus["path"])
        if not path.is_file():
            raise DataError(f"corpus file {path} does not exist (language_adapters.corpora)")
        with open(path, encoding="utf-8") as f:
            lines = [ln.strip() for ln in f if ln.strip()]
    else:
        import datasets
        try:
            ds = datasets.load_dataset(WIKIPEDIA, corpus["wikipedia"], split="train", streaming=True)
            lines = []
            for row in ds:
                lines.extend(p.strip() for p in row["text"].split("\n") if p.strip())
                if max_lines and len(lines) >= max_lines:
                    break
        except Exception as e:  # noqa: BLE001  (any Hub failure: say what we tried to load)
            raise DataError(f"could not load {WIKIPEDIA} config {corpus['wikipedia']!r}: {e}. Give a local "
                            "text file under language_adapters.corpora instead.") from e
    if max_lines:
        lines = lines[:max_lines]
    if len(lines) < 2:
        raise DataError(f"corpus {corpus} has {len(lines)} non-empty lines; need at least 2")
    return lines


def blocks(lines: list[str], tokenizer, block_size: int) -> list[list[int]]:
    """Tokenize every line (with special tokens), concatenate, cut into blocks (run_mlm's group_texts)."""
    ids: list[int] = []
    for start in range(0, len(lines), 1000):
        for seq in tokenizer(lines[start:start + 1000], add_special_tokens=True)["input_ids"]:
            ids.extend(seq)
    n = max(1, len(ids) // block_size)
    return [ids[i * block_size:(i + 1) * block_size] for i in range(n)]


def split_heldout(lines: list[str], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """A seeded random `fraction` of the lines is held out for perplexity (at least one line)."""
    order = list(range(len(lines)))
    random.Random(seed).shuffle(order)
    n_held = max(1, int(round(len(lines) * fraction)))
    held = set(order[:n_held])
    return ([ln for i, ln in enumerate(lines) if i not in held], [lines[i] for i in sorted(held)])


class MLMData:
    """Training batches (random masking each time) and a held-out set masked once, so that every
    evaluation of one job scores the same masked tokens and perplexities are comparable."""

    def __init__(self, lines, tokenizer, block_size: int, batch_size: int, heldout_fraction: float,
                 seed: int, eval_batch_size: int = 64, rank: int = 0, world_size: int = 1):
        train_lines, held_lines = split_heldout(lines, heldout_fraction, seed)
        self.collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15)
        train = [{"input_ids": b} for b in blocks(train_lines, tokenizer, block_size)]
        held = [{"input_ids": b} for b in blocks(held_lines, tokenizer, block_size)]
        train = train[rank::world_size]  # each data-parallel worker reads its own shard
        gen = torch.Generator().manual_seed(seed)
        self.loader = DataLoader(train, batch_size=batch_size, shuffle=True, generator=gen,
                                 collate_fn=self.collator, drop_last=len(train) > batch_size)
        state = torch.random.get_rng_state()
        torch.manual_seed(seed + 1)
        self.heldout = [self.collator(held[i:i + eval_batch_size]) for i in range(0, len(held), eval_batch_size)]
        torch.random.set_rng_state(state)


def perplexity(model, batches, device) -> float:
    """exp(mean masked-token loss) over pre-masked batches."""
    total, count = 0.0, 0
    for batch in batches:
        batch = {k: v.to(device) for k, v in batch.items()}
        n = int((batch["labels"] != -100).sum())
        if n:
            total += float(model(**batch).loss) * n
            count += n
    return float(torch.exp(torch.tensor(total / max(count, 1))))
