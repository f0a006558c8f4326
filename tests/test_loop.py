"""The shared training loop: best-checkpoint selection keeps the best evaluation, not the last."""
from __future__ import annotations

import torch

from tlr_ray.config import TrainArgs
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
                      score_key="accuracy", higher_is_better=True, device=torch.device("cpu"))
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
                      total_steps=10, score_key="perplexity", higher_is_better=False,
                      device=torch.device("cpu"))
    assert result.best_step == 4 and result.best_score == 8.0
    assert result.stopped_early and result.steps == 8  # two evaluations without gain after step 4


def test_activate_called_every_step_in_order():
    calls = []
    args = TrainArgs(batch_size=1, lr=0.1, max_steps=5, eval_every=100)
    run_loop(Toy(), batches(), calls.append, lambda: {"s": 0.0}, args=args, total_steps=5, score_key="s",
             higher_is_better=True, device=torch.device("cpu"))
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
