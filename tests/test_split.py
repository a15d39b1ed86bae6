"""glgeo.split: blocks of context windows, each computing every window touching it, equal
to glgeo.segment bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from glgeo.batch import BatchOptions, blocks_folder, run_split
from glgeo.errors import InputError
from glgeo.inference import InferenceSettings, context_windows
from glgeo.segmentation import segment
from glgeo.split import plan_split
from glgeo.tiling import sub_grid

from fixtures.split import SETTINGS, hidden, read, reference, segment_areas


@pytest.mark.parametrize("working,scene_shape", [((192, 160), (192, 160)), ((300, 250), (1200, 1000)), ((97, 61), (130, 81))])
@pytest.mark.parametrize("rows,cols", [(1, 1), (2, None), (3, 2)])
def test_blocks_tile_the_scene_and_compute_every_window_touching_them(working, scene_shape, rows, cols):
    windows = context_windows(*working, 48, 8)
    plan = plan_split(windows, scene_shape, rows, cols)
    covered = np.zeros(scene_shape, dtype=np.int64)
    for block in plan.blocks:
        top, left, bottom, right = block.box
        covered[top:bottom, left:right] += 1
        r0, r1 = block.window_rows
        c0, c1 = block.window_cols
        rtop, rleft, rbottom, rright = block.reads
        for w in windows:  # every window touching the pixels it reads, and only those
            inside = r0 <= w.row < r1 and c0 <= w.col < c1
            assert inside == w.intersects(rtop, rleft, rbottom, rright)
    assert (covered == 1).all()
    assert plan.windows_computed >= len(windows)
    if len(plan.blocks) == 1:
        assert plan.overhead == 1


def test_strips_compute_one_window_row_twice_per_boundary():
    windows = context_windows(1000, 500, 100, 12)  # 12 window rows
    plan = plan_split(windows, (1000, 500), 4)
    assert (plan.block_rows, plan.block_cols) == (3, 1)
    assert plan.windows_computed == (12 + 2) * windows.n_cols
    assert plan.overhead == pytest.approx(14 / 12)


def test_sub_grid_keeps_the_spacing_and_refuses_outside_selections():
    windows = context_windows(300, 300, 64, 8)
    sub = sub_grid(windows, range(1, 3), range(2, 4))
    assert sub.row_starts == tuple(s - windows.row_starts[1] for s in windows.row_starts[1:3])
    assert sub.col_starts[0] == 0 and sub.scene_width == windows.col_starts[3] + 64 - windows.col_starts[2]
    with pytest.raises(InputError, match="not within"):
        sub_grid(windows, range(0, windows.n_rows + 1), range(0, 1))
    with pytest.raises(InputError, match="at least one window"):
        plan_split(windows, (300, 300), 0)


@pytest.mark.parametrize(
    "settings,rows,cols",
    [
        (SETTINGS, 1, 1),  # every window its own block
        (InferenceSettings(device="cpu", min_overlap=8, batch_size=8, footprint=48, scale=0.5), 1, 2),  # coarser grid
        (InferenceSettings(device="cpu", min_overlap=8, batch_size=8, footprint=48, scale=0.5, edge_margin=6), 1, 1),
        (InferenceSettings(device="cpu", min_overlap=8, batch_size=8, footprint=64, blend="sum", logit_upsampling="nearest",
                           scale=0.75), 1, None),
        # a scale of its own on each axis (a scene in degrees, read with square ground pixels)
        (InferenceSettings(device="cpu", min_overlap=8, batch_size=8, footprint=48, scale=(0.75, 0.5)), 1, 1),
        # windows sharing 54 rows and 40 columns, more than twice the 16 px minimum: each
        # leaves the far part of an overlap to its neighbour (glgeo.tiling.ceded_sides)
        (InferenceSettings(device="cpu", min_overlap=8, batch_size=8, footprint=100), 1, 1),
    ],
    ids=["scale1-1x1", "scale0.5-1x2", "scale0.5-edge-margin-1x1", "sum-nearest-scale0.75-strips", "scale0.75x0.5-1x1",
         "wide-overlaps-1x1"],
)
def test_split_in_process_equals_segment_bitwise(tmp_path, scene, checkpoint, settings, rows, cols):
    ref_classes, ref_scores = reference(scene, checkpoint, tmp_path, settings)
    result = run_split(scene, tmp_path / "split.tif", model=checkpoint, options=BatchOptions(settings=settings),
                       probabilities=tmp_path / "split-p.tif", rows_per_block=rows, cols_per_block=cols)
    assert len(result.plan.blocks) >= 3 and result.counts == {"done": len(result.plan.blocks), "skipped": 0, "failed": 0}
    classes, scores = read(tmp_path / "split.tif", tmp_path / "split-p.tif")
    np.testing.assert_array_equal(classes, ref_classes)
    np.testing.assert_array_equal(scores, ref_scores)
    assert result.summary.class_areas == segment_areas(tmp_path / "ref.tif")
    assert hidden(tmp_path) == [] and not blocks_folder(tmp_path / "split.tif").exists()


def test_split_of_an_area_of_interest_equals_segment(tmp_path, scene, checkpoint):
    settings = InferenceSettings(device="cpu", min_overlap=8, batch_size=8, footprint=48, scale=0.5)
    bounds = (500_010.0, 3_999_920.0, 500_070.0, 3_999_990.0)  # inside the scene's 80 x 96 m
    segment(scene, tmp_path / "ref.tif", model=str(checkpoint), settings=settings, bounds=bounds)
    result = run_split(scene, tmp_path / "split.tif", model=checkpoint, options=BatchOptions(settings=settings),
                       bounds=bounds, rows_per_block=1, cols_per_block=1)
    assert len(result.plan.blocks) >= 4
    ref = read(tmp_path / "ref.tif")[0]
    assert (ref == 7).any() and (ref != 7).any()  # nodata outside the box (7: DeepGlobe ids in 3 bits)
    np.testing.assert_array_equal(read(tmp_path / "split.tif")[0], ref)


def test_a_16_bit_scene_with_pils_global_resampling_is_refused_before_any_block(tmp_path, checkpoint, monkeypatch):
    """``global_resampling="pil"`` (``--released``) needs an 8-bit scene: said once, before
    the blocks run (each block said it, after the cluster had started)."""
    import rasterio
    from rasterio.transform import from_origin

    import glgeo.batch.split

    path = tmp_path / "u16.tif"
    with rasterio.open(path, "w", driver="GTiff", width=160, height=192, count=3, dtype="uint16", crs="EPSG:32633",
                       transform=from_origin(500_000, 4_000_000, 0.5, 0.5)) as dst:
        dst.write(np.full((3, 192, 160), 1000, dtype=np.uint16))
    monkeypatch.setattr(glgeo.batch.split, "write_block", lambda *a, **k: pytest.fail("a block ran"))
    settings = InferenceSettings(device="cpu", min_overlap=8, batch_size=8, footprint=64, global_resampling="pil")
    with pytest.raises(InputError, match="needs an 8-bit scene"):
        run_split(path, tmp_path / "split.tif", model=checkpoint, options=BatchOptions(settings=settings),
                  rows_per_block=1, cols_per_block=1)
