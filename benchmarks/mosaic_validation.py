"""How much does a land-cover model lose beside seams between unrelated scenes? Measured on
the scenes its checkpoints were chosen on, so models can be compared without the held-out ones.

``benchmarks/invariance.py`` puts nine DeepGlobe images into a 3 x 3 mosaic and compares
the mosaic's map with the images segmented alone; three of those nine are scenes the
default model's card reports on, so a model must not be chosen on it. This benchmark does
the same on the default land-cover model's 39 validation scenes (the full-resolution
scene 855 and the 38 validation ids of the 256 px copies, the card's
``validation_scenes``, upsampled to 2448 px as ``models/zoo/prepare_landcover.py`` writes
them): the first 36 make four 3 x 3 mosaics, each inside a 700 px nodata border as in
``invariance.py``. For each model (one torch thread, the engine's default settings but for
``--mode``, models alternating mosaic by mosaic) it prints, pooled over the 36 scenes:

* mIoU and pixel accuracy of the scenes segmented alone and inside their mosaic, and the
  change (what ``invariance.py``'s mosaic line measures on its nine images);
* the share of pixels right alone and in the mosaic by distance from a seam with a
  neighbour scene (0-25, 25-100, 100-300 and 300+ px at 0.5 m), with each band's part of
  the change in pixel accuracy, as ``invariance.py`` prints it; pixels nearer the nodata
  border than any seam are counted in the pooled figures only;
* each class's IoU alone and in the mosaics;
* seconds per megapixel of the scenes (alone and in the mosaic together; a rough figure:
  ``invariance.py`` is the timing benchmark).

Example::

    python benchmarks/mosaic_validation.py                              # the default model
    python benchmarks/mosaic_validation.py --models deepglobe-landcover,runs/m1/model.pt
    python benchmarks/mosaic_validation.py --mode global      # the global branch alone
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

BORDER = 700  # nodata border around each mosaic, px (as invariance.py)
BANDS = (0, 25, 100, 300, 10**6)  # distance from a seam with a neighbour scene, px at 0.5 m


def seam_bands(row: int, col: int, side: int) -> list[np.ndarray]:
    """For the scene at ``(row, col)`` of a 3 x 3 mosaic of ``side`` px scenes: one mask per
    distance band of :data:`BANDS`, of the pixels whose nearest edge is a seam with a
    neighbour scene (not the mosaic's outer edge, which faces the nodata border)."""
    rows, cols = np.mgrid[:side, :side]
    edges = [(rows, row > 0), (side - 1 - rows, row < 2), (cols, col > 0), (side - 1 - cols, col < 2)]
    dist = np.stack([d for d, _ in edges])
    seam = np.array([faces for _, faces in edges])[np.argmin(dist, axis=0)]
    to_edge = dist.min(axis=0)
    return [seam & (to_edge >= lo) & (to_edge < hi) for lo, hi in zip(BANDS[:-1], BANDS[1:])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("GLGEO_SAMPLE_DATA", REPO.parent / "shared" / "data")))
    parser.add_argument("--models", default="deepglobe-landcover", help="comma-separated checkpoints or zoo names")
    parser.add_argument("--mosaics", type=int, default=4, help="how many 3 x 3 mosaics (at most 4: 36 of the 39 scenes)")
    parser.add_argument("--mode", default=None, choices=["global", "g2l", "bidirectional"],
                        help="the models' mode (default: each model's own)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import rasterio
    import rasterio.errors
    import torch
    from affine import Affine
    from rasterio.windows import Window

    import glgeo
    from glgeo.inference import InferenceSettings
    from glgeo.metrics import SegmentationScores, confusion_matrix
    from glgeo.schemes import NODATA_ID, get_scheme
    from glgeo.segmentation import load_model

    logging.getLogger("glgeo").setLevel(logging.ERROR)  # "has no georeferencing", scene after scene
    warnings.filterwarnings("ignore", category=rasterio.errors.NotGeoreferencedWarning)
    torch.set_num_threads(args.threads)
    scheme = get_scheme("deepglobe")
    scenes = validation_scenes(args.data)[: 9 * min(args.mosaics, 4)]
    groups = [scenes[k : k + 9] for k in range(0, len(scenes) - 8, 9)]
    models = args.models.split(",")
    print(f"# {machine()}; {args.threads} torch thread(s); {len(groups)} mosaics of nine validation scenes; "
          f"mode {args.mode or 'each model its own'}")

    bands = [seam_bands(*divmod(k, 3), SIDE) for k in range(9)]
    n = scheme.n_classes
    conf = {m: {"alone": np.zeros((n, n + 1), np.int64), "mosaic": np.zeros((n, n + 1), np.int64)} for m in models}
    right = {m: np.zeros((3, len(BANDS) - 1)) for m in models}  # right alone, right in the mosaic, pixels
    seconds = {m: 0.0 for m in models}
    checkpoints = {m: load_model(m) for m in models}
    settings = InferenceSettings(mode=args.mode)
    size = 3 * SIDE + 2 * BORDER
    total = 0
    with tempfile.TemporaryDirectory(prefix="glgeo-mosaic-val-") as tmp:
        folder = Path(tmp)

        def run(model: str, scene: Path) -> np.ndarray:
            """The model's map of the scene (class ids, :data:`NODATA_ID` off the data), timed."""
            out = folder / "out.tif"
            start = time.perf_counter()
            glgeo.segment(scene, out, model=checkpoints[model], settings=settings, overwrite=True)
            seconds[model] += time.perf_counter() - start
            with rasterio.open(out) as src:
                ids = src.read(1)
                return np.where(ids == src.nodata, NODATA_ID, ids).astype(np.int64)

        for g, group in enumerate(groups):
            mosaic = folder / f"mosaic-{g}.tif"
            profile = dict(driver="GTiff", width=size, height=size, count=3, dtype="uint8", tiled=True,
                           blockxsize=512, blockysize=512, compress="deflate", transform=Affine.identity())
            tiles, truths = [], []
            with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(mosaic, "w", **profile) as dst:
                mask = np.zeros((size, size), dtype=np.uint8)
                for k, (name, root) in enumerate(group):
                    r, c = divmod(k, 3)
                    top, left = BORDER + r * SIDE, BORDER + c * SIDE
                    pixels, truth = read_scene(name, root)
                    pixels = pixels.transpose(2, 0, 1)
                    dst.write(pixels, window=Window(left, top, SIDE, SIDE))
                    mask[top : top + SIDE, left : left + SIDE] = 255
                    tile = folder / f"tile-{g}-{k}.tif"  # where it lies in the mosaic, as a tile of an orthophoto
                    with rasterio.open(tile, "w", driver="GTiff", width=SIDE, height=SIDE, count=3, dtype="uint8",
                                       transform=Affine.translation(left, top)) as out:
                        out.write(pixels)
                    tiles.append(tile)
                    truths.append(truth)
                dst.write_mask(mask)
            total += 9 * SIDE * SIDE
            for m in models:  # models alternate mosaic by mosaic
                whole = run(m, mosaic)
                for k, (tile, truth) in enumerate(zip(tiles, truths)):
                    r, c = divmod(k, 3)
                    top, left = BORDER + r * SIDE, BORDER + c * SIDE
                    alone, part = run(m, tile), whole[top : top + SIDE, left : left + SIDE]
                    conf[m]["alone"] += confusion_matrix(truth, alone, n)
                    conf[m]["mosaic"] += confusion_matrix(truth, part, n)
                    for i, sel in enumerate(bands[k]):
                        right[m][:, i] += ((alone == truth)[sel].sum(), (part == truth)[sel].sum(), sel.sum())
            print(f"mosaic {g + 1}/{len(groups)} done", flush=True)

    print(f"{'model':<28} {'alone: mIoU / pix.acc':>22} {'mosaic':>16} {'change':>16}  s per MP")
    for m in models:
        a, b = SegmentationScores(conf[m]["alone"], scheme), SegmentationScores(conf[m]["mosaic"], scheme)
        print(f"{m[-28:]:<28} {100 * a.miou:13.2f} / {100 * a.pixel_accuracy:5.2f} {100 * b.miou:8.2f} / {100 * b.pixel_accuracy:5.2f}"
              f" {100 * (b.miou - a.miou):+8.2f} / {100 * (b.pixel_accuracy - a.pixel_accuracy):+5.2f}"
              f"  {seconds[m] / (2 * total / 1e6):.3f}")
        ra, rm, k = right[m]
        print(f"{'':<28} facing a neighbour scene: " + ", ".join(
            f"{lo}-{hi if hi < SIDE else ''} px {100 * x / c:.1f} -> {100 * y / c:.1f} % ({100 * (y - x) / total:+.2f})"
            for lo, hi, x, y, c in zip(BANDS[:-1], BANDS[1:], ra, rm, k)))
        print(f"{'':<28} per class, alone -> mosaic: " + ", ".join(
            f"{name} {100 * x:.1f} -> {100 * y:.1f}" for name, x, y in zip(scheme.names, a.iou, b.iou)))


if __name__ == "__main__":
    main()
