"""PIL's bilinear resize of 8-bit images, bit for bit, read from a raster a band of rows at
a time.

The released GLNet code makes its global image with ``PIL.Image.resize(size,
Image.BILINEAR)`` of the 8-bit scene: an antialiased triangle filter whose coefficients
Pillow rounds to fixed point (22 fractional bits) and whose two passes (columns first,
then rows) each round to 8 bits. GDAL's bilinear read (glgeo's default global image)
applies the same filter in floating point, so the two differ by up to one grey level.
:func:`resize_rows` repeats Pillow's arithmetic (``libImaging/Resample.c``: the
coefficients, their rounding, the order of the passes and their rounding) without holding
the image: it reads the scene a band of rows at a time (``max_pixels`` bounds a band, read
or through the horizontal pass) and adds each band to the output rows it reaches, so its
memory does not grow with the scene. The passes run in the order every Pillow before
version 13 ran them, the one the released models were trained with; Pillow 13 runs the
vertical pass first where the height shrinks much more than the width (one grey level
apart on some pixels). The tests compare it with Pillow on images of many sizes, bit for
bit.

Example:
    >>> import numpy as np
    >>> image = np.arange(48, dtype=np.uint8).reshape(1, 6, 8)
    >>> resize_rows(lambda rows, cols: image[:, rows, cols], (6, 8), (3, 4)).shape
    (1, 3, 4)
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

__all__ = ["PRECISION_BITS", "coefficients", "resize_rows"]

#: Pillow's fixed-point precision for 8-bit images (``32 - 8 - 2``).
PRECISION_BITS = 22


def coefficients(in_size: int, in0: float, in1: float, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pillow's bilinear taps from ``[in0, in1)`` of an axis of ``in_size`` pixels onto
    ``out_size`` pixels (``precompute_coeffs`` then ``normalize_coeffs_8bpc``).

    Returns:
        ``(first, count, weights)``: each output pixel's first input pixel and number of
        taps, and the ``(out_size, taps)`` int64 weights in fixed point (0 past ``count``).
    """
    in0, in1 = np.float32(in0), np.float32(in1)  # Pillow takes the box as C floats
    scale = float(np.float32(in1 - in0)) / out_size
    filterscale = max(scale, 1.0)
    support = 1.0 * filterscale  # the bilinear (triangle) filter's support is 1
    taps = int(math.ceil(support)) * 2 + 1
    first = np.zeros(out_size, np.int64)
    count = np.zeros(out_size, np.int64)
    weights = np.zeros((out_size, taps), np.float64)
    for xx in range(out_size):
        center = float(in0) + (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)  # C's cast truncates towards zero
        xmax = min(int(center + support + 0.5), in_size) - xmin
        ss = 1.0 / filterscale
        w = 1.0 - np.abs((np.arange(max(xmax, 0)) + xmin - center + 0.5) * ss)
        w = np.where(w > 0, w, 0.0)
        total = 0.0
        for value in w:  # summed in order, as Pillow sums them
            total += value
        if total != 0.0:
            w = w / total
        first[xx], count[xx] = xmin, max(xmax, 0)
        weights[xx, : len(w)] = w
    scaled = weights * (1 << PRECISION_BITS)
    fixed = np.where(weights < 0, (-0.5 + scaled).astype(np.int64), (0.5 + scaled).astype(np.int64))  # C's cast
    return first, count, fixed


def _horizontal(values: np.ndarray, first: np.ndarray, fixed: np.ndarray, offset: int) -> np.ndarray:
    """Pillow's horizontal pass over ``(bands, rows, cols)`` uint8 ``values`` whose first
    column is ``offset`` of the image's: ``(bands, rows, outputs)`` uint8, rounded as
    Pillow rounds it."""
    index = np.clip(first[:, None] - offset + np.arange(fixed.shape[1])[None], 0, values.shape[2] - 1)
    acc = np.full(values.shape[:2] + (len(first),), 1 << (PRECISION_BITS - 1), np.int64)
    for k in range(fixed.shape[1]):  # past a pixel's taps the weight is 0: the clipped index adds nothing
        if fixed[:, k].any():
            acc += values[:, :, index[:, k]].astype(np.int64) * fixed[None, None, :, k]
    return np.clip(acc >> PRECISION_BITS, 0, 255).astype(np.uint8)


def resize_rows(
    read: Callable[[slice, slice], np.ndarray],
    shape: tuple[int, int],
    size: tuple[int, int],
    box: tuple[float, float, float, float] | None = None,
    max_pixels: int = 4_000_000,
) -> np.ndarray:
    """``PIL.Image.resize((size[1], size[0]), Image.BILINEAR, box=box)`` of an 8-bit image
    of ``shape`` ``(rows, cols)``, read through ``read`` a band of rows at a time, bit for
    bit.

    The horizontal pass is computed band by band and each band's rows are added, in
    Pillow's fixed point, to the output rows they reach: integer sums, so the order does
    not change them.

    Args:
        read: ``read(rows, cols)`` gives the image's ``(bands, rows, cols)`` uint8 pixels
            in those slices (a windowed read of a raster).
        shape: the image's ``(rows, cols)``.
        size: the output's ``(rows, cols)``.
        box: ``(left, top, right, bottom)`` of the image to resize, in its pixels (may be
            fractional); ``None``: the whole image.
        max_pixels: pixels per band of rows, read or out of the horizontal pass (at least one row).

    Returns:
        ``(bands, rows, cols)`` uint8.
    """
    height, width = shape
    out_h, out_w = size
    left, top, right, bottom = box if box is not None else (0, 0, width, height)
    # Pillow skips a pass that would not change its axis (libImaging/Resample.c, ImagingResampleInner)
    horizontal = out_w != width or left != 0 or right != out_w
    vertical = out_h != height or top != 0 or bottom != out_h
    cols = coefficients(width, left, right, out_w) if horizontal else None
    rws = coefficients(height, top, bottom, out_h) if vertical else None
    col_lo, col_hi = (int(cols[0].min()), int((cols[0] + cols[1]).max())) if cols else (0, width)
    row_lo, row_hi = (int(rws[0].min()), int((rws[0] + rws[1]).max())) if rws else (0, height)
    # a band's read and, where a narrow scene is widened, its horizontal pass (int64) stay bounded
    step = max(1, max_pixels // max(1, col_hi - col_lo, out_w if cols is not None else 0))
    acc = None
    done = []
    for a in range(row_lo, row_hi, step):
        b = min(row_hi, a + step)
        values = read(slice(a, b), slice(col_lo, col_hi))
        if cols is not None:
            values = _horizontal(values, cols[0], cols[2], col_lo)
        if rws is None:
            done.append(values)
            continue
        if acc is None:
            acc = np.full((values.shape[0], out_h, values.shape[2]), 1 << (PRECISION_BITS - 1), np.int64)
        first, count, fixed = rws
        for k in range(fixed.shape[1]):
            row = first + k
            hit = np.flatnonzero((k < count) & (row >= a) & (row < b))
            if hit.size:
                acc[:, hit] += values[:, row[hit] - a].astype(np.int64) * fixed[hit, k][None, :, None]
    if rws is None:
        return np.concatenate(done, axis=1)
    return np.clip(acc >> PRECISION_BITS, 0, 255).astype(np.uint8)
