"""Backbones: ResNets that return the four feature levels c2..c5.

The ResNets are written out here in torchvision's layout (ResNet v1.5: the stride of a
bottleneck sits on its 3x3 conv) with torchvision's parameter names (``conv1``, ``bn1``,
``layer1`` ... ``layer4``, ``downsample.0``/``.1``; no ``fc``) and initialisation, so a
torchvision ImageNet state dict loads unchanged and gives the same features. They are not
imported from torchvision because importing torchvision loads every model, dataset and
its compiled extension: about 160 MB of resident memory for two classes.

Every backbone meets one contract: :attr:`Backbone.out_channels` (c2..c5) at strides 4,
8, 16, 32. The heads and the sharing code only rely on that contract.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from glgeo.errors import CheckpointError, UnknownNameError


@dataclass(frozen=True)
class BackboneSpec:
    """A registered backbone: how to build it and what it returns."""

    name: str
    block: type[nn.Module]
    layers: tuple[int, int, int, int]

    @property
    def out_channels(self) -> tuple[int, int, int, int]:
        """Channels of c2..c5."""
        return tuple(64 * 2**i * self.block.expansion for i in range(4))  # type: ignore[return-value]


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


def _conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs and a shortcut (ResNet-18/34)."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (strided) -> 1x1 convs and a shortcut (ResNet-50/101)."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


_BACKBONES: dict[str, BackboneSpec] = {
    "resnet18": BackboneSpec("resnet18", BasicBlock, (2, 2, 2, 2)),
    "resnet34": BackboneSpec("resnet34", BasicBlock, (3, 4, 6, 3)),
    "resnet50": BackboneSpec("resnet50", Bottleneck, (3, 4, 6, 3)),
    "resnet101": BackboneSpec("resnet101", Bottleneck, (3, 4, 23, 3)),
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
    """A ResNet body (no pooling head) returning ``[c2, c3, c4, c5]``."""

    def __init__(self, name: str) -> None:
        super().__init__()
        spec = backbone_spec(name)
        self.name = name
        self.out_channels = spec.out_channels
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        inplanes = 64
        layers = []
        for i, blocks in enumerate(spec.layers):
            planes, stride = 64 * 2**i, 1 if i == 0 else 2
            downsample = None
            if stride != 1 or inplanes != planes * spec.block.expansion:
                downsample = nn.Sequential(
                    _conv1x1(inplanes, planes * spec.block.expansion, stride),
                    nn.BatchNorm2d(planes * spec.block.expansion),
                )
            stack = [spec.block(inplanes, planes, stride, downsample)]
            inplanes = planes * spec.block.expansion
            stack += [spec.block(inplanes, planes) for _ in range(1, blocks)]
            layers.append(nn.Sequential(*stack))
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        # torchvision's initialisation; nothing to initialise on the meta device (models
        # built there to receive a checkpoint's tensors), where normal_ would import sympy
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.BatchNorm2d)) and m.weight.is_meta:
                continue
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

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
        try:
            missing, unexpected = self.load_state_dict(state, strict=False)
        except RuntimeError:  # same names, other shapes
            missing, unexpected = ["(tensors of other shapes)"], []
        if missing or unexpected:
            raise CheckpointError(
                f"{path} is not a torchvision {self.name} checkpoint: "
                f"missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}"
            )
