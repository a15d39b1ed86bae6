"""Draw docs/figures/context_windows.png: how glgeo cuts a large scene into context windows.

A scene of four real DeepGlobe images (2 x 2, 4896 x 4896 px at 50 cm) read at the default
model's 2 m working grid (1224 x 1224 px), with:

1. the context windows of the model's 612 px footprint (each gets its own global view) and
   the patch grid of the centre window, on the map's 32 px lattice (``grid_anchor="world"``;
   a plain image's map is its pixels, so the lattice is counted from its first pixel, 16 px
   before it), as the engine lays them (:meth:`glgeo.inference.StreamingSegmenter.window_layouts`):
   three windows a side overlap by 306 px, more than twice their 76 px minimum overlap, so
   each leaves the part of an overlap nearer its neighbour's centre to it and its patches
   cover the rest;
2. the centre window's share of each pixel (its taper, normalised by all windows'): it
   hands over smoothly to each neighbour across the middle of their overlap;
3. the patch tapers inside that window.

Run from the repository root (needs ../shared/data and matplotlib)::

    python docs/figures/context_windows.py
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import rasterio  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from glgeo.inference import InferenceSettings, StreamingSegmenter  # noqa: E402
from glgeo.segmentation import load_model  # noqa: E402
from glgeo.tiling import tile_weights  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("GLGEO_SAMPLE_DATA", REPO.parent / "shared" / "data"))
IDS = ("104113", "172307", "180902", "19627")
WORKING = 612  # each image's side on the default model's 2 m working grid


def scene() -> np.ndarray:
    tiles = []
    for name in IDS:
        with rasterio.open(DATA / "deepglobe" / "images" / f"{name}_sat.jpg") as src:
            tiles.append(src.read(out_shape=(3, WORKING, WORKING)).transpose(1, 2, 0))
    return np.vstack([np.hstack(tiles[:2]), np.hstack(tiles[2:])])


def main() -> None:
    image = scene()
    h, w = image.shape[:2]
    model = load_model("deepglobe-landcover")
    footprint = model.footprint
    engine = StreamingSegmenter(model.model, InferenceSettings(device="cpu"), model.patch_size, model.global_size,
                                footprint=footprint)
    windows, layouts = engine.window_layouts(h, w, origin=(0, 0))  # a plain image: its first pixel's lattice
    total = np.zeros((h, w))
    for layout in layouts:
        total[layout.window.slices] += layout.weights(windows)
    centre = layouts[len(layouts) // 2]
    # where the centre window's patch grid starts, in the scene's pixels (before the window
    # where it reaches beyond it, inside it where it leaves a side to a neighbour)
    top, left = centre.window.top - centre.margins[0], centre.window.left - centre.margins[2]
    patches = centre.grid

    fig, axes = plt.subplots(1, 3, figsize=(13.5, 4.8), dpi=80)
    ax = axes[0]
    ax.imshow(image)
    colours = plt.cm.tab10(np.arange(len(windows)) % 10)
    for window, colour in zip(windows, colours):
        ax.add_patch(Rectangle((window.left, window.top), window.width, window.height, fill=False, lw=1.6, ec=colour))
    for p in patches:
        ax.add_patch(Rectangle((left + p.left, top + p.top), p.width, p.height, fill=False,
                               lw=0.8, ec="white", ls="--"))
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    ax.set_title(f"{len(windows)} context windows of {footprint} px (2 m);\n"
                 "centre window's patches (dashed, 32 px lattice)")

    ax = axes[1]
    shown = np.zeros((h, w))
    shown[centre.window.slices] = centre.weights(windows) / total[centre.window.slices]
    im = ax.imshow(shown, cmap="magma", vmin=0, vmax=1)
    ax.set_title("the centre window's share of each pixel\n(its taper / all windows' tapers)")
    fig.colorbar(im, ax=ax, fraction=0.046)

    ax = axes[2]
    inside = np.zeros((patches.scene_height, patches.scene_width))
    for p in patches:
        inside[p.slices] = np.maximum(inside[p.slices], tile_weights(patches, p))
    im = ax.imshow(inside, cmap="viridis", vmin=0, vmax=1)
    for p in patches:
        ax.add_patch(Rectangle((p.left, p.top), p.width, p.height, fill=False, lw=0.8, ec="white", ls="--"))
    ax.set_title("the centre window's patch tapers (largest shown):\nraised cosine across each overlap")
    fig.colorbar(im, ax=ax, fraction=0.046)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    out = Path(__file__).with_suffix(".png")
    fig.savefig(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
