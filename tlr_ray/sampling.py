"""Which corpus a batch comes from, step by step: BAD-X alternates data the way TLR alternates adapters,
and `item_at` is both: the corpus of a BA's step s, and the LA of a TLR TA's step s (tlr_ray/train/ta.py).

A schedule is a list of corpus indices repeated forever; index 0 is the source language.
  - LA:  [0]
  - BA at ratio N:M (source:target): N source batches, then M target batches: "2:1" -> [0, 0, 1]
  - MA (multilingual adapter): the source alternates with each target in turn -> [0, 1, 0, 2, 0, 3]
Pure Python: the planner uses it too.
"""
from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import TypeVar

T = TypeVar("T")

RATIO = re.compile(r"^\s*(\d+)\s*:\s*(\d+)\s*$")


def parse_ratio(ratio: str) -> tuple[int, int]:
    """'2:1' -> (2, 1); raises ValueError for anything that is not two positive whole numbers."""
    m = RATIO.match(str(ratio))
    if not m or int(m[1]) < 1 or int(m[2]) < 1:
        raise ValueError(f"impossible ratio {ratio!r}: write source:target batches as two positive whole "
                         "numbers, e.g. '1:1' (balanced), '2:1' or '1:5'")
    return int(m[1]), int(m[2])


def normal_ratio(ratio: str) -> str:
    n, m = parse_ratio(ratio)
    return f"{n}:{m}"


def ba_schedule(ratio: str) -> list[int]:
    n, m = parse_ratio(ratio)
    return [0] * n + [1] * m


def ma_schedule(targets: int) -> list[int]:
    return [i for t in range(1, targets + 1) for i in (0, t)]


def item_at(items: Sequence[T], step: int, restart_every: int | None = None) -> T:
    """The item of a sequence repeated forever at training step `step`: items[s % len(items)], s counted
    from the start of training, or from the start of each epoch when `restart_every` (its steps per epoch)
    is given (the reference's per-epoch LA index, `cycle_index: epoch_step`)."""
    s = step if restart_every is None else step % restart_every
    return items[s % len(items)]


def interleave(iterators: Sequence[Iterator], schedule: Sequence[int]) -> Iterator:
    """Step s draws from iterators[item_at(schedule, s)]."""
    step = 0
    while True:
        yield next(iterators[item_at(schedule, step)])
        step += 1
