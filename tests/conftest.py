"""Shared fixtures: small sweep files on disk, and the demo world built once per test session."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

# Tests never touch the user's cache or MLflow store.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def demo_world(tmp_path_factory) -> Path:
    """The offline demo world, built once for the whole session (TLR_RAY_CACHE points at a tmp dir
    unless the caller already set it, e.g. CI keeping a warm cache)."""
    from tlr_ray.demo.world import ensure_demo_world
    if "TLR_RAY_CACHE" not in os.environ:
        os.environ["TLR_RAY_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    return ensure_demo_world()


@pytest.fixture
def write_sweep(tmp_path):
    """write_sweep(**top_level_overrides) -> path of a valid small NLI sweep, tweaked as asked.
    Its datasets and corpora are local files in tmp_path (empty: planning only checks they exist)."""
    data = tmp_path / "data"
    for sub in ("multinli", "anli", "xnli"):
        (data / sub).mkdir(parents=True, exist_ok=True)
    corpora = {}
    for lang in ("en", "sw", "yo", "th"):
        f = data / f"{lang}.txt"
        f.write_text(f"some {lang} text\nmore {lang} text\n")
        corpora[lang] = str(f)
    model = tmp_path / "model"
    model.mkdir(exist_ok=True)
    (model / "config.json").write_text("{}")

    def write(**overrides) -> Path:
        sweep = {
            "name": "small", "model": str(model), "seeds": [1],
            "variants": ["MAD-X", "TARGET", "BILINGUAL", "TASK-MULTI", "ALL-MULTI"],
            "tasks": {"nli": {"train": "demo_multinli", "eval": ["demo_anli", "demo_xnli"],
                              "train_args": {"max_steps": 10}}},
            "datasets": {"demo_multinli": {"local": {"path": str(data / "multinli"), "format": "multinli-jsonl"}},
                         "demo_anli": {"local": {"path": str(data / "anli"), "format": "americasnli-tsv"}},
                         "demo_xnli": {"local": {"path": str(data / "xnli"), "format": "xnli-tsv"}}},
            "language_adapters": {"corpora": corpora, "train_args": {"max_steps": 10}},
        }
        sweep.update(overrides)
        path = tmp_path / "sweep.yaml"
        path.write_text(yaml.safe_dump(sweep))
        return path

    return write


def run_corpora(plan, storage) -> None:
    """Prepare the plan's corpora (the `corpus` jobs every LA/BA needs), as a sweep does first."""
    from dataclasses import asdict

    from tlr_ray.runner import run_job
    from tlr_ray.train.context import JobContext
    for job in plan.of_kind("corpus"):
        run_job(asdict(job), str(storage), JobContext())


TINY_ARGS = {"max_steps": 2, "eval_every": 2, "batch_size": 8, "max_seq_length": 32}


def run_tiny_sweep(storage, tasks: dict, languages, variants=("MAD-X",), overrides: dict | None = None):
    """The demo sweep shrunk to a few steps for `tasks` (entries as in a sweep file; TINY_ARGS filled in),
    planned and run job by job without Ray. Returns (plan, {eval job id: its metrics})."""
    from dataclasses import asdict

    from tlr_ray.artifacts import verify
    from tlr_ray.config import load_sweep
    from tlr_ray.plan import plan_sweep
    from tlr_ray.runner import run_job
    from tlr_ray.train.context import JobContext
    tasks = {k: {**v, "train_args": {**TINY_ARGS, "max_eval_examples": 20, **v.get("train_args", {})}}
             for k, v in tasks.items()}
    sweep = load_sweep("sweeps/demo.yaml", {
        "variants": list(variants), "tasks": tasks,
        "language_adapters": {"corpora": {l: f"demo://text/{l}.txt" for l in languages},
                              "train_args": TINY_ARGS, "max_corpus_lines": 400},
        **(overrides or {})})
    plan = plan_sweep(sweep)
    for job in plan.jobs:
        run_job(asdict(job), str(storage), JobContext())
    return plan, {j.id: verify(str(storage), j.id)["metrics"] for j in plan.of_kind("eval")}
