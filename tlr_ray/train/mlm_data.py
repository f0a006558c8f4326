"""MLM batches from a prepared corpus (tlr_ray/train/corpus_prepare.py): fixed-length blocks of token ids
read from memory-mapped files, so a job's memory does not grow with the corpus. A data-parallel rank
reads only its share of the blocks (block i goes to rank i % world_size)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from transformers import DataCollatorForLanguageModeling

from tlr_ray.train.corpus_prepare import HELDOUT, META, TRAIN

MLM_PROBABILITY = 0.15


class Blocks(Dataset):
    """Blocks `indices` of a flat uint32 file of `block_size`-token rows, mapped, not loaded.
    `special` are the ids the tokenizer's post-processor adds ([CLS], [SEP]): the only tokens never
    masked, as run_mlm's `return_special_tokens_mask` has it. (Left to itself the collator would also
    spare every [UNK], since it is in the tokenizer's special ids.)"""

    def __init__(self, path: Path, block_size: int, indices: range, special: list[int]):
        self.map = np.memmap(path, dtype=np.uint32, mode="r").reshape(-1, block_size)
        self.indices, self.special = indices, np.array(sorted(special), dtype=np.uint32)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict:
        ids = self.map[self.indices[i]]
        return {"input_ids": torch.from_numpy(ids.astype(np.int64)),
                "special_tokens_mask": torch.from_numpy(np.isin(ids, self.special).astype(np.int64))}


class Shuffled(Sampler):
    """RandomSampler's order (one torch.randperm per epoch from `generator`), handed out from the tensor
    in slices: RandomSampler turns the whole permutation into a Python list (about 45 bytes per block,
    0.8 GB for English Wikipedia), this keeps it at 8 bytes per block."""

    def __init__(self, n: int, generator: torch.Generator):
        self.n, self.generator = n, generator

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        for part in torch.randperm(self.n, generator=self.generator).split(1 << 16):
            yield from part.tolist()


def read_meta(folder: Path) -> dict:
    return json.loads((Path(folder) / META).read_text())


class MLMData:
    """Training batches (fresh random masking each time) and held-out batches masked the same way at every
    evaluation (a collator seeded anew each pass), so that every evaluation of every job that reads the
    corpus scores the same masked tokens and perplexities are comparable. Nothing is held in memory but
    the batch being built."""

    def __init__(self, folder: Path, tokenizer, block_size: int, batch_size: int, seed: int,
                 eval_batch_size: int = 64, rank: int = 0, world_size: int = 1):
        """`seed` shuffles the training blocks; the held-out masks follow the corpus's own seed."""
        folder = Path(folder)
        meta = read_meta(folder)
        if meta["block_size"] != block_size:
            raise ValueError(f"prepared corpus {folder} has blocks of {meta['block_size']} tokens, not {block_size}")
        self.tokenizer, self.eval_batch_size = tokenizer, eval_batch_size
        self.heldout_seed = meta["heldout_seed"] + 1
        self.collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=MLM_PROBABILITY)
        n = meta["train_blocks"]
        # Equal shares (the last n % world_size blocks are left out): every rank then counts the same
        # batches per epoch and so the same steps, or DDP would wait forever on the rank that stopped.
        share = range(rank, n - n % world_size, world_size) if n >= world_size else range(n)
        special = tokenizer.build_inputs_with_special_tokens([])  # what the post-processor adds
        self.train = Blocks(folder / TRAIN, block_size, share, special)
        self.heldout = Blocks(folder / HELDOUT, block_size, range(meta["heldout_blocks"]), special)
        gen = torch.Generator().manual_seed(seed)
        self.loader = DataLoader(self.train, batch_size=batch_size, sampler=Shuffled(len(self.train), gen),
                                 collate_fn=self.collator, drop_last=len(self.train) > batch_size,
                                 pin_memory=torch.cuda.is_available())  # non-blocking copies to the GPU

    def heldout_batches(self):
        """The held-out set in fixed masked batches, built lazily; the same masks on every call."""
        collator = DataCollatorForLanguageModeling(self.tokenizer, mlm_probability=MLM_PROBABILITY,
                                                   seed=self.heldout_seed)
        for i in range(0, len(self.heldout), self.eval_batch_size):
            yield collator([self.heldout[j] for j in range(i, min(i + self.eval_batch_size, len(self.heldout)))])


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
