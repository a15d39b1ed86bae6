"""What leaving the far part of a wide window overlap to the neighbour changes.

Context windows evenly spaced over a scene a few footprints across overlap by much more
than their minimum overlap; glgeo lets two windows blend over at most twice it and each
window's patches cover only what it keeps (:func:`glgeo.tiling.ceded_sides`). This
benchmark segments scenes of such sizes with the engine as it is (``shared``) and with
every window computing all its patches (``whole``, the engine before: the rule switched
off), and prints per scene and engine the patches computed, the seconds (the faster of
two alternating runs), the mIoU (DeepGlobe's six scored classes) and pixel accuracy
against the ground truth, and the share of pixels both engines give the same class.

The scenes: the four full-resolution DeepGlobe images that the default land-cover model's
card holds out (``crossvali`` ids among ``../shared/data/deepglobe``), put together as a
2 x 2 mosaic (4896 px a side at 0.5 m) and cut from its top-left corner to the sides
asked for, georeferenced (UTM, 0.5 m) so patches lie on the map's lattice
(``--grid-anchor world``), and read by the default model at 2 m (a 2456 px side is 614 px
of its working grid: two 612 px windows a side sharing 610 px).

Example::

    python benchmarks/wide_overlaps.py                     # 2456, 3000, 3600 and 4896 px
    python benchmarks/wide_overlaps.py --sides 2456 --anchors world,scene

Accuracy here compares the two engines on the same pixels; the model's held-out accuracy
is in its card.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
HELD_OUT = ("180902", "19627", "2774", "794214")


def build_scenes(data: Path, sides: list[int], folder: Path) -> tuple[dict[int, Path], np.ndarray]:
    """The cuts of the 2 x 2 mosaic as GeoTIFFs, and the mosaic's truth (class ids)."""
    import rasterio
    from affine import Affine

    from glgeo.datasets import decode_mask
    from glgeo.schemes import DEEPGLOBE

    images, truths = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        for name in HELD_OUT:
            with rasterio.open(data / "deepglobe" / "images" / f"{name}_sat.jpg") as src:
                images.append(src.read())
            with rasterio.open(data / "deepglobe" / "masks" / f"{name}_mask.png") as src:
                truths.append(decode_mask(src.read(), DEEPGLOBE, rgb_threshold=128))
    mosaic = np.concatenate([np.concatenate(images[:2], 2), np.concatenate(images[2:], 2)], 1)
    truth = np.concatenate([np.concatenate(truths[:2], 1), np.concatenate(truths[2:], 1)], 0)
    scenes = {}
    for side in sides:
        if side > mosaic.shape[1]:
            raise SystemExit(f"--sides: {side} px is larger than the {mosaic.shape[1]} px mosaic")
        path = folder / f"heldout_{side}.tif"
        profile = dict(
            driver="GTiff", width=side, height=side, count=3, dtype="uint8", crs="EPSG:32633",
            transform=Affine(0.5, 0.0, 400000.0, 0.0, -0.5, 5000000.0), tiled=True, blockxsize=512,
            blockysize=512, photometric="RGB",
        )  # fmt: skip
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(mosaic[:, :side, :side])
        scenes[side] = path
    return scenes, truth


@contextmanager
def whole_windows(enabled: bool):
    """Every window keeps all its patches (the rule switched off) while ``enabled``."""
    import glgeo.inference as inference

    kept = inference.ceded_sides
    if enabled:
        inference.ceded_sides = lambda before, after, share, keep, size: (0, 0)
    try:
        yield
    finally:
        inference.ceded_sides = kept


def scores(classes: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """mIoU over DeepGlobe's six scored classes (1-6, as ``glgeo evaluate``) and pixel accuracy, %."""
    from glgeo.schemes import NODATA_ID

    valid = truth != NODATA_ID
    ious = []
    for c in range(1, 7):
        a, b = (classes == c) & valid, (truth == c) & valid
        if b.any():
            ious.append((a & b).sum() / (a | b).sum())
    return 100 * float(np.mean(ious)), 100 * float(((classes == truth) & valid).sum() / valid.sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("GLGEO_SAMPLE_DATA", REPO.parent / "shared" / "data")))
    parser.add_argument("--model", default="deepglobe-landcover")
    parser.add_argument("--sides", default="2456,3000,3600,4896", help="scene sides in px (0.5 m), at most 4896")
    parser.add_argument("--anchors", default="world", help="grid anchors: world and/or scene")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--workdir", type=Path, default=REPO / "runs" / "bench_wide_overlaps")
    args = parser.parse_args()

    import rasterio
    import torch

    from glgeo.inference import InferenceSettings
    from glgeo.schemes import NODATA_ID
    from glgeo.segmentation import segment

    if not all((args.data / "deepglobe" / "images" / f"{n}_sat.jpg").is_file() for n in HELD_OUT):
        raise SystemExit(f"the held-out DeepGlobe images {', '.join(HELD_OUT)} are not under {args.data}/deepglobe")
    args.workdir.mkdir(parents=True, exist_ok=True)
    sides = [int(s) for s in args.sides.split(",")]
    scenes, truth = build_scenes(args.data, sides, args.workdir)
    print(f"# {platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"torch {torch.__version__}, {args.threads} torch threads, model {args.model}")
    print(f"{'side px':>7} {'anchor':6} {'engine':7} {'windows':>7} {'patches':>7} {'s':>6} {'mIoU':>6} {'acc':>6} {'same class':>10}")
    for side in sides:
        for anchor in args.anchors.split(","):
            settings = InferenceSettings(torch_threads=args.threads, grid_anchor=anchor)
            runs = {}
            for attempt in range(2):  # alternating, the faster of two
                for engine in ("whole", "shared"):
                    out = args.workdir / f"{engine}_{side}_{anchor}.tif"
                    with whole_windows(engine == "whole"):
                        start = time.perf_counter()
                        summary = segment(scenes[side], out, model=args.model, settings=settings, overwrite=True)
                        seconds = time.perf_counter() - start
                    best = min(seconds, runs.get(engine, (None, np.inf))[1])
                    runs[engine] = (summary, best, out)
            maps = {}
            for engine, (summary, seconds, out) in runs.items():
                with rasterio.open(out) as src:
                    classes = src.read(1)
                    classes = np.where(classes == src.nodata, NODATA_ID, classes) if src.nodata is not None else classes
                maps[engine] = classes
                miou, acc = scores(classes, truth[:side, :side])
                same = "" if engine == "whole" else f"{100 * (classes == maps['whole']).mean():9.2f}%"
                print(f"{side:7d} {anchor:6} {engine:7} {summary.stats.windows:7d} {summary.stats.patches:7d} "
                      f"{seconds:6.1f} {miou:6.2f} {acc:6.2f} {same:>10}", flush=True)


if __name__ == "__main__":
    main()
