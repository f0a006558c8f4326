"""What a recipe needs from whoever runs it (a Ray Train worker, a Tune trial, or a test)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported by the recipes that use it; a corpus job never needs it
    import torch


def _cpu():
    import torch
    return torch.device("cpu")


@dataclass
class Checkpoints:
    """Periodic training checkpoints: where a job resumes after its worker died (Ray Train's in a sweep,
    tlr_ray/execute.py; none in tests that call recipes directly)."""
    every: int | None                                   # steps between checkpoints; None: at evaluations
    load: Callable[[], dict | None]                     # the last saved state, or None on a first attempt
    save: Callable[[dict, dict], None]                  # (state, live metrics to report with it)


@dataclass
class JobContext:
    device: torch.device = field(default_factory=_cpu)
    precision: str = "auto"
    rank: int = 0
    world_size: int = 1
    deps: dict[str, Path] = field(default_factory=dict)    # needed job id -> its published artifact folder
    report: Callable[[dict], None] = lambda metrics: None    # live metrics (Ray Train / Tune reporting)
    # Wraps the model for data parallelism (Ray Train's prepare_model) when world_size > 1.
    wrap: Callable[[torch.nn.Module], torch.nn.Module | None] = lambda model: None
    progress: bool = True                                    # tqdm bars in long loops
    cpus: int = 1                                            # processes a corpus job tokenises with
    checkpoints: Checkpoints | None = None
    live: Callable[[dict], None] | None = None               # rank 0's progress to the driver (set by run_job)

    def dep(self, job_id: str) -> Path:
        if job_id not in self.deps:
            raise RuntimeError(f"input {job_id} is not available; run the jobs it needs first")
        return self.deps[job_id]


def adapter_name(job_id: str) -> str:
    """A loaded adapter's name inside a model: the job id, with characters adapters accepts."""
    return job_id.replace("-", "_")
