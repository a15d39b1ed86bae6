"""Draw docs/figures/joplin_footprints.png: the shared Joplin tiles and their footprints.

The three 0.6 m Joplin tiles of ``../shared/data/joplin`` side by side, each with the
shared building footprints (EPSG:4326, reprojected to the tiles' EPSG:26915) drawn as
outlines, and each titled with its part in the buildings recipe
(``models/zoo/prepare_buildings.py``). The footprints are machine-derived: on
``tile_337-10160`` they miss the largest buildings (the warehouse and the hall in the
south, the apartment rows in the east, shops along the main road), so a model that finds
those buildings is scored wrong there; the recipe neither trains nor reports on that tile.

Run from the repository root (needs ../shared/data and matplotlib)::

    python docs/figures/joplin_footprints.py
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import geopandas as gpd  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import rasterio  # noqa: E402
from PIL import Image  # noqa: E402
from rasterio.features import rasterize  # noqa: E402
from shapely.geometry import box  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("GLGEO_SAMPLE_DATA", REPO.parent / "shared" / "data"))
sys.path.insert(0, str(REPO / "models" / "zoo"))
from prepare_buildings import JOPLIN_SPLIT, JOPLIN_TEST, JOPLIN_UNUSED  # noqa: E402

TILES = ("tile_337-9136", "tile_1361-9136", "tile_337-10160")
QUARTERS = ("top left", "top right", "bottom left", "bottom right")


def role(tile: str) -> str:
    """The tile's part in the buildings recipe, in words."""
    if tile == JOPLIN_TEST:
        return "held out: reported on"
    if tile in JOPLIN_UNUSED:
        return "not used: footprints incomplete"
    parts = JOPLIN_SPLIT[tile]
    val = [q for q, part in zip(QUARTERS, parts) if part == "val"]
    return "train" + (f"; {', '.join(val)} quarter: checkpoint choice" if val else "")


def main() -> None:
    footprints = gpd.read_file(DATA / "joplin" / "footprints.geojson")
    fig, axes = plt.subplots(1, len(TILES), figsize=(5 * len(TILES), 5.6))
    for ax, tile in zip(axes, TILES):
        with rasterio.open(DATA / "joplin" / f"{tile}.tif") as src:
            image = src.read().transpose(1, 2, 0)
            shapes = footprints.to_crs(src.crs)
            inside = shapes[shapes.intersects(box(*src.bounds))]
            covered = rasterize(((g, 1) for g in inside.geometry), out_shape=src.shape,
                                transform=src.transform).mean()
            left, bottom, right, top = src.bounds
        ax.imshow(image, extent=(left, right, bottom, top))
        inside.boundary.plot(ax=ax, color="#ff2020", linewidth=0.7)
        ax.set_xlim(left, right)
        ax.set_ylim(bottom, top)
        ax.set_title(f"{tile} ({role(tile)})\n{len(inside)} footprints, {100 * covered:.1f} % of the tile",
                     fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel("")
        ax.set_ylabel("")
    fig.suptitle("Joplin, 0.6 m: the shared building footprints (red outlines) over the imagery", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    out = REPO / "docs" / "figures" / "joplin_footprints.png"
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=80)
    # photographs: a 256-colour palette keeps the file a third of its RGB size
    Image.open(buffer).convert("RGB").quantize(256).save(out, optimize=True)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
