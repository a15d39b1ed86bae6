"""Tiles of one area: segmented one by one, or as one scene?

Orthophotos are delivered as tiles. On the three shared Joplin tiles (0.6 m, EPSG:26915,
three of a 2 x 2 block: ``../shared/data/joplin``), for each model (default: the zoo's
``inria-buildings`` and ``deepglobe-landcover``), every tile is segmented alone, as
``glgeo segment 'tiles/*.tif' --out-dir maps`` does, and the three as one scene, as
``glgeo segment 'tiles/*.tif' --mosaic -o map.tif`` does (a VRT of them, the missing quarter
nodata), with ``glgeo segment``'s defaults. It prints:

1. **same class**: the share of each tile's pixels that get the same class both ways, by
   distance from the tile's edges that face another tile;
2. **seams**: along each border between two tiles, the share of the pixel pairs across it
   whose class changes, in the map made tile by tile and in the one-scene map, with the
   median of the 10 lines beside the border (a seam: many more changes on the border than
   beside it; the ``lines`` of ``benchmarks/invariance.py`` count lines 4 times above it);
3. **time** of both ways, in this run (after one tile segmented to load the model);
4. **buildings** (a model with a ``building`` class): building IoU against the shared
   footprints on ``tile_1361-9136`` (held out by the zoo's ``inria-buildings``) and
   ``tile_337-9136`` (which trained it), both ways. ``tile_337-10160``'s footprints miss
   its largest buildings (``docs/figures/joplin_footprints.png``), so it is not scored.

Example::

    python benchmarks/tiles.py
    python benchmarks/tiles.py --models runs/b/model.pt --threads 2
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from _machine import machine  # noqa: E402

TILES = ("tile_337-9136", "tile_1361-9136", "tile_337-10160")
#: scored against the footprints: the buildings model's held-out tile, and one it trained on
SCORED = {"tile_1361-9136": "held out", "tile_337-9136": "trained on"}
#: distance bands from the tile edges that face another tile, px of 0.6 m
BANDS = (0, 25, 100, 300, 10**6)


def change_rate(classes: np.ndarray, valid: np.ndarray, axis: int, index: int) -> float:
    """Share of the pixel pairs across the boundary before ``index`` along ``axis`` (a
    column boundary for axis 1) whose class changes, over the pairs valid on both sides."""
    a = np.take(classes, index - 1, axis=axis)
    b = np.take(classes, index, axis=axis)
    both = np.take(valid, index - 1, axis=axis) & np.take(valid, index, axis=axis)
    return float((a != b)[both].mean()) if both.any() else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("GLGEO_SAMPLE_DATA", REPO.parent / "shared" / "data")))
    parser.add_argument("--models", default="inria-buildings,deepglobe-landcover")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import geopandas as gpd
    import rasterio
    import torch
    from rasterio.features import rasterize

    from glgeo import segment
    from glgeo.inference import InferenceSettings
    from glgeo.mosaic import write_tiles_vrt

    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.ERROR)
    folder = args.data / "joplin"
    paths = [folder / f"{name}.tif" for name in TILES]
    missing = [p for p in paths if not p.exists()]
    if missing:
        sys.exit(f"{missing[0]} not found: point --data at the shared sample data")
    print(f"# {machine()}, {args.threads} torch thread(s)")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        scene = tmp / "area.vrt"  # what glgeo segment TILES --mosaic reads
        layout = write_tiles_vrt(paths, scene)
        transform = layout.transform
        windows = {name: (slice(row, row + 1024), slice(col, col + 1024))
                   for name, (col, row) in zip(TILES, layout.offsets)}
        with rasterio.open(scene) as src:
            valid_in = src.read_masks(1) > 0
            crs = src.crs
        height, width = valid_in.shape
        print(f"one scene: {width} x {height} px, the three tiles and a nodata quarter; tiles {', '.join(TILES)}")

        # the borders between tiles: (axis, index on that axis, rows or columns along it)
        borders = []
        for a in TILES:
            for b in TILES:
                ra, ca = windows[a]
                rb, cb = windows[b]
                if ca.stop == cb.start and ra == rb:
                    borders.append((f"{a} | {b}", 1, ca.stop, ra))
                if ra.stop == rb.start and ca == cb:
                    borders.append((f"{a} / {b}", 0, ra.stop, ca))
        # each pixel's distance from the tile edges that face another tile
        distance = np.full((height, width), 10**6, np.int64)
        rows, cols = np.mgrid[0:height, 0:width]
        for _, axis, index, along in borders:  # from the border's segment, not its whole line
            across, lengthwise = (rows, cols) if axis == 0 else (cols, rows)
            beyond = np.maximum(np.maximum(along.start - lengthwise, lengthwise - (along.stop - 1)), 0)
            d = np.maximum(np.abs(across - index + 0.5) - 0.5, beyond)
            distance = np.minimum(distance, d.astype(np.int64))

        footprints = gpd.read_file(folder / "footprints.geojson").to_crs(crs)
        truth = rasterize(((g, 1) for g in footprints.geometry), out_shape=(height, width), transform=transform,
                          dtype=np.uint8) == 1

        for model in args.models.split(","):
            settings = InferenceSettings(device="cpu")
            tiled = np.zeros((height, width), np.int16)
            tiled_valid = np.zeros((height, width), bool)
            segment(paths[0], tmp / "warm-up.tif", model=model, settings=settings, overwrite=True)  # load, warm up
            start = time.perf_counter()
            for name, path in zip(TILES, paths):
                out = tmp / f"{name}.map.tif"
                segment(path, out, model=model, settings=settings, overwrite=True)
                with rasterio.open(out) as src:
                    tiled[windows[name]] = src.read(1)
                    tiled_valid[windows[name]] = src.read_masks(1) > 0
            tiles_seconds, start = time.perf_counter() - start, time.perf_counter()
            out = tmp / "mosaic.map.tif"
            summary = segment(scene, out, model=model, settings=settings, overwrite=True)
            scene_seconds = time.perf_counter() - start
            with rasterio.open(out) as src:
                whole = src.read(1).astype(np.int16)
                whole_valid = src.read_masks(1) > 0
            ids = {c.name: c.id for c in summary.classes}
            both = tiled_valid & whole_valid
            print(f"\n## {model}")
            print(f"time: tile by tile {tiles_seconds:.1f} s, one scene {scene_seconds:.1f} s")
            same = tiled == whole
            bands = list(zip(BANDS[:-1], BANDS[1:]))
            header = ", ".join(f"{lo}-{hi} px" if hi < 10**6 else f"{lo}- px" for lo, hi in bands)
            print(f"same class, tile alone and in the one scene (by distance from the borders between tiles: {header})")
            for name in TILES:
                w = both[windows[name]]
                s, d = same[windows[name]], distance[windows[name]]
                shares = []
                for lo, hi in bands:
                    inside = w & (d >= lo) & (d < hi)
                    shares.append(f"{100 * s[inside].mean():6.2f}" if inside.any() else "     -")
                print(f"  {name:16} {100 * s[w].mean():6.2f} %  ({' / '.join(shares)} %)")
            print("class changes across each border between tiles, share of its pixel pairs "
                  "(median of the 10 lines beside it)")
            for label, axis, index, along in borders:
                rates = []
                for classes, valid in ((tiled, tiled_valid), (whole, whole_valid)):
                    part = (along, slice(None)) if axis == 1 else (slice(None), along)
                    c, v = classes[part], valid[part]
                    on = change_rate(c, v, axis, index)
                    beside = [change_rate(c, v, axis, index + k) for k in (-5, -4, -3, -2, -1, 1, 2, 3, 4, 5)]
                    rates.append((on, float(np.nanmedian(beside))))
                (t_on, t_beside), (w_on, w_beside) = rates
                print(f"  {label:34} tile by tile {100 * t_on:5.1f} % ({100 * t_beside:4.1f} %), "
                      f"one scene {100 * w_on:5.1f} % ({100 * w_beside:4.1f} %)")
            if "building" in ids:
                building = ids["building"]
                print("building IoU against the footprints")
                for name, role in SCORED.items():
                    w = windows[name]
                    ious = []
                    for classes, valid in ((tiled, tiled_valid), (whole, whole_valid)):
                        found, real = (classes[w] == building) & valid[w], truth[w] & valid[w]
                        ious.append(100 * (found & real).sum() / max((found | real).sum(), 1))
                    print(f"  {name:16} ({role:10}) tile alone {ious[0]:5.1f} %, in the one scene {ious[1]:5.1f} %")


if __name__ == "__main__":
    main()
