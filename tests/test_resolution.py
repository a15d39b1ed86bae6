"""Ground sample distances, working grids, and the scale a scene is read at for a model."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import numpy as np
import pytest
import rasterio
from affine import Affine

from glgeo.resolution import reading_scale, scaled_size, scaled_transform


def test_working_grid_keeps_the_footprint():
    assert scaled_size(2448, 2448, 0.25) == (612, 612)
    assert scaled_size(7, 900, 0.25) == (2, 225) and scaled_size(1, 1, 0.1) == (1, 1)
    transform = Affine(0.5, 0, 5e5, 0, -0.5, 4e6)
    coarse = scaled_transform(transform, (2448, 2448), (612, 612))
    assert coarse == Affine(2.0, 0, 5e5, 0, -2.0, 4e6)
    assert coarse * (612, 612) == transform * (2448, 2448)  # same bottom-right corner


def _model(gsd=None, scene_scale=1.0):
    return SimpleNamespace(gsd=gsd, scene_scale=scene_scale)


def _scene(gsd, crs=None, transform=Affine.identity(), size=100):
    return SimpleNamespace(gsd=gsd, path="scene.tif", crs=crs, transform=transform, height=size, width=size,
                           measured_by=(crs, transform))


def test_scenes_are_read_at_the_models_resolution(caplog):
    assert reading_scale(_model(gsd=2.0), _scene(0.5)) == 0.25
    assert reading_scale(_model(gsd=2.0), _scene(1.96)) == 1.0  # within the tolerance
    with caplog.at_level(logging.WARNING, logger="glgeo.resolution"):
        assert reading_scale(_model(gsd=0.5), _scene(2.0)) == 1.0  # never upsampled
    assert "coarser than the 0.5 m the model was trained on" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="glgeo.resolution"):  # a quarter coarser or less: no warning
        assert reading_scale(_model(gsd=0.6), _scene(0.666)) == 1.0
    assert "coarser" not in caplog.text
    # without both resolutions: the scale the model was trained at
    assert reading_scale(_model(gsd=None, scene_scale=0.25), _scene(0.3)) == 0.25
    assert reading_scale(_model(gsd=2.0, scene_scale=0.5), _scene(None)) == 0.5


def test_a_chosen_scale_that_reads_coarser_than_the_model_is_warned_about(caplog):
    """scale=0.001 read a 0.3 m scene at 300 m for a 0.6 m model without a word."""
    from glgeo.resolution import run_scale

    with caplog.at_level(logging.WARNING, logger="glgeo.resolution"):
        assert run_scale(_model(gsd=0.6), _scene(0.3), 0.5) == 0.5  # the model's 0.6 m: nothing to say
        assert run_scale(_model(gsd=0.6), _scene(1.2), 1.0) == 1.0  # the file as it is (evaluate's coarser copies)
        assert run_scale(_model(gsd=0.6), _scene(None), 0.001, gsd=None) == 0.001  # the scene's GSD unknown
        assert caplog.records == []
        assert run_scale(_model(gsd=0.6), _scene(0.3), 0.001) == 0.001
        assert run_scale(_model(gsd=0.6), _scene(None), 0.25, gsd=0.3) == 0.25  # GSD from the settings
    assert [r.getMessage() for r in caplog.records] == [
        "scale=0.001 reads scene.tif at 300 m pixels, coarser than the 0.6 m the model was trained on: predictions may"
        " be poor; drop scale=0.001 to read it at the model's resolution",
        "scale=0.25 reads scene.tif at 1.2 m pixels, coarser than the 0.6 m the model was trained on: predictions may"
        " be poor; drop scale=0.25 to read it at the model's resolution",
    ]
    assert run_scale(_model(gsd=2.0), _scene(0.5), None) == 0.25  # no choice: reading_scale


def test_ground_sample_distance_in_metres():
    from glgeo.resolution import ground_sample_distance

    utm = rasterio.crs.CRS.from_epsg(32631)
    assert ground_sample_distance(utm, Affine(0.5, 0, 4e5, 0, -0.5, 5e6)) == pytest.approx(0.5)
    assert ground_sample_distance(utm, Affine(0.3, 0.1, 4e5, 0.1, -0.3, 5e6)) == pytest.approx(np.sqrt(0.09 + 0.01))  # |ae - bd|
    feet = rasterio.crs.CRS.from_epsg(2263)  # NY Long Island, US survey feet
    assert ground_sample_distance(feet, Affine(1, 0, 9e5, 0, -1, 2e5)) == pytest.approx(0.3048, abs=1e-4)
    # geographic: 1e-5 degree pixels at 60 N are 1.1141 m tall and 0.5580 m wide (WGS84's
    # degrees of latitude and longitude there: 111,412 and 55,800 m)
    wgs84 = rasterio.crs.CRS.from_epsg(4326)
    gsd = ground_sample_distance(wgs84, Affine(1e-5, 0, 10.0, 0, -1e-5, 60.005), height=1000)
    assert gsd == pytest.approx(np.sqrt(1.11412 * 0.55800), rel=1e-4)
    assert ground_sample_distance(None, Affine.identity()) is None


def test_a_web_mercator_scene_is_read_at_its_ground_resolution():
    """Web Mercator's metres are 1 / cos(latitude) of the ground's: 0.75 of its "metres" at
    Joplin (37.1 N) are 0.6 m on the ground, 0.5 at 60 N are 0.25 m. The scene is read so
    that the model sees its own ground resolution (it was read 1.25 and 2 times too fine)."""
    from glgeo.resolution import ground_sample_distance

    mercator = rasterio.crs.CRS.from_epsg(3857)
    at_joplin = Affine(0.75, 0, -10_520_000, 0, -0.75, 4_450_000)
    assert ground_sample_distance(mercator, at_joplin, 1000, 1000) == pytest.approx(0.6, rel=5e-3)
    at_60n = Affine(0.5, 0, 1_113_000, 0, -0.5, 8_399_738)  # 10 E, 60 N
    assert ground_sample_distance(mercator, at_60n, 100, 100) == pytest.approx(0.25, rel=5e-3)
    assert reading_scale(_model(gsd=2.0, scene_scale=0.25), _scene(ground_sample_distance(mercator, at_60n, 100, 100))) \
        == pytest.approx(0.125, rel=5e-3)


def test_pixels_far_from_square_on_the_ground_are_warned_about(caplog):
    """A scene in degrees at 60 N has pixels twice as tall as wide on the ground: read at one
    scale for both axes, the model, which learned square pixels, sees the ground squeezed
    north-south. UTM and Web Mercator (conformal) pixels are square: no warning; nor where
    each axis is read at its own scale (:func:`reading_scale`)."""
    from glgeo.resolution import ground_pixel_sides, warn_if_stretched

    wgs84 = rasterio.crs.CRS.from_epsg(4326)
    at_60n = Affine(1e-5, 0, 10.0, 0, -1e-5, 60.005)
    across, down = ground_pixel_sides(wgs84, at_60n, 1000, 1000)
    assert across == pytest.approx(0.5580, rel=1e-3) and down == pytest.approx(1.1141, rel=1e-3)
    geo = SimpleNamespace(crs=wgs84, transform=at_60n, height=1000, width=1000, path="geo.tif")
    with caplog.at_level(logging.WARNING, logger="glgeo.resolution"):
        warn_if_stretched(geo)
        warn_if_stretched(geo, 0.5)
    assert [r.getMessage() for r in caplog.records] == [
        f"geo.tif has pixels of 0.558 x 1.11 m on the ground (EPSG:4326){at}: the model sees the ground squeezed 2.00"
        " times north-south, which costs accuracy; leave the reading scale to glgeo (it reads each axis at its own"
        " scale) or reproject the scene to a projected CRS with square pixels (e.g. its UTM zone)"
        for at in ("", ", read at 0.5")
    ]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="glgeo.resolution"):
        warn_if_stretched(geo, (1.0, 0.5))  # each axis at its own: square
        for crs, transform in ((rasterio.crs.CRS.from_epsg(3857), Affine(0.5, 0, 1_113_000, 0, -0.5, 8_399_738)),
                               (rasterio.crs.CRS.from_epsg(32631), Affine(0.5, 0, 4e5, 0, -0.5, 5e6)),
                               (wgs84, Affine(1e-5, 0, 10.0, 0, -1e-5, 0.005)),  # the equator
                               (None, Affine.identity())):
            warn_if_stretched(SimpleNamespace(crs=crs, transform=transform, height=100, width=100, path="x.tif"))
    assert caplog.records == []


@pytest.mark.parametrize("model_gsd, scene_scale, expected", [
    (0.6, 1.0, (1.0, 0.5008)),  # the model's 0.6 m is finer than the pixels' 1.11 m side: read at that side
    (2.0, 0.25, (0.5571, 0.279)),  # a coarser model's 2 m, square
    (None, 1.0, (1.0, 0.5008)),  # no model GSD: the coarser side, square
    (None, 0.5, (0.5, 0.2504)),  # the model's training scale for the coarser side
])
def test_a_scene_in_degrees_is_read_with_square_pixels_on_the_ground(model_gsd, scene_scale, expected):
    """1e-5 degree pixels at 60 N are 0.558 m wide and 1.11 m tall on the ground. One scale
    for both axes would show the model the ground squeezed twice north-south; each axis is
    read at its own scale instead, ``(rows, cols)``, so that working pixels are square."""
    from glgeo.io import working_grid
    from glgeo.resolution import ground_pixel_sides, ground_sample_distance

    wgs84 = rasterio.crs.CRS.from_epsg(4326)
    at_60n = Affine(1e-5, 0, 10.0, 0, -1e-5, 60.005)
    scene = _scene(ground_sample_distance(wgs84, at_60n, 1000, 1000), wgs84, at_60n, 1000)
    scale = reading_scale(_model(gsd=model_gsd, scene_scale=scene_scale), scene)
    assert scale == pytest.approx(expected, rel=1e-3)
    across, down = ground_pixel_sides(wgs84, at_60n, 1000, 1000)
    assert across / scale[1] == pytest.approx(down / scale[0], rel=2e-3)  # square on the ground
    grid = working_grid(_info(wgs84, at_60n), scale)
    assert (grid.height, grid.width) == (round(1000 * scale[0]), round(1000 * scale[1]))
    # the working grid covers the scene's footprint
    assert grid.transform @ (grid.width, grid.height) == pytest.approx(at_60n @ (1000, 1000))


def _info(crs, transform, size=1000):
    from glgeo.io import SceneInfo

    return SceneInfo(path="geo.tif", width=size, height=size, count=3, dtype="uint8", crs=crs, transform=transform,
                     nodata=None, bands=(1, 2, 3), block_shape=(256, 256), has_mask=False, has_overviews=False)


def test_pixels_square_within_the_tolerance_keep_one_scale():
    """Near the equator (1.004 times taller than wide) and in UTM the scale stays one number."""
    wgs84 = rasterio.crs.CRS.from_epsg(4326)
    near_equator = Affine(5e-6, 0, 10.0, 0, -5e-6, 5.0)
    from glgeo.resolution import ground_sample_distance

    scene = _scene(ground_sample_distance(wgs84, near_equator, 100, 100), wgs84, near_equator)
    assert isinstance(reading_scale(_model(gsd=2.0), scene), float)


def test_whole_pixels_takes_numpy_integers_and_refuses_the_rest():
    import numpy as np

    from glgeo.resolution import whole_pixels

    assert whole_pixels(np.int64(128), 32) == 128 and type(whole_pixels(np.int64(128), 32)) is int
    assert [whole_pixels(v, 32) for v in (31, 128.0, True, "64", None)] == [None] * 5
