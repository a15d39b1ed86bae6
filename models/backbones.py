"""Backbones: torchvision ResNets that return the four feature levels c2..c5.

Each backbone keeps torchvision's parameter names (``conv1``, ``bn1``, ``layer1`` ...
``layer4``; no ``fc``), so a torchvision ImageNet state dict loads into it unchanged, and
meets one contract: :attr:`Backbone.out_channels` (c2..c5) at strides 4, 8, 16, 32. The
heads and the sharing code only rely on that contract.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor, nn
from torchvision.models import resnet

from glgeo.errors import CheckpointError, UnknownNameError


@dataclass(frozen=True)
class BackboneSpec:
    """A registered backbone: how to build it and what it returns."""

    name: str
    builder: Callable[..., resnet.ResNet]
    out_channels: tuple[int, int, int, int]


_BACKBONES: dict[str, BackboneSpec] = {
    "resnet18": BackboneSpec("resnet18", resnet.resnet18, (64, 128, 256, 512)),
    "resnet34": BackboneSpec("resnet34", resnet.resnet34, (64, 128, 256, 512)),
    "resnet50": BackboneSpec("resnet50", resnet.resnet50, (256, 512, 1024, 2048)),
    "resnet101": BackboneSpec("resnet101", resnet.resnet101, (256, 512, 1024, 2048)),
}

#: Strides of c2..c5 relative to the input.
STRIDES = (4, 8, 16, 32)


def list_backbones() -> list[str]:
    """Names of the registered backbones."""
    return list(_BACKBONES)


def backbone_spec(name: str) -> BackboneSpec:
    """The registered backbone called ``name``.

    Raises:
        UnknownNameError: unknown name; the message lists the valid ones.
    """
    try:
        return _BACKBONES[name]
    except KeyError:
        raise UnknownNameError(
            f"unknown backbone {name!r}; choose from: {', '.join(list_backbones())}"
        ) from None


class Backbone(nn.Module):
    """A torchvision ResNet body (no pooling head) returning ``[c2, c3, c4, c5]``."""

    def __init__(self, name: str) -> None:
        super().__init__()
        spec = backbone_spec(name)
        body = spec.builder(weights=None)
        self.name = name
        self.out_channels = spec.out_channels
        # Same attribute names as torchvision, so its state dicts load as they are.
        self.conv1, self.bn1, self.relu, self.maxpool = body.conv1, body.bn1, body.relu, body.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = body.layer1, body.layer2, body.layer3, body.layer4

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        c2 = self.layer1(x)
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        c5 = self.layer4(c4)
        return [c2, c3, c4, c5]

    def load_torchvision_weights(self, path: str | Path) -> None:
        """Load a torchvision ImageNet checkpoint file (its ``fc`` is ignored).

        Weights cannot be downloaded by glgeo; users who have the torchvision file (for
        example in ``~/.cache/torch/hub/checkpoints``) pass its path.

        Raises:
            CheckpointError: the file does not fit this backbone.
        """
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        missing, unexpected = self.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise CheckpointError(
                f"{path} is not a torchvision {self.name} checkpoint: "
                f"missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}"
            )
