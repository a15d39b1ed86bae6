"""examples/segment_scene.py runs end to end on the real Inria crop."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import rasterio

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "segment_scene.py"


def _load():
    spec = importlib.util.spec_from_file_location("segment_scene", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_segment_scene_example(sample_data, tmp_path, capsys):
    scene = sample_data / "inria" / "austin_crop_top_image.tif"
    code = _load().main(["--scene", str(scene), "--out-dir", str(tmp_path), "--random-weights",
                         "--patch-size", "256", "--device", "cpu"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "building" in printed and (" ha " in printed or " m2 " in printed) and " px" in printed
    out = tmp_path / "austin_crop_top_image_classes.tif"
    with rasterio.open(scene) as src, rasterio.open(out) as dst:
        assert (dst.crs, dst.transform, dst.shape) == (src.crs, src.transform, src.shape)
        assert set(np.unique(dst.read(1))) <= {0, 1}
    assert (tmp_path / "austin_crop_top_image_classes.qml").is_file()
    assert (tmp_path / "austin_crop_top_image_scores.tif").is_file()


def test_missing_model_says_what_to_do(sample_data, tmp_path, capsys):
    scene = sample_data / "inria" / "austin_crop_top_image.tif"
    code = _load().main(["--scene", str(scene), "--out-dir", str(tmp_path), "--model", str(tmp_path / "none.pt")])
    assert code == 1
    err = capsys.readouterr().err
    assert "no checkpoint file or zoo model" in err and "--random-weights" in err


def test_segment_aoi_example(sample_data, tmp_path, capsys):
    """examples/segment_aoi.py (the docs' --aoi figure): a WGS84 polygon over a UTM tile."""
    spec = importlib.util.spec_from_file_location("segment_aoi", EXAMPLE.with_name("segment_aoi.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    scene = sample_data / "joplin" / "tile_337-9136.tif"
    png = tmp_path / "aoi.png"
    assert module.main(["--scene", str(scene), "--out-dir", str(tmp_path), "--device", "cpu", "--png", str(png)]) == 0
    printed = capsys.readouterr().out
    assert "px outside left as nodata" in printed and png.stat().st_size > 10_000
    with rasterio.open(tmp_path / "tile_337-9136_aoi.tif") as dst:
        classes, nodata = dst.read(1), dst.nodata
    inside = (classes != nodata).mean()
    assert 0.2 < inside < 0.5  # the quadrilateral covers about a third of the tile
