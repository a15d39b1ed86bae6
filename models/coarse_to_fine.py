"""Coarse-to-fine GLNet for binary tasks (buildings): where the local branch must look.

The global branch segments the downsampled scene; a bounding box around the predicted
foreground is relaxed (grown evenly on every side, clipped to the scene) until the
foreground/background ratio inside it falls to about the requested ratio (paper: 1); only
patches that touch the box go through the local branch, every pixel outside it is
background.
"""

from __future__ import annotations

import numpy as np

from glgeo.errors import InputError

Box = tuple[int, int, int, int]  # top, left, bottom, right (bottom/right exclusive)


def relaxed_foreground_box(mask: np.ndarray, ratio: float = 1.0) -> Box | None:
    """The foreground's bounding box, grown until fg:bg inside it is at most ``ratio``.

    Args:
        mask: 2-D boolean foreground mask (the global branch's coarse prediction).
        ratio: target foreground/background ratio inside the box.

    Returns:
        ``(top, left, bottom, right)`` in mask pixels, clipped to the mask, or ``None``
        when there is no foreground.
    """
    if mask.ndim != 2:
        raise InputError(f"the coarse mask must be 2-D, got shape {mask.shape}")
    if ratio <= 0:
        raise InputError(f"the fg:bg ratio must be positive, got {ratio}")
    mask = mask.astype(bool)
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        return None
    height, width = mask.shape
    top, bottom, left, right = int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1
    fg = int(rows.size)  # every foreground pixel is inside the tight box
    # Grow one pixel per side per step; stop at the ratio or when the box is the whole mask.
    while True:
        area = (bottom - top) * (right - left)
        if fg <= ratio * (area - fg) or (top, left, bottom, right) == (0, 0, height, width):
            return top, left, bottom, right
        top, left = max(0, top - 1), max(0, left - 1)
        bottom, right = min(height, bottom + 1), min(width, right + 1)


def scale_box(box: Box, from_shape: tuple[int, int], to_shape: tuple[int, int]) -> Box:
    """A box on a ``from_shape`` grid mapped outward onto a ``to_shape`` grid."""
    fy, fx = to_shape[0] / from_shape[0], to_shape[1] / from_shape[1]
    top, left, bottom, right = box
    return (
        int(np.floor(top * fy)),
        int(np.floor(left * fx)),
        min(to_shape[0], int(np.ceil(bottom * fy))),
        min(to_shape[1], int(np.ceil(right * fx))),
    )
