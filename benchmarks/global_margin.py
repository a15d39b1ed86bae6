"""Which global margin? Measured on the scenes the default model's checkpoints were chosen on.

``--global-margin`` extends each context window's global image by its mirror image on every
side before the global branch (docs/segment.md, "The global view"). This compares margins
on the default land-cover model's 39 validation scenes (the card's ``validation_data``:
the full-resolution scene 855 and the 38 validation ids of the 256 px copies, upsampled
to 2448 px as ``models/zoo/prepare_landcover.py`` writes them), never on the held-out
scenes its card reports on. Each scene is segmented whole and with three cuts (200 x 300,
333 x 517 and 500 x 150 px off the top and left, each keeping its place on the scene's
pixel map as ``gdal_translate -srcwin`` keeps it), and for each margin it prints, pooled
over the scenes:

* mIoU and pixel accuracy of the whole scenes, and mIoU of the cuts, against the truth;
* the share of the pixels a cut shares with its whole scene that keep their class;
* seconds per megapixel (one torch thread, margins alternating scene by scene, so a
  change in the machine's load hits them alike) and its ratio to the first margin's.

Example::

    python benchmarks/global_margin.py                    # margins 64 and 32
    python benchmarks/global_margin.py --margins 64,32,0
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from _machine import machine  # noqa: E402
from _validation import SIDE, read_scene, validation_scenes  # noqa: E402

CUTS = ((200, 300), (333, 517), (500, 150))  # rows, columns off the top and left


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("GLGEO_SAMPLE_DATA", REPO.parent / "shared" / "data")))
    parser.add_argument("--model", default="deepglobe-landcover")
    parser.add_argument("--margins", default="64,32", help="comma-separated global margins, px (multiples of 32)")
    parser.add_argument("--limit", type=int, default=None, help="the first N scenes only (a quick look)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import rasterio
    import rasterio.errors
    import torch
    from affine import Affine

    import glgeo
    from glgeo.inference import InferenceSettings
    from glgeo.metrics import SegmentationScores, confusion_matrix
    from glgeo.schemes import get_scheme
    from glgeo.segmentation import load_model

    logging.getLogger("glgeo").setLevel(logging.ERROR)  # "has no georeferencing", scene after scene
    warnings.filterwarnings("ignore", category=rasterio.errors.NotGeoreferencedWarning)  # scenes on their pixel map
    torch.set_num_threads(args.threads)
    margins = [int(m) for m in args.margins.split(",")]
    checkpoint = load_model(args.model)
    scheme = get_scheme("deepglobe")
    scenes = validation_scenes(args.data)
    scenes = scenes[: args.limit] if args.limit else scenes
    print(f"# {machine()}; {args.threads} torch thread(s); model {args.model}; {len(scenes)} validation scenes, "
          f"whole and {len(CUTS)} cuts")

    n = scheme.n_classes
    conf = {m: {"whole": np.zeros((n, n + 1), np.int64), "cuts": np.zeros((n, n + 1), np.int64)} for m in margins}
    same = {m: [0, 0] for m in margins}
    seconds = {m: 0.0 for m in margins}
    megapixels = 0.0
    with tempfile.TemporaryDirectory(prefix="glgeo-margin-") as tmp:
        folder = Path(tmp)

        def write(path: Path, pixels: np.ndarray, transform) -> Path:
            with rasterio.open(path, "w", driver="GTiff", width=pixels.shape[1], height=pixels.shape[0], count=3,
                               dtype="uint8", transform=transform) as dst:
                dst.write(pixels.transpose(2, 0, 1))
            return path

        for name, root in scenes:
            pixels, truth = read_scene(name, root)
            inputs = [write(folder / f"{name}.tif", pixels, Affine.identity())]
            for r, c in CUTS:
                inputs.append(write(folder / f"{name}-{r}-{c}.tif", pixels[r:, c:], Affine.translation(c, r)))
            megapixels += sum(SIDE * SIDE if k == 0 else (SIDE - r) * (SIDE - c) for k, (r, c) in enumerate([(0, 0), *CUTS])) / 1e6
            for margin in margins:
                settings = InferenceSettings(global_margin=margin)
                preds = []
                for k, scene in enumerate(inputs):
                    out = folder / f"out-{k}.tif"
                    start = time.perf_counter()
                    glgeo.segment(scene, out, model=checkpoint, settings=settings, overwrite=True)
                    seconds[margin] += time.perf_counter() - start
                    with rasterio.open(out) as src:
                        preds.append(src.read(1).astype(np.int64))
                conf[margin]["whole"] += confusion_matrix(truth, preds[0], n)
                for (r, c), pred in zip(CUTS, preds[1:]):
                    conf[margin]["cuts"] += confusion_matrix(truth[r:, c:], pred, n)
                    same[margin][0] += int((pred == preds[0][r:, c:]).sum())
                    same[margin][1] += pred.size

    print(f"{'margin':>6}  {'whole: mIoU / pix.acc':>22}  {'cuts: mIoU':>10}  {'same class under a cut':>22}  {'s per MP':>8}")
    for margin in margins:
        whole, cuts = SegmentationScores(conf[margin]["whole"], scheme), SegmentationScores(conf[margin]["cuts"], scheme)
        ratio = seconds[margin] / seconds[margins[0]]
        print(f"{margin:>4} px  {100 * whole.miou:13.2f} / {100 * whole.pixel_accuracy:5.2f}  {100 * cuts.miou:10.2f}"
              f"  {100 * same[margin][0] / same[margin][1]:20.2f} %  {seconds[margin] / megapixels:8.3f}  ({ratio:.2f}x)")


if __name__ == "__main__":
    main()
