"""Every task's facts in one table: the training defaults of METHOD.md, the metric that selects a
checkpoint and heads the tables, which way it is better, and the other metrics its evaluation reports.

Torch-free (config and planning read it). The task modules take their `metric` from here; `analysis/`,
which never imports tlr_ray, keeps its own `PRIMARY_METRIC` and scorers, and tests/test_task_registry.py
pins them to this table. Adding a task: docs/adding-a-task.md.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class TaskFacts:
    defaults: dict[str, Any]                   # train_args a sweep overrides per task entry (config.TrainArgs)
    metric: str                                # selects the best checkpoint; the tables' headline metric
    mode: Literal["max", "min"] = "max"        # which way `metric` is better, as Ray Tune names it
    metrics: tuple[str, ...] = field(default=())  # everything an evaluation reports (percentages), metric first


# METHOD.md, TLR paper Table 1. POS (BAD-X paper): UPOS tagging on the same UD data as DP; not in
# Table 1, so DP's settings.
TASKS: dict[str, TaskFacts] = {
    "ner": TaskFacts(dict(batch_size=8, epochs=10, lr=5e-5, eval_every=250, max_seq_length=256),
                     "f1", metrics=("f1", "precision", "recall")),
    "dp": TaskFacts(dict(batch_size=8, epochs=10, lr=5e-5, eval_every=250, max_seq_length=256),
                    "las", metrics=("las", "uas")),
    "nli": TaskFacts(dict(batch_size=32, epochs=5, lr=2e-5, eval_every=625, max_seq_length=128),
                     "accuracy", metrics=("accuracy",)),
    "qa": TaskFacts(dict(batch_size=16, epochs=15, lr=1e-4, eval_every=625, max_seq_length=384, patience=4),
                    "f1", metrics=("f1", "exact_match")),
    "pos": TaskFacts(dict(batch_size=8, epochs=10, lr=5e-5, eval_every=250, max_seq_length=256),
                     "accuracy", metrics=("accuracy",)),
}
