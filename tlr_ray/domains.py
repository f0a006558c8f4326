"""Which values each sweep knob accepts, as data: a domain per TrainArgs and Resources field and per
key path (KNOBS), checked before planning, and what only the model's config.json decides (reduction
factors its hidden size allows, sequences its position embeddings fit): at plan time for a local model or
a Hub model in the local cache (tlr_ray/validate.py), else when each job starts (`check_job_fits`).
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from tlr_ray.config import SweepConfig
from tlr_ray.typed_yaml import ConfigError, out_of_domain

# ---- Domains: the values every knob allows, checked before planning (a table, not an if-chain) ----

@dataclass(frozen=True)
class Domain:
    allowed: str                 # what the error says the value must be, e.g. "a positive integer"
    ok: Callable[[Any], bool]
    fix: str                     # how to fix it, e.g. "a number of steps, e.g. 1000"


def is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_real(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def count(fix: str) -> Domain:
    return Domain("a positive integer", lambda v: is_int(v) and v >= 1, fix)


def positive(fix: str) -> Domain:
    return Domain("a positive finite number", lambda v: is_real(v) and v > 0, fix)


def non_negative(fix: str) -> Domain:
    return Domain("a finite number >= 0", lambda v: is_real(v) and v >= 0, fix)


def fraction(fix: str) -> Domain:
    return Domain("a fraction strictly between 0 and 1", lambda v: is_real(v) and 0 < v < 1, fix)


MAX_SEED = 2**31 - 1   # numpy's seeds stop at 2**32 - 1, and jobs add small offsets to theirs
SEED = Domain(f"an integer from 0 to {MAX_SEED}", lambda v: is_int(v) and 0 <= v <= MAX_SEED, "give a seed such as 1")
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
    "warmup_ratio": Domain("a fraction from 0 (included) to 1 (excluded)", lambda v: is_real(v) and 0 <= v < 1,
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
    ("execution.max_failures", Domain("an integer >= -1", lambda v: is_int(v) and v >= -1,
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


def check_value(value: Any, domain: Domain, file: str, key: str) -> None:
    if not domain.ok(value):
        raise out_of_domain(file, key, value, domain.allowed, domain.fix)


def check_knobs(cfg: SweepConfig, file: str) -> None:
    for path, domain in KNOBS:
        for key, value in _values(cfg, path):
            check_value(value, domain, file, key)


def check_args(args, file: str, key: str) -> None:
    for f in fields(args):
        value, domain = getattr(args, f.name), TRAIN_ARG_DOMAINS.get(f.name)
        if value is not None and domain is not None:
            check_value(value, domain, file, f"{key}.{f.name}")
    if args.max_steps is None and args.epochs is None:
        raise ConfigError(file, key, "give max_steps or epochs")


def model_config(config_file: Path) -> dict:
    """A model's config.json ({} when unreadable: the model's own loading reports that)."""
    try:
        conf = json.loads(config_file.read_text())
    except (OSError, ValueError):
        return {}
    return conf if isinstance(conf, dict) else {}


def hub_cached_config(model: str, revision: str | None) -> Path | None:
    """A Hub model's config.json where the local Hugging Face cache holds it (no download: the plan is
    made offline too), else None."""
    from huggingface_hub import try_to_load_from_cache  # only for Hub ids: --dry-run of a local model skips it
    try:
        found = try_to_load_from_cache(model, "config.json", revision=revision)
    except ValueError:  # not a valid repo id: the model's own loading reports that
        return None
    return Path(found) if isinstance(found, str) else None


# Models whose position ids start after the padding index, so that max_position_embeddings - pad - 1
# positions are usable (XLM-R: 514 embeddings, 512 tokens).
OFFSET_POSITIONS = ("roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "xmod", "data2vec-text",
                    "roberta-prelayernorm", "longformer", "mpnet", "luke", "ibert")


def usable_positions(conf: dict) -> int | None:
    """How many tokens fit the model's position embeddings (None: its config does not say)."""
    positions = conf.get("max_position_embeddings")
    if not (is_int(positions) and positions > 0):
        return None
    if conf.get("model_type") in OFFSET_POSITIONS and is_int(conf.get("pad_token_id")):
        positions -= conf["pad_token_id"] + 1
    return positions


def fit_problems(conf: dict, factors, lengths, config_file: str) -> Iterator[tuple[str, Any, str, str]]:
    """(key, value, allowed, fix) of each knob that a model's config rules out: reduction factors
    (`factors`: (key, factor, invertible)) that its hidden size does not allow, sequence lengths
    (`lengths`: (key, max_seq_length)) beyond its position embeddings. `config_file` names the config."""
    hidden = conf.get("hidden_size", conf.get("d_model", conf.get("dim")))
    if is_int(hidden) and hidden > 0:
        for key, rf, invertible in factors:
            # The bottleneck is hidden / rf; an invertible adapter works on half the hidden size.
            fits = [d for d in range(1, hidden + 1) if hidden % d == 0 and (not invertible or d <= hidden // 2)]
            if rf not in fits:
                allowed = f"a divisor of the model's hidden size {hidden}" + (
                    f" of at most {hidden // 2} (invertible LAs work on half of it)" if invertible else "")
                yield key, rf, allowed, f"one of {', '.join(map(str, fits))} ({config_file})"
    positions = usable_positions(conf)
    if positions is not None:
        for key, length in lengths:
            if length > positions:
                yield (key, length, f"at most {positions}, the model's position embeddings "
                       f"(max_position_embeddings in {config_file})",
                       f"give max_seq_length {positions} or less, e.g. {min(positions, 128)}")


def check_model_fit(cfg: SweepConfig, conf: dict, config_file: Path, args_by_key: dict, file: str) -> None:
    """What only the model's config decides, at plan time (a local model, or a Hub model whose config.json
    is in the local Hugging Face cache): reduction factors that its hidden size allows, and sequences that
    fit its position embeddings. Otherwise each job checks the same when it starts (`check_job_fits`)."""
    la = cfg.language_adapters
    factors = (("language_adapters.reduction_factor", la.reduction_factor, la.invertible),
               ("bilingual_adapters.reduction_factor", cfg.bilingual_adapters.reduction_factor, False),
               ("task_adapters.reduction_factor", cfg.task_adapters.reduction_factor, False))
    lengths = [(f"{key}.max_seq_length", args.max_seq_length) for key, args in args_by_key.items()]
    for key, value, allowed, fix in fit_problems(conf, factors, lengths, str(config_file)):
        raise out_of_domain(file, key, value, allowed, fix)


class ModelFitError(ValueError):
    """A job's knob that its model does not allow, found when the job starts (a Hub model not in the local
    cache at plan time), before any training step."""


CONFIG_FACTS = ("hidden_size", "d_model", "dim", "max_position_embeddings", "model_type", "pad_token_id")


def check_job_fits(config: Any, model: str, factors=(), lengths=()) -> None:
    """`check_model_fit` for one job, on the config of the model it has just loaded (`model.config`; what
    `fit_problems` reads of it, `model_type` being a class attribute of transformers' configs)."""
    conf = {k: v for k in CONFIG_FACTS if (v := getattr(config, k, None)) is not None}
    for key, value, allowed, fix in fit_problems(conf, factors, lengths, f"the config of {model}"):
        raise ModelFitError(f"{key}: {value} is not allowed for the model {model}: must be {allowed}. Fix it in "
                            f"the sweep file: {fix}. (Checked when the job starts; a local model, or a Hub model "
                            "whose config.json is in the local Hugging Face cache, is checked before any job.)")
