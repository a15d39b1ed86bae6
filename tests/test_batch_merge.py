"""glgeo.batch.merge: scenes' polygons merged into one GeoPackage."""

from __future__ import annotations

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
            dst.update_tags(GLGEO_MODEL="tiny.pt", GLGEO_MODEL_SHA256="abc", GLGEO_MODE="g2l")
        parts.append((str(raster), vectorize(raster, tmp_path / f"tile_{i}.gpkg", scheme=DEEPGLOBE).path))
    merged = merge_vectors(parts, tmp_path / "all.gpkg")
    metadata = pyogrio.read_info(merged, layer="all")["layer_metadata"]
    assert metadata["GLGEO_MODEL"] == "tiny.pt" and metadata["GLGEO_MODEL_SHA256"] == "abc"
    assert metadata["GLGEO_MERGED_SCENES"] == "2" and "GLGEO_SOURCE_RASTER" not in metadata
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
    assert root.findtext("title") == "all" and root.findtext("abstract").startswith("Polygons of 2 scenes (column scene)")
    assert "GLGEO_MERGED_SCENES: 2" in [h.text for h in root.findall("history")]
