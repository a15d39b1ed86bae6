"""Runs examples/vectorize_scene.py on the real sample data and checks what it wrote."""

from __future__ import annotations

import numpy as np
import pyogrio
import rasterio
from rasterio.features import rasterize

from glgeo.styles import read_gpkg_layer_styles


def test_vectorize_scene_example(sample_data, sample_file, run_example, tmp_path):
    mask = sample_file("inria", "austin_crop_top_gt.tif")
    completed = run_example("vectorize_scene.py", "--data", sample_data, "--out-dir", tmp_path, timeout=300)
    assert "buildings" in completed.stdout and "EPSG:26914" in completed.stdout

    frame = pyogrio.read_dataframe(tmp_path / "buildings.gpkg", layer="buildings")
    assert frame.crs.to_epsg() == 26914
    assert set(frame.class_name) == {"building"}
    assert frame.area_m2.min() >= 4.0
    with rasterio.open(mask) as src:
        buildings = src.read(1) == 255
        transform, bounds = src.transform, src.bounds
    burnt = rasterize(frame.geometry, out_shape=buildings.shape, transform=transform, fill=0, dtype="uint8") == 1
    # Simplified and sieved, the polygons still cover the buildings closely.
    agreement = (burnt & buildings).sum() / (burnt | buildings).sum()
    assert agreement > 0.95
    minx, miny, maxx, maxy = frame.total_bounds
    assert bounds.left <= minx and maxx <= bounds.right and bounds.bottom <= miny and maxy <= bounds.top
    (style,) = read_gpkg_layer_styles(tmp_path / "buildings.gpkg")
    assert 'label="building"' in style["styleQML"]
    assert (tmp_path / "austin_classes.qml").is_file()
    np.testing.assert_array_equal(sorted(np.unique(rasterio.open(tmp_path / "austin_classes.tif").read(1))), [0, 1])
