"""One table of task facts (tlr_ray/tasks/registry.py): config, the task modules, tracking and analysis
(which keeps its own copy, since it never imports tlr_ray) all agree with it."""
from __future__ import annotations

import pytest

from analysis.predictions import supported
from analysis.table import PRIMARY_METRIC
from tlr_ray.config import TASK_DEFAULTS, TrainArgs
from tlr_ray.tasks import get_task, implemented_tasks
from tlr_ray.tasks.registry import TASKS
from tlr_ray.tracking import primary_metric


def test_every_task_in_the_table_has_a_module_and_every_module_a_row():
    assert implemented_tasks() == tuple(sorted(TASKS))


@pytest.mark.parametrize("name", sorted(TASKS))
def test_a_task_module_selects_by_the_tables_metric(name):
    facts = TASKS[name]
    assert get_task(name).metric == facts.metric
    assert facts.metrics[0] == facts.metric and facts.mode in ("max", "min")


@pytest.mark.parametrize("name", sorted(TASKS))
def test_config_defaults_come_from_the_table_and_build_train_args(name):
    assert TASK_DEFAULTS[name] is TASKS[name].defaults
    args = TrainArgs(**TASK_DEFAULTS[name])
    assert args.batch_size > 0 and args.lr > 0


def test_analysis_headline_metric_is_the_tables():
    assert PRIMARY_METRIC == {name: facts.metric for name, facts in TASKS.items()}


@pytest.mark.parametrize("name", sorted(TASKS))
def test_analysis_can_score_every_metric_an_evaluation_reports(name):
    # significance tests need per-example scores of each reported metric
    assert all(supported(name, metric) for metric in TASKS[name].metrics), TASKS[name].metrics


@pytest.mark.parametrize("name", sorted(TASKS))
def test_tracking_names_the_tables_metric_of_an_eval(name):
    metrics = {m: 50.0 for m in TASKS[name].metrics} | {"examples": 10}
    assert primary_metric(name, metrics) == TASKS[name].metric
