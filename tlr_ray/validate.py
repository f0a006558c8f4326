"""Meaning checks of a sweep, after its shape was checked: names, languages, files, cycles.

Everything here runs before Ray starts, so a typo costs seconds, not GPU hours.
"""
from __future__ import annotations

import json
import math
import re
import sys
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, Iterator

from tlr_ray import languages
from tlr_ray.config import (BA_DEFAULTS, LA_DEFAULTS, TASK_DEFAULTS, Dataset, DatasetEntry, Sweep,
                            SweepConfig, catalog, merge_entry, suggest, train_args)
from tlr_ray.tasks import DataSource, implemented_tasks
from tlr_ray.typed_yaml import ConfigError, out_of_domain
from tlr_ray.sampling import normal_ratio
from tlr_ray.storage import check as storage_problem
from tlr_ray.variants import VARIANTS, Context

DEMO_PREFIX = "demo://"
JOB_KINDS = ("corpus", "la", "ba", "ta", "eval")


# ---- Domains: the values every knob allows, checked before planning (a table, not an if-chain) ----

@dataclass(frozen=True)
class Domain:
    allowed: str                 # what the error says the value must be, e.g. "a positive integer"
    ok: Callable[[Any], bool]
    fix: str                     # how to fix it, e.g. "a number of steps, e.g. 1000"


def _int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _real(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def count(fix: str) -> Domain:
    return Domain("a positive integer", lambda v: _int(v) and v >= 1, fix)


def positive(fix: str) -> Domain:
    return Domain("a positive finite number", lambda v: _real(v) and v > 0, fix)


def non_negative(fix: str) -> Domain:
    return Domain("a finite number >= 0", lambda v: _real(v) and v >= 0, fix)


def fraction(fix: str) -> Domain:
    return Domain("a fraction strictly between 0 and 1", lambda v: _real(v) and 0 < v < 1, fix)


MAX_SEED = 2**31 - 1   # numpy's seeds stop at 2**32 - 1, and jobs add small offsets to theirs
SEED = Domain(f"an integer from 0 to {MAX_SEED}", lambda v: _int(v) and 0 <= v <= MAX_SEED, "give a seed such as 1")
REDUCTION = count("a reduction factor (the model's hidden size / the adapter's bottleneck size), "
                  "e.g. 16 for a TA, 2 for an LA")

# Every field of TrainArgs (tasks.<entry>.train_args, language_adapters.train_args,
# bilingual_adapters.train_args, and what a search samples); None (left out) is always allowed.
TRAIN_ARG_DOMAINS: dict[str, Domain] = {
    "batch_size": count("examples per training step, e.g. 32"),
    "lr": positive("a learning rate, e.g. 2e-5"),
    "max_steps": count("a number of training steps, e.g. 1000, or leave it out to train by epochs"),
    "epochs": positive("passes over the training data, e.g. 5 (fractions such as 0.5 are fine)"),
    "min_steps": count("a number of steps, e.g. 30000, or leave it out"),
    "steps_cap": count("a number of steps, e.g. 100000, or leave it out"),
    "eval_every": count("steps between evaluations, e.g. 500"),
    "max_seq_length": count("tokens per example, e.g. 128"),
    "warmup_ratio": Domain("a fraction from 0 (included) to 1 (excluded)", lambda v: _real(v) and 0 <= v < 1,
                           "the share of steps spent warming up, e.g. 0.1, or 0 for no warmup"),
    "weight_decay": non_negative("e.g. 0.01, or 0 for none"),
    "patience": count("evaluations without improvement before stopping, e.g. 4, or leave it out to never "
                      "stop early"),
    "eval_batch_size": count("examples per evaluation batch, e.g. 64"),
    "max_eval_examples": count("e.g. 1000, or leave it out to evaluate on every validation example"),
}
# Every field of Resources (execution.resources.<kind>) that is a number.
RESOURCE_DOMAINS: dict[str, Domain] = {
    "num_workers": count("Ray Train workers per job, e.g. 1"),
    "cpus_per_worker": positive("CPUs per worker, e.g. 1 (fractions such as 0.5 are fine)"),
    "gpus_per_worker": non_negative("GPUs per worker, e.g. 1, 0.25 to share a GPU among 4 jobs, or 0 "
                                    "(with use_gpu: one GPU)"),
}
# The other knobs, by key path: `*` is every key of a mapping, `[*]` every item of a list.
KNOBS: tuple[tuple[str, Domain], ...] = (
    ("seeds[*]", SEED),
    ("tasks.*.seeds[*]", SEED),
    ("language_adapters.seed", SEED),
    ("language_adapters.heldout_seed", SEED),
    ("search.seed", SEED),
    ("language_adapters.heldout_fraction", fraction("the share of each corpus held out, e.g. 0.05")),
    ("language_adapters.per_language.*.heldout_fraction", fraction("e.g. 0.01 for a high-resource language")),
    ("language_adapters.per_language.*.eval_every", count("steps between this LA's evaluations, e.g. 5000")),
    ("language_adapters.max_corpus_lines", count("lines read from each corpus, e.g. 100000, or leave it out "
                                                 "to read every line")),
    ("language_adapters.reduction_factor", REDUCTION),
    ("bilingual_adapters.reduction_factor", REDUCTION),
    ("task_adapters.reduction_factor", REDUCTION),
    ("search.num_samples", count("the number of search trials, e.g. 8")),
    ("execution.max_concurrent_trials", count("trials of one job kind at once, e.g. 4, or leave it out to fit "
                                              "the cluster")),
    ("execution.checkpoint_every", count("a number of steps; give a positive integer, or leave it out to "
                                         "checkpoint at each evaluation")),
    ("execution.max_failures", Domain("an integer >= -1", lambda v: _int(v) and v >= -1,
                                      "give 0 (no retry), a positive number of retries, or -1 (retry without "
                                      "limit)")),
    *((f"execution.resources.*.{name}", domain) for name, domain in RESOURCE_DOMAINS.items()),
    ("execution.resources.*.custom.*", non_negative("an amount of the custom Ray resource per worker, e.g. 1")),
)


def _values(obj: Any, path: str, key: str = "") -> Iterator[tuple[str, Any]]:
    """(key, value) for every value at `path` in `obj` (dataclasses, mappings, lists); None is left out."""
    if obj is None:
        return
    if not path:
        yield key, obj
        return
    head, _, rest = path.partition(".")
    name, every_item = head.removesuffix("[*]"), head.endswith("[*]")
    if name == "*":
        found = [(f"{key}.{k}", v) for k, v in obj.items()]
    else:
        found = [(f"{key}.{name}" if key else name, obj.get(name) if isinstance(obj, dict) else getattr(obj, name))]
    for k, v in found:
        if every_item:
            for i, item in enumerate(v or ()):
                yield from _values(item, rest, f"{k}[{i}]")
        else:
            yield from _values(v, rest, k)


def _check(value: Any, domain: Domain, file: str, key: str) -> None:
    if not domain.ok(value):
        raise out_of_domain(file, key, value, domain.allowed, domain.fix)


def _check_knobs(cfg: SweepConfig, file: str) -> None:
    for path, domain in KNOBS:
        for key, value in _values(cfg, path):
            _check(value, domain, file, key)


def resolve_path(path: str) -> Path:
    """A user path, or demo://rest inside the offline demo world (built on first use)."""
    if path.startswith(DEMO_PREFIX):
        from tlr_ray.demo.world import ensure_demo_world
        return ensure_demo_world() / path[len(DEMO_PREFIX):]
    return Path(path).expanduser().resolve()


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
    _check_knobs(cfg, file)
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
        _check_args(task_args[entry], file, f"{key}.train_args")
    la = cfg.language_adapters
    la_args = train_args(LA_DEFAULTS, la.train_args, file, "language_adapters.train_args")
    _check_args(la_args, file, "language_adapters.train_args")
    per_language = {}
    for code, o in la.per_language.items():  # their values: _check_knobs
        per_language[_language(code, file, f"language_adapters.per_language.{code}")] = o
    for variant in cfg.task_adapters.validation_adapter_per_variant:
        if variant not in VARIANTS:
            raise ConfigError(file, f"task_adapters.validation_adapter_per_variant.{variant}",
                              f"unknown variant {variant!r}.{suggest(variant, VARIANTS)} Known variants: "
                              f"{', '.join(VARIANTS)}.")

    ba = cfg.bilingual_adapters
    ba_args = train_args(BA_DEFAULTS, ba.train_args, file, "bilingual_adapters.train_args")
    _check_args(ba_args, file, "bilingual_adapters.train_args")
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
        args_by_key = {**{f"tasks.{k}.train_args": a for k, a in task_args.items()},
                       "language_adapters.train_args": la_args}
        if {"BAD-X", "MA"} & _all_variants(cfg):  # BAs' defaults matter only where BAs are trained
            args_by_key["bilingual_adapters.train_args"] = ba_args
        _check_model_fit(cfg, _model_config(model_path), model_path, args_by_key, file)
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
                _check(int(v) if is_int and bounds and _real(v) else v, domain, file, f"{key}.{kind}[{i}]")
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


def _text_problem(path: Path, head: int = 1 << 16) -> str | None:
    """A cheap look at a corpus file before anything starts: empty, or not UTF-8 at its start. The corpus
    job checks every byte while it prepares the file (before any GPU job starts)."""
    with open(path, "rb") as f:
        data = f.read(head)
    if not data.strip():
        return "is empty: give one sentence or document per line"
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        if e.start < len(data) - 4:  # not just a character cut at the end of what we read
            line = data[:e.start].count(b"\n") + 1
            return (f"is not UTF-8 text: line {line} has the byte {data[e.start:e.start + 1]!r}; convert it, e.g. "
                    "with `iconv -f LATIN1 -t UTF-8`")
    return None


def _check_args(args, file: str, key: str) -> None:
    for f in fields(args):
        value, domain = getattr(args, f.name), TRAIN_ARG_DOMAINS.get(f.name)
        if value is not None and domain is not None:
            _check(value, domain, file, f"{key}.{f.name}")
    if args.max_steps is None and args.epochs is None:
        raise ConfigError(file, key, "give max_steps or epochs")


def _model_config(model_path: Path) -> dict:
    """A local model's config.json ({} when unreadable: the model's own loading reports that)."""
    try:
        conf = json.loads((model_path / "config.json").read_text())
    except (OSError, ValueError):
        return {}
    return conf if isinstance(conf, dict) else {}


# Models whose position ids start after the padding index, so that max_position_embeddings - pad - 1
# positions are usable (XLM-R: 514 embeddings, 512 tokens).
OFFSET_POSITIONS = ("roberta", "xlm-roberta", "xlm-roberta-xl", "camembert")


def _check_model_fit(cfg: SweepConfig, conf: dict, model_path: Path, args_by_key: dict, file: str) -> None:
    """What only the model's config decides, for a local model: reduction factors that its hidden size
    allows, and sequences that fit its position embeddings. (A Hub model: positivity only, in KNOBS.)"""
    hidden = conf.get("hidden_size", conf.get("d_model", conf.get("dim")))
    la = cfg.language_adapters
    if _int(hidden) and hidden > 0:
        factors = (("language_adapters.reduction_factor", la.reduction_factor, la.invertible),
                   ("bilingual_adapters.reduction_factor", cfg.bilingual_adapters.reduction_factor, False),
                   ("task_adapters.reduction_factor", cfg.task_adapters.reduction_factor, False))
        for key, rf, invertible in factors:
            # The bottleneck is hidden / rf; an invertible adapter works on half the hidden size.
            fits = [d for d in range(1, hidden + 1) if hidden % d == 0 and (not invertible or d <= hidden // 2)]
            if rf not in fits:
                allowed = f"a divisor of the model's hidden size {hidden}" + (
                    f" of at most {hidden // 2} (invertible LAs work on half of it)" if invertible else "")
                raise out_of_domain(file, key, rf, allowed, f"one of {', '.join(map(str, fits))} "
                                    f"({model_path / 'config.json'})")
    positions = conf.get("max_position_embeddings")
    if _int(positions) and positions > 0:
        if conf.get("model_type") in OFFSET_POSITIONS and _int(conf.get("pad_token_id")):
            positions -= conf["pad_token_id"] + 1
        for key, args in args_by_key.items():
            if args.max_seq_length > positions:
                raise out_of_domain(file, f"{key}.max_seq_length", args.max_seq_length,
                                    f"at most {positions}, the model's position embeddings "
                                    f"(max_position_embeddings in {model_path / 'config.json'})",
                                    f"give max_seq_length {positions} or less, e.g. {min(positions, 128)}")


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
