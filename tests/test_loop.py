"""The shared training loop: best-checkpoint selection keeps the best evaluation, not the last."""
from __future__ import annotations

import torch

from tlr_ray.config import TrainArgs
from tlr_ray.train.context import JobContext
from tlr_ray.train.loop import endless, run_loop, total_steps


class Toy(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(3))
        self.frozen = torch.nn.Parameter(torch.ones(3), requires_grad=False)

    def forward(self, x):
        return type("Out", (), {"loss": ((self.w - x) ** 2).sum() + 0 * self.frozen.sum()})()


def batches():
    while True:
        yield {"x": torch.tensor([1.0, 2.0, 3.0])}


def test_best_not_last_and_state_is_the_best_one():
    model = Toy()
    scores = iter([50.0, 90.0, 70.0, 60.0])
    seen = {}

    def evaluate():
        s = next(scores)
        seen[s] = model.w.detach().clone()  # the parameters this score was measured with
        return {"accuracy": s}

    args = TrainArgs(batch_size=1, lr=0.1, max_steps=8, eval_every=2)
    result = run_loop(model, batches(), lambda step: None, evaluate, args=args, total_steps=8,
                      score_key="accuracy", ctx=JobContext())
    assert [h["step"] for h in result.history] == [2, 4, 6, 8]
    assert result.best_step == 4 and result.best_score == 90.0
    assert torch.equal(result.best_state["w"], seen[90.0])
    assert not torch.equal(model.w.detach(), seen[90.0])  # the last step is different
    assert "frozen" not in result.best_state  # only trainable parameters are kept


def test_lower_is_better_and_patience_stops_early():
    model = Toy()
    scores = iter([10.0, 8.0, 9.0, 9.5, 7.0])
    args = TrainArgs(batch_size=1, lr=0.1, max_steps=10, eval_every=2, patience=2)
    result = run_loop(model, batches(), lambda step: None, lambda: {"perplexity": next(scores)}, args=args,
                      total_steps=10, score_key="perplexity", mode="min",
                      ctx=JobContext())
    assert result.best_step == 4 and result.best_score == 8.0
    assert result.stopped_early and result.steps == 8  # two evaluations without gain after step 4


def test_activate_called_every_step_in_order():
    calls = []
    args = TrainArgs(batch_size=1, lr=0.1, max_steps=5, eval_every=100)
    run_loop(Toy(), batches(), calls.append, lambda: {"s": 0.0}, args=args, total_steps=5, score_key="s",
             ctx=JobContext())
    assert calls == [0, 1, 2, 3, 4]


def test_total_steps_and_endless_reshuffles():
    assert total_steps(TrainArgs(batch_size=1, lr=1, epochs=2.5), 10) == 25
    assert total_steps(TrainArgs(batch_size=1, lr=1, epochs=2.5, max_steps=7), 10) == 7
    loader = torch.utils.data.DataLoader(list(range(6)), batch_size=6, shuffle=True,
                                         generator=torch.Generator().manual_seed(0))
    it = endless(loader, seed=3)
    first, second = next(it).tolist(), next(it).tolist()
    assert sorted(first) == sorted(second) == list(range(6)) and first != second
    it2 = endless(loader, seed=3)
    assert next(it2).tolist() == first  # seeded: reproducible


def test_resuming_from_a_checkpoint_gives_the_uninterrupted_result():
    """Kill-and-resume, in process: a run continued from its step-4 checkpoint ends where an uninterrupted
    run ends, although its batches draw on the global random state (as MLM masking does)."""
    import copy

    from tlr_ray.train.context import Checkpoints, JobContext

    def noisy():
        while True:
            yield {"x": torch.randn(3)}

    def run(load):
        torch.manual_seed(0)
        model, saves = Toy(), []
        scores = iter(range(100))
        args = TrainArgs(batch_size=1, lr=0.1, max_steps=10, eval_every=2)
        # every=3 is rounded up to 4: checkpoints fall on evaluations and report their metrics
        ckpt = Checkpoints(every=3, load=load, save=lambda state, m: saves.append((copy.deepcopy(state), m)))
        result = run_loop(model, noisy(), lambda step: None, lambda: {"s": float(-next(scores))}, args=args,
                          total_steps=10, score_key="s", 
                          ctx=JobContext(checkpoints=ckpt))
        return model, result, [state for state, _ in saves], [m for _, m in saves]

    model, result, saves, reported = run(lambda: None)
    assert [s["step"] for s in saves] == [4, 8] and result.resumed_from_step == 0
    assert [m["step"] for m in reported] == [4, 8] and all("s" in m for m in reported)
    at4 = saves[0]
    resumed, again, later, _ = run(lambda: copy.deepcopy(at4))
    assert again.resumed_from_step == 4 and [s["step"] for s in later] == [8]
    assert torch.equal(resumed.w, model.w)
    assert [h["step"] for h in again.history] == [h["step"] for h in result.history] == [2, 4, 6, 8, 10]
    assert again.best_step == result.best_step == 2 and torch.equal(again.best_state["w"], result.best_state["w"])
    # Restoring the random state matters: without it the resumed run would see other batches.
    no_rng = copy.deepcopy(at4)
    no_rng["rng"]["torch"] = torch.random.get_rng_state()
    differs, _, _, _ = run(lambda: copy.deepcopy(no_rng))
    assert not torch.equal(differs.w, model.w)


def test_resuming_a_run_that_had_stopped_early_trains_nothing():
    from tlr_ray.train.context import Checkpoints, JobContext
    saves = []
    scores = iter([5.0, 4.0, 3.0, 2.0, 1.0])
    args = TrainArgs(batch_size=1, lr=0.1, max_steps=20, eval_every=2, patience=2)
    first = run_loop(Toy(), batches(), lambda step: None, lambda: {"s": next(scores)}, args=args, total_steps=20,
                     score_key="s", ctx=JobContext(checkpoints=Checkpoints(
                         every=None, load=lambda: None, save=lambda st, m: saves.append(st))))
    assert first.stopped_early and first.steps == 6 and saves[-1]["stopped_early"]

    def no_batches():
        raise AssertionError("a finished run must not draw batches")
        yield
    again = run_loop(Toy(), no_batches(), lambda step: None, lambda: {"s": 0.0}, args=args, total_steps=20,
                     score_key="s", ctx=JobContext(checkpoints=Checkpoints(
                         every=None, load=lambda: saves[-1], save=lambda st, m: None)))
    assert again.stopped_early and again.steps == 6 and again.best_step == first.best_step == 2


def test_la_step_budget_is_100_epochs_within_30k_and_100k():
    """METHOD.md: max(30,000, min(100 epochs, 100,000)); the old default trained 100,000 steps always."""
    from tlr_ray.config import LA_DEFAULTS
    la = TrainArgs(**LA_DEFAULTS)
    assert la.max_steps is None
    assert total_steps(la, 10) == 30_000       # a small corpus (AmericasNLP, Luo): never fewer than 30k
    assert total_steps(la, 500) == 50_000      # 100 epochs in between
    assert total_steps(la, 5_000) == 100_000   # Wikipedia-sized: at most 100k
    assert total_steps(TrainArgs(**{**LA_DEFAULTS, "max_steps": 200}), 5_000) == 200  # the override
