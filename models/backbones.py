"""Backbones: a registry of encoders that return the four feature levels c2..c5.

Every backbone meets one contract, :class:`Backbone`: ``forward`` returns ``[c2, c3, c4,
c5]`` with :attr:`~Backbone.out_channels` channels at :data:`STRIDES` (4, 8, 16, 32) of the
input, and :meth:`~Backbone.conv_norm_pairs` names the (conv, BatchNorm) pairs that
inference folds into one conv (:mod:`glgeo.models.deploy`). The FPN heads, the sharing code
and deploy rely on that contract only, so a new encoder is one class and one registered
function::

    @register_backbone("my_encoder")
    def my_encoder() -> Backbone:
        return MyEncoder()  # a Backbone subclass

after which ``GLNetConfig(backbone="my_encoder")``, ``glgeo train --backbone my_encoder``
and the generic model tests (``tests/test_models_backbones.py``, ``tests/test_models_glnet.py``)
use it. Checkpoints store the
backbone's name; a checkpoint loads where its backbone is registered.

The ResNets registered here are written out in torchvision's layout (ResNet v1.5: the
stride of a bottleneck sits on its 3x3 conv) with torchvision's parameter names (``conv1``,
``bn1``, ``layer1`` ... ``layer4``, ``downsample.0``/``.1``; no ``fc``) and initialisation,
so a torchvision ImageNet state dict loads unchanged and gives the same features. They are
not imported from torchvision because importing torchvision loads every model, dataset and
its compiled extension, a large resident cost for two classes (figure in
docs/performance.md).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Callable, Iterator, TypeVar

import torch
from torch import Tensor, nn

from glgeo.errors import CheckpointError, InputError, InternalError, UnknownNameError

#: Strides of c2..c5 relative to the input: the contract every backbone meets.
STRIDES = (4, 8, 16, 32)


class Backbone(nn.Module, ABC):
    """The encoder contract: a module returning ``[c2, c3, c4, c5]`` at :data:`STRIDES`.

    Subclasses set :attr:`name` and :attr:`out_channels` in ``__init__`` and implement
    :meth:`forward` and :meth:`conv_norm_pairs`.

    Attributes:
        name: the registered name.
        out_channels: channels of c2..c5.
        strides: strides of c2..c5 relative to the input (always :data:`STRIDES`).
    """

    name: str
    out_channels: tuple[int, int, int, int]
    strides: tuple[int, int, int, int] = STRIDES

    @abstractmethod
    def forward(self, x: Tensor) -> list[Tensor]:
        """``[c2, c3, c4, c5]`` for an ``(N, 3, H, W)`` batch."""

    @abstractmethod
    def conv_norm_pairs(self) -> Iterator[tuple[nn.Module, str, str]]:
        """Where inference may fold a BatchNorm into the conv before it.

        Yields:
            ``(parent, conv attribute, norm attribute)`` for every ``nn.Conv2d`` whose
            output goes only into the ``nn.BatchNorm2d`` named beside it.
        """

    def load_pretrained(self, path: str | Path) -> None:
        """Load pretrained weights from a file, in the format this backbone documents.

        Raises:
            InputError: this backbone loads no pretrained weights.
        """
        raise InputError(f"backbone {self.name!r} cannot load pretrained weights; train it from scratch")


BackboneFactory = Callable[[], Backbone]
_F = TypeVar("_F", bound=BackboneFactory)
_BACKBONES: dict[str, BackboneFactory] = {}


def register_backbone(name: str) -> Callable[[_F], _F]:
    """Decorator: register a function that builds a fresh backbone under ``name``.

    Raises:
        InputError: ``name`` is already registered.
    """

    def register(factory: _F) -> _F:
        if name in _BACKBONES:
            raise InputError(f"backbone {name!r} is already registered")
        _BACKBONES[name] = factory
        return factory

    return register


def list_backbones() -> list[str]:
    """Names of the registered backbones."""
    return list(_BACKBONES)


def check_backbone_name(name: str) -> None:
    """Raise unless ``name`` is registered.

    Raises:
        UnknownNameError: unknown name; the message lists the valid ones.
    """
    if name not in _BACKBONES:
        raise UnknownNameError(f"unknown backbone {name!r}; choose from: {', '.join(list_backbones())}")


def build_backbone(name: str) -> Backbone:
    """A fresh backbone of the registered kind ``name``.

    Raises:
        UnknownNameError: unknown name; the message lists the valid ones.
        InternalError: the registered function broke the :class:`Backbone` contract.
    """
    check_backbone_name(name)
    backbone = _BACKBONES[name]()
    if not isinstance(backbone, Backbone) or len(backbone.out_channels) != 4 or tuple(backbone.strides) != STRIDES:
        raise InternalError(
            f"backbone {name!r} must be a Backbone with four out_channels at strides {STRIDES}"
        )
    return backbone


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


class ResNet(Backbone):
    """A ResNet body (no pooling head) returning ``[c2, c3, c4, c5]``.

    Args:
        name: the registered name.
        block: :class:`BasicBlock` (ResNet-18/34) or :class:`Bottleneck` (ResNet-50/101).
        blocks_per_layer: blocks in ``layer1`` ... ``layer4``.
    """

    def __init__(self, name: str, block: type[BasicBlock] | type[Bottleneck], blocks_per_layer: tuple[int, int, int, int]) -> None:
        super().__init__()
        self.name = name
        self.out_channels = tuple(64 * 2**i * block.expansion for i in range(4))  # type: ignore[assignment]
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        inplanes = 64
        layers = []
        for i, blocks in enumerate(blocks_per_layer):
            planes, stride = 64 * 2**i, 1 if i == 0 else 2
            downsample = None
            if stride != 1 or inplanes != planes * block.expansion:
                downsample = nn.Sequential(
                    _conv1x1(inplanes, planes * block.expansion, stride),
                    nn.BatchNorm2d(planes * block.expansion),
                )
            stack = [block(inplanes, planes, stride, downsample)]
            inplanes = planes * block.expansion
            stack += [block(inplanes, planes) for _ in range(1, blocks)]
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

    def conv_norm_pairs(self) -> Iterator[tuple[nn.Module, str, str]]:
        yield self, "conv1", "bn1"
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            for block in layer:
                for n in ("1", "2") if isinstance(block, BasicBlock) else ("1", "2", "3"):
                    yield block, f"conv{n}", f"bn{n}"
                if block.downsample is not None:
                    yield block.downsample, "0", "1"

    def load_pretrained(self, path: str | Path) -> None:
        """Load a torchvision ImageNet checkpoint file (its ``fc`` is ignored).

        Weights cannot be downloaded by glgeo; users who have the torchvision file (for
        example in ``~/.cache/torch/hub/checkpoints``) pass its path.

        Raises:
            CheckpointError: the file cannot be read, holds no state dict, or does not fit
                this backbone.
        """
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - torch raises many kinds for a file that is no torch file
            reason = (str(exc).splitlines() or [type(exc).__name__])[0]
            raise CheckpointError(f"cannot read {path} as torch weights ({reason}); give a torchvision checkpoint file") from None
        if not isinstance(state, dict):
            raise CheckpointError(f"{path} holds a {type(state).__name__}, not a state dict of {self.name} weights")
        state = {k: v for k, v in state.items() if isinstance(k, str) and not k.startswith("fc.")}
        try:
            missing, unexpected = self.load_state_dict(state, strict=False)
        except RuntimeError:  # same names, other shapes
            missing, unexpected = ["(tensors of other shapes)"], []
        if missing or unexpected:
            raise CheckpointError(
                f"{path} is not a torchvision {self.name} checkpoint: "
                f"missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}"
            )


@register_backbone("resnet18")
def resnet18() -> ResNet:
    """ResNet-18 (torchvision layout)."""
    return ResNet("resnet18", BasicBlock, (2, 2, 2, 2))


@register_backbone("resnet34")
def resnet34() -> ResNet:
    """ResNet-34 (torchvision layout)."""
    return ResNet("resnet34", BasicBlock, (3, 4, 6, 3))


@register_backbone("resnet50")
def resnet50() -> ResNet:
    """ResNet-50 v1.5 (torchvision layout)."""
    return ResNet("resnet50", Bottleneck, (3, 4, 6, 3))


@register_backbone("resnet101")
def resnet101() -> ResNet:
    """ResNet-101 v1.5 (torchvision layout)."""
    return ResNet("resnet101", Bottleneck, (3, 4, 23, 3))
