"""Tiles of one area as one scene (``glgeo.mosaic``, ``glgeo segment --mosaic``)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import rasterio
from affine import Affine
from click.testing import CliRunner
from rasterio.enums import ColorInterp

from glgeo.cli.main import cli
from glgeo.errors import InputError
from glgeo.mosaic import cut_tile_maps, tile_layout, write_tiles_vrt
from glgeo.schemes import INRIA

from fixtures.checkpoints import save_tiny_checkpoint
from fixtures.http import http_folder  # noqa: F401 - a fixture
from fixtures.rasters import write_geotiff

ORIGIN = (500000.0, 4500000.0)


def _tile(path, row: int, col: int, size: int = 40, seed: int = 0, **kwargs):
    """A ``size`` px RGB tile of 0.5 m pixels, ``row`` and ``col`` pixels from the origin."""
    data = np.random.default_rng(seed).integers(1, 256, (3, size, size), dtype=np.uint8)
    transform = Affine(0.5, 0, ORIGIN[0] + 0.5 * col, 0, -0.5, ORIGIN[1] - 0.5 * row)
    return write_geotiff(path, data, transform=transform, **kwargs), data


def test_tiles_on_one_grid_make_one_scene_with_every_pixel_and_nodata_where_none_has_data(tmp_path):
    """Three of a 2 x 2 block, a fourth overlapping two of them with a nodata collar: each
    tile's pixels are where they lie, a later tile wins where both have data, and a collar
    (nodata value or mask) leaves the pixels beneath; where no tile has data is nodata."""
    a, da = _tile(tmp_path / "a.tif", 0, 0, seed=1)
    b, db = _tile(tmp_path / "b.tif", 0, 40, seed=2)
    c, dc = _tile(tmp_path / "c.tif", 40, 0, seed=3)
    collar = np.ones((40, 40), bool)
    collar[:, :10] = False  # its first 10 columns (over a) hold no data
    d, dd = _tile(tmp_path / "d.tif", 20, 20, seed=4, mask=collar)
    e, de = _tile(tmp_path / "e.tif", 60, 60, size=20, seed=5, nodata=0)
    de[:, :5, :5] = 0
    with rasterio.open(e, "r+") as dst:
        dst.write(de)
    layout = write_tiles_vrt([a, b, c, d, e], tmp_path / "area.vrt")
    assert (layout.width, layout.height) == (80, 80)
    assert layout.offsets == ((0, 0), (40, 0), (0, 40), (20, 20), (60, 60))
    with rasterio.open(tmp_path / "area.vrt") as src:
        pixels, mask = src.read(), src.read_masks(1) > 0
        assert src.crs.to_epsg() == 32631 and src.transform == Affine(0.5, 0, ORIGIN[0], 0, -0.5, ORIGIN[1])
        assert [i.name for i in src.colorinterp] == ["red", "green", "blue"]
    expected = np.zeros((3, 80, 80), np.uint8)
    valid = np.zeros((80, 80), bool)
    for data, (col, row), ok in ((da, (0, 0), None), (db, (40, 0), None), (dc, (0, 40), None), (dd, (20, 20), collar),
                                 (de, (60, 60), de[0] != 0)):
        size = data.shape[1]
        ok = np.ones((size, size), bool) if ok is None else ok
        view = expected[:, row:row + size, col:col + size]
        view[:, ok] = data[:, ok]
        valid[row:row + size, col:col + size] |= ok
    assert np.array_equal(mask, valid)
    assert np.array_equal(pixels[:, valid], expected[:, valid])
    assert mask[20:60, 20:30].all() and np.array_equal(pixels[:, 20:60, 20:30], expected[:, 20:60, 20:30])
    assert not expected[:, 20:40, 20:30].any() or np.array_equal(pixels[:, 20:40, 20:30], da[:, 20:40, 20:30])
    assert not mask[60:65, 60:65].any() and not mask[45:60, 70:80].any()  # e's nodata corner; no tile at all
    assert layout.coverage == (40 * 40 * 3 + 40 * 40 - 3 * 20 * 20 + 20 * 20) / 6400  # what the tiles lie on


@pytest.mark.parametrize("second, message", [
    (dict(crs="EPSG:32634"), "is in EPSG:32634 and .* in EPSG:32631: a mosaic's tiles share one CRS"),
    (dict(res=1.0), "has pixels of 1 x -1 map units \\(x, y steps\\) and .* of 0.5 x -0.5: a mosaic's tiles share one"
                    " pixel size and orientation"),
    (dict(res=0.5, south_up=True), "has pixels of 0.5 x 0.5 map units .* and .* of 0.5 x -0.5"),
    (dict(shift=0.25), "is not on the pixel grid of .* \\(offset by 0.500 x 0.000 px\\)"),
    (dict(dtype="uint16"), "has 3 colour bands \\(uint16, uint16, uint16\\) and .* 3 \\(uint8, uint8, uint8\\): a"
                           " mosaic's tiles have the same colour bands \\(an alpha band may differ\\); give tiles of"
                           " one product"),
    (dict(photometric="MINISBLACK"), "the colour bands of .* are gray, undefined, undefined, those of .* red, green,"
                                     " blue: .* label them alike \\(gdal_edit.py -colorinterp_1 red"),
    (dict(crs=None), "has no place on a map"),
])
def test_tiles_on_other_grids_are_refused_saying_what_to_do(tmp_path, second, message):
    _tile(tmp_path / "a.tif", 0, 0)
    res, shift = second.get("res", 0.5), second.get("shift", 0.0)
    data = np.full((3, 40, 40), 9, second.get("dtype", "uint8"))
    transform = Affine(res, 0, ORIGIN[0] + 20 + shift, 0, res if second.get("south_up") else -res, ORIGIN[1])
    extra = {"photometric": second["photometric"]} if "photometric" in second else {}
    write_geotiff(tmp_path / "b.tif", data, transform=transform, crs=second.get("crs", "EPSG:32631"), **extra)
    with pytest.raises(InputError, match=message):
        tile_layout([tmp_path / "a.tif", tmp_path / "b.tif"])


def test_mosaic_segments_tiles_as_one_scene_and_leaves_no_vrt(tmp_path):
    """--mosaic writes one map of the tiles on their common grid, as the tiles merged into
    one file give it; the VRT it reads is gone afterwards; misuse is one line each."""
    tiles = [_tile(tmp_path / "in" / f"t{i}.tif", row, col, size=48, seed=i)[0]
             for i, (row, col) in enumerate(((0, 0), (0, 48), (48, 0)))]
    ckpt = save_tiny_checkpoint(tmp_path / "m.pt", INRIA, widths=(32, 16))
    out = tmp_path / "out" / "map.tif"
    out.parent.mkdir()
    result = CliRunner().invoke(cli, ["segment", str(tmp_path / "in" / "t*.tif"), "--mosaic", "-o", str(out),
                                      "--model", str(ckpt), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["scene"] == "mosaic of 3 tiles" and summary["tiles"] == [str(t) for t in tiles]
    assert sorted(p.name for p in out.parent.iterdir() if p.name.endswith(".vrt")) == []
    # the layer's metadata in QGIS names the tiles, not the VRT read meanwhile
    abstract = (out.parent / "map.qmd").read_text()
    assert "The class of each pixel of a mosaic of 3 tiles (t0.tif, t1.tif, t2.tif)." in abstract
    assert ".vrt" not in abstract
    with rasterio.open(out) as src:
        assert (src.width, src.height) == (96, 96) and src.transform == Affine(0.5, 0, ORIGIN[0], 0, -0.5, ORIGIN[1])
        mosaic_map, valid = src.read(1), src.read_masks(1) > 0
    assert valid[:48].all() and valid[48:, :48].all() and not valid[48:, 48:].any()
    # the same as the tiles merged into one file with the missing quarter masked
    merged = np.zeros((3, 96, 96), np.uint8)
    for tile in tiles:
        with rasterio.open(tile) as src:
            col, row = (round(v) for v in ~Affine(0.5, 0, ORIGIN[0], 0, -0.5, ORIGIN[1]) * (src.transform.c, src.transform.f))
            merged[:, row:row + 48, col:col + 48] = src.read()
    mask = np.ones((96, 96), bool)
    mask[48:, 48:] = False
    one = write_geotiff(tmp_path / "one.tif", merged, transform=Affine(0.5, 0, ORIGIN[0], 0, -0.5, ORIGIN[1]), mask=mask)
    result = CliRunner().invoke(cli, ["-q", "segment", str(one), "-o", str(tmp_path / "one_map.tif"), "--model", str(ckpt)])
    assert result.exit_code == 0, result.output
    with rasterio.open(tmp_path / "one_map.tif") as src:
        assert np.array_equal(src.read(1), mosaic_map)
    for args, message in (
        ([], "--mosaic writes one map of the tiles: give -o OUT.tif"),
        ([str(tiles[0]), "-o", str(tmp_path / "x.tif")], "--mosaic segments two or more tiles as one scene"),
        (["-o", str(tiles[0]), "--overwrite"], "is the same file as the input; choose another name"),
    ):
        scenes = [str(tmp_path / "in" / "t*.tif")] if "-o" not in args or args[0] == "-o" else []
        result = CliRunner().invoke(cli, ["segment", *scenes, "--mosaic", *args, "--model", str(ckpt)])
        assert result.exit_code != 0 and message in result.output, result.output


def test_mosaic_out_dir_cuts_each_tiles_map_from_the_one_map(tmp_path):
    """--mosaic --out-dir: each tile gets its map on its own grid, cut from the one map of
    the tiles (so maps of tiles that meet or overlap agree there), nodata where the tile
    has none (a collar over its neighbour); existing maps are refused before the work."""
    rows_cols = ((0, 0), (0, 48), (48, 0), (24, 24))
    collar = np.ones((48, 48), bool)
    collar[:, :10] = False  # the last tile's first 10 columns (over t0 and t2) hold no data
    tiles = [_tile(tmp_path / "in" / f"t{i}.tif", row, col, size=48, seed=i, **({"mask": collar} if i == 3 else {}))[0]
             for i, (row, col) in enumerate(rows_cols)]
    ckpt = save_tiny_checkpoint(tmp_path / "m.pt", INRIA, widths=(32, 16))
    maps, one = tmp_path / "maps", tmp_path / "one.tif"
    base = ["segment", str(tmp_path / "in" / "t*.tif"), "--mosaic", "--model", str(ckpt)]
    result = CliRunner().invoke(cli, [*base, "-o", str(one), "--out-dir", str(maps), "--vectors", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["output"] == str(one) and report["scene"] == "mosaic of 4 tiles"
    assert [row["tile"] for row in report["tile_maps"]] == [str(t) for t in tiles]
    assert sorted(p.name for p in maps.iterdir()) == sorted(
        f"t{i}{end}" for i in range(4) for end in (".tif", ".tif.aux.xml", ".qml", ".qmd", "-polygons.gpkg"))
    with rasterio.open(one) as src:
        whole, grid = src.read(1), src.transform
    cut = {}
    for i, (tile, row) in enumerate(zip(tiles, report["tile_maps"])):
        assert row["output"] == str(maps / f"t{i}.tif") and row["vector"] == str(maps / f"t{i}-polygons.gpkg")
        with rasterio.open(tile) as src, rasterio.open(row["output"]) as out:
            assert (out.crs, out.transform, out.shape) == (src.crs, src.transform, src.shape)
            assert out.colormap(1)[1] == (200, 30, 30, 255) and out.tags()["GLGEO_MODEL"] == "m.pt"
            cut[i], nodata = out.read(1), out.nodata
        r, c = rows_cols[i]
        expected = whole[r:r + 48, c:c + 48].copy()
        if i == 3:
            expected[:, :10] = nodata
        assert np.array_equal(cut[i], expected)
        assert row["nodata_pixels"] == (480 if i == 3 else 0)
        assert sum(c["pixels"] for c in row["classes"]) == 48 * 48 - row["nodata_pixels"]
    assert np.array_equal(cut[0][24:, 34:], cut[3][:24, 10:24])  # where t0 and t3 overlap, one class each pixel
    assert "t3.tif, cut from the map of a mosaic of 4 tiles" in (maps / "t3.qmd").read_text()
    # a rerun is refused before any work, and keeps the maps; with --overwrite and no -o the
    # mosaic's map is a hidden file that is gone afterwards, and the tiles' maps are the same
    stamp = (maps / "t0.tif").stat().st_mtime_ns
    result = CliRunner().invoke(cli, [*base, "--out-dir", str(maps)])
    assert result.exit_code != 0 and "t0.tif' already exists; pass --overwrite to replace it" in result.output
    assert (maps / "t0.tif").stat().st_mtime_ns == stamp
    result = CliRunner().invoke(cli, [*base, "--out-dir", str(maps), "--overwrite", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["output"] is None
    assert not [p.name for p in maps.iterdir() if p.name.startswith(".")]
    assert len(list(maps.glob("*.tif"))) == 4
    for i in range(4):
        with rasterio.open(maps / f"t{i}.tif") as out:
            assert np.array_equal(out.read(1), cut[i])
    for args, message in (
        (["--out-dir", str(maps), "--vector", str(tmp_path / "v.gpkg")], "--vector belongs to the mosaic's own map"),
        (["--out-dir", str(maps), "--probabilities", str(tmp_path / "p.tif")], "--probabilities belongs to the mosaic"),
        (["-o", str(one), "--vectors", "--overwrite"], "--vectors writes each tile's polygons beside its map"),
        (["-o", str(maps / "t1.tif"), "--out-dir", str(maps), "--overwrite"], "is the name of a tile's map"),
    ):
        result = CliRunner().invoke(cli, [*base, *args])
        assert result.exit_code != 0 and message in result.output, (args, result.output)
    with pytest.raises(InputError, match="is not the map of these tiles' mosaic"):
        cut_tile_maps(maps / "t0.tif", tiles, [tmp_path / f"x{i}.tif" for i in range(4)])


def test_mosaic_out_dir_refuses_what_it_cannot_write_before_the_work(tmp_path, monkeypatch, caplog):
    """Formats the tiles' maps cannot take are refused before any work, and a refused
    command leaves no --out-dir it made; a tile outside --bounds gets a map said to be
    empty; an interruption counts only the maps this run wrote."""
    tiles = [_tile(tmp_path / "in" / f"t{i}.tif", row, col, size=48, seed=i)[0]
             for i, (row, col) in enumerate(((0, 0), (0, 48)))]
    ckpt = save_tiny_checkpoint(tmp_path / "m.pt", INRIA, widths=(32, 16))
    base = ["segment", str(tmp_path / "in" / "t*.tif"), "--mosaic", "--model", str(ckpt)]
    import glgeo.mosaic

    def never(*args, **kwargs):
        raise AssertionError("segmented before refusing")

    with monkeypatch.context() as m:
        m.setattr("glgeo.segmentation.segment", never)
        for args, message in (
            (["--out-dir", str(tmp_path / "a"), "--format", "PNG"], "--out-dir writes each tile's map as <tile name>.tif"),
            (["--out-dir", str(tmp_path / "b"), "-o", str(tmp_path / "m.png"), "--co", "ZLEVEL=9"], "ZLEVEL"),
        ):
            result = CliRunner().invoke(cli, [*base, *args])
            assert result.exit_code != 0 and message in result.output, (args, result.output)
        bad = write_geotiff(tmp_path / "bad.tif", np.ones((3, 8, 8), np.uint8), crs="EPSG:32634")
        result = CliRunner().invoke(cli, [*base[:1], str(tiles[0]), str(bad), "--mosaic", "--model", str(ckpt),
                                          "--out-dir", str(tmp_path / "c")])
        assert result.exit_code != 0 and "share one CRS" in result.output
        assert not (tmp_path / "a").exists() and not (tmp_path / "c").exists()
    # --bounds over the first tile only: the second's map is all nodata, and a warning says so
    left, top = ORIGIN
    result = CliRunner().invoke(cli, [*base, "--out-dir", str(tmp_path / "d"), "--bounds", str(left + 1),
                                      str(top - 23), str(left + 23), str(top - 1)])
    assert result.exit_code == 0, result.output
    assert "1 tile map: no class on any pixel of t1.tif" in caplog.text
    # interrupted after the first tile's map: one written by this run, though both exist
    real = glgeo.mosaic.cut_tile_maps

    def interrupted(*args, on_tile, **kwargs):
        def first(tile_map):
            on_tile(tile_map)
            raise KeyboardInterrupt

        return real(*args, on_tile=first, **kwargs)

    monkeypatch.setattr(glgeo.mosaic, "cut_tile_maps", interrupted)
    result = CliRunner().invoke(cli, [*base, "--out-dir", str(tmp_path / "d"), "--overwrite"])
    assert result.exit_code == 130 and "1 of 2 are written (this run)" in result.output, result.output


def test_tiles_over_http_make_the_map_local_tiles_make(tmp_path, http_folder, monkeypatch):
    """Tiles named by URL (cloud-hosted COGs) are read through GDAL's /vsicurl/ by the VRT:
    the mosaic's map and the tiles' maps are those of the same tiles on disk."""
    served, url = http_folder
    monkeypatch.setenv("GDAL_DISABLE_READDIR_ON_OPEN", "EMPTY_DIR")
    for i, (row, col) in enumerate(((0, 0), (0, 48), (48, 0))):
        _tile(served / f"t{i}.tif", row, col, size=48, seed=i)
    ckpt = save_tiny_checkpoint(tmp_path / "m.pt", INRIA, widths=(32, 16))
    maps = {}
    for where, names in (("local", [str(served / f"t{i}.tif") for i in range(3)]),
                         ("http", [f"{url}/t{i}.tif" for i in range(3)])):
        out = tmp_path / f"{where}.tif"
        result = CliRunner().invoke(cli, ["segment", *names, "--mosaic", "-o", str(out), "--out-dir",
                                          str(tmp_path / where), "--model", str(ckpt), "--json"])
        assert result.exit_code == 0, result.output
        report = json.loads(result.stdout)
        assert report["tiles"] == names and [r["output"] for r in report["tile_maps"]] == [
            str(tmp_path / where / f"t{i}.tif") for i in range(3)]
        with rasterio.open(out) as src:
            maps[where] = [src.read(1)] + [rasterio.open(tmp_path / where / f"t{i}.tif").read(1) for i in range(3)]
        assert "a mosaic of 3 tiles (t0.tif, t1.tif, t2.tif)" in (tmp_path / f"{where}.qmd").read_text()
    assert all(np.array_equal(a, b) for a, b in zip(maps["local"], maps["http"]))
    with pytest.raises(InputError, match="a mosaic reads tiles from files or http://"):
        tile_layout(["ipfs://x/t0.tif", f"{url}/t1.tif"])


def _border_changes(classes: np.ndarray, axis: int, index: int, along: slice) -> tuple[float, float]:
    """Share of pixel pairs across the boundary before ``index`` whose class changes, and the
    median of that share over the 10 boundaries beside it."""
    part = classes[along, :] if axis == 1 else classes[:, along]

    def rate(i: int) -> float:
        return float((np.take(part, i - 1, axis=axis) != np.take(part, i, axis=axis)).mean())

    return rate(index), float(np.median([rate(index + k) for k in (-5, -4, -3, -2, -1, 1, 2, 3, 4, 5)]))


def test_real_tiles_as_one_scene_have_no_seam_where_maps_made_tile_by_tile_do(sample_file, tmp_path):
    """Three real Joplin tiles (0.6 m, three of a 2 x 2 block) and the default model: the
    maps made tile by tile change class along the tiles' borders far more than beside them
    (seams); the --mosaic map does not, and it is the map of the tiles merged into one file
    (within the global image's rounding); the tiles' maps cut from it (--out-dir) are its
    pixels, so they have no seam between them either."""
    tiles = [sample_file("joplin", f"tile_{name}.tif") for name in ("337-9136", "1361-9136", "337-10160")]
    out = tmp_path / "area.tif"
    result = CliRunner().invoke(cli, ["-q", "segment", *map(str, tiles), "--mosaic", "-o", str(out),
                                      "--out-dir", str(tmp_path / "cut")])
    assert result.exit_code == 0, result.output
    with rasterio.open(out) as src:
        mosaic_map, transform, nodata = src.read(1), src.transform, src.nodata
        assert (src.width, src.height) == (2048, 2048) and src.crs.to_epsg() == 26915
    cut = np.full_like(mosaic_map, nodata)
    for tile in tiles:
        with rasterio.open(tile) as src, rasterio.open(tmp_path / "cut" / tile.name) as own:
            assert (own.crs, own.transform, own.shape) == (src.crs, src.transform, src.shape)
            col, row = (round(v) for v in ~transform * (src.transform.c, src.transform.f))
            cut[row:row + 1024, col:col + 1024] = own.read(1)
    assert np.array_equal(cut, mosaic_map)
    tiled = np.zeros_like(mosaic_map)
    for i, tile in enumerate(tiles):
        result = CliRunner().invoke(cli, ["-q", "segment", str(tile), "-o", str(tmp_path / f"t{i}.tif")])
        assert result.exit_code == 0, result.output
        with rasterio.open(tmp_path / f"t{i}.tif") as src:
            col, row = (round(v) for v in ~transform * (src.transform.c, src.transform.f))
            tiled[row:row + 1024, col:col + 1024] = src.read(1)
    assert len(np.unique(mosaic_map[:1024])) > 1  # a land-cover map, not one class
    from rasterio.merge import merge

    pixels, merged_transform = merge([str(t) for t in tiles])
    assert merged_transform == transform
    valid = np.ones((2048, 2048), bool)
    valid[1024:, 1024:] = False
    one = write_geotiff(tmp_path / "one.tif", pixels, crs="EPSG:26915", transform=transform, mask=valid)
    result = CliRunner().invoke(cli, ["-q", "segment", str(one), "-o", str(tmp_path / "one_map.tif")])
    assert result.exit_code == 0, result.output
    with rasterio.open(tmp_path / "one_map.tif") as src:
        same = src.read(1) == mosaic_map
    # GDAL's decimated reads of a VRT round the global image to whole grey levels, a
    # GeoTIFF's floating-point read does not: 99.6 % the same (fp32 99.7 %), measured
    assert same.mean() > 0.99, same.mean()
    for axis, along in ((1, slice(0, 1024)), (0, slice(0, 1024))):  # the borders: 337-9136 | 1361-9136, and / 337-10160
        on, beside = _border_changes(tiled, axis, 1024, along)
        assert on > 0.03 and on > 4 * beside, (axis, on, beside)  # a seam: benchmarks/tiles.py measures 15 and 24 %
        on, beside = _border_changes(mosaic_map, axis, 1024, along)
        assert on <= max(3 * beside, 0.01), (axis, on, beside)


def test_scenes_that_meet_as_tiles_do_are_told_apart_from_scenes_of_one_place(tmp_path):
    """Tiles sharing a border, or overlapping by a strip, meet; a corner, a scene of the same
    place (another date), another CRS, a plain image or a remote file do not."""
    a, _ = _tile(tmp_path / "a.tif", 0, 0)
    right, _ = _tile(tmp_path / "right.tif", 0, 40)
    strip, _ = _tile(tmp_path / "strip.tif", 36, 0)  # overlaps a by 4 rows: a tile with a margin
    corner, _ = _tile(tmp_path / "corner.tif", 40, 40)
    again, _ = _tile(tmp_path / "again.tif", 2, 2, seed=7)  # the same place, another date
    far, _ = _tile(tmp_path / "far.tif", 400, 400)
    other = write_geotiff(tmp_path / "other.tif", np.zeros((3, 40, 40), np.uint8), crs="EPSG:32632",
                          transform=Affine(0.5, 0, ORIGIN[0] + 20, 0, -0.5, ORIGIN[1]))
    plain = write_geotiff(tmp_path / "plain.tif", np.zeros((3, 40, 40), np.uint8), crs=None)
    from glgeo.mosaic import meeting_tiles

    def pairs(*scenes):
        return {frozenset(map(str, pair)) for pair in meeting_tiles(scenes)}

    assert pairs(a, right, strip, far) == {frozenset({str(a), str(right)}), frozenset({str(a), str(strip)}),
                                           frozenset({str(strip), str(right)})}  # strip and right: 4 rows of border
    assert meeting_tiles([a, corner]) == [] and meeting_tiles([a, again]) == [] and meeting_tiles([a, far]) == []
    assert meeting_tiles([a, other, plain, "https://example.com/b.tif"]) == []
    coarser = write_geotiff(tmp_path / "coarser.tif", np.zeros((3, 20, 20), np.uint8),
                            transform=Affine(1.0, 0, ORIGIN[0] + 20, 0, -1.0, ORIGIN[1]))
    off_grid = write_geotiff(tmp_path / "off_grid.tif", np.zeros((3, 40, 40), np.uint8),
                             transform=Affine(0.5, 0, ORIGIN[0] + 20.2, 0, -0.5, ORIGIN[1]))
    assert meeting_tiles([a, coarser]) == [] and meeting_tiles([a, off_grid]) == []  # --mosaic would refuse them
    assert meeting_tiles([a, right], max_scenes=1) == []


def test_a_batch_of_tiles_that_meet_says_how_to_map_them_without_seams(tmp_path, caplog):
    for i, (row, col) in enumerate(((0, 0), (0, 48))):
        _tile(tmp_path / "in" / f"t{i}.tif", row, col, size=48, seed=i)
    ckpt = save_tiny_checkpoint(tmp_path / "m.pt", INRIA, widths=(32, 16))
    result = CliRunner().invoke(cli, ["segment", str(tmp_path / "in" / "t*.tif"), "--out-dir", str(tmp_path / "maps"),
                                      "--model", str(ckpt)])
    assert result.exit_code == 0, result.output
    assert "2 of the 2 scenes meet others as tiles of one area do (e.g. t0.tif and t1.tif): maps made one by one " \
        "disagree along those borders; for maps without seams, segment such tiles as one scene (glgeo segment " \
        "TILES --mosaic --out-dir DIR: each tile's map cut from the one map" in caplog.text


def test_a_pixel_is_data_where_any_band_is_and_an_alpha_band_may_differ(tmp_path):
    """A tile's nodata value is a band's own: a pixel whose red alone is 0 (dark water) was
    nodata in the mosaic (band 1's mask) where the tile alone has it as data; a tile with
    an alpha band beside tiles without one was refused (4 bands against 3)."""
    a, da = _tile(tmp_path / "a.tif", 0, 0, nodata=0)
    da[0, 10:20, 10:20] = 0  # red 0, green and blue not: data
    da[:, 30:, :10] = 0  # every band 0: nodata
    with rasterio.open(a, "r+") as dst:
        dst.write(da)
    alpha = np.full((40, 40), 255, np.uint8)
    alpha[:5] = 0
    data = np.random.default_rng(3).integers(1, 256, (3, 40, 40), dtype=np.uint8)
    b = write_geotiff(tmp_path / "b.tif", data, transform=Affine(0.5, 0, ORIGIN[0] + 10, 0, -0.5, ORIGIN[1]), alpha=alpha)
    layout = write_tiles_vrt([a, b], tmp_path / "m.vrt")
    assert layout.bands == ((1, 2, 3), (1, 2, 3))
    with rasterio.open(tmp_path / "m.vrt") as src:
        assert src.count == 3 and [i.name for i in src.colorinterp] == ["red", "green", "blue"]
        mask, pixels = src.read_masks(1) > 0, src.read()
    assert mask[10:20, 10:20].all() and np.array_equal(pixels[:, 10:20, 10:20], da[:, 10:20, 10:20])
    assert not mask[30:, :10].any()  # a's nodata corner (b lies at columns 20-59)
    assert not mask[:5, 40:].any() and mask[5:, 20:].all()  # b's alpha, beyond a
    assert np.array_equal(pixels[:, 5:, 20:], data[:, 5:])
    assert mask[:5, 20:40].all() and np.array_equal(pixels[:, :5, 20:40], da[:, :5, 20:40])  # a beneath b's alpha


def test_the_tiles_full_resolution_pixels_not_their_overviews(tmp_path):
    """GDAL read a VRT's decimated windows from its tiles' overviews: tiles delivered with
    overviews (COGs) changed the mosaic's map."""
    from rasterio.enums import Resampling

    from glgeo.resolution import open_pixels

    paths = []
    for i in range(2):
        path = write_geotiff(tmp_path / f"t{i}.tif", np.full((3, 64, 64), 90, np.uint8),
                             transform=Affine(0.5, 0, ORIGIN[0] + 32 * i, 0, -0.5, ORIGIN[1]))
        with rasterio.open(path, "r+") as dst:
            dst.build_overviews([2, 4], Resampling.nearest)
            dst.write(np.full((3, 64, 64), 200, np.uint8))  # the overviews keep 90: not the tile's pixels
        paths.append(path)
    write_tiles_vrt(paths, tmp_path / "m.vrt")
    with open_pixels(str(tmp_path / "m.vrt")) as src:
        assert (src.read(out_shape=(3, 16, 24), resampling=Resampling.bilinear) == 200).all()


def test_an_old_gdal_is_refused(tmp_path, monkeypatch):
    """GDAL before 3.5 ignores a source's UseMaskBand: a tile's nodata collar was black data
    over its neighbour's pixels."""
    monkeypatch.setattr(rasterio, "__gdal_version__", "3.4.1")
    a, _ = _tile(tmp_path / "a.tif", 0, 0)
    b, _ = _tile(tmp_path / "b.tif", 0, 40)
    with pytest.raises(InputError, match=r"a mosaic needs GDAL 3.6 or newer; this rasterio has GDAL 3.4.1"):
        write_tiles_vrt([a, b], tmp_path / "m.vrt")
    assert not (tmp_path / "m.vrt").exists()


def test_tiles_apart_are_said_before_the_work(tmp_path, caplog):
    """Two tiles far apart made a huge, nearly empty map, said only at the end; a tile a
    hair off the grid far from the first was snapped, where near it it was refused."""
    a, _ = _tile(tmp_path / "a.tif", 0, 0)
    b, _ = _tile(tmp_path / "b.tif", 0, 40)
    far, _ = _tile(tmp_path / "far.tif", 400, 400)
    layout = tile_layout([a, b, far])
    assert layout.apart == (2,) and layout.coverage == pytest.approx(3 * 1600 / (440 * 440))
    ckpt = save_tiny_checkpoint(tmp_path / "m.pt", INRIA, widths=(32, 16))
    result = CliRunner().invoke(cli, ["segment", str(a), str(b), str(far), "--mosaic", "-o", str(tmp_path / "m.tif"),
                                      "--model", str(ckpt)])
    assert result.exit_code == 0, result.output
    assert "1 of the 3 tiles meet no other tile (e.g. far.tif): the mosaic gains nothing for them, and is 440 x 440" \
        " px, 2.5 % of it covered by tiles" in caplog.text
    off = write_geotiff(tmp_path / "off.tif", np.zeros((3, 40, 40), np.uint8),
                        transform=Affine(0.5, 0, ORIGIN[0] + 0.5 * 400000 + 0.15, 0, -0.5, ORIGIN[1]))
    with pytest.raises(InputError, match=r"offset by 0.300 x 0.000 px"):
        tile_layout([a, off])


def test_a_split_resumes_only_blocks_of_the_same_mosaic(tmp_path):
    """The split's resume key was the VRT's path, size and time stamp: the same tiles in
    another order (which decides who wins where they overlap) kept the blocks."""
    from glgeo.batch.split import _fingerprint

    a, _ = _tile(tmp_path / "a.tif", 0, 0)
    b, _ = _tile(tmp_path / "b.tif", 0, 36)
    vrt = tmp_path / "m.vrt"

    class Split:  # what the fingerprint reads of a split scene
        settings, scale = "s", 1.0

        class info:
            bands = (1, 2, 3)

        class plan:
            @staticmethod
            def to_dict():
                return {}

    prints = []
    for order in ([a, b], [b, a]):
        write_tiles_vrt(order, vrt)
        os.utime(vrt, ns=(10**18, 10**18))
        prints.append(_fingerprint(str(vrt), "model", Split, False, False, None, None, None))
    assert prints[0] != prints[1]


def _write(path, data, col, row=0, **kwargs):
    return write_geotiff(path, data, transform=Affine(0.5, 0, ORIGIN[0] + 0.5 * col, 0, -0.5, ORIGIN[1] - 0.5 * row),
                         **kwargs)


def test_a_band_equal_to_the_nodata_value_keeps_its_value_and_any_alpha_band_is_the_mask(tmp_path):
    """Second review: with nodata 255, a white roof's red (255, 100, 100) read (0, 100, 100)
    (the red band's own mask left the VRT's 0); an alpha band GDAL does not take as the
    mask (first, or after four bands) hid the pixels beneath it; tiles labelled blue,
    green, red beside red, green, blue ones were refused, or mixed colours."""
    base = np.full((3, 8, 8), 100, np.uint8)
    a = _write(tmp_path / "a.tif", base, 0, nodata=255)
    with rasterio.open(a, "r+") as dst:
        roof = base.copy()
        roof[0, 1, 1] = 255  # red alone at the nodata value: data
        roof[:, 7, 2] = 255  # every band: nodata
        dst.write(roof)
    layered = np.full((4, 8, 8), 7, np.uint8)
    layered[0, :, :2] = 0  # alpha, band 1: its first two columns transparent
    over = _write(tmp_path / "over.tif", layered, 4, photometric="MINISBLACK")
    with rasterio.open(over, "r+") as dst:
        dst.colorinterp = [ColorInterp.alpha, ColorInterp.red, ColorInterp.green, ColorInterp.blue]
    bgr = np.stack([np.full((8, 8), v, np.uint8) for v in (30, 20, 10)])  # blue, green, red
    turned = _write(tmp_path / "bgr.tif", bgr, 0, row=8, photometric="MINISBLACK")
    with rasterio.open(turned, "r+") as dst:
        dst.colorinterp = [ColorInterp.blue, ColorInterp.green, ColorInterp.red]
    layout = write_tiles_vrt([a, over, turned], tmp_path / "m.vrt")
    assert layout.bands == ((1, 2, 3), (2, 3, 4), (3, 2, 1)) and layout.alphas == (None, 1, None)
    with rasterio.open(tmp_path / "m.vrt") as src:
        pixels, mask = src.read(), src.read_masks(1) > 0
    assert mask[1, 1] and list(pixels[:, 1, 1]) == [255, 100, 100]
    assert not mask[7, 2]
    assert mask[:8, 4:6].all() and (pixels[:, :8, 4:6] == 100).all()  # a beneath over's transparent columns
    assert (pixels[:, :8, 6:12] == 7).all()  # over where its alpha says data
    assert list(pixels[:, 10, 3]) == [10, 20, 30]  # red, green, blue, from the tile labelled blue, green, red
    # tiles that only meet are simple sources: the same pixels and mask
    beside = _write(tmp_path / "beside.tif", base, 8)
    layout = write_tiles_vrt([a, beside, turned], tmp_path / "m2.vrt")
    assert not layout.overlapping and layout.masks == ("bands", "none", "none")
    with rasterio.open(tmp_path / "m2.vrt") as src:
        pixels, mask = src.read(), src.read_masks(1) > 0
    assert mask[1, 1] and list(pixels[:, 1, 1]) == [255, 100, 100] and not mask[7, 2]
    assert mask[:8, 8:].all() and list(pixels[:, 10, 3]) == [10, 20, 30]


def test_tiles_that_overlap_much_are_not_apart_and_the_batch_warning_groups_tiles_as_the_mosaic_does(tmp_path):
    from glgeo.mosaic import meeting_tiles

    p = _write(tmp_path / "p.tif", np.ones((3, 10, 10), np.uint8), 0)
    q = _write(tmp_path / "q.tif", np.ones((3, 10, 10), np.uint8), 5)  # half of p
    assert tile_layout([p, q]).apart == ()
    # a grid's phase near a rounding step (0.005 and 0.0052 px) is one grid
    g1 = write_geotiff(tmp_path / "g1.tif", np.ones((3, 10, 10), np.uint8),
                       transform=Affine(0.6, 0, 0.003, 0, -0.6, 6.0))
    g2 = write_geotiff(tmp_path / "g2.tif", np.ones((3, 10, 10), np.uint8),
                       transform=Affine(0.6, 0, 6.0031, 0, -0.6, 6.0))
    assert meeting_tiles([g1, g2]) == [(str(g1), str(g2))]
    u16 = write_geotiff(tmp_path / "u16.tif", np.ones((3, 10, 10), np.uint16),
                        transform=Affine(0.6, 0, 6.003, 0, -0.6, 6.0))
    assert meeting_tiles([g1, u16]) == []  # --mosaic refuses them: no warning pointing there


def test_a_rerun_whose_glob_matches_the_map_leaves_it_out(tmp_path, caplog):
    """``glgeo segment 'tiles/*.tif' --mosaic -o tiles/map.tif`` run again found its own map
    among the tiles and stopped, saying the output was the same file as an input."""
    for i in range(2):
        _tile(tmp_path / f"t{i}.tif", 0, 48 * i, size=48, seed=i)
    ckpt = save_tiny_checkpoint(tmp_path / "m.pt", INRIA, widths=(32, 16))
    args = ["segment", str(tmp_path / "*.tif"), "--mosaic", "-o", str(tmp_path / "map.tif"), "--model", str(ckpt)]
    assert CliRunner().invoke(cli, args).exit_code == 0
    again = CliRunner().invoke(cli, [*args, "--overwrite", "--json"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["tiles"] == [str(tmp_path / "t0.tif"), str(tmp_path / "t1.tif")]
    assert f"{tmp_path / 'map.tif'} is this command's output, not a tile: left out of the mosaic" in caplog.text
