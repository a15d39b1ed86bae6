"""glgeo.batch.merge: scenes' polygons merged into one GeoPackage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from glgeo.errors import InputError
from glgeo.schemes import DEEPGLOBE, NODATA_ID

from fixtures.batch import CRS, PIXEL


def test_merging_scenes_without_crs_is_refused(tmp_path):
    """Polygons of plain images are in pixel coordinates: merged, they would lie on one square."""
    import warnings

    from glgeo.batch import merge_vectors
    from glgeo.vectorization import vectorize

    parts = []
    for i in range(2):
        image = tmp_path / f"plain_{i}.tif"
        with rasterio.open(image, "w", driver="GTiff", width=32, height=24, count=1, dtype="uint8", nodata=NODATA_ID) as dst:
            dst.write(np.full((24, 32), i + 1, dtype=np.uint8), 1)
        parts.append((str(image), vectorize(image, tmp_path / f"plain_{i}.gpkg", scheme=DEEPGLOBE).path))
    with pytest.raises(InputError, match=r"2 of the 2 scenes to merge have no CRS \(plain_0, plain_1\)"):
        merge_vectors(parts, tmp_path / "all.gpkg")
    assert not (tmp_path / "all.gpkg").exists()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one scene merges, and pyogrio's "'crs' was not provided" stays quiet
        merge_vectors(parts[:1], tmp_path / "one.gpkg")
    assert (tmp_path / "one.gpkg").is_file()


def test_merged_geopackage_says_where_it_came_from(tmp_path):
    import pyogrio

    from glgeo.batch import merge_vectors
    from glgeo.vectorization import vectorize

    parts = []
    for i in range(2):
        raster = tmp_path / f"tile_{i}.tif"
        with rasterio.open(raster, "w", driver="GTiff", width=20, height=20, count=1, dtype="uint8", nodata=NODATA_ID,
                           crs=CRS, transform=from_origin(500_000.0 + 10 * i, 4_000_000.0, PIXEL, PIXEL)) as dst:
            dst.write(np.full((20, 20), 4, dtype=np.uint8), 1)
            dst.update_tags(GLGEO_MODEL="tiny.pt", GLGEO_MODEL_SHA256="abc", GLGEO_MODE="g2l",
                            GLGEO_READING_GSD_M=("0.6", "0.666")[i], GLGEO_CREATED_UTC=f"2026-12-0{i + 1}T10:00:00Z",
                            GLGEO_SCENE=f'{{"path": "tile_{i}.jpg"}}')
        parts.append((str(raster), vectorize(raster, tmp_path / f"tile_{i}.gpkg", scheme=DEEPGLOBE).path))
    merged = merge_vectors(parts, tmp_path / "all.gpkg")
    metadata = pyogrio.read_info(merged, layer="all")["layer_metadata"]
    assert metadata["GLGEO_MODEL"] == "tiny.pt" and metadata["GLGEO_MODEL_SHA256"] == "abc"
    assert metadata["GLGEO_MERGED_SCENES"] == "2" and "GLGEO_SOURCE_RASTER" not in metadata
    # what is each scene's own is not said of all of them: the first scene's once was
    assert metadata["GLGEO_READING_GSD_M"] == "0.6 to 0.666"
    assert "GLGEO_SCENE" not in metadata and "GLGEO_CREATED_UTC" not in metadata
    # QGIS's layer metadata: written for the merged layer, not copied among GDAL's items
    import sqlite3
    import xml.etree.ElementTree as ET

    with sqlite3.connect(merged) as db:
        rows = db.execute("SELECT metadata FROM gpkg_metadata WHERE md_standard_uri = 'http://mrcc.com/qgis.dtd'").fetchall()
        gdal = db.execute("SELECT metadata FROM gpkg_metadata WHERE md_standard_uri = 'http://gdal.org'").fetchall()
    # (GDAL lists a part's QGIS document among its items, as GPKG_METADATA_ITEM_1: not copied)
    assert len(gdal) == 1 and "GLGEO_MERGED_SCENES" in gdal[0][0] and "GPKG_METADATA_ITEM" not in gdal[0][0]
    assert len(rows) == 1
    root = ET.fromstring(rows[0][0].split("\n", 1)[1])
    abstract = root.findtext("abstract")
    assert root.findtext("title") == "all" and abstract.startswith("Polygons of 2 scenes (column scene)")
    assert "a region that spans two scenes is a polygon in each" in abstract and "read at 0.6 to 0.666 m" in abstract
    assert "GLGEO_MERGED_SCENES: 2" in [h.text for h in root.findall("history")]


def _class_raster(path, crs, transform, width=20, height=20):
    """Two classes side by side (DeepGlobe ids 1 and 2), with a hole of class 3 in the first."""
    data = np.full((height, width), 1, dtype=np.uint8)
    data[:, width // 2:] = 2
    data[5:8, 3:6] = 3
    with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=1, dtype="uint8",
                       nodata=NODATA_ID, crs=crs, transform=transform) as dst:
        dst.write(data, 1)
    return path


def _utm_and_wgs84_parts(tmp_path):
    """Two scenes of nearby ground (about 10 m x 10 m each, at 45 N): one in UTM 31N, one in EPSG:4326."""
    import math

    from pyproj import Transformer

    from glgeo.vectorization import vectorize

    utm = _class_raster(tmp_path / "utm.tif", "EPSG:32631", from_origin(500_000.0, 4_983_000.0, PIXEL, PIXEL))
    lon, lat = Transformer.from_crs("EPSG:32631", "EPSG:4326", always_xy=True).transform(500_020.0, 4_983_000.0)
    dy = PIXEL / 111_132.0
    dx = PIXEL / (111_320.0 * math.cos(math.radians(lat)))
    wgs = _class_raster(tmp_path / "wgs84.tif", "EPSG:4326", rasterio.transform.Affine(dx, 0, lon, 0, -dy, lat))
    return [(str(utm), vectorize(utm, tmp_path / "utm.gpkg", scheme=DEEPGLOBE).path),
            (str(wgs), vectorize(wgs, tmp_path / "wgs84.gpkg", scheme=DEEPGLOBE).path)]


@pytest.mark.parametrize("order", ["utm-first", "wgs84-first"])
def test_merged_areas_are_square_metres_in_every_row(tmp_path, order):
    """A scene in EPSG:4326 holds m² on the ground in its own file (it held square degrees,
    2e-8 'm²' for a 25 m² polygon): merged, its rows hold them, like the others'."""
    import pyogrio

    from glgeo.batch import merge_vectors

    parts = _utm_and_wgs84_parts(tmp_path)
    if order == "wgs84-first":
        parts = parts[::-1]
    per_scene = {Path(gpkg).stem: pyogrio.read_dataframe(gpkg, layer=Path(gpkg).stem) for _, gpkg in parts}
    assert per_scene["wgs84"].area_m2.sum() == pytest.approx(100.0, rel=2e-3)  # m², not square degrees
    merged = pyogrio.read_dataframe(merge_vectors(parts, tmp_path / "all.gpkg"), layer="all")
    assert len(merged) == sum(len(f) for f in per_scene.values())
    # every row: area_m2 is the polygon's area in m² (UTM 31N, scale factor 0.9996 at its meridian)
    planar = merged.geometry.to_crs("EPSG:32631").area.to_numpy()
    np.testing.assert_allclose(merged.area_m2.to_numpy(), planar, rtol=2e-3)
    assert merged[merged.scene == "wgs84"].area_m2.sum() == pytest.approx(100.0, rel=2e-3)  # 20 x 20 px of 0.5 m
    # every scene keeps the areas of its own file
    for name in ("utm", "wgs84"):
        np.testing.assert_array_equal(merged[merged.scene == name].area_m2.to_numpy(), per_scene[name].area_m2.to_numpy())


def test_merging_areas_that_cannot_be_given_in_square_metres_is_refused(tmp_path):
    """A CRS without a known unit: its area_m2 cannot join the m² of the other scenes."""
    import geopandas as gpd
    import pyogrio
    import shapely

    from glgeo.batch import merge_vectors

    parts = _utm_and_wgs84_parts(tmp_path)[:1]
    local = 'LOCAL_CS["site grid",LOCAL_DATUM["site",0],UNIT["unknown",1],AXIS["Easting",EAST],AXIS["Northing",NORTH]]'
    frame = gpd.GeoDataFrame({"class_id": [1], "class_name": ["agriculture"], "area_m2": [1.0]},
                             geometry=[shapely.box(0, 0, 1, 1)], crs=local)
    pyogrio.write_dataframe(frame, tmp_path / "site.gpkg", layer="site", driver="GPKG")
    parts.append((str(tmp_path / "site.tif"), tmp_path / "site.gpkg"))
    with pytest.raises(InputError, match=r"^cannot merge the polygons' areas in one unit: 1 of the 2 scenes .*\(site \(LOCAL_CS"):
        merge_vectors(parts, tmp_path / "all.gpkg")
    assert not (tmp_path / "all.gpkg").exists()
