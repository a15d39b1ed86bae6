"""Runs examples/train_inria.py on the real Austin crop and checks what it wrote."""

from __future__ import annotations

import json

import rasterio

from glgeo.datasets import open_dataset
from glgeo.models import load_checkpoint


def test_train_inria_example(sample_data, sample_file, run_example, tmp_path):
    sample_file("inria", "austin_crop_top_gt.tif")
    done = run_example("train_inria.py", "--data", sample_data, "--out", tmp_path, "--epochs", "1")
    assert "validated on austin1, austin2, austin3, austin4, austin5" in done.stdout

    # The dataset is in the published layout, georeferenced like the crop it came from.
    ds = open_dataset("inria", tmp_path / "inria")
    assert ds.names == [f"austin{i}" for i in range(1, 9)]
    with rasterio.open(ds.scene("austin6").image) as img, rasterio.open(ds.scene("austin6").mask) as gt:
        assert img.crs.to_epsg() == 26914 and img.transform.almost_equals(gt.transform) and (img.width, img.height) == (250, 350)

    ck = load_checkpoint(tmp_path / "run" / "model.pt")
    assert ck.scheme.name == "inria" and ck.mode == "global" and ck.metadata["training"]["train_scenes"] == 3
    report = json.loads((tmp_path / "report.json").read_text())
    assert [i["name"] for i in report["images"]] == [f"austin{i}" for i in range(1, 6)]
    assert report["pixels"] == 5 * 250 * 350 and 0.0 <= report["building_iou"] <= 1.0
    assert "building IoU" in done.stdout
