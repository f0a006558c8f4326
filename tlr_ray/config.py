"""Sweep files (sweeps/*.yaml) as frozen, typed config objects, checked before any training starts.

`load_sweep(path)` reads the YAML, builds the dataclasses below (unknown keys, wrong types), then checks
meaning: language codes, variant names, dataset names and files, and the task defaults of METHOD.md
filled in. Every error is a `ConfigError` naming the file, the key and the fix.
Relative paths are taken from the current folder; `demo://` paths point into the offline demo world.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

import yaml

from tlr_ray import languages
from tlr_ray.tasks import DataSource
from tlr_ray.tasks.registry import TASKS
from tlr_ray.typed_yaml import ConfigError, build, nearest


@dataclass(frozen=True)
class TrainArgs:
    batch_size: int
    lr: float
    max_steps: int | None = None   # exactly this many steps; wins over epochs and the two bounds below
    epochs: float | None = None
    min_steps: int | None = None   # epochs x batches, raised to at least min_steps...
    steps_cap: int | None = None   # ...and capped at steps_cap (the LA budget of METHOD.md)
    eval_every: int = 500
    max_seq_length: int = 128
    warmup_ratio: float = 0.0
    weight_decay: float = 0.0
    patience: int | None = None     # stop after this many evaluations without improvement
    eval_batch_size: int = 64
    max_eval_examples: int | None = None  # cap the validation set (the demo uses this; None = all)


# METHOD.md and TLR paper Table 1, per task (tlr_ray/tasks/registry.py). A sweep overrides any of these per task.
TASK_DEFAULTS: dict[str, dict[str, Any]] = {name: facts.defaults for name, facts in TASKS.items()}
# LA: "a minimum of 100 epochs or 100,000 steps", never fewer than 30,000 (reference: --min_steps 30000
# --max_steps 100000 --num_train_epochs 100): steps = max(30k, min(100 epochs, 100k)).
LA_DEFAULTS: dict[str, Any] = dict(batch_size=8, lr=5e-5, epochs=100, min_steps=30_000, steps_cap=100_000,
                                   eval_every=1000, max_seq_length=256)
# BAD-X: a BA (or MA) is trained for 50,000 steps, batch 64, lr 1e-4, evaluated every 500 steps.
BA_DEFAULTS: dict[str, Any] = dict(batch_size=64, lr=1e-4, max_steps=50_000, eval_every=500,
                                   max_seq_length=256)


@dataclass(frozen=True)
class Resources:
    """Per job kind. GPU fractions (gpus_per_worker < 1) let small TA/eval jobs share a GPU."""
    num_workers: int = 1
    use_gpu: bool = False
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0    # 0 with use_gpu means 1
    custom: dict[str, float] = field(default_factory=dict)  # custom Ray resources per worker, e.g. {a100: 1}


@dataclass(frozen=True)
class LanguageOverride:
    """Per-language settings of `language_adapters.per_language` (the paper: high-resource languages are
    evaluated every 5,000 steps on a 1% held-out split)."""
    heldout_fraction: float | None = None   # the corpus's held-out split (every LA/BA/MA reading it)
    eval_every: int | None = None           # this language's LA (BAs keep bilingual_adapters' setting)


@dataclass(frozen=True)
class LanguageAdapters:
    corpora: dict[str, str] = field(default_factory=dict)  # language -> local text file; else Wikipedia
    wikipedia_dump: str = "20231101"
    train_args: dict[str, Any] = field(default_factory=dict)
    heldout_fraction: float = 0.05
    # random: a seeded hash of each line's index decides (the same split for every job reading the
    # corpus); first: the first heldout_fraction of the lines, as the reference (run_mlm's train[:5%]).
    heldout_split: Literal["random", "first"] = "random"
    heldout_seed: int = 0
    per_language: dict[str, LanguageOverride] = field(default_factory=dict)
    max_corpus_lines: int | None = None
    reduction_factor: int = 2
    invertible: bool = True
    seed: int = 1                   # LAs are trained once and shared by every TA seed...
    seed_per_ta_seed: bool = False  # ...unless this is on: then each TA seed gets LAs of its own seed
    # language -> an adapter to use instead of training one: a local folder or an AdapterHub/HF Hub id
    # (anything `model.load_adapter` accepts), e.g. published MAD-X language adapters.
    pretrained: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class BilingualAdapters:
    """BAD-X bilingual adapters (variant BAD-X) and multilingual adapters (variant MA): MLM on the
    source and target texts (the corpora of `language_adapters`), alternating batches at a ratio."""
    ratios: tuple[str, ...] = ("1:1",)   # source:target batches, e.g. ["1:1", "2:1", "5:1", "1:2", "1:5"]
    train_args: dict[str, Any] = field(default_factory=dict)
    reduction_factor: int = 2


@dataclass(frozen=True)
class TaskAdapters:
    reduction_factor: int = 16
    # Which LA is active at step s: cycle[s % K] with s the global step (ours) or the step inside the
    # epoch (the reference implementation).
    cycle_index: Literal["global_step", "epoch_step"] = "global_step"
    # Which LA validation on source data uses: the source LA (ours) or the cycle (the reference).
    validation_adapter: Literal["source", "cycle"] = "source"
    # Per variant, e.g. {TARGET: cycle}: with `source` a TARGET TA is validated with the English LA it
    # never trained with; `cycle` (its own target LA) is the faithful setting for TARGET.
    validation_adapter_per_variant: dict[str, Literal["source", "cycle"]] = field(default_factory=dict)


@dataclass(frozen=True)
class TaskSpec:
    """One entry of `tasks:`. Its key is the task's name unless `task` says otherwise, so that one task
    can appear twice with different settings (e.g. NLI on AmericasNLI with 3 seeds, on XNLI with 1)."""
    train: str
    eval: tuple[str, ...]
    task: str | None = None
    variants: tuple[str, ...] | None = None   # default: the sweep's
    seeds: tuple[int, ...] | None = None      # default: the sweep's
    train_args: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)  # task-specific, e.g. ner: {labels: reduced}

    def name(self, key: str) -> str:
        return self.task or key


@dataclass(frozen=True)
class LocalFiles:
    path: str
    format: str


@dataclass(frozen=True)
class HubSpec:
    id: str
    revision: str | None = None
    config: str | None = None
    data_dir: str | None = None


@dataclass(frozen=True)
class DatasetEntry:
    """A catalog entry (tlr_ray/catalog/) or a sweep's override of one."""
    task: str | None = None
    role: Literal["train", "eval"] | None = None
    languages: tuple[str, ...] | None = None
    hub: HubSpec | None = None
    local: LocalFiles | None = None
    local_format: str | None = None
    splits: dict[str, str] = field(default_factory=dict)
    eval_split: str | None = None     # the split evaluated (our name); default test
    sizes: dict[str, int] = field(default_factory=dict)  # examples: train, and eval per language (estimates)


@dataclass(frozen=True)
class SearchParam:
    """One hyperparameter's distribution: exactly one of these."""
    loguniform: tuple[float, float] | None = None
    uniform: tuple[float, float] | None = None
    choice: tuple[Any, ...] | None = None


@dataclass(frozen=True)
class Search:
    """Choose TA hyperparameters with Ray Tune + Optuna before the grid's TA stage (tlr_ray/search.py)."""
    task: str                                  # a `tasks:` entry
    params: dict[str, SearchParam]             # TrainArgs fields, e.g. {lr: {loguniform: [1e-4, 1e-2]}}
    variant: str = "MAD-X"                     # whose TA (first target's cycle, first seed) is searched
    num_samples: int = 4
    scheduler: Literal["none", "asha"] = "none"  # ASHA stops weak trials at their validation reports
    seed: int = 0


@dataclass(frozen=True)
class Execution:
    storage: str = "runs"                          # storage root: folder, or s3://, gs://... URI (tlr_ray/storage.py)
    tracking_uri: str = "sqlite:///mlflow.db"      # MLFLOW_TRACKING_URI wins when set
    resources: dict[str, Resources] = field(default_factory=dict)  # keys: la, ta, eval
    max_concurrent_trials: int | None = None       # default: what the cluster's CPUs/GPUs allow
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 autocast on GPU, fp32 on CPU
    # Fault tolerance: a training job checkpoints every `checkpoint_every` steps (rounded up to a multiple
    # of eval_every; default: at each evaluation) and is retried up to `max_failures` times, resuming from
    # its last checkpoint.
    checkpoint_every: int | None = None
    max_failures: int = 2
    estimate_on: str = "rtx3090"   # the device row of tlr_ray/step_times.yaml used by --dry-run
    # Where a training job of one CPU worker trains: "auto", in its own trial's process (no Ray Train
    # worker group to start: about 20 s of new processes and imports per job on 2 cores); "always", in a
    # Ray Train worker like every GPU or multi-worker job (tlr_ray/trial.py, docs/architecture.md).
    ray_train: Literal["auto", "always"] = "auto"


@dataclass(frozen=True)
class SweepConfig:
    name: str
    model: str                                     # Hub id, local folder, or demo://model
    variants: tuple[str, ...]
    tasks: dict[str, TaskSpec]
    model_revision: str | None = None
    source_language: str = "en"
    leave_out_last_layer: bool = True   # MAD-X 2.0: no adapters in the last layer, in LAs and TAs
    seeds: tuple[int, ...] = (1,)
    datasets: dict[str, DatasetEntry] = field(default_factory=dict)
    language_adapters: LanguageAdapters = field(default_factory=LanguageAdapters)
    bilingual_adapters: BilingualAdapters = field(default_factory=BilingualAdapters)
    task_adapters: TaskAdapters = field(default_factory=TaskAdapters)
    execution: Execution = field(default_factory=Execution)
    search: Search | None = None


@dataclass(frozen=True)
class Dataset:
    name: str
    task: str
    role: str
    codes: tuple[str, ...]           # the dataset's own language codes, in catalog order
    source: DataSource
    eval_split: str = "test"
    sizes: dict[str, int] = field(default_factory=dict)

    @property
    def targets(self) -> tuple[str, ...]:
        return tuple(languages.canonical(c) for c in self.codes)

    def code_for(self, lang: str) -> str:
        return next(c for c in self.codes if languages.canonical(c) == lang)


@dataclass(frozen=True)
class Sweep:
    """A loaded, checked sweep: the config plus everything resolved from it."""
    file: str
    config: SweepConfig
    model: str                        # resolved: absolute folder or Hub id
    datasets: dict[str, Dataset]      # every dataset the sweep uses
    task_args: dict[str, TrainArgs]   # per `tasks:` entry, the task's defaults merged with its overrides
    la_args: TrainArgs
    ba_args: TrainArgs
    corpora: dict[str, str]           # canonical language -> absolute text file (others: Wikipedia)
    pretrained: dict[str, str]        # canonical language -> adapter folder (absolute) or Hub id
    per_language: dict[str, LanguageOverride] = field(default_factory=dict)  # canonical language -> overrides
    problems: tuple[str, ...] = ()    # what must be fixed before running (--dry-run shows the plan anyway)

    @property
    def name(self) -> str:
        return self.config.name

    def variants(self) -> tuple[str, ...]:
        """Every variant the sweep runs, over all `tasks:` entries."""
        out = dict.fromkeys(self.config.variants)
        for spec in self.config.tasks.values():
            out.update(dict.fromkeys(spec.variants or ()))
        return tuple(out)

    def la_args_for(self, lang: str) -> TrainArgs:
        """The LA arguments of one language: `la_args` with its `per_language` eval_every."""
        o = self.per_language.get(lang)
        return replace(self.la_args, eval_every=o.eval_every) if o and o.eval_every else self.la_args

    def heldout_fraction(self, lang: str) -> float:
        o = self.per_language.get(lang)
        return o.heldout_fraction if o and o.heldout_fraction else self.config.language_adapters.heldout_fraction

    def resources(self, kind: str) -> Resources:
        return self.config.execution.resources.get(kind, Resources())


def read_yaml(path: str | os.PathLike, seen: tuple[str, ...] = ()) -> dict:
    """A sweep file's data, with `extends: other.yaml` (relative to this file) resolved: the base is
    read first and this file's keys are merged over it (mappings merge, everything else replaces)."""
    file = str(path)
    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(file, "", "sweep file not found") from None
    except yaml.YAMLError as e:
        raise ConfigError(file, "", f"not valid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise ConfigError(file, "", "a sweep file is a mapping of keys (name, model, variants, tasks, ...)")
    base = raw.pop("extends", None)
    if base is None:
        return raw
    base_path = (Path(path).parent / str(base)).resolve()
    if str(base_path) in seen:
        raise ConfigError(file, "extends", f"{base} extends itself in a loop")
    if not base_path.is_file():
        raise ConfigError(file, "extends", f"{base_path} does not exist")
    return deep_merge(read_yaml(base_path, (*seen, str(base_path))), raw)


def deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


@functools.cache
def catalog() -> dict[str, DatasetEntry]:
    """Every tlr_ray/catalog/<task>.yaml, merged; a dataset name may appear in one file only."""
    entries: dict[str, DatasetEntry] = {}
    for path in sorted((Path(__file__).parent / "catalog").glob("*.yaml")):
        where = f"tlr_ray/catalog/{path.name}"
        for name, value in (yaml.safe_load(path.read_text()) or {}).items():
            if name in entries:
                raise ConfigError(where, name, "dataset defined twice in the catalog")
            entries[name] = build(DatasetEntry, value, where, name)
    return entries


def merge_entry(base: DatasetEntry, override: DatasetEntry) -> DatasetEntry:
    """A sweep's `datasets:` entry over the catalog's: set keys win; `local` replaces `hub` and back."""
    changes = {f.name: getattr(override, f.name) for f in fields(DatasetEntry)
               if getattr(override, f.name) not in (None, {})}
    if "local" in changes and "hub" not in changes:
        changes["hub"] = None
    if "hub" in changes and "local" not in changes:
        changes["local"] = None
    return replace(base, **changes)


def train_args(defaults: dict[str, Any], overrides: dict[str, Any], file: str, key: str) -> TrainArgs:
    return build(TrainArgs, {**defaults, **overrides}, file, key)


def suggest(word: str, choices) -> str:
    return nearest(word, choices)
