"""The LA and TA recipes on the demo world's real (tiny) model with the real `adapters` library."""
from __future__ import annotations

import pytest
import torch
from adapters import AutoAdapterModel
from adapters.composition import Stack
from helpers import run_corpora

from tlr_ray.plan import plan_sweep
from tlr_ray.runner import run_job
from tlr_ray.sampling import item_at
from tlr_ray.train import models
from tlr_ray.train.context import JobContext, adapter_name
from tlr_ray.validate import load_sweep

TINY = {"max_steps": 6, "eval_every": 3, "batch_size": 8, "max_seq_length": 32}


@pytest.fixture(scope="module")
def tiny_plan(demo_world, tmp_path_factory):
    """The demo sweep shrunk to a few steps, with its LAs trained once for the module."""
    sweep = load_sweep("sweeps/demo.yaml", {
        "variants": ["MAD-X", "ALL-MULTI"],
        "tasks": {"nli": {"train": "demo_multinli", "eval": ["demo_anli", "demo_xnli"],
                          "train_args": {**TINY, "max_eval_examples": 40}}},
        "language_adapters": {"corpora": {lang: f"demo://text/{lang}.txt" for lang in ("en", "sw", "yo", "th")},
                              "train_args": TINY, "max_corpus_lines": 200}})
    plan = plan_sweep(sweep)
    storage = str(tmp_path_factory.mktemp("storage"))
    run_corpora(plan, storage)
    return sweep, plan, storage


def state(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.state_dict().items()}


def test_la_recipe_trains_only_the_adapter(tiny_plan, monkeypatch):
    sweep, plan, storage = tiny_plan
    job = plan.of_kind("la")[0]
    captured = {}
    real_freeze = models.freeze_all_but

    def snapshot_after_freeze(model, name, heads):  # the adapter exists now, untrained
        real_freeze(model, name, heads)
        captured["model"], captured["before"] = model, state(model)

    monkeypatch.setattr("tlr_ray.train.mlm_adapter.freeze_all_but", snapshot_after_freeze)
    metrics = run_job(job, storage, JobContext())
    before, after = captured["before"], state(captured["model"])
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    assert changed and all(".adapters.la." in n or ".invertible_adapters.la." in n for n in changed), changed
    assert any(".adapters.la." in n for n in changed) and any("invertible_adapters" in n for n in changed)
    # SeqBnInvConfig: the invertible adapter is trained; the pretrained MLM head stays frozen
    assert not any(n.startswith("cls.") for n in changed)
    assert metrics["heldout_perplexity"] == min(h["perplexity"] for h in metrics["history"])
    # The saved LA is in the adapters library's own format: loadable with model.load_adapter(path).
    model = AutoAdapterModel.from_pretrained(sweep.model)
    name = model.load_adapter(f"{storage}/jobs/{job.id}/adapter")
    assert name in model.adapters_config and model.adapters_config.get(name)["inv_adapter"] == "nice"
    layers = model.config.num_hidden_layers
    # Trained on every layer, MAD-X 2.0 switch on or off: the last layer is left out when it is loaded.
    assert model.adapters_config.get(name)["leave_out"] == [] and sweep.config.leave_out_last_layer
    assert any(f"layer.{layers - 1}." in k and ".adapters." in k for k in state(model))


def test_cycle_position():
    assert [item_at([0, 1, 2], s) for s in range(8)] == [0, 1, 2, 0, 1, 2, 0, 1]
    # the reference implementation restarts the cycle with every epoch (4 steps here)
    assert [item_at([0, 1, 2], s, restart_every=4) for s in range(8)] == [0, 1, 2, 0, 0, 1, 2, 0]


def test_ta_recipe_cycles_las_and_freezes_everything_else(tiny_plan, monkeypatch):
    sweep, plan, storage = tiny_plan
    for la in plan.of_kind("la"):
        run_job(la, storage, JobContext())
    ta = next(j for j in plan.of_kind("ta") if j.variant == "ALL-MULTI")
    captured = {"active": []}
    real = models.task_model

    def spy(*a, **kw):
        m = real(*a, **kw)
        captured["model"] = m
        # Record the composition active in every training forward pass (eval passes run under no_grad).
        m.register_forward_pre_hook(lambda mod, args: captured["active"].append(str(mod.active_adapters))
                                    if torch.is_grad_enabled() else None)
        return m

    monkeypatch.setattr("tlr_ray.train.ta.task_model", spy)
    real_freeze = models.freeze_all_but

    def snapshot_after_freeze(model, name, heads):
        real_freeze(model, name, heads)
        captured["before"] = state(model)

    monkeypatch.setattr("tlr_ray.train.ta.freeze_all_but", snapshot_after_freeze)
    run_job(ta, storage, JobContext())
    model, before = captured["model"], captured["before"]
    after = state(model)
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    assert changed and all(".adapters.ta." in n or n.startswith("heads.ta.") for n in changed), changed
    # The sequence of active LAs over steps is the cycle repeated.
    cycle = [adapter_name(i) for i in ta.spec.cycle]
    expected = [str(Stack(cycle[s % len(cycle)], "ta")) for s in range(TINY["max_steps"])]
    assert captured["active"] == expected
    assert len(cycle) == 4  # ALL-MULTI: en + sw, yo, th

