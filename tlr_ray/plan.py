"""Expand a sweep into a DAG of jobs. Pure functions: no Ray, no torch.

Jobs: `corpus` (tokenise one language's text into memory-mapped blocks, once for every LA, BA and MA
that reads it), `la` (train a language adapter), `ba` (a BAD-X bilingual or multilingual adapter), `ta`
(train a task adapter over a cycle of LAs/BAs), `eval` (one TA with its inference adapter on one
language of one evaluation dataset). A job's id is a hash of its `spec`, everything that determines
its output (model, data fingerprints, hyperparameters, seed, the ids of its inputs), so identical work
is planned once, shared by every variant and seed that needs it, and recognised again in later sweeps.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field

from tlr_ray.config import Sweep
from tlr_ray.fingerprint import digest, path_fingerprint, source_fingerprint
from tlr_ray.sampling import ba_schedule, ma_schedule, normal_ratio
from tlr_ray.specs import CorpusSpec, EvalSpec, Inputs, MLMSpec, PretrainedSpec, Spec, TASpec, canonical
from tlr_ray.tasks import DataSource
from tlr_ray.variants import LA, VARIANTS, Adapter, Context

# Also the stage order: each kind only needs jobs of earlier kinds (corpus jobs need nothing).
KINDS = ("corpus", "la", "ba", "ta", "eval")


@dataclass(frozen=True)
class Job:
    id: str
    kind: str
    task: str | None
    dataset: str | None        # ta: its training dataset; eval: the evaluation dataset
    variant: str | None        # the first variant that planned this job
    variants: tuple[str, ...]  # every variant that shares it (identical work planned once)
    seed: int | None
    ratio: str | None
    languages: tuple[str, ...]  # corpus, la: its language; ta: the LA cycle in order; eval: the LA at inference
    target: str | None
    needs: tuple[str, ...]
    spec: Spec = field(compare=False, repr=False)      # hashed into the id (tlr_ray/specs.py)
    inputs: Inputs = field(compare=False, repr=False)  # where inputs live at run time; not hashed

    def record(self) -> dict:
        """Spec and inputs as manifests and MLflow keep them (plain dicts)."""
        return {"spec": canonical(self.spec), "inputs": self.inputs.record()}

    def contract(self) -> dict:
        """The `--dry-run --json` record (docs/plan-json.md)."""
        return {"id": self.id, "kind": self.kind, "task": self.task, "dataset": self.dataset,
                "variant": self.variant, "variants": list(self.variants), "seed": self.seed,
                "ratio": self.ratio, "languages": list(self.languages), "target": self.target,
                "needs": list(self.needs)}


@dataclass(frozen=True)
class Plan:
    sweep: str
    jobs: tuple[Job, ...]  # topologically ordered: la, then ta, then eval

    def of_kind(self, kind: str) -> list[Job]:
        return [j for j in self.jobs if j.kind == kind]

    def to_json(self) -> str:
        return json.dumps({"sweep": self.sweep, "jobs": [j.contract() for j in self.jobs]}, indent=1)


class _Builder:
    def __init__(self, sweep: Sweep):
        self.sweep = sweep
        self.jobs: dict[str, dict] = {}
        self.model_fp = model_fingerprint(sweep.model, sweep.config.model_revision)
        self.model_inputs = {"model": sweep.model, "model_revision": sweep.config.model_revision}
        # A paper grid asks for the same adapter ~9,000 times (once per TA and evaluation that stacks it):
        # its id is hashed once, then looked up (the repeated `add` changed nothing anyway).
        self._adapter_ids: dict[tuple[Adapter, int], str] = {}
        self._corpus_ids: dict[tuple[str, int], str] = {}

    def add(self, kind: str, spec: Spec, inputs: Inputs, **meta) -> str:
        job_id = job_id_of(kind, spec)
        variant = meta.pop("variant", None)
        if job_id not in self.jobs:
            self.jobs[job_id] = dict(id=job_id, kind=kind, spec=spec, inputs=inputs, variant=variant,
                                     variants=[variant] if variant else [], **meta)
        elif variant and variant not in self.jobs[job_id]["variants"]:
            self.jobs[job_id]["variants"].append(variant)
        return job_id

    def adapter(self, ref: Adapter, ta_seed: int) -> str:
        """The job producing adapter `ref` (an LA, or a BA/MA trained on several corpora)."""
        la = self.sweep.config.language_adapters
        seed = ta_seed if la.seed_per_ta_seed else la.seed
        if (ref, seed) not in self._adapter_ids:
            self._adapter_ids[ref, seed] = self._new_adapter(ref, seed)
        return self._adapter_ids[ref, seed]

    def _new_adapter(self, ref: Adapter, seed: int) -> str:
        s, la = self.sweep, self.sweep.config.language_adapters
        if ref.kind == "la" and ref.languages[0] in s.pretrained:
            where = s.pretrained[ref.languages[0]]
            fp = path_fingerprint(where) if where.startswith("/") else f"hub:{where}"
            return self.add("la", PretrainedSpec(model=self.model_fp, language=ref.languages[0], pretrained=fp),
                            Inputs(**self.model_inputs, pretrained=where), task=None, dataset=None, seed=None,
                            ratio=None, languages=ref.languages, target=None, needs=())
        if ref.kind == "la":
            args, rf, schedule, select = s.la_args_for(ref.languages[0]), la.reduction_factor, [0], [0]
        else:  # BA (two corpora at a ratio) or MA (the source alternating with each target)
            args, rf = s.ba_args, s.config.bilingual_adapters.reduction_factor
            schedule = ba_schedule(ref.ratio) if len(ref.languages) == 2 else ma_schedule(len(ref.languages) - 1)
            select = list(range(1, len(ref.languages)))  # the lowest *target* perplexity wins
        corpora = [self.corpus(lang, args.max_seq_length) for lang in ref.languages]
        # Trained on all layers: the MAD-X 2.0 leave-out is applied where the LA is loaded under a TA.
        spec = MLMSpec(model=self.model_fp, languages=tuple(ref.languages), corpora=tuple(corpora),
                       schedule=tuple(schedule), select_on=tuple(select), args=args, reduction_factor=rf,
                       invertible=ref.invertible, seed=seed)
        return self.add(ref.kind, spec, Inputs(**self.model_inputs), task=None,
                        dataset=None, seed=seed, ratio=ref.ratio if ref.kind == "ba" else None,
                        languages=ref.languages, target=None, needs=tuple(corpora))

    def corpus(self, lang: str, block_size: int) -> str:
        """The `corpus` job preparing `lang`'s text (a local file, else its Wikipedia) in blocks of
        `block_size` tokens of the sweep's tokenizer; one job however many LAs, BAs and MAs read it."""
        if (lang, block_size) not in self._corpus_ids:
            self._corpus_ids[lang, block_size] = self._new_corpus(lang, block_size)
        return self._corpus_ids[lang, block_size]

    def _new_corpus(self, lang: str, block_size: int) -> str:
        la = self.sweep.config.language_adapters
        path = self.sweep.corpora.get(lang)
        if path:
            where, fp = {"path": path}, path_fingerprint(path)
        else:
            from tlr_ray.languages import LANGUAGES
            wiki = f"{la.wikipedia_dump}.{LANGUAGES[lang].wiki}"
            where, fp = {"wikipedia": wiki}, f"hub:wikimedia/wikipedia:{wiki}"
        spec = CorpusSpec(model=self.model_fp, language=lang, corpus=fp, block_size=block_size,
                          heldout_fraction=self.sweep.heldout_fraction(lang), heldout_split=la.heldout_split,
                          heldout_seed=la.heldout_seed, max_lines=la.max_corpus_lines)
        return self.add("corpus", spec, Inputs(**self.model_inputs, corpus=where), task=None, dataset=None,
                        seed=None, ratio=None, languages=(lang,), target=None, needs=())

    def ta(self, entry: str, variant: str, seed: int, ratio: str | None, cycle: tuple[Adapter, ...]) -> str:
        s, ta = self.sweep, self.sweep.config.task_adapters
        spec_, task = s.config.tasks[entry], s.config.tasks[entry].name(entry)
        train = s.datasets[spec_.train]
        cycle_ids = [self.adapter(a, seed) for a in cycle]
        val = None
        if ta.validation_adapter_per_variant.get(variant, ta.validation_adapter) == "source" and cycle:
            # Validate on source data with the source LA; a BA/MA covers the source itself.
            las = [a for a in cycle if a.kind == "la"]
            val = self.adapter(LA(s.config.source_language, las[0].invertible), seed) if las else cycle_ids[0]
        spec = TASpec(model=self.model_fp, task=task, task_options=spec_.options,
                      train_data=_data_fp(train.source), args=s.task_args[entry],
                      reduction_factor=ta.reduction_factor, leave_out_last_layer=s.config.leave_out_last_layer,
                      cycle=tuple(cycle_ids), cycle_index=ta.cycle_index, validation_adapter=val, seed=seed)
        needs = tuple(dict.fromkeys([*cycle_ids, *([val] if val else [])]))
        inputs = Inputs(**self.model_inputs, train=train.source, entry=entry,
                        train_code=train.code_for(s.config.source_language))  # for multi-language files
        return self.add("ta", spec, inputs, task=task,
                        dataset=train.name, variant=variant, seed=seed, ratio=ratio,
                        languages=tuple(lang for a in cycle for lang in a.languages), target=None, needs=needs)

    def eval(self, entry: str, variant: str, seed: int, ratio: str | None, ta_id: str, dataset, target: str,
             adapter: Adapter | None) -> str:
        adapter_id = self.adapter(adapter, seed) if adapter else None
        spec_, args = self.sweep.config.tasks[entry], self.sweep.task_args[entry]
        task = spec_.name(entry)
        spec = EvalSpec(ta=ta_id, adapter=adapter_id, task=task, task_options=spec_.options,
                        data=_data_fp(dataset.source), code=dataset.code_for(target), split=dataset.eval_split,
                        batch_size=args.eval_batch_size, max_seq_length=args.max_seq_length)
        return self.add("eval", spec, Inputs(**self.model_inputs, data=dataset.source), task=task,
                        dataset=dataset.name, variant=variant, seed=seed, ratio=ratio,
                        languages=adapter.languages if adapter else (), target=target,
                        needs=(ta_id, *([adapter_id] if adapter_id else [])))


def model_fingerprint(model: str, revision: str | None) -> str:
    """A resolved model (absolute folder or Hub id) as it enters job ids."""
    return path_fingerprint(model) if model.startswith("/") else f"hub:{model}@{revision}"


def job_id_of(kind: str, spec: Spec) -> str:
    """A job's id: its kind and the hash of its spec's canonical dict."""
    return f"{kind}-{digest({'kind': kind, **canonical(spec)})[:16]}"


def _data_fp(src: DataSource) -> str:
    return source_fingerprint(src.hub_id, src.revision, src.config, src.data_dir, src.local_path)


def plan_sweep(sweep: Sweep) -> Plan:
    b = _Builder(sweep)
    cfg = sweep.config
    src = sweep.config.source_language
    all_targets = tuple(dict.fromkeys(t for d in sweep.datasets.values() if d.role == "eval"
                                      for t in d.targets))
    for entry, spec in cfg.tasks.items():
        evals = [sweep.datasets[name] for name in spec.eval]
        for variant in spec.variants or cfg.variants:
            rule = VARIANTS[variant]
            ratios = [normal_ratio(r) for r in cfg.bilingual_adapters.ratios] if rule.uses_ratios else [None]
            for seed in spec.seeds or cfg.seeds:
                for d in evals:
                    for t in d.targets:
                        for ratio in ratios:
                            c = Context(src, t, d.targets, all_targets, ratio)
                            cycle = tuple(dict.fromkeys(rule.cycle(c)))
                            ta_id = b.ta(entry, variant, seed, ratio, cycle)
                            b.eval(entry, variant, seed, ratio, ta_id, d, t, rule.inference(c))
    jobs = [Job(**{**j, "variants": tuple(j["variants"])}) for j in b.jobs.values()]
    jobs.sort(key=lambda j: (KINDS.index(j.kind), j.kind not in ("corpus", "la") or j.languages[0] != src))
    return Plan(cfg.name, tuple(jobs))


def describe(plan: Plan, file: str = "") -> str:
    """The human-readable `--dry-run`: counts first, then one line per job."""
    counts = Counter(j.kind for j in plan.jobs)
    lines = [f"Sweep {plan.sweep}{f' ({file})' if file else ''}: {len(plan.jobs)} jobs"]
    for kind in (k for k in KINDS if counts.get(k)):
        extra = ""
        if kind in ("corpus", "la"):
            extra = f"  ({', '.join(j.languages[0] for j in plan.of_kind(kind))})"
        if kind == "ba":
            extra = f"  ({', '.join('+'.join(j.languages) + f' {j.ratio}' for j in plan.of_kind('ba'))})"
        lines.append(f"  {kind:<7}{counts.get(kind, 0):>5}{extra}")
    users = Counter(n for j in plan.jobs if j.kind == "ta" for n in j.needs)
    adapters = plan.of_kind("la") + plan.of_kind("ba")
    shared = sum(1 for j in adapters if users[j.id] > 1)
    lines.append(f"Adapters (LA/BA) shared by several TAs: {shared} of {len(adapters)}; "
                 f"{len(plan.of_kind('ta'))} TAs stack on them {sum(users[j.id] for j in adapters)} times")
    per_task = Counter((j.task, j.kind) for j in plan.jobs if j.task)
    if per_task:
        lines.append("By task: " + "; ".join(f"{t} ta {per_task[(t, 'ta')]}, eval {per_task[(t, 'eval')]}"
                                              for t in dict.fromkeys(t for t, _ in per_task)))
    per_variant = Counter((v, j.kind) for j in plan.jobs for v in j.variants)
    if per_variant:
        lines.append("By variant (a shared job counts for each variant using it):")
        for v in dict.fromkeys(v for v, _ in per_variant):
            lines.append(f"  {v:<16} ta {per_variant[(v, 'ta')]:>4}   eval {per_variant[(v, 'eval')]:>4}")
    lines.append("Jobs:")
    for j in plan.jobs:
        shared = f"  (also {', '.join(j.variants[1:])})" if len(j.variants) > 1 else ""
        lines.append(f"  {j.id}  {_what(j)}{shared}" + (f"  needs {', '.join(j.needs)}" if j.needs else ""))
    return "\n".join(lines)


def _what(j: Job) -> str:
    """One job in words, for --dry-run; each kind reads only its own fields (a TA-ONLY TA has no language)."""
    ratio = f" ratio={j.ratio}" if j.ratio else ""
    return _DESCRIBE[j.kind](j, ratio)


_DESCRIBE = {
    "corpus": lambda j, ratio: f"corpus {j.languages[0]} (blocks of {j.spec.block_size})",
    "la": lambda j, ratio: f"LA {j.languages[0]}",
    "ba": lambda j, ratio: f"BA {'+'.join(j.languages)} ratio={j.ratio}",
    "ta": lambda j, ratio: f"{j.task} {j.variant}{ratio} seed={j.seed} cycle=[{', '.join(j.languages)}]",
    "eval": lambda j, ratio: f"{j.task} {j.dataset} {j.variant}{ratio} seed={j.seed} target={j.target}",
}
