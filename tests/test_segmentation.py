"""The streaming engine and ``glgeo.segment`` on generated scenes.

Most tests swap GLNet for a stand-in whose output depends only on each pixel's colour (a
"network constant per class"): whatever the patch grid, batching or blending, the map must
then equal the scene's class map exactly, with no seam. The real GLNet runs in the tests
that check that settings which must not change the result do not.
"""

from __future__ import annotations

import logging
import io
import re
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import rasterio
import torch
import torch.nn.functional as F
from affine import Affine

from glgeo.errors import InputError, OutputError
from glgeo.inference import InferenceSettings
from glgeo.models.checkpoint import Checkpoint, InputScaling
from glgeo.schemes import DEEPGLOBE, INRIA, NODATA_ID, ClassScheme
from glgeo.segmentation import segment
from glgeo.tiling import PatchGrid

from fixtures.checkpoints import tiny_checkpoint
from fixtures.http import http_folder  # noqa: F401 - a fixture
from fixtures.rasters import write_geotiff

CRS = "EPSG:32631"
TRANSFORM = Affine(2.0, 0.0, 440720.0, 0.0, -2.0, 3751320.0)


class _Counter:
    """A count shared by a model and the inference copies the engine makes of it."""

    def __init__(self) -> None:
        self.n = 0

    def __deepcopy__(self, memo):
        return self


class ColourNet(torch.nn.Module):
    """Stand-in GLNet: logits = closeness of each pixel's colour to each class colour.

    ``downsample=4`` returns logits at 1/4 resolution like GLNet (average-pooled).
    Counts the patches it is asked to encode.
    """

    def __init__(self, scheme: ClassScheme, mode: str = "g2l", downsample: int = 1) -> None:
        super().__init__()
        self.register_buffer("palette", torch.tensor(scheme.colors, dtype=torch.float32) / 255.0)
        self.config = SimpleNamespace(n_classes=scheme.n_classes, mode=mode, backbone="colour")
        self.downsample = downsample
        self._count = _Counter()

    @property
    def encoded(self) -> int:
        """Patches encoded so far, by this model or its inference copies."""
        return self._count.n

    def check_mode(self, mode):
        return mode or self.config.mode

    def _logits(self, x):
        d = ((x[:, None] - self.palette[None, :, :, None, None]) ** 2).sum(dim=2)
        logits = -20.0 * d
        return F.avg_pool2d(logits, self.downsample) if self.downsample > 1 else logits

    def encode_global(self, image):
        logits = self._logits(image)
        return SimpleNamespace(ps3=logits, logits=logits)

    def encode_local(self, patches, boxes, context):
        self._count.n += patches.shape[0]
        logits = self._logits(patches)
        return SimpleNamespace(ps3=logits, logits=logits)

    def aggregate(self, local_ps3, global_ps3, boxes):
        return local_ps3

    def g2l_logits(self, patches, boxes, context):
        return self.aggregate(self.encode_local(patches, boxes, context).ps3, context.ps3, boxes)


def standin(scheme=DEEPGLOBE, mode="g2l", downsample=1, patch=128, global_size=64) -> Checkpoint:
    return Checkpoint(ColourNet(scheme, mode, downsample), scheme, InputScaling(), global_size, patch, 3.0)


def class_map(height: int, width: int, n_classes: int, seed: int = 0) -> np.ndarray:
    """Irregular class regions (nearest of random seeds), not aligned to any grid."""
    rng = np.random.default_rng(seed)
    seeds = rng.uniform(0, 1, size=(12, 2)) * (height, width)
    yy, xx = np.mgrid[0:height, 0:width]
    d = (yy[None] - seeds[:, 0, None, None]) ** 2 + (xx[None] - seeds[:, 1, None, None]) ** 2
    return (d.argmin(axis=0) % n_classes).astype(np.uint8)


def write_scene(path: Path, classes: np.ndarray, scheme: ClassScheme, dtype="uint8", factor=1,
                nodata_mask: np.ndarray | None = None, alpha: bool = False) -> Path:
    """The scheme's colour of each class (times ``factor``), with nodata or an alpha band."""
    colours = np.asarray(scheme.colors, dtype=np.float64)[classes].transpose(2, 0, 1) * factor
    data = colours.astype(dtype)
    nodata = None
    if nodata_mask is not None and not alpha:
        nodata = 0
        data[:, nodata_mask] = 0
    return write_geotiff(path, data, crs=CRS, transform=TRANSFORM, nodata=nodata,
                         alpha=np.where(nodata_mask, 0, 255) if alpha else None,
                         tiled=True, blockxsize=64, blockysize=64)


def read(path: Path):
    """Class ids of a class raster, its nodata value (7: DeepGlobe ids are packed in 3 bits)
    turned into NODATA_ID as glgeo's readers do; its CRS, transform, nodata and size."""
    with rasterio.open(path) as src:
        classes = src.read(1)
        classes = np.where(classes == src.nodata, NODATA_ID, classes)
        return classes, src.crs, src.transform, src.nodata, (src.height, src.width)


@pytest.mark.parametrize("shape,patch,batch", [((301, 517), 128, 3), ((517, 301), 100, 4), ((37, 53), 128, 2)])
def test_constant_per_class_network_gives_a_seamless_georeferenced_map(tmp_path, shape, patch, batch):
    truth = class_map(*shape, 7)
    nodata = np.zeros(shape, bool)
    nodata[: shape[0] // 3, : shape[1] // 4] = True  # a corner outside the footprint
    truth = np.where(truth == 0, 6, truth)  # "unknown" is black, the scene's nodata value
    scene = write_scene(tmp_path / "scene.tif", truth, DEEPGLOBE, nodata_mask=nodata)
    out = tmp_path / "classes.tif"
    summary = segment(scene, out, model=standin(patch=patch),
                      settings=InferenceSettings(batch_size=batch, device="cpu"))
    classes, crs, transform, nodata_value, size = read(out)
    assert size == shape and crs.to_string() == CRS and transform == TRANSFORM and nodata_value == 7
    expected = np.where(nodata, NODATA_ID, truth)
    np.testing.assert_array_equal(classes, expected)  # pixel-exact: no seams anywhere
    assert summary.nodata_pixels == int(nodata.sum())
    areas = summary.class_areas
    assert summary.area_unit == "m2"
    assert areas["urban"] == pytest.approx(4.0 * (expected == 1).sum())


def test_vsicurl_scene_is_read_over_http_by_range_requests(http_folder, tmp_path):
    served, url = http_folder
    truth = class_map(301, 263, 7)
    truth = np.where(truth == 0, 6, truth)
    write_scene(served / "scene.tif", truth, DEEPGLOBE)
    out = tmp_path / "classes.tif"
    with rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR", CPL_VSIL_CURL_ALLOWED_EXTENSIONS=".tif"):
        summary = segment(f"/vsicurl/{url}/scene.tif", out, model=standin(patch=128),
                          settings=InferenceSettings(batch_size=3, device="cpu"))
    classes, crs, transform, _, size = read(out)
    assert size == truth.shape and crs.to_string() == CRS and transform == TRANSFORM
    np.testing.assert_array_equal(classes, truth)
    assert summary.scene.startswith("/vsicurl/http://127.0.0.1")


def test_quarter_resolution_logits_only_blur_class_borders(tmp_path):
    shape = (300, 410)
    truth = class_map(*shape, 7, seed=3)
    scene = write_scene(tmp_path / "scene.tif", truth, DEEPGLOBE)
    segment(scene, tmp_path / "out.tif", model=standin(downsample=4, patch=96),
            settings=InferenceSettings(device="cpu", batch_size=5))
    classes = read(tmp_path / "out.tif")[0]
    border = np.zeros(shape, bool)  # pixels within 6 px of another class
    for dy in range(-6, 7):
        for dx in range(-6, 7):
            border |= np.roll(truth, (dy, dx), axis=(0, 1)) != truth
    assert (classes[~border] == truth[~border]).all()


def _trained_at(scale: float, **kw) -> Checkpoint:
    checkpoint = standin(**kw)
    checkpoint.metadata = {"training": {"scene_scale": scale}}
    return checkpoint


def test_model_trained_at_a_quarter_scale_reads_a_working_grid_and_writes_the_scene_grid(tmp_path):
    coarse = class_map(75, 130, 6, seed=4) + 1  # a map of 4 x 4 px blocks, no black "unknown"
    truth = coarse.repeat(4, axis=0).repeat(4, axis=1)
    yy, xx = np.mgrid[0:300, 0:520]
    nodata = (yy - 40) ** 2 + (xx - 60) ** 2 < 47**2  # a disc, not aligned to the blocks
    # an alpha band, not a per-band nodata value: GDAL's decimation leaves each band's
    # nodata values out, and urban's red is 0
    scene = write_scene(tmp_path / "scene.tif", truth, DEEPGLOBE, nodata_mask=nodata, alpha=True)
    checkpoint = _trained_at(0.25, patch=64)
    assert checkpoint.scene_scale == 0.25
    summary = segment(scene, tmp_path / "out.tif", model=checkpoint, probabilities=tmp_path / "p.tif",
                      settings=InferenceSettings(device="cpu", batch_size=3))
    classes, crs, transform, _, size = read(tmp_path / "out.tif")
    assert size == (300, 520) and crs.to_string() == CRS and transform == TRANSFORM  # the scene's own grid
    assert summary.scale == 0.25 and (summary.height, summary.width) == (300, 520)
    # the patch grid is the working grid's: 75 x 130 px in 64 px patches
    assert summary.stats.patches == len(PatchGrid.for_scene(75, 130, 64))
    assert checkpoint.model.encoded == summary.stats.computed
    # nodata exactly where the scene's own mask says, at full resolution
    np.testing.assert_array_equal(classes == NODATA_ID, nodata)
    # blocks away from the disc's edge (where nodata zeros enter the decimation) are exact
    near = np.zeros((75, 130), bool)
    disc = nodata.reshape(75, 4, 130, 4).any(axis=(1, 3))
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            near |= np.roll(disc, (dy, dx), axis=(0, 1))
    far = ~near.repeat(4, axis=0).repeat(4, axis=1)
    # scores are interpolated bilinearly between working pixels: a pixel whose interpolation
    # taps (its working pixel and the neighbours, within 4 px) are all one class keeps it
    border = np.zeros(truth.shape, bool)
    for dy in range(-5, 6):
        for dx in range(-5, 6):
            border |= np.roll(truth, (dy, dx), axis=(0, 1)) != truth
    np.testing.assert_array_equal(classes[far & ~border], truth[far & ~border])
    assert (classes[far] == truth[far]).mean() > 0.99  # borders move only where classes meet
    assert summary.classes[0].pixels == 0 and summary.nodata_pixels == int(nodata.sum())
    with rasterio.open(tmp_path / "p.tif") as src:
        scores = src.read()
    assert scores.shape == (7, 300, 520) and (scores[:, nodata] == 0).all()
    assert (scores.argmax(axis=0)[far & ~border] == truth[far & ~border]).all()

    # nearest: every scene pixel takes its working pixel's class, exact on these blocks
    nearest = segment(scene, tmp_path / "nearest.tif", model=checkpoint,
                      settings=InferenceSettings(device="cpu", logit_upsampling="nearest"))
    classes = read(tmp_path / "nearest.tif")[0]
    np.testing.assert_array_equal(classes[far], truth[far])
    np.testing.assert_array_equal(classes == NODATA_ID, nodata)
    assert nearest.scale == 0.25

    # scale 1: the same model on imagery already that coarse, on its full grid
    full = segment(scene, tmp_path / "full.tif", model=checkpoint,
                   settings=InferenceSettings(device="cpu", scale=1.0))
    assert full.scale == 1.0 and full.stats.patches == len(PatchGrid.for_scene(300, 520, 64))


def test_working_grid_at_a_fractional_scale_keeps_the_scene_grid(tmp_path):
    truth = class_map(230, 310, 6, seed=5) + 1
    scene = write_scene(tmp_path / "scene.tif", truth, DEEPGLOBE)
    summary = segment(scene, tmp_path / "out.tif", model=standin(patch=64),
                      settings=InferenceSettings(device="cpu", scale=0.3))
    classes, _, transform, _, size = read(tmp_path / "out.tif")
    assert size == truth.shape and transform == TRANSFORM
    assert summary.stats.patches == len(PatchGrid.for_scene(69, 93, 64))  # round(230 x 0.3), round(310 x 0.3)
    border = np.zeros(truth.shape, bool)  # within 5 px (1.5 working px) of another class
    for dy in range(-5, 6):
        for dx in range(-5, 6):
            border |= np.roll(truth, (dy, dx), axis=(0, 1)) != truth
    np.testing.assert_array_equal(classes[~border], truth[~border])


def test_georeferenced_scenes_are_read_at_the_resolution_the_model_was_trained_at(tmp_path, caplog):
    from glgeo.io import inspect_scene
    from glgeo.resolution import reading_scale

    truth = class_map(120, 200, 6, seed=6) + 1
    scene = write_scene(tmp_path / "scene.tif", truth, DEEPGLOBE)  # 2 m pixels (TRANSFORM)
    info = inspect_scene(scene)
    assert info.gsd == pytest.approx(2.0)

    def trained(gsd, scale=1.0):
        checkpoint = standin(patch=64)
        checkpoint.metadata = {"training": {"scene_scale": scale, "gsd_m": gsd}}
        return checkpoint

    assert reading_scale(trained(8.0, 0.25), info) == pytest.approx(0.25)
    assert reading_scale(trained(5.0, 1.0), info) == pytest.approx(0.4)  # the GSD decides, not the training scale
    assert reading_scale(trained(2.05, 0.5), info) == 1.0  # within 5 %: read as it is
    with caplog.at_level("WARNING", logger="glgeo.resolution"):
        assert reading_scale(trained(0.5), info) == 1.0  # coarser than the model's imagery
    assert "coarser than the 0.5 m the model was trained on" in caplog.text
    # a plain image: no GSD, so the training scale (imagery assumed like the training data's)
    plain = tmp_path / "plain.png"
    with rasterio.open(plain, "w", driver="PNG", width=200, height=120, count=3, dtype="uint8") as dst:
        dst.write(np.asarray(DEEPGLOBE.colors, dtype=np.uint8)[truth].transpose(2, 0, 1))
    assert reading_scale(trained(8.0, 0.5), inspect_scene(plain)) == 0.5
    summary = segment(scene, tmp_path / "out.tif", model=trained(8.0, 0.25), settings=InferenceSettings(device="cpu"))
    assert summary.scale == pytest.approx(0.25) and summary.stats.patches == len(PatchGrid.for_scene(30, 50, 64))
    assert read(tmp_path / "out.tif")[4] == truth.shape
    # a scene that shrinks to a few pixels at the model's resolution is still segmented, on its own grid
    summary = segment(scene, tmp_path / "tiny.tif", model=trained(40.0), settings=InferenceSettings(device="cpu"))
    assert summary.stats.patches == 1 and read(tmp_path / "tiny.tif")[4] == truth.shape


def test_scale_outside_0_1_is_refused():
    for bad in (0.0, -0.5, 1.5):
        with pytest.raises(InputError, match="scale must be in"):
            InferenceSettings(scale=bad)


def test_nodata_patches_are_not_computed_and_alpha_is_respected(tmp_path):
    shape = (260, 390)
    truth = class_map(*shape, 6, seed=1) + 1
    nodata = np.zeros(shape, bool)
    nodata[:, :200] = True
    scene = write_scene(tmp_path / "alpha.tif", truth, DEEPGLOBE, nodata_mask=nodata, alpha=True)
    checkpoint = standin(patch=64)
    summary = segment(scene, tmp_path / "out.tif", model=checkpoint,
                      settings=InferenceSettings(device="cpu", min_overlap=10))
    classes = read(tmp_path / "out.tif")[0]
    np.testing.assert_array_equal(classes, np.where(nodata, NODATA_ID, truth))
    stats = summary.stats
    assert stats.skipped_nodata > 0
    assert checkpoint.model.encoded == stats.computed == stats.patches - stats.skipped_nodata


def test_16_bit_scene_through_an_explicit_stretch(tmp_path):
    shape = (140, 150)
    truth = class_map(*shape, 7, seed=2)
    scene = write_scene(tmp_path / "u16.tif", truth, DEEPGLOBE, dtype="uint16", factor=16)  # 12-bit values
    summary = segment(scene, tmp_path / "out.tif", model=standin(patch=64),
                      settings=InferenceSettings(device="cpu", stretch=(0.0, 4080.0)))
    np.testing.assert_array_equal(read(tmp_path / "out.tif")[0], truth)
    assert "fixed 0..4080" in summary.stats.stretch
    auto = segment(scene, tmp_path / "auto.tif", model=standin(patch=64), settings=InferenceSettings(device="cpu"))
    assert "percentiles" in auto.stats.stretch
    # the share clipped is in the summary, not only in the -v log
    assert re.search(r"\(\d+\.\d\d % of values saturate\)$", auto.stats.stretch), auto.stats.stretch
    # and in the map's provenance, which once said only GLGEO_OPTIONS=defaults
    with rasterio.open(tmp_path / "auto.tif") as src:
        assert src.tags()["GLGEO_STRETCH"] == auto.stats.stretch


def test_coarse_to_fine_computes_only_patches_near_the_foreground(tmp_path):
    shape = (400, 400)
    truth = np.zeros(shape, np.uint8)
    truth[300:360, 310:380] = 1  # one building in a corner
    scene = write_scene(tmp_path / "b.tif", truth, INRIA)
    checkpoint = standin(INRIA, patch=96, global_size=128)
    summary = segment(scene, tmp_path / "out.tif", model=checkpoint,
                      settings=InferenceSettings(device="cpu", coarse_to_fine=True))
    stats = summary.stats
    assert stats.c2f_box is not None and stats.skipped_c2f > 0
    assert checkpoint.model.encoded == stats.computed < stats.patches
    np.testing.assert_array_equal(read(tmp_path / "out.tif")[0], truth)
    with pytest.raises(InputError, match="binary"):
        segment(scene, tmp_path / "x.tif", model=standin(DEEPGLOBE), settings=InferenceSettings(coarse_to_fine=True))


def test_batching_and_prefetch_do_not_change_real_glnet_output(tmp_path):
    scene = write_scene(tmp_path / "s.tif", class_map(150, 230, 7), DEEPGLOBE)
    checkpoint = tiny_checkpoint(DEEPGLOBE, "g2l", widths=(256, 128))
    runs = []
    for i, (batch, prefetch) in enumerate([(1, 0), (7, 2)]):
        settings = InferenceSettings(
            device="cpu", precision="fp32", batch_size=batch, prefetch=prefetch, channels_last=bool(i), min_overlap=8
        )
        segment(scene, tmp_path / f"c{i}.tif", model=checkpoint, settings=settings, probabilities=tmp_path / f"p{i}.tif")
        with rasterio.open(tmp_path / f"p{i}.tif") as src:
            runs.append((read(tmp_path / f"c{i}.tif")[0], src.read().astype(int)))
    assert (runs[0][0] == runs[1][0]).mean() > 0.999
    assert np.abs(runs[0][1] - runs[1][1]).max() <= 1


@pytest.mark.parametrize("tta", [False, True])
def test_a_handed_over_model_is_not_held_in_fp32_while_the_engine_runs(tmp_path, tta):
    # segment(..., model=load_model(path)) runs an inference copy: the fp32 original must
    # be freed once the copy exists (for ResNet-50, 250 MB of a 1.3 GB peak), TTA or not.
    import gc
    import weakref

    scene = write_scene(tmp_path / "s.tif", class_map(150, 230, 7), DEEPGLOBE)
    handed = [tiny_checkpoint(DEEPGLOBE, "g2l")]
    original = weakref.ref(handed[0].model)
    alive = []

    def progress(done, total):
        if not alive:  # once the first batch is done
            gc.collect()
            alive.append(original() is not None)

    settings = InferenceSettings(device="cpu", mode="global" if tta else None)  # TTA runs global mode only
    segment(scene, tmp_path / "out.tif", model=handed.pop(), settings=settings, tta=tta, progress=progress)
    assert alive and not any(alive)


def test_bidirectional_kept_shares_on_disk_in_memory_or_recomputed_agree(tmp_path, monkeypatch):
    scene = write_scene(tmp_path / "s.tif", class_map(100, 120, 7), DEEPGLOBE)
    checkpoint = tiny_checkpoint(DEEPGLOBE, "bidirectional", widths=(256, 128))
    spill = tmp_path / "tmp"
    spill.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spill))  # TMPDIR, as tempfile read it
    opened = []
    real_temporary_file = tempfile.TemporaryFile
    monkeypatch.setattr(tempfile, "TemporaryFile", lambda **kw: opened.append(real_temporary_file(**kw)) or opened[-1])
    outputs = []
    for reuse in ("disk", "memory", "recompute"):
        settings = InferenceSettings(device="cpu", precision="fp32", batch_size=3, l2g_reuse=reuse, min_overlap=8)
        summary = segment(scene, tmp_path / f"b{reuse}.tif", model=checkpoint, probabilities=tmp_path / f"p{reuse}.tif",
                          settings=settings)
        assert summary.stats.mode == "bidirectional" and summary.stats.l2g_reuse == reuse
        # one n_classes-channel share per computed patch, 4 bytes a value in fp32
        per_patch, rest = divmod(summary.stats.kept_bytes, summary.stats.computed * 7 * 4)
        assert rest == 0 and (per_patch == 0) == (reuse == "recompute")
        with rasterio.open(tmp_path / f"p{reuse}.tif") as src:
            outputs.append(src.read().astype(int))
    assert len(opened) == 1 and opened[0].closed  # the disk run's file, closed (and so deleted)
    assert list(spill.iterdir()) == []
    assert np.abs(outputs[0] - outputs[1]).max() == 0
    assert np.abs(outputs[0] - outputs[2]).max() <= 1
    for mode in ("global", "g2l"):
        run = segment(scene, tmp_path / f"{mode}.tif", model=checkpoint, settings=InferenceSettings(device="cpu", mode=mode))
        assert run.stats.mode == mode
        assert set(np.unique(read(tmp_path / f"{mode}.tif")[0])) <= set(range(7))
    with pytest.raises(InputError, match="cannot run mode 'local'"):
        segment(scene, tmp_path / "local.tif", model=checkpoint, settings=InferenceSettings(mode="local"))


def test_interrupted_run_leaves_no_output(tmp_path):
    scene = write_scene(tmp_path / "s.tif", class_map(200, 200, 7), DEEPGLOBE)

    def interrupt(done: int, total: int) -> None:
        if done >= 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        segment(scene, tmp_path / "out.tif", model=standin(patch=64), probabilities=tmp_path / "p.tif",
                settings=InferenceSettings(device="cpu", batch_size=1), progress=interrupt)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.tif"]


def test_bad_requests(tmp_path):
    scene = write_scene(tmp_path / "s.tif", class_map(50, 50, 2), INRIA)
    with pytest.raises(OutputError, match="same file as the input"):
        segment(scene, scene, model=standin(INRIA), overwrite=True)
    with pytest.raises(OutputError, match="does not exist"):
        segment(scene, tmp_path / "missing" / "out.tif", model=standin(INRIA))
    with pytest.raises(InputError, match="predicts the 'inria' classes"):
        segment(scene, tmp_path / "out.tif", model=standin(INRIA), scheme="deepglobe")
    segment(scene, tmp_path / "out.tif", model=standin(INRIA), settings=InferenceSettings(device="cpu"))
    with pytest.raises(OutputError, match="overwrite=True"):
        segment(scene, tmp_path / "out.tif", model=standin(INRIA))


@pytest.mark.parametrize("scale", [1.0, 0.25])
def test_nan_and_infinite_values_of_a_float_scene_are_no_data(tmp_path, scale):
    """A float scene that declares no nodata: its NaN and infinite pixels get no class (a
    NaN fed to the network, or an infinity stretched to white, would change the classes of
    the pixels around it), and the summary counts them as nodata."""
    truth = class_map(160, 200, 6, seed=6) + 1
    colours = np.asarray(DEEPGLOBE.colors, dtype=np.float32)[truth].transpose(2, 0, 1)
    bad = np.zeros(truth.shape, bool)
    colours[:, 10:30, :] = np.inf  # rows of +inf in every band
    colours[1, 100:104, 50:90] = np.nan  # NaN in one band only
    colours[2, 140:150, 150:170] = -np.inf
    bad[10:30, :] = bad[100:104, 50:90] = bad[140:150, 150:170] = True
    scene = write_geotiff(tmp_path / "float.tif", colours, crs=CRS, transform=TRANSFORM)
    checkpoint = _trained_at(scale, patch=64)
    summary = segment(scene, tmp_path / "out.tif", model=checkpoint,
                      settings=InferenceSettings(device="cpu", batch_size=3, stretch=(0.0, 255.0)))
    classes = read(tmp_path / "out.tif")[0]
    np.testing.assert_array_equal(classes == NODATA_ID, bad)
    assert summary.nodata_pixels == int(bad.sum())
    # away from the bad pixels (2 working px and the class borders), the classes are the truth's
    near = np.zeros(truth.shape, bool)
    reach = round(2 / scale) + 5
    for dy in range(-reach, reach + 1, 2):
        for dx in range(-reach, reach + 1, 2):
            near |= np.roll(bad, (dy, dx), axis=(0, 1)) | (np.roll(truth, (dy, dx), axis=(0, 1)) != truth)
    assert (classes[~near] == truth[~near]).mean() > 0.99


def test_an_output_whose_sidecars_exist_needs_overwrite(tmp_path):
    """landcover.png after landcover.tif would replace landcover.tif's .qml (its style
    and its nodata): the sidecars are part of the output, refused as the file is."""
    scene = write_scene(tmp_path / "scene.tif", class_map(40, 50, 6, seed=7) + 1, DEEPGLOBE)
    model = standin(patch=64)
    segment(scene, tmp_path / "landcover.tif", model=model, settings=InferenceSettings(device="cpu"))
    style = (tmp_path / "landcover.qml").read_text()
    with pytest.raises(OutputError, match=r"landcover.qml', a sidecar this output writes, already exists; pass overwrite"):
        segment(scene, tmp_path / "landcover.png", model=model, settings=InferenceSettings(device="cpu"))
    assert (tmp_path / "landcover.qml").read_text() == style and not (tmp_path / "landcover.png").exists()
    segment(scene, tmp_path / "landcover.png", model=model, settings=InferenceSettings(device="cpu"), overwrite=True)
    assert (tmp_path / "landcover.png").exists()
    # a format glgeo does not write is said first: overwrite would not help
    with pytest.raises(InputError, match=r"lossy"):
        segment(scene, tmp_path / "landcover.jpg", model=model, settings=InferenceSettings(device="cpu"))


def test_scores_and_classes_never_share_a_style(tmp_path):
    """The score raster gets its own .qml and .qmd: a name that differs from the class
    raster's by its extension only (they would share landcover.qml) is refused before any
    work, as is an existing sidecar of the scores without overwrite."""
    scene = write_scene(tmp_path / "scene.tif", class_map(40, 50, 6, seed=7) + 1, DEEPGLOBE)
    model, settings = standin(patch=64), InferenceSettings(device="cpu")
    with pytest.raises(OutputError, match=r"would share their QGIS style \(landcover.qml\); .* landcover-scores.img"):
        segment(scene, tmp_path / "landcover.tif", model=model, settings=settings, probabilities=tmp_path / "landcover.img")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.tif"]
    (tmp_path / "scores.qml").write_text("the user's style")
    with pytest.raises(OutputError, match=r"scores.qml', a sidecar this output writes, already exists"):
        segment(scene, tmp_path / "landcover.tif", model=model, settings=settings, probabilities=tmp_path / "scores.tif")
    segment(scene, tmp_path / "landcover.tif", model=model, settings=settings, probabilities=tmp_path / "scores.tif",
            overwrite=True)
    assert "singlebandpseudocolor" in (tmp_path / "scores.qml").read_text()
    assert "The score of each class at each pixel of scene.tif" in (tmp_path / "scores.qmd").read_text()


@pytest.mark.parametrize("crs, transform", [
    ("EPSG:3857", Affine(0.5, 0, -10_520_000, 0, -0.5, 4_450_000)),  # Web Mercator at 37.1 N: its m² are 1.57 of the ground's
    ("EPSG:4326", Affine(6e-6, 0, -94.4996, 0, -6e-6, 37.0751)),  # degrees, as the Joplin post-tornado tile
])
def test_summary_areas_are_the_grounds_in_mercator_and_geographic_crss(tmp_path, caplog, crs, transform):
    """A scene in Web Mercator (as tiled imagery comes) or in degrees gets its classes' areas
    in m² on the ground, and the log says how they were measured; the files agree."""
    import logging

    from glgeo.areas import PixelAreas, raster_class_areas

    colours = np.asarray(DEEPGLOBE.colors, dtype=np.uint8)[class_map(40, 50, 6, seed=8) + 1].transpose(2, 0, 1)
    scene = write_geotiff(tmp_path / "scene.tif", colours, crs=crs, transform=transform)
    with caplog.at_level(logging.INFO, logger="glgeo"):
        summary = segment(scene, tmp_path / "out.tif", model=standin(patch=64), settings=InferenceSettings(device="cpu"))
    assert "areas in m² measured on the ground" in caplog.text
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    # degrees at 37 N: pixels 0.53 x 0.67 m on the ground, read with square pixels (no warning)
    assert warned == []
    if crs == "EPSG:4326":
        assert f"{scene} has pixels of 0.534 x 0.666 m on the ground: read at 1 down x 0.801 across" in caplog.text
        assert summary.scale == pytest.approx((1.0, 0.8013), rel=1e-4)
    with rasterio.open(tmp_path / "out.tif") as out:
        ids = out.read(1)
        assert out.shape == (40, 50) and out.tags()["GLGEO_READING_SCALE"] == ("1" if crs == "EPSG:3857" else f"1,{summary.scale[1]:.6g}")
    every = PixelAreas(rasterio.crs.CRS.from_user_input(crs), transform, 50, 40).block(0, 0, 40, 50)
    assert summary.area_unit == "m2"
    for c in summary.classes:
        assert c.area == pytest.approx(every[ids == c.id].sum(), rel=1e-9)
    assert sum(c.area for c in summary.classes) == pytest.approx(every.sum())
    assert [a.area for a in raster_class_areas(tmp_path / "out.tif")[0]] == pytest.approx([c.area for c in summary.classes])


def test_a_model_trained_on_other_bands_is_fed_them_by_default(tmp_path):
    """A model trained with --bands 4,3,2 (recorded in its checkpoint) is fed bands 4, 3, 2 of
    a four-band scene without being told; a model that records none leaves the choice to the
    file's red, green and blue labels, or to the user where there are none (four unlabelled
    non-alpha bands: an error asking for bands)."""
    from fixtures.checkpoints import save_tiny_checkpoint
    from glgeo.models import load_checkpoint

    rng = np.random.default_rng(0)
    four = write_geotiff(tmp_path / "rgbn.tif", rng.integers(0, 255, (4, 40, 50), dtype=np.uint8))
    with rasterio.open(four, "r+") as dst:  # red, green, blue, near infrared (GDAL takes a fourth byte band as alpha)
        ci = rasterio.enums.ColorInterp
        dst.colorinterp = [ci.red, ci.green, ci.blue, ci.undefined]
    nir = save_tiny_checkpoint(tmp_path / "nir.pt", metadata={"training": {"bands": [4, 3, 2]}})
    plain = save_tiny_checkpoint(tmp_path / "plain.pt")
    assert load_checkpoint(nir).bands == (4, 3, 2) and load_checkpoint(plain).bands is None
    segment(four, tmp_path / "nir.tif", model=nir, settings=InferenceSettings(device="cpu"))
    segment(four, tmp_path / "given.tif", model=plain, bands=(4, 3, 2), settings=InferenceSettings(device="cpu"))
    with rasterio.open(tmp_path / "nir.tif") as a, rasterio.open(tmp_path / "given.tif") as b:
        np.testing.assert_array_equal(a.read(), b.read())  # the same network weights (seed 0), the same bands
    # a model that records none: the bands the file labels red, green and blue; unlabelled, the user chooses
    segment(four, tmp_path / "plain.tif", model=plain, settings=InferenceSettings(device="cpu"))
    segment(four, tmp_path / "first.tif", model=plain, bands=(1, 2, 3), settings=InferenceSettings(device="cpu"))
    with rasterio.open(tmp_path / "plain.tif") as a, rasterio.open(tmp_path / "first.tif") as b:
        np.testing.assert_array_equal(a.read(), b.read())
    with rasterio.open(four, "r+") as dst:
        dst.colorinterp = [ci.gray, ci.undefined, ci.undefined, ci.undefined]
    with pytest.raises(InputError, match=r"pass bands=\(1, 2, 3\) to choose them"):
        segment(four, tmp_path / "unlabelled.tif", model=plain, settings=InferenceSettings(device="cpu"))


class _NaNInReducedPrecision(ColourNet):
    """A stand-in whose local branch gives NaN when its weights are stored in bf16 (as
    bf16 kernels did on CPUs for views a few pixels wide), or always with ``always``."""

    always = False

    def encode_local(self, patches, boxes, context):
        out = super().encode_local(patches, boxes, context)
        if self.always or self.palette.dtype != torch.float32:
            out.logits = out.ps3 = torch.full_like(out.logits, float("nan"))
        return out


def test_non_finite_scores_in_bf16_are_recomputed_in_fp32_and_never_become_class_0(tmp_path, caplog):
    """A NaN score gave its pixels class 0 without a word (a 4 px wide strip in bf16): the
    batch is computed again in fp32, and where fp32 gives NaN too the run stops."""
    import logging

    from glgeo.errors import InputError

    classes = class_map(40, 50, 6, seed=3) + 1
    scene = write_scene(tmp_path / "scene.tif", classes, DEEPGLOBE)
    broken = Checkpoint(_NaNInReducedPrecision(DEEPGLOBE), DEEPGLOBE, InputScaling(), 64, 64, 3.0)
    with caplog.at_level(logging.INFO, logger="glgeo.inference"):
        segment(scene, tmp_path / "bf16.tif", model=broken, settings=InferenceSettings(device="cpu", precision="bf16"))
    assert "the local branch gave non-finite values in bf16: recomputed in fp32" in caplog.text
    segment(scene, tmp_path / "fp32.tif", model=standin(patch=64), settings=InferenceSettings(device="cpu", precision="fp32"))
    np.testing.assert_array_equal(read(tmp_path / "bf16.tif")[0], read(tmp_path / "fp32.tif")[0])
    assert (read(tmp_path / "bf16.tif")[0] == classes).mean() > 0.95
    broken.model.always = True
    # the model with this scene, not a glgeo bug (InternalError): an input error, one line in the CLI
    with pytest.raises(InputError, match="the local branch gave non-finite values .* in fp32 too"):
        segment(scene, tmp_path / "never.tif", model=broken, settings=InferenceSettings(device="cpu", precision="bf16"))
    assert not (tmp_path / "never.tif").exists()


def test_probabilities_beside_no_data_on_a_coarser_working_grid_sum_to_one(tmp_path):
    """Scores of a working grid coarser than the scene reach its pixels bilinearly; beside no
    data, taps on invalid working pixels (scores 0) drew the sums down to 205 / 255."""
    classes = class_map(80, 100, 6, seed=5) + 1
    yy, xx = np.mgrid[:80, :100]
    nodata = (xx + 0.7 * yy > 95) | ((xx - 20) ** 2 + (yy - 60) ** 2 < 150)  # a slanted edge and a hole
    scene = write_scene(tmp_path / "scene.tif", classes, DEEPGLOBE, nodata_mask=nodata)
    for scale in (0.5, 0.3):
        segment(scene, tmp_path / "out.tif", model=standin(patch=64), probabilities=tmp_path / "p.tif", overwrite=True,
                settings=InferenceSettings(device="cpu", precision="fp32", scale=scale))
        with rasterio.open(tmp_path / "p.tif") as src:
            sums = src.read().astype(int).sum(axis=0)
        assert (sums[nodata] == 0).all()
        assert np.abs(sums[~nodata] - 255).max() <= 4, (scale, np.unique(sums[~nodata]))


def test_an_unknown_scheme_name_is_said_so_with_the_known_ones(tmp_path):
    """scheme='nosuch' said "predicts 'inria', not 'nosuch'", as if nosuch were a scheme
    another model could predict."""
    import dataclasses

    from glgeo.errors import UnknownNameError
    from glgeo.schemes import list_schemes
    from glgeo.segmentation import check_model_scheme
    from glgeo.split import prepare_scene

    from fixtures.checkpoints import tiny_checkpoint
    from fixtures.rasters import write_geotiff

    ck = tiny_checkpoint(INRIA)
    scene = write_geotiff(tmp_path / "scene.tif", np.zeros((3, 64, 64), np.uint8))
    known = ", ".join(list_schemes())
    unknown = f"^scheme='nosuch' is no known class scheme; choose from: {known} \\(the model predicts 'inria'\\)$"
    with pytest.raises(UnknownNameError, match=unknown):
        segment(scene, tmp_path / "out.tif", model=ck, scheme="nosuch")
    with pytest.raises(UnknownNameError, match=unknown):
        prepare_scene(scene, ck, scheme="nosuch")
    with pytest.raises(InputError, match="^the model predicts the 'inria' classes, not 'deepglobe'; choose a model"):
        prepare_scene(scene, ck, scheme="deepglobe")
    check_model_scheme(ck, "inria")
    # a model's own scheme is known to it though glgeo has not registered it
    roads = dataclasses.replace(ck, scheme=dataclasses.replace(INRIA, name="roads"), path=tmp_path / "roads.pt")
    check_model_scheme(roads, "roads")
    with pytest.raises(UnknownNameError, match=f"choose from: {', '.join(sorted([*list_schemes(), 'roads']))} "
                                               f"\\(model '{tmp_path / 'roads.pt'}' predicts 'roads'\\)$"):
        check_model_scheme(roads, "nosuch")
    assert not (tmp_path / "out.tif").exists()


def test_an_undeclared_black_collar_is_warned_about(tmp_path, caplog):
    """A scene black (0 in every band) along much of its edges that declares no nodata (a
    warp's collar, the gap of a VRT of tiles): a warning says how to declare it; declared,
    or black at a few edge pixels only, no warning."""
    rng = np.random.default_rng(0)
    data = rng.integers(1, 256, (3, 120, 160), dtype=np.uint8)
    rows, cols = np.mgrid[0:120, 0:160]
    data[:, rows + cols < 80] = 0  # a warp's triangular collar in the top-left corner
    checkpoint = standin(patch=64)
    settings = InferenceSettings(device="cpu", min_overlap=10)
    cases = (("collar.tif", data, None, True), ("declared.tif", data, 0, False))
    few = data.copy()
    few[:, rows + cols < 80] = 9
    few[:, 0, :10] = 0  # 10 black pixels at the edge: dark ground, not a collar
    cases += (("few.tif", few, None, False),)
    told = {}
    for name, pixels, nodata, warned in cases:
        caplog.clear()
        scene = write_geotiff(tmp_path / name, pixels, crs=CRS, transform=TRANSFORM, nodata=nodata)
        with caplog.at_level(logging.WARNING, logger="glgeo"):
            segment(scene, tmp_path / f"out-{name}", model=checkpoint, settings=settings)
        told[name] = [r.getMessage() for r in caplog.records if "edge pixels are black" in r.getMessage()]
        assert bool(told[name]) == warned, (name, told[name])
    assert "collar.tif declares no nodata, but 28 % of its edge pixels are black (0 in every band)" in told["collar.tif"][0]
    assert "gdal_translate -of VRT -a_nodata 0" in told["collar.tif"][0]


def test_a_scene_far_smaller_than_a_patch_is_warned_about(tmp_path, caplog):
    """Smaller than a quarter patch on both sides, or a strip narrower than a sixteenth of
    one (8 px here) however long: the model sees almost no context."""
    rng = np.random.default_rng(0)
    checkpoint = standin(patch=128)
    settings = InferenceSettings(device="cpu", min_overlap=10)
    small, narrow = "far less than one 128 px patch", "far narrower than one 128 px patch"
    cases = (((20, 20), small, "s20x20.tif is only 20 x 20 px"), ((40, 40), small, None),
             ((3, 300), narrow, "s3x300.tif is a strip only 3 px across (300 x 3 px"), ((8, 300), narrow, None))
    for (height, width), kind, expected in cases:
        caplog.clear()
        name = f"s{height}x{width}.tif"
        scene = write_geotiff(tmp_path / name, rng.integers(1, 256, (3, height, width), dtype=np.uint8),
                              crs=CRS, transform=TRANSFORM)
        with caplog.at_level(logging.WARNING, logger="glgeo"):
            segment(scene, tmp_path / f"out-{name}", model=checkpoint, settings=settings)
        said = [r.getMessage() for r in caplog.records if kind in r.getMessage()]
        assert bool(said) == (expected is not None), (name, caplog.text)
        if expected:
            assert expected in said[0]


def test_an_alpha_band_that_holds_data_is_warned_about(tmp_path, caplog):
    """A 4-band RGB + NIR file written without PHOTOMETRIC declares its NIR band alpha:
    GDAL reads it as the mask, and its zeros got no class without a word. A real alpha band
    (0 and 255, a few soft values at its edge) says nothing."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(1, 256, (3, 100, 120), dtype=np.uint8)
    nir = rng.integers(0, 256, (1, 100, 120), dtype=np.uint8)
    alpha = np.full((1, 100, 120), 255, np.uint8)
    alpha[:, :30] = 0
    alpha[:, 30] = 128
    checkpoint = standin(patch=64)
    settings = InferenceSettings(device="cpu", min_overlap=10)
    told = {}
    for name, fourth in (("rgbn.tif", nir), ("rgba.tif", alpha)):
        caplog.clear()
        scene = tmp_path / name
        with rasterio.open(scene, "w", driver="GTiff", width=120, height=100, count=4, dtype="uint8", crs=CRS,
                           transform=TRANSFORM) as dst:  # GDAL's default for 4 bytes: RGB, the 4th alpha
            dst.write(np.concatenate([rgb, fourth]))
        with rasterio.open(scene) as src:
            assert src.colorinterp[3] == rasterio.enums.ColorInterp.alpha
        with caplog.at_level(logging.WARNING, logger="glgeo"):
            segment(scene, tmp_path / f"out-{name}", model=checkpoint, settings=settings)
        told[name] = [r.getMessage() for r in caplog.records if "declared alpha" in r.getMessage()]
    assert told["rgba.tif"] == []
    assert len(told["rgbn.tif"]) == 1 and "rgbn.tif: band 4 is declared alpha (transparency), but 99." in told["rgbn.tif"][0]
    assert "gdal_translate -of VRT -colorinterp_4 undefined" in told["rgbn.tif"][0]
