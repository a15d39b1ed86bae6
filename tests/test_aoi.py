"""Areas of interest: polygons in any CRS, or bounds, become a region in scene pixels."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import shapely
from affine import Affine
from rasterio.crs import CRS

from glgeo.aoi import bounds_box, read_aoi, region_in_pixels, region_mask
from glgeo.errors import InputError
from glgeo.io import SceneInfo

UTM = CRS.from_epsg(32631)
#: 100 x 200 px of 2 m from (500000, 4000000), top-left
SCENE = SceneInfo("scene.tif", 100, 200, 3, (1, 2, 3), "uint8", UTM, Affine(2, 0, 500_000, 0, -2, 4_000_000), None,
                  False, (1, 200))


def test_bounds_become_a_region_in_pixels_clipped_to_the_scene():
    region = region_in_pixels(SCENE, bounds=(500_020, 3_999_900, 500_100, 3_999_980))
    assert region.bounds == (10, 10, 50, 50)
    clipped = region_in_pixels(SCENE, bounds=(499_000, 3_999_900, 500_100, 4_100_000))
    assert clipped.bounds == (0, 0, 50, 50)
    assert region_in_pixels(SCENE) is None
    with pytest.raises(InputError, match=r"bounds=\(0, 0, 1, 1\) does not overlap scene.tif, which covers "
                                         r"\(500000, 3999800, 500400, 4000000\)"):
        region_in_pixels(SCENE, bounds=(0, 0, 1, 1))


def test_polygons_in_another_crs_are_reprojected(tmp_path):
    square = shapely.box(500_020, 3_999_900, 500_100, 3_999_980)
    path = tmp_path / "area.gpkg"
    gpd.GeoDataFrame(geometry=[square], crs=UTM).to_crs("EPSG:4326").to_file(path)
    area = read_aoi(path, UTM)
    assert area.symmetric_difference(square).area < 1.0  # m2, after a round trip through degrees
    region = region_in_pixels(SCENE, aoi=path)
    np.testing.assert_allclose(region.bounds, (10, 10, 50, 50), atol=0.05)
    with pytest.raises(InputError, match="does not exist; check the path"):
        read_aoi(tmp_path / "none.gpkg", UTM)


def test_long_edges_follow_the_projection_s_curve(tmp_path):
    """A box of 10 x 10 degrees drawn in longitudes and latitudes is curved in an equal-area
    CRS: its top edge, the 50th parallel, bows kilometres off the straight chord between its
    corners. The area of interest follows the parallel, not the chord."""
    from pyproj import Transformer

    albers = CRS.from_epsg(5070)
    path = tmp_path / "box.gpkg"
    gpd.GeoDataFrame(geometry=[shapely.box(-100, 40, -90, 50)], crs="EPSG:4326").to_file(path)
    area = read_aoi(path, albers)
    top_middle = shapely.Point(Transformer.from_crs("EPSG:4326", albers.to_wkt(), always_xy=True).transform(-95, 50))
    assert area.boundary.distance(top_middle) < 100  # m; the chord between the corners passes km away
    dense = gpd.GeoSeries([shapely.box(-100, 40, -90, 50).segmentize(0.01)], crs="EPSG:4326").to_crs(albers)[0]
    assert abs(area.area / dense.area - 1) < 1e-3


def test_bounds_must_be_a_box():
    assert bounds_box([1, 2, 3, 4]).bounds == (1, 2, 3, 4)
    with pytest.raises(InputError, match="four numbers"):
        bounds_box([1, 2, 3])
    with pytest.raises(InputError, match="is empty: give left < right and bottom < top"):
        bounds_box([3, 2, 1, 4])


def test_mask_takes_pixel_centres_at_full_resolution_and_touched_cells_when_decimated():
    region = shapely.box(1.2, 0.8, 2.8, 1.9)  # holds the centres of row 1, cols 1-2; touches 2 coarse cells
    full = region_mask(region, 0, 0, 4, 3, (3, 4))
    assert full.astype(int).tolist() == [[0, 0, 0, 0], [0, 1, 1, 0], [0, 0, 0, 0]]
    coarse = region_mask(region, 0, 0, 4, 4, (2, 2))  # 2 x 2 px cells
    assert coarse.astype(int).tolist() == [[1, 1], [0, 0]]


def test_region_of_a_plain_image_is_in_qgis_pixel_coordinates():
    """Without georeferencing, bounds are in the coordinates QGIS shows: x = column, y = -row."""
    from affine import Affine

    from glgeo.aoi import region_in_pixels
    from glgeo.io import SceneInfo

    info = SceneInfo("plain.jpg", 100, 200, 3, (1, 2, 3), "uint8", None, Affine.identity(), None, False, (1, 200))
    region = region_in_pixels(info, bounds=(10, -60, 50, -20))
    assert region.bounds == (10, 20, 50, 60)


def test_polygons_the_scene_crs_cannot_project_are_one_clear_error(tmp_path):
    """A box at 0-1 degrees lies ~90 degrees of longitude from UTM zone 45 (87 E), where
    the projection is undefined (infinite coordinates): refused, not a GEOS traceback."""
    import warnings

    path = tmp_path / "far.geojson"
    gpd.GeoDataFrame(geometry=[shapely.box(0, 0, 1, 1)], crs="EPSG:4326").to_file(path)
    scene = SceneInfo("scene.tif", 100, 200, 3, (1, 2, 3), "uint8", CRS.from_epsg(32645),
                      Affine(2, 0, 500_000, 0, -2, 4_000_000), None, False, (1, 200))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numpy RuntimeWarning on the way either
        with pytest.raises(InputError, match=r"area of interest '.*far\.geojson' cannot be projected into the scene's "
                                             r"CRS \(EPSG:32645\): .*; give polygons near the scene"):
            region_in_pixels(scene, aoi=path)


def test_a_file_of_several_layers_names_the_one_to_use(tmp_path):
    """--aoi read the first layer of a GeoPackage and left the others' polygons out without a
    word: several layers of geometry are refused unless one is named as QGIS names it
    (FILE|layername=NAME); a table without geometry (a styled GeoPackage's layer_styles)
    does not count."""
    path = tmp_path / "areas.gpkg"
    gpd.GeoDataFrame(geometry=[shapely.box(500_020, 3_999_900, 500_100, 3_999_980)], crs=UTM).to_file(path, layer="small")
    gpd.GeoDataFrame(geometry=[shapely.box(500_200, 3_999_850, 500_300, 3_999_950)], crs=UTM).to_file(path, layer="big")
    with pytest.raises(InputError, match=r"holds 2 layers of geometry \(small, big\): name the one to use as "
                                         r"'.*areas.gpkg\|layername=small', as QGIS names a layer of a file"):
        region_in_pixels(SCENE, aoi=path)
    big = region_in_pixels(SCENE, aoi=f"{path}|layername=big")
    np.testing.assert_allclose(big.bounds, (100, 25, 150, 75))
    with pytest.raises(InputError, match="has no layer of geometry 'nope'; layers of geometry: small, big"):
        region_in_pixels(SCENE, aoi=f"{path}|layername=nope")
    with pytest.raises(InputError, match=r"after '\|' give layername=NAME"):
        region_in_pixels(SCENE, aoi=f"{path}|big")
    # one layer of geometry beside a table without: read without naming it
    styled = tmp_path / "styled.gpkg"
    gpd.GeoDataFrame(geometry=[shapely.box(500_020, 3_999_900, 500_100, 3_999_980)], crs=UTM).to_file(styled, layer="a")
    import pandas as pd
    import pyogrio

    pyogrio.write_dataframe(pd.DataFrame({"styleName": ["a"]}), styled, layer="layer_styles")
    np.testing.assert_allclose(region_in_pixels(SCENE, aoi=styled).bounds, (10, 10, 50, 50))
    with pytest.raises(InputError, match="has no layer of geometry 'layer_styles'; layers of geometry: a$"):
        region_in_pixels(SCENE, aoi=f"{styled}|layername=layer_styles")


def test_polygons_in_collections_count_and_other_geometries_are_named(tmp_path, caplog):
    square = shapely.box(500_020, 3_999_900, 500_100, 3_999_980)
    path = tmp_path / "mixed.geojson"
    gpd.GeoDataFrame(geometry=[shapely.GeometryCollection([square, shapely.Point(500_200, 3_999_900)])],
                     crs=UTM).to_file(path)
    with caplog.at_level("WARNING", logger="glgeo.aoi"):
        region = region_in_pixels(SCENE, aoi=path)  # "holds no polygon (GeometryCollection)" before
    np.testing.assert_allclose(region.bounds, (10, 10, 50, 50))
    assert "1 Point left out (only polygons bound an area)" in caplog.text
    # the Python API: a line is not an area ("does not overlap" before); a GeoDataFrame is read in its CRS
    with pytest.raises(InputError, match="holds no polygon \\(LineString\\)"):
        region_in_pixels(SCENE, aoi=shapely.LineString([(500_020, 3_999_900), (500_100, 3_999_980)]))
    frame = gpd.GeoDataFrame(geometry=[square], crs=UTM).to_crs("EPSG:4326")
    np.testing.assert_allclose(region_in_pixels(SCENE, aoi=frame).bounds, (10, 10, 50, 50), atol=0.05)


def test_an_area_and_bounds_that_do_not_meet_say_so():
    """It said 'the area of interest within bounds, (nan, nan, nan, nan), does not overlap the scene'."""
    with pytest.raises(InputError, match=r"^the area of interest and bounds=\(500200, 3999850, 500300, 3999950\) "
                                         r"do not overlap each other; check both$"):
        region_in_pixels(SCENE, aoi=shapely.box(500_020, 3_999_900, 500_100, 3_999_980),
                         bounds=(500_200, 3_999_850, 500_300, 3_999_950))
    with pytest.raises(InputError, match="empty geometry"):
        region_in_pixels(SCENE, aoi=shapely.Polygon())


def test_an_area_that_holds_no_pixel_centre_is_refused():
    """Bounds within one 2 m pixel, off its centre: an all-nodata map, exit 0, and no word."""
    with pytest.raises(InputError, match=r"holds no pixel's centre of scene.tif, so the map would hold no class"):
        region_in_pixels(SCENE, bounds=(500_020.1, 3_999_980.1, 500_020.6, 3_999_980.6))
    # a pixel's centre inside (500021, 3999981): taken
    assert region_in_pixels(SCENE, bounds=(500_020.5, 3_999_980.5, 500_021.5, 3_999_981.5)) is not None
    # a centre on the area's top edge counts, as GDAL's rasterization counts it (region_mask)
    assert region_in_pixels(SCENE, bounds=(500_020.4, 3_999_980.2, 500_021.6, 3_999_981)) is not None
    # two small plots at opposite corners of a large scene: no raster of their whole bounding box
    large = SceneInfo("large.tif", 100_000, 100_000, 3, (1, 2, 3), "uint8", UTM,
                      Affine(2, 0, 500_000, 0, -2, 4_000_000), None, False, (1, 200))
    plots = shapely.union(shapely.box(500_010, 3_999_970, 500_030, 3_999_990),
                          shapely.box(699_950, 3_800_010, 699_970, 3_800_030))
    assert region_in_pixels(large, aoi=plots) is not None
