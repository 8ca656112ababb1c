import math

import pytest
import torch

from grporec.config import TrainConfig
from grporec.optim import build_optimizer, cosine_with_warmup, guarded_step


def test_warmup_then_cosine_by_hand():
    # warmup 2 of 10: (s+1)/2 for s = 0, 1; then 0.5 * (1 + cos(pi * (s - 2) / 8))
    got = [cosine_with_warmup(s, 2, 10) for s in range(10)]
    want = [0.5, 1.0] + [0.5 * (1 + math.cos(math.pi * k / 8)) for k in range(8)]
    assert got == pytest.approx(want)
    assert cosine_with_warmup(12, 2, 10) == pytest.approx(0.0)  # past the end stays at 0


def test_guarded_step_skips_non_finite():
    model = torch.nn.Linear(2, 1)
    opt, sched = build_optimizer(model, TrainConfig(lr=0.1, warmup_ratio=0.0), total_steps=4)
    before = [p.detach().clone() for p in model.parameters()]
    model(torch.tensor([[1.0, float("nan")]])).sum().backward()
    stepped, norm = guarded_step(model, opt, sched, 1.0, loss_finite=True)
    assert not stepped and math.isnan(norm)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert all(p.grad is None for p in model.parameters())  # bad gradients are dropped
    assert sched.last_epoch == 0  # the schedule does not advance on a skipped step
    model(torch.tensor([[1.0, 2.0]])).sum().backward()
    stepped, norm = guarded_step(model, opt, sched, 1.0, loss_finite=True)
    # gradient of sum(w.x + b) is (x, 1) = (1, 2, 1): norm sqrt(6)
    assert stepped and norm == pytest.approx(math.sqrt(6))
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    model(torch.tensor([[1.0, 2.0]])).sum().backward()
    assert guarded_step(model, opt, sched, 1.0, loss_finite=False)[0] is False  # a non-finite loss on any rank
