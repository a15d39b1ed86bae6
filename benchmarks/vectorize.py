"""Benchmark ``glgeo.vectorize``: seconds and peak memory against raster area.

Class rasters of about 25, 100 and 400 megapixels are built by tiling the real DeepGlobe
masks (``$GLGEO_SAMPLE_DATA/deepglobe/masks/*.png``, colour-coded, decoded to class ids with
the deepglobe scheme) into a tiled, compressed GeoTIFF written window by window. Each size
is vectorized in a fresh Python process, which reports its wall time and its peak resident
memory (``resource.getrusage``), so one run cannot inflate the next. For a fixed block size
the peak must not grow with the raster's area.

Usage::

    python benchmarks/vectorize.py                       # 25, 100 and 400 MP, blocks of 2048
    python benchmarks/vectorize.py --sizes 25 100 --block-size 1024 --simplify 1 --min-area 10
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
PIXEL_SIZE = 0.5  # DeepGlobe's ground sampling distance, metres


def sample_data_dir() -> Path:
    return Path(os.environ.get("GLGEO_SAMPLE_DATA", REPO.parent / "shared" / "data"))


def decode_mask(rgb: np.ndarray) -> np.ndarray:
    """DeepGlobe colour mask (3, H, W) -> class ids, as the challenge decodes it (channel > 127)."""
    from glgeo.schemes import DEEPGLOBE

    bits = (rgb[0] > 127).astype(np.uint8) * 4 + (rgb[1] > 127) * 2 + (rgb[2] > 127)
    lut = np.zeros(8, dtype=np.uint8)  # red alone is no class: unknown (0), as in the challenge
    for info in DEEPGLOBE.classes:
        red, green, blue = info.mask_value  # type: ignore[misc]
        lut[(red > 127) * 4 + (green > 127) * 2 + (blue > 127)] = info.id
    return lut[bits]


def build_raster(path: Path, side: int) -> float:
    """Tile the DeepGlobe masks into a side x side class GeoTIFF; return the seconds taken."""
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    from glgeo.schemes import DEEPGLOBE
    from glgeo.styles import write_raster_sidecars

    masks = sorted((sample_data_dir() / "deepglobe" / "masks").glob("*_mask.png"))
    if not masks:
        raise SystemExit(f"no DeepGlobe masks under {sample_data_dir()}; set GLGEO_SAMPLE_DATA")
    started = time.perf_counter()
    tiles = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)  # PNG masks have no CRS
        for mask in masks:
            with rasterio.open(mask) as src:
                tiles.append(decode_mask(src.read()))
    tile = tiles[0].shape[0]
    profile = dict(
        driver="GTiff", width=side, height=side, count=1, dtype="uint8", nodata=255, crs="EPSG:32618",
        transform=from_origin(500_000.0, 4_400_000.0, PIXEL_SIZE, PIXEL_SIZE), tiled=True, blockxsize=512,
        blockysize=512, compress="deflate", BIGTIFF="IF_SAFER",
    )
    with rasterio.open(path, "w", **profile) as dst:
        dst.write_colormap(1, DEEPGLOBE.colormap())
        for row in range(math.ceil(side / tile)):
            for col in range(math.ceil(side / tile)):
                data = tiles[(row * 7 + col * 3) % len(tiles)]
                height = min(tile, side - row * tile)
                width = min(tile, side - col * tile)
                dst.write(data[:height, :width], 1, window=Window(col * tile, row * tile, width, height))
    write_raster_sidecars(path, DEEPGLOBE)
    return time.perf_counter() - started


def child(raster: str, out: str, block_size: int, simplify: float | None, min_area: float | None) -> None:
    """Vectorize in this (fresh) process and print one JSON line of measurements."""
    from glgeo.vectorization import vectorize

    baseline_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    result = vectorize(raster, out, block_size=block_size, simplify=simplify, min_area=min_area, overwrite=True)
    seconds = time.perf_counter() - started
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({
        "seconds": seconds,
        "peak_rss_mb": peak_kb / 1024,
        "import_rss_mb": baseline_kb / 1024,
        "polygons": result.n_polygons,
        "blocks": result.n_blocks,
    }))


def run_child(args: list[str]) -> str:
    """Run this script in a fresh process. Linux keeps ru_maxrss across fork and exec, so
    the parent stays small (it never builds or vectorizes itself) to not leak into the peak."""
    completed = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise SystemExit(f"benchmark step {args[:2]} failed:\n{completed.stderr}")
    return completed.stdout.strip().splitlines()[-1]


def measure(raster: Path, out: Path, block_size: int, simplify: float | None, min_area: float | None) -> dict:
    command = ["--child", str(raster), str(out), "--block-size", str(block_size)]
    if simplify:
        command += ["--simplify", str(simplify)]
    if min_area:
        command += ["--min-area", str(min_area)]
    return json.loads(run_child(command))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[25, 100, 400], help="megapixels")
    parser.add_argument("--block-size", type=int, default=2048)
    parser.add_argument("--simplify", type=float, default=None)
    parser.add_argument("--min-area", type=float, default=None)
    parser.add_argument("--workdir", type=Path, default=None, help="keep the rasters here (default: a temp dir)")
    parser.add_argument("--child", nargs=2, metavar=("RASTER", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--build", nargs=2, metavar=("RASTER", "SIDE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(*args.child, args.block_size, args.simplify, args.min_area)
        return
    if args.build:
        print(build_raster(Path(args.build[0]), int(args.build[1])))
        return

    with tempfile.TemporaryDirectory(prefix="glgeo-bench-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        options = f"block {args.block_size} px, simplify {args.simplify}, min-area {args.min_area}"
        print(f"glgeo vectorize benchmark ({options}); {os.cpu_count()} CPUs; python {sys.version.split()[0]}")
        print(f"{'raster':>14} {'MP':>6} {'blocks':>6} {'polygons':>9} {'build s':>8} {'seconds':>8} "
              f"{'MP/s':>6} {'peak RSS MB':>12} {'after imports MB':>17}")
        for megapixels in args.sizes:
            side = int(round(math.sqrt(megapixels * 1e6)))
            raster = workdir / f"deepglobe_tiled_{side}.tif"
            build = 0.0 if raster.exists() else float(run_child(["--build", str(raster), str(side)]))
            stats = measure(raster, workdir / f"deepglobe_tiled_{side}.gpkg", args.block_size, args.simplify,
                            args.min_area)
            mp = side * side / 1e6
            print(f"{side:>6} x {side:<6} {mp:>6.1f} {stats['blocks']:>6} {stats['polygons']:>9} {build:>8.1f} "
                  f"{stats['seconds']:>8.1f} {mp / stats['seconds']:>6.2f} {stats['peak_rss_mb']:>12.0f} "
                  f"{stats['import_rss_mb']:>17.0f}", flush=True)


if __name__ == "__main__":
    main()
