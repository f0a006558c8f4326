"""Knobs that only the model's config can judge (reduction factors its hidden size allows, sequences its
position embeddings fit). A local model is checked at plan time (tests/test_bad_values.py); so is a Hub
model whose config.json is in the local Hugging Face cache (there: one row of that table). A Hub model
that is not is checked by each job right after it loads the model, before any training step: here, on
planned demo jobs whose spec is changed after planning, as a Hub model unchecked at plan time would be."""
from __future__ import annotations

import pytest
from helpers import changed

from tlr_ray import artifacts, runner
from tlr_ray.domains import ModelFitError
from tlr_ray.plan import plan_sweep
from tlr_ray.train.context import JobContext
from tlr_ray.validate import load_sweep


@pytest.fixture(scope="module")
def plan(demo_world):
    return plan_sweep(load_sweep("sweeps/demo.yaml", {"variants": ["TA-ONLY", "MAD-X"]}))


def no_training(monkeypatch):
    """Fail the test if a training loop starts: the check must come before any step."""
    import tlr_ray.train.mlm_adapter as mlm
    import tlr_ray.train.ta as ta

    def started(*a, **k):
        raise AssertionError("a training loop started")
    monkeypatch.setattr(ta, "run_loop", started)
    monkeypatch.setattr(mlm, "run_loop", started)


def test_a_ta_whose_reduction_factor_the_model_does_not_allow_fails_at_start_and_publishes_nothing(
        plan, tmp_path, monkeypatch):
    no_training(monkeypatch)
    ta = next(j for j in plan.of_kind("ta") if j.spec.cycle == ())  # TA-ONLY: needs no adapter
    with pytest.raises(ModelFitError) as e:
        runner.run_job(changed(ta, reduction_factor=3), str(tmp_path), JobContext())
    msg = str(e.value)
    assert msg.startswith("task_adapters.reduction_factor: 3 is not allowed for the model")
    assert "a divisor of the model's hidden size 128" in msg and "one of 1, 2, 4, 8, 16, 32, 64, 128" in msg
    assert artifacts.verify(str(tmp_path), ta.id) is None
    assert not list((tmp_path / "staging").iterdir())


def test_a_ta_sequence_longer_than_the_positions_fails_at_start(plan, tmp_path, monkeypatch):
    no_training(monkeypatch)
    ta = next(j for j in plan.of_kind("ta") if j.spec.cycle == ())
    with pytest.raises(ModelFitError, match=r"tasks\.nli\.train_args\.max_seq_length: 1024 is not allowed .* "
                                            r"at most 256, the model's position embeddings"):
        runner.run_job(changed(ta, args={"max_seq_length": 1024}), str(tmp_path), JobContext())


@pytest.mark.parametrize("change, expected", [
    ({"reduction_factor": 128}, "language_adapters.reduction_factor: 128 is not allowed for the model"),
    ({"args": {"max_seq_length": 512}}, "language_adapters.train_args.max_seq_length: 512 is not allowed"),
])
def test_an_la_that_does_not_fit_the_model_fails_before_reading_its_corpus(plan, tmp_path, monkeypatch, change,
                                                                          expected):
    from tlr_ray.train.mlm_adapter import train_mlm_adapter
    no_training(monkeypatch)
    la = plan.of_kind("la")[0]
    with pytest.raises(ModelFitError) as e:  # ctx has no corpus: the check comes first
        train_mlm_adapter(changed(la, **change), tmp_path, JobContext())
    assert str(e.value).startswith(expected), e.value
    if "reduction_factor" in change:
        assert "of at most 64 (invertible LAs work on half of it)" in str(e.value)


def test_jobs_that_fit_pass_the_check(plan, tmp_path):
    """No false alarm: the demo's own TA (rf 16, 128 tokens) gets past the check into training."""
    from tlr_ray.domains import check_job_fits
    from tlr_ray.train.models import task_model
    ta = next(j for j in plan.of_kind("ta") if j.spec.cycle == ())
    config = task_model(ta.inputs.model).config
    check_job_fits(config, ta.inputs.model, factors=[("task_adapters.reduction_factor", ta.spec.reduction_factor,
                                                    False)],
                   lengths=[("tasks.nli.train_args.max_seq_length", ta.spec.args.max_seq_length)])
