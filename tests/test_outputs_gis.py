"""What a GIS analyst sees of ``glgeo segment``'s outputs (issue 16): the format follows
the extension (or ``-f``) and takes GDAL creation options (``--co``), every output says
where it came from, and the summaries read as sentences. Through the command line, with
the outputs reopened by rasterio and pyogrio."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from rasterio.transform import from_origin

from glgeo.cli.main import cli
from glgeo.schemes import DEEPGLOBE, NODATA_ID

from fixtures.rasters import write_geotiff

CRS = "EPSG:32618"


@pytest.fixture(scope="module")
def checkpoint(tiny_checkpoint) -> Path:
    return tiny_checkpoint


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    rng = np.random.default_rng(1)
    coarse = rng.integers(0, 256, (3, 8, 10), dtype=np.uint8)
    image = np.kron(coarse, np.ones((1, 16, 16), dtype=np.uint8))
    return write_geotiff(tmp_path_factory.mktemp("scene") / "scene.tif", image, crs=CRS, origin=(500_000.0, 4_000_000.0))


def segment(*args: object):
    return CliRunner().invoke(cli, ["segment", *(str(a) for a in args)])


def options(checkpoint: Path) -> list[str]:
    return ["--model", str(checkpoint), "--device", "cpu", "--overlap", "8", "--batch-size", "8"]


@pytest.fixture(scope="module")
def reference(scene, checkpoint, tmp_path_factory) -> np.ndarray:
    out = tmp_path_factory.mktemp("reference") / "reference.tif"
    result = segment(scene, "-o", out, "-q", *options(checkpoint))
    assert result.exit_code == 0, result.output
    with rasterio.open(out) as src:
        return src.read(1)


# ------------------------------------------------------------------ formats (item 3, 6)


def test_png_output_is_a_png_on_the_scenes_grid(tmp_path, scene, checkpoint, reference):
    out = tmp_path / "z7.png"
    result = segment(scene, "-o", out, "-q", *options(checkpoint))
    assert result.exit_code == 0, result.output
    with rasterio.open(out) as dst, rasterio.open(scene) as src:
        assert dst.driver == "PNG"
        assert dst.crs == src.crs and dst.transform == src.transform  # in the PNG's .aux.xml
        assert dst.colormap(1)[1][:3] == DEEPGLOBE.classes[1].color
        np.testing.assert_array_equal(dst.read(1), reference)
    assert out.with_suffix(".qml").is_file()


@pytest.mark.parametrize(
    ("name", "extra", "message"),
    [
        ("z7.jpg", [], "z7.jpg': .jpg is a lossy format: its compression would change class ids"),
        ("z7.xyz", [], "glgeo writes no .xyz rasters; name it .tif (or .png, .img), or give its format (--format NAME"),
        ("z7.tif", ["-f", "JPEG"], "--format JPEG is not one glgeo writes (lossy"),
        ("z7.tif", ["--co", "COMPRESS"], "give KEY=VALUE"),
        ("z7.png", ["-f", "COG"], "--format COG does not match the extension of"),
    ],
)
def test_formats_glgeo_does_not_write_are_refused(tmp_path, scene, checkpoint, name, extra, message):
    result = segment(scene, "-o", tmp_path / name, *extra, *options(checkpoint))
    assert result.exit_code != 0
    assert message in result.output and "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []


def test_format_and_creation_options_reach_gdal(tmp_path, scene, checkpoint, reference):
    cog = tmp_path / "zstd.tif"
    result = segment(scene, "-o", cog, "-q", "--co", "COMPRESS=ZSTD", "--co", "blocksize=256", *options(checkpoint))
    assert result.exit_code == 0, result.output
    with rasterio.open(cog) as dst:
        assert dst.compression.name.upper() == "ZSTD" and dst.block_shapes[0] == (256, 256)
        assert dst.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        np.testing.assert_array_equal(dst.read(1), reference)
    plain = tmp_path / "plain.tif"
    result = segment(scene, "-o", plain, "-q", "-f", "GTiff", "--co", "COMPRESS=LZW", *options(checkpoint))
    assert result.exit_code == 0, result.output
    with rasterio.open(plain) as dst:
        assert dst.driver == "GTiff" and dst.compression.name.upper() == "LZW"
        assert dst.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") != "COG"
        np.testing.assert_array_equal(dst.read(1), reference)
    img = tmp_path / "erdas.img"
    result = segment(scene, "-o", img, "-q", *options(checkpoint))
    assert result.exit_code == 0, result.output
    with rasterio.open(img) as dst:
        assert dst.driver == "HFA" and dst.crs.to_epsg() == 32618 and dst.nodata == NODATA_ID
        np.testing.assert_array_equal(dst.read(1), reference)


# ------------------------------------------------------------------ provenance (item 4)


def test_every_output_says_where_it_came_from(tmp_path, scene, checkpoint):
    import datetime
    import hashlib

    import pyogrio

    from glgeo import __version__

    out, scores, vector = tmp_path / "lc.tif", tmp_path / "scores.tif", tmp_path / "lc.gpkg"
    result = segment(scene, "-o", out, "--probabilities", scores, "--vector", vector, "--precision", "fp32",
                     *options(checkpoint))
    assert result.exit_code == 0, result.output
    first = result.stdout.splitlines()[0]
    assert "model tiny.pt, mode g2l, fp32 on cpu" in first
    sha = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    expected = {
        "GLGEO_MODEL": "tiny.pt",
        "GLGEO_MODEL_SHA256": sha,
        "GLGEO_VERSION": __version__,
        "GLGEO_MODE": "g2l",
        "GLGEO_PRECISION": "fp32",
        "GLGEO_READING_SCALE": "1",
        "GLGEO_READING_GSD_M": "0.5",
        "GLGEO_BLEND": "taper",
    }
    for raster in (out, scores):
        with rasterio.open(raster) as src:
            tags = src.tags()
        assert {k: tags.get(k) for k in expected} == expected
        created = datetime.datetime.strptime(tags["GLGEO_CREATED_UTC"], "%Y-%m-%dT%H:%M:%SZ")
        assert abs((datetime.datetime.utcnow() - created).total_seconds()) < 600
        assert tags["TIFFTAG_SOFTWARE"] == f"glgeo {__version__}" and tags["TIFFTAG_DATETIME"]
    metadata = pyogrio.read_info(vector, layer="lc")["layer_metadata"]
    assert {k: metadata.get(k) for k in expected} == expected
    assert metadata["GLGEO_SOURCE_RASTER"] == "lc.tif" and metadata["GLGEO_VECTORIZED_UTC"]
    as_json = segment(scene, "-o", tmp_path / "j.tif", "--json", "--precision", "fp32", *options(checkpoint))
    provenance = json.loads(as_json.stdout)["provenance"]
    assert provenance["model_sha256"] == sha and provenance["precision"] == "fp32" and provenance["gsd_m"] == 0.5


# ------------------------------------------------------------------ summaries and option names (item 5, 6)


def test_summary_reads_as_sentences(tmp_path, scene, checkpoint, reference):
    result = segment(scene, "-o", tmp_path / "s.tif", "-b", "1,2,3", "--precision", "fp32", *options(checkpoint))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert " patches computed (0 skipped)" in lines[0]
    counts = np.bincount(reference.ravel(), minlength=256)
    for c in DEEPGLOBE.classes:
        line = next(text for text in lines[1:] if text.split()[:2] == [str(c.id), c.name])
        assert line.endswith(f"{counts[c.id]:,} px")  # integer pixel counts
        area = counts[c.id] * 0.25
        assert (f"{area:,.0f} m2" if area >= 10 or area == 0 else f"{area:.2f} m2") in line  # < 1 ha: m2
    assert "metre^2" not in result.stdout and ".0 pixel" not in result.stdout


def test_bidx_is_rios_name_for_bands(tmp_path, scene, checkpoint):
    result = segment(scene, "-o", tmp_path / "b.tif", "--bidx", "4,2,1", *options(checkpoint))
    assert result.exit_code == 1
    assert "band 4 is not in the scene, which has bands 1-3" in result.output and "[4]" not in result.output


def test_vectorize_says_one_polygon(tmp_path):
    raster = tmp_path / "one.tif"
    with rasterio.open(raster, "w", driver="GTiff", width=10, height=10, count=1, dtype="uint8", crs=CRS,
                       transform=from_origin(500_000.0, 4_000_000.0, 10, 10), nodata=NODATA_ID) as dst:
        dst.write(np.full((10, 10), 4, dtype=np.uint8), 1)
    result = CliRunner().invoke(cli, ["vectorize", str(raster), "-o", str(tmp_path / "one.gpkg"), "--scheme", "deepglobe"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [f"{tmp_path / 'one.gpkg'}: 1 polygon in layer one (EPSG:32618)",
                                          "  forest  1 polygon  1.00 ha"]


# ------------------------------------------------------------------ areas of interest (item 6)


def test_bounds_segments_only_inside_the_box(tmp_path, scene, checkpoint, reference):
    out = tmp_path / "box.tif"
    # the left 60 columns, rows 20-99: x 500000-500030, y 3999950-3999990
    result = segment(scene, "-o", out, "--bounds", "500000", "3999950", "500030", "3999990", "--json",
                     *options(checkpoint))
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    with rasterio.open(out) as dst:
        classes, nodata = dst.read(1), dst.nodata  # 7: DeepGlobe ids are packed in 3 bits
        assert dst.transform == rasterio.open(scene).transform  # still the scene's grid
    inside = np.zeros(classes.shape, dtype=bool)
    inside[20:100, 0:60] = True
    assert (classes[~inside] == nodata).all() and (classes[inside] != nodata).all()
    # the network saw the real pixels around the box: inside, the classes of a whole-scene run
    np.testing.assert_array_equal(classes[inside], reference[inside])
    assert summary["nodata_pixels"] == (~inside).sum()
    assert summary["patches_skipped_nodata"] > 0  # windows outside were not computed


def test_aoi_in_another_crs_is_reprojected(tmp_path, scene, checkpoint):
    import geopandas as gpd
    import shapely
    from rasterio.features import geometry_mask

    # a triangle drawn in WGS84 over the scene (UTM 18N)
    with rasterio.open(scene) as src:
        transform, shape = src.transform, src.shape
    utm = shapely.Polygon([transform * (10, 10), transform * (150, 30), transform * (40, 120)])  # noqa
    frame = gpd.GeoDataFrame(geometry=[utm], crs=CRS).to_crs("EPSG:4326")
    aoi = tmp_path / "aoi.geojson"
    frame.to_file(aoi, driver="GeoJSON")
    out = tmp_path / "aoi.tif"
    result = segment(scene, "-o", out, "--aoi", aoi, "-q", *options(checkpoint))
    assert result.exit_code == 0, result.output
    with rasterio.open(out) as dst:
        valid = dst.read(1) != dst.nodata
    expected = geometry_mask([utm], out_shape=shape, transform=transform, invert=True)
    # pixel centres inside the reprojected triangle; its edges curve slightly in UTM
    assert (valid != expected).sum() <= 0.01 * expected.sum()


def test_a_vector_output_that_is_not_a_geopackage_is_refused_before_the_scene_is_computed(tmp_path, scene, checkpoint):
    """--vector polygons.txt: said at once, not after the class raster's hours of work."""
    result = segment(scene, "-o", tmp_path / "a.tif", "--vector", tmp_path / "polygons.txt", *options(checkpoint))
    assert result.exit_code == 1 and result.output.strip().splitlines() == [
        f"Error: output '{tmp_path / 'polygons.txt'}' must be a GeoPackage (.gpkg)"
    ], result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize("target", ["out", "vector", "vector-layer", "probabilities"])
def test_no_output_replaces_the_area_of_interest_even_with_overwrite(tmp_path, scene, checkpoint, target):
    """--aoi is an input: -o, --vector or --probabilities naming its file is refused before
    any work, with --overwrite too (it replaced the user's GeoPackage of areas)."""
    import geopandas as gpd
    import shapely

    with rasterio.open(scene) as src:
        box = shapely.box(*src.bounds)
    aoi = tmp_path / "areas.gpkg"
    gpd.GeoDataFrame(geometry=[box], crs=CRS).to_file(aoi, layer="fields")
    kept = aoi.read_bytes()
    source = f"{aoi}|layername=fields" if target == "vector-layer" else str(aoi)
    outputs = {"out": ["-o", aoi], "vector": ["-o", tmp_path / "a.tif", "--vector", aoi],
               "vector-layer": ["-o", tmp_path / "a.tif", "--vector", aoi],
               "probabilities": ["-o", tmp_path / "a.tif", "--probabilities", aoi]}[target]
    result = segment(scene, *outputs, "--aoi", source, "--overwrite", *options(checkpoint))
    assert result.exit_code == 1 and "is the same file as the input; choose another name" in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1
    assert aoi.read_bytes() == kept and not (tmp_path / "a.tif").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--bounds", "0", "0", "10", "10"], "--bounds 0 0 10 10 does not overlap"),
        (["--bounds", "5", "0", "1", "10"], "--bounds 5 0 1 10 is empty: give left < right"),
        (["--aoi", "missing.geojson"], "area of interest 'missing.geojson' does not exist"),
    ],
)
def test_areas_of_interest_that_cannot_work_are_one_line(tmp_path, scene, checkpoint, extra, message, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = segment(scene, "-o", tmp_path / "x.tif", *extra, *options(checkpoint))
    assert result.exit_code == 1 and message in result.output, result.output
    assert not (tmp_path / "x.tif").exists()


# ------------------------------------------------------------------ packed class rasters (item 7)


def test_class_raster_is_packed_and_glgeo_reads_it_back(tmp_path, scene, checkpoint):
    """DeepGlobe ids in 3 bits, nodata 7 (a bare copy lists 8 legend entries); vectorize and
    evaluate take the file's nodata, never 7 as a class."""
    out = tmp_path / "box.tif"
    result = segment(scene, "-o", out, "-q", "--bounds", "500000", "3999950", "500030", "3999990", *options(checkpoint))
    assert result.exit_code == 0, result.output
    with rasterio.open(out) as dst:
        assert dst.nodata == 7 and dst.tags(1, ns="IMAGE_STRUCTURE")["NBITS"] == "3"
        assert len(dst.colormap(1)) == 8 and dst.colormap(1)[7][3] == 0
        classes = dst.read(1)
    inside = np.zeros(classes.shape, dtype=bool)
    inside[20:100, 0:60] = True
    assert (classes[~inside] == 7).all() and (classes[inside] < 7).all()
    qml = out.with_suffix(".qml").read_text()
    assert '<pixelListEntry min="7" max="7" percentTransparent="100"' in qml

    gpkg = tmp_path / "box.gpkg"
    result = CliRunner().invoke(cli, ["vectorize", str(out), "-o", str(gpkg), "-q"])
    assert result.exit_code == 0, result.output
    import pyogrio

    frame = pyogrio.read_dataframe(gpkg)
    assert set(frame.class_id) <= set(range(7))
    assert frame.area_m2.sum() == pytest.approx(inside.sum() * 0.25)  # 0.5 m pixels, only inside the box

    truth = write_geotiff(tmp_path / "truth.tif", np.where(inside, classes, NODATA_ID), nodata=NODATA_ID,
                          crs=CRS, origin=(500_000.0, 4_000_000.0))
    result = CliRunner().invoke(cli, ["evaluate", "--pred", str(out), "--truth", str(truth), "--truth-encoding", "ids",
                                      "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert sum(map(sum, report["confusion_matrix"])) == inside.sum() and sum(report["unpredicted_pixels"]) == 0


def test_class_rasters_written_before_packing_still_read(tmp_path, scene, checkpoint):
    """An 8-bit class raster with nodata 255, as glgeo wrote them before (and as --co NBITS=8
    writes them now): vectorize and evaluate read it as before."""
    out = tmp_path / "byte.tif"
    result = segment(scene, "-o", out, "-q", "--co", "NBITS=8", "--bounds", "500000", "3999950", "500030", "3999990",
                     *options(checkpoint))
    assert result.exit_code == 0, result.output
    with rasterio.open(out) as dst:
        assert dst.nodata == NODATA_ID and "NBITS" not in dst.tags(1, ns="IMAGE_STRUCTURE")
        assert len(dst.colormap(1)) == 256 and dst.colormap(1)[NODATA_ID][3] == 0
        classes = dst.read(1)
    assert '<pixelListEntry min="255" max="255"' in out.with_suffix(".qml").read_text()
    inside = classes != NODATA_ID
    assert inside.sum() == 80 * 60
    gpkg = tmp_path / "byte.gpkg"
    assert CliRunner().invoke(cli, ["vectorize", str(out), "-o", str(gpkg), "-q"]).exit_code == 0
    import pyogrio

    assert pyogrio.read_dataframe(gpkg).area_m2.sum() == pytest.approx(inside.sum() * 0.25)
    result = CliRunner().invoke(cli, ["evaluate", "--pred", str(out), "--truth", str(out), "--truth-encoding", "ids",
                                      "--json"])
    assert result.exit_code == 0, result.output
    assert sum(map(sum, json.loads(result.stdout)["confusion_matrix"])) == inside.sum()


def test_creation_option_nbits(tmp_path, scene, checkpoint, reference):
    """--co NBITS packs the class raster into that many bits (nodata 2^NBITS - 1), never the
    scores; an NBITS that cannot hold the classes plus nodata is one line."""
    out, scores = tmp_path / "four.tif", tmp_path / "scores.tif"
    result = segment(scene, "-o", out, "-q", "--co", "NBITS=4", "--probabilities", scores, *options(checkpoint))
    assert result.exit_code == 0, result.output
    with rasterio.open(out) as dst:
        assert dst.nodata == 15 and dst.tags(1, ns="IMAGE_STRUCTURE")["NBITS"] == "4" and len(dst.colormap(1)) == 16
        np.testing.assert_array_equal(dst.read(1), reference)
    with rasterio.open(scores) as dst:
        assert "NBITS" not in dst.tags(1, ns="IMAGE_STRUCTURE") and dst.read().max() > 15
    for extra, message in [
        (["--co", "NBITS=2"], "NBITS=2 (creation option) cannot hold the 7 classes of 'deepglobe' plus nodata;"
                              " use NBITS=3 or more, or leave it out"),
        (["--co", "NBITS=12"], "NBITS=12 (creation option) is not a number of bits; use 3-8"),
        (["-f", "PNG", "--co", "NBITS=4"], "glgeo packs class ids into fewer bits in GeoTIFF and COG only"),
    ]:
        name = "x.png" if "PNG" in extra else "x.tif"
        result = segment(scene, "-o", tmp_path / name, *extra, *options(checkpoint))
        assert result.exit_code != 0 and message in result.output, result.output
        assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1, result.output
