"""Draw docs/figures/mosaic_samples.png: what `glgeo train --mosaic` gives the model.

Four training samples drawn the way `glgeo train --mosaic 1 --crop-jitter 0.3` draws them
from the 256 px DeepGlobe copies (``../shared/data/deepglobe_256``): each is a window of
one image's size (times the crop jitter's fraction) at a random place of a 2 x 2 mosaic of
the drawn image and three others, read part by part from the four files, with its labels
in the scheme's colours beneath. Without ``--mosaic`` every view is one whole image (or a
jittered window of one), and the model learns that scenes start and end where its view
does.

Run from the repository root (needs ../shared/data and matplotlib)::

    python docs/figures/mosaic_samples.py
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from glgeo.datasets import GLNetSceneDataset, SampleSpec, open_dataset  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("GLGEO_SAMPLE_DATA", REPO.parent / "shared" / "data"))
SAMPLES = 4


def main() -> None:
    collection = open_dataset("deepglobe", DATA / "deepglobe_256")
    spec = SampleSpec(global_size=256, patch_size=256, crop_jitter=0.3, mosaic=1.0)
    dataset = GLNetSceneDataset(collection, spec)
    colours = np.zeros((256, 3), dtype=np.uint8)
    for info in collection.scheme.classes:
        colours[info.id] = info.color
    torch.manual_seed(3)
    fig, axes = plt.subplots(2, SAMPLES, figsize=(3 * SAMPLES, 6.2))
    for k in range(SAMPLES):
        index = int(torch.randint(len(collection), ()))
        with dataset.open_scene(index) as view:
            image = view.global_image(256).transpose(1, 2, 0)
            labels = view.scene_label(256, 256)
            area = view.area
        axes[0, k].imshow(image)
        axes[0, k].set_title(f"window at ({int(area.row_off)}, {int(area.col_off)})\nof a 512 x 512 mosaic", fontsize=9)
        axes[1, k].imshow(colours[labels], interpolation="nearest")
        for row in (0, 1):
            axes[row, k].set_xticks([])
            axes[row, k].set_yticks([])
    axes[0, 0].set_ylabel("global image (256 px)")
    axes[1, 0].set_ylabel("its labels")
    fig.suptitle("glgeo train --mosaic: views that cut across scenes (DeepGlobe 256 px copies)", fontsize=11)
    fig.tight_layout()
    out = REPO / "docs" / "figures" / "mosaic_samples.png"
    fig.savefig(out, dpi=80)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
