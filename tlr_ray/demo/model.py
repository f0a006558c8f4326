"""The demo world's "pretrained multilingual model": a WordPiece tokenizer and a tiny BERT, built offline.

It stands in for mBERT so the whole pipeline runs without the Hub: same classes (`BertTokenizerFast`,
`BertForMaskedLM`), same file layout, loadable with `AutoTokenizer` / `AutoModelForMaskedLM` /
`adapters.AutoAdapterModel`. It is a crude encoder: a few hundred MLM steps on the mixed demo text, enough
that its representations are not random, nothing more. Imports torch; `world.py` imports this lazily.
"""
from __future__ import annotations

import itertools
import logging
import random
import time
from collections import Counter
from pathlib import Path

import torch
from tokenizers.normalizers import BertNormalizer
from tokenizers.pre_tokenizers import BertPreTokenizer
from transformers import BertConfig, BertForMaskedLM, BertTokenizerFast, DataCollatorForLanguageModeling

log = logging.getLogger(__name__)

VOCAB_SIZE = 4000          # an upper bound: learning stops earlier when the tiny world runs out of merges
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
MAX_POSITIONS = 256        # the LA recipe's max sequence length; demo sentences are far shorter
CONFIG = dict(hidden_size=128, num_hidden_layers=4, num_attention_heads=4, intermediate_size=256,
              max_position_embeddings=MAX_POSITIONS, type_vocab_size=2)
PRETRAIN = dict(steps=400, batch_size=32, lr=1e-3, warmup=40, max_length=64, seed=0)
# One intra-op thread: these matmuls are tiny, and with two threads a concurrent torch process on the same
# cores (another test run, another Ray worker) makes OpenMP's spin-waiting 10x slower; one thread is not.
THREADS = 1


def train_tokenizer(text_files: list[Path], out_dir: Path) -> BertTokenizerFast:
    """A cased WordPiece tokenizer for all languages (accents kept: the yo lexicon needs them).

    The vocabulary is learnt here rather than with `tokenizers`' WordPieceTrainer, because that trainer
    breaks ties between equally frequent merges in hash-map order, so two builds get different vocabularies
    (checked with tokenizers 0.22). Same algorithm (BPE-style merges of "##" continuation pieces), with ties
    broken alphabetically: the same text always gives the same vocabulary.
    """
    normalizer = BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=False,
                                lowercase=False)
    pre_tokenizer = BertPreTokenizer()
    counts: Counter[str] = Counter()
    for f in text_files:
        for line in f.read_text(encoding="utf-8").splitlines():
            counts.update(w for w, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(line)))
    vocab = SPECIAL_TOKENS + _wordpiece_vocab(counts, VOCAB_SIZE - len(SPECIAL_TOKENS))
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "vocab.txt").write_text("".join(t + "\n" for t in vocab), encoding="utf-8")
    tokenizer = BertTokenizerFast(vocab_file=str(out_dir / "vocab.txt"), do_lower_case=False,
                                  strip_accents=False, model_max_length=MAX_POSITIONS)
    tokenizer.save_pretrained(out_dir)
    log.info("demo world: tokenizer trained, %d wordpieces", len(tokenizer))
    return tokenizer


def _wordpiece_vocab(counts: Counter[str], size: int, min_frequency: int = 2) -> list[str]:
    """All characters (word-initial and "##" continuation), then repeatedly the most frequent adjacent
    pair of pieces, merged."""
    pieces = {w: [w[0]] + ["##" + ch for ch in w[1:]] for w in sorted(counts)}
    vocab = sorted({p for split in pieces.values() for p in split})
    known = set(vocab)
    while len(vocab) < size:
        pairs: Counter[tuple[str, str]] = Counter()
        for word, split in pieces.items():
            for pair in itertools.pairwise(split):
                pairs[pair] += counts[word]
        if not pairs:
            break
        (a, b), n = min(pairs.items(), key=lambda kv: (-kv[1], kv[0]))   # most frequent, then alphabetical
        if n < min_frequency:
            break
        merged = a + b[2:]
        for split in pieces.values():
            i = 0
            while i < len(split) - 1:
                if split[i] == a and split[i + 1] == b:
                    split[i:i + 2] = [merged]
                i += 1
        if merged not in known:
            known.add(merged)
            vocab.append(merged)
    return vocab


def pretrain(tokenizer: BertTokenizerFast, text_files: list[Path], out_dir: Path) -> dict:
    """Seeded MLM pretraining of a tiny BERT on the mixed-language text; saves it (safetensors)."""
    p = PRETRAIN
    lines = [line for f in text_files for line in f.read_text(encoding="utf-8").splitlines() if line]
    random.Random(p["seed"]).shuffle(lines)            # mix the languages within every batch
    encoded = tokenizer(lines, truncation=True, max_length=p["max_length"], return_token_type_ids=False)
    examples = [{"input_ids": ids, "attention_mask": mask}
                for ids, mask in zip(encoded["input_ids"], encoded["attention_mask"], strict=True)]
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15, return_tensors="pt")
    threads = torch.get_num_threads()
    with torch.random.fork_rng(devices=[]):            # seeded, without touching the caller's RNG state
        torch.manual_seed(p["seed"])
        config = BertConfig(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, **CONFIG)
        model = BertForMaskedLM(config)
        torch.set_num_threads(THREADS)
        try:
            losses, seconds = _train(model, examples, collator, p)
        finally:
            torch.set_num_threads(threads)
    model.save_pretrained(out_dir, safe_serialization=True)
    first, last = sum(losses[:20]) / 20, sum(losses[-20:]) / 20
    log.info("demo world: model pretrained in %.1f s (MLM loss %.2f -> %.2f)", seconds, first, last)
    return {"parameters": sum(t.numel() for t in model.parameters()), "steps": p["steps"],
            "mlm_loss_first": round(first, 3), "mlm_loss_last": round(last, 3), **CONFIG}


def _train(model, examples, collator, p) -> tuple[list[float], float]:
    optimizer = torch.optim.AdamW(model.parameters(), lr=p["lr"], weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(   # linear warmup, then linear decay to 0
        optimizer, lambda s: min((s + 1) / p["warmup"], (p["steps"] - s) / (p["steps"] - p["warmup"])))
    model.train()
    started, losses = time.perf_counter(), []
    for step in range(p["steps"]):
        start = step * p["batch_size"] % len(examples)
        batch = collator(examples[start:start + p["batch_size"]])   # masks 15% of tokens, seeded by torch
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        losses.append(loss.item())
        if step % 100 == 0 or step == p["steps"] - 1:
            log.info("demo world: MLM pretraining step %d/%d, loss %.2f", step + 1, p["steps"], losses[-1])
    return losses, time.perf_counter() - started
