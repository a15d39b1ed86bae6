"""Draw docs/figures/tile_seams.png: tiles mapped one by one meet at seams; --mosaic has none.

Three of the shared Joplin tiles (0.6 m, EPSG:26915, three of a 2 x 2 block) segmented with
the zoo's land-cover model (top) and buildings model (bottom) two ways: each tile alone (what ``glgeo segment 'tiles/*.tif'
--out-dir maps`` writes), and the three as one scene (``glgeo segment 'tiles/*.tif' --mosaic
-o map.tif``). Panels, 360 x 360 m around the corner where the tiles meet (the fourth tile
of the block is not in the data: nodata): the imagery, the maps made tile by tile set side
by side, and the one map. Dotted lines: the tiles' borders. ``benchmarks/tiles.py`` gives
the figures.

Run from the repository root (needs ../shared/data and matplotlib)::

    python docs/figures/tile_seams.py
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
from matplotlib.patches import Patch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import glgeo  # noqa: E402
from _panels import DATA, draw_panels, save  # noqa: E402
from glgeo.inference import InferenceSettings  # noqa: E402
from glgeo.mosaic import write_tiles_vrt  # noqa: E402
from glgeo.schemes import get_scheme  # noqa: E402

TILES = ("tile_337-9136", "tile_1361-9136", "tile_337-10160")
HALF = 300  # px of 0.6 m on each side of the corner where the tiles meet
NODATA_RGB = (190, 190, 190)
MODELS = ("deepglobe-landcover", "inria-buildings")


def maps(paths, layout, vrt: Path, folder: Path, model: str, nodata_id: int) -> tuple[np.ndarray, np.ndarray]:
    """The model's map of the tiles made tile by tile (set side by side) and as one scene."""
    settings = InferenceSettings(device="cpu")
    tiled = np.full((layout.height, layout.width), nodata_id, np.uint8)
    for path, (col, row) in zip(paths, layout.offsets):
        out = folder / f"{path.stem}-{model}.tif"
        glgeo.segment(path, out, model=model, settings=settings)
        with rasterio.open(out) as src:
            tiled[row:row + src.height, col:col + src.width] = np.where(src.read_masks(1) > 0, src.read(1), nodata_id)
    out = folder / f"area-{model}.tif"
    glgeo.segment(vrt, out, model=model, settings=settings)
    with rasterio.open(out) as src:
        whole = np.where(src.read_masks(1) > 0, src.read(1), nodata_id)
    return tiled, whole


def main() -> None:
    logging.getLogger("glgeo").setLevel(logging.ERROR)
    paths = [DATA / "joplin" / f"{name}.tif" for name in TILES]
    corner = (1024, 1024)
    crop = (slice(corner[0] - HALF, corner[0] + HALF), slice(corner[1] - HALF, corner[1] + HALF))
    fig, axes = plt.subplots(2, 3, figsize=(13.5, 10.2))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        vrt = folder / "area.vrt"
        layout = write_tiles_vrt(paths, vrt)
        with rasterio.open(vrt) as src:
            image = np.transpose(src.read(), (1, 2, 0))
            image[src.read_masks(1) == 0] = NODATA_RGB
        handles = []
        for row, model in enumerate(MODELS):
            scheme = get_scheme("deepglobe" if model == "deepglobe-landcover" else "inria")
            nodata_id = len(scheme.classes)
            palette = np.array([c.color for c in scheme.classes] + [NODATA_RGB], dtype=np.uint8)
            tiled, whole = maps(paths, layout, vrt, folder, model, nodata_id)
            pictures = [image[crop], palette[tiled[crop]], palette[whole[crop]]]
            titles = ["three Joplin tiles where they meet (0.6 m)", f"{model}: each tile alone (seams)",
                      f"{model}: the tiles as one scene (--mosaic)"]
            draw_panels(axes[row], pictures, titles)
            shown = sorted(set(np.unique(np.concatenate([tiled[crop].ravel(), whole[crop].ravel()]))) - {nodata_id})
            handles += [(scheme.classes[c].name, scheme.classes[c].color) for c in shown
                        if scheme.classes[c].name not in {name for name, _ in handles}]
    for ax in axes.ravel():
        ax.axhline(HALF - 0.5, xmax=0.5, color="black", linewidth=0.8, linestyle=":")
        ax.axvline(HALF - 0.5, ymin=0.5, color="black", linewidth=0.8, linestyle=":")
    legend = [Patch(facecolor=np.asarray(rgb) / 255, edgecolor="grey", label=name)
              for name, rgb in handles + [("no data (no tile)", NODATA_RGB)]]
    fig.legend(handles=legend, loc="lower center", ncol=len(legend), frameon=False, fontsize=9)
    fig.subplots_adjust(hspace=0.12)
    save(fig, "tile_seams.png", (0, 0.04, 1, 0.98), 72)


if __name__ == "__main__":
    main()
