"""Do a scene's overviews, or its file format, change its map?

Overviews (``gdaladdo``, QGIS's "Build pyramids", a COG's internal ones, a JPEG's
reduced-resolution decoding) are another copy of the pixels, made by whatever resampling
built them. A model that reads a scene on a coarser working grid (the default model: 0.5 m
DeepGlobe pixels read at 2 m) gets decimated reads, and GDAL serves decimated reads from
overviews when a file has them. glgeo opens scenes with ``OVERVIEW_LEVEL=NONE``
(:data:`glgeo.resolution.FULL_RESOLUTION_READS`), so the pixels alone decide.

For each DeepGlobe image (default: the first four of ``../shared/data/deepglobe``) this
segments, with the default model and settings:

* the image as a plain tiled GeoTIFF (the reference);
* the same GeoTIFF with internal overviews built with nearest resampling (``gdaladdo``'s and
  QGIS's default);
* the same GeoTIFF with external (``.ovr``) overviews built with average resampling;
* the original JPEG,

and prints the share of pixels that get the reference's class. ``--gdal-overviews`` lets GDAL
use the overviews, as glgeo did before (to see what the option prevents). Last, the price:
the seconds per JPEG image with full-resolution reads against reduced decoding, the two
alternated image by image in this run.

Example::

    python benchmarks/overviews.py
    python benchmarks/overviews.py --gdal-overviews
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from _machine import machine  # noqa: E402

VARIANTS = ("nearest overviews", "average .ovr", "JPEG")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("GLGEO_SAMPLE_DATA", REPO.parent / "shared" / "data")))
    parser.add_argument("--model", default="deepglobe-landcover")
    parser.add_argument("--images", default=None, help="comma-separated DeepGlobe ids (default: the first four)")
    parser.add_argument("--gdal-overviews", action="store_true", help="let GDAL read overviews (glgeo's behaviour before)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()

    import rasterio
    import torch
    from rasterio.enums import Resampling

    import glgeo
    from glgeo.inference import InferenceSettings
    from glgeo.resolution import FULL_RESOLUTION_READS
    from glgeo.segmentation import load_model

    logging.getLogger("glgeo").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=rasterio.errors.NotGeoreferencedWarning)
    torch.set_num_threads(args.threads)
    if args.gdal_overviews:
        FULL_RESOLUTION_READS.clear()  # glgeo.resolution.open_pixels opens files with overviews with these
    root = args.data / "deepglobe" / "images"
    if not root.is_dir():
        sys.exit(f"no DeepGlobe images under {root}")
    ids = args.images.split(",") if args.images else sorted(p.name.split("_")[0] for p in root.glob("*_sat.jpg"))[:4]
    checkpoint = load_model(args.model)
    settings = InferenceSettings(device="cpu")
    print(f"# {machine()}; model {args.model} (read at scale {checkpoint.scene_scale:g}); "
          f"{'GDAL may read overviews' if args.gdal_overviews else 'glgeo default: full-resolution reads'}")

    with tempfile.TemporaryDirectory(prefix="glgeo-overviews-") as tmp:
        folder = Path(tmp)

        def segment(path: Path) -> np.ndarray:
            out = folder / "out.tif"
            glgeo.segment(path, out, model=checkpoint, settings=settings, overwrite=True)
            with rasterio.open(out) as src:
                return src.read(1)

        same = {v: [] for v in VARIANTS}
        for name in ids:
            jpeg = root / f"{name}_sat.jpg"
            plain = folder / "plain.tif"
            with rasterio.open(jpeg, OVERVIEW_LEVEL="NONE") as src:
                pixels = src.read()
            with rasterio.open(plain, "w", driver="GTiff", width=pixels.shape[2], height=pixels.shape[1], count=3,
                               dtype="uint8", tiled=True, blockxsize=512, blockysize=512) as dst:
                dst.write(pixels)
            files = {}
            for variant, resampling, external in (("nearest overviews", "nearest", False), ("average .ovr", "average", True)):
                files[variant] = folder / f"{resampling}.tif"
                shutil.copy(plain, files[variant])
                with rasterio.Env(TIFF_USE_OVR=external), rasterio.open(files[variant], "r+") as dst:
                    dst.build_overviews([2, 4, 8], getattr(Resampling, resampling))
            files["JPEG"] = jpeg
            reference = segment(plain)
            for variant in VARIANTS:
                same[variant].append(float((segment(files[variant]) == reference).mean()))
            print(f"{name:>8}: " + ", ".join(f"{v} {100 * same[v][-1]:.2f} %" for v in VARIANTS), flush=True)
            for path in folder.glob("*.tif*"):
                path.unlink()
        print("pixels with the plain GeoTIFF's class, lowest - highest over the images: "
              + ", ".join(f"{v} {100 * min(same[v]):.2f}-{100 * max(same[v]):.2f} %" for v in VARIANTS))
        saved = dict(FULL_RESOLUTION_READS)
        seconds = {"full-resolution reads": [], "reduced decoding": []}
        for name in ids * 2:  # alternated, the faster of two: the machine's load hits both alike
            for how in seconds:
                FULL_RESOLUTION_READS.clear()
                if how == "full-resolution reads":
                    FULL_RESOLUTION_READS.update(OVERVIEW_LEVEL="NONE")
                start = time.perf_counter()
                segment(root / f"{name}_sat.jpg")
                seconds[how].append(time.perf_counter() - start)
        FULL_RESOLUTION_READS.clear()
        FULL_RESOLUTION_READS.update(saved)
        full, reduced = (np.minimum(*np.split(np.array(v), 2)).mean() for v in seconds.values())
        print(f"seconds per JPEG image: full-resolution reads {full:.2f}, reduced decoding {reduced:.2f}: {full / reduced:.2f}x")


if __name__ == "__main__":
    main()
