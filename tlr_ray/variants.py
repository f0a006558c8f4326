"""The variants of METHOD.md as data: the adapters a TA is trained on (its cycle) and the adapter it is
evaluated with on a target language.

An adapter is referred to by what it is, not by a job: `LA(lang)`, `BA(source, target, ratio)` (BAD-X),
`MA(source, targets)` (the BAD-X paper's multilingual adapter). The planner turns each reference into a
job, and jobs with equal content share one id, so how many TAs a variant trains is not written down
anywhere: MAD-X ends up with one TA per task, TASK-MULTI one per dataset, TARGET one per target language,
BAD-X one per target and ratio.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Adapter:
    kind: str                      # "la" or "ba" (a BA or an MA: MLM over several corpora)
    languages: tuple[str, ...]     # la: (lang,); ba: (source, target); ma: (source, *targets)
    ratio: str | None = None       # ba: source:target batches, e.g. "2:1"; ma: "1:1"
    invertible: bool = True        # la only: MAD-X's invertible adapters (off for -INV, BAs, MAs)


def LA(lang: str, invertible: bool = True) -> Adapter:
    return Adapter("la", (lang,), None, invertible)


def BA(source: str, target: str, ratio: str) -> Adapter:
    return Adapter("ba", (source, target), ratio, False)


def MA(source: str, targets: tuple[str, ...]) -> Adapter:
    return Adapter("ba", (source, *targets), "1:1", False)


@dataclass(frozen=True)
class Context:
    source: str
    target: str
    dataset_targets: tuple[str, ...]   # T(d)
    all_targets: tuple[str, ...]       # ALL: the union of T(d) over the sweep's evaluation datasets
    ratio: str | None                  # BAD-X's ratio for this TA (None for other variants)


@dataclass(frozen=True)
class Variant:
    name: str
    cycle: Callable[[Context], tuple[Adapter, ...]]
    inference: Callable[[Context], Adapter | None]
    uses_ratios: bool = False          # one TA per BAD-X ratio of the sweep
    # A leave-out variant whose left-in target set is empty degenerates to MAD-X: refuse it.
    needs_targets_in_cycle: bool = False


def _minus(langs: tuple[str, ...], drop: set[str]) -> tuple[str, ...]:
    return tuple(x for x in langs if x not in drop)


def _las(*langs: str) -> tuple[Adapter, ...]:
    return tuple(LA(x) for x in langs)


_target_la = lambda c: LA(c.target)  # noqa: E731  (every TLR variant evaluates with LA(target))

VARIANTS: dict[str, Variant] = {v.name: v for v in [
    Variant("MAD-X", lambda c: _las(c.source), _target_la),
    Variant("TARGET", lambda c: _las(c.target), _target_la),
    Variant("BILINGUAL", lambda c: _las(c.source, c.target), _target_la),
    Variant("TASK-MULTI", lambda c: _las(c.source, *c.dataset_targets), _target_la),
    Variant("ALL-MULTI", lambda c: _las(c.source, *c.all_targets), _target_la),
    Variant("LEAVE-OUT-TASK", lambda c: _las(c.source, *_minus(c.all_targets, set(c.dataset_targets))),
            _target_la, needs_targets_in_cycle=True),
    Variant("LEAVE-OUT-TARG", lambda c: _las(c.source, *_minus(c.all_targets, {c.target})), _target_la,
            needs_targets_in_cycle=True),
    # BAD-X: the TA is trained on the bilingual adapter it is evaluated with.
    Variant("BAD-X", lambda c: (BA(c.source, c.target, c.ratio),), lambda c: BA(c.source, c.target, c.ratio),
            uses_ratios=True),
    Variant("MA", lambda c: (MA(c.source, c.dataset_targets),), lambda c: MA(c.source, c.dataset_targets)),
    # MAD-X ablations: LAs without invertible adapters (-INV), and no LA at all.
    Variant("MAD-X-NOINV", lambda c: (LA(c.source, False),), lambda c: LA(c.target, False)),
    Variant("TA-ONLY", lambda c: (), lambda c: None),
]}
