"""Draw docs/figures/nodata_fill.png: a scene in a nodata collar, and what the fill does.

The held-out DeepGlobe scene 2774 rotated by 30 degrees into a north-up GeoTIFF whose
collar is nodata (as a reprojected scene's is), its rotated hand-drawn truth, and the
default model's map with each ``--nodata-fill``: black (``zero``, the released code), the
view's mean colour (``mean``) and the valid pixels mirrored across the collar's edge
(``mirror``, the default). The rotation is ``benchmarks/nodata.py``'s.

Run from the repository root (needs ../shared/data and matplotlib)::

    python docs/figures/nodata_fill.py
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import rasterio  # noqa: E402
from affine import Affine  # noqa: E402

import glgeo  # noqa: E402
from glgeo.datasets import read_mask_ids  # noqa: E402
from glgeo.inference import InferenceSettings  # noqa: E402
from glgeo.schemes import NODATA_ID, get_scheme  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO / "docs" / "figures"))
from _panels import class_legend, draw_panels, save  # noqa: E402
from nodata import rotate  # noqa: E402

DATA = Path(os.environ.get("GLGEO_SAMPLE_DATA", REPO.parent / "shared" / "data"))
NAME = "2774"
ANGLE = 30.0
FILLS = ("zero", "mean", "mirror")
STEP = 6  # show every 6th pixel (3 m)


def main() -> None:
    scheme = get_scheme("deepglobe")
    palette = np.array([c.color for c in scheme.classes], dtype=np.uint8)
    collar = np.array([40, 40, 40], dtype=np.uint8)
    with rasterio.open(DATA / "deepglobe" / "images" / f"{NAME}_sat.jpg") as src:
        pixels = src.read()
    with rasterio.open(DATA / "deepglobe" / "masks" / f"{NAME}_mask.png") as src:
        truth = read_mask_ids(src, scheme)
    bands = np.stack([rotate(b, ANGLE, 0, "bilinear") for b in pixels])
    inside = rotate(np.full(truth.shape, 255, np.uint8), ANGLE, 0, "nearest") == 255
    truth = np.where(inside, rotate(truth.astype(np.uint8), ANGLE, 0, "nearest"), NODATA_ID)

    def coloured(ids: np.ndarray) -> np.ndarray:
        return np.where((ids == NODATA_ID)[..., None], collar, palette[np.minimum(ids, len(palette) - 1)])

    maps = []
    with tempfile.TemporaryDirectory() as tmp:
        scene = Path(tmp) / "rotated.tif"
        profile = dict(driver="GTiff", height=inside.shape[0], width=inside.shape[1], count=3, dtype="uint8",
                       tiled=True, crs="EPSG:32615", transform=Affine.translation(500000, 4100000) * Affine.scale(0.5, -0.5))
        with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(scene, "w", **profile) as dst:
            dst.write(bands)
            dst.write_mask(inside.astype(np.uint8) * 255)
        for fill in FILLS:
            out = Path(tmp) / f"{fill}.tif"
            glgeo.segment(scene, out, settings=InferenceSettings(device="cpu", nodata_fill=fill))
            with rasterio.open(out) as src:
                ids = src.read(1)
                maps.append(np.where(ids == src.nodata, NODATA_ID, ids))
    image = np.where(inside[..., None], np.transpose(bands, (1, 2, 0)), collar)
    pictures = [image, coloured(truth)] + [coloured(m) for m in maps]
    titles = [f"{NAME} rotated {ANGLE:g} degrees in a nodata collar", "hand-drawn truth",
              "--nodata-fill zero (black)", "--nodata-fill mean (flat colour)", "--nodata-fill mirror (default)"]
    fig, axes = plt.subplots(1, 5, figsize=(20, 4.6))
    draw_panels(axes, pictures, titles, STEP)
    shown = sorted(set(np.unique(np.concatenate([m.ravel() for m in maps + [truth]]))) - {NODATA_ID})
    class_legend(fig, scheme, shown, [("nodata (collar)", collar)])
    save(fig, "nodata_fill.png", (0, 0.07, 1, 0.97), 80)


if __name__ == "__main__":
    main()
