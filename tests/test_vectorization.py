"""Tests for glgeo.vectorize and ``glgeo vectorize``.

The class rasters are generated: a real CRS (UTM 18N, 0.5 m pixels), regions that cross the
seams of the small blocks the tests use, a U-shaped region whose two arms meet only several
block rows down, rings with holes, nodata patches and single nodata pixels. The reference is
GDAL's polygonization of the whole array at once.
"""

from __future__ import annotations

import logging

import numpy as np
import pyogrio
import pytest
import rasterio
import shapely
from click.testing import CliRunner
from rasterio.features import rasterize
from rasterio.transform import from_origin

from glgeo.cli.main import cli
from glgeo.errors import InputError, OutputError, SceneError, UnknownNameError
from glgeo.schemes import DEEPGLOBE, INRIA, NODATA_ID
from glgeo.styles import read_gpkg_layer_styles, write_raster_sidecars
from glgeo.vectorization import VectorizeResult, vectorize

from fixtures.class_rasters import (
    CRS,
    FOREST,
    PIXEL,
    TRANSFORM,
    URBAN,
    WATER,
    map_xy,
    read_layer,
    reburn,
    reference_polygons,
    write_raster,
)

@pytest.mark.parametrize("block_size", [16, 29, 64, 4096])
def test_polygons_reproduce_the_raster_exactly(tmp_path, class_raster, classes_array, block_size):
    out = tmp_path / "landcover.gpkg"
    result = vectorize(class_raster, out, scheme=DEEPGLOBE, block_size=block_size)
    frame = read_layer(out)

    assert np.array_equal(reburn(frame, classes_array.shape), classes_array)
    reference = reference_polygons(classes_array)
    assert result.n_polygons == len(frame) == len(reference)
    for class_id in range(DEEPGLOBE.n_classes):
        expected = sorted(g.area * PIXEL**2 for g, v in reference if v == class_id)
        got = sorted(frame.loc[frame.class_id == class_id, "area_m2"])
        np.testing.assert_allclose(got, expected, rtol=1e-12)
    assert frame.geometry.is_valid.all()
    assert (frame.geometry.geom_type == "Polygon").all()
    assert frame.crs.to_epsg() == 32618
    assert result.crs == CRS and result.area_units == "m2"


def test_region_cut_by_block_seams_comes_out_whole(tmp_path, class_raster):
    out = tmp_path / "u.gpkg"
    vectorize(class_raster, out, scheme=DEEPGLOBE, block_size=16)
    frame = read_layer(out)
    left_arm = map_xy(22.5, 10.5)
    right_arm = map_xy(62.5, 10.5)
    holders = frame[frame.geometry.contains(shapely.Point(left_arm))]
    assert len(holders) == 1 and holders.iloc[0].class_name == "urban"
    assert holders.iloc[0].geometry.contains(shapely.Point(right_arm))
    # Arms 116 x 5 px each, plus the 5 x 35 px bottom bar between them.
    assert holders.iloc[0].area_m2 == pytest.approx((2 * 116 * 5 + 5 * 35) * PIXEL**2)


def test_holes_survive(tmp_path, class_raster, classes_array):
    out = tmp_path / "holes.gpkg"
    vectorize(class_raster, out, scheme=DEEPGLOBE, block_size=32)
    frame = read_layer(out)
    centre = shapely.Point(map_xy(135.5, 70.5))
    disk = frame[(frame.class_name == "water") & frame.geometry.intersects(centre.buffer(20 * PIXEL))]
    ring = frame[(frame.class_name == "rangeland") & frame.geometry.intersects(centre.buffer(35 * PIXEL))]
    assert len(disk) == 1 and len(ring) == 1
    disk_geom, ring_geom = disk.iloc[0].geometry, ring.iloc[0].geometry
    # Two holes: the nodata pupil and the nodata pixel at row 70, column 118.
    hole_areas = sorted(shapely.Polygon(r).area for r in disk_geom.interiors)
    assert hole_areas == pytest.approx([PIXEL**2, (classes_array[60:81, 125:146] == NODATA_ID).sum() * PIXEL**2])
    assert not disk_geom.contains(centre)
    assert not disk_geom.contains(shapely.Point(map_xy(118.5, 70.5)))
    assert len(ring_geom.interiors) >= 1
    assert shapely.Polygon(ring_geom.interiors[0]).contains(disk_geom)
    # The single nodata pixel inside the agriculture block is a 1-pixel hole.
    agriculture = frame[frame.geometry.intersects(shapely.Point(map_xy(41.5, 40.5)))]
    assert any(shapely.Polygon(r).area == pytest.approx(PIXEL**2) for r in agriculture.iloc[0].geometry.interiors)


def test_area_matches_pixel_counts(tmp_path, class_raster, classes_array):
    out = tmp_path / "area.gpkg"
    result = vectorize(class_raster, out, scheme=DEEPGLOBE, block_size=37)
    frame = read_layer(out)
    for info in DEEPGLOBE.classes:
        pixels = int((classes_array == info.id).sum())
        assert frame.loc[frame.class_id == info.id, "area_m2"].sum() == pytest.approx(pixels * PIXEL**2, rel=1e-12)
        assert result.area_per_class[info.name] == pytest.approx(pixels * PIXEL**2, rel=1e-12)
        assert result.polygons_per_class[info.name] == int((frame.class_id == info.id).sum())
        assert result.raster_pixels_per_class[info.name] == result.written_pixels_per_class[info.name] == pixels
    assert result.nodata_pixels == int((classes_array == NODATA_ID).sum())
    assert result.merged_regions == result.merged_pixels == 0 and result.classes_without_polygons == ()
    # class_name agrees with class_id everywhere.
    assert all(DEEPGLOBE.classes[i].name == n for i, n in zip(frame.class_id, frame.class_name))


@pytest.mark.parametrize("how", ["mask", "alpha"])
def test_pixels_the_rasters_mask_says_have_no_data_get_no_polygon(tmp_path, how):
    """A class raster whose pixels without data are marked by an internal mask or an alpha
    band (no nodata value), as GDAL's tools and QGIS honour it: no polygon there, and the
    pixels are counted as nodata (as gdal_polygonize leaves them out)."""
    from fixtures.rasters import write_geotiff

    classes = np.full((100, 100), FOREST, np.uint8)
    classes[:, 50:] = WATER
    classes[:, :30] = 0  # "urban" by value, but without data by the mask
    valid = np.ones((100, 100), bool)
    valid[:, :30] = False
    extra = {"mask": valid} if how == "mask" else {"alpha": np.where(valid, 255, 0).astype(np.uint8), "ALPHA": "YES"}
    raster = write_geotiff(tmp_path / "masked.tif", classes, crs=CRS, transform=TRANSFORM, **extra)
    result = vectorize(raster, tmp_path / "masked.gpkg", scheme=DEEPGLOBE, block_size=32)
    frame = read_layer(tmp_path / "masked.gpkg", "masked")
    assert set(frame.class_id) == {FOREST, WATER} and result.nodata_pixels == 3000
    assert frame.area_m2.sum() == pytest.approx(7000 * PIXEL**2, rel=1e-12)


def assert_clean_coverage(frame, footprint: shapely.Geometry) -> None:
    geoms = np.asarray(frame.geometry.values)
    assert shapely.is_valid(geoms).all()
    tree = shapely.STRtree(geoms)
    left, right = tree.query(geoms, predicate="intersects")
    pairs = left < right
    overlap = shapely.area(shapely.intersection(geoms[left[pairs]], geoms[right[pairs]]))
    assert overlap.max(initial=0.0) < 1e-9, "simplified polygons overlap"
    union = shapely.union_all(geoms)
    assert union.symmetric_difference(footprint).area < 1e-6, "simplified polygons leave gaps"
    assert shapely.area(geoms).sum() == pytest.approx(footprint.area, rel=1e-12)


@pytest.mark.parametrize("block_size", [24, 4096])
def test_simplified_neighbours_neither_overlap_nor_leave_gaps(tmp_path, class_raster, block_size):
    exact_out, simple_out = tmp_path / "exact.gpkg", tmp_path / "simple.gpkg"
    vectorize(class_raster, exact_out, scheme=DEEPGLOBE, block_size=block_size)
    vectorize(class_raster, simple_out, scheme=DEEPGLOBE, simplify=2.0, block_size=block_size)
    exact, simple = read_layer(exact_out), read_layer(simple_out)
    assert len(simple) == len(exact)
    assert shapely.get_num_coordinates(simple.geometry.values).sum() < 0.8 * shapely.get_num_coordinates(
        exact.geometry.values
    ).sum()
    assert_clean_coverage(simple, shapely.union_all(exact.geometry.values))
    # The disk was smoothed: its outline is no longer a pixel staircase.
    disk = simple[simple.geometry.contains(shapely.Point(map_xy(135.5, 55.5)))].iloc[0].geometry
    assert len(disk.exterior.coords) < 60


def test_min_area_sieves_specks_without_leaving_holes(tmp_path, classes_array):
    data = classes_array.copy()
    rng = np.random.default_rng(3)
    data[10:40, 100:125] = rng.integers(0, DEEPGLOBE.n_classes, size=(30, 25), dtype=np.uint8)  # salt and pepper
    data[90, 90] = FOREST if data[90, 90] != FOREST else WATER  # one lone pixel
    raster = write_raster(tmp_path / "noisy.tif", data)
    out = tmp_path / "sieved.gpkg"
    min_area = 10.0  # 40 pixels; blocks of at least twice that make the sieve exact
    vectorize(raster, out, scheme=DEEPGLOBE, min_area=min_area, block_size=80)
    frame = read_layer(out, "noisy")
    assert frame.area_m2.min() >= min_area
    assert len(frame) < len(reference_polygons(data))
    burnt = reburn(frame, data.shape)
    assert np.array_equal(burnt == NODATA_ID, data == NODATA_ID), "sieving left holes (or filled nodata)"
    assert frame.area_m2.sum() == pytest.approx((data != NODATA_ID).sum() * PIXEL**2)
    # Large regions are untouched.
    assert (burnt[60:81, 125:146] == data[60:81, 125:146]).all()


@pytest.mark.parametrize("n_classes", [2, 7])
def test_min_area_sieves_pure_noise_across_seams(tmp_path, n_classes):
    # Every region is a speck: GDAL's sieve alone would leave them all (no large neighbour).
    rng = np.random.default_rng(n_classes)
    data = rng.integers(0, n_classes, size=(120, 130), dtype=np.uint8)
    raster = write_raster(tmp_path / "noise.tif", data)
    out = tmp_path / "noise.gpkg"
    vectorize(raster, out, scheme=DEEPGLOBE, min_area=5.0, block_size=48)  # 20 pixels
    frame = read_layer(out, "noise")
    assert frame.area_m2.min() >= 5.0
    assert (reburn(frame, data.shape) != NODATA_ID).all(), "sieving left holes"
    assert frame.area_m2.sum() == pytest.approx(data.size * PIXEL**2)
    assert_clean_coverage(frame, shapely.box(*rasterio.open(raster).bounds))


def test_min_area_and_simplify_together_keep_a_clean_coverage(tmp_path, class_raster, classes_array):
    out = tmp_path / "both.gpkg"
    vectorize(class_raster, out, scheme=DEEPGLOBE, min_area=10.0, simplify=1.5, block_size=48)
    frame = read_layer(out)
    footprint = shapely.union_all([g for g, _ in reference_polygons(classes_array)])
    footprint = shapely.affinity.affine_transform(footprint, TRANSFORM.to_shapely())
    assert_clean_coverage(frame, footprint)


def test_classes_keeps_only_the_named_classes(tmp_path, class_raster, classes_array):
    full_out, water_out = tmp_path / "all.gpkg", tmp_path / "water.gpkg"
    vectorize(class_raster, full_out, scheme=DEEPGLOBE, block_size=32)
    result = vectorize(class_raster, water_out, scheme=DEEPGLOBE, classes=["water", "1"], block_size=32)
    full, water = read_layer(full_out), read_layer(water_out)
    assert set(water.class_name) == {"water", "urban"}
    assert set(result.polygons_per_class) == {"urban", "water"}
    assert vectorize(class_raster, tmp_path / "w.gpkg", scheme=DEEPGLOBE, classes="water").polygons_per_class == {
        "water": result.polygons_per_class["water"]}
    expected = full[full.class_id.isin([WATER, URBAN])]
    assert len(water) == len(expected)
    assert sorted(water.area_m2) == pytest.approx(sorted(expected.area_m2))


def test_unknown_class_name_lists_the_valid_ones(tmp_path, class_raster):
    with pytest.raises(UnknownNameError, match="choose from: unknown, urban, agriculture"):
        vectorize(class_raster, tmp_path / "x.gpkg", scheme=DEEPGLOBE, classes=["building"])
    assert not (tmp_path / "x.gpkg").exists()


def test_rejects_rasters_that_are_not_class_rasters(tmp_path, classes_array):
    floats = write_raster(tmp_path / "probs.tif", classes_array / 7.0, dtype="float32", nodata=None)
    with pytest.raises(InputError, match="float32.*class ids"):
        vectorize(floats, tmp_path / "a.gpkg", scheme=DEEPGLOBE)
    rgb = write_raster(tmp_path / "rgb.tif", np.stack([classes_array] * 3), nodata=None)
    with pytest.raises(InputError, match="3 bands"):
        vectorize(rgb, tmp_path / "b.gpkg", scheme=DEEPGLOBE)
    values = classes_array.copy()
    values[100, 100] = 42
    odd = write_raster(tmp_path / "odd.tif", values)
    with pytest.raises(InputError, match="value 42"):
        vectorize(odd, tmp_path / "c.gpkg", scheme=DEEPGLOBE, block_size=16)
    with pytest.raises(SceneError, match="does not exist"):
        vectorize(tmp_path / "missing.tif", tmp_path / "d.gpkg", scheme=DEEPGLOBE)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["odd.tif", "probs.tif", "rgb.tif"]


def test_rejects_bad_options(tmp_path, class_raster):
    with pytest.raises(InputError, match="min_area"):
        vectorize(class_raster, tmp_path / "a.gpkg", scheme=DEEPGLOBE, min_area=-1)
    with pytest.raises(InputError, match="simplify"):
        vectorize(class_raster, tmp_path / "a.gpkg", scheme=DEEPGLOBE, simplify=0)
    with pytest.raises(InputError, match="block_size"):
        vectorize(class_raster, tmp_path / "a.gpkg", scheme=DEEPGLOBE, block_size=0)
    with pytest.raises(InputError, match="GeoPackage"):
        vectorize(class_raster, tmp_path / "a.shp", scheme=DEEPGLOBE)
    with pytest.raises(InputError, match="reserved"):
        vectorize(class_raster, tmp_path / "a.gpkg", scheme=DEEPGLOBE, layer="layer_styles")


def test_existing_output_needs_overwrite(tmp_path, class_raster):
    out = tmp_path / "landcover.gpkg"
    out.write_bytes(b"keep me")
    with pytest.raises(OutputError, match="overwrite=True"):
        vectorize(class_raster, out, scheme=DEEPGLOBE)
    assert out.read_bytes() == b"keep me"
    vectorize(class_raster, out, scheme=DEEPGLOBE, overwrite=True)
    assert len(read_layer(out)) > 0


def test_failed_run_leaves_no_partial_output(tmp_path, classes_array):
    data = classes_array.copy()
    data[-1, -1] = 99  # found in the last block only, after polygons were written
    raster = write_raster(tmp_path / "late.tif", data)
    out = tmp_path / "late.gpkg"
    with pytest.raises(InputError, match="value 99"):
        vectorize(raster, out, scheme=DEEPGLOBE, block_size=16)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["late.tif"]


def _abstract(gpkg) -> str:
    """The QGIS layer metadata's abstract of a GeoPackage glgeo wrote."""
    import sqlite3
    import xml.etree.ElementTree as ET

    with sqlite3.connect(gpkg) as db:
        (text,) = db.execute("SELECT metadata FROM gpkg_metadata WHERE md_standard_uri = 'http://mrcc.com/qgis.dtd'").fetchone()
    return ET.fromstring(text.split("\n", 1)[1]).findtext("abstract")


def test_geographic_areas_are_geodesic_square_metres_and_a_missing_crs_warns(tmp_path, classes_array, caplog):
    from glgeo.areas import ground_areas

    transform = from_origin(-74.0, 40.7, 1e-5, 1e-5)
    geographic = write_raster(tmp_path / "geo.tif", classes_array, crs="EPSG:4326", transform=transform)
    with caplog.at_level(logging.INFO, logger="glgeo.vectorization"):
        result = vectorize(geographic, tmp_path / "geo.gpkg", scheme=DEEPGLOBE)
    assert result.area_units == "m2"
    assert "(area_m2): areas in m² measured on the ground (EPSG:4326 is a geographic CRS)" in caplog.text
    assert "WARNING" not in caplog.text
    frame = pyogrio.read_dataframe(tmp_path / "geo.gpkg")
    np.testing.assert_allclose(frame.area_m2, ground_areas(frame.geometry.values, "EPSG:4326"), rtol=1e-12)
    # the ground's m² at 40.7 N: 1e-5 degrees are 0.843 m east and 1.111 m north
    water = frame[frame.class_name == "water"].area_m2.sum()
    assert water == pytest.approx(int((classes_array == WATER).sum()) * 0.8435 * 1.1105, rel=2e-3)
    caplog.clear()
    bare = write_raster(tmp_path / "bare.tif", classes_array, crs=None)
    with caplog.at_level(logging.WARNING, logger="glgeo.vectorization"):
        result = vectorize(bare, tmp_path / "bare.gpkg", scheme=DEEPGLOBE)
    assert result.area_units == "map unit2" and result.crs is None
    assert "no CRS" in caplog.text
    # the layer's abstract says so too, where QGIS users read it: the field's name says m²
    assert ("area_m2 holds squared units of the raster's coordinates, not m², as the raster has no CRS with a known "
            "unit") in _abstract(tmp_path / "bare.gpkg")
    assert "area_m2 holds" not in _abstract(tmp_path / "geo.gpkg")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="glgeo.vectorization"):
        vectorize(write_raster(tmp_path / "utm.tif", classes_array), tmp_path / "utm.gpkg", scheme=DEEPGLOBE)
    assert "WARNING" not in caplog.text and "on the ground" not in caplog.text


def test_a_raster_placed_by_gcps_says_to_warp_it_not_to_assign_a_crs(tmp_path, classes_array, caplog):
    """Assigning it a CRS, as a raster without one is told to, would put its polygons in
    pixel coordinates at the CRS's origin."""
    from rasterio.control import GroundControlPoint
    from rasterio.crs import CRS as RioCRS

    raster = write_raster(tmp_path / "gcps.tif", classes_array, crs=None)
    h, w = classes_array.shape
    with rasterio.open(raster, "r+") as dst:
        dst.gcps = ([GroundControlPoint(r, c, 500000 + 2 * c, 4100000 - 2 * r) for r, c in ((0, 0), (0, w), (h, 0), (h, w))],
                    RioCRS.from_epsg(32615))
    with caplog.at_level(logging.WARNING, logger="glgeo.vectorization"):
        vectorize(raster, tmp_path / "gcps.gpkg", scheme=DEEPGLOBE)
    assert "gcps.tif is placed by ground control points only: its polygons are in pixel coordinates" in caplog.text
    assert "gdalwarp -r near" in caplog.text and "rio edit-info" not in caplog.text
    assert "area_m2 holds pixels, not m², as the raster is placed by ground control points only" \
        in _abstract(tmp_path / "gcps.gpkg")


def test_feet_crs_areas_are_square_metres(tmp_path, classes_array):
    # NAD83 / New York Long Island (ftUS): 1 px = 1 ftUS x 1 ftUS.
    raster = write_raster(tmp_path / "ft.tif", classes_array, crs="EPSG:2263", transform=from_origin(1e6, 2e5, 1, 1))
    result = vectorize(raster, tmp_path / "ft.gpkg", scheme=DEEPGLOBE)
    pixels = int((classes_array == WATER).sum())
    assert result.area_per_class["water"] == pytest.approx(pixels * (1200 / 3937) ** 2)


def test_web_mercator_areas_are_the_grounds(tmp_path, classes_array, caplog):
    """Web Mercator's own m² are 1.57 times the ground's at 37 N: area_m2 holds the ground's,
    as the summary of the same raster does, and min_area is ground m² too."""
    import logging

    from glgeo.areas import PixelAreas

    raster = write_raster(tmp_path / "m.tif", classes_array, crs="EPSG:3857", transform=from_origin(-1.05e7, 4.45e6, 1, 1))
    with caplog.at_level(logging.INFO, logger="glgeo.vectorization"):
        result = vectorize(raster, tmp_path / "m.gpkg", scheme=DEEPGLOBE)
    assert "m.tif (area_m2): areas in m² measured on the ground: EPSG:3857's own m² are 1.57 times" in caplog.text
    frame = pyogrio.read_dataframe(tmp_path / "m.gpkg")
    pixels = int((classes_array == WATER).sum())
    assert frame[frame.class_name == "water"].area_m2.sum() == pytest.approx(pixels / 1.5716, rel=2e-3)
    every = PixelAreas(rasterio.crs.CRS.from_epsg(3857), from_origin(-1.05e7, 4.45e6, 1, 1), *classes_array.shape[::-1])
    pixel_sums = every.block(0, 0, *classes_array.shape)
    summary = {c.name: pixel_sums[classes_array == c.id].sum() for c in DEEPGLOBE.classes if (classes_array == c.id).any()}
    assert result.area_per_class == pytest.approx(summary, rel=1e-5)  # as segment's summary counts them
    # min_area in ground m²: a region of 2 px (1.27 m² on the ground) goes at 1.5 m², stays at 1.2
    speck = classes_array.copy()
    speck[:] = 0
    speck[10, 10:12] = WATER
    raster = write_raster(tmp_path / "s.tif", speck, crs="EPSG:3857", transform=from_origin(-1.05e7, 4.45e6, 1, 1))
    assert "water" not in vectorize(raster, tmp_path / "s1.gpkg", scheme=DEEPGLOBE, min_area=1.5).polygons_per_class
    assert vectorize(raster, tmp_path / "s2.gpkg", scheme=DEEPGLOBE, min_area=1.2).polygons_per_class["water"] == 1
def test_layer_styles_names_every_class(tmp_path, class_raster):
    out = tmp_path / "styled.gpkg"
    vectorize(class_raster, out, scheme=DEEPGLOBE, layer="land cover 2024")
    assert set(pyogrio.list_layers(out)[:, 0]) == {"land cover 2024", "layer_styles"}
    (style,) = read_gpkg_layer_styles(out)
    assert style["f_table_name"] == "land cover 2024"
    assert style["f_geometry_column"] == "geom"
    assert style["useAsDefault"] == 1
    qml = style["styleQML"]
    assert 'attr="class_id"' in qml and "categorizedSymbol" in qml
    for info in DEEPGLOBE.classes:
        assert f'label="{info.name}"' in qml
        assert "{},{},{},128".format(*info.color) in qml  # filled half transparent


def test_scheme_comes_from_the_raster_sidecars(tmp_path):
    data = np.zeros((40, 50), dtype=np.uint8)
    data[10:20, 10:30] = 1
    raster = write_raster(tmp_path / "buildings.tif", data)
    write_raster_sidecars(raster, INRIA)
    result = vectorize(raster, tmp_path / "buildings.gpkg", classes=["building"])
    frame = read_layer(tmp_path / "buildings.gpkg", "buildings")
    assert list(frame.class_name) == ["building"]
    assert result.area_per_class == {"building": pytest.approx(200 * PIXEL**2)}


def test_scheme_comes_from_the_colour_table(tmp_path):
    data = np.ones((20, 20), dtype=np.uint8)
    raster = write_raster(tmp_path / "cmap.tif", data)
    with rasterio.open(raster, "r+") as dst:
        dst.write_colormap(1, INRIA.colormap())
    vectorize(raster, tmp_path / "cmap.gpkg")
    assert list(read_layer(tmp_path / "cmap.gpkg", "cmap").class_name) == ["building"]


def test_scheme_required_when_the_raster_names_none(tmp_path, class_raster):
    with pytest.raises(InputError, match="scheme=NAME"):
        vectorize(class_raster, tmp_path / "x.gpkg")


def test_fiona_reads_the_output(tmp_path, class_raster):
    fiona = pytest.importorskip("fiona")
    out = tmp_path / "f.gpkg"
    result = vectorize(class_raster, out, scheme="deepglobe")
    with fiona.open(out, layer="landcover") as collection:
        records = list(collection)
        assert collection.crs.to_epsg() == 32618
    assert len(records) == result.n_polygons
    assert set(records[0]["properties"]) == {"class_id", "class_name", "area_m2"}


def test_progress_reports_every_block(tmp_path, class_raster):
    calls = []
    result = vectorize(class_raster, tmp_path / "p.gpkg", scheme=DEEPGLOBE, block_size=64,
                       progress=lambda done, total: calls.append((done, total)))
    assert calls == [(i, 9) for i in range(1, 10)]
    assert result.n_blocks == 9
    assert isinstance(result, VectorizeResult)


def test_empty_selection_writes_an_empty_styled_layer(tmp_path):
    data = np.full((30, 30), FOREST, dtype=np.uint8)
    raster = write_raster(tmp_path / "forest.tif", data)
    result = vectorize(raster, tmp_path / "none.gpkg", scheme=DEEPGLOBE, classes=["water"])
    assert result.n_polygons == 0
    assert len(read_layer(tmp_path / "none.gpkg", "forest")) == 0
    assert len(read_gpkg_layer_styles(tmp_path / "none.gpkg")) == 1


def test_real_inria_buildings_round_trip(tmp_path, sample_file):
    gt = sample_file("inria", "austin_crop_top_gt.tif")
    with rasterio.open(gt) as src:
        mask, profile = src.read(1), src.profile
    classes = (mask == 255).astype(np.uint8)
    profile.update(count=1, dtype="uint8", nodata=NODATA_ID)
    raster = tmp_path / "austin_classes.tif"
    with rasterio.open(raster, "w", **profile) as dst:
        dst.write(classes, 1)
    result = vectorize(raster, tmp_path / "austin.gpkg", scheme=INRIA, classes=["building"], block_size=256)
    frame = read_layer(tmp_path / "austin.gpkg", "austin_classes")
    burnt = rasterize(zip(frame.geometry, frame.class_id), out_shape=classes.shape, transform=profile["transform"],
                      fill=0, dtype="uint8")
    assert np.array_equal(burnt, classes)
    assert frame.crs.to_epsg() == 26914
    pixel_area = abs(profile["transform"].determinant)
    assert result.area_per_class["building"] == pytest.approx(classes.sum() * pixel_area)


# --------------------------------------------------------------------------------------
# Command line


# --------------------------------------------------------------------------------------
# Nodata, foreign values and rasters without georeferencing (issue 16)


def test_only_the_declared_nodata_is_nodata(tmp_path, classes_array):
    undeclared = write_raster(tmp_path / "undeclared.tif", classes_array, nodata=None)
    with pytest.raises(InputError, match=r"holds the value 255.*pass nodata=255"):
        vectorize(undeclared, tmp_path / "a.gpkg", scheme=DEEPGLOBE, block_size=64)
    # named by the caller: the same polygons as a raster that declares it
    vectorize(undeclared, tmp_path / "b.gpkg", scheme=DEEPGLOBE, nodata=NODATA_ID, layer="landcover")
    assert np.array_equal(reburn(read_layer(tmp_path / "b.gpkg"), classes_array.shape), classes_array)
    # a declared nodata other than 255: 255 is then a foreign value, 0 is nodata
    zero = write_raster(tmp_path / "zero.tif", np.where(classes_array == NODATA_ID, 0, classes_array), nodata=0)
    result = vectorize(zero, tmp_path / "c.gpkg", scheme=DEEPGLOBE)
    assert "unknown" not in result.polygons_per_class  # class 0 is nodata here
    with pytest.raises(InputError, match="nodata must be an integer"):
        vectorize(zero, tmp_path / "d.gpkg", scheme=DEEPGLOBE, nodata=2.5)


def test_polygons_of_a_raster_without_georeferencing_lie_on_it(tmp_path, classes_array):
    """QGIS (GDAL) shows a raster without geotransform at 0,-height : width,0."""
    height, width = classes_array.shape
    image = tmp_path / "plain.png"
    with rasterio.open(image, "w", driver="PNG", width=width, height=height, count=1, dtype="uint8") as dst:
        dst.write(np.where(classes_array == NODATA_ID, 0, classes_array), 1)
    with rasterio.open(image) as src:
        assert src.crs is None and src.transform == rasterio.Affine.identity()
    out = tmp_path / "plain.gpkg"
    result = CliRunner().invoke(cli, ["-q", "vectorize", str(image), "-o", str(out), "--scheme", "deepglobe"])
    assert result.exit_code == 0, result.output
    info = pyogrio.read_info(out, layer="plain")
    assert info["crs"] is None
    np.testing.assert_allclose(info["total_bounds"], (0, -height, width, 0))
    frame = pyogrio.read_dataframe(out, layer="plain")
    burnt = rasterize(zip(frame.geometry, frame.class_id), out_shape=classes_array.shape,
                      transform=rasterio.Affine(1, 0, 0, 0, -1, 0), fill=NODATA_ID, dtype="uint8")
    assert np.array_equal(burnt, np.where(classes_array == NODATA_ID, 0, classes_array))


def test_no_third_party_warning_leaks(tmp_path, classes_array):
    import subprocess
    import sys

    bare = write_raster(tmp_path / "bare.tif", classes_array, crs=None, transform=rasterio.Affine.identity())
    run = subprocess.run(
        [sys.executable, "-W", "always", "-c", "from glgeo.cli.main import cli; cli()", "vectorize", str(bare),
         "-o", str(tmp_path / "b.gpkg"), "--scheme", "deepglobe"],
        capture_output=True, text=True,
    )
    assert run.returncode == 0, run.stderr
    assert "Warning" not in run.stderr and "'crs' was not provided" not in run.stderr


# --------------------------------------------------------------------------------------
# Pixels that get no polygon are counted and named: min_area, a nodata value that is a class


def specks_array() -> np.ndarray:
    """20 x 20 px of forest and urban with three classes smaller than 1 m² (4 px at 50 cm)."""
    data = np.full((20, 20), FOREST, dtype=np.uint8)
    data[:, 10:] = URBAN
    data[2, 2] = 0  # unknown, 1 px
    data[5, 5:7] = data[6, 5] = 2  # agriculture, 3 px
    data[15, 15] = WATER  # 1 px
    return data


@pytest.mark.parametrize("block_size", [8, 4096])
def test_min_area_names_the_classes_it_merges_away(tmp_path, caplog, block_size):
    raster = write_raster(tmp_path / "specks.tif", specks_array())
    with caplog.at_level(logging.WARNING, logger="glgeo.vectorization"):
        result = vectorize(raster, tmp_path / "s.gpkg", scheme=DEEPGLOBE, min_area=1.0, block_size=block_size)
    assert set(read_layer(tmp_path / "s.gpkg", "specks").class_name) == {"forest", "urban"}
    assert (
        "3 classes have no region of at least 1 m2 and get no polygon: unknown (1 px), agriculture (3 px),"
        " water (1 px); their pixels were merged into neighbouring regions (pass a smaller min_area to keep them)"
    ) in caplog.text
    assert result.classes_without_polygons == ("unknown", "agriculture", "water")
    assert result.raster_pixels_per_class == {"unknown": 1, "urban": 199, "agriculture": 3, "forest": 196, "water": 1}
    assert result.written_pixels_per_class == {"urban": 200, "forest": 200}
    assert result.merged_regions == 3 and result.merged_pixels == 5
    summary = result.to_dict()
    assert summary["classes_without_polygons"] == ["unknown", "agriculture", "water"]
    assert summary["merged_regions"] == 3 and summary["merged_pixels"] == 5
    assert summary["raster_pixels_per_class"]["agriculture"] == 3 and "agriculture" not in summary["written_pixels_per_class"]


def test_min_area_counts_what_it_merged_once_across_seams(tmp_path):
    rng = np.random.default_rng(5)
    data = np.kron(rng.integers(0, 7, size=(13, 13), dtype=np.uint8), np.ones((10, 10), dtype=np.uint8))[:120, :130]
    noise = rng.random(data.shape) < 0.05
    data[noise] = rng.integers(0, 7, size=int(noise.sum()), dtype=np.uint8)
    data[:12, :12] = NODATA_ID
    raster = write_raster(tmp_path / "noisy.tif", data)
    results = [
        vectorize(raster, tmp_path / f"n{size}.gpkg", scheme=DEEPGLOBE, min_area=5.0, block_size=size)  # 20 px
        for size in (40, 64, 4096)
    ]
    burnt = reburn(read_layer(tmp_path / "n40.gpkg", "noisy"), data.shape)
    changed = (burnt != data) & (data != NODATA_ID)
    # Every merged region is a connected group of changed pixels of one class.
    regions = sum(1 for _ in rasterio.features.shapes(data, mask=changed, connectivity=4))
    for result in results:
        assert result.merged_pixels == int(changed.sum()) > 0
        assert result.merged_regions == regions
        assert result.written_pixels_per_class == {
            info.name: int((burnt == info.id).sum()) for info in DEEPGLOBE.classes if (burnt == info.id).any()
        }
        assert result.nodata_pixels == 144
        assert sum(result.raster_pixels_per_class.values()) == sum(result.written_pixels_per_class.values())


def test_nodata_that_is_a_class_id_is_named_with_its_pixels(tmp_path, caplog):
    data = specks_array()
    data[0:4, 0:4] = 3  # rangeland, declared as nodata below
    raster = write_raster(tmp_path / "declared.tif", data, nodata=3)
    with caplog.at_level(logging.WARNING, logger="glgeo.vectorization"):
        result = vectorize(raster, tmp_path / "a.gpkg", scheme=DEEPGLOBE)
    assert (
        f"the nodata value 3 (declared by {str(raster)!r}) is the class id of rangeland in the 'deepglobe' scheme:"
        " its 16 pixels are left out as nodata and get no polygon; if they are rangeland, pass nodata=255"
    ) in caplog.text
    assert result.nodata_pixels == 16 and "rangeland" not in result.raster_pixels_per_class
    caplog.clear()
    # the way out the warning gives keeps them
    with caplog.at_level(logging.WARNING, logger="glgeo.vectorization"):
        kept = vectorize(raster, tmp_path / "b.gpkg", scheme=DEEPGLOBE, nodata=255)
    assert caplog.text == "" and kept.written_pixels_per_class["rangeland"] == 16 and kept.nodata_pixels == 0
    # an Inria mask saved with nodata=0, or nodata=0 given: background would be lost
    mask = write_raster(tmp_path / "mask.tif", (data == URBAN).astype(np.uint8), nodata=None)
    with caplog.at_level(logging.WARNING, logger="glgeo.vectorization"):
        vectorize(mask, tmp_path / "c.gpkg", scheme=INRIA, nodata=0)
    assert "the nodata value 0 (passed) is the class id of background in the 'inria' scheme: its 201 pixels" in caplog.text
    caplog.clear()
    # nothing lost when the class is not asked for, or when no pixel holds the value
    with caplog.at_level(logging.WARNING, logger="glgeo.vectorization"):
        vectorize(raster, tmp_path / "d.gpkg", scheme=DEEPGLOBE, classes=["forest"])
        vectorize(mask, tmp_path / "e.gpkg", scheme=INRIA, nodata=1, classes=["background"])
        vectorize(write_raster(tmp_path / "f.tif", specks_array(), nodata=3), tmp_path / "f.gpkg", scheme=DEEPGLOBE)
    assert caplog.text == ""


def test_min_area_over_the_whole_raster_is_an_error(tmp_path):
    raster = write_raster(tmp_path / "tiny.tif", specks_array())  # 20 x 20 px of 0.25 m2: 100 m2
    out = tmp_path / "t.gpkg"
    for min_area in (100.0, 1e6):
        with pytest.raises(InputError, match=r"at least the raster's whole area \(20 x 20 = 400 pixels, 100 m2\):"
                                             r" no region could be kept; pass a min_area of at most 99.75 m2"):
            vectorize(raster, out, scheme=DEEPGLOBE, min_area=min_area)
    assert not out.exists()
    # just under: runs (forest and urban, 200 px each, stay: neither can take the other)
    result = vectorize(raster, out, scheme=DEEPGLOBE, min_area=99.75)
    assert result.polygons_per_class == {"urban": 1, "forest": 1} and result.merged_pixels == 5


def test_min_area_larger_than_a_block_works_or_names_the_block_size(tmp_path, classes_array, caplog):
    raster = write_raster(tmp_path / "landcover.tif", classes_array)
    # 100 px: more than half a block of 16 px (inexact near seams, with a warning), less than the windows
    with caplog.at_level(logging.WARNING, logger="glgeo.vectorization"):
        result = vectorize(raster, tmp_path / "a.gpkg", scheme=DEEPGLOBE, min_area=25.0, block_size=16)
    assert "more than half of block_size (16)" in caplog.text and "pass block_size=200 or more" in caplog.text
    assert "block size" not in caplog.text
    assert read_layer(tmp_path / "a.gpkg").area_m2.sum() == pytest.approx((classes_array != NODATA_ID).sum() * PIXEL**2)
    assert result.merged_regions > 0
    # 1,600 px: more than the 22 x 30 px window of a 16 px block at the raster's last corner
    with pytest.raises(InputError, match=r"more than the blocks of block_size 16 hold with their margin \(the smallest,"
                                         r" at the raster's edges: 660 pixels\); pass block_size=41 or more"):
        vectorize(raster, tmp_path / "b.gpkg", scheme=DEEPGLOBE, min_area=400.0, block_size=16)
    assert not (tmp_path / "b.gpkg").exists()
    result = vectorize(raster, tmp_path / "b.gpkg", scheme=DEEPGLOBE, min_area=400.0, block_size=41)
    assert read_layer(tmp_path / "b.gpkg").area_m2.min() >= 400.0


def test_simplify_is_metres_on_the_ground_in_degrees_too(tmp_path, classes_array):
    """--simplify 2 on a raster in degrees: 2 m on the ground, as on a projected one (it was 2
    degrees, far more than the raster, and halved the classes' areas without a word)."""
    geographic = write_raster(tmp_path / "geo.tif", classes_array, crs="EPSG:4326",
                              transform=from_origin(-74.0, 40.7, 1e-5, 1e-5))
    exact = vectorize(geographic, tmp_path / "exact.gpkg", scheme=DEEPGLOBE)
    simplified = vectorize(geographic, tmp_path / "simple.gpkg", scheme=DEEPGLOBE, simplify=2.0)
    for name, area in exact.area_per_class.items():
        assert simplified.area_per_class[name] == pytest.approx(area, rel=0.1), name
    frame = pyogrio.read_dataframe(tmp_path / "simple.gpkg")
    exact_frame = pyogrio.read_dataframe(tmp_path / "exact.gpkg")
    assert shapely.get_num_coordinates(frame.geometry.values).sum() < shapely.get_num_coordinates(exact_frame.geometry.values).sum()


def test_simplify_treats_a_shape_alike_whichever_way_it_lies_on_stretched_pixels(tmp_path):
    """At 60 deg N a pixel of 1e-5 x 1e-5 deg is 0.558 m across and 1.114 m down. Two bumps of
    the same ground size, 4.46 m out of a field and 11.1 m along it, one on its east side (8
    px out, 10 rows along) and one on its north side (4 rows out, 20 px along), go at the same
    tolerance, and at the one the area rule (Visvalingam-Whyatt) sets on the ground: a
    corner's triangle of 4.46 x 11.1 / 2 = 24.9 m2, so kept at 4.5 m and gone at 5.5 m. A
    distance rule in pixels would remove one bump before the other; a tolerance converted
    with the pixel's width (or height) instead of the root of its area would remove both at
    3.5 m (or keep both up to 7 m)."""
    classes = np.full((200, 200), URBAN, dtype=np.uint8)
    classes[60:140, 40:160] = FOREST  # the field
    classes[90:100, 160:168] = FOREST  # east bump
    classes[56:60, 90:110] = FOREST  # north bump
    transform = from_origin(10.0, 60.001, 1e-5, 1e-5)
    raster = write_raster(tmp_path / "stretched.tif", classes, crs="EPSG:4326", transform=transform)
    east = shapely.box(*(transform * (160, 100)), *(transform * (168, 90)))
    north = shapely.box(*(transform * (90, 60)), *(transform * (110, 56)))

    def kept(tolerance):
        out = tmp_path / f"s{tolerance}.gpkg"
        vectorize(raster, out, scheme=DEEPGLOBE, simplify=tolerance, classes=["forest"])
        field = shapely.union_all(read_layer(out, "stretched").geometry.values)
        return (round(field.intersection(east).area / east.area, 2), round(field.intersection(north).area / north.area, 2))

    fates = {tolerance: kept(tolerance) for tolerance in (2.0, 3.0, 4.0, 4.5, 5.5, 6.0, 7.0, 8.0)}
    assert fates[4.5] == (1.0, 1.0) and fates[5.5] == (0.0, 0.0), fates
    for tolerance, (east_kept, north_kept) in fates.items():
        assert east_kept == north_kept, (tolerance, fates)


def test_regions_under_min_area_that_touch_only_each_other_merge(tmp_path, caplog):
    """An island in nodata of 300 px urban beside 400 px forest: min_area 350 merged urban
    into forest, min_area 500 kept both (GDAL's sieve merges only into a neighbour at least
    as large as its threshold, and neither is 500 px), so a larger min_area merged less
    and left two regions under it side by side."""
    classes = np.full((100, 100), NODATA_ID, dtype=np.uint8)
    classes[10:30, 10:25] = URBAN  # 20 x 15 = 300 px
    classes[10:30, 25:45] = FOREST  # 20 x 20 = 400 px
    raster = write_raster(tmp_path / "island.tif", classes, transform=from_origin(500_000.0, 4_400_000.0, 1.0, 1.0))
    # up to 700 m2 urban joins forest; beyond, the 700 m2 island stays whole (no neighbour can
    # take it, and nodata is never filled)
    for min_area in (350.0, 500.0, 699.0, 700.0, 5000.0):
        with caplog.at_level(logging.WARNING, logger="glgeo.vectorization"):
            result = vectorize(raster, tmp_path / f"m{min_area:g}.gpkg", scheme=DEEPGLOBE, min_area=min_area)
        assert result.polygons_per_class == {"forest": 1}, (min_area, result.polygons_per_class)
        assert result.area_per_class["forest"] == pytest.approx(700.0) and result.merged_pixels == 300
    # 5000 px is more than half the default block (2048 px), but a raster of one block has no seams
    assert "block seams" not in caplog.text
