"""Deep feature-map sharing between GLNet's branches.

* G -> L (:func:`crop_global`): for each patch, the global feature map is cropped at the
  patch's relative box (top, left, height, width, each = relative value x feature size,
  rounded) and later resized bilinearly to the local feature size by the shared head. A
  box that reaches beyond its scene (the inference engine's edge margins, boxes made with
  ``beyond=True``) crops the map mirrored at the scene's edge. Boxes made with
  ``exact=True`` (the inference engine's default, ``InferenceSettings.context_crop``) are
  sampled bilinearly at their exact place instead of cut at whole cells: a patch then gets
  the same context for the same ground wherever the patch grid falls (a released crop
  moves by up to half a feature cell, about 5 px of the default model's working grid, as
  the grid moves).
* L -> G (:class:`L2GCanvas`): each patch's local feature map is resized bilinearly to the
  patch's footprint in global-feature space and added onto a zero canvas of the global
  feature size; the canvas is divided by the number of patches covering each pixel.

Two coverage normalisations are offered. ``"footprint"`` (glgeo's default) counts, on each
canvas grid, the rounded footprints that were actually added there, so the division is
exact: constant local features give a constant canvas wherever a patch reached.
``"released"`` reproduces the released code (a full-resolution count of patches per scene
pixel, bilinearly resized to each canvas size), which slightly mis-weights footprint
edges; it is computed without ever building that full-resolution array: bilinear resizing
is separable and linear, so the resized count is a sum over patches of outer products of
two resized 1-D indicators.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .heads import BranchFeatures, N_SHARING_POINTS, resize_like


@dataclass(frozen=True)
class PatchBoxes:
    """Pixel boxes of patches in their scenes.

    Attributes:
        pixels: ``(N, 4)`` long tensor of ``top, left, height, width`` in scene pixels.
        scene_sizes: ``(N, 2)`` long tensor of each patch's scene ``height, width``.
        scene_index: ``(N,)`` long tensor: which image of the global batch holds the patch.
        beyond: boxes may reach beyond their scene by less than their own size inside it,
            over the scene mirrored at its edge (the engine's edge margins); else every box
            lies inside its scene.
        exact: :func:`crop_global` samples the boxes at their exact place (bilinear) rather
            than cutting them at whole feature cells as the released code.
    """

    pixels: Tensor
    scene_sizes: Tensor
    scene_index: Tensor
    beyond: bool = False
    exact: bool = False

    def __post_init__(self) -> None:
        # Boxes are small metadata read with .tolist(): keep them on the CPU whatever
        # device the caller's tensors were on.
        for name in ("pixels", "scene_sizes", "scene_index"):
            object.__setattr__(self, name, torch.as_tensor(getattr(self, name)).detach().long().cpu())
        n = self.pixels.shape[0]
        if self.pixels.shape != (n, 4) or self.scene_sizes.shape != (n, 2) or self.scene_index.shape != (n,):
            raise ValueError("PatchBoxes needs pixels (N,4), scene_sizes (N,2) and scene_index (N,)")
        if self.beyond:
            top, left, h, w = self.pixels.unbind(1)
            inside_h = torch.minimum(top + h, self.scene_sizes[:, 0]) - top.clamp(min=0)
            inside_w = torch.minimum(left + w, self.scene_sizes[:, 1]) - left.clamp(min=0)
            reach = torch.stack([-top, top + h - self.scene_sizes[:, 0], -left, left + w - self.scene_sizes[:, 1]], 1)
            if n and (
                (self.pixels[:, 2:] <= 0).any()
                or ((inside_h <= reach[:, :2].max(1).values) | (inside_w <= reach[:, 2:].max(1).values)).any()
            ):
                raise ValueError("a patch box may reach beyond its scene by less than it lies inside")
        elif n and (
            (self.pixels[:, :2] < 0).any()
            or (self.pixels[:, 2:] <= 0).any()
            or (self.pixels[:, 0] + self.pixels[:, 2] > self.scene_sizes[:, 0]).any()
            or (self.pixels[:, 1] + self.pixels[:, 3] > self.scene_sizes[:, 1]).any()
        ):
            raise ValueError("every patch box must lie inside its scene")

    @classmethod
    def from_pixels(
        cls,
        tops: Sequence[int] | Tensor,
        lefts: Sequence[int] | Tensor,
        heights: Sequence[int] | Tensor | int,
        widths: Sequence[int] | Tensor | int,
        scene_height: int | Sequence[int] | Tensor,
        scene_width: int | Sequence[int] | Tensor,
        scene_index: Sequence[int] | Tensor | None = None,
        beyond: bool = False,
        exact: bool = False,
    ) -> "PatchBoxes":
        """Build boxes from per-patch pixel positions (scalars broadcast)."""
        tops_t = torch.as_tensor(tops).detach().cpu().long().reshape(-1)
        n = tops_t.shape[0]

        def col(v) -> Tensor:
            return torch.as_tensor(v).detach().cpu().long().reshape(-1).expand(n).clone()

        pixels = torch.stack([tops_t, col(lefts), col(heights), col(widths)], dim=1)
        sizes = torch.stack([col(scene_height), col(scene_width)], dim=1)
        index = col(0 if scene_index is None else scene_index)
        return cls(pixels, sizes, index, beyond, exact)

    def __len__(self) -> int:
        return int(self.pixels.shape[0])

    def __getitem__(self, item: slice | Tensor | Sequence[int]) -> "PatchBoxes":
        if isinstance(item, int):
            item = slice(item, item + 1)
        return PatchBoxes(self.pixels[item], self.scene_sizes[item], self.scene_index[item], self.beyond, self.exact)

    @property
    def rel(self) -> Tensor:
        """``(N, 4)`` float64 relative boxes: top/H, left/W, h/H, w/W."""
        sizes = self.scene_sizes.double().repeat(1, 2)
        return self.pixels.double() / sizes

    def on_grid(self, height: int, width: int) -> list[tuple[int, int, int, int]]:
        """Each box on a feature grid of ``height x width`` as ``(top, left, h, w)``.

        Same rounding as the released code (round relative value x size), kept inside the
        grid (the released code could run one row past the edge for the last patch). Boxes
        made with ``beyond`` keep their reach past the grid's edges (``top`` < 0, or
        ``top + h`` > ``height``), at most the grid's size - 1 (for :func:`crop_global`'s
        mirror image).
        """

        def axis(start: float, length: float, n: int) -> tuple[int, int]:
            if self.beyond and (start < 0 or start + length > 1):  # mirrored past the edge
                first = min(max(round(start * n), 1 - n), n - 1)
                return first, min(max(1, round(length * n)), 2 * n - 1 - first)
            size = max(1, min(n, round(length * n)))
            return min(round(start * n), n - size), size

        out = []
        for top, left, h, w in self.rel.tolist():
            (tt, hh), (ll, ww) = axis(top, h, height), axis(left, w, width)
            out.append((tt, ll, hh, ww))
        return out


def crop_global(feature: Tensor, boxes: PatchBoxes, cache: dict | None = None) -> Tensor:
    """Crop a global feature map ``(B, C, H, W)`` at each patch's box.

    Returns ``(N, C, h, w)``; when the boxes' crops differ in size (patches of different
    sizes), every crop is resized to the first one's size. With ``boxes.exact`` each crop
    is sampled at the box's exact place (:func:`_sample_boxes`), with the size the
    released crop would have; ``cache`` (a dict, for one set of boxes) keeps its sampling
    weights for maps of the same size.
    """
    grid = boxes.on_grid(feature.shape[-2], feature.shape[-1])
    if boxes.exact:
        return _sample_boxes(feature, boxes, grid[0][2], grid[0][3], cache)
    index = boxes.scene_index.tolist()
    if boxes.beyond:
        # a box reaching past the map's edge crops the map mirrored there
        fh, fw = feature.shape[-2:]
        above = max([0] + [-t for t, _, _, _ in grid])
        below = max([0] + [t + h - fh for t, _, h, _ in grid])
        before = max([0] + [-l for _, l, _, _ in grid])
        after = max([0] + [l + w - fw for _, l, _, w in grid])
        if above or below or before or after:
            feature = F.pad(feature, (before, after, above, below), mode="reflect")
            grid = [(t + above, l + before, h, w) for t, l, h, w in grid]
    crops = [feature[b, :, t : t + h, l : l + w] for b, (t, l, h, w) in zip(index, grid)]
    size = crops[0].shape[-2:]
    if any(c.shape[-2:] != size for c in crops):
        crops = [F.interpolate(c[None], size=size, mode="bilinear", align_corners=False)[0] for c in crops]
    out = torch.stack(crops, dim=0)
    if feature.dim() == 4 and feature.is_contiguous(memory_format=torch.channels_last):
        # Keep the caller's layout: mixing layouts makes every later cat and conv copy.
        out = out.contiguous(memory_format=torch.channels_last)
    return out


def _lerp_matrix(starts: Tensor, lengths: Tensor, n: int, size: int) -> tuple[Tensor, list[tuple[int, int]]]:
    """Per box, the ``(n, size)`` bilinear weights of ``n`` cell centres spanning the
    relative extent ``[start, start + length)`` of an axis of ``size`` cells
    (``F.grid_sample``'s ``align_corners=False`` positions, held at the outermost cells
    beyond them): ``(N, n, size)`` float32, each row summing to 1; and per box the span
    ``(first, stop)`` of the cells its weights touch."""
    pos = (starts[:, None] + (torch.arange(n, dtype=torch.float64) + 0.5)[None] / n * lengths[:, None]) * size - 0.5
    pos = pos.clamp(0, size - 1)
    low = pos.floor().long()
    high = (low + 1).clamp(max=size - 1)
    weight = pos - low
    matrix = torch.zeros(len(starts), n, size, dtype=torch.float64)
    matrix.scatter_add_(2, low[..., None], (1 - weight)[..., None])
    matrix.scatter_add_(2, high[..., None], weight[..., None])
    spans = list(zip(low.min(dim=1).values.tolist(), (high.max(dim=1).values + 1).tolist()))
    return matrix.float(), spans


def _sample_boxes(feature: Tensor, boxes: PatchBoxes, height: int, width: int, cache: dict | None = None) -> Tensor:
    """Each box of a feature map ``(B, C, H, W)`` sampled bilinearly on a ``height x width``
    grid of cells spanning exactly the box (cell centres at ``(i + 0.5) / height`` of the
    box's relative extent): ``(N, C, height, width)`` in the map's dtype and layout. Past
    the map's edge (boxes with ``beyond``) the map is mirrored at its edge. ``cache``: a dict
    for these boxes, keeping the sampling weights for other maps of the same size."""
    rel = boxes.rel  # top/H, left/W, h/H, w/W (float64)
    index = boxes.scene_index.tolist()
    if not boxes.beyond:
        # bilinear sampling as two small matrix products over the cells each box touches
        key = (height, width, *feature.shape[-2:], str(feature.device))
        weights = None if cache is None else cache.get(key)
        if weights is None:
            rows, row_spans = _lerp_matrix(rel[:, 0], rel[:, 2], height, feature.shape[-2])  # (N, h, H)
            cols, col_spans = _lerp_matrix(rel[:, 1], rel[:, 3], width, feature.shape[-1])  # (N, w, W)
            weights = [
                (rows[k, :, r0:r1].to(feature.device), cols[k, :, c0:c1].t().contiguous().to(feature.device), r0, r1, c0, c1)
                for k, ((r0, r1), (c0, c1)) in enumerate(zip(row_spans, col_spans))
            ]
            if cache is not None:
                cache[key] = weights
        crops = []
        if feature.dim() == 4 and feature.is_contiguous(memory_format=torch.channels_last):
            # channels-last: each row of cells is one block of (W' x C) values, so each
            # product runs over all channels at once (3x faster than per channel)
            channels = feature.shape[1]
            for b, (row_weights, col_weights, r0, r1, c0, c1) in zip(index, weights):
                cells = feature[b].permute(1, 2, 0)[r0:r1, c0:c1].float()  # (H', W', C)
                picked = torch.matmul(row_weights, cells.reshape(r1 - r0, -1)).reshape(height, c1 - c0, channels)
                crops.append(torch.matmul(col_weights.t(), picked))  # (h, w, C)
            return torch.stack(crops).to(feature.dtype).permute(0, 3, 1, 2)  # (N, C, h, w), channels-last
        for b, (row_weights, col_weights, r0, r1, c0, c1) in zip(index, weights):
            cells = feature[b, :, r0:r1, c0:c1].float()  # (C, H', W')
            picked = torch.matmul(row_weights, cells)  # (C, h, W'): the rows, per channel
            crops.append(torch.matmul(picked, col_weights))  # (C, h, w)
        return torch.stack(crops).to(feature.dtype)
    steps_y = (torch.arange(height, dtype=torch.float64) + 0.5) / height
    steps_x = (torch.arange(width, dtype=torch.float64) + 0.5) / width
    ys = (rel[:, 0:1] + steps_y[None] * rel[:, 2:3]) * 2 - 1  # grid_sample's normalised coordinates
    xs = (rel[:, 1:2] + steps_x[None] * rel[:, 3:4]) * 2 - 1
    grid = torch.stack(torch.broadcast_tensors(xs[:, None, :], ys[:, :, None]), dim=-1).float().to(feature.device)
    source = feature[boxes.scene_index.to(feature.device)]
    padding = "reflection" if boxes.beyond else "border"
    out = F.grid_sample(source.float(), grid, mode="bilinear", padding_mode=padding, align_corners=False)
    out = out.to(feature.dtype)
    if feature.dim() == 4 and feature.is_contiguous(memory_format=torch.channels_last):
        out = out.contiguous(memory_format=torch.channels_last)
    return out


def sample_global(feature: Tensor, boxes: PatchBoxes, mode: str = "bilinear") -> Tensor:
    """A global map ``(B, C, H, W)`` read at each patch's own pixels: ``(N, C, h, w)``.

    Scene pixel ``y`` of an ``S``-row scene lies at ``(y + 0.5) * H / S - 0.5`` on the map's
    grid, exactly where ``F.interpolate(feature, size=scene size, mode="bilinear",
    align_corners=False)`` samples it (edge cells held beyond the outermost cell centres).
    So overlapping patches get the same value for a shared pixel, whatever their boxes, and
    no whole-scene upsampled map is ever built. ``mode="nearest"`` takes the cell the pixel
    centre falls in (``F.interpolate``'s ``"nearest-exact"``). (:func:`crop_global` instead
    crops at whole cells, as the released code does for the features G -> L shares.)
    """
    if mode not in ("bilinear", "nearest"):
        raise ValueError(f"mode must be bilinear or nearest, got {mode!r}")
    sizes = boxes.pixels[:, 2:].unique(dim=0)
    if len(sizes) != 1:
        raise ValueError(f"sample_global needs patches of one size, got {sizes.tolist()}")
    h, w = sizes[0].tolist()
    device = feature.device
    tops, lefts = boxes.pixels[:, 0, None], boxes.pixels[:, 1, None]
    scene_h, scene_w = boxes.scene_sizes[:, 0, None], boxes.scene_sizes[:, 1, None]
    rows, cols = tops + torch.arange(h)[None], lefts + torch.arange(w)[None]  # (N, h), (N, w)
    if mode == "nearest":
        # the cell holding the pixel centre, in integers: floor((2y + 1) H / 2S)
        gh, gw = feature.shape[-2:]
        cell_rows = ((2 * rows + 1) * gh // (2 * scene_h)).clamp(max=gh - 1).to(device)
        cell_cols = ((2 * cols + 1) * gw // (2 * scene_w)).clamp(max=gw - 1).to(device)
        index = boxes.scene_index.to(device)[:, None, None]
        return feature.float()[index, :, cell_rows[:, :, None], cell_cols[:, None, :]].permute(0, 3, 1, 2).contiguous()
    # grid_sample's normalised coordinates (align_corners=False) of the pixel centres
    ys = ((2 * rows + 1).double() / scene_h.double() - 1).float().to(device)
    xs = ((2 * cols + 1).double() / scene_w.double() - 1).float().to(device)
    grid = torch.stack(torch.broadcast_tensors(xs[:, None, :], ys[:, :, None]), dim=-1)
    source = feature.float()[boxes.scene_index.to(device)]
    return F.grid_sample(source, grid, mode="bilinear", padding_mode="border", align_corners=False)


def feature_map_regularisation(local_ps3: Tensor, global_ps3: Tensor, boxes: PatchBoxes) -> Tensor:
    """GLNet's fmreg term: the mean squared difference between the local branch's ps3
    features and the global branch's ps3 cropped at each patch's box and resized to them.
    The global side is detached: the term pulls the local branch only."""
    crop = resize_like(crop_global(global_ps3, boxes), tuple(local_ps3.shape[-2:]))
    return F.mse_loss(local_ps3.float(), crop.detach().float())


def crop_global_features(context: BranchFeatures, boxes: PatchBoxes, cache: dict | None = None) -> list[Tensor]:
    """The G -> L ext features for a batch of patches: crops of all 16 sharing points (the
    maps of one size share their sampling weights; ``cache``: a dict for these boxes, to
    share them with other contexts' crops too)."""
    cache = {} if cache is None else cache
    return [crop_global(f, boxes, cache) for f in context.sharing_points()]


def _bilinear_taps(n_in: int, n_out: int, device: torch.device) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """PyTorch's bilinear resize (align_corners=False) along one axis, as its two source
    taps per output pixel: indices ``i0, i1`` and weights ``w0, w1`` (each ``(n_out,)``)."""
    scale = n_in / n_out
    dst = torch.arange(n_out, dtype=torch.float64, device=device)
    src = ((dst + 0.5) * scale - 0.5).clamp(min=0.0)
    i0 = src.floor().long().clamp(max=n_in - 1)
    i1 = (i0 + 1).clamp(max=n_in - 1)
    w1 = src - i0.double()
    return i0, i1, 1.0 - w1, w1


def _resized_indicators(start: Tensor, length: Tensor, n_in: int, n_out: int) -> Tensor:
    """``(N, n_out)``: each interval ``[start, start + length)`` of a length-``n_in`` axis
    as a 0/1 indicator, bilinearly resized to ``n_out``."""
    i0, i1, w0, w1 = _bilinear_taps(n_in, n_out, start.device)
    lo, hi = start[:, None], (start + length)[:, None]
    inside0 = ((i0[None] >= lo) & (i0[None] < hi)).double()
    inside1 = ((i1[None] >= lo) & (i1[None] < hi)).double()
    return inside0 * w0[None] + inside1 * w1[None]


def coverage_map(boxes: PatchBoxes, scene_height: int, scene_width: int, size: tuple[int, int]) -> Tensor:
    """Patches per pixel, at full scene resolution, bilinearly resized to ``size``.

    Equal to ``F.interpolate(template, size, mode="bilinear")`` where ``template`` counts the
    patches covering each scene pixel (the released code's normalisation), computed without
    the full-resolution template: memory is ``patches x size``, whatever the scene's size.
    Returns a float32 ``(H, W)`` tensor.
    """
    top, left, h, w = boxes.pixels.T
    ry = _resized_indicators(top, h, scene_height, size[0])
    rx = _resized_indicators(left, w, scene_width, size[1])
    return torch.einsum("ny,nx->yx", ry, rx).float()


class L2GCanvas:
    """Accumulates local features of one scene onto global-size canvases (L -> G).

    Build it with :meth:`like` from the global context of the scene, :meth:`add` each
    batch of local features, then pass it to ``GLNet.encode_global_l2g``, which calls
    :meth:`normalized`. Canvases hold one scene (batch size 1) per canvas object, except in
    training where :meth:`like` may take a batch of scenes and boxes carry ``scene_index``.
    """

    def __init__(self, shapes: list[torch.Size], device: torch.device, dtype: torch.dtype = torch.float32) -> None:
        self.sums = [torch.zeros(s, device=device, dtype=dtype) for s in shapes]
        # Boxes added so far as plain ints (top, left, h, w, scene h, scene w, scene index),
        # not as tensors: thousands of small tensors kept for a whole pass, allocated between
        # each batch's activations, fragmented the heap and resident memory grew with the
        # scene's patch count.
        self._rows: list[tuple[int, ...]] = []

    @classmethod
    def like(cls, context: BranchFeatures) -> "L2GCanvas":
        """Empty canvases with the sizes of ``context``'s sharing points."""
        points = context.sharing_points()
        return cls([p.shape for p in points], device=points[0].device)

    @property
    def n_patches(self) -> int:
        """Patches added so far."""
        return len(self._rows)

    def add(self, local: BranchFeatures, boxes: PatchBoxes) -> None:
        """Add a batch of patches' local features at their footprints."""
        points = local.sharing_points()
        if len(points) != N_SHARING_POINTS or len(boxes) != points[0].shape[0]:
            raise ValueError("add() needs the local features of exactly the given boxes")
        index = boxes.scene_index.tolist()
        for canvas, feat in zip(self.sums, points):
            grid = boxes.on_grid(canvas.shape[-2], canvas.shape[-1])
            feat = feat.to(canvas.dtype)
            for i, (b, (t, l, h, w)) in enumerate(zip(index, grid)):
                canvas[b, :, t : t + h, l : l + w] += F.interpolate(
                    feat[i : i + 1], size=(h, w), mode="bilinear", align_corners=False
                )[0]
        self._rows.extend(
            tuple(p) + tuple(z) + (i,)
            for p, z, i in zip(boxes.pixels.tolist(), boxes.scene_sizes.tolist(), boxes.scene_index.tolist())
        )

    def normalized(self, normalization: str = "footprint") -> list[Tensor]:
        """The canvases divided by patch coverage (zero where no patch reached).

        Args:
            normalization: ``"footprint"`` or ``"released"`` (see the module docstring).
        """
        if not self._rows:
            raise ValueError("the L->G canvas is empty: add the local features of the scene's patches first")
        rows = torch.tensor(self._rows, dtype=torch.long)
        all_boxes = PatchBoxes(rows[:, :4], rows[:, 4:6], rows[:, 6])
        out = []
        n_scenes = self.sums[0].shape[0]
        for canvas in self.sums:
            size = tuple(canvas.shape[-2:])
            cover = torch.zeros((n_scenes, 1, *size), dtype=canvas.dtype, device=canvas.device)
            for b in range(n_scenes):
                sel = all_boxes.scene_index == b
                if not sel.any():
                    continue
                if normalization == "released":
                    h, w = all_boxes.scene_sizes[sel][0].tolist()
                    cover[b, 0] = coverage_map(all_boxes[sel], h, w, size).to(canvas.device, canvas.dtype)
                elif normalization == "footprint":
                    for t, l, hh, ww in all_boxes[sel].on_grid(*size):
                        cover[b, 0, t : t + hh, l : l + ww] += 1
                else:
                    raise ValueError(f"unknown normalization {normalization!r}")
            out.append(torch.where(cover > 0, canvas / cover.clamp(min=1e-6), torch.zeros_like(canvas)))
        return out
