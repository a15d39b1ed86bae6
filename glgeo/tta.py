"""Test-time augmentation: a model's predictions averaged over the eight flips and
quarter turns of its input (the dihedral group of the square), as the GLNet authors'
evaluator offered.

:class:`FlipRotateTTA` wraps a :class:`~glgeo.models.GLNet` for ``global`` mode: the global
branch runs on the eight transforms of the global image, each output is turned back, and
the class probabilities are averaged (returned as their logarithm, so ``argmax`` and
``softmax`` downstream give the averaged prediction and probabilities). It costs eight
global-branch passes per scene. Models run with a local branch (``g2l``,
``bidirectional``) would need every patch and its global context transformed together;
they are refused with a clear error.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from .errors import InputError

#: ``(hflip, quarter turns)`` of the eight transforms; the first is the identity.
TRANSFORMS: tuple[tuple[bool, int], ...] = tuple((h, k) for h in (False, True) for k in range(4))


def apply_transform(x: torch.Tensor, hflip: bool, k: int) -> torch.Tensor:
    """A horizontal flip, then ``k`` quarter turns, of the last two axes."""
    if hflip:
        x = x.flip(-1)
    return torch.rot90(x, k, (-2, -1)) if k else x


def invert_transform(x: torch.Tensor, hflip: bool, k: int) -> torch.Tensor:
    """Undo :func:`apply_transform`."""
    if k:
        x = torch.rot90(x, -k, (-2, -1))
    return x.flip(-1) if hflip else x


class FlipRotateTTA(nn.Module):
    """A GLNet whose global-branch logits are averaged over the eight flips/rotations.

    Args:
        model: the network (a :class:`~glgeo.models.GLNet`).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.inner = model

    @property
    def config(self) -> Any:
        return self.inner.config

    def check_mode(self, mode: str | None) -> str:
        """The inner model's mode check; test-time augmentation needs ``global``."""
        mode = self.inner.check_mode(mode)
        if mode != "global":
            raise InputError(
                f"test-time augmentation (tta=True, --tta) runs models in global mode only, not {mode!r}: "
                "pass mode='global' (--mode global) or leave tta off"
            )
        return mode

    def encode_global(self, image: torch.Tensor) -> Any:
        """The global branch on the eight transforms of ``image``, averaged.

        Returns the untransformed pass's features with ``logits`` replaced by the log of
        the mean class probabilities.
        """
        first = None
        total = None
        for hflip, k in TRANSFORMS:
            out = self.inner.encode_global(apply_transform(image, hflip, k))
            probs = invert_transform(out.logits.float().softmax(dim=1), hflip, k)
            total = probs if total is None else total + probs
            first = out if first is None else first
        mean = total / len(TRANSFORMS)
        return dataclasses.replace(first, logits=mean.clamp_min(1e-12).log().to(first.logits.dtype))

    def encode_local(self, *args: Any, **kwargs: Any) -> Any:  # pragma: no cover - refused by check_mode
        raise InputError("test-time augmentation runs models in global mode only")

    aggregate = encode_global_l2g = encode_local
