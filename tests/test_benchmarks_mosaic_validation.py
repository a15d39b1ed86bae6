"""benchmarks/mosaic_validation.py: which pixels it counts as beside a seam."""

from __future__ import annotations

import numpy as np

from fixtures.benchmarks import load_benchmark


def test_seam_bands_hold_the_pixels_nearest_a_neighbour_scene_once_each():
    mv = load_benchmark("mosaic_validation")
    side = 700
    centre = np.stack(mv.seam_bands(1, 1, side))
    assert (centre.sum(axis=0) == 1).all()  # four neighbours: every pixel in exactly one band
    # 0-25 px is a ring 25 px wide; 300 px and more is the middle (700 - 600)^2
    assert centre[0, 24, 350] and not centre[0, 25, 350] and centre[1, 25, 350]
    assert centre[3].sum() == (side - 600) ** 2

    corner = np.stack(mv.seam_bands(0, 0, side))
    assert (corner.sum(axis=0) <= 1).all()
    # top-left scene: its top and left edges face the nodata border, not a seam
    assert not corner[:, 0, 350].any() and not corner[:, 350, 0].any()
    assert corner[0, side - 1, 350] and corner[0, 350, side - 1]
    # a pixel counts when a seam (bottom, right) is nearer than the border (top, left), not when farther
    rows, cols = np.mgrid[:side, :side]
    to_seam = np.minimum(side - 1 - rows, side - 1 - cols)
    to_border = np.minimum(rows, cols)
    counted = corner.any(axis=0)
    assert counted[to_seam < to_border].all() and not counted[to_seam > to_border].any()
