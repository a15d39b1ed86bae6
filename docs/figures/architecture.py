"""Draw docs/figures/architecture.png: glgeo's modules and the one-way flow between them.

Each box is a module (or package) of the repository; arrows point the way the data goes:
a scene is read, cut into windows and patches, run through GLNet, blended, written and
vectorized; training reads datasets into the same network, evaluation scores it. The command
line sits on top and calls one library function per command; the shared modules at the
bottom are shared and import none of the boxes above them.

Run from the repository root (needs matplotlib)::

    python docs/figures/architecture.py
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

OUT = Path(__file__).with_suffix(".png")

# (x, y) of each box's centre in figure units (0-100 across, -2-60 up), its label, its colour.
INPUT, NETWORK, OUTPUT, TRAIN, SHARED, CLI = "#dbe9f6", "#fde2c4", "#d8f0d2", "#eadcf3", "#eeeeee", "#fff6bf"
BOXES: dict[str, tuple[float, float, str, str]] = {
    "cli": (50, 54, "cli/ (glgeo.cli): one command, one library call\nsegment | vectorize | train | evaluate | models | import-glnet", CLI),
    "batch": (20, 42, "batch/, split.py, mosaic.py\nglgeo.run_batch()\nmany scenes, one giant\none (Dask), tiles as one", INPUT),
    "segmentation": (42, 42, "segmentation.py\nglgeo.segment()\none scene", INPUT),
    "io": (7.5, 28, "io.py, aoi.py,\nresolution.py,\nnodata.py,\npil_resize.py\nscene, windows,\noverview read", INPUT),
    "tiling": (21.5, 28, "tiling.py\npatch grid,\ncontext\nwindows", INPUT),
    "inference": (35.5, 28, "inference.py\nstreaming\nengine (tta.py,\ndevice.py)", NETWORK),
    "blend": (49.5, 28, "blend.py\nblender", OUTPUT),
    "writer": (63.5, 28, "writer.py, styles.py,\nareas.py\nCOG + QGIS style,\nclass areas", OUTPUT),
    "vectorization": (77.5, 28, "vectorization.py\nglgeo.vectorize()\nraster to\npolygons", OUTPUT),
    "gpkg": (92, 28, "gpkg.py\nGeoPackage\n+ style", OUTPUT),
    "datasets": (9, 12, "datasets.py,\ngeodata.py,\nsplits.py", TRAIN),
    "training": (27, 12, "training.py,\naveraging.py\nglgeo.train()", TRAIN),
    "models": (48, 12, "models/ (glgeo.models)\nGLNet, backbone registry,\nheads, sharing, deploy,\ncoarse-to-fine,\ncheckpoints, zoo", NETWORK),
    "evaluate": (72, 12, "evaluate.py,\nmetrics.py\nglgeo.evaluate_*()", TRAIN),
    "shared": (50, 0, "shared, importing none of the boxes above:  errors.py  schemes.py  modes.py  progress.py  provenance.py  atomic.py", SHARED),
}
WIDTH = {"cli": 70, "shared": 98, "models": 21, "batch": 19, "segmentation": 14, "writer": 13.4}

# (from, to): the way the data goes.
FLOWS = [
    ("cli", "batch"), ("cli", "segmentation"), ("cli", "vectorization"), ("batch", "segmentation"),
    ("segmentation", "io"), ("io", "tiling"), ("tiling", "inference"), ("inference", "blend"),
    ("blend", "writer"), ("writer", "vectorization"), ("vectorization", "gpkg"), ("inference", "models"),
    ("datasets", "training"), ("training", "models"), ("models", "evaluate"),
]


def _size(name: str, label: str) -> tuple[float, float]:
    lines = label.count("\n") + 1
    return WIDTH.get(name, 12.4), 2.4 * lines + 1.2


def draw(out: Path = OUT) -> Path:
    fig, ax = plt.subplots(figsize=(10, 6.2), dpi=90)
    ax.set_xlim(0, 100)
    ax.set_ylim(-2, 60)
    ax.axis("off")
    for name, (x, y, label, colour) in BOXES.items():
        w, h = _size(name, label)
        ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.3,rounding_size=1",
                                    fc=colour, ec="#555555", lw=0.8))
        ax.text(x, y, label, ha="center", va="center", fontsize=6.8, family="DejaVu Sans")
    for a, b in FLOWS:
        (xa, ya, la, _), (xb, yb, lb, _) = BOXES[a], BOXES[b]
        wa, ha = _size(a, la)
        wb, hb = _size(b, lb)
        if abs(ya - yb) < 1:  # same row: side to side
            start, end = (xa + wa / 2 * (1 if xb > xa else -1), ya), (xb - wb / 2 * (1 if xb > xa else -1), yb)
        else:  # between rows: from bottom edge to top edge (straight down under a wide box)
            x0 = xa if wa < 30 else xb
            x1 = xb if wb < 30 else xa
            start = (x0, ya - ha / 2 if yb < ya else ya + ha / 2)
            end = (x1, yb + hb / 2 if yb < ya else yb - hb / 2)
        ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=9, lw=0.9, color="#333333",
                                     shrinkA=2, shrinkB=2))
    ax.text(1, 59, "glgeo: the data flows one way (arrows); training and evaluation share the network", fontsize=9,
            weight="bold")
    fig.tight_layout(pad=0.2)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


if __name__ == "__main__":
    print(draw())
