"""Every GeoPackage glgeo writes: version 1.2, single polygons, provenance as layer metadata."""

from __future__ import annotations

import sqlite3

import geopandas as gpd
import pyogrio
import pytest
import shapely

from glgeo.errors import OutputError
from glgeo.gpkg import write_polygons


def _frame(n: int) -> gpd.GeoDataFrame:
    boxes = [shapely.box(i, 0, i + 1, 1) for i in range(n)]
    return gpd.GeoDataFrame({"class_id": list(range(n))}, geometry=boxes, crs="EPSG:32631")


def test_layers_are_created_then_appended(tmp_path):
    path = tmp_path / "out.gpkg"
    write_polygons(_frame(2), path, "buildings", append=False, metadata={"GLGEO_MODEL": "m"})
    write_polygons(_frame(3), path, "buildings", append=True)
    frame = pyogrio.read_dataframe(path, layer="buildings")
    assert len(frame) == 5 and frame.crs.to_epsg() == 32631
    info = pyogrio.read_info(path, layer="buildings")
    assert info["geometry_type"] == "Polygon" and info["layer_metadata"] == {"GLGEO_MODEL": "m"}
    with sqlite3.connect(path) as db:
        (version,) = db.execute("PRAGMA user_version").fetchone()
    assert version == 10200  # GeoPackage 1.2


def test_an_unwritable_file_names_the_target(tmp_path):
    with pytest.raises(OutputError, match="cannot write the GeoPackage 'final.gpkg'"):
        write_polygons(_frame(1), tmp_path / "missing" / "x.gpkg", "a", append=False, target="final.gpkg")
