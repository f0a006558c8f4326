"""The benchmarks that measure where time goes: benchmarks/gpu_check.sh at toy size on CPU, SDPA against
eager attention with adapters, the phase timers the recipes report, and benchmarks/overhead.py's table."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch
import yaml
from helpers import TINY_ARGS

ROOT = Path(__file__).resolve().parent.parent
TABLE = ROOT / "tlr_ray" / "step_times.yaml"


def test_gpu_check_toy_runs_on_cpu_and_writes_only_its_out(tmp_path):
    out = tmp_path / "step_times.yaml"
    out.write_text(TABLE.read_text())  # a copy: its other rows and comments must survive
    before = TABLE.read_bytes()
    r = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--toy", "--out", str(out)], cwd=ROOT,
                       capture_output=True, text=True, timeout=900, check=False)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert TABLE.read_bytes() == before  # the real table is never touched at toy size
    assert "| job | precision | attention | tokens/step | s/step | tokens/s | TFLOP/s | MFU |" in r.stdout
    for kind in ("LA (MLM)", "TA"):
        for precision in ("fp32", "bf16"):
            for attention in ("eager", "sdpa"):
                assert f"| {kind} | {precision} | {attention} |" in r.stdout
    assert "| TA x2 packed, summed | bf16 | sdpa |" in r.stdout and "| TA eval (forward) |" in r.stdout
    assert "FLOPs per step = 4 N T" in r.stdout and "supports SDPA for BERT" in r.stdout
    written = yaml.safe_load(out.read_text())
    original = yaml.safe_load(before)
    assert {k: v for k, v in written.items() if k != "cpu-toy"} == original
    row = written["cpu-toy"]["toy"]
    assert row["mlm"]["seconds"] > 0 and row["mlm"]["tokens"] == 4 * 32 and row["ta"]["tokens"] == 4 * 32
    assert row["eval_per_example"] > 0
    assert out.read_text().startswith(TABLE.read_text().split("rtx3090:")[0])  # the header comments stay


def test_gpu_check_toy_refuses_the_real_table():
    from benchmarks import gpu_check
    assert gpu_check.main(["--toy", "--out", str(TABLE)]) == 2


def test_step_table_row_is_replaced_in_place():
    from benchmarks.gpu_check import table_row, upsert_row
    text = "# head\na:\n  m:\n    x: 1\n\n# about b\nb:\n  m:\n    x: 2\n"
    new = table_row("a", "m", "note", (0.5, 100), (0.1, 50), 0.001)
    out = upsert_row(text, "a", new)
    assert out.startswith("# head\na:                 # note\n") and out.endswith("\n\n# about b\nb:\n  m:\n    x: 2\n")
    assert yaml.safe_load(out)["a"]["m"] == {"mlm": {"seconds": 0.5, "tokens": 100},
                                             "ta": {"seconds": 0.1, "tokens": 50}, "eval_per_example": 0.001}
    appended = upsert_row(text, "c", new.replace("a:", "c:", 1))
    assert appended.startswith(text) and set(yaml.safe_load(appended)) == {"a", "b", "c"}


def test_peaks_and_row_names():
    from benchmarks.gpu_check import peak_flops, row_name
    assert peak_flops("NVIDIA H200") == peak_flops("NVIDIA H100 80GB HBM3") == 989e12
    assert peak_flops("NVIDIA H100 PCIe") == 756e12 and peak_flops("NVIDIA A100-SXM4-80GB") == 312e12
    assert peak_flops("NVIDIA GeForce RTX 3090") == 71e12 and peak_flops("Some Other GPU") is None
    assert [row_name(n) for n in ("NVIDIA H200", "NVIDIA A100-SXM4-80GB", "NVIDIA GeForce RTX 3090")] == \
        ["h200", "a100", "rtx3090"]


def _demo_models(demo_world, attention: str):
    """The demo model as a TA job sees it (Stack(LA, TA) with an NLI head, the LA with its invertible
    adapter), and as an LA job sees it (MLM through the LA), with the attention implementation asked for."""
    import adapters
    from adapters import AutoAdapterModel
    from adapters.composition import Stack
    from transformers import AutoModelForMaskedLM

    from tlr_ray.tasks import get_task
    from tlr_ray.train.models import (
        _apply_inverse_before_decoder,
        bottleneck_config,
        freeze_all_but,
    )
    path = demo_world / "model"
    ta = AutoAdapterModel.from_pretrained(path, attn_implementation=attention)
    for head in list(ta.heads):
        ta.delete_head(head)
    layers = ta.config.num_hidden_layers
    ta.add_adapter("la", config=bottleneck_config(2, True, True, layers))
    ta.add_adapter("ta", config=bottleneck_config(16, False, True, layers))
    get_task("nli").add_head(ta, "ta")
    freeze_all_but(ta, "ta", heads=True)
    ta.active_adapters = Stack("la", "ta")
    la = AutoModelForMaskedLM.from_pretrained(path, attn_implementation=attention)
    adapters.init(la)
    _apply_inverse_before_decoder(la)
    la.add_adapter("la", config=bottleneck_config(2, True, False, layers))
    la.set_active_adapters("la")
    freeze_all_but(la, "la", heads=False)
    return ta, la


def test_sdpa_and_eager_attention_agree_with_adapters_active(demo_world):
    """adapters 1.3.0 has its own SDPA attention for BERT (BertSdpaSelfAttentionWithAdapters): the same
    weights give the same outputs and adapter gradients under SDPA and eager attention, padding included."""
    from benchmarks.gpu_check import sdpa_support
    supported, text = sdpa_support()
    assert supported, text  # if a later adapters drops it, this says what it gives instead
    eager_ta, eager_la = _demo_models(demo_world, "eager")
    sdpa_ta, sdpa_la = _demo_models(demo_world, "sdpa")
    for eager, sdpa in ((eager_ta, sdpa_ta), (eager_la, sdpa_la)):
        sdpa.load_state_dict(eager.state_dict())  # the same weights, adapters and heads included
        assert type(sdpa.base_model.encoder.layer[0].attention.self).__name__ == "BertSdpaSelfAttentionWithAdapters"
        assert type(eager.base_model.encoder.layer[0].attention.self).__name__ == "BertSelfAttentionWithAdapters"
    torch.manual_seed(0)
    ids = torch.randint(5, eager_ta.config.vocab_size, (3, 24))
    mask = torch.ones_like(ids)
    mask[1, 15:] = 0
    mask[2, 8:] = 0
    ids = ids.masked_fill(mask == 0, 0)
    for eager, sdpa, extra in ((eager_ta, sdpa_ta, {"labels": torch.tensor([0, 1, 2])}),
                               (eager_la, sdpa_la, {"labels": ids.masked_fill(mask == 0, -100)})):
        outs = []
        for model in (eager, sdpa):
            model.eval()  # no dropout: the two runs must see the same computation
            model.zero_grad(set_to_none=True)
            out = model(input_ids=ids, attention_mask=mask, **extra)
            out.loss.backward()
            grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
            outs.append((out.logits.detach(), out.loss.detach(), grads))
        (la, ll, lg), (sa, sl, sg) = outs
        assert lg and lg.keys() == sg.keys()
        valid = mask.bool() if la.dim() == 3 else torch.ones(len(ids), dtype=torch.bool)
        torch.testing.assert_close(sa[valid], la[valid], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(sl, ll, atol=1e-5, rtol=1e-4)
        for n in lg:
            torch.testing.assert_close(sg[n], lg[n], atol=1e-5, rtol=1e-3, msg=n)


def test_recipes_report_their_phase_times(demo_world, tmp_path):
    """LA and TA metrics carry time_model_s, time_data_s, time_eval_s, time_save_s (manifest and MLflow);
    an eval job nests them under "timings" (its numbers stay its scores); run_job adds its own phases."""
    from tlr_ray.artifacts import verify
    from tlr_ray.plan import plan_sweep
    from tlr_ray.runner import run_job, timings
    from tlr_ray.train.context import JobContext
    from tlr_ray.validate import load_sweep
    sweep = load_sweep(str(ROOT / "sweeps" / "demo.yaml"), {
        "variants": ["MAD-X"],
        "tasks": {"nli": {"train": "demo_multinli", "eval": ["demo_xnli"],
                          "train_args": {**TINY_ARGS, "max_eval_examples": 20}}},
        "language_adapters": {"corpora": {lang: f"demo://text/{lang}.txt" for lang in ("en", "sw", "th")},
                              "train_args": TINY_ARGS, "max_corpus_lines": 400}})
    plan = plan_sweep(sweep)
    by_id = {j.id: j for j in plan.jobs}
    ev = plan.of_kind("eval")[0]
    order, todo = [], [ev.id]
    while todo:  # the eval and everything it needs, inputs first
        job_id = todo.pop()
        order.insert(0, job_id)
        todo.extend(by_id[job_id].needs)
    returned = {}
    for job_id in dict.fromkeys(order):
        returned[job_id] = run_job(by_id[job_id], str(tmp_path), JobContext())
    phase = {"time_model_s", "time_data_s", "time_eval_s", "time_save_s"}
    own = {"time_inputs_s", "time_imports_s", "time_recipe_s", "time_publish_s"}
    for job_id, metrics in returned.items():
        kind, manifest = by_id[job_id].kind, verify(str(tmp_path), job_id)["metrics"]
        assert own <= set(metrics) and not own & set(manifest)  # run_job's own: returned, not published
        assert all(v >= 0 for v in timings(metrics).values())
        if kind in ("la", "ta"):
            assert phase <= set(manifest) and manifest["time_eval_s"] < manifest["train_seconds"]
        if kind == "eval":
            assert phase == set(manifest["timings"]) and not any(k.startswith("time_") for k in manifest)
            assert phase | own == set(timings(metrics))


def test_overhead_rows_add_up_to_the_trial():
    from benchmarks.overhead import ROWS, Probe, phases, table
    r = {"time_trial_imports_s": 1.0, "time_worker_imports_s": 2.0, "time_imports_s": 3.0,
         "time_worker_start_s": 10.0, "time_inputs_s": 0.5, "time_model_s": 0.25, "time_data_s": 0.25,
         "train_seconds": 4.0, "time_eval_s": 1.0, "time_save_s": 0.1, "time_publish_s": 0.2,
         "time_verify_s": 0.2, "time_recipe_s": 5.0, "time_fit_s": 25.0, "time_trial_entered": 101.0}
    p = phases("la", r, trial_total=30.0, start=1.0)
    assert set(p) == {row for _, row in ROWS}
    assert p["train"] == 3.0 and p["publish"] == pytest.approx(0.5) and p["imports"] == 6.0
    assert p["train_stop"] == pytest.approx(25.0 - (10 + 2 + 0.5 + 3 + 5 + 0.2))
    assert sum(p.values()) == pytest.approx(30.0)
    probe = Probe()
    probe.kinds, probe.started, probe.completed, probe.results = {"x": "la"}, {"x": 100.0}, {"x": 130.0}, {"x": r}
    probe.mlflow["la"] = 0.7
    text, sums = table(probe)
    assert "| **trial, start to completion (driver)** | **30.0** | **30.0** |" in text
    assert sums["la"]["mlflow"] == 0.7 and sums["all"]["train"] == 3.0
