"""Every class of sweep-file mistake is caught before training, naming the file, the key and the fix."""
from __future__ import annotations

import pytest

from tlr_ray.typed_yaml import ConfigError
from tlr_ray.validate import load_sweep


def error(path, **kw) -> str:
    with pytest.raises(ConfigError) as e:
        load_sweep(path, kw or None)
    msg = str(e.value)
    assert msg.startswith(str(path)), msg  # the file is named first
    return msg


def test_valid_sweep_loads_with_task_defaults(write_sweep):
    sweep = load_sweep(write_sweep())
    args = sweep.task_args["nli"]
    # METHOD.md Table 1 for NLI, with the sweep's one override
    assert (args.batch_size, args.lr, args.eval_every, args.max_steps) == (32, 2e-5, 625, 10)
    assert sweep.la_args.lr == 5e-5 and sweep.la_args.max_steps == 10
    assert sweep.datasets["demo_anli"].targets == ("sw", "yo")  # swa, yor -> canonical


def test_unknown_top_level_key_suggests_nearest(write_sweep):
    msg = error(write_sweep(varients=["MAD-X"]))
    assert "varients" in msg and "Did you mean 'variants'" in msg


def test_unknown_nested_key_names_full_path(write_sweep):
    msg = error(write_sweep(task_adapters={"reduction_factr": 16}))
    assert "task_adapters.reduction_factr" in msg and "'reduction_factor'" in msg


def test_unknown_language_code(write_sweep):
    msg = error(write_sweep(source_language="enn"))
    assert "source_language" in msg and "unknown language code 'enn'" in msg and "'en'" in msg


def test_unknown_language_in_corpora(write_sweep, tmp_path):
    msg = error(write_sweep(language_adapters={"corpora": {"xx-not": str(tmp_path / "sweep.yaml")}}))
    assert "language_adapters.corpora.xx-not" in msg and "unknown language code" in msg


def test_unknown_variant(write_sweep):
    msg = error(write_sweep(variants=["MAD-X", "BILINGAUL"]))
    assert "variants[1]" in msg and "Did you mean 'BILINGUAL'" in msg


def test_unknown_dataset(write_sweep):
    msg = error(write_sweep(tasks={"nli": {"train": "demo_multinli", "eval": ["americas_nlii"]}}))
    assert "tasks.nli.eval[0]" in msg and "Did you mean 'americas_nli'" in msg


def test_missing_dataset_file(write_sweep, tmp_path):
    missing = tmp_path / "nowhere"
    msg = error(write_sweep(datasets={"demo_anli": {"local": {"path": str(missing), "format": "americasnli-tsv"}}}))
    assert "datasets.demo_anli.local.path" in msg and str(missing) in msg and "does not exist" in msg


def test_missing_corpus_file_blocks_a_run_but_not_a_dry_run(write_sweep, tmp_path):
    import subprocess
    import sys
    path = write_sweep(language_adapters={"corpora": {"sw": str(tmp_path / "none.txt")}})
    assert "no file yet for sw" in load_sweep(path).problems[0]
    dry = subprocess.run([sys.executable, "-m", "tlr_ray.sweep", str(path), "--dry-run"], capture_output=True,
                         text=True)
    assert dry.returncode == 0 and "LA sw" in dry.stdout and "before running, fix" in dry.stderr
    run = subprocess.run([sys.executable, "-m", "tlr_ray.sweep", str(path)], capture_output=True, text=True)
    assert run.returncode == 2 and "none.txt" in run.stderr


def test_language_without_wikipedia_needs_a_corpus(write_sweep):
    msg = error(write_sweep(tasks={"nli": {"train": "demo_multinli", "eval": ["americas_nli"]}}))
    assert "no Wikipedia exists for" in msg and "bzd" in msg and "language_adapters.corpora" in msg


def test_empty_leave_out_cycle(write_sweep):
    # LEAVE-OUT-TASK with a single evaluation dataset leaves no target language: it would be MAD-X.
    msg = error(write_sweep(variants=["MAD-X", "LEAVE-OUT-TASK"],
                            tasks={"nli": {"train": "demo_multinli", "eval": ["demo_anli"]}}))
    assert "LEAVE-OUT-TASK" in msg and "leaves no target language" in msg


def test_wrong_type(write_sweep):
    msg = error(write_sweep(seeds="one"))
    assert "seeds[0]" in msg and "expected int" in msg


def test_dataset_of_wrong_task_or_role(write_sweep):
    msg = error(write_sweep(tasks={"nli": {"train": "xnli", "eval": ["demo_anli"]}}))
    assert "for evaling, not training" in msg or "not train" in msg


def test_not_a_model_folder(write_sweep, tmp_path):
    msg = error(write_sweep(model=str(tmp_path / "data")))
    assert "model" in msg and "no config.json" in msg


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="sweep file not found"):
        load_sweep(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_sweep(bad)


def test_demo_sweep_file_is_valid(demo_world):
    sweep = load_sweep("sweeps/demo.yaml")
    assert sweep.name == "demo" and set(sweep.corpora) == {"en", "sw", "yo", "th"}


def test_extends_merges_over_a_base_file(tmp_path, write_sweep):
    base = write_sweep()
    child = tmp_path / "child.yaml"
    child.write_text(f"extends: {base.name}\nname: child\nvariants: [MAD-X]\n"
                     "tasks: {nli: {train_args: {max_steps: 3}}}\n")
    sweep = load_sweep(child)
    assert sweep.name == "child" and sweep.config.variants == ("MAD-X",)
    assert sweep.task_args["nli"].max_steps == 3                               # merged into the base's task
    assert sweep.config.tasks["nli"].eval == ("demo_anli", "demo_xnli")        # kept from the base
    loop = tmp_path / "loop.yaml"
    loop.write_text("extends: loop.yaml\n")
    with pytest.raises(ConfigError, match="extends itself in a loop"):
        load_sweep(loop)


def test_demo_variants_sweeps_are_valid(demo_world):
    assert load_sweep("sweeps/demo_badx.yaml").config.bilingual_adapters.ratios == ("1:1", "2:1")
    assert "LEAVE-OUT-TARG" in load_sweep("sweeps/demo_leaveout.yaml").config.variants


def test_fault_tolerance_settings(write_sweep):
    msg = error(write_sweep(execution={"checkpoint_every": 0}))
    assert "execution.checkpoint_every" in msg and "positive integer" in msg
    msg = error(write_sweep(execution={"max_failures": -5}))
    assert "execution.max_failures" in msg and "-1 (retry without limit)" in msg
    ex = load_sweep(write_sweep(execution={"checkpoint_every": 500})).config.execution
    assert (ex.checkpoint_every, ex.max_failures) == (500, 2)
