"""``glgeo vectorize``: the options reach the library; outputs reopened and checked."""

from __future__ import annotations

import numpy as np
import pyogrio
import pytest
import rasterio
from click.testing import CliRunner

from glgeo.cli.main import cli

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
        (["--simplify", "-2"], "simplify must be a positive number"),
        ([], "cannot tell which classes"),
    ],
)
def test_cli_errors_are_one_line(tmp_path, class_raster, args, message):
    scheme = [] if message.startswith("cannot") else ["--scheme", "deepglobe"]
    result = CliRunner().invoke(cli, ["vectorize", str(class_raster), "--out", str(tmp_path / "e.gpkg"), *scheme, *args])
    assert result.exit_code == 1
    assert message in result.output
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
    import json

    out = tmp_path / "j.gpkg"
    result = CliRunner().invoke(cli, ["vectorize", str(class_raster), "-o", str(out), "--scheme", "deepglobe", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["polygons"] == len(read_layer(out)) and data["crs"] == "EPSG:32618" and data["area_units"] == "m2"
