"""The GLNet patch grid."""

from __future__ import annotations

import pytest

from glgeo.errors import InputError
from glgeo.tiling import PatchGrid, axis_starts


def test_deepglobe_grid_is_the_released_one():
    starts = axis_starts(2448, 508, 50)
    assert starts == (0, 388, 776, 1164, 1552, 1940)
    grid = PatchGrid.for_scene(2448, 2448, 508)
    assert (grid.n_rows, grid.n_cols, len(grid)) == (6, 6, 36)


@pytest.mark.parametrize("length", [509, 557, 558, 967, 1000, 2448, 5000, 12345])
@pytest.mark.parametrize("patch,overlap", [(508, 50), (128, 16), (100, 0)])
def test_starts_cover_with_minimum_overlap_and_fewest_patches(length, patch, overlap):
    starts = axis_starts(length, patch, overlap)
    assert starts[0] == 0 and starts[-1] == length - patch
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    assert all(patch - g >= overlap for g in gaps), gaps  # every neighbour overlaps enough
    assert max(gaps) - min(gaps) <= 1  # evenly spaced (rounding only)
    if len(starts) > 2:  # one patch fewer could not keep the overlap
        assert (length - patch) / (len(starts) - 2) > patch - overlap


def test_scene_smaller_than_a_patch_gets_one_clipped_patch_per_axis():
    grid = PatchGrid.for_scene(100, 700, 508)
    assert (grid.patch_height, grid.patch_width) == (100, 508)
    assert grid.row_starts == (0,)
    assert grid.col_starts == (0, 192)
    assert all(w.height == 100 and w.width == 508 for w in grid)
    tiny = PatchGrid.for_scene(7, 9, 508)
    assert len(tiny) == 1 and (tiny[0].height, tiny[0].width) == (7, 9)


def test_windows_are_row_major_and_batches_follow_them():
    grid = PatchGrid.for_scene(300, 500, 128, 16)
    indices = [w.index for w in grid]
    assert indices == list(range(len(grid)))
    assert [(w.row, w.col) for w in grid] == sorted((w.row, w.col) for w in grid)
    batches = list(grid.batches(3))
    assert [w.index for b in batches for w in b] == indices
    assert all(len(b) == 3 for b in batches[:-1])
    chosen = list(grid.batches(2, indices=[5, 1, 3]))
    assert [[w.index for w in b] for b in chosen] == [[1, 3], [5]]


def test_final_rows_and_carried_overlap():
    grid = PatchGrid.for_scene(967, 300, 508)  # three rows; rows 0 and 2 overlap too
    assert grid.row_starts == (0, 230, 459)
    assert grid.final_rows_after(0) == 230
    assert grid.final_rows_after(2) == 967
    # row 0 carries rows 230..508 down, row 1 carries 459..738: the larger is kept
    assert grid.max_row_overlap == max(508 - 230, 738 - 459) == 279
    single = PatchGrid.for_scene(50, 50, 64)
    assert single.max_row_overlap == 0


@pytest.mark.parametrize(
    "args",
    [(0, 10, 64), (10, 10, 4), (100, 100, 64, 64), (100, 100, 64, -1)],
)
def test_bad_geometry_is_an_input_error(args):
    with pytest.raises(InputError):
        PatchGrid.for_scene(*args)


@pytest.mark.parametrize("footprint,scene", [(612, 614), (612, 700), (612, 1148), (612, 1200), (612, 2186), (160, 300), (2448, 2600)])
def test_windows_blend_over_at_most_twice_their_overlap_and_leave_no_pixel_to_neither(footprint, scene):
    """Neighbouring context windows give up what their overlap has beyond twice the minimum
    overlap, half each, so the two blend over its middle; a window keeps at least ``keep``."""
    from glgeo.tiling import axis_overlaps, ceded_sides, window_grid, window_overlap, window_share

    share = window_share(footprint)
    assert share == 2 * window_overlap(footprint) == window_share(footprint, 10) < window_share(footprint, footprint // 2)
    grid = window_grid(scene, scene, footprint)
    overlaps = axis_overlaps(grid.row_starts, footprint)
    cuts = [ceded_sides(*o, share, footprint // 2, footprint) for o in overlaps]
    assert cuts[0][0] == cuts[-1][1] == 0  # nothing given up at the scene's edges
    for (start, (_, last)), (next_start, (first, _)), (_, shared) in zip(
        zip(grid.row_starts, cuts), zip(grid.row_starts[1:], cuts[1:]), overlaps
    ):
        kept_end, next_kept = start + footprint - last, next_start + first
        assert next_kept < kept_end  # every pixel keeps a window
        assert kept_end - next_kept == min(shared, share)
        assert 0 <= first <= last <= first + 1  # half each (the window before the odd px)
    # a window too small to give up that much keeps ``keep`` px, the rest in proportion
    assert ceded_sides(600, 600, 100, 400, 612) == (106, 106)
    assert ceded_sides(0, 600, 100, 612, 612) == (0, 0)
