"""Imagery + polygon labels through torchgeo (glgeo.geodata): rasterization on the imagery's
grid across CRSs, the split by area, each input error, and a real training run on the
Joplin sample (train, segment the held-out tile, evaluate it against the footprints)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from click.testing import CliRunner

from glgeo.cli.main import cli
from glgeo.datasets import SampleSpec, nearest_resize
from glgeo.errors import DatasetError, InputError
from glgeo.geodata import GeoInputs, GeoScenes, truth_on_grid
from glgeo.schemes import DEEPGLOBE, INRIA, NODATA_ID

from fixtures.rasters import write_geotiff

HELD_OUT = "tile_1361-9136.tif"

X0, Y0 = 366_000.0, 4_104_000.0  # top-left corner of the generated tiles, EPSG:32615 (m)


def write_tile(path: Path, left: float, top: float, size: int = 256, res: float = 1.0, count: int = 3,
               crs: str = "EPSG:32615") -> Path:
    rng = np.random.default_rng(abs(hash(path.name)) % 2**32)
    data = rng.integers(0, 255, (count, size, size), dtype=np.uint8)
    return write_geotiff(path, data, crs=crs, origin=(left, top), res=res)


def building(x0: float, y0: float, x1: float, y1: float) -> shapely.Geometry:
    """A box given in metres from the tiles' top-left corner (x right, y down)."""
    return shapely.box(X0 + x0, Y0 - y1, X0 + x1, Y0 - y0)


def write_labels(path: Path, geometries, crs="EPSG:4326", layer=None, **fields) -> Path:
    frame = gpd.GeoDataFrame(fields, geometry=list(geometries), crs="EPSG:32615")
    frame = frame.to_crs(crs) if crs else frame.set_crs(None, allow_override=True)
    frame.to_file(path, layer=layer)
    return path


@pytest.fixture
def tiles(tmp_path):
    """Two 256 m tiles side by side (EPSG:32615, 1 m) and footprints in EPSG:4326."""
    a = write_tile(tmp_path / "a.tif", X0, Y0)
    b = write_tile(tmp_path / "b.tif", X0 + 256, Y0)
    # torchgeo draws scenes where the imagery meets the labels' extent: two sheds in the
    # far corners make that extent the two tiles
    houses = [building(10, 20, 50, 60), building(100, 100, 140, 120), building(300, 30, 340, 90),
              building(0, 0, 2, 2), building(510, 254, 512, 256)]
    labels = write_labels(tmp_path / "houses.gpkg", houses, kind=["building"] * 5, code=[1] * 5)
    return tmp_path, a, b, labels


def test_polygons_in_another_crs_land_on_the_imagery_grid(tiles):
    _, a, _, labels = tiles
    with rasterio.open(a) as src:
        ids = truth_on_grid(labels, INRIA, src.crs, src.transform, (src.height, src.width))
    expected = np.zeros((256, 256), np.uint8)
    expected[20:60, 10:50] = 1
    expected[100:120, 100:140] = 1
    expected[0:2, 0:2] = 1
    # reprojected twice (UTM -> degrees -> UTM), the corners move by far less than a pixel
    assert (ids != expected).sum() == 0


def test_a_field_per_class_names_or_numbers_classes(tmp_path):
    write_tile(tmp_path / "a.tif", X0, Y0)
    labels = write_labels(tmp_path / "lc.gpkg", [building(0, 0, 100, 256), building(100, 0, 256, 256)],
                          cover=["forest", "5"])
    with rasterio.open(tmp_path / "a.tif") as src:
        ids = truth_on_grid(labels, DEEPGLOBE, src.crs, src.transform, (256, 256), field_name="cover")
    assert (ids[:, :100] == DEEPGLOBE.by_name("forest").id).all() and (ids[:, 100:] == 5).all()


def test_scenes_become_glnet_samples_with_labels_where_the_polygons_are(tiles):
    folder, a, b, labels = tiles
    scenes = GeoScenes(GeoInputs(images=(str(folder / "*.tif"),), labels=labels, scene_size=128))
    assert scenes.crs.to_epsg() == 32615 and scenes.res == (1.0, 1.0) and scenes.gsd == 1.0
    spec = SampleSpec(global_size=64, patch_size=64, with_patches=True, with_scene_label=True)
    dataset, sampler = scenes.loader_parts(True, spec)
    query = next(q for q in sampler if q[0].stop <= X0 + 256)  # a scene of tile a
    sample = dataset[query]
    assert sample["image"].shape == (3, 64, 64) and sample["label"].shape == (16, 16)
    assert sample["patches"].shape[1:] == (3, 64, 64) and sample["scene_size"].tolist() == [128, 128]
    with rasterio.open(a) as src:
        truth = truth_on_grid(labels, INRIA, src.crs, src.transform, (256, 256))
        row, col = src.index(query[0].start + 0.5, query[1].stop - 0.5)
    full = truth[row : row + 128, col : col + 128]
    assert np.array_equal(sample["scene_label"].numpy(), nearest_resize(full, 32, 32))
    assert np.array_equal(sample["patch_labels"][0].numpy(), nearest_resize(full[:64, :64], 16, 16))


def test_validation_area_never_overlaps_training(tiles):
    folder, a, b, labels = tiles
    for rule in ({"val_images": ("b.tif",)}, {"val_bbox": (X0 + 128, Y0 - 256, X0 + 512, Y0)}, {"val_fraction": 0.5}):
        scenes = GeoScenes(GeoInputs(images=(str(folder / "*.tif"),), labels=labels, scene_size=64, **rule))
        split = scenes.split
        area = shapely.union_all([shapely.box(*b) for b in split.val_area])
        train = [shapely.box(*map(float, t.split(": ")[1].split(","))) for t in split.train]
        assert train and split.val, rule
        assert all(t.intersection(area).area == 0 for t in train), rule
        for query in scenes.val_queries():
            box = shapely.box(query[0].start, query[1].start, query[0].stop, query[1].stop)
            assert area.buffer(1e-6).contains(box), rule
        for query in list(scenes.train_sampler())[:20]:
            box = shapely.box(query[0].start, query[1].start, query[0].stop, query[1].stop)
            assert box.intersection(area).area == pytest.approx(0, abs=1e-6), rule
    assert split.to_dict()["kind"] == "geo" and "east" in split.rule
    with pytest.raises(InputError, match="holds no whole 256 px scene"):
        GeoScenes(GeoInputs(images=(str(folder / "*.tif"),), labels=labels, scene_size=256, val_fraction=0.1))


def test_validation_images_the_labels_miss_are_said_so_not_blamed_on_the_scene_size(tiles):
    folder, a, b, labels = tiles
    far = write_tile(folder / "far.tif", X0 + 5000, Y0)  # no label reaches it
    with pytest.raises(InputError, match=r"the validation images far.tif hold no labels \(.*houses.gpkg does not "
                                         r"overlap them\): give val_images that the labels cover"):
        GeoScenes(GeoInputs(images=(str(folder / "*.tif"),), labels=labels, scene_size=64, val_images=("far.tif",))).split


def test_a_label_raster_in_another_crs_and_resolution_works_the_same(tiles):
    folder, a, _, _ = tiles
    # the building mask at 2 m in EPSG:4326, Inria's 0/255 encoding
    with rasterio.open(a) as src:
        from rasterio.warp import calculate_default_transform, reproject

        transform, width, height = calculate_default_transform(src.crs, "EPSG:4326", 256, 256, *src.bounds)
        mask = np.zeros((256, 256), np.uint8)
        mask[20:60, 10:50] = 255
        out = np.zeros((height, width), np.uint8)
        reproject(mask, out, src_transform=src.transform, src_crs=src.crs, dst_transform=transform, dst_crs="EPSG:4326")
    with rasterio.open(folder / "gt.tif", "w", driver="GTiff", width=width, height=height, count=1, dtype="uint8",
                       crs="EPSG:4326", transform=transform) as dst:
        dst.write(out[None])
    scenes = GeoScenes(GeoInputs(images=(str(a),), labels=folder / "gt.tif", scene_size=128))
    with rasterio.open(a) as src:
        ids = truth_on_grid(folder / "gt.tif", INRIA, src.crs, src.transform, (256, 256))
    assert ids.max() == 1 and abs(int((ids == 1).sum()) - 40 * 40) < 200 and scenes.labels.is_raster


def test_labels_are_nodata_where_the_image_has_no_data(tmp_path):
    """The left half of the tile is nodata 0 (a collar): labels there are nodata, not the polygons'."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(1, 255, (3, 256, 256), dtype=np.uint8)
    pixels[:, :, :128] = 0
    write_geotiff(tmp_path / "a.tif", pixels, crs="EPSG:32615", origin=(X0, Y0), res=1.0, nodata=0)
    labels = write_labels(tmp_path / "all.gpkg", [building(0, 0, 256, 256)])  # every pixel a building
    scenes = GeoScenes(GeoInputs(images=(str(tmp_path / "a.tif"),), labels=labels, scene_size=256))
    spec = SampleSpec(global_size=64, patch_size=64, with_patches=True, with_scene_label=True)
    dataset, _ = scenes.loader_parts(False, spec)
    slot = scenes.images.index.index[0]  # the file's time slot
    query = (slice(X0, X0 + 256), slice(Y0 - 256, Y0), slice(slot.left, slot.right))
    sample = dataset[query]
    label, scene = sample["label"].numpy(), sample["scene_label"].numpy()  # 16 x 16, 64 x 64
    assert (label[:, :8] == NODATA_ID).all() and (label[:, 8:] == 1).all()
    assert (scene[:, :32] == NODATA_ID).all() and (scene[:, 32:] == 1).all()
    assert (sample["patch_labels"][0].numpy() == NODATA_ID).all()  # the top-left patch is all collar


def test_an_image_too_small_for_a_scene_is_left_out_with_a_warning(tiles, caplog):
    folder, a, _, labels = tiles
    small = write_tile(folder / "small.tif", X0 + 40, Y0 - 40, size=50)
    with caplog.at_level(logging.WARNING, logger="glgeo.geodata"):
        scenes = GeoScenes(GeoInputs(images=(str(a), str(small)), labels=labels, scene_size=128))
    assert {entry.split(":")[0] for entry in scenes.split.train} == {"a.tif"}
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1, warned
    assert str(small) in warned[0] and "50 x 50 px" in warned[0] and "128 x 128 px scene" in warned[0]
    assert "lower scene_size" in warned[0]


def test_a_label_raster_is_scanned_whole_before_training(tmp_path, caplog):
    write_tile(tmp_path / "a.tif", X0, Y0)
    gt = np.zeros((256, 256), np.uint8)
    gt[20:60, 10:50] = 255
    gt[200, 201] = 128  # one pixel: no decimated read would see it
    write_geotiff(tmp_path / "gt.tif", gt, crs="EPSG:32615", origin=(X0, Y0), res=1.0)
    with pytest.raises(DatasetError, match=r"gt.tif: value 128 in 1 px is not a class of scheme 'inria'"):
        GeoScenes(GeoInputs(images=(str(tmp_path / "a.tif"),), labels=tmp_path / "gt.tif", scene_size=64))
    gt[200, 201] = 0
    write_geotiff(tmp_path / "gt.tif", gt, crs="EPSG:32615", origin=(X0, Y0), res=1.0, nodata=0)
    with caplog.at_level(logging.WARNING, logger="glgeo.geodata"):
        GeoScenes(GeoInputs(images=(str(tmp_path / "a.tif"),), labels=tmp_path / "gt.tif", scene_size=64))
    assert "declares nodata 0, the mask value of class 0 'background'" in caplog.text
    assert f"{256 * 256 - 40 * 40:,} px" in caplog.text and str(tmp_path / "gt.tif") in caplog.text


def test_labels_that_miss_an_image_name_it_and_say_what_to_do(tiles, tmp_path):
    _, a, _, labels = tiles
    far = write_tile(tmp_path / "far.tif", X0 + 50_000, Y0)
    with rasterio.open(far) as src:
        with pytest.raises(DatasetError) as refused:
            truth_on_grid(labels, INRIA, src.crs, src.transform, (256, 256), image=far)
    message = str(refused.value)
    assert f"do not overlap image {far}" in message and "score only images the labels cover" in message


# ------------------------------------------------------------------------- errors


def test_no_overlap_between_imagery_and_labels_is_one_clear_error(tmp_path):
    write_tile(tmp_path / "a.tif", X0, Y0)
    far = write_labels(tmp_path / "far.gpkg", [building(5000, 5000, 5050, 5050)])
    with pytest.raises(DatasetError, match="do not overlap the imagery") as refused:
        GeoScenes(GeoInputs(images=(str(tmp_path / "a.tif"),), labels=far, scene_size=64))
    assert "np.float64" not in str(refused.value)  # the extents as plain numbers


def test_a_missing_label_field_lists_the_fields(tiles):
    folder, a, _, labels = tiles
    with pytest.raises(DatasetError, match=r"no field 'class'; fields: kind, code"):
        GeoScenes(GeoInputs(images=(str(a),), labels=labels, label_field="class", scene_size=64))


def test_label_values_outside_the_scheme_are_named(tmp_path):
    write_tile(tmp_path / "a.tif", X0, Y0)
    labels = write_labels(tmp_path / "x.gpkg", [building(0, 0, 10, 10), building(20, 20, 30, 30)], kind=["building", "church"])
    with pytest.raises(DatasetError, match=r"holds 'church', not classes of scheme 'inria'"):
        GeoScenes(GeoInputs(images=(str(tmp_path / "a.tif"),), labels=labels, label_field="kind", scene_size=64))
    numbers = write_labels(tmp_path / "n.gpkg", [building(0, 0, 10, 10)], code=[7])
    with pytest.raises(DatasetError, match=r"holds 7, not classes"):
        GeoScenes(GeoInputs(images=(str(tmp_path / "a.tif"),), labels=numbers, label_field="code", scene_size=64))


def test_labels_without_a_crs_are_refused(tmp_path):
    write_tile(tmp_path / "a.tif", X0, Y0)
    labels = write_labels(tmp_path / "nocrs.gpkg", [building(0, 0, 10, 10)], crs=None)
    with pytest.raises(DatasetError, match="have no CRS"):
        GeoScenes(GeoInputs(images=(str(tmp_path / "a.tif"),), labels=labels, scene_size=64))


def test_imagery_with_other_band_counts_is_refused(tmp_path):
    labels = write_labels(tmp_path / "h.gpkg", [building(0, 0, 10, 10)])
    write_tile(tmp_path / "gray.tif", X0, Y0, count=1)
    with pytest.raises(DatasetError, match=r"gray.tif: it has 1 band \(alpha not counted\); this model needs 3 \(RGB\):"
                                           r" pass bands=\(1, 1, 1\)"):
        GeoScenes(GeoInputs(images=(str(tmp_path / "gray.tif"),), labels=labels, scene_size=64))
    # two bands: not bands=(1, 2, 3), which then said band 3 is not there (as glgeo segment advises)
    write_tile(tmp_path / "two.tif", X0, Y0, count=2)
    with pytest.raises(DatasetError, match=r"two.tif: it has 2 bands \(alpha not counted\); this model needs 3 \(RGB\),"
                                           r" so it cannot be read as RGB: .* or repeat a band, e.g. bands=\(1, 1, 2\)"):
        GeoScenes(GeoInputs(images=(str(tmp_path / "two.tif"),), labels=labels, scene_size=64))
    with pytest.raises(DatasetError, match=r"has 1 band\(s\) but bands \(1, 2, 3\)"):
        GeoScenes(GeoInputs(images=(str(tmp_path / "gray.tif"),), labels=labels, scene_size=64), bands=(1, 2, 3))
    write_tile(tmp_path / "rgb.tif", X0, Y0, count=3)
    write_tile(tmp_path / "rgbn.tif", X0 + 256, Y0, count=4)
    with pytest.raises(DatasetError, match="different band counts"):
        GeoScenes(GeoInputs(images=(str(tmp_path / "rgb*.tif"),), labels=labels, scene_size=64))


def test_scene_larger_than_the_area_and_bad_rules_are_input_errors(tiles):
    folder, a, _, labels = tiles
    with pytest.raises(InputError, match="no training area holds a 512 px scene"):
        GeoScenes(GeoInputs(images=(str(a),), labels=labels, scene_size=512))
    with pytest.raises(InputError, match="match none of the images"):
        GeoScenes(GeoInputs(images=(str(a),), labels=labels, scene_size=64, val_images=("zz.tif",)))
    with pytest.raises(InputError, match="one validation rule"):
        GeoInputs(images=(str(a),), labels=labels, val_fraction=0.2, val_images=("a.tif",))


def test_cli_reports_input_errors_as_one_line(tiles, tmp_path):
    folder, a, _, labels = tiles
    result = CliRunner().invoke(cli, ["-q", "train", "--images", str(a), "--labels", str(labels), "--label-field", "nope",
                                      "--out", str(tmp_path / "run")])
    assert result.exit_code == 1 and "no field 'nope'" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(cli, ["-q", "train", "--images", str(a), "--dataset", "inria", "--root", str(folder),
                                      "--labels", str(labels), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and "not both" in result.output


def test_every_val_images_entry_must_match_an_image(tiles, tmp_path):
    """A --val-images entry that matched nothing was ignored without a word as long as
    another one matched: the image it meant trained instead of validating."""
    folder, a, b, labels = tiles
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["-q", "train", "--images", str(folder / "*.tif"), "--labels", str(labels),
                                      "--scene-size", "64", "--val-images", "b.tif", "--val-images", "nosuch.tif",
                                      "--val-images", "c*.tif", "--out", str(out),
                                      # tiny, should it train (it did)
                                      "--mode", "global", "--backbone", "resnet18", "--pyramid-channels", "8",
                                      "--segmentation-channels", "8", "--global-size", "32", "--batch-size", "1",
                                      "--loader-workers", "0", "--epochs", "1", "--limit-train-batches", "1",
                                      "--limit-val-batches", "1", "--accelerator", "cpu", "--precision", "fp32"])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert result.output.strip() == (
        "Error: --val-images entries that match none of the images: nosuch.tif, c*.tif (the images: a.tif, b.tif);"
        " give each as an image's file name, path or glob"
    )
    assert not out.exists()
    scenes = GeoScenes(GeoInputs(images=(str(folder / "*.tif"),), labels=labels, scene_size=64,
                                 val_images=("b.tif", str(b), "b*")))
    assert scenes.split.rule == "images b.tif"


def test_bad_labels_leave_no_run_folder_behind(tiles, tmp_path):
    """Labels refused once the imagery is read (no overlap, a value outside the scheme, no
    features, not readable) left the --out folder (and its parents) made empty; a folder
    that was there before stays, with what it held."""
    _, a, _, _ = tiles
    far = write_labels(tmp_path / "far.gpkg", [building(5000, 5000, 5040, 5040)])
    forest = write_labels(tmp_path / "forest.gpkg", [building(10, 20, 50, 60)], cover=["forest"])
    empty = write_labels(tmp_path / "empty.gpkg", [building(10, 20, 50, 60)]).with_name("none.geojson")
    empty.write_text('{"type": "FeatureCollection", "features": []}')
    garbage = tmp_path / "garbage.geojson"
    garbage.write_text("not json")
    cases = [(far, [], "do not overlap"), (forest, ["--label-field", "cover"], "'forest', not classes of scheme"),
             (empty, [], "hold no features"), (garbage, [], "cannot read labels")]
    for labels, extra, message in cases:
        out = tmp_path / "new" / "run"
        result = CliRunner().invoke(cli, ["-q", "train", "--images", str(a), "--labels", str(labels), *extra,
                                          "--scene-size", "64", "--out", str(out)])
        assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1, result.output
        assert not (tmp_path / "new").exists(), labels
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("kept")
    result = CliRunner().invoke(cli, ["-q", "train", "--images", str(a), "--labels", str(far), "--scene-size", "64",
                                      "--out", str(mine)])
    assert result.exit_code == 1 and [p.name for p in mine.iterdir()] == ["notes.txt"]


# ------------------------------------------------------------------------- Joplin


@pytest.fixture(scope="module")
def joplin(sample_file) -> Path:
    """The Joplin sample folder (tiles and footprints)."""
    sample_file("joplin", "footprints.geojson")
    return sample_file("joplin")


@pytest.fixture(scope="module")
def joplin_run(joplin, tmp_path_factory):
    out = tmp_path_factory.mktemp("joplin") / "run"
    result = CliRunner().invoke(cli, [
        "-q", "train", "--images", str(joplin / "*.tif"), "--labels", str(joplin / "footprints.geojson"),
        "--val-images", HELD_OUT, "--scale", "0.25", "--scene-size", "128", "--out", str(out),
        "--mode", "g2l", "--backbone", "resnet18", "--pyramid-channels", "32", "--segmentation-channels", "16",
        "--global-size", "64", "--patch-size", "128", "--batch-size", "2", "--sub-batch", "2", "--loader-workers", "0",
        "--limit-train-batches", "2", "--limit-val-batches", "2", "--epochs", "1", "--lr", "1e-3", "--precision", "fp32",
    ], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return out, result.output


def test_joplin_trains_on_three_crs_inputs_with_a_held_out_tile(joplin, joplin_run):
    from glgeo.models import load_checkpoint

    out, output = joplin_run
    assert f"validated on 4 scene(s) of images {HELD_OUT}" in output
    assert "(EPSG:26915, 2.4 m per pixel)" in output  # the unit said (it printed "2.4 per pixel")
    ck = load_checkpoint(out / "model.pt")
    training = ck.metadata["training"]
    assert training["dataset"] == "geo" and training["stage"] == 2 and ck.mode == "g2l"
    assert ck.gsd == pytest.approx(2.4) and ck.scheme.name == "inria"
    split = training["split"]
    assert split == json.loads((out / "split.json").read_text())
    assert split["crs"] == "EPSG:26915" and split["res"] == [2.4, 2.4] and split["rule"] == f"images {HELD_OUT}"
    # the EPSG:4326 post-tornado tile trains, warped; the held-out tile never does
    trained = {entry.split(":")[0] for entry in split["train"]}
    assert trained == {"post_tile_31500-5137.tif", "tile_337-10160.tif", "tile_337-9136.tif"}
    assert {entry.split(":")[0] for entry in split["val"]} == {HELD_OUT}
    with rasterio.open(joplin / HELD_OUT) as src:
        held = shapely.box(*src.bounds)
    for entry in split["train"]:
        assert shapely.box(*map(float, entry.split(": ")[1].split(","))).intersection(held).area == 0


def test_joplin_checkpoint_segments_and_evaluates_the_held_out_tile(joplin, joplin_run, tmp_path, monkeypatch):
    out, _ = joplin_run
    pred = tmp_path / "buildings.tif"
    result = CliRunner().invoke(cli, ["-q", "segment", str(joplin / HELD_OUT), "--out", str(pred), "--model",
                                      str(out / "model.pt"), "--device", "cpu", "--precision", "fp32"])
    assert result.exit_code == 0, result.output
    with rasterio.open(pred) as p, rasterio.open(joplin / HELD_OUT) as src:
        assert p.crs == src.crs and p.transform.almost_equals(src.transform) and (p.width, p.height) == (1024, 1024)
        assert set(np.unique(p.read(1)).tolist()) <= {0, 1}
    report_path = tmp_path / "report.json"
    result = CliRunner().invoke(cli, ["-q", "evaluate", "--model", str(out / "model.pt"), "--images", str(joplin / HELD_OUT),
                                      "--labels", str(joplin / "footprints.geojson"), "--device", "cpu",
                                      "--precision", "fp32", "-o", str(report_path)])
    assert result.exit_code == 0, result.output
    report = json.loads(report_path.read_text())
    assert [i["name"] for i in report["images"]] == [Path(HELD_OUT).stem] and report["pixels"] == 1024 * 1024
    # the footprints cover about 7 % of the tile: a score of the real labels, not of an empty truth
    building_share = np.array(report["confusion_matrix"])[1].sum() / report["pixels"]
    assert 0.03 < building_share < 0.15 and 0.0 <= report["building_iou"] <= 1.0
    # with test-time augmentation: the same truth, scored against the averaged prediction
    import glgeo.segmentation

    asked = []
    plain_segment = glgeo.segmentation.segment

    def recording(*args, **kwargs):
        asked.append(kwargs.get("tta"))
        return plain_segment(*args, **kwargs)

    monkeypatch.setattr(glgeo.segmentation, "segment", recording)
    tta_path = tmp_path / "report-tta.json"
    result = CliRunner().invoke(cli, ["-q", "evaluate", "--model", str(out / "model.pt"), "--images", str(joplin / HELD_OUT),
                                      "--labels", str(joplin / "footprints.geojson"), "--device", "cpu",
                                      "--precision", "fp32", "--tta", "-o", str(tta_path)])
    assert result.exit_code == 0, result.output
    assert asked == [True]  # --tta reached segment
    tta = json.loads(tta_path.read_text())
    assert np.array_equal(np.array(tta["confusion_matrix"]).sum(axis=1), np.array(report["confusion_matrix"]).sum(axis=1))


# ------------------------------------------------------------------------- one vocabulary


def test_training_takes_the_precision_names_segment_takes():
    from glgeo.training import LIGHTNING_PRECISION, TrainSettings, training_precision

    assert training_precision("fp32", "cpu") == "fp32" and LIGHTNING_PRECISION["bf16"] == "bf16-mixed"
    with pytest.raises(InputError, match="fp16 needs a CUDA device"):
        training_precision("fp16", "cpu")
    with pytest.raises(InputError, match="unknown precision '32-true'; use auto, fp32, bf16 or fp16"):
        TrainSettings(out=Path("run"), precision="32-true")


def test_labels_with_several_layers_read_the_first_and_say_which(tiles, caplog):
    """A GeoPackage with two layers: a glgeo warning names them and the one read (it was an
    INFO line beside pyogrio's raw UserWarning with its source line)."""
    import logging
    import warnings

    import pyogrio

    _, a, _, labels = tiles
    frame = pyogrio.read_dataframe(labels)
    pyogrio.write_dataframe(frame.iloc[:1], labels, layer="drafts", append=False)
    with rasterio.open(a) as src, warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # pyogrio's "More than one layer found" is one
        with caplog.at_level(logging.WARNING, logger="glgeo"):
            ids = truth_on_grid(labels, INRIA, src.crs, src.transform, (src.height, src.width))
    layers = [name for name, _ in pyogrio.list_layers(labels)]
    assert len(layers) == 2 and ids.sum() > 0
    assert f"labels {labels} hold 2 layers ({', '.join(layers)}); reading the first, {layers[0]!r}" in caplog.text


def test_imagery_in_degrees_is_trained_on_with_square_pixels_on_the_ground(tiles, caplog):
    """Trained in EPSG:4326 at 37 N, a degree is 1.25 times longer north-south than east-west
    on the ground: the working grid's pixels are made square there, as ``glgeo segment``
    reads such scenes; a resolution asked for in degrees that is not square is warned about."""
    from affine import Affine

    from glgeo.resolution import ground_pixel_sides

    folder, _, _, labels = tiles
    inputs = GeoInputs(images=(str(folder / "*.tif"),), labels=labels, scene_size=64, crs="EPSG:4326")
    with caplog.at_level(logging.INFO, logger="glgeo.geodata"):
        scenes = GeoScenes(inputs)
    left, bottom, right, top = scenes.dataset.index.total_bounds
    across, down = ground_pixel_sides(scenes.crs, Affine(scenes.res[0], 0, left, 0, -scenes.res[1], (top + bottom) / 2))
    assert across == pytest.approx(down, rel=2e-3) and scenes.gsd == pytest.approx(down, rel=2e-3)
    assert 0.9 < down < 1.5  # about the tiles' 1 m
    assert "training reads them at" in caplog.text and "square" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="glgeo.geodata"):
        asked = GeoScenes(GeoInputs(images=(str(folder / "*.tif"),), labels=labels, scene_size=64, crs="EPSG:4326",
                                    res=1e-5))
    assert asked.res == (1e-5, 1e-5)
    assert "gives pixels of 0.889 x 1.11 m on the ground: the model learns the ground squeezed 1.25 times" in caplog.text


def test_a_float_label_raster_with_nan_nodata_trains_and_scores(tiles):
    """NaN (declared nodata or not) in a float32 label raster passed the upfront scan, then
    torchgeo's cast to long made it -2**63 and a training run died mid-epoch, evaluate at
    once ('value -9223372036854775808 is not a class'): NaN is nodata, and float labels
    are read with nearest resampling as integer ones."""
    from glgeo.geodata import _GeoScene

    folder, a, _, _ = tiles
    with rasterio.open(a) as src:
        crs, transform = src.crs, src.transform
    mask = np.zeros((256, 256), np.float32)
    mask[20:60, 10:50] = 255.0
    mask[100:150, 100:200] = np.nan
    for name, nodata in (("nan_nd.tif", float("nan")), ("nan.tif", None)):
        labels = write_geotiff(folder / name, mask, crs=crs, transform=transform, nodata=nodata)
        ids = truth_on_grid(labels, INRIA, crs, transform, (256, 256))
        assert (ids[100:150, 100:200] == NODATA_ID).all() and int((ids == 1).sum()) == 40 * 40
        scenes = GeoScenes(GeoInputs(images=(str(a),), labels=labels, scene_size=64))
        left, bottom, right, top = rasterio.transform.array_bounds(256, 256, transform)
        index = scenes.images.index.index[0]
        scene = _GeoScene(scenes, (slice(left, right), slice(bottom, top), slice(index.left, index.right)))
        got = scene._ids((256, 256))
        assert (got[100:150, 100:200] == NODATA_ID).all() and int((got == 1).sum()) == 40 * 40


def test_points_and_lines_in_the_labels_are_left_out_with_a_warning(tiles, caplog):
    """A point and a line among the polygons were burnt as pixels of their class without a
    word (335 'building' pixels on the Joplin tile)."""
    from glgeo.geodata import _GeoScene

    folder, a, _, _ = tiles
    with rasterio.open(a) as src:
        crs, transform = src.crs, src.transform
    mixed = folder / "mixed.gpkg"
    # a box, a shed in the far corner (so the labels' extent is the tile's), a point and a line
    gpd.GeoDataFrame(geometry=[shapely.box(X0 + 10, Y0 - 50, X0 + 50, Y0 - 10), building(254, 254, 256, 256),
                               shapely.Point(X0 + 100, Y0 - 100),
                               shapely.LineString([(X0 + 120, Y0 - 20), (X0 + 200, Y0 - 100)])], crs=crs).to_file(mixed)
    with caplog.at_level(logging.WARNING, logger="glgeo.geodata"):
        scenes = GeoScenes(GeoInputs(images=(str(a),), labels=mixed, scene_size=64))
    assert "2 features that are not polygons (LineString, Point) are left out" in caplog.text
    left, bottom, right, top = rasterio.transform.array_bounds(256, 256, transform)
    index = scenes.images.index.index[0]
    ids = _GeoScene(scenes, (slice(left, right), slice(bottom, top), slice(index.left, index.right)))._ids((256, 256))
    assert int((ids == 1).sum()) == 40 * 40 + 2 * 2  # the box and the shed only
    points = folder / "points.gpkg"
    gpd.GeoDataFrame(geometry=[shapely.Point(X0 + 20, Y0 - 20), shapely.Point(X0 + 200, Y0 - 200)], crs=crs).to_file(points)
    from glgeo.geodata import GeoLabels

    with pytest.raises(DatasetError, match=r"hold no polygon \(Point\); give polygons"):
        GeoLabels(points, INRIA, crs, (1.0, 1.0))


def test_scoring_against_a_label_raster_whose_nodata_is_a_class_says_so(tiles, caplog):
    """evaluate --images --labels left out a whole class declared as nodata without the
    warning training and --pred/--truth give."""
    folder, a, _, _ = tiles
    with rasterio.open(a) as src:
        crs, transform = src.crs, src.transform
    mask = np.zeros((256, 256), np.uint8)
    mask[20:60, 10:50] = 255
    labels = write_geotiff(folder / "nd0.tif", mask, crs=crs, transform=transform, nodata=0)
    with caplog.at_level(logging.WARNING, logger="glgeo.geodata"):
        ids = truth_on_grid(labels, INRIA, crs, transform, (256, 256))
    assert int((ids == NODATA_ID).sum()) == 256 * 256 - 40 * 40
    assert (f"label raster {labels} declares nodata 0, the mask value of class 0 'background' of scheme 'inria': its "
            f"{256 * 256 - 40 * 40:,} px of that value are left out of the scores") in caplog.text


def test_the_imagerys_red_green_blue_labels_choose_the_bands_read_as_segment_reads_them(tmp_path, caplog):
    """Training read bands 1, 2, 3 of BGR-labelled tiles as red, green, blue while glgeo
    segment reads them as labelled: the model learned blue as red. Now both follow the
    labels; torchgeo reads one band list, so tiles labelled differently are refused."""
    from rasterio.enums import ColorInterp as C

    # sheds in the far corners: the labels' extent is the two tiles (see the tiles fixture)
    labels = write_labels(tmp_path / "h.gpkg", [building(0, 0, 2, 2), building(510, 254, 512, 256)])
    bgr = [write_tile(tmp_path / "a.tif", X0, Y0), write_tile(tmp_path / "b.tif", X0 + 256, Y0)]
    for path in bgr:
        with rasterio.open(path, "r+") as dst:
            dst.colorinterp = [C.blue, C.green, C.red]
    inputs = GeoInputs(images=tuple(map(str, bgr)), labels=labels, scene_size=64)
    with caplog.at_level(logging.WARNING, logger="glgeo.geodata"):
        assert GeoScenes(inputs).bands == (3, 2, 1)
    assert "the images label bands 3,2,1 red, green and blue (a.tif, of 3 bands): training reads those" in caplog.text
    assert GeoScenes(inputs, bands=(1, 2, 3)).bands == (1, 2, 3)
    rgb = write_tile(tmp_path / "c.tif", X0, Y0 - 256)
    with rasterio.open(rgb, "r+") as dst:
        dst.colorinterp = [C.red, C.green, C.blue]
    mixed = GeoInputs(images=(str(bgr[0]), str(rgb)), labels=labels, scene_size=64)
    with pytest.raises(DatasetError, match=r"the images label different bands red, green and blue \(a.tif: 3,2,1; "
                                           r"c.tif: 1,2,3\); torchgeo reads one band list"):
        GeoScenes(mixed)
    assert GeoScenes(mixed, bands=(1, 2, 3)).bands == (1, 2, 3)


def test_a_resume_with_other_labels_is_refused_and_a_finished_stage_says_what_it_skips(tiles, tmp_path, caplog):
    """A resume with another labels file trained and chose its checkpoint across epochs of
    two label sets, recording only the last; a resume of a finished stage with more epochs
    did nothing without a word."""
    folder, a, b, labels = tiles
    out = tmp_path / "run"
    base = ["-q", "train", "--images", str(a), "--images", str(b), "--labels", str(labels), "--scene-size", "64", "--out", str(out),
            "--mode", "global", "--backbone", "resnet18", "--pyramid-channels", "32", "--segmentation-channels", "16",
            "--global-size", "64", "--batch-size", "2", "--loader-workers", "0", "--limit-train-batches", "1",
            "--limit-val-batches", "1", "--lr", "1e-3", "--precision", "fp32"]
    result = CliRunner().invoke(cli, [*base, "--epochs", "1"])
    assert result.exit_code == 0, result.output
    caplog.clear()
    result = CliRunner().invoke(cli, [*base, "--epochs", "3", "--resume"])
    assert result.exit_code == 0, result.output
    assert (f"stage 1 of the run in {out} already finished its 1 epochs: skipped, so --epochs 3 does not apply to it; "
            "to train it further, start a new run from it (--init") in caplog.text
    (out / "stage1" / "done.json").unlink()  # as if interrupted after its epoch
    other = write_labels(tmp_path / "other.gpkg", [building(10, 20, 50, 60), building(0, 0, 2, 2),
                                                   building(510, 254, 512, 256)])
    swapped = [other if part == str(labels) else part for part in base]
    result = CliRunner().invoke(cli, [*swapped, "--epochs", "2", "--resume"])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert f"was trained with other settings: --labels {other.resolve()} (the run's: {labels.resolve()})" in result.output


def test_scheme_classes_no_polygon_holds_are_said(tmp_path, caplog):
    """Labels of one class trained a seven-class scheme without a word about the five
    classes they never show."""
    write_tile(tmp_path / "a.tif", X0, Y0)
    labels = write_labels(tmp_path / "urban.gpkg", [building(0, 0, 100, 256)], cover=["urban"])
    with rasterio.open(tmp_path / "a.tif") as src, caplog.at_level(logging.WARNING, logger="glgeo"):
        truth_on_grid(labels, DEEPGLOBE, src.crs, src.transform, (256, 256), field_name="cover")
    assert ("no polygon is agriculture, rangeland, forest, water, barren (5 of the 'deepglobe' scheme's 7 classes)"
            in caplog.text and "pixels outside every polygon are class 0 (unknown)" in caplog.text)
    caplog.clear()
    both = write_labels(tmp_path / "both.gpkg", [building(0, 0, 100, 256), building(100, 0, 256, 256)],
                        kind=["building", "background"])
    with rasterio.open(tmp_path / "a.tif") as src, caplog.at_level(logging.WARNING, logger="glgeo"):
        truth_on_grid(both, INRIA, src.crs, src.transform, (256, 256), field_name="kind")
    assert "no polygon is" not in caplog.text
