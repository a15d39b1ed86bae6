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
from typing import Any

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


def crop_margin(features: Any, margin: int, size: tuple[int, int]) -> Any:
    """The features of an image that was extended by ``margin`` px on every side to
    ``size`` ``(rows, cols)``, with the margin cut off every map (at each map's own scale:
    ``margin x map size / size`` cells, rounded; a margin that is a multiple of the
    backbone's output stride keeps every cut whole). ``features``: a
    :class:`BranchFeatures` or any object whose attributes are maps, lists of maps or
    :class:`BranchFeatures` (the inference engine's stand-in models, test-time
    augmentation's views); a new one of its type."""

    def crop(value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return type(value)(crop(v) for v in value)
        if isinstance(value, BranchFeatures):  # e.g. test-time augmentation's other views
            return crop_margin(value, margin, size)
        if not isinstance(value, Tensor) or value.dim() < 2:
            return value
        k = round(margin * value.shape[-2] / size[0])
        j = round(margin * value.shape[-1] / size[1])
        cut = value[..., k : value.shape[-2] - k, j : value.shape[-1] - j]
        # a contiguous copy, in the map's layout: later crops and resizes of a strided view are slow
        layout = torch.channels_last if value.dim() == 4 and value.is_contiguous(memory_format=torch.channels_last) else None
        return cut.contiguous(memory_format=layout) if layout is not None else cut.contiguous()

    return type(features)(**{name: crop(value) for name, value in vars(features).items()})


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


def init_head_conv(conv: nn.Conv2d, zero_bias: bool = True) -> None:
    """The released code's initialisation of head convs: N(0, 0.01) weights and, with
    ``zero_bias``, zero bias (the aggregation conv keeps PyTorch's default bias).

    Skipped on the meta device (models built there to receive a checkpoint's tensors):
    there is no data to initialise, and ``normal_`` on meta tensors imports sympy, a large
    resident cost (``docs/performance.md``).
    """
    if conv.weight.is_meta:
        return
    nn.init.normal_(conv.weight, mean=0.0, std=0.01)
    if zero_bias and conv.bias is not None:
        nn.init.constant_(conv.bias, 0.0)


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
            if isinstance(m, nn.Conv2d):
                init_head_conv(m)

    @staticmethod
    def _with(x: Tensor, ext: Tensor | None) -> Tensor:
        if ext is None:
            return x
        return torch.cat([x, resize_like(ext, x.shape[-2:])], dim=1)

    @staticmethod
    def _conv_with(conv: nn.Conv2d, x: Tensor, ext: Tensor | None) -> Tensor:
        """``conv(cat([x, resize(ext)]))``, with the ext half computed at ext's resolution
        when ext is upsampled (G -> L: a crop of the global features), see
        :func:`upsampled_conv`."""
        if ext is None:
            return conv(x)
        if not _worth_low_res(ext, x.shape[-2:]):
            return conv(FPNHead._with(x, ext))
        cx = x.shape[1]
        w_own, w_ext, bias = _split_weights(conv, lambda w: (w[:, :cx], w[:, cx:]))
        own = F.conv2d(x, w_own, bias, padding=conv.padding)
        return own.add_(upsampled_conv([ext], [[]], w_ext, x.shape[-2:]).to(own.dtype))

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
            p = self._conv_with(lateral, feat, e_top_down[i])
            if ps0:
                p = resize_like(ps0[-1], p.shape[-2:]) + p
            ps0.append(p)
        ps1 = [self._conv_with(conv, p, e_ps0[i]) for i, (conv, p) in enumerate(zip(self.smooth1, ps0))]
        ps2 = [self._conv_with(conv, p, e_ps1[i]) for i, (conv, p) in enumerate(zip(self.smooth2, ps1))]
        # ps3: each (own, ext) pair upsampled to p2's size, coarse to fine.
        size = ps2[-1].shape[-2:]
        if self.fuse is not None and all(_worth_low_res(e, size) for e in e_ps2):
            ps3 = self._fused_ps3(ps2, e_ps2, size)
        else:
            ps3 = torch.cat([resize_like(self._with(p, e_ps2[i]), size) for i, p in enumerate(ps2)], dim=1)
            if self.fuse is not None:
                ps3 = self.fuse(ps3)
        return BranchFeatures(c=list(c), ps0=ps0, ps1=ps1, ps2=ps2, ps3=ps3, logits=self.classifier(ps3))

    def _fused_ps3(self, ps2: list[Tensor], e_ps2: list[Tensor], size: torch.Size) -> Tensor:
        """``fuse(cat([resize(cat([p, resize(e, p)]), size) ...]))`` with the ext halves at
        their own (crop) resolution: the fuse conv is linear, so its ext channels act on each
        small crop and only the results are resized (exact up to rounding)."""
        seg, n = ps2[0].shape[1], len(ps2)

        def split(w: Tensor) -> tuple[Tensor, Tensor]:
            # fuse's input channels are [own p5, ext p5, own p4, ext p4, ...]
            own = torch.cat([w[:, 2 * i * seg : (2 * i + 1) * seg] for i in range(n)], dim=1)
            ext = torch.cat([w[:, (2 * i + 1) * seg : (2 * i + 2) * seg] for i in range(n)], dim=1)
            return own, ext

        w_own, w_ext, bias = _split_weights(self.fuse, split)
        own_in = torch.cat([resize_like(p, size) for p in ps2], dim=1)
        own = F.conv2d(own_in, w_own, bias, padding=self.fuse.padding)
        chains = [[tuple(p.shape[-2:])] for p in ps2]
        return own.add_(upsampled_conv(e_ps2, chains, w_ext, size).to(own.dtype))


def _split_weights(conv: nn.Conv2d, split) -> tuple[Tensor, Tensor, Tensor | None]:
    """``split(conv.weight)`` and the bias; at inference, computed once per weight version
    and autocast dtype and kept on the module (slicing and casting the weights on every
    call cost more than the convolutions saved on small batches)."""
    weight, bias = conv.weight, conv.bias
    if torch.is_grad_enabled() and weight.requires_grad:
        return (*split(weight), bias)
    device = weight.device.type
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else weight.dtype
    key = (weight.data_ptr(), weight._version, dtype)
    cache = conv.__dict__.get("_glgeo_split")
    if cache is None or cache[0] != key:
        fmt = torch.channels_last if weight.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
        parts = tuple(w.detach().to(dtype).contiguous(memory_format=fmt) for w in split(weight))
        cache = (key, parts, None if bias is None else bias.detach().to(dtype))
        conv.__dict__["_glgeo_split"] = cache
    return (*cache[1], cache[2])


def _worth_low_res(ext: Tensor | None, size: tuple[int, int] | torch.Size) -> bool:
    """Whether ext is upsampled enough (4x the pixels or more) for :func:`upsampled_conv`."""
    return ext is not None and 4 * ext.shape[-2] * ext.shape[-1] <= size[0] * size[1]


_RESIZE_CACHE: dict[tuple, Tensor] = {}


def _resize_matrix(n_in: int, chain: tuple[int, ...], device: torch.device) -> Tensor:
    """``(chain[-1], n_in)`` float32 matrix of successive 1-D bilinear resizes
    (align_corners=False) through the sizes in ``chain``, taken from ``F.interpolate``
    itself so it matches it exactly."""
    key = (n_in, chain, str(device))
    if key not in _RESIZE_CACHE:
        m = torch.eye(n_in, device=device, dtype=torch.float32)[None, None]  # rows: inputs
        for n in chain:
            if m.shape[-2] != n:
                m = F.interpolate(m, size=(n, n_in), mode="bilinear", align_corners=False)
        _RESIZE_CACHE[key] = m[0, 0]
    return _RESIZE_CACHE[key]


def _shifted(m: Tensor, k: int) -> Tensor:
    """``(k, n_out, n_in)``: ``m``'s rows shifted for each tap of a k-wide, k//2-padded conv
    (row r of tap a is row ``r + a - k//2`` of ``m``, zero beyond the edges)."""
    n_out = m.shape[0]
    out = m.new_zeros((k, n_out, m.shape[1]))
    for a in range(k):
        dy = a - k // 2
        lo, hi = max(0, -dy), min(n_out, n_out - dy)
        out[a, lo:hi] = m[lo + dy : hi + dy]
    return out


def upsampled_conv(
    exts: list[Tensor], chains: list[list[tuple[int, int]]], weight: Tensor, size: tuple[int, int] | torch.Size
) -> Tensor:
    """``conv2d(cat([resize(e) for e in exts]), weight)`` (no bias, padding k//2) without
    building the resized maps.

    Each ``e`` is bilinearly resized through the sizes in its chain, then to ``size``.
    Resizing is linear and separable (``R_h e R_w^T``) and a conv's channel mixing commutes
    with it, so tap ``(a, b)`` of the conv equals ``R_h[a] (W_ab e) R_w[b]^T`` with the
    resize matrices' rows shifted by the tap: the channel mixing runs at ``e``'s small size
    and only two thin matrix products run at the output size. In GLNet's G -> L local
    branch the ext maps are crops of the global features about 5x smaller per side than the
    patch's features, so this removes nearly half of the shared head's multiply-adds.

    Args:
        exts: ``(N, C_i, h_i, w_i)`` maps.
        chains: per map, the intermediate sizes it is resized through before ``size``.
        weight: ``(C_out, sum C_i, k, k)``.
        size: output ``(H, W)``.

    Returns:
        ``(N, C_out, H, W)``.
    """
    k = weight.shape[-1]
    c_out = weight.shape[0]
    n = exts[0].shape[0]
    height, width = int(size[0]), int(size[1])
    rows: list[Tensor] = []  # per map: (k * h_i, W * C_out), stacked for one final product
    cols: list[Tensor] = []  # per map: (H, k * h_i)
    start = 0
    for e, chain in zip(exts, chains):
        c_in, h, w = e.shape[1], e.shape[-2], e.shape[-1]
        part = weight[:, start : start + c_in]
        start += c_in
        # every tap's channel mixing in one 1x1 conv at e's size: channels (a, b, o)
        taps = part.permute(2, 3, 0, 1).reshape(k * k * c_out, c_in, 1, 1)
        y = F.conv2d(e, taps)
        dtype = y.dtype
        rh = _shifted(_resize_matrix(h, tuple(s[0] for s in chain) + (height,), e.device), k).to(dtype)
        rw = _shifted(_resize_matrix(w, tuple(s[1] for s in chain) + (width,), e.device), k).to(dtype)
        # columns: t[n, p, c, (a, o)] = sum_{b, q} rw[b, c, q] y[n, (a, b, o), p, q]
        y = y.reshape(n, k, k, c_out, h, w).permute(0, 4, 2, 5, 1, 3).reshape(n * h, k * w, k * c_out)
        t = torch.matmul(rw.permute(1, 0, 2).reshape(width, k * w), y)  # (n*h, W, k*O)
        # rows: out[n, r, (c, o)] = sum_{a, p} rh[a, r, p] t[n, p, c, a, o]
        t = t.reshape(n, h, width, k, c_out).permute(0, 3, 1, 2, 4).reshape(n, k * h, width * c_out)
        rows.append(t)
        cols.append(rh.permute(1, 0, 2).reshape(height, k * h))
    out = torch.matmul(torch.cat(cols, dim=1), torch.cat(rows, dim=1))  # (n, H, W*O)
    # (n, H, W, O) memory read as NCHW: channels-last, like the convs' outputs
    return out.reshape(n, height, width, c_out).permute(0, 3, 1, 2)
