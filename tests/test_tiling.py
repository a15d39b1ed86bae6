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
