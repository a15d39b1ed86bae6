"""Test-time augmentation: a model's predictions averaged over the eight flips and
quarter turns of its input (the dihedral group of the square), as the GLNet authors'
evaluator offered.

:class:`FlipRotateTTA` wraps a :class:`~glgeo.models.GLNet` for ``global`` and ``g2l``
modes. The global branch runs on the eight transforms of each global image; each view's
features are turned back onto the image's own grid. In ``global`` mode the class
probabilities of the eight views are averaged. In ``g2l`` mode each patch goes through the
local branch eight times, each time turned as its view was, with its G -> L context cut
from that view's features at the patch's box and turned the same way: the patch and its
context then lie as they would in the turned scene. Its eight predictions are turned back
and their probabilities averaged. Averages are returned as the log of the mean probability,
so ``argmax`` and ``softmax`` downstream give the averaged prediction and probabilities.
It costs eight passes of each branch. ``bidirectional`` models (their L -> G pass collects
every patch's features onto the global maps) are refused with a clear error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from glgeo.models.heads import BranchFeatures
from glgeo.models.sharing import PatchBoxes, crop_global, crop_global_features

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


@dataclass
class AugmentedFeatures(BranchFeatures):
    """A global image's features under test-time augmentation: the untransformed view's
    maps, ``logits`` the log of the eight views' mean class probabilities, and ``views``:
    every view's features (:data:`TRANSFORMS` order), turned back onto the image's grid."""

    views: list[BranchFeatures] = field(default_factory=list)


def _mean_log_probability(total: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return (total / len(TRANSFORMS)).clamp_min(1e-12).log().to(like.dtype)


class FlipRotateTTA(nn.Module):
    """A GLNet whose predictions are averaged over the eight flips/rotations of the scene.

    Args:
        model: the network (a :class:`~glgeo.models.GLNet`).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.inner = model
        #: whether :meth:`encode_global` keeps every view's features (``views``): the G -> L
        #: crops need them; a model checked for ``global`` mode needs only the mean logits
        self.keeps_views = True

    @property
    def config(self) -> Any:
        return self.inner.config

    def check_mode(self, mode: str | None) -> str:
        """The inner model's mode check; test-time augmentation needs ``global`` or ``g2l``."""
        mode = self.inner.check_mode(mode)
        if mode not in ("global", "g2l"):
            raise InputError(
                f"test-time augmentation (tta=True, --tta) runs models in global or g2l mode, not {mode!r}: "
                "pass mode='g2l' or mode='global' (--mode) or leave tta off"
            )
        self.keeps_views = mode == "g2l"
        return mode

    def encode_global(self, image: torch.Tensor) -> AugmentedFeatures:
        """The global branch on the eight transforms of ``image``: the untransformed
        view's features, the mean class probabilities (as log) for ``logits``, and every
        view's features turned back (``views``; none once checked for ``global`` mode,
        which needs only the logits)."""
        views = []
        total = None
        for hflip, k in TRANSFORMS:
            out = self.inner.encode_global(apply_transform(image, hflip, k))
            view = BranchFeatures(**{name: _turned_back(value, hflip, k) for name, value in vars(out).items()})
            probs = view.logits.float().softmax(dim=1)
            total = probs if total is None else total + probs
            views.append(view)
        first = views[0]
        return AugmentedFeatures(
            c=first.c, ps0=first.ps0, ps1=first.ps1, ps2=first.ps2, ps3=first.ps3,
            logits=_mean_log_probability(total, first.logits), views=views if self.keeps_views else [],
        )  # fmt: skip

    def g2l_logits(self, patches: torch.Tensor, boxes: PatchBoxes, context: AugmentedFeatures) -> torch.Tensor:
        """The G -> L prediction of each patch, averaged over the eight views: in view
        ``(hflip, k)`` the patch and its crops of the view's features are turned by it, as
        they lie in the turned scene; each prediction is turned back."""
        total = None
        cache: dict = {}  # the views' maps have the same sizes: one set of sampling weights
        for (hflip, k), view in zip(TRANSFORMS, context.views):
            ext = [apply_transform(f, hflip, k) for f in crop_global_features(view, boxes, cache)]
            local = self.inner.encode_local_crops(apply_transform(patches, hflip, k), ext)
            logits = self.inner.aggregate_crops(local.ps3, apply_transform(crop_global(view.ps3, boxes, cache), hflip, k))
            probs = invert_transform(logits.float().softmax(dim=1), hflip, k)
            total = probs if total is None else total + probs
        return _mean_log_probability(total, logits)

    def encode_local(self, *args: Any, **kwargs: Any) -> Any:  # pragma: no cover - the engine calls g2l_logits
        raise InputError("test-time augmentation runs a local branch only through g2l_logits")

    aggregate = encode_global_l2g = encode_local


def _turned_back(value: Any, hflip: bool, k: int) -> Any:
    """A view's feature map (or list of maps) back on the untransformed image's grid."""
    if isinstance(value, (list, tuple)):
        return type(value)(_turned_back(v, hflip, k) for v in value)
    return invert_transform(value, hflip, k).contiguous(
        memory_format=torch.channels_last if value.dim() == 4 and value.is_contiguous(memory_format=torch.channels_last)
        else torch.contiguous_format
    )
