"""``glgeo vectorize``: the options reach the library; outputs reopened and checked."""

from __future__ import annotations

import json
import logging

import numpy as np
import pyogrio
import pytest
import rasterio
from click.testing import CliRunner

from glgeo.cli.main import cli
from glgeo.schemes import NODATA_ID

from fixtures.class_rasters import read_layer, reburn, write_raster


def test_cli_vectorize_writes_the_layer(tmp_path, class_raster, classes_array):
    out = tmp_path / "cli.gpkg"
    runner = CliRunner()
    result = runner.invoke(
        cli, ["vectorize", str(class_raster), "--out", str(out), "--scheme", "deepglobe", "--block-size", "40",
              "--layer", "lc"]
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    n = len(pyogrio.read_dataframe(out, layer="lc"))
    assert lines[0] == f"{out}: {n:,} polygons in layer lc (EPSG:32618)"
    frame = pyogrio.read_dataframe(out, layer="lc")
    for name, group in frame.groupby("class_name"):
        polygons = f"{len(group)} polygon{'s' if len(group) != 1 else ''}"
        assert f"  {polygons}  {group.area_m2.sum():,.0f} m2" in result.stdout  # areas under 1 ha in m2
    assert " 1 polygons" not in result.stdout
    assert "'" not in result.stdout  # no Python reprs
    frame = pyogrio.read_dataframe(out, layer="lc")
    assert frame.crs.to_epsg() == 32618
    assert np.array_equal(reburn(frame, classes_array.shape), classes_array)
    info = pyogrio.read_info(out, layer="lc")
    np.testing.assert_allclose(info["total_bounds"], rasterio.open(class_raster).bounds)


def test_cli_options_reach_the_library(tmp_path, class_raster):
    out = tmp_path / "opts.gpkg"
    result = CliRunner().invoke(
        cli,
        ["vectorize", str(class_raster), "-o", str(out), "--scheme", "deepglobe", "--classes", "water",
         "--classes", "rangeland,urban", "--min-area", "5", "--simplify", "1", "--block-size", "64"],
    )
    assert result.exit_code == 0, result.output
    frame = pyogrio.read_dataframe(out, layer="landcover")
    assert set(frame.class_name) == {"water", "rangeland", "urban"}
    assert frame.area_m2.min() >= 5
    assert len(frame.geometry.iloc[0].exterior.coords) < 200


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--classes", "building"], "unknown class 'building'"),
        (["--simplify", "-2"], "Error: --simplify must be a positive number, got -2"),
        (["--min-area", "0"], "Error: --min-area must be a positive number, got 0"),
        (["--min-area", "1e6"], "Error: --min-area 1e+06 m2 covers 4,000,000 pixels, at least the raster's whole area"
                                " (190 x 150 = 28,500 pixels, 7125 m2): no region could be kept; pass a --min-area of"
                                " at most 7124.75 m2"),
        (["--min-area", "1000", "--block-size", "16"], "more than the blocks of --block-size 16 hold with their margin"
                                                       " (the smallest, at the raster's edges: 660 pixels); pass"
                                                       " --block-size 64 or more, or a smaller --min-area"),
        ([], "cannot tell which classes"),
    ],
)
def test_cli_errors_are_one_line(tmp_path, class_raster, args, message):
    scheme = [] if message.startswith("cannot") else ["--scheme", "deepglobe"]
    result = CliRunner().invoke(cli, ["vectorize", str(class_raster), "--out", str(tmp_path / "e.gpkg"), *scheme, *args])
    assert result.exit_code == 1
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert "Traceback" not in result.output
    assert not (tmp_path / "e.gpkg").exists()


def test_cli_existing_output_and_float_input(tmp_path, class_raster, classes_array):
    out = tmp_path / "twice.gpkg"
    runner = CliRunner()
    assert runner.invoke(cli, ["-q", "vectorize", str(class_raster), "-o", str(out), "--scheme", "deepglobe"]).exit_code == 0
    again = runner.invoke(cli, ["-q", "vectorize", str(class_raster), "-o", str(out), "--scheme", "deepglobe"])
    assert again.exit_code == 1 and "--overwrite" in again.output
    floats = write_raster(tmp_path / "f.tif", classes_array / 3.0, dtype="float32", nodata=None)
    bad = runner.invoke(cli, ["-q", "vectorize", str(floats), "-o", str(tmp_path / "f.gpkg"), "--scheme", "deepglobe"])
    assert bad.exit_code == 1 and "float32" in bad.output


def test_cli_refuses_values_outside_the_scheme_and_names_them(tmp_path, sample_data):
    """A 0/255 building mask without nodata: 255 is not taken as nodata, nothing is lost."""
    gt = sample_data / "inria" / "austin_crop_top_gt.tif"
    out = tmp_path / "y.gpkg"
    result = CliRunner().invoke(cli, ["vectorize", str(gt), "--out", str(out), "--scheme", "inria"])
    assert result.exit_code == 1
    assert "holds the value 255, not class ids of the 'inria' scheme (0-1: background, building)" in result.output
    assert "building as 255" in result.output  # recognised as the dataset's mask encoding
    assert "Traceback" not in result.output
    assert not out.exists()


def test_cli_nodata_option(tmp_path, classes_array):
    undeclared = write_raster(tmp_path / "undeclared.tif", classes_array, nodata=None)
    out = tmp_path / "n.gpkg"
    result = CliRunner().invoke(cli, ["-q", "vectorize", str(undeclared), "-o", str(out), "--scheme", "deepglobe",
                                      "--nodata", "255", "--layer", "landcover"])
    assert result.exit_code == 0, result.output
    assert np.array_equal(reburn(read_layer(out), classes_array.shape), classes_array)


def test_cli_json_prints_the_summary(tmp_path, class_raster):
    out = tmp_path / "j.gpkg"
    result = CliRunner().invoke(cli, ["vectorize", str(class_raster), "-o", str(out), "--scheme", "deepglobe", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["polygons"] == len(read_layer(out)) and data["crs"] == "EPSG:32618" and data["area_units"] == "m2"


def specks(rangeland: bool = False) -> np.ndarray:
    """20 x 20 px (50 cm) of forest (4) and urban (1) with three classes under 1 m² (4 px)."""
    data = np.full((20, 20), 4, dtype=np.uint8)
    data[:, 10:] = 1
    data[2, 2] = 0  # unknown, 1 px
    data[5, 5:7] = data[6, 5] = 2  # agriculture, 3 px
    data[15, 15] = 5  # water, 1 px
    if rangeland:
        data[0:4, 0:4] = 3
    return data


def test_cli_min_area_says_what_it_merged_and_which_classes_lost_every_polygon(tmp_path, caplog):
    raster = write_raster(tmp_path / "specks.tif", specks())
    out = tmp_path / "s.gpkg"
    with caplog.at_level(logging.WARNING, logger="glgeo.vectorization"):
        result = CliRunner().invoke(cli, ["vectorize", str(raster), "-o", str(out), "--scheme", "deepglobe",
                                          "--min-area", "1", "--block-size", "4"])
    assert result.exit_code == 0, result.output
    assert set(read_layer(out, "specks").class_name) == {"forest", "urban"}
    assert ("--min-area merged 3 regions (5 px) into neighbouring regions; no polygon left for unknown, agriculture,"
            " water (see the warning)") in result.stdout
    warnings = " ".join(r.getMessage() for r in caplog.records if r.name == "glgeo.vectorization")
    assert ("3 classes have no region of at least 1 m2 and get no polygon: unknown (1 px), agriculture (3 px), water"
            " (1 px); their pixels were merged into neighbouring regions (pass a smaller --min-area to keep them)"
            ) in warnings
    assert "more than half of --block-size (4)" in warnings and "pass --block-size 8 or more" in warnings
    assert "block_size" not in warnings and "min_area" not in warnings

    data = json.loads(CliRunner().invoke(cli, ["-q", "vectorize", str(raster), "-o", str(out), "--scheme", "deepglobe",
                                               "--min-area", "1", "--json", "--overwrite"]).stdout)
    assert data["classes_without_polygons"] == ["unknown", "agriculture", "water"]
    assert data["merged_regions"] == 3 and data["merged_pixels"] == 5
    assert data["raster_pixels_per_class"]["water"] == 1 and data["written_pixels_per_class"] == {"urban": 200, "forest": 200}


def test_cli_nodata_that_is_a_class_names_the_option_that_keeps_it(tmp_path, caplog):
    raster = write_raster(tmp_path / "r.tif", specks(rangeland=True), nodata=3)
    with caplog.at_level(logging.WARNING, logger="glgeo.vectorization"):
        result = CliRunner().invoke(cli, ["vectorize", str(raster), "-o", str(tmp_path / "a.gpkg"), "--scheme", "deepglobe"])
    assert result.exit_code == 0, result.output
    assert "rangeland" not in set(read_layer(tmp_path / "a.gpkg", "r").class_name)
    [warning] = [r.getMessage() for r in caplog.records if r.name == "glgeo.vectorization"]
    assert "is the class id of rangeland in the 'deepglobe' scheme: its 16 pixels are left out as nodata" in warning
    assert "if they are rangeland, pass --nodata 255 (a value that is not a class id) to vectorize them" in warning
    kept = CliRunner().invoke(cli, ["-q", "vectorize", str(raster), "-o", str(tmp_path / "b.gpkg"), "--scheme",
                                    "deepglobe", "--nodata", str(NODATA_ID)])
    assert kept.exit_code == 0, kept.output
    frame = read_layer(tmp_path / "b.gpkg", "r")
    assert frame.loc[frame.class_name == "rangeland", "area_m2"].sum() == 16 * 0.25
    assert np.array_equal(reburn(frame, (20, 20)), specks(rangeland=True))


def test_verbose_shows_glgeo_lines_not_gdals_record_counts(tmp_path, class_raster):
    """-v: glgeo's own INFO lines, not pyogrio's "Created N records" per write (-vv shows them)."""
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-c", "from glgeo.cli.main import cli; cli()", "-v", "vectorize", str(class_raster), "--out",
                          str(tmp_path / "v.gpkg"), "--scheme", "deepglobe"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "INFO: wrote" in run.stderr and "Created" not in run.stderr


def test_a_geopackage_named_as_a_raster_s_metadata_is_warned_about(tmp_path, class_raster, caplog):
    """QGIS shows ``X.qmd`` (the class raster's layer metadata) for ``X.gpkg`` too, over the
    GeoPackage's own: the name clash is said, with a name that avoids it."""
    (tmp_path / "scene.qmd").write_text("<qgis/>")
    with caplog.at_level(logging.WARNING, logger="glgeo"):
        result = CliRunner().invoke(cli, ["vectorize", str(class_raster), "--out", str(tmp_path / "scene.gpkg"),
                                          "--scheme", "deepglobe"])
    assert result.exit_code == 0, result.output
    assert f"QGIS shows {tmp_path / 'scene.qmd'}" in caplog.text and "(scene-polygons.gpkg)" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="glgeo"):
        apart = CliRunner().invoke(cli, ["vectorize", str(class_raster), "--out", str(tmp_path / "scene-polygons.gpkg"),
                                         "--scheme", "deepglobe"])
    assert apart.exit_code == 0, apart.output
    assert "QGIS shows" not in caplog.text


def test_a_truncated_raster_is_one_line_and_leaves_nothing(tmp_path, class_raster):
    """A class raster cut short (an interrupted copy): the read failure is said in one line."""
    whole = class_raster.read_bytes()
    cut = tmp_path / "cut.tif"
    cut.write_bytes(whole[: len(whole) // 2])
    out = tmp_path / "cut.gpkg"
    result = CliRunner().invoke(cli, ["vectorize", str(cut), "-o", str(out), "--scheme", "deepglobe"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.strip().splitlines() == [
        f"Error: reading '{cut}' failed (Read failed): the file may be truncated or corrupt; check it with"
        f" `gdalinfo -checksum {cut}` and copy it again"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.tif", "landcover.tif"]


def test_a_scheme_other_than_the_one_the_raster_carries_is_refused(tmp_path):
    """--scheme deepglobe on a buildings raster would call background 'unknown' and buildings
    'urban' without a word: refused, as evaluate refuses it; its own scheme is accepted."""
    from glgeo.schemes import INRIA
    from glgeo.styles import SCHEME_TAG

    data = np.zeros((40, 60), dtype=np.uint8)
    data[10:20, 10:30] = 1
    raster = write_raster(tmp_path / "buildings.tif", data)
    with rasterio.open(raster, "r+") as dst:
        dst.update_tags(**{SCHEME_TAG: json.dumps(INRIA.to_dict())})
    runner = CliRunner()
    refused = runner.invoke(cli, ["vectorize", str(raster), "-o", str(tmp_path / "a.gpkg"), "--scheme", "deepglobe"])
    assert refused.exit_code == 1 and refused.output.strip().splitlines() == [
        f"Error: '{raster}' carries class scheme 'inria' (background, building), not 'deepglobe' (unknown, urban,"
        " agriculture, rangeland, forest, water, barren): its ids mean its own classes; drop --scheme deepglobe to"
        " use its own"
    ]
    assert not (tmp_path / "a.gpkg").exists()
    kept = runner.invoke(cli, ["-q", "vectorize", str(raster), "-o", str(tmp_path / "b.gpkg"), "--scheme", "inria"])
    assert kept.exit_code == 0, kept.output


@pytest.mark.parametrize(("fill", "args", "why"), [
    (NODATA_ID, [], "has no pixel of any class (every pixel is nodata)"),
    (3, ["--classes", "water"], "has no pixel of water (its pixels are rangeland (28,500 px))"),
])
def test_a_layer_without_polygons_is_warned_about(tmp_path, caplog, fill, args, why):
    raster = write_raster(tmp_path / "empty.tif", np.full((150, 190), fill, dtype=np.uint8))
    with caplog.at_level(logging.WARNING, logger="glgeo"):
        result = CliRunner().invoke(cli, ["-q", "vectorize", str(raster), "-o", str(tmp_path / "e.gpkg"),
                                          "--scheme", "deepglobe", *args])
    assert result.exit_code == 0, result.output
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        f"{raster} {why}: the layer holds no polygon"
    ]
