"""Coarse-to-fine: the relaxed foreground box and its scaling between grids."""

from __future__ import annotations

import numpy as np
from glgeo.models import (
    relaxed_foreground_box,
)
from glgeo.models.coarse_to_fine import scale_box


def test_relaxed_box_reaches_requested_ratio_and_is_clipped():
    mask = np.zeros((100, 100), bool)
    mask[40:60, 45:55] = True  # 200 fg px, tight box is all foreground
    top, left, bottom, right = relaxed_foreground_box(mask, ratio=1.0)
    area = (bottom - top) * (right - left)
    fg = mask[top:bottom, left:right].sum()
    assert fg == 200 and fg <= area - fg  # ratio reached
    smaller = (bottom - top - 2) * (right - left - 2)
    assert fg > smaller - fg  # and not relaxed further than needed
    # Foreground at the corner: the box is clipped to the mask.
    corner = np.zeros((50, 80), bool)
    corner[:10, :30] = True
    box = relaxed_foreground_box(corner, ratio=1.0)
    assert box[0] == 0 and box[1] == 0 and box[2] <= 50 and box[3] <= 80
    assert relaxed_foreground_box(np.zeros((5, 5), bool)) is None
    # Foreground everywhere: the whole mask.
    assert relaxed_foreground_box(np.ones((7, 9), bool)) == (0, 0, 7, 9)


def test_box_scales_between_grids():
    assert scale_box((1, 2, 3, 4), (10, 10), (100, 50)) == (10, 10, 30, 20)
