"""Benchmark one giant scene split over Dask workers (``glgeo.batch.run_split``).

The scene is a georeferenced mosaic (``--size`` px square, EPSG:32633, 0.5 m) of the real
DeepGlobe sample images in ``$GLGEO_SAMPLE_DATA/deepglobe/images`` (flipped so neighbours
differ), segmented with the zoo's default model (``deepglobe-landcover``: read at its 2 m,
612 px context windows), the windows grouped into blocks of ``--block-windows``.

For each worker count N a local Dask cluster of N worker processes is started, each worker
pinned to its own core (``sched_setaffinity``) with one torch thread, and the scene is
split over it (round-robin over the cores this process may use when there are fewer than
N; the cluster's start is not timed; each worker's first block includes
loading the model). Printed per N: wall time (blocks and assembly), the assembly alone
(block files -> COG, on the submitting process), every worker's peak resident memory, and
the mean seconds per context window computed. With ``--in-process`` the scene is also
segmented by ``glgeo.segment`` in a process pinned to one core, and the outputs compared.

From the measured cost per window (the N = 1 run) and per assembled megapixel, the time for
a 10 GP scene (100 000 px square at 0.5 m) on 8 such workers is projected: its blocks
(windows at block boundaries counted twice, as the plan computes them) spread over 8
workers in rounds, plus its assembly.

Example::

    python benchmarks/split.py --size 20000 --workers 1,2 --block-windows 5x5 --in-process
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from _machine import machine  # benchmarks/_machine.py (the script's folder is on sys.path)

REPO = Path(__file__).resolve().parents[1]


def build_scene(data: Path, size: int, path: Path) -> Path:
    """A ``size`` px square GeoTIFF mosaic of the DeepGlobe sample images."""
    import numpy as np
    import rasterio
    from affine import Affine
    from rasterio.windows import Window

    images = sorted((data / "deepglobe" / "images").glob("*_sat.jpg"))
    if not images:
        sys.exit(f"no DeepGlobe sample images under {data}/deepglobe/images (set --data or GLGEO_SAMPLE_DATA)")
    tiles = []
    for image in images:
        with rasterio.open(image) as src:
            tiles.append(src.read())
    side = tiles[0].shape[1]
    with rasterio.open(
        path, "w", driver="GTiff", width=size, height=size, count=3, dtype="uint8", crs="EPSG:32633",
        transform=Affine(0.5, 0.0, 400_000.0, 0.0, -0.5, 5_000_000.0), tiled=True, blockxsize=512, blockysize=512,
        photometric="RGB", bigtiff="YES",
    ) as dst:
        k = 0
        for top in range(0, size, side):
            for left in range(0, size, side):
                tile = tiles[k % len(tiles)]
                if (k // len(tiles)) % 2:
                    tile = tile[:, :, ::-1]
                if (k // (2 * len(tiles))) % 2:
                    tile = tile[:, ::-1]
                h, w = min(side, size - top), min(side, size - left)
                dst.write(np.ascontiguousarray(tile[:, :h, :w]), window=Window(left, top, w, h))
                k += 1
    return path


def _pin(core: int) -> int:
    os.sched_setaffinity(0, {core})
    return core


def _in_process(scene: str, out: str, model: str, core: int) -> dict:
    """glgeo.segment in a fresh process pinned to one core."""
    _pin(core)
    from glgeo.device import peak_resident_mb
    from glgeo.inference import InferenceSettings
    from glgeo.segmentation import segment

    started = time.perf_counter()
    summary = segment(scene, out, model=model, settings=InferenceSettings(device="cpu", torch_threads=1))
    return {"seconds": time.perf_counter() - started, "peak_rss_mb": peak_resident_mb(), "windows": summary.stats.windows}


def split_run(scene: Path, out: Path, model: str, workers: int, rows: int, cols: int | None) -> dict:
    import distributed

    from glgeo.batch import BatchOptions, run_split
    from glgeo.inference import InferenceSettings

    cores = sorted(os.sched_getaffinity(0))
    if workers > len(cores):
        print(f"  ({workers} workers share the {len(cores)} core(s) this process may use: no speed-up to expect)",
              flush=True)
    with distributed.LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0", silence_logs=logging.ERROR
    ) as cluster, distributed.Client(cluster) as client:
        for i, address in enumerate(sorted(client.scheduler_info()["workers"])):
            client.run(_pin, cores[i % len(cores)], workers=[address])
        options = BatchOptions(settings=InferenceSettings(device="cpu"), torch_threads=1, retries=0)
        started = time.perf_counter()
        result = run_split(scene, out, model=model, options=options, rows_per_block=rows, cols_per_block=cols,
                           scheduler=client)
        seconds = time.perf_counter() - started
    peaks: dict[str, float] = {}
    for b in result.blocks:
        peaks[b.worker] = max(peaks.get(b.worker, 0.0), b.peak_rss_mb)
    block_seconds = [b.seconds for b in result.blocks]
    return {
        "seconds": seconds,
        "assemble_seconds": result.assemble_seconds,
        "blocks": len(result.blocks),
        "windows_computed": result.plan.windows_computed,
        "windows": result.plan.windows[0] * result.plan.windows[1],
        "overhead": result.plan.overhead,
        "block_seconds_sum": sum(block_seconds),
        "block_seconds_max": max(block_seconds),
        "s_per_window": sum(block_seconds) / result.plan.windows_computed,
        "worker_peak_rss_mb": sorted(peaks.values()),
        "blocks_per_worker": sorted(sum(b.worker == w for b in result.blocks) for w in peaks),
    }


def same_raster(a: Path, b: Path) -> bool:
    import numpy as np
    import rasterio
    from rasterio.windows import Window

    with rasterio.open(a) as x, rasterio.open(b) as y:
        if x.shape != y.shape:
            return False
        for top in range(0, x.height, 1024):
            window = Window(0, top, x.width, min(1024, x.height - top))
            if not np.array_equal(x.read(1, window=window), y.read(1, window=window)):
                return False
    return True


def project(figures: dict, scene_mp: float, target_side: int, workers: int, rows: int, cols: int | None) -> dict:
    """Time for a ``target_side`` px square scene on ``workers`` workers, from the measured
    seconds per window (blocks) and per megapixel (assembly)."""
    from glgeo.inference import context_windows
    from glgeo.split import plan_split

    scale, footprint, overlap = 0.25, 612, None  # the default model at 0.5 m
    working = round(target_side * scale)
    windows = context_windows(working, working, footprint, overlap)
    plan = plan_split(windows, (target_side, target_side), rows, cols)
    per_window = figures["s_per_window"]
    block_s = [b.windows * per_window for b in plan.blocks]
    rounds = math.ceil(len(plan.blocks) / workers)
    compute = max(sum(block_s) / workers, rounds * max(block_s))
    assemble = figures["assemble_seconds"] / scene_mp * target_side**2 / 1e6
    return {"side": target_side, "windows": len(windows), "blocks": len(plan.blocks), "windows_computed": plan.windows_computed,
            "compute_s": compute, "assemble_s": assemble, "total_s": compute + assemble}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("GLGEO_SAMPLE_DATA", REPO.parent / "shared" / "data")))
    parser.add_argument("--size", type=int, default=20000, help="scene side in px (20000: 400 MP)")
    parser.add_argument("--workers", default="1,2", help="worker counts to compare")
    parser.add_argument("--block-windows", default="5x5", help="ROWS or ROWSxCOLS context windows per block")
    parser.add_argument("--model", default="deepglobe-landcover")
    parser.add_argument("--in-process", action="store_true", help="also run glgeo.segment on one core and compare")
    parser.add_argument("--project-side", type=int, default=100_000, help="projected scene side in px (10 GP)")
    parser.add_argument("--project-workers", type=int, default=8)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    rows, _, cols = args.block_windows.partition("x")
    rows, cols = int(rows), (int(cols) if cols else None)
    worker_counts = [int(w) for w in args.workers.split(",")]

    work = Path(tempfile.mkdtemp(prefix="glgeo-bench-split-"))
    try:
        print(f"machine: {machine()}", flush=True)
        started = time.perf_counter()
        scene = build_scene(args.data, args.size, work / "scene.tif")
        mp = args.size**2 / 1e6
        print(f"scene: {args.size} x {args.size} px ({mp:.0f} MP, DeepGlobe mosaic at 0.5 m) built in "
              f"{time.perf_counter() - started:.0f} s; model {args.model}; blocks of {args.block_windows} windows", flush=True)
        figures: dict = {}
        if args.in_process:
            # a fresh interpreter (spawn): a forked child would start at this process's size
            with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
                ref = pool.submit(_in_process, str(scene), str(work / "in-process.tif"), args.model,
                                  min(os.sched_getaffinity(0))).result()
            figures["in_process"] = ref
            print(f"in-process glgeo.segment, 1 core: {ref['seconds']:.1f} s ({mp / ref['seconds']:.2f} MP/s), "
                  f"{ref['windows']} context windows, peak {ref['peak_rss_mb']:.0f} MiB", flush=True)
        print(f"{'workers':>7} {'wall s':>8} {'MP/s':>6} {'assembly s':>10} {'blocks':>6} {'windows (computed)':>18} "
              f"{'s/window':>8} {'blocks per worker':>17} {'peak MiB per worker':>20} {'= in-process':>12}", flush=True)
        for n in worker_counts:
            out = work / f"split-{n}.tif"
            f = split_run(scene, out, args.model, n, rows, cols)
            if args.in_process:
                f["identical"] = same_raster(out, work / "in-process.tif")
            figures[n] = f
            print(
                f"{n:>7} {f['seconds']:>8.1f} {mp / f['seconds']:>6.2f} {f['assemble_seconds']:>10.1f} {f['blocks']:>6} "
                f"{f['windows']:>7} ({f['windows_computed']:>6}) {f['s_per_window']:>8.2f} "
                f"{str(f['blocks_per_worker']):>17} {' '.join(f'{m:.0f}' for m in f['worker_peak_rss_mb']):>20} "
                f"{str(f.get('identical', '-')):>12}",
                flush=True,
            )
            out.unlink()
        if len(worker_counts) > 1:
            base = figures[worker_counts[0]]["seconds"]
            for n in worker_counts[1:]:
                print(f"speed-up of {n} workers over {worker_counts[0]}: {base / figures[n]['seconds']:.2f}x")
        p = project(figures[worker_counts[0]], mp, args.project_side, args.project_workers, rows, cols)
        figures["projection"] = p
        print(
            f"projected: {p['side']} x {p['side']} px ({p['side'] ** 2 / 1e9:.0f} GP) on {args.project_workers} one-core "
            f"workers: {p['windows']} windows in {p['blocks']} blocks ({p['windows_computed']} computed) -> "
            f"{p['compute_s'] / 60:.0f} min of blocks + {p['assemble_s'] / 60:.0f} min of assembly = "
            f"{p['total_s'] / 60:.0f} min (from {figures[worker_counts[0]]['s_per_window']:.2f} s per window and "
            f"{figures[worker_counts[0]]['assemble_seconds'] / mp * 1000:.1f} s of assembly per GP measured above)"
        )
        if args.json:
            args.json.write_text(json.dumps({"machine": machine(), "args": {k: str(v) for k, v in vars(args).items()},
                                             "figures": {str(k): v for k, v in figures.items()}}, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
