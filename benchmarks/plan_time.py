"""How long planning takes: every sweep file, loaded and planned in this process, and the whole
`--dry-run` command of each in a fresh process (imports included, as a user runs it).

    .venv/bin/python -m benchmarks.plan_time

Prints, per sweep: jobs, job ids hashed while planning, seconds to load + plan, seconds for the
command. The paper grid asks for its ~55 adapters about 9,000 times; the planner hashes each once.
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parent.parent


def plan_once(path: Path):
    """(the plan, how many job ids were hashed to make it, seconds to load and plan the sweep file)."""
    import tlr_ray.plan as plan
    from tlr_ray.validate import load_sweep

    hashed, real = [0], plan.job_id_of

    def counting(*args):
        hashed[0] += 1
        return real(*args)

    t = time.perf_counter()
    with mock.patch.object(plan, "job_id_of", counting):
        planned = plan.plan_sweep(load_sweep(str(path)))
    return planned, hashed[0], time.perf_counter() - t


def command_seconds(path: Path) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "tlr_ray.sweep", str(path), "--dry-run"], cwd=ROOT,
                   capture_output=True, check=False)
    return time.perf_counter() - t


def main() -> None:
    print("| sweep | jobs | ids hashed | load + plan, s | `--dry-run` command, s |")
    print("|---|---:|---:|---:|---:|")
    for path in sorted((ROOT / "sweeps").glob("*.yaml")):
        planned, hashed, seconds = plan_once(path)
        print(f"| {path.name} | {len(planned.jobs)} | {hashed} | {seconds:.3f} | {command_seconds(path):.2f} |")


if __name__ == "__main__":
    main()
