"""The variants of METHOD.md as data: which LAs a TA cycles through in training, and how many TAs.

`cycle` builds the ordered LA cycle (canonical codes) from the source language, the target, the
dataset's targets T(d) and the sweep-wide union ALL. How many TAs a variant trains is not written down
anywhere: the planner asks for one cycle per (dataset, target) and jobs with equal content share one id,
so MAD-X ends up with one TA per task, TASK-MULTI one per dataset, TARGET one per target language.
At inference every variant here uses LA(target) (BAD-X, which uses its BA, arrives with the BA jobs).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Variant:
    name: str
    # (source, target or None, targets of the dataset, all targets of the sweep) -> cycle
    cycle: Callable[[str, str | None, tuple[str, ...], tuple[str, ...]], tuple[str, ...]]
    # A leave-out variant whose left-in target set is empty degenerates to MAD-X: refuse it.
    needs_targets_in_cycle: bool = False


def _minus(langs: tuple[str, ...], drop: set[str]) -> tuple[str, ...]:
    return tuple(x for x in langs if x not in drop)


VARIANTS: dict[str, Variant] = {v.name: v for v in [
    Variant("MAD-X", lambda s, t, td, all_: (s,)),
    Variant("TARGET", lambda s, t, td, all_: (t,)),
    Variant("BILINGUAL", lambda s, t, td, all_: (s, t)),
    Variant("TASK-MULTI", lambda s, t, td, all_: (s, *td)),
    Variant("ALL-MULTI", lambda s, t, td, all_: (s, *all_)),
    Variant("LEAVE-OUT-TASK", lambda s, t, td, all_: (s, *_minus(all_, set(td))), True),
    Variant("LEAVE-OUT-TARG", lambda s, t, td, all_: (s, *_minus(all_, {t})), True),
]}
