"""The FPN head of a GLNet branch, with or without deep feature-map sharing.

Top-down pathway ("ps0": 1x1 laterals, bilinear upsample-and-add), two 3x3 smoothing stages
("ps1": pyramid -> pyramid channels, "ps2": pyramid -> segmentation channels), the four ps2
levels upsampled to the finest one and concatenated ("ps3"), and a 3x3 classifier.

A *shared* head takes a second set of features ("ext") at every sharing point: c2..c5 and
each level of ps0, ps1 and ps2. They are resized to the branch's own feature size and
concatenated after the branch's own features, so every conv takes twice its usual input
channels, and an extra 3x3 ``fuse`` conv brings the doubled ps3 back to ``4 *
segmentation_channels`` before the classifier. The local branch of a G->L model and the L->G
global branch of a bidirectional model are both shared heads; only where their ext features
come from differs (crops of the global features, or canvases of merged local features).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

N_LEVELS = 4
#: Number of sharing points: c2..c5 and the four levels of ps0, ps1 and ps2.
N_SHARING_POINTS = 16


def resize_like(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear resize (align_corners=False, as the released GLNet code) when sizes differ."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


@dataclass
class BranchFeatures:
    """Everything one branch computes for a batch of images.

    Attributes:
        c: backbone features ``[c2, c3, c4, c5]``.
        ps0, ps1, ps2: pyramid levels, coarse to fine ``[p5, p4, p3, p2]``.
        ps3: the concatenated (and, for shared heads, fused) finest features, 1/4 scale.
        logits: class scores at 1/4 of the input size.
    """

    c: list[Tensor]
    ps0: list[Tensor]
    ps1: list[Tensor]
    ps2: list[Tensor]
    ps3: Tensor
    logits: Tensor

    def sharing_points(self) -> list[Tensor]:
        """The 16 feature maps shared between branches, in a fixed order."""
        return [*self.c, *self.ps0, *self.ps1, *self.ps2]

    def detach(self) -> "BranchFeatures":
        """A copy cut from the autograd graph."""
        return BranchFeatures(
            c=[t.detach() for t in self.c],
            ps0=[t.detach() for t in self.ps0],
            ps1=[t.detach() for t in self.ps1],
            ps2=[t.detach() for t in self.ps2],
            ps3=self.ps3.detach(),
            logits=self.logits.detach(),
        )


def _conv(cin: int, cout: int, k: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=k, stride=1, padding=k // 2)


class FPNHead(nn.Module):
    """FPN segmentation head of one GLNet branch.

    Args:
        in_channels: channels of c2..c5 (the backbone's ``out_channels``).
        n_classes: number of output classes.
        pyramid_channels: width of ps0/ps1 (paper: 256).
        segmentation_channels: width of each ps2 level (paper: 128); ps3 has four times that.
        shared: take ext features at every sharing point (doubled input channels, plus
            the ``fuse`` conv on ps3).
    """

    def __init__(
        self,
        in_channels: tuple[int, int, int, int],
        n_classes: int,
        pyramid_channels: int = 256,
        segmentation_channels: int = 128,
        shared: bool = False,
    ) -> None:
        super().__init__()
        fold = 2 if shared else 1
        self.shared = shared
        self.ps3_channels = 4 * segmentation_channels
        # Laterals top-down: c5, c4, c3, c2 (released names: toplayer, latlayer1..3).
        self.lateral = nn.ModuleList(_conv(ch * fold, pyramid_channels, 1) for ch in reversed(in_channels))
        # Per level p5..p2 (released names: smooth{1..4}_1 and smooth{1..4}_2).
        self.smooth1 = nn.ModuleList(_conv(pyramid_channels * fold, pyramid_channels, 3) for _ in range(N_LEVELS))
        self.smooth2 = nn.ModuleList(
            _conv(pyramid_channels * fold, segmentation_channels, 3) for _ in range(N_LEVELS)
        )
        self.fuse = _conv(self.ps3_channels * fold, self.ps3_channels, 3) if shared else None
        self.classifier = _conv(self.ps3_channels, n_classes, 3)
        for m in self.modules():
            # The released code's initialisation of the heads.
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, mean=0.0, std=0.01)
                nn.init.constant_(m.bias, 0.0)

    @staticmethod
    def _with(x: Tensor, ext: Tensor | None) -> Tensor:
        if ext is None:
            return x
        return torch.cat([x, resize_like(ext, x.shape[-2:])], dim=1)

    def forward(self, c: list[Tensor], ext: list[Tensor] | None = None) -> BranchFeatures:
        """Run the head.

        Args:
            c: ``[c2, c3, c4, c5]`` from the backbone.
            ext: for a shared head, the 16 sharing-point features of the other branch in
                :meth:`BranchFeatures.sharing_points` order (any spatial size: they are
                resized bilinearly to this branch's sizes); ``None`` for a plain head.
        """
        if self.shared != (ext is not None):
            raise ValueError("a shared head needs ext features; a plain head takes none")
        e = ext if ext is not None else [None] * N_SHARING_POINTS
        e_c, e_ps0, e_ps1, e_ps2 = e[0:4], e[4:8], e[8:12], e[12:16]

        top_down = list(reversed(c))  # c5, c4, c3, c2
        e_top_down = list(reversed(e_c))
        ps0: list[Tensor] = []
        for i, (lateral, feat) in enumerate(zip(self.lateral, top_down)):
            p = lateral(self._with(feat, e_top_down[i]))
            if ps0:
                p = resize_like(ps0[-1], p.shape[-2:]) + p
            ps0.append(p)
        ps1 = [conv(self._with(p, e_ps0[i])) for i, (conv, p) in enumerate(zip(self.smooth1, ps0))]
        ps2 = [conv(self._with(p, e_ps1[i])) for i, (conv, p) in enumerate(zip(self.smooth2, ps1))]
        # ps3: each (own, ext) pair upsampled to p2's size, coarse to fine.
        size = ps2[-1].shape[-2:]
        ps3 = torch.cat([resize_like(self._with(p, e_ps2[i]), size) for i, p in enumerate(ps2)], dim=1)
        if self.fuse is not None:
            ps3 = self.fuse(ps3)
        return BranchFeatures(c=list(c), ps0=ps0, ps1=ps1, ps2=ps2, ps3=ps3, logits=self.classifier(ps3))
