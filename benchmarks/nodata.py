"""How are the pixels next to a scene's nodata collar classified?

A scene reprojected or orthorectified onto a north-up grid sits in a collar of nodata, and
every patch and global view along it holds nodata pixels that the network must be fed
something for (``glgeo segment --nodata-fill``): the valid pixels mirrored into the gap
(``mirror``), the view's mean colour (``mean``) or black (``zero``, the released code).

For each full-resolution DeepGlobe scene (default: the crossvali scenes of
``../shared/data/deepglobe``, which the default model's training and checkpoint choice never
saw), the scene and its hand-drawn truth are rotated by ``--angle`` degrees into a north-up
GeoTIFF with an internal nodata mask (the collar), segmented with each fill, and scored
against the rotated truth. Printed per fill, pooled over the scenes: the share of pixels
right by distance from the collar (0-100, 100-300 and 300+ px of 0.5 m), mIoU and pixel
accuracy over the whole scene, and seconds per scene (the fills interleaved scene by scene,
so a change in the machine's load hits them alike). For comparison the unrotated scenes
are segmented too (``unrotated``: no collar, so the fill plays no part).

Example::

    python benchmarks/nodata.py
    python benchmarks/nodata.py --angle 15 --ids 102122,114577
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

#: Distance bands from the collar, px of the 0.5 m scene.
BANDS = (0, 100, 300, 10**6)
FILLS = ("mirror", "mean", "zero")


def rotate(array: np.ndarray, angle: float, fill: int, resample: str) -> np.ndarray:
    """``(rows, cols)`` uint8 ``array`` rotated by ``angle`` degrees, the canvas grown to
    hold it all, ``fill`` outside (PIL, ``resample`` ``"bilinear"`` or ``"nearest"``)."""
    from PIL import Image

    mode = Image.Resampling.BILINEAR if resample == "bilinear" else Image.Resampling.NEAREST
    return np.asarray(Image.fromarray(array).rotate(angle, resample=mode, expand=True, fillcolor=fill))


def collar_distance(shape: tuple[int, int], angle: float, out_shape: tuple[int, int]) -> np.ndarray:
    """Distance of each rotated pixel from the rotated scene's edge, in source pixels
    (rotation keeps distances; negative outside the scene)."""
    h, w = shape
    oh, ow = out_shape
    rows, cols = np.mgrid[:oh, :ow].astype(np.float64)
    y, x = rows + 0.5 - oh / 2, cols + 0.5 - ow / 2
    t = np.deg2rad(angle)  # PIL turns counter-clockwise: undo it to find the source pixel
    sx = np.cos(t) * x - np.sin(t) * y + w / 2
    sy = np.sin(t) * x + np.cos(t) * y + h / 2
    return np.minimum(np.minimum(sx, w - sx), np.minimum(sy, h - sy))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="deepglobe-landcover")
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("GLGEO_SAMPLE_DATA", REPO.parent / "shared" / "data")))
    parser.add_argument("--ids", default=None, help="comma-separated DeepGlobe ids (default: the crossvali scenes)")
    parser.add_argument("--angle", type=float, default=30.0, help="rotation, degrees (default 30)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import rasterio
    import torch
    from affine import Affine

    import glgeo
    from glgeo.datasets import read_mask_ids
    from glgeo.inference import InferenceSettings
    from glgeo.metrics import SegmentationScores, confusion_matrix
    from glgeo.models import load_checkpoint
    from glgeo.schemes import NODATA_ID, get_scheme

    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore", module="rasterio")
    torch.set_num_threads(args.threads)
    root = args.data / "deepglobe"
    if not (root / "images").is_dir():
        raise SystemExit(f"no full-resolution DeepGlobe images at {root}: pass --data (the shared sample data folder)")
    if args.ids:
        ids = args.ids.split(",")
    else:
        names = (root / "splits" / "crossvali.txt").read_text().split()
        ids = [n.removesuffix("_sat.jpg") for n in names if (root / "images" / n).exists()]
    scheme = get_scheme("deepglobe")
    checkpoint = load_checkpoint(args.model)
    n = checkpoint.scheme.n_classes
    runs = {fill: InferenceSettings(device="cpu", torch_threads=args.threads, nodata_fill=fill) for fill in FILLS}
    conf = {label: np.zeros((n, n + 1), dtype=np.int64) for label in (*FILLS, "unrotated")}
    right = {label: np.zeros((2, len(BANDS) - 1)) for label in conf}  # right, pixels per band
    seconds = {label: 0.0 for label in conf}
    print(f"# {machine()}; model {args.model}; scenes rotated by {args.angle:g} degrees: {', '.join(ids)}")
    with tempfile.TemporaryDirectory(prefix="glgeo-nodata-") as tmp:
        for name in ids:
            with rasterio.open(root / "images" / f"{name}_sat.jpg") as src:
                pixels = src.read()
            with rasterio.open(root / "masks" / f"{name}_mask.png") as src:
                truth = read_mask_ids(src, scheme)
            bands = [rotate(b, args.angle, 0, "bilinear") for b in pixels]
            inside = rotate(np.full(truth.shape, 255, np.uint8), args.angle, 0, "nearest") == 255
            rotated_truth = np.where(inside, rotate(truth.astype(np.uint8), args.angle, 0, "nearest"), NODATA_ID)
            distance = collar_distance(truth.shape, args.angle, inside.shape)
            scene = Path(tmp) / f"{name}-rotated.tif"
            profile = dict(driver="GTiff", height=inside.shape[0], width=inside.shape[1], count=3, dtype="uint8",
                           tiled=True, blockxsize=512, blockysize=512, crs="EPSG:32615",
                           transform=Affine.translation(500000, 4100000) * Affine.scale(0.5, -0.5))
            with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(scene, "w", **profile) as dst:
                dst.write(np.stack(bands))
                dst.write_mask(inside.astype(np.uint8) * 255)
            cases = [(fill, scene, rotated_truth, distance, settings) for fill, settings in runs.items()]
            plain = collar_distance(truth.shape, 0.0, truth.shape)  # from the scene's own edge
            cases.append(("unrotated", root / "images" / f"{name}_sat.jpg", truth, plain, runs["mirror"]))
            scene_right = {}
            for label, path, target, dist, settings in cases:
                out = Path(tmp) / f"{name}-{label}.tif"
                start = time.perf_counter()
                glgeo.segment(path, out, model=checkpoint, settings=settings, overwrite=True)
                seconds[label] += time.perf_counter() - start
                with rasterio.open(out) as src:
                    classes = src.read(1)
                    classes = np.where(classes == src.nodata, NODATA_ID, classes)
                conf[label] += confusion_matrix(target, classes, n)
                known = target != NODATA_ID
                scene_right[label] = np.zeros((2, len(BANDS) - 1))
                for i, (lo, hi) in enumerate(zip(BANDS[:-1], BANDS[1:])):
                    band = known & (dist >= lo) & (dist < hi)
                    scene_right[label][:, i] = ((classes == target)[band].sum(), band.sum())
                right[label] += scene_right[label]
            near = {label: f"{100 * r[0] / max(p[0], 1):.1f} %" for label, (r, p) in scene_right.items()}
            print(f"  {name}: right within {BANDS[1]} px of the collar: "
                  + ", ".join(f"{label} {v}" for label, v in near.items() if label != "unrotated"), flush=True)
    print("fill        pixels right by distance from the collar (px of 0.5 m)       mIoU  pix.acc   s/scene")
    for label in conf:
        scores = SegmentationScores(conf[label], checkpoint.scheme)
        share = ", ".join(f"{lo}-{hi if hi < 10**6 else ''} {100 * r / max(p, 1):5.1f} %"
                          for lo, hi, r, p in zip(BANDS[:-1], BANDS[1:], *right[label]))
        print(f"{label:<11} {share}   {100 * scores.miou:6.2f}% {100 * scores.pixel_accuracy:6.2f}%  "
              f"{seconds[label] / len(ids):7.2f}")
    print("(unrotated: the scenes as they are, no collar; its bands are distances from the scene's edge)")


if __name__ == "__main__":
    main()
