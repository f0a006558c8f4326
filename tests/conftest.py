"""Shared fixtures: small sweep files on disk, the demo world built once per test session, and a Ray head
node of a test's own (helpers in tests/helpers.py)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from helpers import head_node

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


@pytest.fixture
def cluster(tmp_path, demo_world):
    """A head node for one test (see `head_node`)."""
    with head_node(tmp_path) as c:
        yield c


@pytest.fixture(scope="module")
def module_cluster(tmp_path_factory, demo_world):
    """A head node shared by a module's tests, for a fixture that runs its sweep once for several tests."""
    with head_node(tmp_path_factory.mktemp("cluster")) as c:
        yield c
