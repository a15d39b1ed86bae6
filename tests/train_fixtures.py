"""Tiny generated datasets in each published layout, for the training and evaluation tests.

Images are smooth random colour fields; masks are blocky class maps whose classes show in
the image (each class brightens one colour), so a network can learn something in a few
steps. Every raster has a real CRS and transform.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin

from glgeo.schemes import DEEPGLOBE

CRS = "EPSG:32631"


def class_map(rng: np.random.Generator, height: int, width: int, n_classes: int, block: int = 16) -> np.ndarray:
    """A blocky random class map (ids 0..n_classes-1)."""
    coarse = rng.integers(0, n_classes, size=(-(-height // block), -(-width // block)))
    return np.kron(coarse, np.ones((block, block), dtype=np.int64))[:height, :width].astype(np.uint8)


def image_for(ids: np.ndarray, rng: np.random.Generator, n_classes: int) -> np.ndarray:
    """An RGB uint8 image where each class has its own colour plus noise."""
    palette = rng.integers(30, 225, size=(n_classes, 3))
    img = palette[ids].transpose(2, 0, 1) + rng.normal(0, 12, size=(3, *ids.shape))
    return np.clip(img, 0, 255).astype(np.uint8)


def write_tif(path: Path, array: np.ndarray, *, origin: tuple[float, float] = (500000.0, 4500000.0), res: float = 0.5,
              crs: str = CRS, nodata: float | None = None, colormap: dict | None = None) -> Path:
    """Write a (bands, H, W) or (H, W) array as a GeoTIFF."""
    array = array if array.ndim == 3 else array[None]
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = dict(driver="GTiff", width=array.shape[2], height=array.shape[1], count=array.shape[0], dtype=array.dtype,
                   crs=crs, transform=from_origin(*origin, res, res), nodata=nodata)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(array)
        if colormap is not None:
            dst.write_colormap(1, colormap)
    return path


def make_inria(root: Path, cities: tuple[str, ...] = ("austin", "vienna"), tiles: int = 7, size: int = 96, seed: int = 0) -> Path:
    """``root/AerialImageDataset/train/{images,gt}/<city><n>.tif``, masks 0/255."""
    rng = np.random.default_rng(seed)
    base = root / "AerialImageDataset" / "train"
    for city in cities:
        for n in range(1, tiles + 1):
            ids = class_map(rng, size, size, 2)
            write_tif(base / "images" / f"{city}{n}.tif", image_for(ids, rng, 2))
            write_tif(base / "gt" / f"{city}{n}.tif", (ids * 255).astype(np.uint8))
    return root


def make_deepglobe(root: Path, ids: tuple[str, ...] = ("11", "22", "33", "44"), size: int = 96, seed: int = 0) -> Path:
    """torchgeo's ``root/data/training_data/{images,masks}/<id>_sat.jpg|<id>_mask.png``."""
    rng = np.random.default_rng(seed)
    base = root / "data" / "training_data"
    (base / "images").mkdir(parents=True, exist_ok=True)
    (base / "masks").mkdir(parents=True, exist_ok=True)
    colours = np.array([c.mask_value for c in DEEPGLOBE.classes], dtype=np.uint8)
    for scene_id in ids:
        cls = class_map(rng, size, size, DEEPGLOBE.n_classes)
        img = image_for(cls, rng, DEEPGLOBE.n_classes)
        with rasterio.open(base / "images" / f"{scene_id}_sat.jpg", "w", driver="JPEG", width=size, height=size, count=3, dtype="uint8") as dst:
            dst.write(img)
        with rasterio.open(base / "masks" / f"{scene_id}_mask.png", "w", driver="PNG", width=size, height=size, count=3, dtype="uint8") as dst:
            dst.write(colours[cls].transpose(2, 0, 1))
    return root


def make_folder(root: Path, names: tuple[str, ...] = ("a", "b", "c"), size: int = 96, n_classes: int = 3,
                encoding: str = "value", values: tuple | None = None, seed: int = 0, height: int | None = None) -> Path:
    """``root/images/<name>.tif`` + ``root/masks/<name>.tif``.

    ``encoding``: ``value`` (1 band holding ``values[id]``, default the id), ``rgb``
    (3 bands holding ``values[id]``) or ``palette`` (1 band of ids with a colour table
    mapping id -> ``values[id]``).
    """
    rng = np.random.default_rng(seed)
    h = height or size
    for name in names:
        ids = class_map(rng, h, size, n_classes)
        write_tif(root / "images" / f"{name}.tif", image_for(ids, rng, n_classes))
        if encoding == "value":
            lut = np.array(values if values is not None else range(n_classes), dtype=np.uint8)
            write_tif(root / "masks" / f"{name}.tif", lut[ids])
        elif encoding == "rgb":
            lut = np.array(values, dtype=np.uint8)
            write_tif(root / "masks" / f"{name}.tif", lut[ids].transpose(2, 0, 1))
        elif encoding == "palette":
            cmap = {i: (*values[i], 255) for i in range(n_classes)}
            write_tif(root / "masks" / f"{name}.tif", ids, colormap=cmap)
        else:
            raise ValueError(encoding)
    return root
