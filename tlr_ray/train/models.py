"""Loading the frozen MMT and putting adapters on it, the `adapters` library's way."""
from __future__ import annotations

import os

import torch
from adapters import AutoAdapterModel, SeqBnConfig, SeqBnInvConfig
from transformers import AutoConfig, AutoModelForMaskedLM, AutoTokenizer

import adapters


def _offline_kwargs(revision: str | None) -> dict:
    return {"revision": revision} if revision else {}


def load_tokenizer(model: str, revision: str | None = None):
    return AutoTokenizer.from_pretrained(model, **_offline_kwargs(revision))


def num_layers(model: str, revision: str | None = None) -> int:
    return AutoConfig.from_pretrained(model, **_offline_kwargs(revision)).num_hidden_layers


def bottleneck_config(reduction_factor: int, invertible: bool, leave_out_last: bool, layers: int):
    """SeqBnInvConfig (MAD-X LA: Pfeiffer + invertible adapters) or SeqBnConfig (TA, BA, -INV LA)."""
    leave_out = [layers - 1] if leave_out_last else []
    cls = SeqBnInvConfig if invertible else SeqBnConfig
    return cls(reduction_factor=reduction_factor, leave_out=leave_out)


def freeze_all_but(model: torch.nn.Module, name: str, heads: bool) -> None:
    """Only the adapter `name` (and, for TAs, its head) trains; the MMT and every other adapter stay
    frozen. We do this by name, not with `train_adapter` alone: for static-head models that call leaves
    the pretrained MLM head trainable, and the MMT must not change in any variant."""
    for n, p in model.named_parameters():
        in_adapter = f".{name}." in n
        in_head = heads and n.startswith(f"heads.{name}.")
        p.requires_grad_(in_adapter or in_head)


def mlm_model(model: str, revision: str | None = None):
    """The pretrained MLM model (its own MLM head, frozen) with adapter support, for LAs and BAs."""
    m = AutoModelForMaskedLM.from_pretrained(model, **_offline_kwargs(revision))
    adapters.init(m)
    return m


def task_model(model: str, revision: str | None = None):
    """A flexible-head adapters model for TAs. Heads converted from the checkpoint (e.g. an MLM head
    loaded as "default") are removed: only the task head we add may exist."""
    m = AutoAdapterModel.from_pretrained(model, **_offline_kwargs(revision))
    for head in list(m.heads):
        m.delete_head(head)
    return m


def load_la(model, path: str | os.PathLike, name: str) -> str:
    """Load a saved LA (ours, or any adapter folder/Hub id `adapters` can load) under `name`."""
    return model.load_adapter(str(path), load_as=name, with_head=False, set_active=False)
