"""benchmarks/seam_source.py: its global images really come from the other scene."""

from __future__ import annotations

import numpy as np
import rasterio

from glgeo.inference import InferenceSettings
from glgeo.segmentation import segment

from fixtures.benchmarks import load_benchmark
from fixtures.checkpoints import tiny_checkpoint
from fixtures.rasters import blocky_scene


def _classes(path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(1)


def test_a_global_mode_map_follows_the_scene_its_global_images_come_from(tmp_path):
    """In global mode the map is the global view's alone: a scene segmented with another
    scene's global images gets that scene's map, and its own once the swap is over."""
    seam_source = load_benchmark("seam_source")
    first, second = blocky_scene(tmp_path / "a.tif", seed=1), blocky_scene(tmp_path / "b.tif", seed=2)
    model = tiny_checkpoint(mode="global", seed=3)
    settings = InferenceSettings(device="cpu", precision="fp32")

    def classes(scene, name: str) -> np.ndarray:
        segment(scene, tmp_path / name, model=model, settings=settings)
        return _classes(tmp_path / name)

    own, other = classes(first, "own.tif"), classes(second, "other.tif")
    assert (own != other).mean() > 0.1  # the two scenes get different maps
    with seam_source.global_images_from(second):
        swapped = classes(first, "swapped.tif")
    np.testing.assert_array_equal(swapped, other)
    np.testing.assert_array_equal(classes(first, "after.tif"), own)
