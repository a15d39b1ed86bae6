"""Row-band blending: seamless, order-independent, memory-bounded."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from glgeo.blend import RowBand, RowBandBlender, ToSceneGrid
from glgeo.errors import InputError, InternalError
from glgeo.schemes import NODATA_ID
from glgeo.tiling import PatchGrid


def _blend(grid: PatchGrid, field: np.ndarray, valid: np.ndarray, scores: bool = False, skip=()):
    """Feed every patch its crop of a scene-wide logit field; reassemble the bands."""
    bands: list[RowBand] = []
    blender = RowBandBlender(grid, field.shape[0], bands.append, scores=scores)
    for w in grid:
        rows, cols = w.slices
        logits = None if w.index in skip else torch.from_numpy(field[:, rows, cols].copy())
        blender.add(w, logits, valid[rows, cols])
    assert blender.done
    assert [b.row_off for b in bands] == sorted({b.row_off for b in bands})
    classes = np.concatenate([b.classes for b in bands])
    assert classes.shape == valid.shape
    out_scores = np.concatenate([b.scores for b in bands], axis=1) if scores else None
    return classes, out_scores, blender


@pytest.mark.parametrize(
    "shape,patch,overlap",
    [((300, 420), 128, 50), ((967, 131), 508, 50), ((131, 967), 508, 50), ((61, 77), 128, 50), ((256, 256), 128, 0)],
)
@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_constant_field_gives_a_seamless_map(shape, patch, overlap, backend, monkeypatch):
    # every patch reports the same scene-wide logits where it lies: a network whose output
    # depends only on the pixel's class. The blended map must equal the field's arg-max
    # everywhere, seams, triple overlaps and scene edges included.
    # the torch backend (used on GPUs) runs here on CPU tensors
    monkeypatch.setattr(RowBandBlender, "_use_torch", staticmethod(lambda device: backend == "torch"))
    rng = np.random.default_rng(0)
    field = rng.normal(size=(5, *shape)).astype(np.float32)
    valid = np.ones(shape, dtype=bool)
    grid = PatchGrid.for_scene(*shape, patch, overlap)
    classes, scores, _ = _blend(grid, field, valid, scores=True)
    np.testing.assert_array_equal(classes, field.argmax(axis=0))
    e = np.exp(field - field.max(axis=0))
    expected = np.rint(255 * e / e.sum(axis=0)).astype(np.uint8)
    assert np.abs(scores.astype(int) - expected).max() <= 1


@pytest.mark.parametrize("shape,patch,overlap", [((300, 420), 128, 50), ((300, 420), 128, 100), ((200, 700), 96, 90)])
@pytest.mark.parametrize("backend", ["numpy", "numpy-large-tiles", "torch"])
def test_a_constant_field_blended_with_tapers_keeps_its_classes(shape, patch, overlap, backend, monkeypatch):
    """The taper rule on a field every tile agrees on: each pixel keeps the field's arg-max
    (the first class where classes tie), with overlaps wider than half a tile too, where
    the working tile's kept columns overlap the columns they move to; large tiles (a
    released checkpoint's windows) go one class at a time through scratch planes."""
    from glgeo.tiling import tile_weights

    monkeypatch.setattr(RowBandBlender, "_use_torch", staticmethod(lambda device: backend == "torch"))
    if backend == "numpy-large-tiles":
        monkeypatch.setattr("glgeo.blend.LARGE_TILE_BYTES", 0)
    field = np.random.default_rng(1).integers(-3, 4, size=(6, *shape)).astype(np.float32)  # ties too
    grid = PatchGrid.for_scene(*shape, patch, overlap)
    assert grid.max_row_overlap > 0
    bands: list[RowBand] = []
    blender = RowBandBlender(grid, 6, bands.append)
    for w in grid:
        rows, cols = w.slices
        blender.add(w, field[:, rows, cols], np.ones((patch, patch), bool), tile_weights(grid, w))
    assert blender.done and (blender._plane is not None) == (backend == "numpy-large-tiles")
    np.testing.assert_array_equal(np.concatenate([b.classes for b in bands]), field.argmax(axis=0))


@pytest.mark.parametrize("score_dtype", ["uint8", "uint16"])
def test_large_tiles_blend_to_the_same_classes_and_scores(score_dtype, monkeypatch):
    """Large tiles (a released checkpoint's windows) are blended through kept planes, in
    place: the same classes and scores, bit for bit, as the vectorised path, with tapers,
    skipped tiles, invalid pixels and a fill class."""
    import glgeo.blend
    from glgeo.tiling import tile_weights

    rng = np.random.default_rng(2)
    shape, patch = (230, 300), 96
    field = rng.normal(scale=3, size=(5, *shape)).astype(np.float32)
    valid = rng.random(shape) > 0.05
    grid = PatchGrid.for_scene(*shape, patch, 40)
    results = []
    for large in (False, True):
        monkeypatch.setattr(glgeo.blend, "LARGE_TILE_BYTES", 0 if large else 1 << 40)
        bands: list[RowBand] = []
        blender = RowBandBlender(grid, 5, bands.append, scores=True, fill_class=1, score_dtype=score_dtype)
        for w in grid:
            rows, cols = w.slices
            noise = rng.normal(scale=0.5, size=(5, patch, patch)).astype(np.float32)  # tiles disagree
            logits = None if w.index == 4 else field[:, rows, cols] + noise
            blender.add(w, logits, valid[rows, cols], tile_weights(grid, w))
        assert (blender._plane is not None) == large
        results.append((np.concatenate([b.classes for b in bands]), np.concatenate([b.scores for b in bands], axis=1)))
        rng = np.random.default_rng(2)
        rng.normal(scale=3, size=(5, *shape)), rng.random(shape)  # the same noise for the second path
    (classes, scores), (large_classes, large_scores) = results
    np.testing.assert_array_equal(large_classes, classes)
    np.testing.assert_array_equal(large_scores, scores)
    assert (classes == NODATA_ID).any() and (classes == 1).any() and scores.dtype == np.dtype(score_dtype)


def test_overlaps_are_summed_not_overwritten():
    # two patches side by side overlapping by 8 columns; the right one is confident
    grid = PatchGrid.for_scene(16, 24, 16, 8)
    assert grid.col_starts == (0, 8)
    bands: list[RowBand] = []
    blender = RowBandBlender(grid, 2, bands.append)
    left = np.zeros((2, 16, 16), np.float32)
    left[1] = 1.0  # weakly class 1
    right = np.zeros((2, 16, 16), np.float32)
    right[0] = 3.0  # strongly class 0
    blender.add(grid[0], left, np.ones((16, 16), bool))
    blender.add(grid[1], right, np.ones((16, 16), bool))
    classes = bands[0].classes
    assert (classes[:, :8] == 1).all()  # left patch alone
    assert (classes[:, 8:] == 0).all()  # sum 1 vs 3 in the overlap, right patch alone after


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_nodata_and_skipped_patches(backend, monkeypatch):
    monkeypatch.setattr(RowBandBlender, "_use_torch", staticmethod(lambda device: backend == "torch"))
    shape = (200, 260)
    field = np.zeros((3, *shape), np.float32)
    field[2] = 1.0
    valid = np.ones(shape, bool)
    valid[:, :70] = False  # the first patch column is all nodata
    grid = PatchGrid.for_scene(*shape, 64, 8)
    skip = {w.index for w in grid if not valid[w.slices].any()}
    assert skip
    classes, scores, _ = _blend(grid, field, valid, scores=True, skip=skip)
    assert (classes[:, :70] == NODATA_ID).all()
    assert (classes[:, 70:] == 2).all()
    assert (scores[:, :, :70] == 0).all()
    assert (scores[2, :, 70:] == round(255 * np.e / (np.e + 2))).all()  # softmax of (0, 0, 1)


def test_valid_pixels_no_patch_computed_get_the_fill_class():
    shape = (100, 100)
    grid = PatchGrid.for_scene(*shape, 64, 8)
    field = np.zeros((2, *shape), np.float32)
    field[1] = 5.0
    classes, _, _ = _blend(grid, field, np.ones(shape, bool), skip={0})
    # patch 0 covers rows/cols 0..63; its exclusive corner got no logits -> background (0)
    exclusive = classes[: grid.row_starts[1], : grid.col_starts[1]]
    assert (exclusive == 0).all()
    assert (classes[64:, 64:] == 1).all()


def test_memory_does_not_grow_with_scene_height_and_stays_below_a_patch_row():
    for height in (2000, 20000, 200000):
        grid = PatchGrid.for_scene(height, 3000, 508)
        blender = RowBandBlender(grid, 7, lambda b: None)
        stride = max(b - a for a, b in zip(grid.row_starts, grid.row_starts[1:]))
        # current patch + two carried overlaps (float32 sums, uint16 counts, bool valid)
        # + one band of finished rows (uint8 classes, bool valid)
        bound = 508 * 508 * (7 * 4 + 3) + 2 * grid.max_row_overlap * 3000 * (7 * 4 + 3) + 508 * 3000 * 2
        assert blender.nbytes <= bound
        # the fewest-patches grid keeps overlaps near the minimum: < 50 + (508 - 50) / (n - 1)
        assert grid.max_row_overlap <= 50 + (508 - 50) / (grid.n_rows - 1) + 1
        assert stride < 508
        assert blender.nbytes < 7 * 508 * 3000 * 4  # less than one band of patch rows


def test_patches_must_come_in_grid_order_and_shape():
    grid = PatchGrid.for_scene(100, 100, 64)
    blender = RowBandBlender(grid, 2, lambda b: None)
    with pytest.raises(InternalError, match="grid order"):
        blender.add(grid[1], None, np.ones((64, 64), bool))
    with pytest.raises(InternalError, match="shape"):
        blender.add(grid[0], np.zeros((3, 64, 64), np.float32), np.ones((64, 64), bool))


@pytest.mark.parametrize("working,scene", [((3, 5), (12, 20)), ((7, 9), (23, 31)), ((5, 4), (5, 4))])
def test_working_grid_bands_go_back_on_the_scene_grid_by_nearest_centre(working, scene):
    rng = np.random.default_rng(0)
    classes = rng.integers(0, 6, size=working).astype(np.uint8)
    scores = rng.integers(0, 256, size=(6, *working)).astype(np.uint8)
    invalid = rng.random(scene) < 0.2  # the scene's own nodata, at full resolution
    out: list[RowBand] = []
    # ~3 scene rows per slice, so working bands are cut into several slices
    to_scene = ToSceneGrid(working, scene, out.append, lambda row, n: ~invalid[row : row + n],
                           interpolation="nearest", scores=True, max_bytes=7 * 3 * scene[1])
    for top in range(0, working[0], 2):  # working bands of 2 rows, top to bottom
        to_scene(RowBand(top, classes[top : top + 2], scores[:, top : top + 2]))
    assert [b.row_off for b in out] == list(np.cumsum([0] + [b.height for b in out[:-1]]))
    got = np.concatenate([b.classes for b in out])
    got_scores = np.concatenate([b.scores for b in out], axis=1)
    # independent nearest-centre mapping: scene pixel i covers working pixel floor((i + 0.5) * w / s)
    rows = [int((i + 0.5) * working[0] / scene[0]) for i in range(scene[0])]
    cols = [int((j + 0.5) * working[1] / scene[1]) for j in range(scene[1])]
    expected = classes[np.ix_(rows, cols)]
    np.testing.assert_array_equal(got, np.where(invalid, NODATA_ID, expected))
    np.testing.assert_array_equal(got_scores, np.where(invalid, 0, scores[:, rows][:, :, cols]))
    assert max(b.height for b in out) <= 3


@pytest.mark.parametrize("working,scene,band_rows", [((6, 9), (24, 36), 2), ((7, 11), (23, 41), 3), ((5, 5), (5, 5), 5)])
def test_working_grid_scores_are_interpolated_bilinearly_onto_the_scene_grid(working, scene, band_rows):
    rng = np.random.default_rng(1)
    logits = torch.from_numpy(rng.normal(size=(5, *working)).astype(np.float32) * 3)
    scores = torch.round(torch.softmax(logits, dim=0) * 255).to(torch.uint8).numpy()
    classes = scores.argmax(axis=0).astype(np.uint8)
    out: list[RowBand] = []
    # small slices: several per band, and rows held back until the working row below arrives
    to_scene = ToSceneGrid(working, scene, out.append, scores=True, max_bytes=3 * 5 * 4 * scene[1] * 2)
    for top in range(0, working[0], band_rows):
        to_scene(RowBand(top, classes[top : top + band_rows], scores[:, top : top + band_rows]))
    assert [b.row_off for b in out] == list(np.cumsum([0] + [b.height for b in out[:-1]]))
    got = np.concatenate([b.classes for b in out])
    got_scores = np.concatenate([b.scores for b in out], axis=1).astype(int)
    assert got.shape == scene
    # torch's bilinear resize (align_corners=False) of the same scores is the reference
    expected = F.interpolate(torch.from_numpy(scores).float()[None], size=scene, mode="bilinear", align_corners=False)[0]
    assert np.abs(got_scores - expected.round().numpy()).max() <= 1
    top2 = expected.topk(2, dim=0).values
    clear = (top2[0] - top2[1] > 1e-3).numpy()  # no tie
    np.testing.assert_array_equal(got[clear], expected.argmax(dim=0).numpy()[clear])
    if working == scene:  # same grid: nothing changes
        np.testing.assert_array_equal(got, classes)
    # classes alone (no scores asked for) interpolate only where the taps' classes differ
    only: list[RowBand] = []
    to_scene = ToSceneGrid(working, scene, only.append, max_bytes=3 * 5 * 4 * scene[1] * 2)
    for top in range(0, working[0], band_rows):
        to_scene(RowBand(top, classes[top : top + band_rows], scores[:, top : top + band_rows]))
    assert all(b.scores is None for b in only)
    np.testing.assert_array_equal(np.concatenate([b.classes for b in only])[clear], got[clear])
    # the engine's finer uint16 scores (x 65535) in: the same classes, scores out as uint8 x 255
    fine = torch.round(torch.softmax(logits, dim=0) * 65535).to(torch.int32).numpy().astype(np.uint16)
    out16: list[RowBand] = []
    to_scene = ToSceneGrid(working, scene, out16.append, scores=True, max_bytes=3 * 5 * 4 * scene[1] * 2, score_dtype="uint16")
    for top in range(0, working[0], band_rows):
        to_scene(RowBand(top, classes[top : top + band_rows], fine[:, top : top + band_rows]))
    scores16 = np.concatenate([b.scores for b in out16], axis=1)
    assert scores16.dtype == np.uint8 and np.abs(scores16.astype(int) - expected.round().numpy()).max() <= 1
    reference = F.interpolate(torch.from_numpy(fine.astype(np.float32))[None], size=scene, mode="bilinear", align_corners=False)[0]
    top2 = reference.topk(2, dim=0).values
    clear16 = (top2[0] - top2[1] > 1e-3 * 257).numpy()
    np.testing.assert_array_equal(np.concatenate([b.classes for b in out16])[clear16], reference.argmax(dim=0).numpy()[clear16])


def test_bilinear_scene_grid_needs_scores_and_fills_from_the_nearest_where_none_are_valid():
    out: list[RowBand] = []
    with pytest.raises(InputError, match="needs bands with scores"):
        ToSceneGrid((2, 2), (4, 4), out.append)(RowBand(0, np.zeros((2, 2), np.uint8)))
    classes = np.array([[1, NODATA_ID], [NODATA_ID, NODATA_ID]], np.uint8)
    scores = np.zeros((2, 2, 2), np.uint8)
    scores[1, 0, 0] = 255
    ToSceneGrid((2, 2), (4, 4), out.append)(RowBand(0, classes, scores))
    got = np.concatenate([b.classes for b in out])
    assert got[0, 0] == 1 and got[3, 3] == NODATA_ID  # no valid neighbour there: nodata stays
    assert (got[:2, :2] == 1).all()


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_rows_a_tile_row_leaves_to_its_neighbours_are_neither_carried_nor_held(backend, monkeypatch):
    """Tiles overlapping by 180 of 200 rows whose weights are 0 on the rows left to the
    tile row above or below (the engine's context windows that give up the far part of a
    wide overlap): declared as row spans, the blend is the same (the rows two tile rows
    both weight pass through the carry as before, the others skip it), while the carry
    and the band of finished rows shrink; spans that leave rows to no tile row are an
    internal error."""
    from glgeo.tiling import ceded_sides, tile_weights

    monkeypatch.setattr(RowBandBlender, "_use_torch", staticmethod(lambda device: backend == "torch"))
    grid = PatchGrid(220, 300, 200, 200, 0, (0, 20), (0, 100))
    cuts = [ceded_sides(*overlap, 40, 100, 200) for overlap in ((0, 180), (180, 0))]
    assert cuts == [(0, 70), (70, 0)]
    field = np.random.default_rng(2).normal(size=(4, 220, 300)).astype(np.float32)

    def blend(spans):
        bands: list[RowBand] = []
        blender = RowBandBlender(grid, 4, bands.append, scores=True, row_spans=spans)
        for w in grid:
            rows, cols = w.slices
            top, bottom = cuts[w.row]
            weight = tile_weights(grid, w, (top, bottom, 0, 0))
            valid = np.zeros((200, 200), bool)
            valid[top : 200 - bottom] = True  # where the tile computed something
            blender.add(w, field[:, rows, cols], valid, weight)
        assert blender.done
        return bands, blender

    plain, before = blend(None)
    spanned, after = blend([(0, 130), (70, 200)])
    assert [b.row_off for b in plain] == [0, 20] and [b.row_off for b in spanned] == [0, 90]
    for name in ("classes", "scores"):
        whole = [np.concatenate([getattr(b, name) for b in bands], axis=-2) for bands in (plain, spanned)]
        np.testing.assert_array_equal(*whole)
    # 40 rows carried instead of 180, and 130 rows held at most instead of 200
    assert after._carry.shape[1] == 40 and before._carry.shape[1] == 180
    assert after._band.shape[0] == 130 and before._band.shape[0] == 200
    assert after.nbytes < 0.6 * before.nbytes
    with pytest.raises(InternalError, match="weighted by neither"):
        RowBandBlender(grid, 4, lambda band: None, row_spans=[(0, 80), (100, 200)])
    for spans in ([(150, 100), (0, 200)], [(0, 201), (0, 200)], [(0, 200)]):
        with pytest.raises(InternalError, match="do not fit"):
            RowBandBlender(grid, 4, lambda band: None, row_spans=spans)
