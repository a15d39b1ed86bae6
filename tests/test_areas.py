"""Class areas in the units a CRS allows, and how they are printed."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS

from glgeo.areas import AreaTally, PixelAreas, area_unit, format_class_areas, raster_class_areas
from glgeo.errors import InputError
from glgeo.schemes import INRIA, NODATA_ID
from glgeo.styles import SCHEME_TAG

from fixtures.rasters import write_geotiff


def test_units_follow_the_crs():
    half_metre = Affine(0.5, 0, 5e5, 0, -0.5, 4e6)
    assert area_unit(CRS.from_epsg(32631), half_metre) == ("m2", 1.0)
    unit, factor = area_unit(CRS.from_epsg(2263), Affine(1, 0, 9e5, 0, -1, 2e5))  # US survey feet
    assert unit == "m2" and factor == pytest.approx(0.3048**2, rel=1e-5)
    assert area_unit(CRS.from_epsg(4326), Affine(1e-5, 0, 10, 0, -1e-5, 60)) == ("deg2", 1.0)
    assert area_unit(None, Affine(1, 0, 0, 0, -1, 0)) == ("px", 1.0)
    assert area_unit(None, half_metre) == ("map unit2", 1.0)


def test_class_areas_count_pixels_times_their_area():
    counts = np.zeros(256, dtype=np.int64)
    counts[[0, 1, NODATA_ID]] = [300, 100, 50]  # nodata is not a share of the valid pixels
    tally = AreaTally(PixelAreas(CRS.from_epsg(32631), Affine(0.5, 0, 5e5, 0, -0.5, 4e6), 100, 100))
    tally.counts[:] = counts
    areas, unit = tally.class_areas(INRIA)
    assert unit == "m2"
    assert [(a.name, a.pixels, a.area, a.fraction) for a in areas] == [("background", 300, 75.0, 0.75),
                                                                      ("building", 100, 25.0, 0.25)]
    assert format_class_areas(areas, unit) == ["    0 background  75 m2   75.00 %  300 px",
                                               "    1 building    25 m2   25.00 %  100 px"]


def test_a_class_raster_is_read_back_block_by_block(tmp_path):
    ids = np.zeros((64, 80), dtype=np.uint8)
    ids[:16] = 1
    ids[-4:] = NODATA_ID
    raster = write_geotiff(tmp_path / "map.tif", ids, nodata=NODATA_ID, res=2.0, tiled=True, blockxsize=16, blockysize=16)
    with pytest.raises(InputError, match="carries no class scheme: it was not written by glgeo"):
        raster_class_areas(raster)
    with rasterio.open(raster, "r+") as dst:
        dst.update_tags(**{SCHEME_TAG: json.dumps(INRIA.to_dict())})
    areas, unit = raster_class_areas(raster)
    assert unit == "m2" and [a.pixels for a in areas] == [44 * 80, 16 * 80] and areas[1].area == 16 * 80 * 4.0


def test_a_packed_class_raster_counts_its_own_nodata_as_nodata(tmp_path):
    """glgeo writes Inria ids in 2 bits with nodata 3: 3 is nodata, not a share of the area."""
    from glgeo.blend import RowBand
    from glgeo.io import SceneInfo
    from glgeo.writer import ClassRasterWriter

    ids = np.zeros((64, 80), dtype=np.uint8)
    ids[:16] = 1
    ids[-4:] = NODATA_ID
    info = SceneInfo(path="scene.tif", height=64, width=80, count=3, bands=(1, 2, 3), dtype="uint8",
                     crs=CRS.from_epsg(32618), transform=Affine(2.0, 0, 500000, 0, -2.0, 4400000), nodata=None,
                     has_mask=False, block_shape=(64, 80))
    raster = tmp_path / "packed.tif"
    with ClassRasterWriter(raster, info, INRIA) as writer:
        writer.write(RowBand(0, ids))
        writer.commit()
    with rasterio.open(raster) as src:
        assert src.nodata == 3 and (src.read(1)[-4:] == 3).all()
    areas, unit = raster_class_areas(raster)
    assert [a.pixels for a in areas] == [44 * 80, 16 * 80]
    assert [a.fraction for a in areas] == pytest.approx([44 / 60, 16 / 60])


def test_format_area_picks_the_unit_that_fits():
    from glgeo.areas import format_area

    assert format_area(850.0, "m2") == "850 m2"
    assert format_area(123_456.0, "m2") == "12.35 ha"
    assert format_area(15_767_418_536.5, "m2") == "15,767.42 km2"
    assert format_area(5_188_474.0, "px") == "5,188,474 px"


def _footprint_area(crs, transform, width, height) -> float:
    """The geodesic area (m²) of a raster's footprint, measured by pyproj on its own."""
    import shapely

    from glgeo.areas import ground_areas

    t = transform
    corners = [(t.a * c + t.b * r + t.c, t.d * c + t.e * r + t.f) for c, r in ((0, 0), (width, 0), (width, height), (0, height))]
    ring = [corners[0]]
    for a, b in zip(corners, corners[1:] + corners[:1]):  # densified edges: a Mercator's straight lines are not geodesics
        ring += [(a[0] + (b[0] - a[0]) * k / 64, a[1] + (b[1] - a[1]) * k / 64) for k in range(1, 65)]
    return float(ground_areas([shapely.Polygon(ring)], crs)[0])


def test_web_mercator_areas_are_measured_on_the_ground():
    """Web Mercator's m² overstate the ground's by 1 / cos²(latitude), x1.57 at Joplin
    (37.1 N): the pixels' areas are the ground's, and the note says what was done."""
    from glgeo.areas import PixelAreas

    at_joplin = Affine(0.5, 0, -10_520_000, 0, -0.5, 4_450_000)
    areas = PixelAreas(CRS.from_epsg(3857), at_joplin, 1000, 800)
    assert areas.ground and areas.unit == "m2"
    assert areas.note == ("areas in m² measured on the ground: EPSG:3857's own m² are 1.57 times the ground's"
                          " at the raster's centre")
    total = areas.block(0, 0, 800, 1000).sum()
    assert total == pytest.approx(_footprint_area(CRS.from_epsg(3857), at_joplin, 1000, 800), rel=1e-6)
    assert total == pytest.approx(1000 * 800 * 0.25 / 1.5716, rel=2e-3)
    # blocks anywhere are the same pixels' areas
    np.testing.assert_allclose(areas.block(300, 200, 5, 7), areas.block(0, 0, 800, 1000)[300:305, 200:207])


def test_geographic_areas_are_square_metres_on_the_ground():
    """A raster in EPSG:4326 (degrees) gets m², each row its own (pixels shrink northwards)."""
    from glgeo.areas import PixelAreas

    transform = Affine(1e-5, 0, -94.5, 0, -1e-5, 37.08)  # about 0.89 x 1.11 m at 37 N
    areas = PixelAreas(CRS.from_epsg(4326), transform, 1000, 1000)
    assert areas.ground and areas.unit == "m2" and "is a geographic CRS" in areas.note
    pixels = areas.block(0, 0, 1000, 1000)
    assert pixels.sum() == pytest.approx(_footprint_area(CRS.from_epsg(4326), transform, 1000, 1000), rel=1e-6)
    assert pixels[0, 0] < pixels[-1, 0] and pixels[0, 0] == pytest.approx(pixels[0, -1])
    assert areas.largest == pytest.approx(pixels.max(), rel=1e-9)


def test_projected_areas_within_one_percent_are_the_projections_own():
    """UTM inside its zone is within 0.1 % of the ground: every pixel is the CRS's own area.
    Far outside its zone (10 degrees west of its meridian) it is not, and is measured."""
    from glgeo.areas import PixelAreas

    inside = PixelAreas(CRS.from_epsg(32615), Affine(0.6, 0, 500_000, 0, -0.6, 4_100_000), 1000, 1000)
    assert not inside.ground and inside.note is None and inside.block(0, 0, 3, 3) == pytest.approx(0.36)
    far = Affine(10, 0, -400_000, 0, -10, 4_100_000)
    outside = PixelAreas(CRS.from_epsg(32615), far, 1000, 1000)
    assert outside.ground and "EPSG:32615's own m² are 1.02 times the ground's" in outside.note
    assert outside.block(0, 0, 1000, 1000).sum() == pytest.approx(
        _footprint_area(CRS.from_epsg(32615), far, 1000, 1000), rel=1e-5
    )
    assert not PixelAreas(None, Affine.identity(), 10, 10).ground


def test_a_tally_sums_each_pixels_own_area():
    """Counted band by band, a class's area is the sum of its pixels' areas, wherever they lie."""
    from glgeo.areas import AreaTally, PixelAreas

    transform = Affine(1e-4, 0, 10.0, 0, -1e-4, 61.0)
    pixel_areas = PixelAreas(CRS.from_epsg(4326), transform, 50, 200)
    ids = np.zeros((200, 50), dtype=np.uint8)
    ids[:100, :10] = 1  # the northern half's buildings: smaller pixels
    ids[150:, 40:] = NODATA_ID
    tally = AreaTally(pixel_areas)
    for top in range(0, 200, 37):  # bands of any height
        tally.add(ids[top : top + 37], top)
    classes, unit = tally.class_areas(INRIA)
    every = pixel_areas.block(0, 0, 200, 50)
    assert unit == "m2"
    assert classes[1].pixels == 1000 and classes[1].area == pytest.approx(every[:100, :10].sum())
    assert classes[0].area == pytest.approx(every[ids == 0].sum())
    # shares of the area: pixels of unequal areas are not shares of the count
    assert classes[1].fraction == pytest.approx(classes[1].area / (classes[0].area + classes[1].area))
    assert classes[1].fraction < 1000 / (200 * 50 - 500)


def test_a_geographic_class_raster_is_read_back_in_square_metres(tmp_path):
    from glgeo.areas import PixelAreas

    ids = np.ones((64, 80), dtype=np.uint8)
    ids[:16] = 0
    transform = Affine(1e-5, 0, -94.5, 0, -1e-5, 37.08)
    raster = write_geotiff(tmp_path / "map.tif", ids, crs="EPSG:4326", transform=transform, nodata=NODATA_ID,
                           tiled=True, blockxsize=16, blockysize=16)
    with rasterio.open(raster, "r+") as dst:
        dst.update_tags(**{SCHEME_TAG: json.dumps(INRIA.to_dict())})
    areas, unit = raster_class_areas(raster)
    every = PixelAreas(CRS.from_epsg(4326), transform, 80, 64).block(0, 0, 64, 80)
    assert unit == "m2" and areas[0].area == pytest.approx(every[:16].sum()) and areas[1].area == pytest.approx(every[16:].sum())


def test_ground_areas_leave_out_holes():
    import shapely

    from glgeo.areas import ground_areas

    square = shapely.box(500_000, 4_100_000, 500_100, 4_100_100)
    holed = square.difference(shapely.box(500_040, 4_100_040, 500_060, 4_100_060))
    whole, with_hole = ground_areas([square, holed], "EPSG:32615")
    assert whole == pytest.approx(10_000 / 0.9996**2, rel=1e-4)  # UTM's scale factor on its meridian
    assert with_hole == pytest.approx(whole * 0.96, rel=1e-6)


def test_crss_in_grads_are_measured_on_the_ground_in_grads():
    """French NTF (Paris) Lambert zones and NTF (Paris) itself count angles in grads: a
    Lambert II raster is within 1 % of the ground (planar m²), and a raster in grads gets
    each pixel's ground area, not a degree's (they were 10-17 % off)."""
    from glgeo.areas import PixelAreas, ground_areas

    lambert = PixelAreas(CRS.from_epsg(27572), Affine(0.5, 0, 600_000, 0, -0.5, 2_430_000), 1000, 1000)
    assert not lambert.ground and lambert.block(0, 0, 1, 1) == pytest.approx(0.25)
    # the same 0.001 x 0.001 grad square near Paris, in grads and in degrees (0.0009 degrees)
    grads = PixelAreas(CRS.from_epsg(4807), Affine(1e-5, 0, 0.0, 0, -1e-5, 54.3), 100, 100).block(0, 0, 100, 100).sum()
    degrees = PixelAreas(CRS.from_epsg(4275), Affine(9e-6, 0, 2.33722917, 0, -9e-6, 48.87), 100, 100).block(0, 0, 100, 100).sum()
    assert grads == pytest.approx(degrees, rel=1e-4)
    import shapely

    square = shapely.box(0.0, 54.299, 0.001, 54.3)
    assert ground_areas([square], "EPSG:4807")[0] == pytest.approx(grads, rel=1e-4)
    # Lambert II's areal scale there is 1.00107 (PROJ's own factors)
    assert ground_areas([shapely.box(600_000, 2_429_500, 600_500, 2_430_000)], "EPSG:27572")[0] == pytest.approx(
        250_000 / 1.0010691, rel=1e-6)


def test_polygons_and_pixel_sums_agree_on_rasters_degrees_wide():
    """A row-aligned edge across a 3 degree raster is a parallel, not a geodesic: a polygon's
    area is the sum of its pixels' areas (pyproj's geodesic areas were 0.4 % off)."""
    import shapely

    from glgeo.areas import PixelAreas, ground_areas

    transform = Affine(0.01, 0, 10.0, 0, -0.01, 50.0)
    every = PixelAreas(CRS.from_epsg(4326), transform, 300, 300).block(0, 0, 300, 300)
    north_half = shapely.box(10.0, 48.5, 13.0, 50.0)  # rows 0-149
    assert ground_areas([north_half], "EPSG:4326")[0] == pytest.approx(every[:150].sum(), rel=1e-6)
    mercator = Affine(1000, 0, 1_113_000, 0, -1000, 6_446_000)  # 10 E, 50 N, 300 km
    every = PixelAreas(CRS.from_epsg(3857), mercator, 300, 300).block(0, 0, 300, 300)
    box = shapely.box(1_113_000, 6_446_000 - 150_000, 1_413_000, 6_446_000)
    assert ground_areas([box], "EPSG:3857")[0] == pytest.approx(every[:150].sum(), rel=1e-6)


def test_where_the_crs_is_undefined_the_areas_say_so(caplog):
    """A geostationary full disk reaches into space at its corners: its areas cannot be the
    ground's, and a warning says so (it was an INFO line)."""
    import logging

    from glgeo.areas import PixelAreas

    geos = CRS.from_proj4("+proj=geos +h=35785831 +lon_0=0 +sweep=y +ellps=WGS84 +units=m")
    areas = PixelAreas(geos, Affine(30_000, 0, -5_500_000, 0, -30_000, 5_500_000), 367, 367)
    assert not areas.ground and areas.warning.startswith("areas cannot be measured on the ground over this raster")
    with caplog.at_level(logging.INFO):
        areas.report(logging.getLogger("glgeo.test"), "disk.tif")
    assert [(r.levelname, r.getMessage()[:60]) for r in caplog.records] == [
        ("WARNING", "disk.tif: areas cannot be measured on the ground over this r")]
