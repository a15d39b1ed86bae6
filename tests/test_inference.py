"""The inference engine: context windows, tapered blending, the released rule.

The stand-in network here gives every patch and every context window its own logit
offset, as a real GLNet's predictions differ with each patch's and each window's view. On a
smooth scene a seamless blend then changes its scores by little from one pixel to the next;
the plain sum jumps where an overlap starts.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import rasterio
import torch
import torch.nn.functional as F
from rasterio.transform import from_origin

from glgeo.errors import InputError
from glgeo.inference import InferenceSettings, StreamingSegmenter
from glgeo.io import SceneReader, inspect_scene
from glgeo.models.checkpoint import Checkpoint, InputScaling
from glgeo.schemes import DEEPGLOBE, NODATA_ID, get_scheme
from glgeo.segmentation import segment
from glgeo.tiling import PatchGrid, PatchWindow, axis_overlaps, taper, tile_weights, window_grid

from fixtures.checkpoints import tiny_checkpoint
from fixtures.rasters import write_geotiff

BINARY = get_scheme("inria")


class _Shared:
    """State shared by a model and the engine's inference copies of it."""

    def __init__(self) -> None:
        self.patches = 0
        self.windows = 0

    def __deepcopy__(self, memo):
        return self


class OffsetNet(torch.nn.Module):
    """Stand-in GLNet (two classes, g2l): class 1's logit follows the red channel (a smooth
    function of the pixel), plus a random offset drawn for each patch and each window."""

    def __init__(self, strength: float = 1.5) -> None:
        super().__init__()
        self.register_buffer("scale", torch.tensor(8.0))
        self.config = SimpleNamespace(n_classes=2, mode="g2l", backbone="offset")
        self.strength = strength
        self.shared = _Shared()

    def check_mode(self, mode):
        return mode or "g2l"

    def _offset(self, seed: int) -> float:
        return float(np.random.default_rng(seed).uniform(-self.strength, self.strength))

    def encode_global(self, image):
        self.shared.windows += 1
        offset = self._offset(10_000 + self.shared.windows)
        logits = torch.zeros(1, 2, image.shape[-2] // 4, image.shape[-1] // 4)
        return SimpleNamespace(ps3=torch.full((1, 1, 1, 1), offset), logits=logits)

    def encode_local(self, patches, boxes, context):
        offsets = []
        for _ in range(patches.shape[0]):
            self.shared.patches += 1
            offsets.append(self._offset(self.shared.patches))
        red = F.avg_pool2d(patches[:, :1].float(), 4)
        one = self.scale * (red - 0.5) + torch.tensor(offsets)[:, None, None, None] + context.ps3
        return SimpleNamespace(ps3=torch.cat([torch.zeros_like(one), one], dim=1))

    def aggregate(self, local_ps3, global_ps3, boxes):
        return local_ps3

    def g2l_logits(self, patches, boxes, context):
        return self.aggregate(self.encode_local(patches, boxes, context).ps3, context.ps3, boxes)


def offset_checkpoint(patch: int = 64, global_size: int = 32, footprint: int | None = None) -> Checkpoint:
    metadata = {} if footprint is None else {"training": {"footprint_px": footprint}}
    return Checkpoint(OffsetNet(), BINARY, InputScaling(), global_size, patch, 3.0, metadata)


def smooth_scene(path, height: int, width: int, nodata: np.ndarray | None = None):
    """A scene whose red channel ramps slowly along both axes."""
    yy, xx = np.mgrid[0:height, 0:width]
    red = 127 + 100 * np.sin(xx / width * 2.1 + yy / height * 1.3)
    data = np.stack([red, np.full_like(red, 90), np.full_like(red, 60)]).astype(np.uint8)
    if nodata is not None:
        data[:, nodata] = 0
        data[0][~nodata] = np.maximum(data[0][~nodata], 1)
    return write_geotiff(path, data, crs="EPSG:32631", origin=(500000, 4000000), res=1.0, nodata=None if nodata is None else 0,
                         tiled=True, blockxsize=64, blockysize=64)


def largest_step(scores: np.ndarray) -> float:
    """Largest change of class 1's score (0-255) between neighbouring pixels."""
    one = scores[1].astype(np.float64)
    return max(np.abs(np.diff(one, axis=0)).max(), np.abs(np.diff(one, axis=1)).max())


def run(tmp_path, scene, name, **settings):
    out, scores = tmp_path / f"{name}.tif", tmp_path / f"{name}-scores.tif"
    summary = segment(scene, out, model=offset_checkpoint(footprint=settings.pop("footprint_px", None)),
                      probabilities=scores, settings=InferenceSettings(device="cpu", precision="fp32", **settings))
    with rasterio.open(out) as a, rasterio.open(scores) as b:
        classes = a.read(1)  # the file's nodata (7 in 3 bits) as glgeo holds it: NODATA_ID
        return summary, np.where(classes == a.nodata, NODATA_ID, classes), b.read()


# ------------------------------------------------------------------------------ geometry
def test_neighbour_tapers_sum_to_one_over_their_overlap():
    grid = PatchGrid.for_scene(612, 612, 256)
    overlaps = axis_overlaps(grid.row_starts, 256)
    assert overlaps == ((0, 78), (78, 78), (78, 0))
    first, second = taper(256, *overlaps[0]), taper(256, *overlaps[1])
    shared_first, shared_second = first[256 - 78 :], second[:78]
    np.testing.assert_allclose(shared_first + shared_second, 1.0, atol=1e-6)
    assert first[:178].min() == 1.0 and (first > 0).all() and (second > 0).all()
    assert np.all(np.diff(shared_first) < 0) and np.all(np.diff(shared_second) > 0)


@pytest.mark.parametrize("shape,patch,overlap", [((300, 517), 64, 10), ((97, 1000), 100, 50), ((40, 40), 64, 8)])
def test_normalised_weights_cover_every_pixel(shape, patch, overlap):
    grid = PatchGrid.for_scene(*shape, patch, overlap)
    total = np.zeros(shape)
    for window in grid:
        total[window.slices] += tile_weights(grid, window)
    # no pixel lies in three patches along an axis here, so the tapers are a partition of
    # unity: every pixel has weight 1, none is left to an edge pixel's sliver
    np.testing.assert_allclose(total, 1.0, atol=1e-5)


@pytest.mark.parametrize(
    "shape,footprint,count",
    [((612, 612), 612, 1), ((500, 300), 612, 1), ((2448, 2448), 612, 25), ((1000, 30), 612, 2), ((613, 1300), 612, 6)],
)
def test_windows_tile_any_scene_with_the_minimum_overlap(shape, footprint, count):
    windows = window_grid(*shape, footprint)
    assert len(windows) == count
    covered = np.zeros(shape, bool)
    for w in windows:
        covered[w.slices] = True
        assert w.height == min(footprint, shape[0]) and w.width == min(footprint, shape[1])
    assert covered.all()
    for starts, size in ((windows.row_starts, windows.patch_height), (windows.col_starts, windows.patch_width)):
        assert all(a + size - b >= footprint // 8 for a, b in zip(starts, starts[1:]))


def test_window_grid_refuses_a_tiny_footprint():
    with pytest.raises(InputError, match="footprint"):
        window_grid(100, 100, 4)
    with pytest.raises(InputError, match="footprint"):
        InferenceSettings(footprint=5)


# ------------------------------------------------------------------------------ blending
def test_tapered_blend_has_no_seams_where_the_plain_sum_jumps(tmp_path):
    scene = smooth_scene(tmp_path / "smooth.tif", 300, 420)
    _, _, tapered = run(tmp_path, scene, "taper", blend="taper", footprint=0)
    _, _, summed = run(tmp_path, scene, "sum", blend="sum", footprint=0)
    # the scene's own gradient moves class 1's score by a few levels per pixel at most
    assert largest_step(tapered) <= 8
    assert largest_step(summed) >= 25


def test_context_windows_blend_without_seams(tmp_path):
    scene = smooth_scene(tmp_path / "smooth.tif", 300, 420)
    summary, classes, tapered = run(tmp_path, scene, "windows", blend="taper", footprint=160)
    assert summary.stats.windows == len(window_grid(300, 420, 160)) == 6
    # windows overlap by only 20 px here (an eighth of 160), so their ramps are steeper
    assert largest_step(tapered) <= 12
    _, _, summed = run(tmp_path, scene, "windows-sum", blend="sum", footprint=160)
    assert largest_step(summed) >= 30
    assert (classes != NODATA_ID).all()


def test_windows_that_leave_part_of_a_wide_overlap_blend_without_seams(tmp_path):
    """Footprint 250 on 300 x 420 px: two windows a side, sharing 200 rows and 80 columns,
    more than twice the minimum overlap (31 px): each gives up the part nearer the other's
    centre and computes fewer patches, and the map stays seamless and whole."""
    scene = smooth_scene(tmp_path / "smooth.tif", 300, 420)
    summary, classes, tapered = run(tmp_path, scene, "ceded", blend="taper", footprint=250)
    assert window_grid(300, 420, 250).row_starts == (0, 50)
    assert largest_step(tapered) <= 12
    assert (classes != NODATA_ID).all() and (tapered.sum(axis=0) > 0).all()
    summed, _, _ = run(tmp_path, scene, "ceded-sum", blend="sum", footprint=250)
    assert summary.stats.windows == summed.stats.windows == 4
    assert summary.stats.patches < 0.7 * summed.stats.patches
    # the rule is in the map's provenance (GLGEO_CONTEXT)
    assert summary.stats.context.endswith(", windows blend over at most 62 px")
    assert "blend over" not in summed.stats.context


def test_each_window_gets_its_own_global_view(tmp_path):
    scene = smooth_scene(tmp_path / "smooth.tif", 300, 420)
    checkpoint = offset_checkpoint(footprint=160)
    segment(scene, tmp_path / "a.tif", model=checkpoint, settings=InferenceSettings(device="cpu", batch_size=3))
    assert checkpoint.model.shared.windows == 6
    grid = PatchGrid.for_scene(160, 160, 64)
    assert checkpoint.model.shared.patches == 6 * len(grid)
    # with an edge margin each window's grid reaches past the scene's edges it meets: all
    # six meet the top or bottom edge, the outer columns the left or right edge too
    checkpoint = offset_checkpoint(footprint=160)
    segment(scene, tmp_path / "b.tif", model=checkpoint, settings=InferenceSettings(device="cpu", edge_margin=20))
    grids = [PatchGrid.for_scene(160 + 20, 160 + (20 if col != 1 else 0), 64) for col in (0, 1, 2)]
    assert checkpoint.model.shared.patches == 2 * sum(len(g) for g in grids)


def test_the_model_footprint_is_used_and_a_scene_within_it_is_one_window(tmp_path):
    scene = smooth_scene(tmp_path / "small.tif", 150, 140)
    summary, _, _ = run(tmp_path, scene, "one", footprint_px=160)
    assert summary.stats.windows == 1 and summary.stats.footprint == 160
    big = smooth_scene(tmp_path / "big.tif", 330, 140)
    summary, _, _ = run(tmp_path, big, "two", footprint_px=160)
    assert summary.stats.windows == 3 and summary.stats.footprint == 160


def test_released_rule_within_one_window_is_the_plain_sum_of_patch_logits(tmp_path):
    """One window, plain sum, nearest: each pixel's class is the arg-max of the sum of the
    logits of the patches covering it, computed here independently of the blender."""
    height, width, patch = 150, 200, 64
    scene = smooth_scene(tmp_path / "s.tif", height, width)
    checkpoint = offset_checkpoint(patch=patch)
    segment(scene, tmp_path / "out.tif", model=checkpoint,
            settings=InferenceSettings(device="cpu", precision="fp32", blend="sum", logit_upsampling="nearest", batch_size=1))
    with rasterio.open(tmp_path / "out.tif") as src:
        got = src.read(1)
    info = inspect_scene(scene)
    grid = PatchGrid.for_scene(height, width, patch)
    net = OffsetNet()
    sums = np.zeros((2, height, width))
    context = net.encode_global(torch.zeros(1, 3, 32, 32))
    with SceneReader(info) as reader:
        reader.fix_stretch("auto", (0.0, 255.0))
        for window in grid:
            batch = reader.read_patches([window])
            logits = net.aggregate(net.encode_local(torch.from_numpy(batch.images), None, context).ps3, None, None)
            up = F.interpolate(logits, size=(window.height, window.width), mode="nearest")[0].numpy()
            sums[:, window.slices[0], window.slices[1]] += up
    np.testing.assert_array_equal(got, sums.argmax(axis=0))


class GlobalNet(OffsetNet):
    """Stand-in global-only GLNet: class 1's logit is a random field of the global grid's
    cells (1/4 of the global image), kept for the test to check against."""

    def __init__(self, amplitude: float = 3.0) -> None:
        super().__init__()
        self.config.mode = "global"
        self.amplitude = amplitude

    def check_mode(self, mode):
        return mode or "global"

    def encode_global(self, image):
        self.shared.windows += 1
        rng = np.random.default_rng(self.shared.windows)
        one = torch.from_numpy(rng.normal(0, self.amplitude, (1, 1, image.shape[-2] // 4, image.shape[-1] // 4))).float()
        self.shared.logits = torch.cat([torch.zeros_like(one), one], dim=1)
        return SimpleNamespace(ps3=None, logits=self.shared.logits)


@pytest.mark.parametrize("upsampling", ["bilinear", "nearest"])
def test_global_mode_is_the_window_logits_upsampled_once(tmp_path, upsampling):
    """In global mode a pixel's scores are the window's global logits read at its own place
    (as ``F.interpolate`` of the whole map to the scene's size would give them), whichever
    of the overlapping patches it lies in: no step where one patch hands over to the next."""
    height, width = 150, 200
    scene = smooth_scene(tmp_path / "s.tif", height, width)
    checkpoint = Checkpoint(GlobalNet(), BINARY, InputScaling(), 64, 64, 3.0, {})
    segment(scene, tmp_path / "out.tif", model=checkpoint, probabilities=tmp_path / "p.tif",
            settings=InferenceSettings(device="cpu", precision="fp32", logit_upsampling=upsampling, min_overlap=24))
    with rasterio.open(tmp_path / "p.tif") as src:
        got = src.read(2).astype(int)
    assert len(PatchGrid.for_scene(height, width, 64, 24)) > 4  # patches overlap in both axes
    mode = "bilinear" if upsampling == "bilinear" else "nearest-exact"
    kwargs = {"align_corners": False} if mode == "bilinear" else {}
    up = F.interpolate(checkpoint.model.shared.logits, size=(height, width), mode=mode, **kwargs)
    expected = (255 * torch.softmax(up, dim=1)[0, 1]).numpy()
    assert np.abs(got - expected).max() <= 1


def test_class_borders_of_smooth_scores_follow_them_onto_the_scene_grid(tmp_path):
    """A model whose classes differ by little (probabilities within a few hundredths of a
    half) on a working grid three times coarser than the scene: each scene pixel's class is
    the arg-max of the scores interpolated onto it, as computed in floating point. Scores
    carried as uint8 (steps of 1/255) would pull the borders onto straight rows and columns."""
    height, width = 150, 200
    scene = smooth_scene(tmp_path / "s.tif", height, width)
    checkpoint = Checkpoint(GlobalNet(amplitude=0.05), BINARY, InputScaling(), 64, 64, 3.0, {"training": {"gsd_m": 3.0}})
    summary = segment(scene, tmp_path / "out.tif", model=checkpoint, probabilities=tmp_path / "p.tif",
                      settings=InferenceSettings(device="cpu", precision="fp32"))
    assert summary.scale == pytest.approx(1 / 3)
    with rasterio.open(tmp_path / "out.tif") as src, rasterio.open(tmp_path / "p.tif") as probabilities:
        got = src.read(1)
        written = probabilities.read(2).astype(float)  # still softmax x 255 as bytes
    working = F.interpolate(checkpoint.model.shared.logits, size=(50, 67), mode="bilinear", align_corners=False)
    scores = F.interpolate(torch.softmax(working, dim=1), size=(height, width), mode="bilinear", align_corners=False)
    expected = scores.argmax(dim=1)[0].numpy()
    assert 0.2 < expected.mean() < 0.8  # both classes hold ground
    assert (got != expected).mean() < 0.002
    assert np.abs(written - 255 * scores[0, 1].numpy()).max() <= 1


def test_nodata_windows_are_skipped_and_nodata_stays_nodata(tmp_path):
    nodata = np.zeros((330, 500), bool)
    nodata[:, 300:] = True  # the right part of the scene is empty
    nodata[:40, :60] = True
    scene = smooth_scene(tmp_path / "scene-holes.tif", 330, 500, nodata=nodata)
    summary, classes, _ = run(tmp_path, scene, "holes", footprint=160)
    assert summary.stats.skipped_windows >= 3
    np.testing.assert_array_equal(classes == NODATA_ID, nodata)


@pytest.mark.parametrize("mode", ["g2l", "bidirectional"])
def test_reading_ahead_across_windows_gives_the_map_of_windows_read_in_turn(tmp_path, mode, monkeypatch):
    """With prefetching, one background thread reads every window's global image and
    patches (both passes, bidirectional) in the order they are computed; the map is the
    one of each window reading its own, bitwise."""
    nodata = np.zeros((200, 260), bool)
    nodata[:, 130:] = True  # the right column of windows holds no data
    scene = smooth_scene(tmp_path / "s.tif", 200, 260, nodata=nodata)
    checkpoint = tiny_checkpoint(DEEPGLOBE, mode)
    threads = []
    read_ahead = SceneReader.read_ahead
    monkeypatch.setattr(SceneReader, "read_ahead", lambda self, *a, **k: threads.append(mode) or read_ahead(self, *a, **k))
    outputs = []
    for prefetch in (0, 2):
        settings = InferenceSettings(device="cpu", precision="fp32", footprint=128, prefetch=prefetch, batch_size=3)
        summary = segment(scene, tmp_path / f"c{prefetch}.tif", model=checkpoint, settings=settings,
                          probabilities=tmp_path / f"p{prefetch}.tif")
        assert summary.stats.windows == 6 and summary.stats.skipped_windows == 2
        assert len(threads) == (prefetch > 0)  # the run reading ahead started one thread, for all its windows
        with rasterio.open(tmp_path / f"c{prefetch}.tif") as a, rasterio.open(tmp_path / f"p{prefetch}.tif") as b:
            outputs.append((a.read(1), b.read()))
    np.testing.assert_array_equal(outputs[0][0], outputs[1][0])
    np.testing.assert_array_equal(outputs[0][1], outputs[1][1])
    assert (outputs[0][0][:, 130:] == outputs[0][0][0, -1]).all()  # nodata there


def test_strip_narrower_than_a_window(tmp_path):
    scene = smooth_scene(tmp_path / "scene-strip.tif", 40, 1500)
    summary, classes, scores = run(tmp_path, scene, "strip", footprint=160)
    assert summary.stats.windows == len(window_grid(40, 1500, 160)) > 5
    assert (classes != NODATA_ID).all()
    _, _, summed = run(tmp_path, scene, "strip-sum", footprint=160, blend="sum")
    assert largest_step(scores) < largest_step(summed) / 2


def test_engine_memory_does_not_grow_with_the_scene_height(tmp_path):
    sizes = {}
    for height in (400, 1200):
        scene = smooth_scene(tmp_path / f"scene-h{height}.tif", height, 300)
        summary, _, _ = run(tmp_path, scene, f"h{height}", footprint=160)
        sizes[height] = summary.stats.blender_bytes
        windows = window_grid(height, 300, 160)
        overlap = windows.max_row_overlap
        # one window's buffers (sums, weights, valid) twice, the carried overlap rows in
        # float16 (+ mask), one band of finished rows with their two scores
        bound = 2 * 160 * 160 * (2 * 4 + 4 + 1) + overlap * 300 * (2 * 2 + 2 + 1) + 160 * 300 * 3
        assert sizes[height] <= bound
    assert sizes[1200] <= sizes[400]


def test_released_settings_reach_the_engine():
    engine = StreamingSegmenter(OffsetNet(), InferenceSettings(device="cpu", footprint=0), 64, 32, footprint=612)
    assert engine.footprint is None  # 0: the whole scene is one window
    engine = StreamingSegmenter(OffsetNet(), InferenceSettings(device="cpu"), 64, 32, footprint=612)
    assert engine.footprint == 612


@pytest.mark.parametrize("shape", [(1, 1), (7, 900), (900, 3)])
def test_tiny_and_strip_scenes_segment_with_the_default_model(tmp_path, shape):
    """A 1 x 1 scene or a 7 px strip (2 px at the default model's 2 m) comes out segmented
    on its own grid, every pixel a class."""
    height, width = shape
    data = np.random.default_rng(1).integers(0, 256, size=(3, height, width), dtype=np.uint8)
    scene = write_geotiff(tmp_path / "tiny-scene.tif", data, crs="EPSG:32633", origin=(400000, 5000000))
    summary = segment(scene, tmp_path / "out.tif", settings=InferenceSettings(device="cpu"))
    with rasterio.open(tmp_path / "out.tif") as src:
        classes = src.read(1)
        assert (src.height, src.width) == shape and src.transform == from_origin(400000, 5000000, 0.5, 0.5)
    assert (classes < 7).all() and summary.nodata_pixels == 0


def test_mosaic_of_real_images_with_the_default_model(sample_data, tmp_path):
    """Two DeepGlobe images side by side, cut into the default model's 612 px windows
    laid exactly on the images (no window overlap): each window sees what the image alone
    shows, so the mosaic's map matches the images' own maps, up to the resampling across
    image edges (the decimated reads and the working-grid interpolation see the
    neighbour)."""
    from rasterio.windows import Window

    names = ("104113", "180902")
    images = [sample_data / "deepglobe" / "images" / f"{n}_sat.jpg" for n in names]
    side = 2448
    mosaic = tmp_path / "mosaic.tif"
    with rasterio.open(mosaic, "w", driver="GTiff", width=2 * side, height=side, count=3, dtype="uint8",
                       tiled=True, blockxsize=512, blockysize=512) as dst:
        for k, image in enumerate(images):
            with rasterio.open(image) as src:
                dst.write(src.read(), window=Window(k * side, 0, side, side))
    settings = InferenceSettings(device="cpu", window_overlap=0)
    summary = segment(mosaic, tmp_path / "mosaic-classes.tif", settings=settings)
    assert summary.stats.windows == 2 and summary.stats.footprint == 612
    with rasterio.open(tmp_path / "mosaic-classes.tif") as src:
        whole = src.read(1)
    for k, image in enumerate(images):
        alone = segment(image, tmp_path / f"alone-{k}.tif", settings=settings)
        assert alone.stats.windows == 1
        with rasterio.open(tmp_path / f"alone-{k}.tif") as src:
            own = src.read(1)
        part = whole[:, k * side : (k + 1) * side]
        assert (part == own).mean() > 0.9
        inner = (slice(64, -64), slice(64, -64))  # away from the neighbours' resampling
        assert (part[inner] == own[inner]).mean() > 0.95


class RimNet(OffsetNet):
    """Stand-in g2l model whose local branch draws class 1 along its patch's edge (as zero
    padding can make a real one do) and class 0 inside the patch."""

    def __init__(self, rim: int = 6) -> None:
        super().__init__()
        self.rim = rim

    def encode_local(self, patches, boxes, context):
        n, _, h, w = patches.shape
        one = torch.full((n, 1, h, w), -4.0)
        r = self.rim
        one[..., :r, :] = one[..., -r:, :] = one[..., :, :r] = one[..., :, -r:] = 4.0
        return SimpleNamespace(ps3=torch.cat([torch.zeros_like(one), one], dim=1))


@pytest.mark.parametrize("footprint", [None, 80])
@pytest.mark.parametrize("margin, rim_pixels", [(0, True), (8, False), (28, False)])
def test_edge_margins_keep_the_scenes_edge_off_the_patches_edge(tmp_path, margin, rim_pixels, footprint):
    """Inside a scene the tapered blend hands a patch's (and a window's) edge to its
    neighbour; at the scene's edge only the edge margin keeps the edge pixels off a patch's
    edge. One window, or several (80 px footprint)."""
    scene = smooth_scene(tmp_path / "s.tif", 150, 200)
    metadata = {} if footprint is None else {"training": {"footprint_px": footprint}}
    checkpoint = Checkpoint(RimNet(), BINARY, InputScaling(), 32, 64, 3.0, metadata)
    summary = segment(scene, tmp_path / "out.tif", model=checkpoint, probabilities=tmp_path / "p.tif",
                      settings=InferenceSettings(device="cpu", precision="fp32", edge_margin=margin))
    assert summary.stats.windows == (1 if footprint is None else len(window_grid(150, 200, 80)))
    with rasterio.open(tmp_path / "p.tif") as src:
        scores = src.read()
        assert scores.shape == (2, 150, 200) and (scores.astype(int).sum(axis=0) >= 254).all()
    with rasterio.open(tmp_path / "out.tif") as src:
        classes = src.read(1)
        assert classes.shape == (150, 200)
    assert (classes <= 1).all()  # every pixel a class: the margins beyond the scene are dropped, not shifted in
    outer = np.ones_like(classes, dtype=bool)
    outer[6:-6, 6:-6] = False
    assert (classes[~outer] == 0).all()  # inside, the neighbours' tapers hide every patch edge
    assert (classes[outer] == 1).all() if rim_pixels else (classes == 0).all()


def test_edge_margins_on_a_coarser_working_grid(tmp_path):
    """Read at half resolution, the margins are the working grid's; the classes come back on
    the scene's grid, every pixel of it."""
    scene = smooth_scene(tmp_path / "s.tif", 151, 203)
    checkpoint = Checkpoint(RimNet(), BINARY, InputScaling(), 32, 64, 3.0, {})
    summary = segment(scene, tmp_path / "out.tif", model=checkpoint,
                      settings=InferenceSettings(device="cpu", precision="fp32", scale=0.5, edge_margin=8))
    assert summary.scale == 0.5
    assert summary.stats.patches == len(PatchGrid.for_scene(round(151 / 2) + 16, round(203 / 2) + 16, 64))
    with rasterio.open(tmp_path / "out.tif") as src:
        classes = src.read(1)
    assert classes.shape == (151, 203) and (classes == 0).all()


def test_patches_beyond_the_scene_read_it_mirrored(tmp_path):
    data = np.random.default_rng(5).integers(0, 256, size=(3, 40, 50), dtype=np.uint8)
    path = write_geotiff(tmp_path / "s.tif", data, crs="EPSG:32631", origin=(500000, 4000000), res=1.0)
    with SceneReader(inspect_scene(path), nodata_fill="zero") as reader:
        reader.read_global(16, "auto", (0.0, 255.0))
        batch = reader.read_patches([PatchWindow(0, 0, 0, -5, -7, 32, 32), PatchWindow(1, 0, 1, 20, 30, 32, 32)])
    expected = np.pad(data[:, :27, :25] / 255.0, ((0, 0), (5, 0), (7, 0)), mode="reflect")
    np.testing.assert_allclose(batch.images[0], expected, atol=1e-6)
    assert not batch.valid[0][:5].any() and not batch.valid[0][:, :7].any() and batch.valid[0][5:, 7:].all()
    expected = np.pad(data[:, 20:, 30:] / 255.0, ((0, 0), (0, 12), (0, 12)), mode="reflect")
    np.testing.assert_allclose(batch.images[1], expected, atol=1e-6)
    assert batch.valid[1][:20, :20].all() and not batch.valid[1][20:].any() and not batch.valid[1][:, 20:].any()


def test_boxes_beyond_the_scene_crop_the_global_features_mirrored():
    from glgeo.models import PatchBoxes, crop_global

    feature = torch.randn(2, 3, 16, 24)
    inside = PatchBoxes.from_pixels([0, 32], [48, 0], 32, 32, 64, 96, scene_index=[0, 1])
    beyond = PatchBoxes.from_pixels([0, 32], [48, 0], 32, 32, 64, 96, scene_index=[0, 1], beyond=True)
    torch.testing.assert_close(crop_global(feature, beyond), crop_global(feature, inside))  # inside: as ever
    reaching = PatchBoxes.from_pixels([-8, 40], [-12, 72], 32, 32, 64, 96, scene_index=[0, 1], beyond=True)
    mirrored = F.pad(feature, (3, 2, 2, 2), mode="reflect")  # 4 px a cell: 12 px = 3 cells, 8 px = 2
    crops = crop_global(feature, reaching)
    torch.testing.assert_close(crops[0], mirrored[0, :, 0:8, 0:8])
    torch.testing.assert_close(crops[1], mirrored[1, :, 12:20, 21:29])
    with pytest.raises(ValueError, match="beyond its scene by less than it lies inside"):
        PatchBoxes.from_pixels([-20], [0], 32, 32, 64, 96, beyond=True)
    with pytest.raises(ValueError, match="inside its scene"):
        PatchBoxes.from_pixels([-8], [0], 32, 32, 64, 96)


def test_patch_boxes_of_a_grid_beyond_the_window_are_the_windows():
    """With edge margins the G->L boxes stay in the window's own pixels (the global view's):
    the grid's first patch starts the margin before the window's first pixel."""
    from glgeo.inference import WindowLayout, _WindowRun
    from glgeo.io import PatchBatch

    window = PatchWindow(0, 0, 0, 0, 0, 150, 200)
    grid = PatchGrid.for_scene(150 + 8 + 8, 200 + 8, 64)  # top, bottom and left margins of 8 px
    run = _WindowRun(WindowLayout(window, (8, 8, 8, 0), grid), lambda *a: None, True)
    batch = PatchBatch(tuple(grid), np.zeros((len(grid), 3, 64, 64), np.float32), np.ones((len(grid), 64, 64), bool), 0.0)
    boxes = run.boxes(batch, list(range(len(grid))))
    assert boxes.beyond and boxes.scene_sizes[0].tolist() == [150, 200]
    assert boxes.pixels[:, 0].tolist() == [w.top - 8 for w in grid] and boxes.pixels[:, 1].tolist() == [w.left - 8 for w in grid]
    assert boxes.pixels[0, :2].tolist() == [-8, -8] and boxes.pixels[-1, 0] + 64 == 150 + 8
    first = next(run.layout.scene_batches(1))[0]  # read from the scene: 8 px above and left of it
    assert (first.top, first.left) == (-8, -8)
    plain = _WindowRun(WindowLayout(window, (0, 0, 0, 0), PatchGrid.for_scene(150, 200, 64)), lambda *a: None, True)
    assert not plain.boxes(batch, [0]).beyond


def test_edge_margin_applies_where_patches_are_read():
    assert StreamingSegmenter(OffsetNet(), InferenceSettings(device="cpu"), 256, 32).edge_margin == 0  # released grid
    assert StreamingSegmenter(OffsetNet(), InferenceSettings(device="cpu", edge_margin=28), 256, 32).edge_margin == 28
    assert StreamingSegmenter(OffsetNet(), InferenceSettings(device="cpu", edge_margin=28), 16, 8).edge_margin == 7  # < half a patch
    for engine, settings in ((GlobalNet(), {}), (OffsetNet(), {"blend": "sum"}), (OffsetNet(), {"coarse_to_fine": True})):
        with pytest.raises(InputError, match="edge_margin needs mode g2l or local"):
            StreamingSegmenter(engine, InferenceSettings(device="cpu", edge_margin=8, **settings), 256, 32)
    with pytest.raises(InputError, match="edge_margin must be 0 or more"):
        InferenceSettings(edge_margin=-1)
