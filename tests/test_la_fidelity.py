"""MAD-X fidelity of LAs: the inverse invertible adapter before the MLM decoder, and MAD-X 2.0's
last-layer leave-out applied when an LA is loaded under a TA (not when it is trained)."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from adapters import AutoAdapterModel
from adapters.methods.modeling import NICECouplingBlock
from helpers import eval_spec, hand_job, ta_spec

from tlr_ray.train import models
from tlr_ray.train.context import JobContext
from tlr_ray.train.models import bottleneck_config, freeze_all_but, load_la, mlm_model, task_model


@pytest.fixture(scope="module")
def model_path(demo_world) -> str:
    return str(demo_world / "model")


def la_training_model(path: str, invertible: bool):
    """The model as the LA/BA recipe (tlr_ray/train/mlm_adapter.py) builds it, on all layers."""
    m = mlm_model(path)
    m.add_adapter("la", config=bottleneck_config(2, invertible, False, m.config.num_hidden_layers))
    m.set_active_adapters("la")
    freeze_all_but(m, "la", heads=False)
    return m


def batch(vocab: int):
    ids = torch.randint(5, vocab, (2, 12), generator=torch.Generator().manual_seed(0))
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}


@pytest.mark.parametrize("invertible,reverse_calls", [(True, 1), (False, 0)])
def test_mlm_forward_runs_the_inverse_before_the_decoder(model_path, monkeypatch, invertible, reverse_calls):
    # MAD-X: invertible adapters on the embeddings, their inverse before the output embeddings.
    calls = []
    real = NICECouplingBlock.forward

    def counting(self, x, c=(), rev=False):  # NICECouplingBlock.forward takes c=[]; only read
        calls.append(rev)
        return real(self, x, c, rev)

    monkeypatch.setattr(NICECouplingBlock, "forward", counting)
    m = la_training_model(model_path, invertible)
    loss = m(**batch(m.config.vocab_size)).loss
    assert calls.count(True) == reverse_calls and calls.count(False) == reverse_calls
    loss.backward()
    trainable = [n for n, p in m.named_parameters() if p.requires_grad]
    assert trainable and all(".la." in n for n in trainable)  # the pretrained MLM head stays frozen
    if invertible:  # the inverse is on the loss path: the invertible adapter gets gradients through it
        assert all(p.grad is not None for p in m.base_model.invertible_adapters["la"].parameters())


def test_mlm_model_matches_adapters_flexible_head_model(model_path, tmp_path):
    """The same logits as `AutoAdapterModel` with the checkpoint's MLM head, where adapters itself
    applies the inverse (CausalLMHead.forward), once its decoder bias is the pretrained one."""
    m = la_training_model(model_path, True).eval()
    m.save_adapter(str(tmp_path), "la", with_head=False)
    flex = AutoAdapterModel.from_pretrained(model_path)
    flex.load_adapter(str(tmp_path), load_as="la", with_head=False)
    flex.set_active_adapters("la")
    flex.eval()
    with torch.no_grad():
        flex.heads["default"][3].bias.copy_(m.get_output_embeddings().bias)  # see mlm_model's docstring
        x = batch(m.config.vocab_size)
        assert torch.allclose(m(**x).logits, flex(**x).logits, atol=1e-6)


@pytest.fixture(scope="module")
def saved_la(model_path, tmp_path_factory):
    """An LA trained as MAD-X 2.0's reference trains it: SeqBnInvConfig on all layers, saved."""
    m = la_training_model(model_path, True)
    with torch.no_grad():  # not the initial values, so that loading is seen to copy them
        for p in m.parameters():
            if p.requires_grad:
                p.add_(0.01)
    folder = tmp_path_factory.mktemp("la") / "adapter"
    m.save_adapter(str(folder), "la", with_head=False)
    return folder, {n: p.detach().clone() for n, p in m.named_parameters() if p.requires_grad}


def saved_state(folder):
    files = list(folder.glob("*adapter*.safetensors")) or list(folder.glob("pytorch_adapter.bin"))
    if files[0].suffix == ".safetensors":
        from safetensors.torch import load_file
        return load_file(str(files[0]))
    return torch.load(files[0], map_location="cpu")


def test_la_is_saved_with_every_layer(saved_la, model_path):
    folder, _ = saved_la
    layers = task_model(model_path).config.num_hidden_layers
    keys = saved_state(folder)
    for i in range(layers):
        assert any(f".layer.{i}." in k and ".adapters.la." in k for k in keys), i
    assert any("invertible_adapters.la." in k for k in keys)
    assert json.loads((folder / "adapter_config.json").read_text())["config"]["leave_out"] == []


def modules_of(model, name: str, layer: int) -> list[str]:
    return [n for n, _ in model.named_modules() if f".layer.{layer}." in n and n.endswith(f".{name}")]


@pytest.mark.parametrize("leave_out_last", [True, False])
def test_load_la_leaves_out_the_last_layer_on_request(saved_la, model_path, leave_out_last, monkeypatch):
    folder, trained = saved_la
    t = task_model(model_path)
    last = t.config.num_hidden_layers - 1
    assert load_la(t, folder, "sw_la", leave_out_last) == "sw_la"
    assert bool(modules_of(t, "sw_la", last)) is not leave_out_last
    assert modules_of(t, "sw_la", 0)
    # The weights that are kept are the trained ones, the invertible adapter (at the embeddings) too.
    loaded = {n.replace(".sw_la.", ".la."): p for n, p in t.named_parameters() if ".sw_la." in n}
    expected = {n: p for n, p in trained.items() if not (leave_out_last and f".layer.{last}." in n)}
    assert set(loaded) == set(expected) and any("invertible_adapters" in n for n in loaded)
    assert all(torch.equal(p, expected[n]) for n, p in loaded.items())
    # ...and it runs forward on the embeddings of a task model's Stack(LA, TA), last layer or not.
    calls = []
    real = NICECouplingBlock.forward
    monkeypatch.setattr(NICECouplingBlock, "forward",
                        lambda self, x, c=[], rev=False: calls.append(rev) or real(self, x, c, rev))
    from adapters.composition import Stack
    t.add_adapter("ta", config=bottleneck_config(16, False, leave_out_last, last + 1))
    t.active_adapters = Stack("sw_la", "ta")
    t.base_model(input_ids=batch(t.config.vocab_size)["input_ids"])
    assert calls == [False]


def test_pretrained_la_saved_under_another_name_follows_the_same_rule(saved_la, model_path, tmp_path):
    # A pretrained LA artifact is whatever adapters saved (its own name); the TA loads it by load_la too.
    folder, _ = saved_la
    m = mlm_model(model_path)
    m.load_adapter(str(folder), load_as="sw_wiki_pretrained", with_head=False)
    m.save_adapter(str(tmp_path / "adapter"), "sw_wiki_pretrained", with_head=False)
    t = task_model(model_path)
    load_la(t, tmp_path / "adapter", "la_sw", True)
    assert not modules_of(t, "la_sw", t.config.num_hidden_layers - 1) and modules_of(t, "la_sw", 0)
    assert "la_sw" in t.base_model.invertible_adapters


# --- the recipes that load an LA under a TA pass the TA's switch on -------------------------------------

class Loaded(Exception):
    """Raised by the load_la spy: the recipe has shown what it loads, the rest is not needed."""


def spy_load_la(monkeypatch, module: str) -> list:
    seen = []

    def spy(model, path, name, leave_out_last):
        seen.append(leave_out_last)
        raise Loaded

    monkeypatch.setattr(f"{module}.load_la", spy)
    return seen


def stub_model():
    return SimpleNamespace(load_adapter=lambda *a, **kw: "ta", config=SimpleNamespace(num_hidden_layers=4))


def write_manifest(folder, leave_out_last_layer: bool):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "manifest.json").write_text(json.dumps({"job_id": "ta-1", "kind": "ta",
                                                      "spec": {"leave_out_last_layer": leave_out_last_layer}}))
    return folder


@pytest.mark.parametrize("flag", [True, False])
def test_ta_leaves_out_last_reads_the_ta_manifest(tmp_path, flag):
    from tlr_ray.train.evaluate import ta_leaves_out_last
    assert ta_leaves_out_last(write_manifest(tmp_path / "ta", flag)) is flag


@pytest.mark.parametrize("flag", [True, False])
def test_eval_recipe_loads_the_la_as_its_ta_was_trained(tmp_path, monkeypatch, flag):
    from tlr_ray.train import evaluate
    seen = spy_load_la(monkeypatch, "tlr_ray.train.evaluate")
    monkeypatch.setattr(evaluate, "load_tokenizer", lambda *a: None)
    monkeypatch.setattr(evaluate, "task_model", lambda *a: stub_model())
    ctx = JobContext(deps={"ta-1": write_manifest(tmp_path / "ta", flag), "la-1": tmp_path / "la"})
    job = hand_job("eval-1", eval_spec(ta="ta-1", adapter="la-1"))
    with pytest.raises(Loaded):
        evaluate.run_eval(job, tmp_path / "out", ctx)
    assert seen == [flag]


@pytest.mark.parametrize("flag", [True, False])
def test_ta_recipe_loads_its_las_with_its_switch(tmp_path, monkeypatch, flag):
    from tlr_ray.train import ta
    seen = spy_load_la(monkeypatch, "tlr_ray.train.ta")
    monkeypatch.setattr(ta, "load_tokenizer", lambda *a: None)
    monkeypatch.setattr(ta, "task_model", lambda *a: stub_model())
    spec = ta_spec(cycle=("la-1",), leave_out_last_layer=flag)
    with pytest.raises(Loaded):
        ta.train_ta(hand_job("ta-1", spec), tmp_path,
                    JobContext(deps={"la-1": tmp_path / "la"}))
    assert seen == [flag]


@pytest.mark.parametrize("flag", [True, False])
def test_alignment_loads_las_with_the_tas_switch(tmp_path, monkeypatch, flag):
    from tlr_ray import alignment
    seen = spy_load_la(monkeypatch, "tlr_ray.train.models")  # alignment imports it when it measures
    monkeypatch.setattr(models, "load_tokenizer", lambda *a: None)
    monkeypatch.setattr(models, "task_model", lambda *a: stub_model())
    monkeypatch.setattr(alignment.artifacts, "verify", lambda storage, job_id: {})
    monkeypatch.setattr(alignment.artifacts, "local_copy", lambda storage, job_id: tmp_path / job_id)
    ta_job = hand_job("ta-1", ta_spec(leave_out_last_layer=flag))
    ev = hand_job("eval-1", eval_spec(adapter="la-sw", split="test", code="sw"))
    monkeypatch.setattr(alignment, "find_jobs", lambda plan, v, d, t: (ev, ta_job, "la-en"))
    sweep = SimpleNamespace(model="m", config=SimpleNamespace(model_revision=None,
                                                              tasks={"nli": SimpleNamespace(name=lambda k: k)}),
                            task_args={"nli": None})
    with pytest.raises(Loaded):
        alignment.measure(sweep, None, "storage", "MAD-X", "demo_xnli", "sw", 10)
    assert seen == [flag]


def test_la_ids_do_not_depend_on_the_leave_out_switch(write_sweep):
    """One LA artifact serves both MAD-X 2.0 settings: the switch acts where LAs are loaded, so only the
    TAs (and their evals) change with it."""
    from tlr_ray.plan import plan_sweep
    from tlr_ray.validate import load_sweep
    on = plan_sweep(load_sweep(write_sweep(leave_out_last_layer=True)))
    off = plan_sweep(load_sweep(write_sweep(leave_out_last_layer=False)))
    assert {j.id for j in on.of_kind("la")} == {j.id for j in off.of_kind("la")}
    assert {j.id for j in on.of_kind("ta")}.isdisjoint({j.id for j in off.of_kind("ta")})
