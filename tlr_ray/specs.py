"""What each kind of job is, typed: its spec (everything that determines its output, hashed into the
job id) and its inputs (where things live at run time, not hashed). tlr_ray/plan.py builds them, the
recipes read their fields, and a misspelt field fails where the plan is built, not inside a Ray worker.

Specs are keyword-only: reordering their fields can never swap two values. A spec is hashed through
its canonical dict (`asdict`, JSON with sorted keys, tuples as lists), the same
dict the plan hashed before specs were typed: job ids did not change. Manifests and MLflow keep that dict
(`Job.record`). Torch-free: planning and `--dry-run` import this.
"""
from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, fields, is_dataclass

from tlr_ray.config import TrainArgs
from tlr_ray.tasks import DataSource


@dataclass(frozen=True, kw_only=True)
class CorpusSpec:
    """A corpus job: one language's text tokenised into memory-mapped blocks."""
    model: str                       # model fingerprint (its tokenizer)
    language: str
    corpus: str                      # corpus fingerprint (file, or Wikipedia dump)
    block_size: int
    heldout_fraction: float
    heldout_split: str = "random"
    heldout_seed: int = 0
    max_lines: int | None = None


@dataclass(frozen=True, kw_only=True)
class PretrainedSpec:
    """An LA loaded from a folder or AdapterHub instead of trained (`language_adapters.pretrained`)."""
    model: str
    language: str
    pretrained: str                  # its fingerprint


@dataclass(frozen=True, kw_only=True)
class MLMSpec:
    """An LA, BA or MA: an adapter trained with MLM on one or more prepared corpora."""
    model: str
    languages: tuple[str, ...]
    corpora: tuple[str, ...]         # corpus job ids, in `languages` order
    schedule: tuple[int, ...]        # which corpus each step draws from (tlr_ray/sampling.py)
    select_on: tuple[int, ...]       # the corpora whose held-out perplexity selects the checkpoint
    args: TrainArgs
    reduction_factor: int
    invertible: bool
    seed: int


@dataclass(frozen=True, kw_only=True)
class TASpec:
    model: str
    task: str
    task_options: dict | None
    train_data: str                  # training data fingerprint
    args: TrainArgs
    reduction_factor: int
    leave_out_last_layer: bool
    cycle: tuple[str, ...]           # adapter job ids the TA is trained on, in order (empty: TA-ONLY)
    cycle_index: str
    validation_adapter: str | None
    seed: int


@dataclass(frozen=True, kw_only=True)
class EvalSpec:
    ta: str
    adapter: str | None              # the inference LA/BA/MA job id; None for TA-ONLY
    task: str
    task_options: dict | None
    data: str                        # evaluation data fingerprint
    code: str                        # the dataset's code for the target language
    split: str
    batch_size: int
    max_seq_length: int


Spec = CorpusSpec | PretrainedSpec | MLMSpec | TASpec | EvalSpec


@dataclass(frozen=True)
class Inputs:
    """Where a job's inputs live at run time (not hashed: moving a file does not change what a job is)."""
    model: str
    model_revision: str | None = None
    pretrained: str | None = None        # PretrainedSpec: the folder or AdapterHub name
    corpus: dict | None = None           # CorpusSpec: {"path": file} or {"wikipedia": dump.lang}
    train: DataSource | None = None      # TASpec: the training dataset
    train_code: str | None = None        # ... and the source language as it writes it
    data: DataSource | None = None       # EvalSpec: the evaluation dataset
    entry: str | None = None             # TASpec: its `tasks:` entry in the sweep file (error messages name it)

    def record(self) -> dict:
        """As manifests and MLflow keep it: the model, and whichever of the rest this job has."""
        out = {"model": self.model, "model_revision": self.model_revision}
        for name in ("pretrained", "corpus", "train", "train_code", "data"):
            value = getattr(self, name)
            if value is not None:
                out[name] = asdict(value) if isinstance(value, DataSource) else value
        return out


def canonical(spec: Spec) -> dict:
    """The spec as plain JSON data (dataclasses as dicts, tuples as lists): what is hashed into the id and
    kept in manifests. Written out rather than `asdict(...)`: a paper grid hashes ~20,000 adapter
    references while planning, and asdict's deep copies made `--dry-run` of sweeps/full.yaml 2.5x slower."""
    return _plain(spec)


@functools.cache
def _field_names(cls) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))


def _plain(value):
    if is_dataclass(value):
        return {name: _plain(getattr(value, name)) for name in _field_names(type(value))}
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value
