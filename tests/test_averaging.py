"""The weights' moving average (glgeo train --ema)."""

from __future__ import annotations

import pytest
import torch

from glgeo.averaging import WeightAverage
from glgeo.errors import InputError


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))


def test_the_average_follows_the_weights_with_a_warmed_up_decay():
    net = _net()
    start = {k: v.clone() for k, v in net.state_dict().items()}
    average = WeightAverage(net, decay=0.9)
    rates = []
    for step in range(100):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(1.0)
            net[1].running_mean.add_(1.0)
        rates.append(average.rate())
        average.update(net)
    # warm-up: (1 + t) / (10 + t), then the decay
    assert rates[0] == pytest.approx(0.1) and rates[5] == pytest.approx(6 / 15) and rates[-1] == 0.9
    expected = 0.0
    for rate, step in zip(rates, range(1, 101)):
        expected = rate * expected + (1 - rate) * step  # every weight moved by +1 per step
    weight = net[0].weight
    with average.applied(net):
        assert torch.allclose(weight - start["0.weight"], torch.full_like(weight, expected), atol=1e-4)
        assert torch.allclose(net[1].running_mean - start["1.running_mean"], torch.full((4,), expected), atol=1e-4)
        assert net[1].num_batches_tracked == start["1.num_batches_tracked"]  # integers are not averaged
    # the network's own weights are back, also after an error inside the block
    assert torch.allclose(weight - start["0.weight"], torch.full_like(weight, 100.0))
    with pytest.raises(RuntimeError), average.applied(net):
        raise RuntimeError
    assert torch.allclose(weight - start["0.weight"], torch.full_like(weight, 100.0))


def test_the_average_resumes_and_refuses_another_network():
    net = _net()
    average = WeightAverage(net, decay=0.99)
    for _ in range(3):
        with torch.no_grad():
            net[0].weight.mul_(1.1)
        average.update(net)
    resumed = WeightAverage(_net(), decay=0.99)
    resumed.load_state_dict(average.state_dict())
    assert resumed.updates == 3 and all(torch.equal(resumed.average[k], v) for k, v in average.average.items())
    with pytest.raises(InputError, match="another network"):
        WeightAverage(torch.nn.Linear(2, 2), 0.99).load_state_dict(average.state_dict())
    for decay in (0.0, 1.0, -0.5):
        with pytest.raises(InputError, match="between 0 and 1"):
            WeightAverage(net, decay)
