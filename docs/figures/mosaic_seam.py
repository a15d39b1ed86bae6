"""Draw docs/figures/mosaic_seam.png: where a mosaic of unrelated images loses, at the seam.

Two DeepGlobe images, 19627 above 3484, are written one above the other inside a 700 px
nodata border, as ``benchmarks/invariance.py`` builds its 3 x 3 mosaic (in which this seam
loses the most: 3484's 100 px next to it are right on 94 % of their pixels alone, 46 % in
the mosaic, with the 32 px global margin). Panels, 300 x 150 m around the seam: the
imagery, the hand-drawn truth, each image segmented alone (the two maps set one above the
other) and the mosaic segmented as one scene, with the default model and settings. The model's output cells are 16 px of these
0.5 m images (a quarter of a 2 m patch's pixels): near the seam each side's classes reach
across it, as the network's context does, and there each image gets classes from the other.

Run from the repository root (needs ../shared/data and matplotlib)::

    python docs/figures/mosaic_seam.py
"""

from __future__ import annotations

import logging
import sys
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import rasterio  # noqa: E402
from affine import Affine  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import glgeo  # noqa: E402
from _panels import DATA, class_legend, draw_panels, save  # noqa: E402
from seam_source import BORDER, SIDE, write_pair  # noqa: E402 (the benchmark that finds where the loss comes from)
from glgeo.datasets import read_mask_ids  # noqa: E402
from glgeo.inference import InferenceSettings  # noqa: E402
from glgeo.schemes import NODATA_ID, get_scheme  # noqa: E402

ABOVE, BELOW = "19627", "3484"
COLUMNS = slice(1000, 1600)  # 300 m of the seam
ROWS = 150  # px above and below the seam (75 m each side)


def main() -> None:
    logging.getLogger("glgeo").setLevel(logging.ERROR)  # the scenes carry no CRS
    scheme = get_scheme("deepglobe")
    palette = np.array([c.color for c in scheme.classes], dtype=np.uint8)
    pixels, truths = {}, {}
    for name in (ABOVE, BELOW):
        with rasterio.open(DATA / "deepglobe" / "images" / f"{name}_sat.jpg") as src:
            pixels[name] = src.read()
        with rasterio.open(DATA / "deepglobe" / "masks" / f"{name}_mask.png") as src:
            truths[name] = read_mask_ids(src, scheme, rgb_threshold=128)
    settings = InferenceSettings(device="cpu")

    def segment(scene: Path, out: Path) -> np.ndarray:
        glgeo.segment(scene, out, settings=settings, overwrite=True)
        with rasterio.open(out) as src:
            ids = src.read(1)
            return np.where(ids == src.nodata, NODATA_ID, ids)

    alone = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for k, name in enumerate((ABOVE, BELOW)):  # each a tile placed where it lies in the mosaic
            tile = folder / f"{name}.tif"
            with rasterio.open(tile, "w", driver="GTiff", width=SIDE, height=SIDE, count=3, dtype="uint8",
                               transform=Affine.translation(BORDER, BORDER + k * SIDE)) as dst:
                dst.write(pixels[name])
            alone[name] = segment(tile, folder / f"{name}-map.tif")
        mosaic = write_pair(folder / "mosaic.tif", pixels[ABOVE], pixels[BELOW])
        whole = segment(mosaic, folder / "mosaic-map.tif")

    def around_seam(above: np.ndarray, below: np.ndarray) -> np.ndarray:
        return np.concatenate([above[-ROWS:, COLUMNS], below[:ROWS, COLUMNS]])

    seam = BORDER + SIDE
    image = around_seam(*(np.transpose(pixels[n], (1, 2, 0)) for n in (ABOVE, BELOW)))
    truth = around_seam(truths[ABOVE], truths[BELOW])
    maps = [around_seam(alone[ABOVE], alone[BELOW]),
            whole[seam - ROWS : seam + ROWS, BORDER + COLUMNS.start : BORDER + COLUMNS.stop]]
    right = [100 * (m[ROWS : ROWS + 100] == truth[ROWS : ROWS + 100]).mean() for m in maps]
    # how far the class above the seam reaches below it, column by column (px of 0.5 m)
    above_class = np.bincount(truth[:ROWS].ravel()).argmax()
    for label, m in zip(("alone", "mosaic"), maps):
        reach = (np.cumprod(m[ROWS:] == above_class, axis=0)).sum(axis=0) / 2
        print(f"{label}: {scheme.classes[above_class].name} reaches {reach.min():.0f}-{reach.max():.0f} m below the seam")
    pictures = [image, palette[truth]] + [palette[m] for m in maps]
    titles = [f"{ABOVE} above {BELOW}: the seam", "hand-drawn truth",
              f"each image alone ({BELOW}'s first 100 px: {right[0]:.0f} % right)",
              f"the two as one mosaic ({right[1]:.0f} % right)"]
    fig, axes = plt.subplots(1, 4, figsize=(18, 2.9))
    draw_panels(axes, pictures, titles)
    for ax in axes:
        ax.axhline(ROWS - 0.5, color="black", linewidth=0.8, linestyle=":")
    shown = sorted(set(np.unique(np.concatenate([truth.ravel()] + [m.ravel() for m in maps]))) - {NODATA_ID})
    class_legend(fig, scheme, shown)
    save(fig, "mosaic_seam.png", (0, 0.1, 1, 0.97), 80)


if __name__ == "__main__":
    main()
