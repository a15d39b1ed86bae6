"""Draw docs/figures/edge_margin.png: the rim along a scene's edge, and the edge margin.

The top-left corner (300 x 200 m) of the held-out DeepGlobe scene 2774, segmented by the
default model with the released patch grid (the scene's edge is the edge of a patch) and
the global view before 5 December 2026 (``--global-view squeeze --global-margin 0
--context-crop cells --grid-anchor scene``: a thin rim of rangeland along the border), with
today's defaults (the global view's mirrored margin, and a patch grid on the map's
lattice, which for this plain image starts 16 px of the 2 m working grid before its first
pixel: no rim), and with ``--edge-margin 28`` (the patch grid reaches at least 28 px past
the scene's edge, over the scene mirrored there).

Run from the repository root (needs ../shared/data and matplotlib)::

    python docs/figures/edge_margin.py
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

import glgeo  # noqa: E402
from glgeo.inference import InferenceSettings  # noqa: E402
from glgeo.schemes import get_scheme  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "docs" / "figures"))
from _panels import class_legend, draw_panels, save  # noqa: E402

DATA = Path(os.environ.get("GLGEO_SAMPLE_DATA", REPO.parent / "shared" / "data"))
SCENE = DATA / "deepglobe" / "images" / "2774_sat.jpg"
CORNER = (slice(0, 400), slice(0, 600))  # rows, columns at 0.5 m
RUNS = (
    ("global view before: a rim", dict(global_view="squeeze", global_margin=0, context_crop="cells", grid_anchor="scene")),
    ("default: no rim", {}),
    ("--edge-margin 28: the patches reach past it", dict(edge_margin=28)),
)


def main() -> None:
    scheme = get_scheme("deepglobe")
    palette = np.array([c.color for c in scheme.classes], dtype=np.uint8)
    with rasterio.open(SCENE) as src:
        image = np.transpose(src.read(window=(CORNER[0].indices(src.height)[:2], CORNER[1].indices(src.width)[:2])), (1, 2, 0))
    maps = []
    with tempfile.TemporaryDirectory() as tmp:
        for k, (_, settings) in enumerate(RUNS):
            out = Path(tmp) / f"run-{k}.tif"
            glgeo.segment(SCENE, out, settings=InferenceSettings(device="cpu", **settings))
            with rasterio.open(out) as src:
                maps.append(src.read(1)[CORNER])
    fig, axes = plt.subplots(1, 4, figsize=(18, 3.9))
    titles = ["2774, top-left corner (300 x 200 m)"] + [title for title, _ in RUNS]
    draw_panels(axes, [image] + [palette[m] for m in maps], titles)
    class_legend(fig, scheme, sorted(set(np.unique(np.concatenate([m.ravel() for m in maps])))))
    save(fig, "edge_margin.png", (0, 0.08, 1, 0.96), 90)


if __name__ == "__main__":
    main()
