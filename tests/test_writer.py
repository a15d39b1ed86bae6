"""Class raster writer: grid, colours, sidecars, COG layout, atomic outputs."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS

from glgeo.blend import RowBand
from glgeo.errors import OutputError
from glgeo.io import SceneInfo
from glgeo.schemes import DEEPGLOBE, NODATA_ID
from glgeo.writer import ClassRasterWriter, OutputOptions

TRANSFORM = Affine(0.3, 0.0, 617100.0, 0.0, -0.3, 3344400.0)


def _info(height: int = 700, width: int = 1000, crs: str | None = "EPSG:26914") -> SceneInfo:
    return SceneInfo(
        path="scene.tif", height=height, width=width, count=3, bands=(1, 2, 3), dtype="uint8",
        crs=CRS.from_string(crs) if crs else None, transform=TRANSFORM if crs else Affine.identity(),
        nodata=None, has_mask=True, block_shape=(256, 256),
    )


def _classes(height: int, width: int) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width]
    classes = ((yy // 50 + xx // 70) % 7).astype(np.uint8)
    classes[:40, :90] = NODATA_ID
    return classes


def _write(writer: ClassRasterWriter, classes: np.ndarray, band_rows: int = 97, scores: bool = False):
    for top in range(0, classes.shape[0], band_rows):
        part = classes[top : top + band_rows]
        score = None
        if scores:
            score = np.zeros((7, *part.shape), np.uint8)
            for c in range(7):
                score[c][part == c] = 200
        writer.write(RowBand(top, part, score))


def test_class_raster_sits_on_the_input_grid_with_colours_names_and_overviews(tmp_path):
    out = tmp_path / "landcover.tif"
    classes = _classes(700, 1000)
    with ClassRasterWriter(out, _info(), DEEPGLOBE, options=OutputOptions(block_size=256)) as writer:
        _write(writer, classes)
        written = writer.commit()
    assert out in written and out.with_suffix(".qml") in written
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "landcover.qmd", "landcover.qml", "landcover.tif", "landcover.tif.aux.xml"
    ]
    with rasterio.open(out) as src:
        assert (src.width, src.height, src.count, src.dtypes[0]) == (1000, 700, 1, "uint8")
        assert src.crs == CRS.from_epsg(26914) and src.transform == TRANSFORM
        # packed in 3 bits: ids 0-6, nodata 7, an 8-entry colour table
        assert src.nodata == 7 and src.tags(1, ns="IMAGE_STRUCTURE")["NBITS"] == "3"
        in_file = np.where(classes == NODATA_ID, 7, classes)
        np.testing.assert_array_equal(src.read(1), in_file)
        cmap = src.colormap(1)
        assert sorted(cmap) == list(range(8))
        for c in DEEPGLOBE.classes:
            assert cmap[c.id] == (*c.color, 255)
        assert cmap[7][3] == 0
        assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert src.block_shapes[0] == (256, 256) and src.overviews(1) == [2, 4]
        # every 2 x 2 block is one class or all nodata: the overview is exactly a subsample
        overview = src.read(1, out_shape=(350, 500))
        np.testing.assert_array_equal(overview, in_file[::2, ::2])
        quarter = src.read(1, out_shape=(175, 250))
        assert set(np.unique(quarter)) <= set(range(8))  # mode keeps real ids
        assert (quarter[:10, :22] == 7).all() and (quarter[10:] != 7).all() and (quarter[:, 23:] != 7).all()
        assert json.loads(src.tags()["GLGEO_SCHEME"])["name"] == "deepglobe"
    qml = ET.parse(out.with_suffix(".qml")).getroot()
    entries = {e.get("value"): (e.get("label"), e.get("color")) for e in qml.iter("paletteEntry")}
    assert entries["1"] == ("urban", "#00ffff") and entries["5"] == ("water", "#0000ff")
    if shutil.which("gdalinfo"):
        info = json.loads(subprocess.run(["gdalinfo", "-json", str(out)], capture_output=True, text=True, check=True).stdout)
        assert info["bands"][0]["categories"][:7] == DEEPGLOBE.names


def test_scores_raster_and_plain_images(tmp_path):
    out, scores = tmp_path / "classes.tif", tmp_path / "scores.tif"
    classes = _classes(130, 170)
    options = OutputOptions(cog=False)
    with ClassRasterWriter(out, _info(130, 170, crs=None), DEEPGLOBE, scores, options) as writer:
        _write(writer, classes, band_rows=33, scores=True)
        writer.commit()
    with rasterio.open(scores) as src:
        assert src.count == 7 and src.descriptions[1] == "score urban"
        assert src.crs is None
        assert src.scales == (1 / 255,) * 7 and src.offsets == (0.0,) * 7  # QGIS reads scores of 0-1
        data = src.read()
        mask = src.dataset_mask()
    assert (mask[classes == NODATA_ID] == 0).all() and (mask[classes != NODATA_ID] == 255).all()
    assert (data[3][classes == 3] == 200).all()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "classes.qmd", "classes.qml", "classes.tif", "classes.tif.aux.xml", "scores.qmd", "scores.qml", "scores.tif"
    ]
    style = ET.parse(scores.with_suffix(".qml")).getroot().find("pipe/rasterrenderer")
    assert (style.get("type"), style.get("band"), style.get("alphaBand")) == ("singlebandpseudocolor", "2", "8")
    ramp = [float(item.get("value")) for item in style.iter("item")]
    assert ramp[0] == 0 and ramp[-1] == 1  # the scaled scores


def test_a_failed_run_leaves_nothing_and_keeps_the_old_output(tmp_path):
    out = tmp_path / "landcover.tif"
    out.write_bytes(b"previous complete output")
    with pytest.raises(RuntimeError):
        with ClassRasterWriter(out, _info(300, 300), DEEPGLOBE, tmp_path / "p.tif") as writer:
            _write(writer, _classes(300, 300)[:200], scores=True)
            raise RuntimeError("network crashed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["landcover.tif"]
    assert out.read_bytes() == b"previous complete output"


def test_incomplete_or_unordered_rows_are_refused(tmp_path):
    out = tmp_path / "x.tif"
    with ClassRasterWriter(out, _info(300, 300), DEEPGLOBE) as writer:
        _write(writer, _classes(300, 300)[:100])
        with pytest.raises(OutputError, match="only 100 of 300 rows"):
            writer.commit()
        with pytest.raises(OutputError, match="in order"):
            writer.write(RowBand(250, np.zeros((10, 300), np.uint8)))
    assert list(tmp_path.iterdir()) == []


def test_missing_folder_is_an_output_error(tmp_path):
    with pytest.raises(OutputError):
        with ClassRasterWriter(tmp_path / "no" / "x.tif", _info(10, 10), DEEPGLOBE):
            pass


def test_output_driver_follows_the_extension_or_refuses():
    from glgeo.errors import InputError
    from glgeo.writer import output_driver

    assert output_driver("a.tif") == "COG" and output_driver("a.TIFF", OutputOptions(cog=False)) == "GTiff"
    assert output_driver("a.png") == "PNG" and output_driver("a.img") == "HFA"
    assert output_driver("a.png", OutputOptions(format="png")) == "PNG"
    assert output_driver("a.tif", OutputOptions(format="GTiff")) == "GTiff"
    for name, options, message in [
        ("a.jpg", OutputOptions(), "lossy"),
        ("a.webp", OutputOptions(), "lossy"),
        ("a", OutputOptions(), "no extension"),
        ("a.nc", OutputOptions(), "glgeo writes no .nc rasters"),
        ("a.png", OutputOptions(format="COG"), "does not match the extension"),
        ("a.tif", OutputOptions(format="netCDF"), "not one glgeo writes"),
    ]:
        with pytest.raises(InputError, match=message):
            output_driver(name, options)
    with pytest.raises(InputError, match="PNG holds at most 4 bands"):
        output_driver("scores.png", bands=7)


def test_inria_packs_into_2_bits_and_plain_gtiffs_too(tmp_path):
    from glgeo.schemes import INRIA

    classes = np.zeros((64, 80), np.uint8)
    classes[10:30, 20:50] = 1
    classes[-8:] = NODATA_ID
    out = tmp_path / "buildings.tif"
    with ClassRasterWriter(out, _info(64, 80), INRIA, options=OutputOptions(cog=False, block_size=32)) as writer:
        writer.write(RowBand(0, classes))
        writer.commit()
    with rasterio.open(out) as src:
        assert src.driver == "GTiff" and src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") != "COG"
        assert src.nodata == 3 and src.tags(1, ns="IMAGE_STRUCTURE")["NBITS"] == "2"
        np.testing.assert_array_equal(src.read(1), np.where(classes == NODATA_ID, 3, classes))
        cmap = src.colormap(1)
        assert sorted(cmap) == [0, 1, 2, 3] and cmap[1] == (200, 30, 30, 255) and cmap[3][3] == 0
    qml = ET.parse(out.with_suffix(".qml")).getroot()
    (transparent,) = qml.iter("pixelListEntry")
    assert (transparent.get("min"), transparent.get("max")) == ("3", "3")


@pytest.mark.parametrize(
    ("name", "options", "nodata"),
    [
        ("byte.tif", OutputOptions(creation_options={"nbits": "8"}), NODATA_ID),
        ("four.tif", OutputOptions(creation_options={"NBITS": "4"}), 15),
        ("plain.png", OutputOptions(), NODATA_ID),  # other formats stay 8-bit
        ("plain.img", OutputOptions(), NODATA_ID),
    ],
)
def test_nbits_and_formats_set_the_files_nodata(tmp_path, name, options, nodata):
    out = tmp_path / name
    classes = _classes(130, 170)
    with ClassRasterWriter(out, _info(130, 170), DEEPGLOBE, options=options) as writer:
        _write(writer, classes)
        writer.commit()
    with rasterio.open(out) as src:
        assert src.nodata == nodata and len(src.colormap(1)) == (256 if nodata == NODATA_ID else 16)
        np.testing.assert_array_equal(src.read(1), np.where(classes == NODATA_ID, nodata, classes))
    qml = ET.parse(out.with_suffix(".qml")).getroot()
    assert [e.get("min") for e in qml.iter("pixelListEntry")] == [str(nodata)]


@pytest.mark.parametrize(
    ("name", "nbits", "message"),
    [
        ("a.tif", "2", "NBITS=2 (creation option) cannot hold the 7 classes of 'deepglobe' plus nodata; use NBITS=3"),
        ("a.tif", "0", "NBITS=0 (creation option) is not a number of bits; use 3-8"),
        ("a.tif", "three", "NBITS=three (creation option) is not a number of bits"),
        ("a.png", "4", "glgeo packs class ids into fewer bits in GeoTIFF and COG only; PNG class rasters are 8-bit"),
    ],
)
def test_nbits_that_cannot_hold_the_classes_is_refused(tmp_path, name, nbits, message):
    from glgeo.errors import InputError

    with pytest.raises(InputError, match=re.escape(message)):
        ClassRasterWriter(tmp_path / name, _info(10, 10), DEEPGLOBE, options=OutputOptions(creation_options={"NBITS": nbits}))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("a.tif", {"COMPRESS": "NOPE"}, "creation_options COMPRESS=NOPE: GDAL's COG driver says: 'NOPE' is an unexpected"
                                        " value for COMPRESS creation option"),
        ("a.tif", {"FOO": "1"}, "creation_options FOO=1: GDAL's COG driver says: driver COG does not support creation"
                                " option FOO; see https://gdal.org/drivers/raster/cog.html for its options"),
        ("a.png", {"ZLEVEL": "99"}, "creation_options ZLEVEL=99: GDAL's PNG driver says:"),
        # fine at 8 bits, not for a class raster packed in 3: said before any work, with the way out
        ("a.tif", {"PREDICTOR": "2"}, "creation_options PREDICTOR=2: GDAL's COG driver says: PREDICTOR=2 is only supported"
                                      " with 8/16/32/64 bit samples (the class raster is packed in 3 bits: creation_options"
                                      " NBITS=8 writes whole bytes)"),
    ],
)
def test_creation_options_gdal_would_ignore_or_fail_on_are_refused_before_any_work(tmp_path, name, options, message):
    """GDAL only warns of an option or a value it does not know and writes the file without
    it (COMPRESS=NOPE: uncompressed), or fails once the raster is computed; also where a
    caller has silenced rasterio's warnings, whose level is left as it was."""
    import logging

    from glgeo.errors import InputError

    rasterio_log = logging.getLogger("rasterio")
    rasterio_log.setLevel(logging.ERROR)
    try:
        with pytest.raises(InputError, match=re.escape(message)):
            ClassRasterWriter(tmp_path / name, _info(10, 10), DEEPGLOBE, options=OutputOptions(creation_options=options))
        assert logging.getLogger("rasterio._env").getEffectiveLevel() == logging.ERROR
    finally:
        rasterio_log.setLevel(logging.NOTSET)
    assert list(tmp_path.iterdir()) == []


def test_creation_options_the_driver_takes_are_used(tmp_path):
    out = tmp_path / "a.tif"
    options = OutputOptions(creation_options={"COMPRESS": "ZSTD", "PREDICTOR": "2", "NBITS": "8"})
    with ClassRasterWriter(out, _info(40, 50), DEEPGLOBE, options=options) as writer:
        _write(writer, _classes(40, 50))
        writer.commit()
    with rasterio.open(out) as src:
        assert src.compression.name.upper() == "ZSTD" and src.tags(bidx=1, ns="IMAGE_STRUCTURE").get("NBITS") is None


def _cog_validator() -> list[str] | None:
    """GDAL's COG validator (Debian's python3-gdal), or None where it is not installed."""
    command = ["/usr/bin/python3", "-m", "osgeo_utils.samples.validate_cloud_optimized_geotiff"]
    if shutil.which(command[0]) is None:
        return None
    probe = subprocess.run([command[0], "-c", "import osgeo_utils.samples.validate_cloud_optimized_geotiff"],
                           capture_output=True)
    return command if probe.returncode == 0 else None


@pytest.mark.skipif(_cog_validator() is None, reason="GDAL's COG validator (Debian's python3-gdal) is not installed")
def test_packed_class_rasters_are_valid_cogs(tmp_path):
    from glgeo.schemes import INRIA, class_raster_bits

    for name, scheme in [("landcover.tif", DEEPGLOBE), ("buildings.tif", INRIA)]:
        classes = _classes(700, 1000)
        classes = np.where(classes == NODATA_ID, NODATA_ID, classes % scheme.n_classes).astype(np.uint8)
        with ClassRasterWriter(tmp_path / name, _info(), scheme, options=OutputOptions(block_size=256)) as writer:
            _write(writer, classes)
            writer.commit()
        with rasterio.open(tmp_path / name) as src:
            assert src.tags(1, ns="IMAGE_STRUCTURE")["NBITS"] == str(class_raster_bits(scheme))
        done = subprocess.run([*_cog_validator(), "--full-check=yes", str(tmp_path / name)], capture_output=True,
                              text=True)
        assert done.returncode == 0 and "is a valid cloud optimized GeoTIFF" in done.stdout, done.stdout + done.stderr


def test_qgis_metadata_repeats_the_provenance(tmp_path):
    out = tmp_path / "landcover.tif"
    with ClassRasterWriter(out, _info(64, 80), DEEPGLOBE) as writer:
        _write(writer, _classes(64, 80))
        writer.set_tags({"GLGEO_MODEL": "deepglobe-landcover", "GLGEO_MODE": "g2l"})
        written = writer.commit()
    qmd = out.with_suffix(".qmd")
    assert qmd in written
    root = ET.fromstring(qmd.read_text(encoding="utf-8").split("\n", 1)[1])
    assert root.findtext("title") == "landcover"
    assert "with the model deepglobe-landcover (GLNet g2l)" in root.findtext("abstract")
    assert [h.text for h in root.findall("history")] == ["GLGEO_MODEL: deepglobe-landcover", "GLGEO_MODE: g2l"]
    with rasterio.open(out) as src:
        assert src.tags()["GLGEO_MODEL"] == "deepglobe-landcover"


def _refuse(code: int):
    def refuse(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    return refuse


def test_an_unwritable_folder_is_one_output_error_not_a_cleanup_traceback(tmp_path, monkeypatch):
    """A read-only folder: GDAL cannot create the stage file, and removing what is not there
    fails too (EROFS, not ENOENT); the error reported is the first one."""
    from rasterio.errors import RasterioIOError

    import glgeo.writer

    def no_gtiff(self, path, *args, **kwargs):
        raise RasterioIOError(f"Attempt to create new tiff file '{path}' failed: Read-only file system")

    monkeypatch.setattr(glgeo.writer._StagedRaster, "__init__", no_gtiff)
    monkeypatch.setattr(os, "unlink", _refuse(errno.EROFS))
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: False)
    with pytest.raises(OutputError, match=r"cannot write in the output folder '.*'; choose a writable folder"):
        with ClassRasterWriter(tmp_path / "x.tif", _info(10, 10), DEEPGLOBE):
            pass


def test_ctrl_c_while_the_outputs_are_created_leaves_no_stage_file(tmp_path, monkeypatch):
    import glgeo.writer

    class InterruptedOnScores(glgeo.writer._StagedRaster):
        def __init__(self, path, *args, **kwargs):
            super().__init__(path, *args, **kwargs)
            if path.name.startswith(".p."):  # the score raster's stage file now exists
                raise KeyboardInterrupt

    monkeypatch.setattr(glgeo.writer, "_StagedRaster", InterruptedOnScores)
    with pytest.raises(KeyboardInterrupt):
        with ClassRasterWriter(tmp_path / "a.tif", _info(10, 10), DEEPGLOBE, tmp_path / "p.tif"):
            pass
    assert list(tmp_path.iterdir()) == []


def test_a_rename_that_fails_at_commit_leaves_no_output(tmp_path, monkeypatch):
    out = tmp_path / "landcover.tif"
    real_replace = os.replace

    def replace(src, dst):
        if str(dst).endswith(".tif"):  # the sidecars are renamed, then the tif fails
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
        real_replace(src, dst)

    with ClassRasterWriter(out, _info(40, 40), DEEPGLOBE, options=OutputOptions(block_size=16)) as writer:
        _write(writer, _classes(40, 40))
        monkeypatch.setattr(os, "replace", replace)
        with pytest.raises(OutputError, match=r"cannot put the finished .*landcover\.tif' in place \(Permission denied\)"):
            writer.commit()
    assert list(tmp_path.iterdir()) == []
