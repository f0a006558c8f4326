"""Meaning checks of a sweep, after its shape was checked: names, languages, files, cycles.

Everything here runs before Ray starts, so a typo costs seconds, not GPU hours.
"""
from __future__ import annotations

import functools
import os
import re
import sys
import typing
from pathlib import Path
from typing import Any

from tlr_ray import languages
from tlr_ray.config import (
    BA_DEFAULTS,
    LA_DEFAULTS,
    TASK_DEFAULTS,
    Dataset,
    DatasetEntry,
    Sweep,
    SweepConfig,
    catalog,
    merge_entry,
    read_yaml,
    suggest,
    train_args,
)
from tlr_ray.domains import (
    TRAIN_ARG_DOMAINS,
    check_args,
    check_knobs,
    check_model_fit,
    check_value,
    hub_cached_config,
    is_real,
    model_config,
)
from tlr_ray.sampling import normal_ratio
from tlr_ray.storage import check as storage_problem
from tlr_ray.tasks import DataSource, implemented_tasks
from tlr_ray.typed_yaml import ConfigError, build
from tlr_ray.variants import VARIANTS, Context

DEMO_PREFIX = "demo://"
JOB_KINDS = ("corpus", "la", "ba", "ta", "eval")


def resolve_path(path: str) -> Path:
    """A user path, or demo://rest inside the offline demo world (built on first use)."""
    if path.startswith(DEMO_PREFIX):
        from tlr_ray.demo.world import ensure_demo_world
        return ensure_demo_world() / path[len(DEMO_PREFIX):]
    return Path(path).expanduser().resolve()


def load_sweep(path: str | os.PathLike, overrides: dict[str, Any] | None = None) -> Sweep:
    """Read and check a sweep file: its shape (tlr_ray/config.py's dataclasses), then its meaning (below).
    `overrides` are merged over the YAML's top level (tests, CLI)."""
    file = str(path)
    raw = {**read_yaml(path), **(overrides or {})}
    return check_sweep(build(SweepConfig, raw, file), file)


def check_sweep(cfg: SweepConfig, file: str) -> Sweep:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", cfg.name):
        raise ConfigError(file, "name", f"{cfg.name!r} must be letters, digits, '_', '.' or '-' "
                          "(it names the MLflow experiment and the storage folder)")
    src = _language(cfg.source_language, file, "source_language")
    lists = [("variants", cfg.variants)] + [(f"tasks.{k}.variants", t.variants) for k, t in cfg.tasks.items()
                                            if t.variants is not None]
    for key, variants in lists:
        for i, v in enumerate(variants):
            if v not in VARIANTS:
                raise ConfigError(file, f"{key}[{i}]", f"unknown variant {v!r}.{suggest(v, VARIANTS)} "
                                  f"Known variants: {', '.join(VARIANTS)}.")
    if not cfg.variants and not all(t.variants for t in cfg.tasks.values()):
        raise ConfigError(file, "variants", "no variant given; e.g. [MAD-X, BILINGUAL]")
    if not cfg.seeds:
        raise ConfigError(file, "seeds", "no seed given; e.g. [1]")
    if problem := storage_problem(cfg.execution.storage):
        raise ConfigError(file, "execution.storage", problem)
    for kind in cfg.execution.resources:
        if kind not in JOB_KINDS:
            raise ConfigError(file, f"execution.resources.{kind}", f"unknown job kind {kind!r}."
                              f"{suggest(kind, JOB_KINDS)} Job kinds: {', '.join(JOB_KINDS)}.")
    ex = cfg.execution
    if "corpus" in ex.resources and ex.resources["corpus"].use_gpu:
        raise ConfigError(file, "execution.resources.corpus.use_gpu", "corpus preparation runs on CPUs only; "
                          "remove use_gpu and set cpus_per_worker (its tokenizer processes), e.g. 8")
    check_knobs(cfg, file)
    if not cfg.tasks:
        raise ConfigError(file, "tasks", "no task given; e.g. tasks: {nli: {train: multinli, eval: [xnli]}}")

    datasets: dict[str, Dataset] = {}
    task_args = {}
    for entry, spec in cfg.tasks.items():
        key, task = f"tasks.{entry}", spec.name(entry)
        if task not in TASK_DEFAULTS:
            raise ConfigError(file, key, f"unknown task {task!r}.{suggest(task, TASK_DEFAULTS)} "
                              f"Tasks: {', '.join(TASK_DEFAULTS)}.")
        if task not in implemented_tasks():
            raise ConfigError(file, key, f"task {task!r} is not implemented yet (implemented: "
                              f"{', '.join(implemented_tasks())})")
        datasets[spec.train] = train = _dataset(cfg, spec.train, task, "train", file, f"{key}.train")
        if src not in train.targets:
            raise ConfigError(file, f"{key}.train", f"dataset {spec.train!r} has no {src} data (its languages: "
                              f"{', '.join(train.codes)}), but TAs train on source_language {src}: train on a "
                              f"dataset with {src}, or set source_language to one of {', '.join(train.targets)}")
        if not spec.eval:
            raise ConfigError(file, f"{key}.eval", "no evaluation dataset given")
        for i, name in enumerate(spec.eval):
            datasets[name] = _dataset(cfg, name, task, "eval", file, f"{key}.eval[{i}]")
        task_args[entry] = train_args(TASK_DEFAULTS[task], spec.train_args, file, f"{key}.train_args")
        check_args(task_args[entry], file, f"{key}.train_args")
    la = cfg.language_adapters
    la_args = train_args(LA_DEFAULTS, la.train_args, file, "language_adapters.train_args")
    check_args(la_args, file, "language_adapters.train_args")
    per_language = {}
    for code, o in la.per_language.items():  # their values: check_knobs
        per_language[_language(code, file, f"language_adapters.per_language.{code}")] = o
    for variant in cfg.task_adapters.validation_adapter_per_variant:
        if variant not in VARIANTS:
            raise ConfigError(file, f"task_adapters.validation_adapter_per_variant.{variant}",
                              f"unknown variant {variant!r}.{suggest(variant, VARIANTS)} Known variants: "
                              f"{', '.join(VARIANTS)}.")

    ba = cfg.bilingual_adapters
    ba_args = train_args(BA_DEFAULTS, ba.train_args, file, "bilingual_adapters.train_args")
    check_args(ba_args, file, "bilingual_adapters.train_args")
    for i, r in enumerate(ba.ratios):
        try:
            normal_ratio(r)
        except ValueError as e:
            raise ConfigError(file, f"bilingual_adapters.ratios[{i}]", str(e)) from None
    if "BAD-X" in _all_variants(cfg) and not ba.ratios:
        raise ConfigError(file, "bilingual_adapters.ratios", "BAD-X needs at least one ratio, e.g. ['1:1']")

    if cfg.search:
        _check_search(cfg, file)
    all_targets = _all_targets(datasets)
    _check_cycles(cfg, datasets, src, all_targets, file)
    pretrained = _pretrained(cfg, file)
    corpora, problems = _corpora(cfg, src, all_targets, pretrained, file)
    model = cfg.model
    if model.startswith(DEMO_PREFIX) or model.startswith((".", "/", "~")) or Path(model).exists():
        model_path = resolve_path(model)
        if not (model_path / "config.json").is_file():
            raise ConfigError(file, "model", f"{model_path} is not a model folder (no config.json); give "
                              "a Hub id such as bert-base-multilingual-cased or a folder from save_pretrained")
        model = str(model_path)
        config_file: Path | None = model_path / "config.json"
    else:  # a Hub id: its config.json where the Hugging Face cache has it, else each job checks at start
        config_file = hub_cached_config(model, cfg.model_revision)
    if config_file is not None:
        args_by_key = {**{f"tasks.{k}.train_args": a for k, a in task_args.items()},
                       "language_adapters.train_args": la_args}
        if {"BAD-X", "MA"} & _all_variants(cfg):  # BAs' defaults matter only where BAs are trained
            args_by_key["bilingual_adapters.train_args"] = ba_args
        check_model_fit(cfg, model_config(config_file), config_file, args_by_key, file)
    _warn_final_evaluation_only(cfg, task_args, la_args, ba_args, file)
    return Sweep(file=file, config=cfg, model=model, datasets=datasets, task_args=task_args,
                 la_args=la_args, ba_args=ba_args, corpora=corpora, pretrained=pretrained,
                 per_language=per_language, problems=tuple(problems))


def _language(code: str, file: str, key: str) -> str:
    try:
        return languages.canonical(code)
    except languages.UnknownLanguage as e:
        raise ConfigError(file, key, str(e)) from None


def _dataset(cfg: SweepConfig, name: str, task: str, role: str, file: str, key: str) -> Dataset:
    known = catalog()
    if name in known and name in cfg.datasets:
        entry = merge_entry(known[name], cfg.datasets[name])
    elif name in known:
        entry = known[name]
    elif name in cfg.datasets:
        entry = cfg.datasets[name]
    else:
        raise ConfigError(file, key, f"unknown dataset {name!r}.{suggest(name, [*known, *cfg.datasets])} "
                          "Define it under `datasets:` (task, role, languages, hub or local) or use one of: "
                          f"{', '.join(known)}.")
    where = f"datasets.{name}" if name in cfg.datasets else f"{key} ({name} in tlr_ray/catalog/)"
    if entry.task != task:
        raise ConfigError(file, key, f"dataset {name!r} is a {entry.task!r} dataset, not {task!r}")
    if entry.role != role:
        raise ConfigError(file, key, f"dataset {name!r} is for {entry.role}ing, not {role}ing")
    if not entry.languages:
        raise ConfigError(file, where, f"dataset {name!r} lists no languages")
    seen: dict[str, str] = {}
    for i, code in enumerate(entry.languages):
        lang = _language(code, file, f"{where}.languages[{i}]")
        if lang in seen:
            raise ConfigError(file, f"{where}.languages[{i}]", f"{code!r} is {lang}, which {seen[lang]!r} already "
                              f"is: list each language of dataset {name!r} once")
        seen[lang] = code
    return Dataset(name, task, role, tuple(entry.languages), _source(name, entry, file, where),
                   entry.eval_split or "test", entry.sizes)


def _source(name: str, entry: DatasetEntry, file: str, where: str) -> DataSource:
    if entry.local is not None:
        path = resolve_path(entry.local.path)
        if not path.exists():
            raise ConfigError(file, f"{where}.local.path", f"{path} does not exist: dataset {name!r} "
                              f"needs its {entry.local.format} files there (see DATASETS.md for the layout)")
        if problem := _dataset_file_problem(path):
            raise ConfigError(file, f"{where}.local.path", f"dataset {name!r}: {problem}")
        return DataSource(name, local_path=str(path), local_format=entry.local.format, splits=entry.splits)
    if entry.hub is not None:
        h = entry.hub
        return DataSource(name, hub_id=h.id, revision=h.revision, config=h.config, data_dir=h.data_dir,
                          splits=entry.splits)
    raise ConfigError(file, where, f"dataset {name!r} has neither `hub:` nor `local:`; give one")


def _all_targets(datasets: dict[str, Dataset]) -> tuple[str, ...]:
    """ALL of METHOD.md: the union of the sweep's evaluation targets, in first-seen order."""
    seen: dict[str, None] = {}
    for d in datasets.values():
        if d.role == "eval":
            seen.update(dict.fromkeys(d.targets))
    return tuple(seen)


def _check_search(cfg: SweepConfig, file: str) -> None:
    from dataclasses import fields as dc_fields

    from tlr_ray.config import TrainArgs
    search = cfg.search
    if search.task not in cfg.tasks:
        raise ConfigError(file, "search.task", f"{search.task!r} is not an entry of `tasks:`."
                          f"{suggest(search.task, cfg.tasks)}")
    variants = cfg.tasks[search.task].variants or cfg.variants
    if search.variant not in variants:
        raise ConfigError(file, "search.variant", f"{search.variant!r} is not run for {search.task!r} "
                          f"(its variants: {', '.join(variants)})")
    names = [f.name for f in dc_fields(TrainArgs)]
    hints = typing.get_type_hints(TrainArgs)
    for name, dist in search.params.items():
        key = f"search.params.{name}"
        if name not in names:
            raise ConfigError(file, key, f"not a training argument.{suggest(name, names)} Searchable: "
                              f"{', '.join(names)}")
        given = [k for k in ("loguniform", "uniform", "choice") if getattr(dist, k) is not None]
        if len(given) != 1:
            raise ConfigError(file, key, "give exactly one of loguniform: [low, high], uniform: [low, high], "
                              "choice: [a, b, ...]")
        bounds = dist.loguniform or dist.uniform
        if bounds and (len(bounds) != 2 or not 0 < bounds[0] < bounds[1] if dist.loguniform
                       else len(bounds) != 2 or not bounds[0] < bounds[1]):
            raise ConfigError(file, key, f"{list(bounds)} is not a range [low, high] with low < high"
                              + (" and low > 0" if dist.loguniform else ""))
        # What a trial may sample must be in the argument's domain too: each choice, and a range's ends
        # (as the argument's type: an integer argument gets int() of a sampled number).
        domain, kind = TRAIN_ARG_DOMAINS.get(name), given[0]
        is_int = int in typing.get_args(hints[name]) or hints[name] is int
        for i, v in enumerate(dist.choice if dist.choice is not None else bounds):
            if domain is not None:
                check_value(int(v) if is_int and bounds and is_real(v) else v, domain, file, f"{key}.{kind}[{i}]")
    if not search.params:
        raise ConfigError(file, "search.params", "nothing to search; e.g. {lr: {loguniform: [1e-4, 1e-2]}}")


def _all_variants(cfg: SweepConfig) -> set[str]:
    return set(cfg.variants).union(*(t.variants or () for t in cfg.tasks.values()))


def _check_cycles(cfg: SweepConfig, datasets: dict[str, Dataset], src: str, all_targets, file: str) -> None:
    for spec in cfg.tasks.values():
        for v in spec.variants or cfg.variants:
            if not VARIANTS[v].needs_targets_in_cycle:
                continue
            rule = VARIANTS[v]
            for d in (datasets[name] for name in spec.eval):
                for t in d.targets:
                    if len(rule.cycle(Context(src, t, d.targets, all_targets, None))) <= 1:
                        raise ConfigError(file, "variants", f"{v} for dataset {d.name!r} (target {t}) leaves "
                                          "no target language in the LA cycle, so it would be MAD-X. Add another "
                                          "evaluation dataset with other languages, or drop the variant.")


def _pretrained(cfg: SweepConfig, file: str) -> dict[str, str]:
    """language -> adapter: a local folder (must exist) or a Hub id (checked when the job runs)."""
    out = {}
    for code, where in cfg.language_adapters.pretrained.items():
        key = f"language_adapters.pretrained.{code}"
        lang = _language(code, file, key)
        local = where.startswith((".", "/", "~", DEMO_PREFIX)) or Path(where).exists()
        if local:
            path = resolve_path(where)
            if not (path / "adapter_config.json").is_file():
                raise ConfigError(file, key, f"{path} is not a saved adapter (no adapter_config.json); give "
                                  "a folder written by model.save_adapter or a Hub id")
            where = str(path)
        out[lang] = where
    return out


def _corpora(cfg: SweepConfig, src: str, all_targets, pretrained: dict, file: str):
    """(language -> corpus file, problems). A corpus file that does not exist yet is a problem, not an
    error: `--dry-run` still shows the plan (and the problem), a run refuses to start."""
    corpora, missing_files = {}, []
    for code, path in cfg.language_adapters.corpora.items():
        key = f"language_adapters.corpora.{code}"
        lang = _language(code, file, key)
        resolved = resolve_path(path)
        if not resolved.is_file():
            missing_files.append(lang)
        elif problem := _text_problem(resolved):
            raise ConfigError(file, key, f"{resolved} (language {lang}) {problem}")
        corpora[lang] = str(resolved)
    # A pretrained LA needs no text, unless a BA/MA variant trains on that language's text.
    needs_text = {"BAD-X", "MA"} & _all_variants(cfg)
    missing = [t for t in (src, *all_targets) if t not in corpora and languages.LANGUAGES[t].wiki is None
               and (t not in pretrained or needs_text)]
    if missing:
        raise ConfigError(file, "language_adapters.corpora", "no Wikipedia exists for "
                          f"{', '.join(missing)}: give a local text file for each under "
                          "language_adapters.corpora (e.g. the AmericasNLP 2021 training data)")
    problems = [f"{file}: language_adapters.corpora: no file yet for {', '.join(missing_files)} "
                f"({', '.join(corpora[x] for x in missing_files)}); give a text file for each, one sentence "
                "or document per line"] if missing_files else []
    return corpora, problems


def _text_problem(path: Path, head: int | None = 1 << 16) -> str | None:
    """Empty, or not UTF-8 (at its start; all of it with `head=None`), said with the line to fix. A corpus
    file gets the cheap look here: the corpus job checks every byte while it prepares the file, before
    any GPU job starts. Task files are read whole: they are small, and a TA job would meet them on a GPU."""
    import codecs
    decoder, lines, text_seen = codecs.getincrementaldecoder("utf-8")(), 1, False
    with open(path, "rb") as f:
        while chunk := f.read(head or 1 << 20):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as e:
                if head is None or e.start < len(chunk) - 4:  # else: a character cut where we stopped reading
                    line = lines + chunk[:e.start].count(b"\n")
                    return (f"is not UTF-8 text: line {line} has the byte {chunk[e.start:e.start + 1]!r}; convert "
                            "it, e.g. with `iconv -f LATIN1 -t UTF-8`")
            text_seen = text_seen or bool(chunk.strip())
            lines += chunk.count(b"\n")
            if head is not None:
                break
    if head is None:
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return f"is not UTF-8 text: it ends inside a character (line {lines}); is the file cut short?"
    return None if text_seen else "is empty: give one sentence or document per line"


# Files of a local dataset that are not text (read by their own libraries, which say what is wrong).
BINARY_SUFFIXES = {".parquet", ".arrow", ".gz", ".bz2", ".xz", ".zip", ".zst", ".tar", ".pkl", ".npy"}


@functools.cache  # once per process: a dataset is named by several tasks and roles
def _dataset_file_problem(path: Path) -> str | None:
    """The first text file of a local dataset (the file, or a folder's files) that is empty or not UTF-8."""
    def shown(p: Path) -> bool:  # hidden files (.DS_Store, .git/) are not data
        return p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
    files = [path] if path.is_file() else sorted(filter(shown, path.rglob("*")))
    for f in files:
        if f.suffix.lower() in BINARY_SUFFIXES:
            continue
        if problem := _text_problem(f, head=None):
            return f"{f} {problem.replace('give one sentence or document per line', 'remove it or fill it')}"
    return None


def _warn_final_evaluation_only(cfg: SweepConfig, task_args: dict, la_args, ba_args, file: str) -> None:
    """An evaluation interval longer than the run is not an error (a quick test run does it), but the
    checkpoint is then the last step's, not the best evaluation's: say so on stderr."""
    runs = [*((f"tasks.{k}.train_args", a.eval_every, a.max_steps) for k, a in task_args.items()),
            ("language_adapters.train_args", la_args.eval_every, la_args.max_steps),
            ("bilingual_adapters.train_args", ba_args.eval_every, ba_args.max_steps)]
    runs += [(f"language_adapters.per_language.{code}", o.eval_every, la_args.max_steps)
             for code, o in cfg.language_adapters.per_language.items() if o.eval_every is not None]
    if not {"BAD-X", "MA"} & _all_variants(cfg):
        runs = [r for r in runs if not r[0].startswith("bilingual_adapters")]
    for key, every, steps in runs:
        if steps is not None and every > steps:
            print(f"warning: {file}: {key}.eval_every: {every} is more than max_steps {steps}, so only the final "
                  f"evaluation (at step {steps}) happens and the adapter is the last step's, not the best of "
                  f"several evaluations; set eval_every to {steps} or less to evaluate during training",
                  file=sys.stderr)
