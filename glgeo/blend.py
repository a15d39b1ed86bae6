"""Blending overlapping predictions without seams, streamed row band by row band.

Rules (``InferenceSettings.blend``):

* ``taper`` (the default): each patch's class logits, upsampled from the network's 1/4
  resolution to the patch's pixels, are weighted by the patch's taper
  (:func:`glgeo.tiling.taper`: a raised cosine across each overlap with a neighbour,
  falling towards the patch's edge) and the weighted sums normalised by the summed
  weights. A patch's weakest pixels (its edges, with zero padding and the least context)
  count least, and a pixel's blend passes smoothly from one patch to the next, so class
  changes do not pile up along patch edges. Context windows (scenes larger than the
  model's footprint) are blended the same way, one level up: each window's normalised
  logits weighted by the window's taper.
* ``sum``: the released GLNet code's rule: logits summed where patches overlap, each
  pixel's class the arg-max of the sum. A neighbour's edge pixels enter at full weight,
  so the sum jumps where an overlap starts; kept to reproduce the paper.

Scores (``--probabilities``) are the softmax of the normalised (weighted mean) logits.
Neither rule depends on the order tiles arrive in, so a pixel gets the same value whatever
the batch size.

Memory: tiles must arrive in the grid's row-major order. Within a tile row, columns left
of the next tile are final after each tile; rows above the next tile row are final once
the row is done. So :class:`RowBandBlender` holds only

* the current tile: ``classes x tile_height x tile_width`` float32 sums and weights (a
  large tile on the host also two scratch planes, 5 bytes per pixel, so that its weighted
  sum, arg-max and scores make no tile-sized temporary: :data:`LARGE_TILE_BYTES`),
* the rows shared with the next tile row (the vertical overlap): ``classes x overlap x
  scene_width`` sums and ``overlap x scene_width`` weights in ``carry_dtype`` (float32, or
  float16 for context windows, whose overlaps are larger), and their valid mask (one
  buffer: each column's incoming overlap is read just before its outgoing overlap is
  written there),
* one band of finished class ids: ``stride x scene_width`` uint8 (the valid mask is the
  class ids themselves: nodata is 255), with per-class scores when asked for: ``classes``
  uint8 more per pixel, or uint16 on a working grid coarser than the scene
  (:data:`SCORE_SCALES`),

that is ``O(classes x overlap x width)``, independent of the scene's height.

On a GPU the buffers are torch tensors on the network's device: logits are summed and
arg-maxed where they were computed, and only finished rows cross to the host. On a
CPU they are NumPy arrays: NumPy's single-threaded in-place operations cost less there
than torch's thread-pool dispatch for arrays this size (``docs/performance.md``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal, Sequence

import numpy as np
import torch

from .errors import InputError, InternalError
from .schemes import NODATA_ID
from .tiling import PatchGrid, PatchWindow

#: The largest score of each score type (softmax 1): ``uint8`` as written to the
#: probabilities raster, ``uint16`` inside the engine on a working grid.
SCORE_SCALES: dict[str, int] = {"uint8": 255, "uint16": 65535}

#: The score type of bands on a working grid coarser than the scene, which
#: :class:`ToSceneGrid` interpolates (uint8's steps of 1/255 would pull the borders of
#: smooth scores onto straight rows and columns).
WORKING_SCORE_DTYPE = "uint16"

#: Tiles whose class logits take more bytes than this are blended one class at a time
#: through two kept scratch planes of the tile's size (a float32 and a bool one) on the
#: host: glibc serves blocks this large (its mmap threshold stops growing at 32 MiB) with
#: fresh pages from the kernel at every allocation, and touching fresh memory cost more than
#: the arithmetic on it (a released checkpoint's 2448 px windows, 7 classes: 168 MB a
#: temporary; blending a 25 MP scene's nine took 10.8-11.9 s instead of 13.3-23.8 s,
#: docs/performance.md).
LARGE_TILE_BYTES = 32 << 20

#: How overlapping predictions are combined (see the module doc).
BlendRule = Literal["taper", "sum"]
BLEND_RULES: tuple[str, ...] = ("taper", "sum")


@dataclass(frozen=True)
class RowBand:
    """A band of final output rows, ready to be written.

    Attributes:
        row_off: first scene row of the band.
        classes: ``(rows, width)`` uint8 class ids, :data:`NODATA_ID` where invalid.
        scores: ``(classes, rows, width)`` softmax scores x 255 as uint8 (0 where invalid),
            or ``None`` when not asked for. Inside the engine, bands on a working grid
            carry them finer (:data:`WORKING_SCORE_DTYPE`, x 65535) for
            :class:`ToSceneGrid` to interpolate.
    """

    row_off: int
    classes: np.ndarray
    scores: np.ndarray | None = None

    @property
    def height(self) -> int:
        return int(self.classes.shape[0])

    @property
    def valid(self) -> np.ndarray:
        """``(rows, width)`` valid mask (class ids are below :data:`NODATA_ID` exactly there)."""
        return self.classes != NODATA_ID


class _Buffers:
    """Array helpers shared by the blenders: torch tensors on accelerators, NumPy arrays on
    the CPU (see the module doc)."""

    device: torch.device
    _gpu: bool

    def _set_device(self, device: str | torch.device) -> None:
        self.device = torch.device(device)
        self._gpu = self._use_torch(self.device)

    @staticmethod
    def _use_torch(device: torch.device) -> bool:
        return device.type != "cpu"

    def _zeros(self, shape: tuple[int, ...], dtype: str):
        if self._gpu:
            return torch.zeros(shape, dtype=getattr(torch, dtype), device=self.device)
        return np.zeros(shape, dtype=dtype)

    def _array(self, values: np.ndarray | torch.Tensor, dtype: str):
        """``values`` as this blender's array type (a view where possible)."""
        if self._gpu:
            if isinstance(values, np.ndarray):
                values = torch.from_numpy(values)
            return values.to(device=self.device, dtype=getattr(torch, dtype), non_blocking=True)
        if isinstance(values, torch.Tensor):
            values = values.detach().cpu().numpy()
        return values.astype(dtype, copy=False)

    def _host(self, values) -> np.ndarray:
        return values.cpu().numpy().copy() if self._gpu else values.copy()

    def _nbytes(self, arrays) -> int:
        return sum(a.numel() * a.element_size() if self._gpu else a.nbytes for a in arrays if a is not None)


class RowBandBlender(_Buffers):
    """Blends overlapping tiles' logits and emits final row bands (see the module doc).

    The tiles are a grid's patches, or a scene's context windows.

    Args:
        grid: the tile grid; tiles must be added in its row-major order, each exactly once
            (skipped ones too, with ``logits=None``).
        n_classes: classes predicted.
        emit: called with each :class:`RowBand` as soon as it is final, top to bottom.
        scores: also emit per-class scores.
        score_dtype: their type, ``uint8`` (softmax x 255, as written) or ``uint16``
            (softmax x 65535, for :class:`ToSceneGrid`).
        fill_class: class of valid pixels that no computed tile covered (coarse-to-fine
            skips patches outside the foreground box: those pixels are background, 0).
        device: where the sums live (the device the logits are computed on).
        carry_dtype: the sums kept for the rows shared with the next tile row
            (``float32``; ``float16`` halves the width-dependent memory).
        row_spans: per tile row, the rows of its tiles that may carry weight, ``(first,
            end)`` counted from the tile's top (default: all of them). The rows before
            ``first`` and from ``end`` on are left to the tile rows above and below (the
            engine's context windows that leave part of a wide overlap to their neighbour,
            :func:`glgeo.tiling.ceded_sides`): rows that only the tile row above weights are
            final once it is done, and only the rows two tile rows both weight are carried.
            The first tile row's rows above its span and the last one's below it are emitted
            as covered by no tile.
    """

    def __init__(
        self,
        grid: PatchGrid,
        n_classes: int,
        emit: Callable[[RowBand], None],
        scores: bool = False,
        fill_class: int = 0,
        device: str | torch.device = "cpu",
        carry_dtype: str = "float32",
        score_dtype: str = "uint8",
        row_spans: Sequence[tuple[int, int]] | None = None,
    ) -> None:
        if score_dtype not in SCORE_SCALES:
            raise InternalError(f"score dtype must be one of {', '.join(SCORE_SCALES)}, got {score_dtype!r}")
        if n_classes < 1 or n_classes > NODATA_ID:
            raise InputError(f"cannot blend {n_classes} classes: use 1-{NODATA_ID}")
        if not 0 <= fill_class < n_classes:
            raise InputError(f"fill class {fill_class} is not one of the {n_classes} classes")
        self.grid = grid
        self.n_classes = n_classes
        self.emit = emit
        self.scores = scores
        self.fill_class = fill_class
        self._set_device(device)
        ph, pw, width = grid.patch_height, grid.patch_width, grid.scene_width
        self._spans = [(0, ph)] * grid.n_rows if row_spans is None else [tuple(span) for span in row_spans]
        if len(self._spans) != grid.n_rows or any(not 0 <= a <= b <= ph for a, b in self._spans):
            raise InternalError(f"row spans {self._spans} do not fit {grid.n_rows} tile rows of {ph} px")
        carried = [self._carried_after(r) for r in range(grid.n_rows)]
        if min(carried) < 0:
            r = carried.index(min(carried))
            raise InternalError(f"rows between tile rows {r} and {r + 1} are weighted by neither (row spans {self._spans[r:r + 2]})")
        overlap = max(carried)
        stride = max(self._final_after(r) - self._band_start(r) for r in range(grid.n_rows))
        self._work = self._zeros((n_classes, ph, pw), "float32")
        self._work_weight = self._zeros((ph, pw), "float32")
        self._work_valid = self._zeros((ph, pw), "bool")
        # large tiles on the host: scratch planes for their weighted logits and arg-max
        large = not self._gpu and n_classes * ph * pw * 4 > LARGE_TILE_BYTES
        self._plane = np.empty((ph, pw), np.float32) if large else None
        self._higher = np.empty((ph, pw), bool) if large else None
        # the current tile row's rows shared with the previous row (read) / next row (written)
        self._carry = self._zeros((n_classes, overlap, width), carry_dtype)
        self._carry_weight = self._zeros((overlap, width), carry_dtype)
        self._carry_valid = self._zeros((overlap, width), "bool")
        self._carry_rows = 0
        self._band = self._zeros((stride, width), "uint8")
        self._band[:] = NODATA_ID
        self.score_dtype = score_dtype
        self._score_max = SCORE_SCALES[score_dtype]
        # torch has no arithmetic on uint16: int32 on accelerators, uint16 on the host
        held = "int32" if self._gpu and score_dtype == "uint16" else score_dtype
        self._band_scores = self._zeros((n_classes, stride, width), held) if scores else None
        self._fill_scores = self._zeros((n_classes, 1, 1), held)
        self._fill_scores[fill_class] = self._score_max
        self._next = 0

    # ----------------------------------------------------------------- API
    @property
    def patches_added(self) -> int:
        """Tiles added so far (the next expected index)."""
        return self._next

    def _band_start(self, row: int) -> int:
        """The first scene row tile row ``row`` emits (the rows above are final before it)."""
        return 0 if row == 0 else self._final_after(row - 1)

    def _final_after(self, row: int) -> int:
        """Scene rows ``< _final_after(row)`` are final once tile rows ``0..row`` are done:
        those above the next tile row's span."""
        first = self._spans[row + 1][0] if row + 1 < self.grid.n_rows else 0
        return self.grid.final_rows_after(row) + first

    def _carried_after(self, row: int) -> int:
        """Rows tile row ``row`` weights that the next one weights too (carried over)."""
        if row + 1 == self.grid.n_rows:
            return 0
        return self.grid.row_starts[row] + self._spans[row][1] - self._final_after(row)

    @property
    def nbytes(self) -> int:
        """Bytes held by the blender's buffers (the memory bound, measured)."""
        return self._nbytes([
            self._work, self._work_weight, self._work_valid, self._plane, self._higher,
            self._carry, self._carry_weight, self._carry_valid,
            self._band, self._band_scores,
        ])  # fmt: skip

    def add(
        self,
        window: PatchWindow,
        logits: np.ndarray | torch.Tensor | None,
        valid: np.ndarray | torch.Tensor,
        weight: np.ndarray | torch.Tensor | None = None,
    ) -> None:
        """Add the next tile.

        Args:
            window: the tile; must be the grid's next one.
            logits: ``(classes, h, w)`` logits at the tile's full resolution, or ``None``
                for a tile that was not computed (all nodata, or outside the
                coarse-to-fine box).
            valid: ``(h, w)`` valid mask of the tile.
            weight: ``(h, w)`` blending weights (:func:`glgeo.tiling.tile_weights`; 0
                where the tile has no prediction), or ``None`` for 1 everywhere (the
                released rule's plain sum).
        """
        if window.index != self._next:
            raise InternalError(f"tiles must be added in grid order: expected #{self._next}, got #{window.index}")
        ph, pw = self.grid.patch_height, self.grid.patch_width
        if logits is not None:
            if tuple(logits.shape) != (self.n_classes, ph, pw):
                raise InternalError(f"tile logits have shape {tuple(logits.shape)}; expected {(self.n_classes, ph, pw)}")
            logits = self._array(logits, "float32")
            if weight is None:
                self._work += logits
                self._work_weight += 1.0
            else:
                weight = self._array(weight, "float32")
                if self._plane is None:
                    self._work += logits * weight[None]
                else:  # one class at a time through the kept plane (the same sums)
                    for work, plane in zip(self._work, logits):
                        work += np.multiply(plane, weight, out=self._plane)
                self._work_weight += weight
        self._work_valid |= self._array(valid, "bool")
        self._next += 1

        # columns [left, next_left) of this tile row are now final
        right = self.grid.final_cols_after(window.col)
        span = right - window.left
        self._finish_columns(window, span)
        # shift the working window to the next tile's left edge
        keep = pw - span
        if keep > 0 and self._gpu:
            for buffer in (self._work, self._work_weight, self._work_valid):
                buffer[..., :keep] = buffer[..., span:].clone()
        elif keep > 0:  # a plane at a time: NumPy copies a source that may overlap its target first
            for plane in (*self._work, self._work_weight, self._work_valid):
                plane[:, :keep] = plane[:, span:]
        for buffer, empty in ((self._work, 0.0), (self._work_weight, 0.0), (self._work_valid, False)):
            buffer[..., keep:] = empty

        if window.col == self.grid.n_cols - 1:
            self._finish_row(window.row)

    def _finish_columns(self, window: PatchWindow, span: int) -> None:
        cols = slice(window.left, window.left + span)
        sums = self._work[:, :, :span]
        weight = self._work_weight[:, :span]
        valid = self._work_valid[:, :span]
        # the tile's rows from the first one not final yet (those above: the tile row
        # above's, which this tile does not weight) to the last one it weights
        first = self._band_start(window.row) - window.top
        n_in = self._carry_rows
        if n_in:  # read this column's incoming overlap before writing its outgoing one
            sums[:, first : first + n_in] += self._carry[:, :n_in, cols]
            weight[first : first + n_in] += self._carry_weight[:n_in, cols]
            valid[first : first + n_in] |= self._carry_valid[:n_in, cols]
        final = self._final_after(window.row) - window.top
        self._write_band(sums[:, first:final], weight[first:final], valid[first:final], cols)
        rest = self._carried_after(window.row)
        if rest > 0:
            self._carry[:, :rest, cols] = sums[:, final : final + rest]
            self._carry_weight[:rest, cols] = weight[final : final + rest]
            self._carry_valid[:rest, cols] = valid[final : final + rest]

    def _write_band(self, sums, weight, valid, cols: slice) -> None:
        rows = sums.shape[1]
        covered = weight > 0
        if self._gpu:
            classes = torch.where(covered, sums.argmax(dim=0), self.fill_class).to(torch.uint8)
            classes.masked_fill_(~valid, NODATA_ID)
        elif self._plane is None:
            classes = np.where(covered, sums.argmax(axis=0), self.fill_class).astype(np.uint8)
            classes[~valid] = NODATA_ID
        else:
            classes = self._highest_class(sums)
            np.copyto(classes, np.uint8(self.fill_class), where=~covered)
            np.copyto(classes, np.uint8(NODATA_ID), where=~valid)
        self._band[:rows, cols] = classes
        if self._band_scores is not None and self._plane is not None:
            self._scores_in_place(self._band_scores[:, :rows, cols], sums, weight, covered, valid)
        elif self._band_scores is not None:
            self._band_scores[:, :rows, cols] = self._scores(sums, weight, covered, valid)

    def _highest_class(self, sums: np.ndarray) -> np.ndarray:
        """``sums.argmax(axis=0)`` as uint8 (the first class where several tie), one class at
        a time through the kept planes, for large tiles: NumPy's arg-max over the first axis
        copies the sums into a transposed temporary and returns int64. The sums are finite
        (the engine redoes non-finite logits in fp32, or stops)."""
        rows, cols = sums.shape[1:]
        best, higher = self._plane[:rows, :cols], self._higher[:rows, :cols]
        classes = np.zeros((rows, cols), np.uint8)
        np.copyto(best, sums[0])
        for c in range(1, sums.shape[0]):
            np.greater(sums[c], best, out=higher)
            np.copyto(classes, np.uint8(c), where=higher)
            np.maximum(best, sums[c], out=best)
        return classes

    def _scores_in_place(self, out: np.ndarray, sums: np.ndarray, weight, covered, valid) -> None:
        """:meth:`_scores` of a large tile into ``out``, computed in ``sums`` (finished rows,
        not read again) a class at a time with the kept plane: the same operations in the
        same order, so the same scores, without window-sized temporaries."""
        rows, cols = sums.shape[1:]
        plane = self._plane[:rows, :cols]
        np.copyto(plane, weight)
        np.copyto(plane, np.float32(1.0), where=~covered)
        for c in sums:
            c /= plane
        np.max(sums, axis=0, out=plane)
        for c in sums:
            c -= plane
        np.exp(sums, out=sums)
        np.sum(sums, axis=0, out=plane)
        for c in sums:
            c /= plane
            c *= np.float32(self._score_max)
            np.rint(c, out=c)
        uncovered, invalid = ~covered, ~valid
        for target, c, fill in zip(out, sums, self._fill_scores[:, 0, 0]):
            np.copyto(target, c, casting="unsafe")
            np.copyto(target, fill, where=uncovered)
            np.copyto(target, 0, where=invalid)

    def _scores(self, sums, weight, covered, valid):
        """Softmax of the normalised logits x the score scale; the fill class where nothing
        was computed."""
        if self._gpu:
            mean = sums / torch.where(covered, weight, 1.0)[None]
            scores = torch.round(torch.softmax(mean, dim=0) * float(self._score_max)).to(self._fill_scores.dtype)
            scores = torch.where(covered[None], scores, self._fill_scores)
            return scores.masked_fill_(~valid[None], 0)
        mean = sums / np.where(covered, weight, 1.0)[None]
        mean -= mean.max(axis=0, keepdims=True)
        np.exp(mean, out=mean)
        mean /= mean.sum(axis=0, keepdims=True)
        scores = np.rint(mean * float(self._score_max)).astype(self.score_dtype)
        scores = np.where(covered[None], scores, self._fill_scores)
        scores[:, ~valid] = 0
        return scores

    def _finish_row(self, row: int) -> None:
        top = self._band_start(row)
        rows = self._final_after(row) - top
        # every column wrote its outgoing overlap: the next row reads that many rows
        self._carry_rows = self._carried_after(row)
        if self._gpu:
            band = RowBand(
                row_off=top,
                classes=self._host(self._band[:rows]),
                scores=None if self._band_scores is None else self._host(self._band_scores[:, :rows]).astype(self.score_dtype),
            )
            self._band[:] = NODATA_ID
            self.emit(band)
            return
        # on the host the band's own buffers go out (no copy: one band in memory, not two)
        # and fresh ones take their place once the sink is done with them
        band = RowBand(top, self._band[:rows], None if self._band_scores is None else self._band_scores[:, :rows])
        shapes = self._band.shape, None if self._band_scores is None else self._band_scores.shape
        self._band = self._band_scores = None
        self.emit(band)
        del band
        self._band = np.full(shapes[0], NODATA_ID, dtype=np.uint8)
        self._band_scores = None if shapes[1] is None else np.zeros(shapes[1], dtype=self.score_dtype)

    @property
    def done(self) -> bool:
        """Whether every tile of the grid was added (and every row emitted)."""
        return self._next == len(self.grid)


class WindowAccumulator(_Buffers):
    """One context window's patch predictions, blended in a window-sized buffer.

    The patches of a window are blended exactly as :class:`RowBandBlender` blends a
    scene's (same rule, same weights); :meth:`result` then gives the window's normalised
    logits, for the scene-level :class:`RowBandBlender` over the windows. Memory:
    ``(classes + 2) x window_height x window_width`` float32, bounded by the model's
    footprint.

    Args:
        height: window rows.
        width: window columns.
        n_classes: classes predicted.
        device: where the sums live.
    """

    def __init__(self, height: int, width: int, n_classes: int, device: str | torch.device = "cpu") -> None:
        self._set_device(device)
        self.n_classes = n_classes
        self._sums = self._zeros((n_classes, height, width), "float32")
        self._weight = self._zeros((height, width), "float32")
        self._valid = self._zeros((height, width), "bool")

    @property
    def nbytes(self) -> int:
        """Bytes held by the buffers."""
        return self._nbytes([self._sums, self._weight, self._valid])

    def reset(self) -> None:
        """Empty the buffers for the next window (of the same shape)."""
        self._sums[:] = 0.0
        self._weight[:] = 0.0
        self._valid[:] = False

    def add(self, window: PatchWindow, logits, valid, weight=None) -> None:
        """Add a patch (``window`` in the window's own pixel coordinates); arguments as
        :meth:`RowBandBlender.add`."""
        rows, cols = window.slices
        if logits is not None:
            logits = self._array(logits, "float32")
            if weight is None:
                self._sums[:, rows, cols] += logits
                self._weight[rows, cols] += 1.0
            else:
                weight = self._array(weight, "float32")
                self._sums[:, rows, cols] += logits * weight[None]
                self._weight[rows, cols] += weight
        self._valid[rows, cols] |= self._array(valid, "bool")

    def result(self, weight: np.ndarray | None = None, inside: tuple[slice, slice] | None = None):
        """``(logits, valid, weight)`` of the window, for :meth:`RowBandBlender.add`: its
        normalised logits, where the scene has data, and ``weight`` (the window's taper;
        ``None``: 1) where a patch was computed, 0 elsewhere. ``inside``: the window's rows
        and columns in the buffer (default: all of it), when its patch grid reached beyond
        them (edge margins, or a buffer larger than this window's grid). The arrays are the
        accumulator's own: use them before :meth:`reset`."""
        rows, cols = inside or (slice(None), slice(None))
        sums, weights, valid = self._sums[:, rows, cols], self._weight[rows, cols], self._valid[rows, cols]
        covered = weights > 0
        if self._gpu:
            sums /= torch.where(covered, weights, 1.0)[None]
        else:
            sums /= np.where(covered, weights, 1.0)[None]
        taper = covered.to(torch.float32) if self._gpu else covered.astype(np.float32)
        if weight is not None:
            taper *= self._array(weight, "float32")
        return sums, valid, taper


def _axis_taps(working: int, scene: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per scene pixel along one axis: the working pixel its centre falls in, and the two
    working pixels and weight of bilinear interpolation between working pixel centres
    (``align_corners=False``, clamped at the edges, as ``torch.nn.functional.interpolate``)."""
    centres = (np.arange(scene) + 0.5) * (working / scene)
    nearest = np.minimum(working - 1, centres.astype(np.int64))
    pos = np.clip(centres - 0.5, 0, working - 1)
    low = np.floor(pos).astype(np.int64)
    high = np.minimum(low + 1, working - 1)
    return nearest, low, high, (pos - low).astype(np.float32)


def first_working_pixel(working: int, scene: int) -> np.ndarray:
    """Per scene pixel along one axis, the first working pixel :class:`ToSceneGrid` reads
    for it (the lower bilinear tap; the nearest pixel is it or the next)."""
    return _axis_taps(working, scene)[1]


def _highest(mixed: np.ndarray, nearest: np.ndarray) -> np.ndarray:
    """The class of the highest interpolated score per pixel (``mixed``: classes first);
    where no tap had a score (invalid working pixels), the ``nearest`` working pixel's."""
    return np.where(mixed.max(axis=0) > 0, mixed.argmax(axis=0), nearest).astype(np.uint8)


class ToSceneGrid:
    """Row bands of a coarser working grid put back on the scene's own grid.

    A model trained on scenes read at a fraction of their resolution predicts on a working
    grid (:func:`glgeo.io.working_grid`). With ``interpolation="bilinear"`` (the default, as
    patch logits reach their pixels) the per-class scores are interpolated bilinearly between
    working pixel centres and each scene pixel takes the class of the highest, so class
    borders run smoothly through the scene's pixels instead of in working-pixel steps; the
    incoming bands must carry scores. With ``"nearest"`` each scene pixel takes the class
    (and scores) of the working pixel its centre falls in. Either way the scene's own
    full-resolution valid mask is applied again, so nodata edges keep the scene's pixel
    detail. Bands go out top to bottom in slices of at most about ``max_bytes``; bilinear
    rows wait for the first working row below them, so only one working row is held back.

    Args:
        working: ``(rows, cols)`` of the working grid.
        scene: ``(rows, cols)`` of the scene.
        emit: called with each scene-grid :class:`RowBand`.
        source_valid: ``source_valid(row_off, rows)``: the scene's valid mask for those rows,
            or ``None`` when every pixel is valid.
        interpolation: ``bilinear`` or ``nearest``.
        scores: whether the emitted bands carry scores (bilinear: interpolated).
        max_bytes: bound on one emitted slice's arrays.
        box: ``(top, left, bottom, right)``: emit only these scene pixels (a block of a
            split scene, :mod:`glgeo.split`); the bands then start at the first working
            row the box's rows read and hold the working columns from the first one its
            columns read (:func:`first_working_pixel`); ``source_valid`` still gives
            whole scene rows. ``None``: the whole scene.
        score_dtype: the incoming scores' type (:data:`SCORE_SCALES`; the engine gives
            :data:`WORKING_SCORE_DTYPE`); emitted scores are uint8 x 255 whatever comes in.
    """

    def __init__(
        self,
        working: tuple[int, int],
        scene: tuple[int, int],
        emit: Callable[[RowBand], None],
        source_valid: Callable[[int, int], np.ndarray] | None = None,
        interpolation: str = "bilinear",
        scores: bool = False,
        max_bytes: int = 16 << 20,
        box: tuple[int, int, int, int] | None = None,
        score_dtype: str = "uint8",
    ) -> None:
        if interpolation not in ("bilinear", "nearest"):
            raise InputError(f"interpolation must be bilinear or nearest, got {interpolation!r}")
        top, left, bottom, right = box or (0, 0, scene[0], scene[1])
        self.rows = _axis_taps(working[0], scene[0])
        # the box's columns, counted from the first working column they read
        first = int(first_working_pixel(working[1], scene[1])[left])
        self.cols = tuple(a[left:right] - first if a.dtype.kind == "i" else a[left:right] for a in _axis_taps(working[1], scene[1]))
        self.scene = (scene[0], right - left)
        self.emit = emit
        self.source_valid = source_valid
        self.interpolation = interpolation
        self.scores = scores
        self.max_bytes = max_bytes
        if score_dtype not in SCORE_SCALES:
            raise InternalError(f"score dtype must be one of {', '.join(SCORE_SCALES)}, got {score_dtype!r}")
        self.score_dtype = score_dtype
        self._score_max = SCORE_SCALES[score_dtype]
        self._box = (top, left, bottom, right)
        self._next = top  # next scene row to emit
        self._held: RowBand | None = None  # the last working row received (bilinear)

    def __call__(self, band: RowBand) -> None:
        if self.interpolation == "nearest":
            self._nearest(band)
            return
        if band.scores is None:
            raise InputError("bilinear interpolation onto the scene grid needs bands with scores")
        stop = band.row_off + band.height
        _, low, high, _ = self.rows
        end = int(np.searchsorted(high, stop - 1, side="right"))  # rows whose taps have arrived
        if self._held is not None:
            # the scene rows between the working row held back and this band's first: from a
            # two-row band of those two rows (no copy of the whole band)
            split = min(end, int(np.searchsorted(low, band.row_off, side="left")))
            if split > self._next:
                joint = RowBand(
                    self._held.row_off,
                    np.concatenate([self._held.classes, band.classes[:1]]),
                    np.concatenate([self._held.scores, band.scores[:, :1]], axis=1),
                )
                self._emit_rows(joint, self._next, split)
                self._next = split
        self._emit_rows(band, self._next, end)
        self._next = end
        self._held = RowBand(stop - 1, band.classes[-1:].copy(), band.scores[:, -1:].copy())

    def _emit_rows(self, band: RowBand, top: int, end: int) -> None:
        """Scene rows ``top .. end`` from ``band``, in slices of about ``max_bytes``."""
        per_row = 3 * band.scores.shape[0] * 4 * self.scene[1]  # float32 scores and temporaries
        step = max(1, self.max_bytes // per_row)
        for row in range(top, end, step):
            self._emit_bilinear(band, row, min(row + step, end))

    def _nearest(self, band: RowBand) -> None:
        first, stop = band.row_off, band.row_off + band.height
        nearest_rows, nearest_cols = self.rows[0], self.cols[0]
        top, end = (int(i) for i in np.searchsorted(nearest_rows, [first, stop]))
        layers = 1 + (0 if band.scores is None or not self.scores else band.scores.shape[0])
        step = max(1, self.max_bytes // (layers * self.scene[1]))
        for row in range(top, end, step):
            rows = nearest_rows[row : min(row + step, end)] - first
            classes = band.classes[rows][:, nearest_cols]
            scores = None
            if self.scores and band.scores is not None:
                scores = self._uint8(band.scores[:, rows][:, :, nearest_cols])
            self._finish(row, classes, scores)

    def _emit_bilinear(self, band: RowBand, top: int, bottom: int) -> None:
        nearest_r, low_r, high_r, wr = (a[top:bottom] for a in self.rows)
        nearest_c, low_c, high_c, wc = self.cols
        # the working rows these scene rows interpolate between (about four scene rows share each)
        first, last = int(low_r[0]), int(high_r[-1])
        window = slice(first - band.row_off, last - band.row_off + 1)
        lr, hr = low_r - first, high_r - first
        if self.scores:  # every pixel's scores: interpolate them all
            rows = band.scores[:, window].astype(np.float32)
            across = rows[:, :, low_c] * (1 - wc) + rows[:, :, high_c] * wc
            w = wr[None, :, None]
            mixed = across[:, lr] * (1 - w) + across[:, hr] * w
            # beside no data, taps on invalid working pixels (all scores 0) drew the mix
            # below the full scale: the valid taps' mix, scaled to it again
            total = mixed.sum(axis=0, keepdims=True)
            partial = (total > 0) & (total < 0.99 * self._score_max)
            if partial.any():
                np.divide(mixed * float(self._score_max), total, out=mixed, where=partial)
            scores = self._uint8(mixed)
            nearest = band.classes[nearest_r - band.row_off][:, nearest_c]
            self._finish(top, _highest(mixed, nearest), scores)
            return
        # Only the class is wanted: where a pixel's four taps share one class, that class
        # has the highest score at each tap and so in their mix; interpolate the others.
        near = band.classes[window]
        upper, lower = near[lr], near[hr]
        classes = upper[:, low_c]
        mixed_taps = (classes != upper[:, high_c]) | (classes != lower[:, low_c]) | (classes != lower[:, high_c])
        ri, ci = np.nonzero(mixed_taps)
        if len(ri):
            source = band.scores[:, window]
            wy, wx = wr[ri], wc[ci]

            def tap(r: np.ndarray, c: np.ndarray) -> np.ndarray:
                return source[:, r, c].astype(np.float32)

            mixed = (tap(lr[ri], low_c[ci]) * (1 - wx) + tap(lr[ri], high_c[ci]) * wx) * (1 - wy) + (
                tap(hr[ri], low_c[ci]) * (1 - wx) + tap(hr[ri], high_c[ci]) * wx
            ) * wy
            nearest = band.classes[nearest_r[ri] - band.row_off, nearest_c[ci]]
            classes[ri, ci] = _highest(mixed, nearest)
        self._finish(top, classes, None)

    def _uint8(self, scores: np.ndarray) -> np.ndarray:
        """Scores of the incoming scale as the written uint8 x 255."""
        if self._score_max == 255:
            return scores if scores.dtype == np.uint8 else np.rint(scores).astype(np.uint8)
        return np.rint(scores.astype(np.float32) * (255.0 / self._score_max)).astype(np.uint8)

    def _finish(self, row: int, classes: np.ndarray, scores: np.ndarray | None) -> None:
        top, left, bottom, right = self._box
        start, stop = max(row, top), min(row + classes.shape[0], bottom)
        if stop <= start:
            return
        if (start, stop) != (row, row + classes.shape[0]):  # rows beyond the box
            classes = classes[start - row : stop - row]
            scores = None if scores is None else scores[:, start - row : stop - row]
            row = start
        if self.source_valid is not None:
            invalid = ~self.source_valid(row, classes.shape[0])[:, left:right]
            classes[invalid] = NODATA_ID
            if scores is not None:
                scores[:, invalid] = 0
        self.emit(RowBand(row, classes, scores))
