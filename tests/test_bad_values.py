"""No bad input becomes a result: a sweep file with one value outside its knob's domain stops
`python -m tlr_ray.sweep FILE --dry-run` with exit status 2 and one `error:` line naming the key, before
anything is planned, and never with a traceback.

The table is data: one row per (key path, bad value, expected part of the message). Adding a knob adds a
row; `test_every_train_arg_and_resource_has_a_domain_and_a_row` fails until it has both.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest
import yaml

from tlr_ray.config import Resources, TrainArgs
from tlr_ray.domains import RESOURCE_DOMAINS, TRAIN_ARG_DOMAINS

NAN, INF = float("nan"), float("inf")
SEARCH = {"search": {"task": "nli", "params": {"lr": {"loguniform": [1e-4, 1e-2]}}}}
DEMO = {"model": "demo://model"}  # checks that read the model's config.json (hidden size, positions)
# A Hub model whose config.json is in the local Hugging Face cache (written by the test): XLM-R's shape,
# 514 position embeddings of which 512 are usable (positions start after the padding index).
HUB = {"model": "tlr-ray-test/xlmr-shaped", "hub_config": {"model_type": "xlm-roberta", "hidden_size": 768,
                                                           "max_position_embeddings": 514, "pad_token_id": 1}}
TA, LA, BA = "tasks.nli.train_args", "language_adapters.train_args", "bilingual_adapters.train_args"
COUNT, REAL, SEED = "must be a positive integer", "must be a positive finite number", "must be an integer from 0"

# (key path, bad value, expected message part[, other keys set first])
ROWS = [
    # counts: steps, epochs, batch sizes, intervals, lengths, patience
    (f"{TA}.max_steps", -5, COUNT),
    (f"{TA}.max_steps", 0, COUNT),
    (f"{TA}.epochs", -1, REAL),
    (f"{TA}.epochs", 0, REAL),
    (f"{LA}.min_steps", 0, COUNT),
    (f"{LA}.steps_cap", -100, COUNT),
    (f"{TA}.batch_size", 0, COUNT),
    (f"{BA}.batch_size", -64, COUNT),
    (f"{TA}.eval_batch_size", -1, COUNT),
    (f"{TA}.eval_every", 0, COUNT),
    (f"{TA}.max_seq_length", 0, COUNT),
    (f"{TA}.patience", 0, COUNT),
    (f"{TA}.max_eval_examples", 0, COUNT),
    ("language_adapters.per_language.sw.eval_every", 0, COUNT),
    ("language_adapters.max_corpus_lines", 0, COUNT),
    ("search.num_samples", 0, COUNT, SEARCH),
    ("execution.max_concurrent_trials", 0, COUNT),
    ("execution.checkpoint_every", 0, COUNT),
    ("execution.resources.ta.num_workers", 0, COUNT),
    # learning rates: positive and finite
    (f"{TA}.lr", NAN, REAL),
    (f"{TA}.lr", INF, REAL),
    (f"{TA}.lr", -1e-4, REAL),
    (f"{LA}.lr", 0, REAL),
    (f"{TA}.lr", "fast", "expected float"),
    # fractions
    ("language_adapters.heldout_fraction", 0, "strictly between 0 and 1"),
    ("language_adapters.heldout_fraction", 1.5, "strictly between 0 and 1"),
    ("language_adapters.per_language.sw.heldout_fraction", 1.0, "strictly between 0 and 1"),
    (f"{TA}.warmup_ratio", 1.0, "from 0 (included) to 1 (excluded)"),
    (f"{TA}.warmup_ratio", -0.1, "from 0 (included) to 1 (excluded)"),
    (f"{TA}.weight_decay", -0.01, "must be a finite number >= 0"),
    # reduction factors: positive; for a local model, a divisor of its hidden size (demo model: 128)
    ("task_adapters.reduction_factor", 0, COUNT),
    ("language_adapters.reduction_factor", -2, COUNT),
    ("bilingual_adapters.reduction_factor", 0, COUNT),
    ("task_adapters.reduction_factor", 3, "divisor of the model's hidden size 128", DEMO),
    ("language_adapters.reduction_factor", 128, "of at most 64 (invertible", DEMO),
    ("task_adapters.reduction_factor", 0, COUNT, {"model": "bert-base-multilingual-cased"}),  # a Hub model
    ("task_adapters.reduction_factor", 5, "divisor of the model's hidden size 768", HUB),
    # sequences within the model's position embeddings (demo model: 256)
    (f"{TA}.max_seq_length", 1024, "at most 256, the model's position embeddings", DEMO),
    (f"{LA}.max_seq_length", 512, "at most 256, the model's position embeddings", DEMO),
    (f"{TA}.max_seq_length", 513, "at most 512, the model's position embeddings", HUB),
    # BA ratios
    ("bilingual_adapters.ratios", ["0:1"], "impossible ratio"),
    # seeds
    ("seeds", [-1], SEED),
    ("tasks.nli.seeds", [1, -2], SEED),
    ("language_adapters.seed", -1, SEED),
    ("language_adapters.heldout_seed", -3, SEED),
    ("search.seed", -1, SEED, SEARCH),
    ("seeds", [2**40], SEED),
    # resources
    ("execution.resources.ta.cpus_per_worker", 0, REAL),
    ("execution.resources.ta.gpus_per_worker", -0.5, "must be a finite number >= 0"),
    ("execution.resources.la.custom.a100", -1, "must be a finite number >= 0"),
    ("execution.max_failures", -2, "-1 (retry without limit)"),
    # what a search samples is in the argument's domain too
    ("search.params.max_steps", {"choice": [-5, 10]}, COUNT, SEARCH),
    ("search.params.warmup_ratio", {"uniform": [0.0, 1.5]}, "to 1 (excluded)", SEARCH),
    # languages the data has: the source in the training set (was a bare StopIteration), each language once
    ("source_language", "sw", "has no sw data"),
    ("datasets.demo_xnli.languages", ["sw", "swa", "th"], "list each language"),
]


def row_id(row) -> str:
    return f"{row[0]}={row[1]!r}"


def set_key(data: dict, path: str, value) -> None:
    *parents, last = path.split(".")
    for name in parents:
        data = data.setdefault(name, {})
    data[last] = value


def hub_cache(root: Path, model: str, config: dict) -> dict:
    """A Hugging Face cache at `root` holding `model`'s config.json as the Hub client lays it out; the
    environment that points a child process at it."""
    snapshot = root / f"models--{model.replace('/', '--')}" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text(json.dumps(config))
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("0" * 40)
    return {**os.environ, "HF_HUB_CACHE": str(root), "HF_HUB_OFFLINE": "1"}


@pytest.mark.parametrize("row", ROWS, ids=row_id)
def test_bad_value_is_a_config_error_naming_the_key(row, write_sweep, request, tmp_path):
    path, value, expected, *extra = row
    extra = dict(extra[0]) if extra else {}
    if extra.get("model", "").startswith("demo://"):
        request.getfixturevalue("demo_world")  # built once (first use), TLR_RAY_CACHE set for the child
    env = hub_cache(tmp_path / "hf", extra["model"], extra.pop("hub_config")) if "hub_config" in extra else None
    sweep_file = write_sweep(**extra)
    data = yaml.safe_load(sweep_file.read_text())
    set_key(data, path, value)
    sweep_file.write_text(yaml.safe_dump(data))
    out = subprocess.run([sys.executable, "-m", "tlr_ray.sweep", str(sweep_file), "--dry-run"],
                         capture_output=True, text=True, timeout=120, env=env)
    both = out.stdout + out.stderr
    assert "Traceback" not in both, both
    assert out.returncode == 2, both
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, out.stderr
    line = errors[0]
    assert str(sweep_file) in line and path in line, line       # the file and the key
    assert expected in line, line                              # the allowed range (or what is wrong)
    if isinstance(value, (int, float)) and expected not in ("expected float",):
        assert str(value) in line or repr(value) in line, line  # the bad value itself


def test_every_train_arg_and_resource_has_a_domain_and_a_row():
    numeric = {f.name for f in fields(Resources) if f.type in ("int", "float")}
    assert set(TRAIN_ARG_DOMAINS) == {f.name for f in fields(TrainArgs)}
    assert set(RESOURCE_DOMAINS) == numeric
    keys = " ".join(row[0] for row in ROWS)
    missing = [name for name in [*TRAIN_ARG_DOMAINS, *RESOURCE_DOMAINS] if f".{name}" not in keys]
    assert not missing, f"add a row of tests/test_bad_values.py for: {missing}"
    assert len(ROWS) >= 20


def test_good_values_pass_and_a_short_run_only_warns(write_sweep, demo_world):
    """No false alarm on the demo model (rf 2 and 16 divide 128; 128 tokens fit 256 positions), and an
    evaluation interval longer than max_steps is a warning: only the final evaluation happens."""
    sweep_file = write_sweep(model="demo://model")
    out = subprocess.run([sys.executable, "-m", "tlr_ray.sweep", str(sweep_file), "--dry-run"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "error:" not in out.stderr and "Traceback" not in out.stderr
    warning = [line for line in out.stderr.splitlines() if "tasks.nli.train_args.eval_every" in line]
    assert warning and warning[0].startswith("warning:") and "only the final evaluation" in warning[0]


def test_a_gap_in_the_checks_is_still_an_error_line_not_a_traceback(write_sweep, monkeypatch, capsys):
    """Were a mistake to slip past the checks and break planning (as a source language missing from the
    training data once did, with a bare StopIteration), the user still gets an `error:` line and status 2;
    --verbose shows the traceback."""
    import tlr_ray.sweep as cli

    def broken(sweep):
        raise StopIteration

    monkeypatch.setattr(cli, "plan_sweep", broken)
    path = str(write_sweep())
    assert cli.main([path, "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and any(line.startswith(f"error: {path}:") and "StopIteration" in line
                                          for line in err.splitlines()), err
    with pytest.raises(StopIteration):
        cli.main([path, "--dry-run", "--verbose"])


@pytest.mark.parametrize("content, expected", [
    (b"", "is empty"),
    (b"\n  \n", "is empty"),
    # deep in the file, past any cheap look at its start: task files are read whole at load time
    (b"".join(b'{"gold_label": "neutral"}\n' for _ in range(5000)) + "caf\u00e9\n".encode("latin-1"),
     "is not UTF-8 text: line 5001 has the byte b'\\xe9'"),
])
def test_an_empty_or_non_utf8_task_file_is_an_error_before_anything_runs(content, expected, write_sweep, tmp_path):
    sweep_file = write_sweep()
    bad = tmp_path / "data" / "multinli" / "multinli_1.0_train.jsonl"
    bad.write_bytes(content)
    (tmp_path / "data" / "multinli" / ".DS_Store").write_bytes(b"\xff\x00")  # hidden: not data, not checked
    out = subprocess.run([sys.executable, "-m", "tlr_ray.sweep", str(sweep_file), "--dry-run"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stdout + out.stderr, out.stderr
    [line] = [ln for ln in out.stderr.splitlines() if ln.startswith("error:")]
    assert "datasets.demo_multinli.local.path" in line and str(bad) in line and expected in line, line
