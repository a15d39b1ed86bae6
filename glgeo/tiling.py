"""The patch grid: where GLNet's local branch looks, and in which order.

The grid follows the released GLNet code: per axis, the smallest number ``n`` of patches of
size ``p`` that covers the scene's length ``S`` with neighbours overlapping by at least
``min_overlap`` pixels (``n >= 2`` whenever ``S > p``), evenly spaced at the stride
``(S - p) / (n - 1)``: ``start_i = round(i * stride)`` for ``i < n - 1`` and the last patch
flush with the far edge (``start = S - p``). A 2448 px DeepGlobe scene with ``p = 508``
gets 6 x 6 patches at stride 388.

A scene no larger than one patch along an axis gets one patch of size ``S`` along that axis
(the network is fully convolutional), so every patch of a grid has the same shape and
patches batch together.

The same rule lays out the *context windows* of a scene larger than a model's context
footprint (:func:`window_grid`): windows are a grid of footprint-sized tiles, each with its
own global view and its own patch grid.

Overlapping tiles are blended with :func:`taper` weights: a raised-cosine ramp across each
overlap with a neighbour, falling towards the tile's edge, flat elsewhere and at the
scene's border. Two neighbours' ramps over their shared overlap sum to one, so the blend
passes smoothly from one tile to the next instead of jumping where the overlap starts.

With an edge margin (``InferenceSettings.edge_margin``), where a context window meets the
scene's edge its patch grid reaches that far beyond it (:func:`edge_margins`), over the
scene mirrored at its edge: the scene's outer pixels then lie inside a patch, as they do
everywhere else, instead of on a patch's edge where the local branch's convolutions see
zero padding. Pixels beyond the scene are read, never kept.

The engine's default lays each context window's patches on a lattice fixed to the map
instead (:func:`anchored_axis`, ``InferenceSettings.grid_anchor``): every start a multiple
of :data:`ANCHOR_STEP` (the backbones' output stride) from a lattice point, so scenes cut
from one raster at different places compute the ground they share on the same feature
cells. The released rule above remains for ``grid_anchor="scene"``, for windows less than
a patch and a step wide, and for the context windows themselves.

Patches are listed row-major (patch row by patch row, left to right), which is also the
order of a GeoTIFF's blocks and strips: consecutive patches re-read the blocks GDAL just
cached, and a band of output rows becomes final as soon as its patch row is done, which is
what lets :mod:`glgeo.blend` stream.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Iterator

import numpy as np

from .errors import InputError, InternalError

#: Minimum overlap between neighbouring patches in the GLNet paper and released code.
DEFAULT_MIN_OVERLAP = 50


def axis_starts(length: int, patch: int, min_overlap: int = DEFAULT_MIN_OVERLAP) -> tuple[int, ...]:
    """Start offsets of the patches along one axis.

    Args:
        length: the scene's size along the axis, in pixels.
        patch: the patch size along the axis (already clipped to ``length``).
        min_overlap: the smallest overlap allowed between neighbours.

    Returns:
        The starts, increasing, the first 0 and the last ``length - patch``.
    """
    if length < 1 or patch < 1:
        raise InputError(f"scene length and patch size must be positive, got {length} and {patch}")
    if patch > length:
        raise InputError(f"patch size {patch} is larger than the scene's {length} px; clip it first")
    if not 0 <= min_overlap < patch:
        raise InputError(f"overlap {min_overlap} must be at least 0 and smaller than the patch size {patch}")
    if patch == length:
        return (0,)
    n = max(2, math.ceil((length - patch) / (patch - min_overlap)) + 1)
    stride = (length - patch) / (n - 1)
    # round half up, like the released code's int(round(...)) on positive values
    starts = [int(math.floor(i * stride + 0.5)) for i in range(n - 1)] + [length - patch]
    return tuple(starts)


@dataclass(frozen=True)
class PatchWindow:
    """One patch of a grid, in scene pixels.

    Attributes:
        index: position in the grid's row-major order.
        row: patch row in the grid.
        col: patch column in the grid.
        top: first scene row of the patch.
        left: first scene column of the patch.
        height: rows in the patch.
        width: columns in the patch.
    """

    index: int
    row: int
    col: int
    top: int
    left: int
    height: int
    width: int

    @property
    def bottom(self) -> int:
        """One past the last scene row."""
        return self.top + self.height

    @property
    def right(self) -> int:
        """One past the last scene column."""
        return self.left + self.width

    @property
    def slices(self) -> tuple[slice, slice]:
        """``(rows, cols)`` slices into a scene array."""
        return slice(self.top, self.bottom), slice(self.left, self.right)

    def intersects(self, top: int, left: int, bottom: int, right: int) -> bool:
        """Whether the patch overlaps the box (bottom/right exclusive)."""
        return self.top < bottom and self.bottom > top and self.left < right and self.right > left


@dataclass(frozen=True)
class PatchGrid:
    """The patches covering a scene.

    Build it with :meth:`for_scene`; the fields are the resolved geometry.

    Attributes:
        scene_height: scene rows.
        scene_width: scene columns.
        patch_height: rows per patch (the requested size, or the scene's height if smaller).
        patch_width: columns per patch.
        min_overlap: smallest overlap between neighbours that the grid guarantees.
        row_starts: first scene row of each patch row.
        col_starts: first scene column of each patch column.
    """

    scene_height: int
    scene_width: int
    patch_height: int
    patch_width: int
    min_overlap: int
    row_starts: tuple[int, ...]
    col_starts: tuple[int, ...]

    def __post_init__(self) -> None:
        for name, starts, size, length in (
            ("row", self.row_starts, self.patch_height, self.scene_height),
            ("column", self.col_starts, self.patch_width, self.scene_width),
        ):
            if not starts or starts[0] != 0 or starts[-1] + size != length:
                raise InputError(f"patch {name} starts {starts} do not cover a scene of {length} px with {size} px patches")
            if any(b <= a for a, b in zip(starts, starts[1:])):
                raise InputError(f"patch {name} starts must increase, got {starts}")
            if any(b - a > size for a, b in zip(starts, starts[1:])):
                raise InputError(f"patch {name} starts {starts} leave gaps between {size} px patches")

    @classmethod
    def for_scene(
        cls, height: int, width: int, patch_size: int, min_overlap: int = DEFAULT_MIN_OVERLAP
    ) -> "PatchGrid":
        """The GLNet patch grid of a ``height x width`` scene.

        Args:
            height: scene rows.
            width: scene columns.
            patch_size: the local branch's patch side (clipped to the scene per axis).
            min_overlap: minimum overlap between neighbouring patches, in pixels; clipped to
                ``patch - 1`` on an axis where the scene is smaller than ``patch + overlap``.

        Raises:
            InputError: non-positive sizes or a negative overlap.
        """
        if height < 1 or width < 1:
            raise InputError(f"the scene has no pixels ({height} x {width})")
        if patch_size < 8:
            raise InputError(f"patch size must be at least 8 px, got {patch_size}")
        if min_overlap < 0 or min_overlap >= patch_size:
            raise InputError(f"overlap must be 0 to {patch_size - 1} px for {patch_size} px patches, got {min_overlap}")
        ph, pw = min(patch_size, height), min(patch_size, width)
        return cls(
            scene_height=height,
            scene_width=width,
            patch_height=ph,
            patch_width=pw,
            min_overlap=min_overlap,
            row_starts=axis_starts(height, ph, min(min_overlap, ph - 1)),
            col_starts=axis_starts(width, pw, min(min_overlap, pw - 1)),
        )

    @property
    def n_rows(self) -> int:
        """Patch rows."""
        return len(self.row_starts)

    @property
    def n_cols(self) -> int:
        """Patch columns."""
        return len(self.col_starts)

    def __len__(self) -> int:
        return self.n_rows * self.n_cols

    @cached_property
    def windows(self) -> tuple[PatchWindow, ...]:
        """Every patch, row-major (the order of the scene's blocks)."""
        return tuple(
            PatchWindow(r * self.n_cols + c, r, c, top, left, self.patch_height, self.patch_width)
            for r, top in enumerate(self.row_starts)
            for c, left in enumerate(self.col_starts)
        )

    def __iter__(self) -> Iterator[PatchWindow]:
        return iter(self.windows)

    def __getitem__(self, index: int) -> PatchWindow:
        return self.windows[index]

    def final_rows_after(self, row: int) -> int:
        """Scene rows ``< final_rows_after(row)`` are final once patch rows ``0..row`` are done."""
        return self.row_starts[row + 1] if row + 1 < self.n_rows else self.scene_height

    def final_cols_after(self, col: int) -> int:
        """Within a patch row, columns ``< final_cols_after(col)`` are final after patch ``col``."""
        return self.col_starts[col + 1] if col + 1 < self.n_cols else self.scene_width

    @property
    def max_row_overlap(self) -> int:
        """Most rows a patch row shares with the rows below it (what must be carried over)."""
        return max(
            (top + self.patch_height - self.final_rows_after(r) for r, top in enumerate(self.row_starts[:-1])),
            default=0,
        )

    def batches(self, batch_size: int, indices: list[int] | None = None) -> Iterator[list[PatchWindow]]:
        """Patches in row-major order, ``batch_size`` at a time.

        Args:
            batch_size: patches per batch.
            indices: the patches to yield (default all), in any order: they are sorted.
        """
        if batch_size < 1:
            raise InputError(f"batch size must be at least 1, got {batch_size}")
        chosen = self.windows if indices is None else [self.windows[i] for i in sorted(set(indices))]
        for i in range(0, len(chosen), batch_size):
            yield list(chosen[i : i + batch_size])


def sub_grid(grid: PatchGrid, rows: range, cols: range) -> PatchGrid:
    """The tiles of ``grid`` in tile rows ``rows`` and columns ``cols``, as a grid of their
    own: the same sizes and spacing, its origin at the first tile's top-left corner (the
    tile at ``(row, col)`` of the result is ``grid``'s ``(rows.start + row, cols.start + col)``).

    Raises:
        InputError: an empty or out-of-range selection.
    """
    if not (0 <= rows.start < rows.stop <= grid.n_rows and 0 <= cols.start < cols.stop <= grid.n_cols):
        raise InputError(f"tile rows {rows} and columns {cols} are not within a {grid.n_rows} x {grid.n_cols} grid")
    top, left = grid.row_starts[rows.start], grid.col_starts[cols.start]
    row_starts = tuple(s - top for s in grid.row_starts[rows.start : rows.stop])
    col_starts = tuple(s - left for s in grid.col_starts[cols.start : cols.stop])
    return PatchGrid(
        scene_height=row_starts[-1] + grid.patch_height,
        scene_width=col_starts[-1] + grid.patch_width,
        patch_height=grid.patch_height,
        patch_width=grid.patch_width,
        min_overlap=grid.min_overlap,
        row_starts=row_starts,
        col_starts=col_starts,
    )


def axis_overlaps(starts: tuple[int, ...], size: int) -> tuple[tuple[int, int], ...]:
    """Per tile along one axis: pixels shared with the previous and with the next tile."""
    before = [0] + [a + size - b for a, b in zip(starts, starts[1:])]
    after = before[1:] + [0]
    return tuple(zip(before, after))


def taper(size: int, before: int, after: int) -> np.ndarray:
    """Blending weights of one tile along one axis (float32, ``size`` values in ``(0, 1]``).

    A raised-cosine ramp over the first ``before`` and the last ``after`` pixels (the
    overlaps with the neighbours), 1 in between. Sampled at pixel centres, so no weight is
    0 and the ramps of two neighbours over the same overlap sum to exactly 1. A ramp is
    never longer than half the tile, so the two ramps of a small tile do not cross.
    """
    weights = np.ones(size, dtype=np.float64)
    for length, sl in ((min(before, size // 2), slice(None)), (min(after, size // 2), slice(None, None, -1))):
        if length > 0:
            t = (np.arange(length) + 0.5) / length
            weights[sl][:length] = np.sin(0.5 * np.pi * t) ** 2
    return weights.astype(np.float32)


def tile_weights(grid: "PatchGrid", window: "PatchWindow", cut: tuple[int, int, int, int] = (0, 0, 0, 0)) -> np.ndarray:
    """``(height, width)`` float32 taper weights of one tile of ``grid`` (see :func:`taper`).

    ``cut``: ``(top, bottom, left, right)`` px at the tile's edges that it leaves to its
    neighbours (an anchored patch grid that stops short of a side inside the scene,
    :func:`anchored_axis`): weight 0 there, and the ramp across that overlap runs over what
    remains of it, so the weight still falls smoothly to 0 and the blend has no step.
    """
    weights = []
    for size, starts, index, (first, last) in (
        (grid.patch_height, grid.row_starts, window.row, cut[:2]),
        (grid.patch_width, grid.col_starts, window.col, cut[2:]),
    ):
        before, after = axis_overlaps(starts, size)[index]
        if first > before or last > after:
            raise InternalError(f"a tile can leave its neighbours only what they share: {first}/{last} of {before}/{after} px")
        axis = np.zeros(size, dtype=np.float32)
        axis[first : size - last] = taper(size - first - last, before - first, after - last)
        weights.append(axis)
    return weights[0][:, None] * weights[1][None, :]


def window_overlap(footprint: int) -> int:
    """The smallest overlap between context windows of a ``footprint`` px footprint: an
    eighth of it (at least 16 px): room for the taper to hand one window's view over to
    the next, for about 30 % more computation on large scenes (a quarter would cost 78 %)."""
    return max(16, footprint // 8)


def window_grid(height: int, width: int, footprint: int, overlap: int | None = None) -> PatchGrid:
    """The context windows of a ``height x width`` scene for a ``footprint`` px model.

    A scene no larger than the footprint is one window (the whole scene, as GLNet sees an
    image). A larger one is tiled by footprint-sized windows overlapping by at least
    ``overlap`` px, laid out like patches (:func:`axis_starts`: the fewest windows, evenly
    spaced, so on a long axis the overlaps stay close to the minimum); on an axis where the
    scene is smaller than the footprint, windows span the scene (strips).

    Args:
        height: scene rows (on the model's working grid).
        width: scene columns.
        footprint: the model's context footprint in px (:attr:`Checkpoint.footprint`).
        overlap: smallest overlap between windows (default :func:`window_overlap`).
    """
    if footprint < 8:
        raise InputError(f"the context footprint must be at least 8 px, got {footprint}")
    overlap = window_overlap(footprint) if overlap is None else overlap
    return PatchGrid.for_scene(height, width, footprint, min(max(overlap, 0), footprint - 1))


def ceded_sides(before: int, after: int, share: int, keep: int, size: int) -> tuple[int, int]:
    """``(first, last)``: the px at a context window's two ends along one axis that it
    leaves to its neighbours, so that two windows blend over ``share`` px, not over all of
    a wide overlap.

    Windows evenly spaced over a scene a little larger than their footprint overlap by
    much more than their minimum overlap (two 612 px windows over 614 px share 610). The
    pixels of such an overlap closer to the other window's centre are left to it: each of
    the two gives up half of what the overlap has beyond ``share`` (the first window the
    larger half of an odd excess), so the two blend over the overlap's middle ``share`` px
    (a grid on the map's lattice may stop less than a lattice step short of or past what
    its window keeps: :func:`anchored_axis`), and every pixel keeps at least one window
    computing it. The window's global image still covers it all; its patches cover what it
    keeps. Neither end gives up anything that would leave the window fewer than ``keep`` px
    (``keep`` at most ``size``).

    Args:
        before: px the window shares with the previous window (0: none, a scene edge).
        after: px it shares with the next window.
        share: the most px two windows blend over (:func:`window_share`).
        keep: the fewest px the window keeps (a patch and what its grid needs).
        size: the window's length along the axis.
    """
    first = (before - share) // 2 if before > share else 0
    last = -(-(after - share) // 2) if after > share else 0
    room = max(0, size - min(keep, size))  # what the window may give up in all
    if first + last > room:  # a window too small to give up that much: keep more, in proportion
        first, last = first * room // (first + last), last * room // (first + last)
    return first, last


def window_share(footprint: int, overlap: int | None = None) -> int:
    """The most px two neighbouring context windows blend over: twice their smallest
    overlap (:func:`window_overlap`; a larger ``overlap`` asked for widens it, a smaller one
    does not narrow it). Beyond it a window leaves its neighbour the pixels nearer that
    neighbour's centre (:func:`ceded_sides`)."""
    return 2 * max(window_overlap(footprint), overlap or 0)


def edge_margins(window: PatchWindow, scene_height: int, scene_width: int, margin: int) -> tuple[int, int, int, int]:
    """``(top, bottom, left, right)``: how far a context window's patch grid reaches beyond
    the scene, ``margin`` px on each side where ``window`` meets the scene's edge and 0
    where it lies inside the scene (its neighbours' views cover that side). A margin is at
    most the window's side - 1, so a mirror image has pixels to reflect."""
    if margin < 0:
        raise InputError(f"the edge margin must be 0 or more pixels, got {margin}")
    rows, cols = min(margin, window.height - 1), min(margin, window.width - 1)
    return (
        rows if window.top == 0 else 0,
        rows if window.bottom == scene_height else 0,
        cols if window.left == 0 else 0,
        cols if window.right == scene_width else 0,
    )


#: The lattice anchored patch grids start on (:func:`anchored_axis`): the backbones' output
#: stride, so a patch's feature cells fall on the same ground wherever the scene is cut.
ANCHOR_STEP = 32
#: The lattice passes this many working-grid px before the map's origin: half a step, so
#: the patches of a file whose first pixel lies on a round map coordinate (a plain image,
#: most tiles) do not start on the file's block boundaries, where GDAL's resampled reads
#: pull in a whole extra row and column of blocks (18 % slower patch reads, measured).
ANCHOR_OFFSET = ANCHOR_STEP // 2


def anchored_axis(
    phase: int,
    length: int,
    patch: int,
    min_overlap: int = DEFAULT_MIN_OVERLAP,
    min_before: int = 0,
    min_after: int = 0,
    trim: tuple[bool, bool] = (False, False),
) -> tuple[int, int, tuple[int, ...]]:
    """A context window's patch starts along one axis, on a lattice fixed to the map.

    Every start lies on the lattice of :data:`ANCHOR_STEP` px that ``phase`` (the window's
    first pixel's place on the map, counted in working-grid pixels from a lattice point:
    the engine counts from :data:`ANCHOR_OFFSET` px before the map's origin) falls on, so
    two scenes cut from one map at different places lay their patches' feature cells over
    the same ground. The grid starts ``before`` px ahead of the window's first
    pixel (less than a step, or the least step count reaching ``min_before``) and ends
    ``after`` px past its last (less than a step beyond ``min_after``); the fewest patches
    that cover it with neighbours sharing at least ``min_overlap`` px are spread evenly,
    each start rounded to the lattice. Beyond the scene the reader mirrors it; inside, the
    patches see the scene itself.

    ``trim``: whether the grid may stop short of the window's first (last) pixels, by less
    than a step, where that saves a patch: for a side inside the scene that shares more
    than a step with the neighbouring window, which then predicts those pixels alone (the
    window's taper falls to 0 before them: :func:`tile_weights` with ``cut``). ``before``
    or ``after`` is then negative.

    Returns:
        ``(before, after, starts)``, the starts counted from the grid's first pixel.

    Raises:
        InputError: a window shorter than a patch, or a patch too small to step on the
            lattice with that overlap.
    """
    if length < patch:
        raise InputError(f"an anchored grid needs a window of at least one patch ({patch} px), got {length} px")
    stride = ANCHOR_STEP * ((patch - min_overlap) // ANCHOR_STEP)  # the longest step between starts
    if stride < ANCHOR_STEP:
        raise InputError(
            f"{patch} px patches overlapping by {min_overlap} px cannot step on a {ANCHOR_STEP} px lattice; "
            "use the scene's own grid (grid_anchor='scene')"
        )
    before = phase % ANCHOR_STEP
    if min_before > before:
        before += ANCHOR_STEP * math.ceil((min_before - before) / ANCHOR_STEP)
    while 2 * before >= patch and before >= ANCHOR_STEP:  # a mirror needs more inside than beyond
        before -= ANCHOR_STEP
    options = []
    for ahead in (before, before - ANCHOR_STEP) if trim[0] and before > 0 else (before,):
        end = ahead + length
        last = ANCHOR_STEP * math.ceil((end + min_after - patch) / ANCHOR_STEP)
        while 2 * (last + patch - end) >= patch and last - ANCHOR_STEP + patch >= end:
            last -= ANCHOR_STEP
        for final in (last, last - ANCHOR_STEP) if trim[1] and last + patch > end else (last,):
            if final >= 0:  # fewest patches, then fewest window pixels left out
                short = max(0, -ahead) + max(0, end - final - patch)
                options.append((math.ceil(final / stride) + 1, short, ahead, final, end))
    n, _, before, last, end = min(options)
    spread = (math.floor(i * last / max(n - 1, 1) / ANCHOR_STEP + 0.5) for i in range(n))
    return before, last + patch - end, tuple(sorted({ANCHOR_STEP * k for k in spread}))
