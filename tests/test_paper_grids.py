"""The paper grids: language sets checked against METHOD.md, each LA once, dry runs without torch."""
from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tlr_ray.config import catalog
from tlr_ray.languages import canonical
from tlr_ray.plan import plan_sweep
from tlr_ray.validate import load_sweep

METHOD = Path(__file__).resolve().parents[2] / "shared" / "METHOD.md"  # ../shared beside the checkout
# METHOD.md's dataset names -> our catalog names
NAMES = {"MasakhaNER 1.0": "masakhaner", "UD 2.7": "ud", "AmericasNLI": "americas_nli", "XNLI": "xnli",
         "XQuAD": "xquad", "TyDiQA-GoldP": "tydiqa"}


def method_language_sets() -> dict[str, set[str]]:
    assert METHOD.is_file(), f"{METHOD} is missing: the tests read the method digest from ../shared"
    text = METHOD.read_text()
    table = text[text.index("## Tasks, datasets and languages"):text.index("BAD-X also evaluates")]
    sets = {}
    for m in re.finditer(r"(MasakhaNER 1\.0|UD 2\.7|AmericasNLI|XNLI|XQuAD|TyDiQA-GoldP): ([a-z ]+?)(?:;|\s*\|)",
                         table):
        sets[NAMES[m[1]]] = set(m[2].split())
    return sets


def test_catalog_language_sets_match_method():
    expected = method_language_sets()
    assert set(expected) == set(NAMES.values())
    for name, langs in expected.items():
        assert set(catalog()[name].languages) == langs, name


def test_full_grid_trains_each_distinct_language_once():
    plan = plan_sweep(load_sweep("sweeps/full.yaml"))
    las = Counter(j.languages[0] for j in plan.of_kind("la"))
    targets = {canonical(c) for langs in method_language_sets().values() for c in langs}
    assert len(targets) == 34  # swa=sw and wol=wo: the paper's 35 codes are 34 languages
    assert set(las) == targets | {"en"} and set(las.values()) == {1}
    # every variant of METHOD.md's grid is there, with 3 seeds for NER and AmericasNLI
    seeds = {(j.task, j.dataset, j.seed) for j in plan.of_kind("eval")}
    assert {s for t, d, s in seeds if d == "masakhaner"} == {1, 2, 3}
    assert {s for t, d, s in seeds if d == "xnli"} == {1}
    variants = {v for j in plan.of_kind("eval") for v in j.variants}
    assert variants == {"MAD-X", "BAD-X", "TARGET", "BILINGUAL", "TASK-MULTI", "ALL-MULTI",
                        "LEAVE-OUT-TASK", "LEAVE-OUT-TARG"}
    # BAD-X only where the paper ran it
    assert {j.dataset for j in plan.of_kind("eval") if j.variant == "BAD-X"} == {"ud", "americas_nli"}


def test_badx_grid_has_every_ratio_and_ma():
    plan = plan_sweep(load_sweep("sweeps/badx.yaml"))
    ratios = {j.ratio for j in plan.of_kind("ba") if len(j.languages) == 2}
    assert ratios == {"1:1", "2:1", "5:1", "1:2", "1:5"}
    assert any(len(j.languages) > 2 for j in plan.of_kind("ba"))  # the multilingual adapter


def test_full_dry_run_imports_no_torch():
    # How long it takes is benchmarks/plan_time.py's to measure; here, what keeps it quick: no torch, no Ray.
    code = ("import sys; from tlr_ray.sweep import main; main(['sweeps/full.yaml', '--dry-run']); "
            "assert 'torch' not in sys.modules and 'ray' not in sys.modules")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "Compute estimate on rtx3090" in out and re.search(r"la\s+35", out)


def test_the_paper_grid_hashes_each_adapter_once():
    """~9,000 requests for its 55 adapters hash one id each, not one per request (19,380 hashes before)."""
    from benchmarks.plan_time import plan_once
    plan, hashed, _ = plan_once(Path("sweeps/full.yaml"))
    tas_and_evals = len(plan.of_kind("ta")) + len(plan.of_kind("eval"))
    # one hash per TA/eval request (a TA shared by variants is asked for once per variant), one per adapter
    assert hashed <= 2 * tas_and_evals + len(plan.of_kind("la")) + len(plan.of_kind("ba")) + 35
    assert hashed < 1.5 * len(plan.jobs)


SWEEPS = sorted((Path(__file__).resolve().parents[1] / "sweeps").glob("*.yaml"))


def test_every_sweep_file_is_found():
    assert {"demo.yaml", "full.yaml", "demo_all_tasks.yaml"} <= {p.name for p in SWEEPS}


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.name)
def test_every_sweep_file_loads_and_plans(path):
    """A sweep file we ship that no longer loads (a renamed key, a dropped variant) fails here, not on a user."""
    plan = plan_sweep(load_sweep(path))
    kinds = Counter(j.kind for j in plan.jobs)
    assert kinds["eval"] > 0 and kinds["ta"] + kinds["search"] > 0, kinds
    assert len({j.id for j in plan.jobs}) == len(plan.jobs)  # content-hashed ids: no two jobs alike
    planned = set()
    for job in plan.jobs:  # dependency order: what a job needs is planned before it
        assert set(job.needs) <= planned, job.id
        planned.add(job.id)
