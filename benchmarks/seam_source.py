"""Which branch carries one image's classes across a seam into its neighbour: the global
view or the patches?

``benchmarks/invariance.py`` finds the mosaic's loss beside the seams between unrelated
images (docs/segment.md, "Where the rest of the loss lies"). This benchmark takes one such
seam, two DeepGlobe images one above the other inside a 700 px nodata border as
``docs/figures/mosaic_seam.py`` draws it (default 19627, water, above 3484, forest), and
segments it four ways with the default model and settings:

* ``mosaic``: the two images as they are;
* ``mirror``: the neighbour replaced by the image's own mirror image, which is what the
  image segmented alone sees beyond its edge (a patch near the edge reads the image
  mirrored there, and so does a global view with its margin);
* ``patches mosaic, global mirror``: the patches read from the mosaic, every context
  window's global image from the mirrored scene;
* ``patches mirror, global mosaic``: the other way round.

For each image it prints the share of its pixels right (the hand-drawn truth's class,
``unknown`` left out) within 25, 100 and 300 px (0.5 m) of the seam. Where the
``patches mosaic, global mirror`` row matches the ``mirror`` row, the patches' own view
across the seam costs nothing and the loss is the global view's.

The global image is swapped by reading it from the other file
(``SceneReader.read_global_raw`` wrapped for the run): a diagnosis, not an engine option.

Example::

    python benchmarks/seam_source.py
    python benchmarks/seam_source.py --above 19627 --below 3484
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from _machine import machine  # noqa: E402

BORDER, SIDE = 700, 2448  # as invariance.py and docs/figures/mosaic_seam.py
BANDS = (25, 100, 300)  # px from the seam


def write_pair(path: Path, above: np.ndarray, below: np.ndarray) -> Path:
    """Two ``(3, SIDE, SIDE)`` images one above the other inside a ``BORDER`` px nodata
    border (an internal mask), as one plain GeoTIFF (no georeferencing)."""
    import rasterio
    from affine import Affine
    from rasterio.windows import Window

    height, width = 2 * SIDE + 2 * BORDER, SIDE + 2 * BORDER
    profile = dict(driver="GTiff", width=width, height=height, count=3, dtype="uint8", tiled=True,
                   blockxsize=512, blockysize=512, transform=Affine.identity())
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(path, "w", **profile) as dst:
        mask = np.zeros((height, width), dtype=np.uint8)
        for k, part in enumerate((above, below)):
            dst.write(part, window=Window(BORDER, BORDER + k * SIDE, SIDE, SIDE))
            mask[BORDER + k * SIDE : BORDER + (k + 1) * SIDE, BORDER : BORDER + SIDE] = 255
        dst.write_mask(mask)
    return path


@contextlib.contextmanager
def global_images_from(other: Path | None):
    """Inside, every context window's global image is read from ``other`` (a scene on the
    same grid) instead of the scene segmented; ``None``: as usual."""
    if other is None:
        yield
        return
    import rasterio

    from glgeo.io import SceneReader

    original = SceneReader.read_global_raw

    def read_global_raw(self, size, window=None):
        kept = self._src
        with rasterio.open(other) as src:
            self._src = src
            try:
                return original(self, size, window)
            finally:
                self._src = kept

    SceneReader.read_global_raw = read_global_raw
    try:
        yield
    finally:
        SceneReader.read_global_raw = original


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("GLGEO_SAMPLE_DATA", REPO.parent / "shared" / "data")))
    parser.add_argument("--above", default="19627", help="DeepGlobe id of the image above the seam")
    parser.add_argument("--below", default="3484", help="DeepGlobe id of the image below it")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import rasterio
    import rasterio.errors
    import torch

    import glgeo
    from glgeo.datasets import read_mask_ids
    from glgeo.inference import InferenceSettings
    from glgeo.schemes import get_scheme

    logging.getLogger("glgeo").setLevel(logging.ERROR)  # the scenes carry no CRS
    warnings.filterwarnings("ignore", category=rasterio.errors.NotGeoreferencedWarning)
    torch.set_num_threads(args.threads)
    scheme = get_scheme("deepglobe")
    pixels, truths = {}, {}
    for name in (args.above, args.below):
        image = args.data / "deepglobe" / "images" / f"{name}_sat.jpg"
        if not image.is_file():
            raise SystemExit(f"no DeepGlobe image {image}: pass --data (the shared sample data folder) or another id")
        with rasterio.open(image) as src:
            pixels[name] = src.read()
        with rasterio.open(args.data / "deepglobe" / "masks" / f"{name}_mask.png") as src:
            truths[name] = read_mask_ids(src, scheme, rgb_threshold=128)
    print(f"# {machine()}; {args.threads} torch thread(s); {args.above} above {args.below}, default model and settings")

    seam = BORDER + SIDE
    columns = slice(BORDER, BORDER + SIDE)
    settings = InferenceSettings()
    with tempfile.TemporaryDirectory(prefix="glgeo-seam-") as tmp:
        folder = Path(tmp)
        mosaic = write_pair(folder / "mosaic.tif", pixels[args.above], pixels[args.below])
        for name, side in ((args.below, "below"), (args.above, "above")):
            flipped = pixels[name][:, ::-1]  # the image mirrored at the seam
            parts = (flipped, pixels[name]) if side == "below" else (pixels[name], flipped)
            mirror = write_pair(folder / f"mirror-{side}.tif", *parts)
            truth = truths[name] if side == "below" else truths[name][::-1]  # rows counted from the seam
            print(f"{name} ({side} the seam), % of its pixels right within " + " / ".join(f"{b}" for b in BANDS) + " px")
            for label, patches, global_from in (
                ("mosaic", mosaic, None),
                ("mirror", mirror, None),
                ("patches mosaic, global mirror", mosaic, mirror),
                ("patches mirror, global mosaic", mirror, mosaic),
            ):
                out = folder / "out.tif"
                with global_images_from(global_from):
                    glgeo.segment(patches, out, settings=settings, overwrite=True)
                with rasterio.open(out) as src:
                    ids = src.read(1)
                part = ids[seam:seam + SIDE, columns] if side == "below" else ids[seam - SIDE:seam, columns][::-1]
                shares = []
                for band in BANDS:
                    scored = truth[:band] != 0  # unknown is not scored
                    shares.append(100 * (part[:band][scored] == truth[:band][scored]).mean())
                print(f"  {label:<31} " + " / ".join(f"{s:5.1f}" for s in shares))


if __name__ == "__main__":
    main()
