"""The plan: the JSON contract, each LA once, cycles per METHOD.md, identical work planned once."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import jsonschema

from tlr_ray.plan import plan_sweep
from tlr_ray.validate import load_sweep

SCHEMA = json.loads(re.findall(r"```json\n(.*?)```", Path("docs/plan-json.md").read_text(), re.S)[1])


def plan_json(path) -> dict:
    out = subprocess.run([sys.executable, "-m", "tlr_ray.sweep", str(path), "--dry-run", "--json"],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def test_dry_run_json_validates_against_contract(write_sweep):
    data = plan_json(write_sweep())
    jsonschema.validate(data, SCHEMA)
    assert data["sweep"] == "small"
    ids = [j["id"] for j in data["jobs"]]
    assert len(ids) == len(set(ids))
    seen = set()
    for job in data["jobs"]:  # dependency order: every need is listed before the job
        assert set(job["needs"]) <= seen, job
        seen.add(job["id"])


def test_each_language_adapter_planned_once(write_sweep):
    jobs = plan_json(write_sweep(seeds=[1, 2, 3]))["jobs"]
    las = [j["languages"][0] for j in jobs if j["kind"] == "la"]
    # swa (demo_anli) and sw (demo_xnli) are one language: one LA; seeds share LAs
    assert sorted(las) == ["en", "sw", "th", "yo"]


def test_cycles_match_method(write_sweep):
    jobs = plan_json(write_sweep())["jobs"]
    tas = {}
    for j in jobs:
        if j["kind"] == "ta":
            tas.setdefault(j["variant"], []).append(tuple(j["languages"]))
    assert tas["MAD-X"] == [("en",)]
    assert sorted(tas["TARGET"]) == [("sw",), ("th",), ("yo",)]
    assert sorted(tas["BILINGUAL"]) == [("en", "sw"), ("en", "th"), ("en", "yo")]
    assert sorted(tas["TASK-MULTI"]) == [("en", "sw", "th"), ("en", "sw", "yo")]  # one per dataset
    assert tas["ALL-MULTI"] == [("en", "sw", "yo", "th")]
    evals = [j for j in jobs if j["kind"] == "eval"]
    assert len(evals) == 5 * 4  # variants x (dataset, target) pairs
    by_id = {j["id"]: j for j in jobs}
    for e in evals:  # at inference every variant uses LA(target)
        la = [by_id[n] for n in e["needs"] if by_id[n]["kind"] == "la"]
        assert [x["languages"] for x in la] == [[e["target"]]] and e["languages"] == [e["target"]]


def test_leave_out_variants(write_sweep):
    jobs = plan_json(write_sweep(variants=["LEAVE-OUT-TASK", "LEAVE-OUT-TARG"]))["jobs"]
    for j in jobs:
        if j["kind"] == "eval" and j["variant"] == "LEAVE-OUT-TARG":
            ta = next(t for t in jobs if t["id"] in j["needs"] and t["kind"] == "ta")
            assert j["target"] not in ta["languages"] and ta["languages"][0] == "en"
    lot = {tuple(j["languages"]) for j in jobs if j["kind"] == "ta" and j["variant"] == "LEAVE-OUT-TASK"}
    assert lot == {("en", "th"), ("en", "yo")}  # all targets minus the dataset's own


def test_identical_work_is_shared_between_variants(write_sweep):
    # With one evaluation dataset, ALL-MULTI's cycle equals TASK-MULTI's: one TA, counted for both.
    path = write_sweep(variants=["TASK-MULTI", "ALL-MULTI"],
                       tasks={"nli": {"train": "demo_multinli", "eval": ["demo_anli"]}})
    plan = plan_sweep(load_sweep(path))
    tas = plan.of_kind("ta")
    assert len(tas) == 1 and tas[0].variants == ("TASK-MULTI", "ALL-MULTI")
    assert all(e.variants == ("TASK-MULTI", "ALL-MULTI") for e in plan.of_kind("eval"))


def test_ids_depend_on_content_only(write_sweep, tmp_path):
    a = plan_sweep(load_sweep(write_sweep()))
    b = plan_sweep(load_sweep(write_sweep(name="renamed")))
    assert [j.id for j in a.jobs] == [j.id for j in b.jobs]  # the sweep's name is not content
    c = plan_sweep(load_sweep(write_sweep(tasks={"nli": {"train": "demo_multinli", "eval": ["demo_anli", "demo_xnli"],
                                                          "train_args": {"max_steps": 11}}})))
    assert {j.id for j in a.of_kind("la")} == {j.id for j in c.of_kind("la")}  # LAs unaffected
    assert not {j.id for j in a.of_kind("ta")} & {j.id for j in c.of_kind("ta")}  # TAs all changed


def test_dry_run_imports_neither_torch_nor_ray(write_sweep):
    code = ("import sys; from tlr_ray.sweep import main; main([sys.argv[1], '--dry-run']); "
            "bad = [m for m in ('torch', 'ray', 'transformers') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code, str(write_sweep())], check=True, capture_output=True)


def test_human_dry_run_counts(write_sweep):
    out = subprocess.run([sys.executable, "-m", "tlr_ray.sweep", str(write_sweep()), "--dry-run"],
                         capture_output=True, text=True, check=True).stdout
    assert re.search(r"la\s+4\s+\(en, sw, yo, th\)", out) and re.search(r"ta\s+10", out)
    assert re.search(r"eval\s+20", out)


def test_config_error_exits_2_without_traceback(write_sweep):
    r = subprocess.run([sys.executable, "-m", "tlr_ray.sweep", str(write_sweep(variants=["MADX"])), "--dry-run"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "Did you mean 'MAD-X'" in r.stderr


def test_dry_run_describes_a_ta_only_sweep(write_sweep):
    """A TA-ONLY TA stacks on no LA (no language): --dry-run once crashed on it (IndexError) before Ray."""
    path = write_sweep(variants=["TA-ONLY", "MAD-X"])
    out = subprocess.run([sys.executable, "-m", "tlr_ray.sweep", str(path), "--dry-run"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert re.search(r"ta-\w+  nli TA-ONLY seed=1 cycle=\[\]", out.stdout), out.stdout[-2000:]
