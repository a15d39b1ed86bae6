"""Grids anchored to the map: a cut of a scene lays its patches and global image over the
same ground as the scene does (``InferenceSettings.grid_anchor``).

A convolutional network's features are not shift-invariant: moved by a few pixels against
its strided cells, the same ground gives other features. The stand-in networks here make
that extreme: their logits are means over 32 px cells of the patch or of the global image,
so a scene and a cut of it agree exactly where their cells fall on the same ground, and not
where they do not.
"""

from __future__ import annotations

import random
from types import SimpleNamespace

import numpy as np
import pytest
import rasterio
import torch
import torch.nn.functional as F
from affine import Affine
from rasterio.windows import Window

from glgeo.errors import InputError
from glgeo.inference import InferenceSettings, StreamingSegmenter
from glgeo.io import SceneReader, inspect_scene
from glgeo.models.checkpoint import Checkpoint, InputScaling
from glgeo.resolution import map_origin
from glgeo.schemes import get_scheme
from glgeo.segmentation import segment
from glgeo.tiling import ANCHOR_OFFSET, ANCHOR_STEP, PatchWindow, anchored_axis

from fixtures.rasters import write_geotiff

BINARY = get_scheme("inria")
CUT = (45, 70)  # rows, columns cut off: neither a multiple of the lattice


class CellNet(torch.nn.Module):
    """Stand-in GLNet whose class-1 logit is the red channel's mean over 32 px cells: of
    each patch (``g2l``; the global branch adds nothing) or of the global image (``global``)."""

    def __init__(self, mode: str) -> None:
        super().__init__()
        self.register_buffer("scale", torch.tensor(40.0))
        self.config = SimpleNamespace(n_classes=2, mode=mode, backbone="cells")

    def check_mode(self, mode):
        return mode or self.config.mode

    def _cells(self, image):
        """Logits at a quarter of the image's resolution, as a GLNet's (the last cells partial)."""
        red = F.avg_pool2d(image[:, :1].float(), 32, ceil_mode=True)
        one = self.scale * (F.interpolate(red, scale_factor=8, mode="nearest") - 0.5)
        one = one[..., : image.shape[-2] // 4, : image.shape[-1] // 4]
        return torch.cat([torch.zeros_like(one), one], dim=1)

    def encode_global(self, image):
        logits = self._cells(image) if self.config.mode == "global" else torch.zeros(1, 2, *(s // 4 for s in image.shape[-2:]))
        return SimpleNamespace(ps3=torch.zeros(1, 1, 1, 1), logits=logits)

    def encode_local(self, patches, boxes, context):
        return SimpleNamespace(ps3=self._cells(patches))

    def aggregate(self, local_ps3, global_ps3, boxes):
        return local_ps3

    def g2l_logits(self, patches, boxes, context):
        return self.aggregate(self.encode_local(patches, boxes, context).ps3, context.ps3, boxes)


def textured_scene(path, height: int = 300, width: int = 340):
    """A georeferenced scene whose red channel varies within a few tens of pixels."""
    yy, xx = np.mgrid[0:height, 0:width]
    red = 127 + 60 * np.sin(xx / 9.0 + yy / 23.0) + 50 * np.cos(yy / 7.0 - xx / 31.0)
    data = np.stack([red, np.full_like(red, 90), np.full_like(red, 60)]).astype(np.uint8)
    return write_geotiff(path, data, crs="EPSG:32631", origin=(500003.0, 4000011.0), res=1.0)


def cut_of(scene, path):
    """The scene with its first rows and columns cut off, as ``gdal_translate -srcwin`` cuts
    it: the same grid, its origin moved."""
    with rasterio.open(scene) as src:
        window = Window(CUT[1], CUT[0], src.width - CUT[1], src.height - CUT[0])
        profile = src.profile | {"width": window.width, "height": window.height, "transform": src.window_transform(window)}
        data = src.read(window=window)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


def scores(tmp_path, scene, name, mode, footprint, global_size, **settings):
    checkpoint = Checkpoint(CellNet(mode), BINARY, InputScaling(), global_size, 96, 3.0, {"training": {"footprint_px": footprint}})
    probabilities = tmp_path / f"{name}-scores.tif"
    segment(scene, tmp_path / f"{name}.tif", model=checkpoint, probabilities=probabilities,
            settings=InferenceSettings(device="cpu", precision="fp32", logit_upsampling="nearest", min_overlap=32, **settings))
    with rasterio.open(probabilities) as src:
        return src.read(2).astype(np.int16)


# ------------------------------------------------------------------------------ geometry
def test_anchored_patches_start_on_the_maps_lattice_and_cover_the_window():
    rng = random.Random(0)
    for _ in range(3000):
        patch, overlap = rng.choice([(64, 8), (96, 50), (256, 50), (508, 50)])
        length = rng.randint(patch, 3000)
        phase = rng.randint(-10**6, 10**6)
        edge = rng.choice([0, 28, patch // 2 - 1])
        before, after, starts = anchored_axis(phase, length, patch, overlap, edge, edge)
        assert all((phase - before + s) % ANCHOR_STEP == 0 for s in starts)  # on the lattice
        assert starts[0] == 0 and starts[-1] + patch == before + length + after  # covers the window
        assert all(0 < b - a <= patch - overlap for a, b in zip(starts, starts[1:]))  # overlaps kept
        assert before < max(edge, 0) + ANCHOR_STEP and after < edge + ANCHOR_STEP  # reaches little beyond
        assert 2 * before < patch and 2 * after < patch  # a mirror has pixels to reflect
    assert anchored_axis(0, 612, 256) == (0, 28, (0, 192, 384))  # the default model's full window
    assert anchored_axis(83, 529, 256) == (19, 28, (0, 160, 320))  # cut: 64, 224 and 384 on the map


def test_anchored_grids_refuse_what_cannot_lie_on_the_lattice():
    with pytest.raises(InputError, match="at least one patch"):
        anchored_axis(0, 63, 64)
    with pytest.raises(InputError, match="cannot step on a 32 px lattice"):
        anchored_axis(0, 200, 64, 40)


def test_map_origin_counts_working_pixels_from_the_maps_origin():
    utm = Affine(0.5, 0, 500_000.0, 0, -0.5, 4_000_000.0)
    assert map_origin(utm) == (-8_000_000, 1_000_000)
    cut = utm @ Affine.translation(517, 333)  # gdal_translate -srcwin 517 333 ...
    assert np.subtract(map_origin(cut, 0.25), map_origin(utm, 0.25)).tolist() == [83, 129]  # 333 / 4 and 517 / 4, rounded
    assert map_origin(Affine.identity()) == (0, 0)  # a plain image: its own first pixel
    assert map_origin(Affine.rotation(10) @ utm) == (0, 0)


def test_a_cuts_grid_and_global_box_lie_on_the_same_ground(tmp_path):
    scene = textured_scene(tmp_path / "s.tif")
    engine = StreamingSegmenter(CellNet("g2l"), InferenceSettings(device="cpu", min_overlap=32), 96, 53, footprint=128)
    assert engine.grid_anchor == "world" and engine.global_step == 2  # 128 px over 64
    for path in (scene, cut_of(scene, tmp_path / "c.tif")):
        info = inspect_scene(path)
        origin = map_origin(info.transform)
        lattice = [o + ANCHOR_OFFSET for o in origin]  # counted from a lattice point
        window = PatchWindow(0, 0, 0, 0, 0, 128, 128)
        layout = engine._layout(window, info.height, info.width, origin)
        top, _, left, _ = layout.margins
        assert all((lattice[0] - top + s) % ANCHOR_STEP == 0 for s in layout.grid.row_starts)
        assert all((lattice[1] - left + s) % ANCHOR_STEP == 0 for s in layout.grid.col_starts)
        box = layout.context  # the global image's cells: 32 of its 2 px pixels
        assert (lattice[0] + box.top) % 64 == 0 and (lattice[1] + box.left) % 64 == 0
        assert box.height % 2 == 0 and box.top + layout.ahead[0] == -top and box.left + layout.ahead[1] == -left


def test_windows_inside_a_scene_leave_a_few_pixels_to_their_neighbours_rather_than_add_patches():
    """The default model's geometry on a 1250 px working grid: three windows a side at 0,
    319 and 638, whose lattice phases (0, 31, 30) would need a fourth patch row each. A side
    inside the scene, which shares 293 px with the neighbouring window, stops up to 31 px
    short instead; a side on the scene's edge never does. Every pixel keeps a positive
    weight from some window, and a window's weight is 0 where its grid stopped short. (With
    a window overlap of 150 px asked for, windows blend over up to 300 px: nothing of these
    overlaps is left to the neighbour beyond those few pixels, see the test below.)"""
    from glgeo.inference import context_windows
    from glgeo.tiling import axis_overlaps

    engine = StreamingSegmenter(CellNet("g2l"), InferenceSettings(device="cpu", window_overlap=150), 256, 256, footprint=612)
    windows = context_windows(1250, 1250, 612)
    overlaps = axis_overlaps(windows.row_starts, 612), axis_overlaps(windows.col_starts, 612)
    first = (-ANCHOR_OFFSET, -ANCHOR_OFFSET)  # a lattice point at the scene's first pixel
    layouts = [engine._layout(w, 1250, 1250, first, (overlaps[0][w.row], overlaps[1][w.col])) for w in windows]
    assert windows.row_starts == (0, 319, 638) and sum(len(layout.grid) for layout in layouts) == 81  # 3 x 3 each
    assert any(min(layout.margins) < 0 for layout in layouts)
    total = np.zeros((1250, 1250))
    for layout in layouts:
        w, (top, bottom, left, right) = layout.window, layout.margins
        assert min(top, bottom, left, right) > -ANCHOR_STEP
        for side, at_edge in ((top, w.top == 0), (bottom, w.bottom == 1250), (left, w.left == 0), (right, w.right == 1250)):
            assert side >= 0 or not at_edge
        weights = layout.weights(windows)
        # the window's pixels its grid covers: all but the sides it stops short of
        covered = np.zeros((w.height, w.width), dtype=bool)
        covered[max(0, -top) : w.height - max(0, -bottom), max(0, -left) : w.width - max(0, -right)] = True
        assert (weights[~covered] == 0).all() and (weights[covered] > 0).all()
        total[w.slices] += weights
    assert (total > 0).all()


@pytest.mark.parametrize("anchored", [True, False], ids=["lattice", "scene-grid"])
def test_windows_that_overlap_widely_leave_the_far_part_to_their_neighbour(anchored):
    """The default model's geometry on a 614 px working grid (a 2456 px scene at 0.5 m):
    two windows a side at 0 and 2 share 610 px. Each keeps the part of the overlap nearer
    its own centre and blends with the other over the middle 152 px (twice the 76 px
    minimum overlap), so its patches cover what it keeps: 2 x 2 a window instead of 3 x 3.
    Its global image stays the whole window's; every pixel keeps a positive weight; and the
    released rule (plain sum), bidirectional mode (whose L->G pass gives the global branch
    every patch) and coarse-to-fine (which picks patches from the whole window's global
    image) keep every patch."""
    from glgeo.inference import context_windows, widest_blend
    from glgeo.tiling import axis_overlaps

    windows = context_windows(614, 614, 612)
    assert windows.row_starts == windows.col_starts == (0, 2)
    overlaps = axis_overlaps(windows.row_starts, 612), axis_overlaps(windows.col_starts, 612)
    origin = (-ANCHOR_OFFSET, -ANCHOR_OFFSET) if anchored else None

    def layouts(mode="g2l", **settings):
        engine = StreamingSegmenter(CellNet(mode), InferenceSettings(device="cpu", **settings), 256, 256, footprint=612)
        return [engine._layout(w, 614, 614, origin, (overlaps[0][w.row], overlaps[1][w.col])) for w in windows]

    ceded = layouts()
    assert [len(layout.grid) for layout in ceded] == [4, 4, 4, 4]
    assert [len(layout.grid) for layout in layouts(blend="sum")] == [9, 9, 9, 9]
    assert [len(layout.grid) for layout in layouts("bidirectional")] == [9, 9, 9, 9]
    # coarse-to-fine chooses a window's patches from the whole window's global image
    assert [len(layout.grid) for layout in layouts(coarse_to_fine=True)] == [9, 9, 9, 9]
    if anchored:  # the same global view as a window that keeps all its patches
        assert [layout.context for layout in ceded] == [layout.context for layout in layouts(blend="sum")]
    total, both = np.zeros((614, 614)), np.zeros((614, 614), dtype=int)
    for layout in ceded:
        w, (top, bottom, left, right) = layout.window, layout.margins
        weights = layout.weights(windows)
        # a side inside the scene starts or ends well inside the window; one on its edge does not
        assert (top < -150) == (w.top > 0) and (bottom < -150) == (w.bottom < 614)
        assert (left < -150) == (w.left > 0) and (right < -150) == (w.right < 614)
        covered = np.zeros((w.height, w.width), dtype=bool)
        covered[max(0, -top) : w.height - max(0, -bottom), max(0, -left) : w.width - max(0, -right)] = True
        assert (weights[~covered] == 0).all() and (weights[covered] > 0).all()
        total[w.slices] += weights
        both[w.slices] += weights > 0
    assert (total > 0).all()
    # on a row that only the top windows weigh, the two blend over about 152 columns (the
    # lattice moves each end by less than a step)
    assert (both[:100] == 1).any() and (both[:100] <= 2).all()
    shared = (both[100] == 2).sum()
    assert (152 <= shared < 152 + 2 * ANCHOR_STEP) if anchored else shared == 152
    # the widest blend that the map's provenance states is the one the weights make
    assert widest_blend(windows, ceded) == max(shared, (both[:, 100] == 2).sum())


def test_an_anchored_grid_blends_windows_without_seams(tmp_path):
    """The stand-in network that gives every patch and window its own logit offset, on a
    smooth scene cut into windows whose anchored grids stop short of sides they share: the
    scores change by little from one pixel to the next, as on the scene's own grid."""
    from test_inference import OffsetNet, largest_step, smooth_scene

    scene = smooth_scene(tmp_path / "smooth.tif", 300, 420)
    steps = {}
    for anchor in ("world", "scene"):
        checkpoint = Checkpoint(OffsetNet(), BINARY, InputScaling(), 32, 96, 3.0, {"training": {"footprint_px": 192}})
        summary = segment(scene, tmp_path / f"{anchor}.tif", model=checkpoint, probabilities=tmp_path / f"{anchor}-p.tif",
                          settings=InferenceSettings(device="cpu", precision="fp32", min_overlap=32, window_overlap=72,
                                                     grid_anchor=anchor))
        with rasterio.open(tmp_path / f"{anchor}-p.tif") as src:
            steps[anchor] = largest_step(src.read())
        assert summary.stats.windows == 6
    assert steps["world"] <= max(10, 1.5 * steps["scene"]), steps


def test_a_scene_much_coarser_than_the_model_anchors_its_patches_only():
    """The default model's view of a 4.78 m scene would be 0.83 working-grid px a global
    pixel: rounding it to 1 would move the view's resolution by 20 %, so the window keeps
    its own global image (as without the lattice) and only the patches are anchored."""
    engine = StreamingSegmenter(CellNet("g2l"), InferenceSettings(device="cpu"), 256, 256, footprint=612, coarseness=2.39)
    assert engine.grid_anchor == "world" and engine.global_step == 0
    layout = engine._layout(PatchWindow(0, 0, 0, 0, 0, 300, 300), 300, 300, (5 - ANCHOR_OFFSET, 0))
    assert layout.context is None and layout.margins[0] == 5 and layout.grid.row_starts == (0, 64)
    # a window within a lattice step of a patch keeps one patch across it, on its own grid
    small = engine._layout(PatchWindow(0, 0, 0, 0, 0, 256, 280), 256, 280, (5, 5))
    assert small.margins == (0, 0, 0, 0) and len(small.grid) == 2
    assert StreamingSegmenter(CellNet("g2l"), InferenceSettings(device="cpu"), 256, 256, footprint=612).global_step == 2


def test_the_released_grid_is_the_scenes_own():
    def engine(**settings):
        settings = {"device": "cpu", "min_overlap": 32} | settings
        return StreamingSegmenter(CellNet("g2l"), InferenceSettings(**settings), 96, 53, footprint=128)

    layout = engine(grid_anchor="scene")._layout(PatchWindow(0, 0, 0, 0, 0, 128, 128), 300, 340, None)
    assert layout.context is None and layout.margins == (0, 0, 0, 0) and layout.grid.row_starts == (0, 32)
    for settings in ({"global_view": "squeeze"}, {"mode": "local"}, {"min_overlap": 70}):
        assert engine(**settings).grid_anchor == "scene"  # where no lattice applies: the scene's own grid
    with pytest.raises(InputError, match="use grid_anchor='scene'"):
        engine(grid_anchor="world", mode="local")
    with pytest.raises(InputError, match="grid_anchor must be one of"):
        InferenceSettings(grid_anchor="map")


def test_a_global_box_beyond_the_scene_sees_it_mirrored(tmp_path):
    scene = textured_scene(tmp_path / "s.tif", 100, 120)
    with SceneReader(inspect_scene(scene)) as reader:
        reader.fix_stretch("auto", (0.0, 255.0))
        inside, _ = reader.read_global((50, 60), "auto", (0.0, 255.0), window=PatchWindow(0, 0, 0, 0, 0, 100, 120))
        beyond, valid = reader.read_global((55, 67), "auto", (0.0, 255.0), window=PatchWindow(0, 0, 0, -6, -10, 110, 134))
    # image pixels of 2 x 2 px: 3 above the scene and 2 below it, 5 before it and 2 after it
    np.testing.assert_array_equal(beyond, np.pad(inside, ((0, 0), (3, 2), (5, 2)), mode="reflect"))
    assert valid[3:53, 5:65].all() and valid.sum() == 50 * 60


# ---------------------------------------------------------------------------- the maps
@pytest.mark.parametrize("mode, footprint, global_size", [("g2l", 128, 53), ("global", 512, 213)])
def test_a_cut_gets_the_scenes_scores_where_their_cells_share_the_ground(tmp_path, mode, footprint, global_size):
    """``g2l`` over several context windows; ``global`` in one window, whose global image's
    cells are 32 of its 2 px pixels. Away from the cut's new edge (whose cells see its mirror
    image), the anchored cut's scores are the scene's; on the scene's own grid they are not."""
    scene = textured_scene(tmp_path / "s.tif")
    cut = cut_of(scene, tmp_path / "cut.tif")
    far = (slice(CUT[0] + 130, None), slice(CUT[1] + 130, None))  # beyond the edge cells and the global margin
    differences = {}
    for anchor in ("world", "scene"):
        whole = scores(tmp_path, scene, f"s-{anchor}", mode, footprint, global_size, grid_anchor=anchor)
        part = scores(tmp_path, cut, f"c-{anchor}", mode, footprint, global_size, grid_anchor=anchor)
        differences[anchor] = np.abs(part[far[0].start - CUT[0] :, far[1].start - CUT[1] :] - whole[far]).max()
    assert differences["world"] <= 1, differences  # rounding of the written 0-255 scores
    assert differences["scene"] >= 8, differences


def test_a_georeferenced_cut_keeps_its_classes_with_the_default_model(sample_data, tmp_path):
    """The default model on a real DeepGlobe image and a cut of it that carries its place:
    on the map's lattice the two agree on more of their shared pixels than on their own grids."""
    import glgeo

    image = sample_data / "deepglobe" / "images" / "2774_sat.jpg"
    with rasterio.open(image) as src:
        window = Window(517, 333, src.width - 517, src.height - 333)
        data, transform = src.read(window=window), src.window_transform(window)
    cut = tmp_path / "cut.tif"
    with rasterio.open(cut, "w", driver="GTiff", width=data.shape[2], height=data.shape[1], count=3, dtype="uint8",
                       transform=transform) as dst:
        dst.write(data)
    agreement = {}
    for anchor in ("world", "scene"):
        maps = []
        for scene in (image, cut):
            out = tmp_path / f"{anchor}-{scene.stem}.tif"
            glgeo.segment(scene, out, settings=InferenceSettings(device="cpu", grid_anchor=anchor))
            with rasterio.open(out) as src:
                maps.append(src.read(1))
        agreement[anchor] = (maps[1] == maps[0][333:, 517:]).mean()
    assert agreement["world"] > 0.95 and agreement["world"] > agreement["scene"] + 0.02, agreement


@pytest.mark.parametrize("shape, origin, footprint, settings", [
    ((300, 700), (500_003.0, 4_000_011.0), 192, {"window_overlap": 72}),  # windows stopping short of shared sides
    ((300, 700), (499_990.5, 4_000_000.0), 192, {"window_overlap": 72, "edge_margin": 12}),
    ((130, 900), (500_017.0, 4_000_005.0), 192, {}),  # a strip within a lattice step of a patch: the scene's grid
    ((420, 420), (500_001.0, 3_999_999.0), None, {}),  # no footprint: the released view and grid
    ((500, 640), (500_029.0, 4_000_029.0), 256, {"window_overlap": 100}),
])
def test_anchored_grids_leave_no_pixel_without_a_class(tmp_path, shape, origin, footprint, settings):
    """No silent loss: on scenes with a nodata corner, at places on the map where the
    lattice makes windows reach past the scene or stop short of a neighbour, every valid
    pixel gets a class and every nodata pixel stays nodata."""
    from test_inference import OffsetNet

    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    data = np.stack([127 + 100 * np.sin(xx / 17 + yy / 23), np.full((h, w), 90.0), np.full((h, w), 60.0)]).astype(np.uint8)
    nodata = np.zeros((h, w), dtype=bool)
    nodata[: h // 3, : w // 2] = True
    data[:, nodata] = 0
    data[0][~nodata] = np.maximum(data[0][~nodata], 1)
    scene = write_geotiff(tmp_path / "s.tif", data, crs="EPSG:32631", origin=origin, res=1.0, nodata=0)
    metadata = {} if footprint is None else {"training": {"footprint_px": footprint}}
    checkpoint = Checkpoint(OffsetNet(), BINARY, InputScaling(), 32, 96, 3.0, metadata)
    segment(scene, tmp_path / "out.tif", model=checkpoint,
            settings=InferenceSettings(device="cpu", precision="fp32", min_overlap=32, **settings))
    with rasterio.open(tmp_path / "out.tif") as src:
        classes = src.read(1)
        np.testing.assert_array_equal(classes == src.nodata, nodata)
