"""Loading the frozen MMT and putting adapters on it, the `adapters` library's way."""
from __future__ import annotations

import os

import adapters
import torch
from adapters import AutoAdapterModel, SeqBnConfig, SeqBnInvConfig
from transformers import AutoModelForMaskedLM, AutoTokenizer


def _offline_kwargs(revision: str | None) -> dict:
    return {"revision": revision} if revision else {}


def load_tokenizer(model: str, revision: str | None = None):
    return AutoTokenizer.from_pretrained(model, **_offline_kwargs(revision))


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
    """The pretrained MLM model (its own MLM head, frozen) with adapter support, for LAs and BAs.
    MAD-X: invertible adapters run on the embeddings' output (`adapters.init` does that) and their
    inverse precedes the output embedding layer (`_apply_inverse_before_decoder`)."""
    m = AutoModelForMaskedLM.from_pretrained(model, **_offline_kwargs(revision))
    adapters.init(m)
    _apply_inverse_before_decoder(m)
    return m


def _apply_inverse_before_decoder(m) -> None:
    """Run the inverse of the active invertible adapter on the MLM decoder's input, as adapters'
    flexible-head models do: `forward_head` (heads/model_mixin.py) passes `base_model.get_invertible_adapter()`
    to the head, and `CausalLMHead.forward` (heads/language_modeling.py; `BertStyleMaskedLMHead` inherits it)
    runs every head layer but the last (dense, act, LayerNorm), then `inv_adapter(x, rev=True)`, then the
    last Linear, the output embeddings. A static BERT/XLM-R MLM head is the same stack with `decoder` =
    `get_output_embeddings()`, so a pre-hook there is the same computation at the same place (adapters
    itself registers this hook for plugin-interface models, methods/invertible.py `inv_hook_fn`, but
    `adapters.init` on built-in models such as BERT does not). Not `AutoAdapterModel`: its converted MLM
    head can lose the pretrained decoder bias (a checkpoint that stores it only as `cls.predictions.bias`,
    as transformers 4.57 saves it, gets a newly initialised `heads.default.3.bias`), whereas the static
    head stays the pretrained module, frozen by `freeze_all_but(..., heads=False)`. No invertible
    adapter in the active setup: a no-op, as there."""
    base = m.base_model

    def inverse(module, args):
        inv = base.get_invertible_adapter()
        return None if inv is None else (inv(args[0], rev=True), *args[1:])

    m.get_output_embeddings().register_forward_pre_hook(inverse)


def task_model(model: str, revision: str | None = None):
    """A flexible-head adapters model for TAs. Heads converted from the checkpoint (e.g. an MLM head
    loaded as "default") are removed: only the task head we add may exist."""
    m = AutoAdapterModel.from_pretrained(model, **_offline_kwargs(revision))
    for head in list(m.heads):
        m.delete_head(head)
    return m


def load_la(model, path: str | os.PathLike, name: str, leave_out_last: bool) -> str:
    """Load a saved LA/BA (ours, or any adapter folder/Hub id `adapters` can load) under `name`, for use
    under a TA. MAD-X 2.0: LAs are trained on all layers and the last layer's adapter is dropped here, at
    load time (reference run_ner.py: `load_adapter(..., leave_out=[11])`); adapters merges this with the
    saved config's own leave_out and ignores the dropped weights. The invertible adapter sits at the
    embeddings, not in a layer, so it is kept."""
    leave_out = [model.config.num_hidden_layers - 1] if leave_out_last else None
    return model.load_adapter(str(path), load_as=name, with_head=False, set_active=False, leave_out=leave_out)
