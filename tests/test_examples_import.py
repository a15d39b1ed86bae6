"""examples/import_released.py: convert released-style checkpoints and segment a scene."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import rasterio
import torch
from rasterio.transform import from_origin

from conftest import REPO
from test_models import released_state


def test_import_released_example_runs(glnet_keys_file, tmp_path):
    for seed, role in enumerate(("global", "g2l", "l2g")):
        torch.save(released_state(glnet_keys_file, seed), tmp_path / f"{role}.pth")
    scene = tmp_path / "scene.tif"
    profile = dict(driver="GTiff", width=300, height=260, count=3, dtype="uint8", crs="EPSG:32618",
                   transform=from_origin(500000, 4000000, 0.5, 0.5))
    with rasterio.open(scene, "w", **profile) as dst:
        dst.write(np.random.default_rng(0).integers(0, 255, (3, 260, 300), dtype=np.uint8))
    out = tmp_path / "landcover.tif"
    args = [str(tmp_path / f"{r}.pth") for r in ("global", "g2l", "l2g")]
    run = subprocess.run([sys.executable, str(REPO / "examples" / "import_released.py"), *args, str(scene), str(out)],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "converted bidirectional GLNet" in run.stdout
    with rasterio.open(out) as res, rasterio.open(scene) as src:
        assert (res.width, res.height, res.crs, res.transform) == (src.width, src.height, src.crs, src.transform)
        assert res.read(1).max() < 7
