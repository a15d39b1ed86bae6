"""Reading scenes: band choice, valid masks, stretch, global and patch reads."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from PIL import Image
from rasterio.enums import Resampling

from glgeo.datasets import open_raster
from glgeo.errors import InputError, SceneError
from glgeo.io import SceneReader, Stretch, choose_stretch, inspect_scene
from glgeo.nodata import mirror_fill
from glgeo.tiling import PatchGrid

from fixtures.rasters import write_geotiff

CRS = "EPSG:32633"
TRANSFORM = Affine(0.5, 0.0, 500000.0, 0.0, -0.5, 4200000.0)


def write_scene(path: Path, data: np.ndarray, nodata=None, alpha: np.ndarray | None = None,
                mask: np.ndarray | None = None, tiled: bool = True, **extra) -> Path:
    """A GeoTIFF with a real CRS and transform (optionally nodata, alpha band or internal mask)."""
    if tiled:
        extra = {"tiled": True, "blockxsize": 64, "blockysize": 64, **extra}
    return write_geotiff(path, data, crs=CRS, transform=TRANSFORM, nodata=nodata, alpha=alpha, mask=mask, **extra)


@pytest.fixture
def rgb(tmp_path):
    rng = np.random.default_rng(1)
    data = rng.integers(0, 256, size=(3, 150, 211), dtype=np.uint8)
    return write_scene(tmp_path / "rgb.tif", data), data


def _read_all(info, grid, nodata_fill="zero"):
    with SceneReader(info, nodata_fill=nodata_fill) as reader:
        reader.read_global(32, "auto", (0.0, 255.0))
        return list(reader.iter_batches(grid.batches(3), prefetch=1))


def test_inspect_scene_georeferencing_and_bands(rgb):
    path, _ = rgb
    info = inspect_scene(path)
    assert (info.height, info.width, info.bands, info.dtype) == (150, 211, (1, 2, 3), "uint8")
    assert info.crs.to_string() == CRS and info.transform == TRANSFORM
    assert info.pixel_area == pytest.approx(0.25)
    assert not info.has_mask
    assert inspect_scene(path, bands=(3, 2, 1)).bands == (3, 2, 1)


def test_bad_scenes_and_band_choices(tmp_path, rgb):
    path, _ = rgb
    with pytest.raises(SceneError, match="does not exist"):
        inspect_scene(tmp_path / "missing.tif")
    text = tmp_path / "notes.tif"
    text.write_text("not a raster")
    with pytest.raises(SceneError, match="cannot open"):
        inspect_scene(text)
    with pytest.raises(InputError, match="band 4 is not in the scene, which has bands 1-3"):
        inspect_scene(path, bands=(1, 2, 4))
    with pytest.raises(InputError, match="needs 3"):
        inspect_scene(path, bands=(1, 2))
    gray = write_scene(tmp_path / "gray.tif", np.zeros((1, 20, 20), np.uint8))
    with pytest.raises(InputError, match=r"bands=\(1, 1, 1\)"):
        inspect_scene(gray)
    assert inspect_scene(gray, bands=(1, 1, 1)).bands == (1, 1, 1)
    four = write_scene(tmp_path / "four.tif", np.zeros((4, 20, 20), np.uint8), photometric="MINISBLACK")
    with pytest.raises(InputError, match="has 4 bands"):
        inspect_scene(four)


def test_patches_are_scaled_windows_of_the_scene(rgb):
    path, data = rgb
    info = inspect_scene(path, bands=(3, 2, 1))
    grid = PatchGrid.for_scene(info.height, info.width, 64, 10)
    batches = _read_all(info, grid)
    assert [w.index for b in batches for w in b.windows] == list(range(len(grid)))
    for batch in batches:
        for window, image, valid in zip(batch.windows, batch.images, batch.valid):
            rows, cols = window.slices
            np.testing.assert_allclose(image, data[::-1, rows, cols] / 255.0, atol=1e-6)
            assert valid.all()


def test_nodata_alpha_and_internal_mask_make_the_valid_mask(tmp_path):
    rng = np.random.default_rng(2)
    data = rng.integers(1, 256, size=(3, 90, 130), dtype=np.uint8)
    hole = np.zeros((90, 130), bool)
    hole[10:40, 20:100] = True
    nodata = data.copy()
    nodata[:, hole] = 0
    nodata[0, 60, 60] = 0  # one band at nodata alone: GDAL's dataset mask keeps the pixel
    alpha = np.where(hole, 0, 255).astype(np.uint8)
    scenes = {
        "nodata": write_scene(tmp_path / "nodata.tif", nodata, nodata=0),
        "alpha": write_scene(tmp_path / "alpha.tif", data, alpha=alpha),
        "mask": write_scene(tmp_path / "mask.tif", data, mask=~hole),
    }
    for name, path in scenes.items():
        info = inspect_scene(path)
        assert info.has_mask and info.bands == (1, 2, 3), name
        grid = PatchGrid.for_scene(info.height, info.width, 48, 8)
        got = np.zeros((90, 130), bool)
        for batch in _read_all(info, grid):
            for window, image, valid in zip(batch.windows, batch.images, batch.valid):
                got[window.slices] = valid
                assert (image[:, ~valid] == 0).all(), name
        np.testing.assert_array_equal(got, ~hole, err_msg=name)
        # the default fill: each band's mean over the patch's valid pixels, valid ones untouched
        for zero, mean in zip(_read_all(info, grid), _read_all(info, grid, nodata_fill="mean")):
            for image, filled, valid in zip(zero.images, mean.images, zero.valid):
                np.testing.assert_array_equal(filled[:, valid], image[:, valid])
                if (~valid).any() and valid.any():
                    expected = image[:, valid].mean(axis=1)
                    np.testing.assert_allclose(filled[:, ~valid], np.repeat(expected[:, None], (~valid).sum(), 1), rtol=1e-5)
        # the default fill: the patch's valid pixels mirrored across the gap's edge, valid ones untouched
        for zero, mirrored in zip(_read_all(info, grid), _read_all(info, grid, nodata_fill="mirror")):
            for image, filled, valid in zip(zero.images, mirrored.images, zero.valid):
                np.testing.assert_array_equal(filled[:, valid], image[:, valid])
                np.testing.assert_array_equal(filled, mirror_fill(image, valid) if valid.any() else image)


def test_nodata_fill_of_network_inputs():
    """Black (zero), the valid pixels' band means or their mirror image where a view has no data; fractional
    validity (a decimated read's edge) blends the two; NaNs under nodata never leak."""
    stretch = Stretch(offset=(0.0, 0.0), scale=(100.0, 100.0), saturates=False, description="test")
    raw = np.array([[[10.0, 30.0], [np.nan, 50.0]], [[20.0, 20.0], [80.0, 20.0]]], dtype=np.float32)
    valid = np.array([[True, True], [False, True]])
    zero = stretch.apply(raw, valid)
    np.testing.assert_allclose(zero, [[[0.1, 0.3], [0.0, 0.5]], [[0.2, 0.2], [0.0, 0.2]]])
    mean = stretch.apply(raw, valid, fill="mean")
    np.testing.assert_allclose(mean, [[[0.1, 0.3], [0.3, 0.5]], [[0.2, 0.2], [0.2, 0.2]]], rtol=1e-6)
    half = stretch.apply(raw[:, :1, :1], np.array([[0.5]], dtype=np.float32), fill="mean")
    np.testing.assert_allclose(half, [[[0.1]], [[0.2]]], rtol=1e-6)  # the mean of its own valid half
    soft = np.array([[1.0, 0.5], [0.0, 1.0]], dtype=np.float32)
    blended = stretch.apply(np.nan_to_num(raw), soft, fill="mean")
    m = (0.1 + 0.15 + 0.5) / 2.5
    assert blended[0, 0, 1] == pytest.approx(0.15 + 0.5 * m) and blended[0, 1, 0] == pytest.approx(m)
    nothing = stretch.apply(raw, np.zeros((2, 2), bool), fill="mean")
    assert (nothing == 0).all()
    # the mirror: (1, 0) is as near (0, 0) as (1, 1), ties go up; its mirror image (-1, 0) is
    # off the array, so it takes (0, 0) itself
    mirrored = stretch.apply(raw, valid, fill="mirror")
    np.testing.assert_allclose(mirrored, [[[0.1, 0.3], [0.1, 0.5]], [[0.2, 0.2], [0.2, 0.2]]], rtol=1e-6)
    # a half-valid pixel: half its own value, half its fully valid mirror source's
    assert stretch.apply(np.nan_to_num(raw), soft, fill="mirror")[0, 0, 1] == pytest.approx(0.15 + 0.5 * 0.1)
    assert (stretch.apply(raw, np.zeros((2, 2), bool), fill="mirror") == 0).all()
    assert (stretch.apply(raw[:, :1], valid[:1], fill="mean") == stretch.apply(raw[:, :1], valid[:1])).all()


def test_global_read_is_antialiased_like_pil_bilinear(tmp_path):
    yy, xx = np.mgrid[0:600, 0:900]
    band = ((np.sin(xx / 2.3) + np.sin(yy / 3.1)) * 60 + 128).astype(np.uint8)  # near Nyquist
    path = write_scene(tmp_path / "stripes.tif", np.stack([band] * 3))
    with SceneReader(inspect_scene(path)) as reader:
        image, valid = reader.read_global(100, "auto", (0.0, 255.0))
    assert image.shape == (3, 100, 100) and valid.all()
    pil = np.asarray(Image.fromarray(band).resize((100, 100), Image.BILINEAR)) / 255.0
    nearest = band[(np.arange(100) * 6 + 3)[:, None], (np.arange(100) * 9 + 4)[None]] / 255.0
    assert np.abs(image[0] - pil).mean() < 0.5 / 255  # the filter the model was trained with
    assert np.abs(image[0] - nearest).mean() > 20 / 255  # not aliased decimation


def test_global_read_like_pil_is_pils_resize_bit_for_bit(tmp_path):
    """``global_resampling="pil"``: the released code's global image (PIL's 8-bit bilinear
    resize, horizontal pass first), for the whole scene and for a context window of a
    working grid read at half resolution (a fractional box of the file's pixels)."""
    from glgeo.tiling import PatchWindow
    from test_pil_resize import pil_two_passes

    data = np.random.default_rng(5).integers(0, 256, (3, 611, 905), dtype=np.uint8)
    path = write_scene(tmp_path / "scene.tif", data)
    with SceneReader(inspect_scene(path), global_resampling="pil") as reader:
        image, valid = reader.read_global((254, 301), "auto", (0.0, 255.0))
    assert valid.all()
    np.testing.assert_array_equal(np.rint(image * 255).astype(np.uint8), pil_two_passes(data, (254, 301)))
    with SceneReader(inspect_scene(path), global_resampling="gdal") as reader:
        gdal, _ = reader.read_global((254, 301), "auto", (0.0, 255.0))
    assert 0 < np.abs(gdal - image).max() <= 1.5 / 255  # GDAL's float filter: within a grey level
    with SceneReader(inspect_scene(path), scale=0.5, global_resampling="pil") as reader:
        window = PatchWindow(0, 0, 0, 40, 60, 200, 300)  # working-grid px: the file's 80..480 x 120..720
        raw, _ = reader.read_global_raw((100, 150), window)
    box = tuple(v * 611 / reader.info.height if i % 2 else v * 905 / reader.info.width
                for i, v in enumerate((60, 40, 360, 240)))
    np.testing.assert_array_equal(raw.astype(np.uint8), pil_two_passes(data, (100, 150), box))


def test_global_read_like_pil_sees_no_data_as_black(tmp_path):
    """The released code knew no nodata: pixels with none enter PIL's resize as 0, as
    ``--nodata-fill zero`` shows them (the file's nodata value, 255, bled into the valid
    pixels beside them: 119 where GDAL's read gives 100)."""
    from test_pil_resize import pil_two_passes

    data = np.full((3, 64, 64), 100, dtype=np.uint8)
    data[:, :, 40:] = 255
    path = write_scene(tmp_path / "collar.tif", data, nodata=255)
    with SceneReader(inspect_scene(path), global_resampling="pil") as reader:
        raw, valid = reader.read_global_raw((16, 16))
    black = data.copy()
    black[:, :, 40:] = 0
    np.testing.assert_array_equal(raw.astype(np.uint8), pil_two_passes(black, (16, 16)))
    assert raw[:, :, :9].max() == 100 and valid[:, :9].all()


def test_global_read_like_pil_needs_an_8_bit_scene(tmp_path):
    path = write_scene(tmp_path / "u16.tif", np.zeros((3, 40, 40), dtype=np.uint16))
    with pytest.raises(InputError, match=r"global_resampling='pil' .* needs an 8-bit scene, as the released code read; .*u16.tif is uint16"):
        SceneReader(inspect_scene(path), global_resampling="pil")


def test_16_bit_scene_is_stretched_not_clipped(tmp_path):
    rng = np.random.default_rng(3)
    data = rng.integers(0, 4001, size=(3, 120, 120)).astype(np.uint16)
    path = write_scene(tmp_path / "u16.tif", data)
    info = inspect_scene(path)
    with SceneReader(info) as reader:
        image, _ = reader.read_global(60, "auto", (0.0, 255.0))
        stretch = reader.stretch
        batch = reader.read_patches(list(PatchGrid.for_scene(120, 120, 120)))
    assert stretch.saturates and "percentiles 1-99" in stretch.description
    assert 0.0 < stretch.saturated_fraction < 0.05  # reported, not silent
    assert stretch.offset[0] == pytest.approx(40, abs=20) and stretch.scale[0] == pytest.approx(3920, abs=40)
    values = batch.images[0]
    assert values.min() == 0.0 and values.max() == 1.0
    # the inputs keep the scene's dynamic range: no bulk of values stuck at 1 (as /255 would)
    assert (values >= 1.0).mean() < 0.02 and len(np.unique(values)) > 1000
    # explicit stretch and raw values through a checkpoint trained on 0..10000
    explicit = choose_stretch(info, data.astype(np.float32), np.ones((120, 120), bool), 0.0, 255.0, (0.0, 2000.0))
    assert explicit.saturated_fraction == pytest.approx((data > 2000).mean(), abs=1e-6)
    raw = choose_stretch(info, data.astype(np.float32), np.ones((120, 120), bool), 0.0, 10000.0, "auto")
    assert not raw.saturates and raw.scale == (10000.0,) * 3


def test_stretch_none_on_values_beyond_the_models_range_warns(tmp_path, caplog):
    """12-bit values fed through a 0..255 model with stretch none: 100 % saturated, a map of
    one class, and nothing said."""
    data = np.random.default_rng(3).integers(0, 4096, size=(3, 60, 60)).astype(np.uint16)
    info = inspect_scene(write_scene(tmp_path / "u12.tif", data))
    with caplog.at_level("WARNING", logger="glgeo.io"), SceneReader(info) as reader:
        reader.read_global(30, "none", (0.0, 255.0))
    assert "% of the values lie beyond the model's input range 0..255 and saturate (stretch none)" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="glgeo.io"), SceneReader(info) as reader:
        reader.read_global(30, "none", (0.0, 4095.0))  # a model trained on 12-bit values: nothing to say
    assert caplog.text == ""
    # reflectance of 0..1 fed raw to a model of bytes: an almost flat image, a map of one class
    flat = inspect_scene(write_scene(tmp_path / "f.tif", (data / 4095).astype(np.float32)))
    with caplog.at_level("WARNING", logger="glgeo.io"), SceneReader(flat) as reader:
        reader.read_global(30, "none", (0.0, 255.0))
    assert "of the model's input range 0..255 (stretch none): the model sees an almost flat image" in caplog.text


def test_float_scene_with_nan_nodata(tmp_path):
    data = np.linspace(0, 1, 3 * 40 * 50, dtype=np.float32).reshape(3, 40, 50)
    data[:, :5, :] = np.nan
    path = write_scene(tmp_path / "float.tif", data, nodata=float("nan"))
    info = inspect_scene(path)
    assert info.has_mask
    with SceneReader(info) as reader:
        reader.read_global(20, "auto", (0.0, 255.0))
        batch = reader.read_patches(list(PatchGrid.for_scene(40, 50, 64)))
    assert np.isfinite(batch.images).all()
    assert not batch.valid[0, :5].any() and batch.valid[0, 5:].all()


def test_a_scene_placed_by_rpcs_keeps_them_in_the_output(tmp_path, caplog, tiny_checkpoint):
    """A satellite scene before orthorectification: its map lost the RPCs (so gdalwarp -rpc
    could not place it) and was said to have no georeferencing."""
    import glgeo
    from rasterio.rpc import RPC

    rpc = RPC(height_off=100, height_scale=500, lat_off=37.07, lat_scale=0.01, line_den_coeff=[1] + [0] * 19,
              line_num_coeff=[0, 0, -1] + [0] * 17, line_off=32, line_scale=32, long_off=-94.5, long_scale=0.01,
              samp_den_coeff=[1] + [0] * 19, samp_num_coeff=[0, 1] + [0] * 18, samp_off=32, samp_scale=32)
    pixels = np.random.default_rng(0).integers(0, 255, (3, 64, 64), dtype=np.uint8)
    scene = tmp_path / "l1.tif"
    with rasterio.open(scene, "w", driver="GTiff", width=64, height=64, count=3, dtype="uint8", rpcs=rpc) as dst:
        dst.write(pixels)
    with caplog.at_level("WARNING", logger="glgeo"):
        glgeo.segment(scene, tmp_path / "l1_map.tif", model=tiny_checkpoint)
    with rasterio.open(tmp_path / "l1_map.tif") as out:
        assert out.rpcs is not None and out.crs is None
        assert (out.rpcs.lat_off, out.rpcs.long_off, out.rpcs.samp_off) == pytest.approx((37.07, -94.5, 32))
    assert "is placed by rational polynomial coefficients (RPCs) only: the output carries the same RPCs" in caplog.text
    assert "has no georeferencing" not in caplog.text


def test_float_reflectance_within_0_1_is_read_as_0_1_not_stretched_per_band(tmp_path):
    """The same pixels as bytes / 255 give the model the same inputs: a percentile stretch
    of each band changed their colours (48 % more building area on a Joplin tile)."""
    data = np.random.default_rng(4).integers(0, 256, size=(3, 60, 80)).astype(np.uint8)
    data[0] //= 2  # bands of different ranges, as real ones are
    as_float = write_scene(tmp_path / "reflectance.tif", (data / 255).astype(np.float32))
    as_bytes = write_scene(tmp_path / "bytes.tif", data)
    images = []
    for path in (as_float, as_bytes):
        with SceneReader(inspect_scene(path)) as reader:
            reader.read_global(30, "auto", (0.0, 255.0))
            images.append(reader.read_patches(list(PatchGrid.for_scene(60, 80, 64))).images)
            if path == as_float:
                assert reader.stretch.description == "float32 values within 0..1, read as 0..1"
    np.testing.assert_allclose(images[0], images[1], atol=1e-6)
    # floats beyond 0..1 are stretched per band as before
    beyond = write_scene(tmp_path / "beyond.tif", (data * 10.0).astype(np.float32))
    with SceneReader(inspect_scene(beyond)) as reader:
        reader.read_global(30, "auto", (0.0, 255.0))
        assert "stretched per band from percentiles 1-99" in reader.stretch.description


def test_background_reader_errors_reach_the_caller(rgb, monkeypatch):
    path, _ = rgb
    info = inspect_scene(path)
    grid = PatchGrid.for_scene(info.height, info.width, 32, 4)
    calls = []
    original = SceneReader.read_patches

    def flaky(self, windows, skip_pixels=None):
        calls.append(len(windows))
        if len(calls) == 3:
            raise SceneError("disk went away")
        return original(self, windows, skip_pixels)

    monkeypatch.setattr(SceneReader, "read_patches", flaky)
    with SceneReader(info) as reader:
        reader.read_global(16, "auto", (0.0, 255.0))
        got = []
        with pytest.raises(SceneError, match="disk went away"):
            for batch in reader.iter_batches(grid.batches(2), prefetch=2):
                got.append(batch)
    assert len(got) == 2



def _with_overviews(path: Path, copy: Path, resampling: str, external: bool = False) -> Path:
    """``copy``: the same pixels as ``path`` plus overviews, internal or in a ``.ovr`` file."""
    shutil.copy(path, copy)
    with rasterio.Env(TIFF_USE_OVR=external), rasterio.open(copy, "r+") as dst:
        dst.build_overviews([2, 4, 8], getattr(Resampling, resampling))
    assert Path(f"{copy}.ovr").exists() == external
    return copy


@pytest.mark.parametrize("resampling, external", [("nearest", False), ("average", True)])
def test_reads_come_from_the_pixels_not_the_files_overviews(tmp_path, resampling, external):
    """Overviews (gdaladdo's, QGIS's "Build pyramids") are another copy of the pixels: the
    global image, scaled patches and training's reads must not change with them."""
    yy, xx = np.mgrid[0:512, 0:640]
    band = ((np.sin(xx / 2.3) + np.sin(yy / 3.1)) * 60 + 128).astype(np.uint8)  # fine detail: overviews alias it
    plain = write_scene(tmp_path / "plain.tif", np.stack([band, band[::-1], band[:, ::-1]]))
    pyramids = _with_overviews(plain, tmp_path / "pyramids.tif", resampling, external)
    assert inspect_scene(pyramids).has_overviews and not inspect_scene(plain).has_overviews

    def reads(path):
        with SceneReader(inspect_scene(path), scale=0.25) as reader:
            image, _ = reader.read_global(48, "auto", (0.0, 255.0))
            grid = PatchGrid.for_scene(reader.info.height, reader.info.width, 64, 10)
            patches = np.concatenate([b.images for b in reader.iter_batches(grid.batches(4), prefetch=0)])
        with open_raster(path) as src:  # training's reads
            train = src.read(out_shape=(3, 128, 160), resampling=Resampling.bilinear)
        return image, patches, train

    for got, expected in zip(reads(pyramids), reads(plain)):
        np.testing.assert_array_equal(got, expected)
    with rasterio.open(pyramids) as src:  # GDAL's default decimated read does use them
        aliased = src.read(out_shape=(3, 128, 160), resampling=Resampling.bilinear)
    assert np.abs(aliased.astype(int) - reads(plain)[2]).mean() > 5


def test_jpeg_reads_are_the_decoded_pixels_not_its_reduced_decoding(tmp_path):
    """GDAL decimates a JPEG by reduced DCT decoding, which reads differently from the same
    pixels in a GeoTIFF; the engine reads both the same."""
    rng = np.random.default_rng(3)
    blocks = np.kron(rng.integers(0, 256, size=(3, 32, 40)), np.ones((1, 16, 16))).astype(np.uint8)
    jpeg = write_geotiff(tmp_path / "scene.jpg", blocks, crs=None, driver="JPEG")
    with rasterio.open(jpeg) as src:
        decoded = src.read()
        assert src.overviews(1)  # the JPEG driver's reduced-resolution decoding
        reduced = src.read(out_shape=(3, 128, 160), resampling=Resampling.bilinear)
    tif = write_scene(tmp_path / "decoded.tif", decoded)
    images = []
    for path in (jpeg, tif):
        with SceneReader(inspect_scene(path), scale=0.25) as reader:
            images.append(reader.read_global(64, "auto", (0.0, 255.0))[0])
            grid = PatchGrid.for_scene(reader.info.height, reader.info.width, 64, 10)
            images.append(np.concatenate([b.images for b in reader.iter_batches(grid.batches(4), prefetch=0)]))
    for got, expected in zip(images[:2], images[2:]):
        np.testing.assert_array_equal(got, expected)
    with rasterio.open(tif, OVERVIEW_LEVEL="NONE") as src:
        assert np.abs(src.read(out_shape=(3, 128, 160), resampling=Resampling.bilinear).astype(int) - reduced).mean() > 0.5


def test_a_truncated_scene_says_so(tmp_path):
    """A file cut short (an interrupted copy) opens, then fails part-way: the error says the
    file may be truncated and how to check it (it said "Read failed. See previous exception")."""
    import rasterio.shutil

    from fixtures.checkpoints import save_tiny_checkpoint
    from glgeo.inference import InferenceSettings
    from glgeo.segmentation import segment

    rng = np.random.default_rng(0)
    whole = write_geotiff(tmp_path / "whole.tif", rng.integers(0, 255, (3, 512, 512), dtype=np.uint8))
    rasterio.shutil.copy(whole, tmp_path / "cog.tif", driver="COG", compress="deflate")
    data = (tmp_path / "cog.tif").read_bytes()
    (tmp_path / "cut.tif").write_bytes(data[: len(data) // 3])
    with pytest.raises(SceneError, match=r"cut.tif' failed \(.*\): the file may be truncated or corrupt; check it with"
                                         r" `gdalinfo -checksum"):
        segment(tmp_path / "cut.tif", tmp_path / "out.tif", model=save_tiny_checkpoint(tmp_path / "m.pt"),
                settings=InferenceSettings(device="cpu", precision="fp32"))
    assert not (tmp_path / "out.tif").exists()


def test_bands_follow_the_files_red_green_blue_labels(tmp_path, caplog):
    """A file labelled blue, green, red was read as RGB without a word (78 % of the Joplin
    tile's pixels kept their class); four bands labelled red, green, blue and one more were
    refused. Labels are followed, with a warning where they change what is read."""
    from rasterio.enums import ColorInterp

    data = np.stack([np.full((16, 16), v, np.uint8) for v in (10, 20, 30, 40)])
    bgr = write_geotiff(tmp_path / "bgr.tif", data[:3], photometric="MINISBLACK")
    with rasterio.open(bgr, "r+") as dst:
        dst.colorinterp = [ColorInterp.blue, ColorInterp.green, ColorInterp.red]
    with caplog.at_level("WARNING", logger="glgeo.io"):
        assert inspect_scene(bgr).bands == (3, 2, 1)
    assert "reading bands 3,2,1, which the file labels red, green and blue (of 3 bands); pass bands=(1, 2, 3)" in caplog.text
    assert inspect_scene(bgr, bands=(1, 2, 3)).bands == (1, 2, 3)  # chosen bands are read as chosen
    rgbn = write_geotiff(tmp_path / "rgbn.tif", data, photometric="MINISBLACK")
    with rasterio.open(rgbn, "r+") as dst:
        dst.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.undefined]
    caplog.clear()
    with caplog.at_level("WARNING", logger="glgeo.io"):
        assert inspect_scene(rgbn).bands == (1, 2, 3)
    # it said "pass bands=(1, 2, 3) to read others": the very bands it reads
    assert ("reading bands 1,2,3, which the file labels red, green and blue, and leaving out band 4 (of 4 bands); pass"
            " bands=(4, 1, 2), say, to feed band 4 first") in caplog.text and "bands=(1, 2, 3)" not in caplog.text
    assert inspect_scene(rgbn, bands=(4, 1, 2)).bands == (4, 1, 2)
    caplog.clear()
    rgb = write_geotiff(tmp_path / "rgb.tif", data[:3], photometric="RGB")
    with caplog.at_level("WARNING", logger="glgeo.io"):
        assert inspect_scene(rgb).bands == (1, 2, 3)
    assert caplog.text == ""  # labels in the order read: nothing to say


def test_a_scene_of_two_bands_is_refused_with_advice_that_can_be_followed(tmp_path):
    """Two unlabelled bands were refused with "pass bands=(1, 2, 3)", which then failed with
    "band 3 is not in the scene"."""
    two = write_scene(tmp_path / "two.tif", np.zeros((2, 20, 20), np.uint8), photometric="MINISBLACK")
    with pytest.raises(InputError) as error:
        inspect_scene(two)
    message = str(error.value)
    assert message.startswith("scene has 2 bands (alpha not counted); this model needs 3 (RGB), so it cannot be read as"
                              " RGB: give a scene with red, green and blue bands (gdalbuildvrt -separate")
    assert "repeat a band, e.g. bands=(1, 1, 2), if the model may see these bands as colours" in message
    assert "bands=(1, 2, 3)" not in message
    assert inspect_scene(two, bands=(1, 1, 2)).bands == (1, 1, 2)  # the advice runs


def test_a_paletted_scene_is_refused_with_the_way_to_expand_it(tmp_path):
    """A paletted image was refused with "pass bands=(1, 1, 1)", which fed palette indices
    as grey (99.9 % water on the Joplin tile)."""
    paletted = write_geotiff(tmp_path / "pct.tif", np.arange(256, dtype=np.uint8).reshape(16, 16),
                             colormap={i: (i, 255 - i, 0, 255) for i in range(256)})
    for bands in (None, (1, 1, 1)):
        with pytest.raises(InputError, match=r"band 1 of .*pct.tif holds palette indices \(a colour table\), not "
                                             r"colours: expand it to RGB first, e.g. gdal_translate -expand rgb"):
            inspect_scene(paletted, bands=bands)


def test_a_transform_without_crs_and_gcps_are_kept_in_the_output(tmp_path, caplog, tiny_checkpoint):
    """A world file or a geotransform without a CRS, and ground control points, were dropped:
    the output said it had 'no georeferencing' and lost its place (a PNG with a .pgw)."""
    import glgeo
    from rasterio.control import GroundControlPoint
    from rasterio.crs import CRS

    model = tiny_checkpoint
    pixels = np.random.default_rng(0).integers(0, 255, (3, 64, 64), dtype=np.uint8)
    transform = Affine(0.6, 0, 366642.6, 0, -0.6, 4104511.2)
    nocrs = write_geotiff(tmp_path / "nocrs.tif", pixels, crs=None, transform=transform)
    with caplog.at_level("WARNING", logger="glgeo"):
        glgeo.segment(nocrs, tmp_path / "nocrs_out.tif", model=model)
    with rasterio.open(tmp_path / "nocrs_out.tif") as out:
        assert out.transform == transform and out.crs is None
    assert "has a geotransform but no CRS: the output keeps the transform, without a CRS, and areas are in squared units" in caplog.text
    assert "pixel size (0.6 units) is not taken as metres (pass gsd=METRES if it is)" in caplog.text

    gcps = [GroundControlPoint(r, c, 366642.6 + 0.6 * c, 4104511.2 - 0.6 * r) for r, c in ((0, 0), (0, 64), (64, 0), (64, 64))]
    placed = write_geotiff(tmp_path / "gcps.tif", pixels, crs=None, transform=Affine.identity())
    with rasterio.open(placed, "r+") as dst:
        dst.gcps = (gcps, CRS.from_epsg(26915))
    caplog.clear()
    with caplog.at_level("WARNING", logger="glgeo"):
        glgeo.segment(placed, tmp_path / "gcps_out.tif", model=model)
    with rasterio.open(tmp_path / "gcps_out.tif") as out:
        points, crs = out.gcps
        assert crs == CRS.from_epsg(26915) and [(p.row, p.col, p.x, p.y) for p in points] == [
            (p.row, p.col, p.x, p.y) for p in gcps]
    assert "is placed by ground control points only: the output carries the same GCPs" in caplog.text
    # read at the resolution its GCPs give (it was read as the model's own: 4 times too coarse at 2.4 m)
    assert "it is read as 0.6 m pixels, the size its GCPs give them" in caplog.text
    assert inspect_scene(placed).gsd == pytest.approx(0.6)
    # GCPs in a line tell no resolution (rasterio's from_gcps gave whatever GDAL left in memory)
    inline = write_geotiff(tmp_path / "inline.tif", pixels, crs=None, transform=Affine.identity())
    with rasterio.open(inline, "r+") as dst:
        dst.gcps = ([GroundControlPoint(i, i, 366642.6 + 0.6 * i, 4104511.2 - 0.6 * i) for i in (0, 32, 64)],
                    CRS.from_epsg(26915))
    assert inspect_scene(inline).gsd is None
    assert inspect_scene(placed).gsd == inspect_scene(write_geotiff(tmp_path / "same.tif", pixels, crs="EPSG:26915",
                                                                    transform=transform)).gsd
