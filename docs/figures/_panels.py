"""Shared drawing for the docs figures that set maps side by side."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from matplotlib.patches import Patch

REPO = Path(__file__).resolve().parents[2]
#: the shared sample data: ``GLGEO_SAMPLE_DATA``, else ``../shared/data`` beside the repository
DATA = Path(os.environ.get("GLGEO_SAMPLE_DATA", REPO.parent / "shared" / "data"))


def draw_panels(axes, pictures, titles, step: int = 1) -> None:
    """Each picture (every ``step``-th pixel) in its axes, titled, without ticks."""
    for ax, picture, title in zip(axes, pictures, titles):
        ax.imshow(picture[::step, ::step], interpolation="nearest")
        ax.set_title(title, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])


def class_legend(fig, scheme, shown, extra=()) -> None:
    """A legend along the figure's foot: the ``shown`` class ids in their colours, then
    ``extra`` ``(label, rgb)`` entries."""
    palette = np.array([c.color for c in scheme.classes], dtype=np.uint8)
    handles = [Patch(facecolor=palette[c] / 255, edgecolor="grey", label=scheme.classes[c].name) for c in shown]
    handles += [Patch(facecolor=np.asarray(rgb) / 255, edgecolor="grey", label=label) for label, rgb in extra]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False, fontsize=9)


def save(fig, name: str, rect: tuple[float, float, float, float], dpi: int) -> None:
    """Lay ``fig`` out within ``rect`` (room for the legend) and write it as
    ``docs/figures/NAME``."""
    fig.tight_layout(rect=rect)
    out = Path(__file__).resolve().parent / name
    fig.savefig(out, dpi=dpi)
    print(f"wrote {out}")
