"""NLI pairs of the demo world, labelled by their meaning.

The premise is an affirmative event stating 1-3 of the 4 optional facts (adj, place, day, hour); the world
holds one such event, so:
- entailment: the hypothesis states the same event with some of the premise's facts left out (a subset);
- contradiction: the hypothesis negates the event, or gives one stated fact a different value;
- neutral: the hypothesis adds a fact the premise does not state (it may or may not hold).
Labels are balanced exactly (they cycle 0, 1, 2 before a seeded shuffle). A pair holds `Event`s, not text,
so one item renders into every language with the same label: the target test sets are parallel.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, replace

from tlr_ray.demo.language import FACTS, Event, fact_values, random_event

LABELS = ("entailment", "neutral", "contradiction")   # ids 0, 1, 2 as in MultiNLI / XNLI / AmericasNLI


@dataclass(frozen=True)
class Pair:
    premise: Event
    hypothesis: Event
    label: int


def _subset(rng: random.Random, facts: tuple[str, ...], proper: bool) -> tuple[str, ...]:
    """A random subset of `facts`; with `proper`, at least one of them is left out."""
    while True:
        kept = tuple(f for f in facts if rng.random() < 0.5)
        if not proper or len(kept) < len(facts):
            return kept


def make_pair(rng: random.Random, label: int) -> Pair:
    chosen = rng.sample(FACTS, rng.choice((1, 2, 3)))   # >= 1 fact unstated, so neutral is always possible
    premise = random_event(rng, facts=tuple(f for f in FACTS if f in chosen))
    stated = premise.stated()
    if label == 0:                                  # entailment: leave some stated facts out
        hypothesis = premise.keeping(_subset(rng, stated, proper=True))
    elif label == 2 and rng.random() < 0.5:         # contradiction by negation
        hypothesis = replace(premise.keeping(_subset(rng, stated, proper=False)), negated=True)
    elif label == 2:                                # contradiction by changing one stated fact
        changed = rng.choice(stated)
        others = _subset(rng, tuple(f for f in stated if f != changed), proper=False)
        value = rng.choice([v for v in fact_values(changed) if v != getattr(premise, changed)])
        hypothesis = replace(premise.keeping((changed, *others)), **{changed: value})
    else:                                           # neutral: add one fact the premise does not state
        added = rng.choice([f for f in FACTS if f not in stated])
        hypothesis = premise.keeping(_subset(rng, stated, proper=False))
        hypothesis = replace(hypothesis, **{added: rng.choice(fact_values(added))})
    return Pair(premise, hypothesis, label)


def make_pairs(n: int, seed: str) -> list[Pair]:
    rng = random.Random(seed)
    labels = [i % 3 for i in range(n)]
    rng.shuffle(labels)
    return [make_pair(rng, label) for label in labels]
