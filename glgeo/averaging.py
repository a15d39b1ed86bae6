"""An exponential moving average of a network's weights (``glgeo train --ema``).

On little data the weights a run ends with, or the epoch its validation picks, vary a lot
from one epoch to the next: the validation mIoU of the shipped buildings recipe ranged
over 53-64 % in its last 30 epochs. An average of the weights over the last steps is a
steadier model (Polyak averaging; timm's ``ModelEmaV2`` and Lightning's
``WeightAveraging`` do the same). :class:`WeightAverage` keeps one: after each optimizer
step ``average = d * average + (1 - d) * weights``, with the decay ``d`` warmed up as
``min(decay, (1 + t) / (10 + t))`` after ``t`` updates, so that the first steps' random
weights do not linger. Floating-point buffers (BatchNorm's running statistics) are
averaged alike; integer ones (batch counters) are left to the network.

Example:
    >>> import torch
    >>> from glgeo.averaging import WeightAverage
    >>> net = torch.nn.Linear(2, 2)
    >>> average = WeightAverage(net, decay=0.99)
    >>> average.update(net)  # after each optimizer step
    >>> with average.applied(net):  # validate or save the averaged weights
    ...     pass
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch

from .errors import InputError

#: Updates over which the decay warms up: ``min(decay, (1 + t) / (WARMUP + t))``.
WARMUP = 10


class WeightAverage:
    """An exponential moving average of ``model``'s floating-point weights and buffers.

    Args:
        model: the network; the average starts at its current weights, on its device, in
            float32.
        decay: the weight of the average at each update, in ``(0, 1)`` (0.99: about the
            last hundred steps).

    Raises:
        InputError: a decay outside ``(0, 1)``.
    """

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        if not 0 < decay < 1:
            raise InputError(f"the weight-average decay must be between 0 and 1, got ema={decay}")
        self.decay = float(decay)
        self.updates = 0
        self.average = {
            name: value.detach().float().clone() for name, value in model.state_dict().items() if value.is_floating_point()
        }

    def rate(self) -> float:
        """The decay of the next update (warmed up: :data:`WARMUP`)."""
        return min(self.decay, (1 + self.updates) / (WARMUP + self.updates))

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        """Move the average towards ``model``'s current weights."""
        keep = self.rate()
        state = model.state_dict()
        for name, average in self.average.items():
            average.lerp_(state[name].detach().float(), 1.0 - keep)
        self.updates += 1

    @contextlib.contextmanager
    def applied(self, model: torch.nn.Module) -> Iterator[torch.nn.Module]:
        """While the block runs, ``model`` holds the averaged weights (in its own dtypes);
        its own come back after it, also on an error."""
        state = model.state_dict()
        live = {name: state[name].detach().clone() for name in self.average}
        with torch.no_grad():
            for name, average in self.average.items():
                state[name].copy_(average)
        try:
            yield model
        finally:
            with torch.no_grad():
                for name, value in live.items():
                    state[name].copy_(value)

    def state_dict(self) -> dict[str, Any]:
        """The decay, the number of updates and the average (for resuming)."""
        return {"decay": self.decay, "updates": self.updates, "average": self.average}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict` (the tensors go to this average's devices).

        Raises:
            InputError: the saved average is of another network.
        """
        saved = state["average"]
        if set(saved) != set(self.average):
            raise InputError("the saved weight average is of another network: resume the run it belongs to")
        self.decay = float(state["decay"])
        self.updates = int(state["updates"])
        for name, average in self.average.items():
            average.copy_(saved[name])
