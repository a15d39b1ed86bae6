"""Class areas in the units a CRS allows, and how they are printed."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS

from glgeo.areas import area_unit, class_areas, format_class_areas, raster_class_areas
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
    areas, unit = class_areas(counts, INRIA, CRS.from_epsg(32631), Affine(0.5, 0, 5e5, 0, -0.5, 4e6))
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


def test_mercator_areas_are_flagged_with_their_factor():
    """Web Mercator's m² overstate the ground's by 1 / cos²(latitude): x1.57 at 37.1 N."""
    from affine import Affine
    from rasterio.crs import CRS

    from glgeo.areas import mercator_area_note

    at_joplin = Affine(0.5, 0, -10_520_000, 0, -0.5, 4_450_000)  # about 37.1 N
    note = mercator_area_note(CRS.from_epsg(3857), at_joplin, 100, 100)
    assert note.startswith("areas in EPSG:3857 (a Mercator projection) are its own m², which overstate the ground's")
    assert "1.57 times the ground's at latitude 37.1" in note
    assert "1 / cos²(latitude);" in mercator_area_note(CRS.from_epsg(3395))  # no place given: no factor
    for other in (CRS.from_epsg(32615), CRS.from_epsg(26915), CRS.from_epsg(4326), None):
        assert mercator_area_note(other, at_joplin, 100, 100) is None  # UTM is a transverse Mercator
