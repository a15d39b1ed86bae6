"""Shared fixtures: the real sample data (folder and files), the released key list, a tiny
checkpoint and tiny network inputs, generated class rasters and an Inria prediction/truth
pair, and running the example scripts.

Helpers the fixtures are built from (the one GeoTIFF writer, dataset layouts, checkpoint
builders) live in ``tests/fixtures/``.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch

from fixtures.checkpoints import save_tiny_checkpoint
from fixtures.class_rasters import make_classes, write_raster
from fixtures.networks import grid_boxes
from fixtures.rasters import blocky_scene, write_geotiff
from glgeo.schemes import NODATA_ID

REPO = Path(__file__).resolve().parents[1]

# Mask scans are not remembered between tests (a mask rewritten within one file-time tick
# would be taken for the one scanned); tests/test_datasets.py checks the cache itself.
os.environ["GLGEO_CACHE_DIR"] = "off"


def _sample_data_dir() -> Path:
    """``$GLGEO_SAMPLE_DATA``, default ``../shared/data`` beside the repository."""
    return Path(os.environ.get("GLGEO_SAMPLE_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def sample_data() -> Path:
    """The real sample data folder; skips the test when it is absent."""
    root = _sample_data_dir()
    if not (root / "README.md").is_file():
        pytest.skip(f"real sample data not found at {root} (set GLGEO_SAMPLE_DATA)")
    return root


@pytest.fixture(scope="session")
def sample_file(sample_data) -> Callable[..., Path]:
    """``sample_file("inria", "x.tif")``: that file of the sample data; skips when it is absent."""

    def find(*parts: str) -> Path:
        path = sample_data.joinpath(*parts)
        if not path.exists():
            pytest.skip(f"sample file {path} not found (set GLGEO_SAMPLE_DATA)")
        return path

    return find


@pytest.fixture(scope="session")
def glnet_keys_file() -> Path:
    """The released checkpoints' key list (``../shared/glnet``); skips when absent."""
    path = Path(os.environ.get("GLGEO_GLNET_KEYS", REPO.parent / "shared" / "glnet" / "original_checkpoint_keys.json"))
    if not path.is_file():
        pytest.skip(f"{path} not found (set GLGEO_GLNET_KEYS)")
    return path


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A random-weight resnet18 GLNet (DeepGlobe classes) with tiny patch and global sizes."""
    return save_tiny_checkpoint(tmp_path_factory.mktemp("model") / "tiny.pt")


@pytest.fixture(scope="module")
def tiny_inputs():
    """A 64 px global image, four 64 px patches and their boxes in a 96 px scene."""
    torch.manual_seed(0)
    boxes = grid_boxes()
    return torch.rand(1, 3, 64, 64), torch.rand(len(boxes), 3, 64, 64), boxes


@pytest.fixture()
def inria_pair(tmp_path):
    """An Inria prediction and truth (40 x 30 px) whose confusion counts are known by hand."""
    truth = np.zeros((40, 30), dtype=np.uint8)
    truth[:20, :10] = 255  # 200 building pixels
    pred = np.zeros((40, 30), dtype=np.uint8)
    pred[10:30, :10] = 1  # 100 of them hit, 100 false alarms
    pred[39, :] = NODATA_ID  # 30 background pixels left unpredicted
    return write_geotiff(tmp_path / "pred.tif", pred, nodata=NODATA_ID), write_geotiff(tmp_path / "gt.tif", truth)


@pytest.fixture
def classes_array() -> np.ndarray:
    """A DeepGlobe class array (150 x 190) with seam-crossing regions, holes and nodata."""
    return make_classes()


@pytest.fixture
def class_raster(tmp_path: Path, classes_array: np.ndarray) -> Path:
    """:func:`classes_array` written as a GeoTIFF (EPSG:32618, 50 cm)."""
    return write_raster(tmp_path / "landcover.tif", classes_array)


@pytest.fixture(scope="session")
def run_example() -> Callable[..., subprocess.CompletedProcess]:
    """``run_example("train_inria.py", "--out", dir)``: runs ``examples/<name>`` in a fresh
    interpreter and returns the finished process after checking it succeeded."""

    def run(name: str, *args: object, timeout: float = 600) -> subprocess.CompletedProcess:
        done = subprocess.run([sys.executable, str(REPO / "examples" / name), *map(str, args)],
                              capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, done.stderr[-3000:]
        return done

    return run


@pytest.fixture(scope="module")
def client():
    """A real dask.distributed LocalCluster with two worker processes."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0", silence_logs=logging.ERROR
    ) as cluster, distributed.Client(cluster) as c:
        yield c


# ------------------------------------------------------------- batch and split scenes


@pytest.fixture(scope="module")
def checkpoint(tiny_checkpoint) -> Path:
    """The tiny checkpoint, by the name the batch and split tests use."""
    return tiny_checkpoint


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> list[Path]:
    """Four small blocky GeoTIFFs side by side (the batch tests' scenes)."""
    folder = tmp_path_factory.mktemp("scenes")
    return [blocky_scene(folder / f"tile_{i}.tif", seed=i, x0=500_000.0 + 200 * i) for i in range(4)]


@pytest.fixture(scope="module")
def references(scenes, checkpoint, tmp_path_factory) -> dict[str, np.ndarray]:
    """Each of ``scenes`` segmented in this process by glgeo.segment: what a batch must reproduce."""
    import rasterio

    from fixtures.batch import SETTINGS
    from glgeo.segmentation import segment

    folder = tmp_path_factory.mktemp("reference")
    out = {}
    for scene in scenes:
        segment(scene, folder / scene.name, model=str(checkpoint), settings=SETTINGS)
        with rasterio.open(folder / scene.name) as src:
            out[scene.stem] = src.read(1)
    return out


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    """A 192 x 160 px blocky GeoTIFF (the split tests' scene: 4 x 3 windows of 64 px)."""
    return blocky_scene(tmp_path_factory.mktemp("scene") / "scene.tif", seed=5, height=192, width=160)
