"""BAD-X and the variants that came with it: batch alternation, MA order, cycles, ratios, the BA recipe."""
from __future__ import annotations

import itertools

import pytest
from helpers import run_corpora

from tlr_ray.plan import plan_sweep
from tlr_ray.runner import run_job
from tlr_ray.sampling import ba_schedule, interleave, ma_schedule, parse_ratio
from tlr_ray.train.context import JobContext
from tlr_ray.typed_yaml import ConfigError
from tlr_ray.validate import load_sweep


def labelled(name):
    return (f"{name}{i}" for i in itertools.count())


def test_ba_batch_sequence_2_to_1_and_1_to_2():
    seq = list(itertools.islice(interleave([labelled("en"), labelled("sw")], ba_schedule("2:1")), 9))
    assert seq == ["en0", "en1", "sw0", "en2", "en3", "sw1", "en4", "en5", "sw2"]
    seq = list(itertools.islice(interleave([labelled("en"), labelled("sw")], ba_schedule("1:2")), 9))
    assert seq == ["en0", "sw0", "sw1", "en1", "sw2", "sw3", "en2", "sw4", "sw5"]
    assert ba_schedule("1:1") == [0, 1]


def test_ma_alternates_source_with_each_target_in_turn():
    its = [labelled("en"), labelled("sw"), labelled("yo"), labelled("th")]
    seq = list(itertools.islice(interleave(its, ma_schedule(3)), 8))
    assert seq == ["en0", "sw0", "en1", "yo0", "en2", "th0", "en3", "sw1"]


@pytest.mark.parametrize("bad", ["0:1", "2:0", "2-1", "a:b", "1.5:1", ""])
def test_impossible_ratios(bad):
    with pytest.raises(ValueError, match="impossible ratio"):
        parse_ratio(bad)


def test_impossible_ratio_in_sweep_file(write_sweep):
    with pytest.raises(ConfigError, match=r"bilingual_adapters\.ratios\[1\].*impossible ratio '3:0'"):
        load_sweep(write_sweep(variants=["BAD-X"], bilingual_adapters={"ratios": ["1:1", "3:0"]}))


def test_variant_cycles_in_the_plan(write_sweep):
    plan = plan_sweep(load_sweep(write_sweep(
        variants=["MAD-X", "BAD-X", "MA", "MAD-X-NOINV", "TA-ONLY"], bilingual_adapters={"ratios": ["1:1", "2:1"]})))
    by_id = {j.id: j for j in plan.jobs}
    tas = {}
    for j in plan.of_kind("ta"):
        tas.setdefault(j.variant, set()).add((tuple(by_id[n].kind for n in j.spec.cycle), j.languages, j.ratio))
    assert tas["BAD-X"] == {(("ba",), ("en", t), r) for t in ("sw", "yo", "th") for r in ("1:1", "2:1")}
    assert tas["MA"] == {(("ba",), ("en", "sw", "yo"), None), (("ba",), ("en", "sw", "th"), None)}
    assert tas["TA-ONLY"] == {((), (), None)}
    bas = plan.of_kind("ba")
    assert {(b.languages, b.ratio) for b in bas} >= {(("en", "sw"), "2:1"), (("en", "sw", "yo"), "1:1")}
    ba_21 = next(b for b in bas if b.languages == ("en", "sw") and b.ratio == "2:1")
    assert ba_21.spec.schedule == (0, 0, 1) and ba_21.spec.select_on == (1,)  # target perplexity
    assert not ba_21.spec.invertible
    # BAD-X is evaluated with the BA it was trained on; TA-ONLY with no adapter
    for e in plan.of_kind("eval"):
        ta = by_id[e.needs[0]]
        if e.variant == "BAD-X":
            assert e.needs[1] == ta.spec.cycle[0] and e.ratio == ta.ratio
        if e.variant == "TA-ONLY":
            assert e.needs == (ta.id,) and e.languages == ()
    # -INV: LAs without invertible adapters, distinct from MAD-X's
    noinv = next(j for j in plan.of_kind("ta") if j.variant == "MAD-X-NOINV")
    madx = next(j for j in plan.of_kind("ta") if j.variant == "MAD-X")
    assert not by_id[noinv.spec.cycle[0]].spec.invertible and by_id[madx.spec.cycle[0]].spec.invertible


def test_la_seeds_shared_or_per_ta_seed(write_sweep):
    shared = plan_sweep(load_sweep(write_sweep(seeds=[1, 2], variants=["MAD-X"])))
    assert len(shared.of_kind("la")) == 4 and len(shared.of_kind("ta")) == 2
    own = plan_sweep(load_sweep(write_sweep(seeds=[1, 2], variants=["MAD-X"],
                                            language_adapters={**yaml_corpora(write_sweep), "seed_per_ta_seed": True})))
    assert len(own.of_kind("la")) == 8 and {j.seed for j in own.of_kind("la")} == {1, 2}


def yaml_corpora(write_sweep) -> dict:
    import yaml
    return {"corpora": yaml.safe_load(open(write_sweep()))["language_adapters"]["corpora"]}


def test_pretrained_adapter_replaces_training(write_sweep, tmp_path):
    folder = tmp_path / "la_sw"
    folder.mkdir()
    (folder / "adapter_config.json").write_text("{}")
    cfg = {**yaml_corpora(write_sweep), "pretrained": {"swa": str(folder), "yo": "AdapterHub/yo-wiki"}}
    plan = plan_sweep(load_sweep(write_sweep(variants=["MAD-X"], language_adapters=cfg)))
    las = {j.languages[0]: j for j in plan.of_kind("la")}
    assert las["sw"].inputs.pretrained == str(folder) and not las["sw"].needs  # no corpus to read
    assert las["yo"].inputs.pretrained == "AdapterHub/yo-wiki" and las["yo"].seed is None
    with pytest.raises(ConfigError, match="not a saved adapter"):
        load_sweep(write_sweep(language_adapters={**yaml_corpora(write_sweep), "pretrained": {"sw": str(tmp_path)}}))


def test_ba_recipe_trains_on_both_corpora_and_selects_on_target(demo_world, tmp_path):
    tiny = {"max_steps": 6, "eval_every": 3, "batch_size": 8, "max_seq_length": 32}
    sweep = load_sweep("sweeps/demo.yaml", {
        "variants": ["BAD-X"], "bilingual_adapters": {"ratios": ["2:1"], "train_args": tiny},
        "tasks": {"nli": {"train": "demo_multinli", "eval": ["demo_xnli"], "train_args": tiny}},
        "language_adapters": {"corpora": {lang: f"demo://text/{lang}.txt" for lang in ("en", "sw", "th")},
                              "max_corpus_lines": 200}})
    plan = plan_sweep(sweep)
    ba = next(j for j in plan.of_kind("ba") if j.languages == ("en", "sw"))
    run_corpora(plan, tmp_path)
    metrics = run_job(ba, str(tmp_path), JobContext())
    best = next(h for h in metrics["history"] if h["step"] == metrics["best_step"])
    assert metrics["heldout_perplexity"] == best["perplexity_sw"]  # selected on the target's text
    assert metrics["heldout_perplexity"] == min(h["perplexity_sw"] for h in metrics["history"])
    assert "perplexity_en" not in best and "perplexity_en" in metrics  # the source is scored once, at the end
    from adapters import AutoAdapterModel
    model = AutoAdapterModel.from_pretrained(sweep.model)
    name = model.load_adapter(str(tmp_path / "jobs" / ba.id / "adapter"))
    assert model.adapters_config.get(name)["inv_adapter"] is None  # BAs have no invertible adapters


def test_badx_and_ta_only_plans_run_end_to_end(demo_world, tmp_path):
    from tlr_ray import artifacts
    tiny = {"max_steps": 4, "eval_every": 2, "batch_size": 8, "max_seq_length": 32}
    sweep = load_sweep("sweeps/demo.yaml", {
        "variants": ["BAD-X", "TA-ONLY"], "bilingual_adapters": {"ratios": ["1:2"], "train_args": tiny},
        "tasks": {"nli": {"train": "demo_multinli", "eval": ["demo_xnli"],
                          "train_args": {**tiny, "max_eval_examples": 20}}},
        "language_adapters": {"corpora": {lang: f"demo://text/{lang}.txt" for lang in ("en", "sw", "th")},
                              "max_corpus_lines": 200}})
    plan = plan_sweep(sweep)
    assert not plan.of_kind("la") and len(plan.of_kind("ba")) == 2  # en+sw, en+th at 1:2
    for job in plan.jobs:
        run_job(job, str(tmp_path), JobContext())
    for e in plan.of_kind("eval"):
        acc = artifacts.verify(str(tmp_path), e.id)["metrics"]["accuracy"]
        assert 0 <= acc <= 100
    assert {e.variant for e in plan.of_kind("eval")} == {"BAD-X", "TA-ONLY"}
