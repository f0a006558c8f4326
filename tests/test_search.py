"""A search sweep runs a few Optuna trials on the demo world, tracks them, and trains the grid with the
best arguments; running it again reuses the search."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
import yaml
from mlflow.tracking import MlflowClient

from tlr_ray.typed_yaml import ConfigError
from tlr_ray.validate import load_sweep

TINY = {"max_steps": 6, "eval_every": 3, "batch_size": 16, "max_seq_length": 32, "max_eval_examples": 30}


def test_search_section_errors(write_sweep):
    with pytest.raises(ConfigError, match=r"search.params.lrr: not a training argument. Did you mean 'lr'"):
        load_sweep(write_sweep(search={"task": "nli", "params": {"lrr": {"loguniform": [1e-4, 1e-2]}}}))
    with pytest.raises(ConfigError, match="low < high and low > 0"):
        load_sweep(write_sweep(search={"task": "nli", "params": {"lr": {"loguniform": [0, 1e-2]}}}))
    with pytest.raises(ConfigError, match="search.variant"):
        load_sweep(write_sweep(search={"task": "nli", "variant": "BAD-X", "params": {"lr": {"choice": [1e-3]}}}))


@pytest.mark.slow
def test_search_runs_optuna_trials_and_applies_the_best(demo_world, tmp_path):
    sweep = yaml.safe_load(open("sweeps/demo_search.yaml"))
    sweep.update(extends=os.path.abspath("sweeps/demo.yaml"), name="searched", variants=["MAD-X"])
    sweep["tasks"] = {"nli": {"eval": ["demo_xnli"], "train_args": TINY}}
    sweep["search"].update(num_samples=3)
    sweep["language_adapters"] = {"train_args": TINY, "max_corpus_lines": 300,
                                  "corpora": {lang: f"demo://text/{lang}.txt" for lang in ("en", "sw", "th")}}
    path = tmp_path / "searched.yaml"
    path.write_text(yaml.safe_dump(sweep))
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    cmd = [sys.executable, "-m", "tlr_ray.sweep", str(path), "--storage", str(tmp_path / "runs"), "--tracking-uri", uri]
    env = {**os.environ, "RAY_ADDRESS": "local"}  # a fresh local cluster of our own
    first = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "[search] 3 Optuna trials of MAD-X on nli" in first.stdout
    (cached,) = (tmp_path / "runs" / "searches").glob("*.json")
    result = json.loads(cached.read_text())
    assert len(result["trials"]) == 3 and result["score"] == max(t["score"] for t in result["trials"])
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("searched")
    trials = client.search_runs([exp.experiment_id], "tags.search = 'nli'")
    assert len(trials) == 3 and len({r.data.params["spec.args.lr"] for r in trials}) == 3
    # the grid's TA was trained with the best arguments
    tas = [r for r in client.search_runs([exp.experiment_id], "tags.kind = 'ta'") if "search" not in r.data.tags
           or r.data.params["spec.args.lr"] == str(result["params"]["lr"])]
    assert any(float(r.data.params["spec.args.lr"]) == pytest.approx(result["params"]["lr"]) for r in tas)
    second = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert second.returncode == 0 and "[search] reusing" in second.stdout
    assert re.search(r"^0 jobs run", second.stdout, re.M), second.stdout[-2000:]
