"""The demo world's "pretrained multilingual model": a WordPiece tokenizer and a tiny BERT, built offline.

It stands in for mBERT so the whole pipeline runs without the Hub: same classes (`BertTokenizerFast`,
`BertForMaskedLM`), same file layout, loadable with `AutoTokenizer` / `AutoModelForMaskedLM` /
`adapters.AutoAdapterModel`. It is a crude encoder: a few hundred MLM steps on the mixed demo text, enough
that its representations are not random, nothing more. Imports torch; `world.py` imports this lazily.
"""
from __future__ import annotations

import logging
import random
import time
from pathlib import Path

import torch
from tokenizers import BertWordPieceTokenizer
from transformers import BertConfig, BertForMaskedLM, BertTokenizerFast, DataCollatorForLanguageModeling

log = logging.getLogger(__name__)

VOCAB_SIZE = 4000          # an upper bound: the trainer stops earlier when the tiny world runs out of merges
MAX_POSITIONS = 256        # the LA recipe's max sequence length; demo sentences are far shorter
CONFIG = dict(hidden_size=128, num_hidden_layers=4, num_attention_heads=4, intermediate_size=256,
              max_position_embeddings=MAX_POSITIONS, type_vocab_size=2)
PRETRAIN = dict(steps=300, batch_size=64, lr=1e-3, warmup=30, max_length=64, seed=0)


def train_tokenizer(text_files: list[Path], out_dir: Path) -> BertTokenizerFast:
    """A cased WordPiece tokenizer on all languages' text (accents kept: the yo lexicon needs them)."""
    wp = BertWordPieceTokenizer(clean_text=True, handle_chinese_chars=True, strip_accents=False,
                                lowercase=False)
    wp.train([str(f) for f in text_files], vocab_size=VOCAB_SIZE, min_frequency=2, show_progress=False)
    tokenizer = BertTokenizerFast(tokenizer_object=wp._tokenizer, do_lower_case=False, strip_accents=False,
                                  model_max_length=MAX_POSITIONS, unk_token="[UNK]", sep_token="[SEP]",
                                  pad_token="[PAD]", cls_token="[CLS]", mask_token="[MASK]")
    tokenizer.save_pretrained(out_dir)
    log.info("demo world: tokenizer trained, %d wordpieces", len(tokenizer))
    return tokenizer


def pretrain(tokenizer: BertTokenizerFast, text_files: list[Path], out_dir: Path) -> dict:
    """Seeded MLM pretraining of a tiny BERT on the mixed-language text; saves it (safetensors)."""
    p = PRETRAIN
    random.seed(p["seed"])
    torch.manual_seed(p["seed"])
    lines = [line for f in text_files for line in f.read_text(encoding="utf-8").splitlines() if line]
    random.Random(p["seed"]).shuffle(lines)            # mix the languages within every batch
    config = BertConfig(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, **CONFIG)
    model = BertForMaskedLM(config)
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15, return_tensors="pt")
    optimizer = torch.optim.AdamW(model.parameters(), lr=p["lr"], weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(   # linear warmup, then linear decay to 0
        optimizer, lambda s: min((s + 1) / p["warmup"], (p["steps"] - s) / (p["steps"] - p["warmup"])))
    encoded = tokenizer(lines, truncation=True, max_length=p["max_length"], return_token_type_ids=False)
    examples = [{"input_ids": ids, "attention_mask": mask}
                for ids, mask in zip(encoded["input_ids"], encoded["attention_mask"])]
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
    seconds = time.perf_counter() - started
    model.save_pretrained(out_dir, safe_serialization=True)
    first, last = sum(losses[:20]) / 20, sum(losses[-20:]) / 20
    log.info("demo world: model pretrained in %.1f s (MLM loss %.2f -> %.2f)", seconds, first, last)
    return {"parameters": sum(t.numel() for t in model.parameters()), "steps": p["steps"],
            "mlm_loss_first": round(first, 3), "mlm_loss_last": round(last, 3), **CONFIG}
