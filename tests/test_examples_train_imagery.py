"""Runs examples/train_imagery.py on the real Joplin sample and checks what it wrote."""

from __future__ import annotations

import json

import rasterio

from glgeo.models import load_checkpoint


def test_train_imagery_example(sample_data, sample_file, run_example, tmp_path):
    sample_file("joplin", "footprints.geojson")
    data = sample_data
    done = run_example("train_imagery.py", "--data", data, "--out", tmp_path, "--epochs", "1")
    assert "in EPSG:26915 at 2.4 m per pixel; validated on 4 scenes of images tile_1361-9136.tif" in done.stdout

    ck = load_checkpoint(tmp_path / "run" / "model.pt")
    assert ck.mode == "global" and ck.gsd == 2.4 and ck.metadata["training"]["dataset"] == "geo"
    assert ck.metadata["training"]["split"]["rule"] == "images tile_1361-9136.tif"
    with rasterio.open(tmp_path / "buildings.tif") as out, rasterio.open(data / "joplin" / "tile_1361-9136.tif") as src:
        assert out.crs == src.crs and out.transform.almost_equals(src.transform)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["pixels"] == 1024 * 1024 and report["images"][0]["name"] == "tile_1361-9136"
    assert "building IoU" in done.stdout
