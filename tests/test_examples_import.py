"""examples/import_released.py: convert released-style checkpoints and segment a scene."""

from __future__ import annotations

import numpy as np
import rasterio
import torch
from rasterio.transform import from_origin

from fixtures.rasters import write_geotiff
from glgeo.models.testing import random_released_state


def test_import_released_example_runs(glnet_keys_file, run_example, tmp_path):
    for seed, role in enumerate(("global", "g2l", "l2g")):
        torch.save(random_released_state(glnet_keys_file, seed, 7), tmp_path / f"{role}.pth")
    scene = write_geotiff(tmp_path / "scene.tif", np.random.default_rng(0).integers(0, 255, (3, 260, 300), dtype=np.uint8),
                          crs="EPSG:32618", transform=from_origin(500000, 4000000, 0.5, 0.5))
    out = tmp_path / "landcover.tif"
    run = run_example("import_released.py", str(tmp_path / "global.pth"), "--l2g", str(tmp_path / "l2g.pth"), scene, out)
    assert "converted bidirectional GLNet" in run.stdout
    with rasterio.open(out) as res, rasterio.open(scene) as src:
        assert (res.width, res.height, res.crs, res.transform) == (src.width, src.height, src.crs, src.transform)
        assert res.read(1).max() < 7
    # the checkpoint is the one glgeo import-glnet writes: footprint and resolution recorded
    from glgeo.models import load_checkpoint

    ck = load_checkpoint(tmp_path / "glnet-deepglobe.pt")
    assert (ck.mode, ck.footprint, ck.gsd) == ("bidirectional", 2448, 0.5)
