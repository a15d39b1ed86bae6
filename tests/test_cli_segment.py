"""``glgeo segment`` through click's CliRunner, with the real GLNet (random weights)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from click.testing import CliRunner

from glgeo.cli.main import cli
from glgeo.schemes import DEEPGLOBE, INRIA

from fixtures.checkpoints import save_tiny_checkpoint
from fixtures.rasters import write_geotiff


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """Random-weight resnet18 GLNets saved as glgeo checkpoints."""
    folder = tmp_path_factory.mktemp("models")
    inria = save_tiny_checkpoint(folder / "inria_r18.pt", INRIA, widths=(256, 128), global_size=256, patch_size=256,
                                 half=True)
    deepglobe = save_tiny_checkpoint(folder / "deepglobe_r18.pt", DEEPGLOBE, widths=(256, 128), global_size=508,
                                     patch_size=508, half=True)
    return {"inria": inria, "deepglobe": deepglobe}


def run(*args: str):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def _tiny_scene(path: Path, height: int = 40, width: int = 30) -> Path:
    data = np.random.default_rng(0).integers(0, 256, (3, height, width), dtype=np.uint8)
    return write_geotiff(path, data, crs="EPSG:3857", transform=Affine(10, 0, 1000, 0, -10, 5000))


def test_inria_crop_end_to_end(sample_data, checkpoints, tmp_path):
    scene = sample_data / "inria" / "austin_crop_top_image.tif"
    out, scores, vector = tmp_path / "buildings.tif", tmp_path / "scores.tif", tmp_path / "buildings.gpkg"
    result = run("segment", scene, "-o", out, "--model", checkpoints["inria"], "--probabilities", scores,
                 "--vector", vector, "--json", "--device", "cpu")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    with rasterio.open(scene) as src, rasterio.open(out) as dst:
        assert (dst.height, dst.width) == (src.height, src.width) == (700, 1000)
        assert dst.crs == src.crs and dst.crs.to_epsg() == 26914
        assert dst.transform == src.transform
        assert dst.nodata == 3 and dst.count == 1 and dst.dtypes[0] == "uint8"  # Inria: 2 bits, nodata 3
        assert dst.tags(1, ns="IMAGE_STRUCTURE")["NBITS"] == "2" and len(dst.colormap(1)) == 4
        classes = dst.read(1)
        assert dst.colormap(1)[1][:3] == INRIA.classes[1].color
    assert set(np.unique(classes)) <= {0, 1}
    assert out.with_suffix(".qml").is_file() and Path(f"{out}.aux.xml").is_file()
    assert summary["mode"] == "g2l" and summary["patches"] == summary["patches_computed"] == 20
    areas = {c["name"]: c["area"] for c in summary["classes"]}
    assert sum(areas.values()) == pytest.approx(700 * 1000 * 0.3 * 0.3, rel=1e-6)
    assert areas["building"] == pytest.approx((classes == 1).sum() * 0.09, rel=1e-6)
    with rasterio.open(scores) as src:
        assert src.count == 2 and src.transform.almost_equals(Affine(0.3, 0, 617100.0, 0, -0.3, 3344400.0), 1e-6)
        s = src.read().astype(int)
    assert (np.abs(s.sum(axis=0) - 255) <= 1).all()  # softmax scores
    assert (np.argmax(s, axis=0) == classes)[np.abs(s[1] - s[0]) > 2].all()
    assert vector.is_file() and summary["vector"]


def test_deepglobe_jpeg_without_georeferencing(sample_data, checkpoints, tmp_path):
    jpeg = sample_data / "deepglobe" / "images" / "855_sat.jpg"
    out = tmp_path / "855.tif"
    # the global branch alone keeps this test fast; the full g2l run is the slow test below
    result = run("-q", "segment", jpeg, "-o", out, "--model", checkpoints["deepglobe"], "--mode", "global", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert result.output == ""  # -q: nothing but errors
    with rasterio.open(out) as dst:
        assert (dst.height, dst.width) == (2448, 2448)
        assert dst.crs is None and dst.transform == Affine.identity()
        values = np.unique(dst.read(1))
    assert set(values) <= set(range(7))


@pytest.mark.slow
def test_deepglobe_jpeg_g2l_at_the_released_patch_size(sample_data, checkpoints, tmp_path):
    jpeg = sample_data / "deepglobe" / "images" / "855_sat.jpg"
    out = tmp_path / "855.tif"
    result = run("segment", jpeg, "-o", out, "--model", checkpoints["deepglobe"], "--json", "--device", "cpu")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["patches"] == 36 and summary["mode"] == "g2l"
    with rasterio.open(out) as dst:
        assert (dst.height, dst.width) == (2448, 2448) and dst.crs is None


def test_scene_smaller_than_one_patch_works(checkpoints, tmp_path):
    scene = _tiny_scene(tmp_path / "tiny.tif")
    out = tmp_path / "tiny_classes.tif"
    result = run("segment", scene, "-o", out, "--model", checkpoints["inria"], "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "1 patch computed" in result.output
    with rasterio.open(scene) as src, rasterio.open(out) as dst:
        assert (dst.height, dst.width, dst.crs, dst.transform) == (40, 30, src.crs, src.transform)


def test_summary_counts_the_nodata_pixels(checkpoints, tmp_path):
    data = np.random.default_rng(1).integers(1, 256, (3, 40, 30), dtype=np.uint8)
    data[:, :10] = 0  # the first 10 rows: nodata, 300 of 1200 px
    scene = write_geotiff(tmp_path / "collar.tif", data, crs="EPSG:3857",
                          transform=Affine(10, 0, 1000, 0, -10, 5000), nodata=0)
    result = run("segment", scene, "-o", tmp_path / "collar_classes.tif", "--model", checkpoints["inria"])
    assert result.exit_code == 0, result.output
    assert "nodata: 300 px (25.00 % of the scene), no class" in result.stdout
    assert "every pixel" not in result.output

    whole = run("segment", _tiny_scene(tmp_path / "valid.tif"), "-o", tmp_path / "valid_classes.tif",
                "--model", checkpoints["inria"])
    assert whole.exit_code == 0 and "  nodata:" not in whole.stdout


def test_a_scene_of_nodata_only_warns_that_its_map_has_no_class(checkpoints, tmp_path, caplog):
    scene = write_geotiff(tmp_path / "empty.tif", np.zeros((3, 40, 30), dtype=np.uint8), crs="EPSG:3857",
                          transform=Affine(10, 0, 1000, 0, -10, 5000), nodata=0)
    out = tmp_path / "empty_classes.tif"
    with caplog.at_level("WARNING", logger="glgeo"):
        result = run("segment", scene, "-o", out, "--model", checkpoints["inria"])
    assert result.exit_code == 0, result.output
    assert f"every pixel of {scene} is nodata: {out} holds no class" in caplog.text
    assert "nodata: 1,200 px (100.00 % of the scene), no class" in result.stdout
    with rasterio.open(out) as dst:
        assert (dst.read(1) == dst.nodata).all()


def test_a_model_trained_at_half_scale_reads_the_scene_at_half_scale(tmp_path):
    model = save_tiny_checkpoint(tmp_path / "half.pt", INRIA, widths=(256, 128), half=True,
                                 metadata={"training": {"scene_scale": 0.5, "gsd_m": 20.0}})  # scene: 10 m pixels
    scene = _tiny_scene(tmp_path / "scene.tif", 150, 90)
    result = run("segment", scene, "-o", tmp_path / "out.tif", "--model", model, "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "2 patches" in result.output and "read at 0.5 of its resolution" in result.output  # 75 x 45 px grid
    with rasterio.open(scene) as src, rasterio.open(tmp_path / "out.tif") as dst:
        assert (dst.height, dst.width, dst.crs, dst.transform) == (150, 90, src.crs, src.transform)
    full = run("segment", scene, "-o", tmp_path / "full.tif", "--model", model, "--device", "cpu", "--scale", "1")
    assert full.exit_code == 0 and "24 patches" in full.output and "read at" not in full.output
    bad = run("segment", scene, "-o", tmp_path / "bad.tif", "--model", model, "--scale", "1.5")
    assert bad.exit_code == 2 and "--scale" in bad.output


def test_gsd_gives_a_plain_image_its_resolution(tmp_path, caplog):
    from PIL import Image

    model = save_tiny_checkpoint(tmp_path / "half.pt", INRIA, widths=(256, 128), half=True,
                                 metadata={"training": {"scene_scale": 0.5, "gsd_m": 20.0}})
    scene = tmp_path / "plain.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (150, 90, 3), dtype=np.uint8)).save(scene)
    assumed = run("segment", scene, "-o", tmp_path / "assumed.tif", "--model", model, "--device", "cpu")
    assert assumed.exit_code == 0 and "read at 0.5 of its resolution" in assumed.output  # as the model was trained
    # the warning says what was assumed, and how to say otherwise
    assert "it is read as if its pixels were 10 m on the ground, as the model's training imagery (pass --gsd" in caplog.text
    caplog.clear()
    given = run("segment", scene, "-o", tmp_path / "given.tif", "--model", model, "--device", "cpu", "--gsd", "20")
    assert given.exit_code == 0 and "read at" not in given.output and "24 patches" in given.output
    assert "has no georeferencing" in caplog.text and "read as if its pixels were" not in caplog.text
    bad = run("segment", scene, "-o", tmp_path / "bad.tif", "--model", model, "--gsd", "0")
    assert bad.exit_code == 2 and "--gsd" in bad.output


@pytest.mark.slow
def test_compiled_local_branch_gives_the_eager_classes(checkpoints, tmp_path):
    from torch._dynamo.utils import counters

    scene = _tiny_scene(tmp_path / "s.tif", 300, 280)
    outs = []
    counters.clear()
    for flag in ((), ("--compile",)):
        out = tmp_path / f"c{len(flag)}.tif"
        result = run("segment", scene, "-o", out, "--model", checkpoints["inria"], "--device", "cpu",
                     "--precision", "fp32", "--patch-size", "128", *flag)
        assert result.exit_code == 0, result.output
        with rasterio.open(out) as src:
            outs.append(src.read(1))
        assert (counters["stats"]["unique_graphs"] > 0) == bool(flag)  # compiled only when asked
    assert (outs[0] == outs[1]).mean() > 0.999


@pytest.mark.parametrize(
    "case,message",
    [
        ("missing", "does not exist"),
        ("not_raster", "cannot open"),
        ("one_band", "needs 3 (RGB): pass --bands"),
        ("two_bands", "scene has 2 bands (alpha not counted); this model needs 3 (RGB), so it cannot be read as RGB"),
        ("same_as_input", "same file as the input"),
        ("no_folder", "does not exist; create it first"),
        ("exists", "already exists; pass --overwrite"),
        ("scheme", "predicts the 'inria' classes, not 'deepglobe'"),
        ("unknown_scheme", "Error: --scheme nosuch is no known class scheme; choose from: deepglobe, inria (model "),
        ("bad_bands", "band 5 is not in the scene, which has bands 1-3"),
        ("bad_model", "no checkpoint file or zoo model"),
    ],
)
def test_bad_input_gets_one_clear_line(case, message, checkpoints, tmp_path):
    scene = _tiny_scene(tmp_path / "scene.tif")
    out = tmp_path / "out.tif"
    model = checkpoints["inria"]
    extra: list = []
    if case == "missing":
        scene = tmp_path / "nope.tif"
    elif case == "not_raster":
        scene = tmp_path / "notes.txt"
        scene.write_text("hello")
    elif case == "one_band":
        with rasterio.open(tmp_path / "gray.tif", "w", driver="GTiff", height=8, width=8, count=1, dtype="uint8") as dst:
            dst.write(np.zeros((1, 8, 8), np.uint8))
        scene = tmp_path / "gray.tif"
    elif case == "two_bands":  # it said "pass --bands 1,2,3", then "band 3 is not in the scene"
        with rasterio.open(tmp_path / "gray.tif", "w", driver="GTiff", height=8, width=8, count=2, dtype="uint8") as dst:
            dst.write(np.zeros((2, 8, 8), np.uint8))
        scene = tmp_path / "gray.tif"
    elif case == "same_as_input":
        out = scene
        extra = ["--overwrite"]
    elif case == "no_folder":
        out = tmp_path / "missing" / "out.tif"
    elif case == "exists":
        out.write_bytes(b"x")
    elif case == "scheme":
        extra = ["--scheme", "deepglobe"]
    elif case == "unknown_scheme":  # it said "predicts the 'inria' classes, not 'nosuch'"
        extra = ["--scheme", "nosuch"]
    elif case == "bad_bands":
        extra = ["--bands", "1,2,5"]
    elif case == "bad_model":
        model = tmp_path / "nothing.pt"
    result = CliRunner().invoke(cli, ["segment", str(scene), "-o", str(out), "--model", str(model), *extra])
    assert result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    if case == "two_bands":
        assert "--bands 1,1,2" in result.output and "--bands 1,2,3" not in result.output
    leftovers = {p.name for p in tmp_path.iterdir()} - {"scene.tif", "notes.txt", "gray.tif", "out.tif"}
    assert not leftovers


def test_released_flag_and_context_window_options_reach_the_engine(checkpoints, tmp_path):
    scene = _tiny_scene(tmp_path / "scene.tif", height=300, width=420)
    released = run("segment", scene, "-o", tmp_path / "released.tif", "--model", checkpoints["inria"], "--released",
                   "--json", "--device", "cpu", "--batch-size", "4")
    assert released.exit_code == 0, released.output
    summary = json.loads(released.stdout)
    assert (summary["blend"], summary["context_windows"], summary["precision"]) == ("sum", 1, "fp32")
    with rasterio.open(tmp_path / "released.tif") as src:
        assert (src.tags()["GLGEO_BLEND"], src.tags()["GLGEO_NODATA_FILL"]) == ("sum", "zero")
        assert src.tags()["GLGEO_CONTEXT"] == "global view squeeze, margin 0 px, context crop cells, grid anchor scene"
        assert src.tags()["GLGEO_OPTIONS"].endswith(", global_resampling=pil")  # PIL's 8-bit resize, as released
    # an option --released would override, given otherwise, is refused (it was overridden without a word);
    # given as --released sets it, it is not
    clash = run("segment", scene, "-o", tmp_path / "clash.tif", "--model", checkpoints["inria"], "--released",
                "--blend", "taper", "--footprint", "512", "--edge-margin", "0", "--global-resampling", "gdal",
                "--device", "cpu")
    assert clash.exit_code == 2 and "--released computes as the released code does, which --blend taper, --footprint" \
        " 512, --global-resampling gdal would change; drop them or --released" in clash.output
    assert not (tmp_path / "clash.tif").exists()
    same = run("segment", scene, "-o", tmp_path / "same.tif", "--model", checkpoints["inria"], "--released",
               "--blend", "sum", "--footprint", "scene", "--precision", "fp32", "--device", "cpu")
    assert same.exit_code == 0, same.output
    windows = run("segment", scene, "-o", tmp_path / "windows.tif", "--model", checkpoints["inria"], "--footprint",
                  "160", "--window-overlap", "32", "--json", "--device", "cpu", "--batch-size", "4")
    assert windows.exit_code == 0, windows.output
    summary = json.loads(windows.stdout)
    assert (summary["blend"], summary["footprint"], summary["context_windows"]) == ("taper", 160, 12)  # 3 x 4
    with rasterio.open(tmp_path / "windows.tif") as src:
        assert src.tags()["GLGEO_NODATA_FILL"] == "mirror"
        # what the engine did: windows of 160 px, less than a 256 px patch and a lattice
        # step across, get the scene's own grid, whatever the anchor asked for
        assert src.tags()["GLGEO_CONTEXT"] == "global view fixed, margin 32 px, context crop exact, grid anchor scene"
    # windows of 480 px are on the map's lattice; this model's global pixel (480 / 307 px) is no whole
    # number of working-grid pixels, so only its patch grids are
    chosen = run("segment", scene, "-o", tmp_path / "chosen.tif", "--model", checkpoints["inria"], "--footprint", "480",
                 "--global-view", "fixed", "--global-margin", "64", "--context-crop", "cells", "--device", "cpu")
    assert chosen.exit_code == 0, chosen.output
    with rasterio.open(tmp_path / "chosen.tif") as src:
        assert src.tags()["GLGEO_CONTEXT"] == (
            "global view fixed, margin 64 px, context crop cells, grid anchor world, patches only"
        )
    scene_grid = run("segment", scene, "-o", tmp_path / "scene-grid.tif", "--model", checkpoints["inria"], "--footprint",
                     "160", "--grid-anchor", "scene", "--device", "cpu")
    assert scene_grid.exit_code == 0, scene_grid.output
    with rasterio.open(tmp_path / "scene-grid.tif") as src:
        assert src.tags()["GLGEO_CONTEXT"] == "global view fixed, margin 32 px, context crop exact, grid anchor scene"
    for extra, message in ((["--global-margin", "40"], "multiple of 32"),
                           (["--global-view", "squeeze", "--global-margin", "32"], "drop --global-margin"),
                           (["--global-view", "squeeze", "--grid-anchor", "world"], "use --grid-anchor scene")):
        refused = CliRunner().invoke(cli, ["segment", str(scene), "-o", str(tmp_path / "no.tif"), "--model",
                                           str(checkpoints["inria"]), "--device", "cpu", *extra])
        assert refused.exit_code == 1 and message in refused.output and "Traceback" not in refused.output
    bad = run("segment", scene, "-o", tmp_path / "bad.tif", "--model", checkpoints["inria"], "--footprint", "huge")
    assert bad.exit_code != 0 and "give a size in px" in bad.output


def test_no_scene_asks_for_a_scene():
    result = CliRunner().invoke(cli, ["segment", "-o", "out.tif"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert errors == ["Error: name the scenes to segment: SCENE -o OUT.tif for one; files, globs, URLs, @list.txt "
                      "or --input-list FILE with --out-dir DIR for several"]
    assert "--out-dir DIR:" not in result.output  # not the batch's "give --out-dir" any more


def test_an_unwritable_vector_folder_is_reported_before_segmenting(tiny_checkpoint, tmp_path, monkeypatch):
    """Not after the class raster was written (a traceback then, and a raster left behind)."""
    import os

    scene = _tiny_scene(tmp_path / "scene.tif")
    readonly = tmp_path / "ro"
    readonly.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: Path(path) != readonly and real_access(path, mode, **kw))
    model = ["--model", str(tiny_checkpoint), "--device", "cpu"]
    result = CliRunner().invoke(cli, ["segment", str(scene), "-o", str(tmp_path / "a.tif"),
                                      "--vector", str(readonly / "a.gpkg"), *model])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.strip() == f"Error: cannot write in the output folder '{readonly}'; choose a writable folder"
    assert not (tmp_path / "a.tif").exists()


def test_a_missing_vector_merge_folder_is_reported_before_the_scenes_run(tiny_checkpoint, tmp_path):
    scene = _tiny_scene(tmp_path / "scene.tif")
    result = CliRunner().invoke(cli, ["segment", str(scene), "--out-dir", str(tmp_path / "maps"),
                                      "--vector-merge", str(tmp_path / "nope" / "m.gpkg"),
                                      "--model", str(tiny_checkpoint), "--device", "cpu"])
    assert result.exit_code == 1 and "does not exist; create it first" in result.output
    assert not (tmp_path / "maps").exists()


@pytest.mark.parametrize("failure", ["interrupted", "error"])
def test_a_stop_while_vectorizing_says_the_raster_is_complete(tiny_checkpoint, tmp_path, monkeypatch, failure):
    """The class raster is finished before the polygons: a Ctrl-C or an error then says so
    (not "no partial output"), and how to make the GeoPackage from it."""
    import glgeo.vectorization
    from glgeo.errors import OutputError

    def vectorize(raster, out, **kwargs):
        if failure == "interrupted":
            raise KeyboardInterrupt
        raise OutputError("disk full; free some space")

    monkeypatch.setattr(glgeo.vectorization, "vectorize", vectorize)
    scene = _tiny_scene(tmp_path / "scene.tif")
    out, vector = tmp_path / "a.tif", tmp_path / "a.gpkg"
    result = CliRunner().invoke(cli, ["segment", str(scene), "-o", str(out), "--vector", str(vector),
                                      "--model", str(tiny_checkpoint), "--device", "cpu"])
    assert "Traceback" not in result.output and "no partial output" not in result.output
    if failure == "interrupted":
        assert result.exit_code == 130
        assert result.stderr.strip().splitlines()[-1] == (
            f"Interrupted while vectorizing: {out} is complete; {vector} was not written "
            f"(glgeo vectorize {out} -o {vector} makes it)."
        )
    else:
        assert result.exit_code == 1
        assert result.stderr.strip().splitlines()[-1] == (
            f"Error: {out} is complete, but {vector} was not written: disk full; free some space; "
            f"then glgeo vectorize {out} -o {vector} makes it"
        )
    with rasterio.open(out) as src:
        assert (src.height, src.width) == (40, 30)
    assert not vector.exists()


def test_an_aoi_the_scene_crs_cannot_hold_is_one_line(tiny_checkpoint, tmp_path):
    import geopandas as gpd
    import shapely

    data = np.random.default_rng(0).integers(0, 256, (3, 40, 30), dtype=np.uint8)
    scene = write_geotiff(tmp_path / "scene.tif", data, crs="EPSG:32645")
    aoi = tmp_path / "far.geojson"
    gpd.GeoDataFrame(geometry=[shapely.box(0, 0, 1, 1)], crs="EPSG:4326").to_file(aoi)
    result = CliRunner().invoke(cli, ["segment", str(scene), "-o", str(tmp_path / "a.tif"), "--aoi", str(aoi),
                                      "--model", str(tiny_checkpoint), "--device", "cpu"])
    assert result.exit_code == 1 and "Traceback" not in result.output and "Warning" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert "cannot be projected into the scene's CRS (EPSG:32645)" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["far.geojson", "scene.tif"]
