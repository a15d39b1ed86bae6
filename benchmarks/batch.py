"""Benchmark batch segmentation (``glgeo.batch``): scenes per minute for 1 and 2 workers.

Scenes are georeferenced GeoTIFF crops (``--size`` px square, EPSG:32633, 0.5 m) of the real
DeepGlobe sample images in ``$GLGEO_SAMPLE_DATA/deepglobe/images``; the model is a
random-weight GLNet (speed does not depend on the weights) with the released patch and
global sizes (508 px) unless told otherwise.

For each worker count N three figures are taken:

* ``cold``: ``run_batch(..., workers=N)`` as ``glgeo segment --workers N`` runs it: a local
  cluster is started for the run, every worker imports torch and loads the model, and the
  cluster is shut down afterwards (N = 1 runs in this process, no Dask);
* ``warm``: the same scenes on a local cluster of N workers that is already running and has
  segmented one scene per worker, i.e. the steady state of a long batch;
* ``per scene``: the median seconds one scene took inside its task.

Torch gets cores / N threads per worker, so every configuration uses the whole machine.
Each configuration writes into its own fresh output folder (nothing is skipped).

Example::

    python benchmarks/batch.py --scenes 8 --size 1024 --workers 1,2
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from _machine import cores, machine  # benchmarks/_machine.py (the script's folder is on sys.path)

REPO = Path(__file__).resolve().parents[1]


def build_scenes(data: Path, n: int, size: int, folder: Path) -> list[Path]:
    """``n`` GeoTIFFs cropped from the DeepGlobe sample images (flipped so none repeats)."""
    import numpy as np
    import rasterio
    from affine import Affine
    from rasterio.windows import Window

    images = sorted((data / "deepglobe" / "images").glob("*_sat.jpg"))
    if not images:
        sys.exit(f"no DeepGlobe sample images under {data}/deepglobe/images (set --data or GLGEO_SAMPLE_DATA)")
    scenes = []
    for i in range(n):
        with rasterio.open(images[i % len(images)]) as src:
            side = min(size, src.width, src.height)
            pixels = src.read(window=Window(0, 0, side, side))
        if (i // len(images)) % 2:
            pixels = np.ascontiguousarray(pixels[:, ::-1])
        path = folder / f"scene_{i:03d}.tif"
        with rasterio.open(
            path, "w", driver="GTiff", width=side, height=side, count=3, dtype="uint8", crs="EPSG:32633",
            transform=Affine(0.5, 0.0, 400_000.0 + 1000.0 * i, 0.0, -0.5, 5_000_000.0), tiled=True,
            blockxsize=256, blockysize=256, photometric="RGB",
        ) as dst:
            dst.write(pixels)
        scenes.append(path)
    return scenes


def make_checkpoint(backbone: str, mode: str, patch: int, global_size: int, folder: Path) -> Path:
    import torch

    from glgeo.models import build_model
    from glgeo.models.checkpoint import save_checkpoint
    from glgeo.schemes import DEEPGLOBE

    torch.manual_seed(0)
    model = build_model(backbone, DEEPGLOBE.n_classes, mode).eval()
    return save_checkpoint(folder / f"{backbone}_{mode}.pt", model, DEEPGLOBE, global_size=global_size, patch_size=patch)


def options(args: argparse.Namespace, threads: int):
    from glgeo.batch import BatchOptions
    from glgeo.inference import InferenceSettings

    return BatchOptions(
        settings=InferenceSettings(device=args.device, batch_size=args.batch_size),
        torch_threads=threads,
        retries=0,
    )


def fresh(folder: Path) -> Path:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def cold(args, scenes, model, workers: int, out: Path) -> dict:
    from glgeo.batch import run_batch

    started = time.perf_counter()
    result = run_batch([str(s) for s in scenes], fresh(out), model=model, options=options(args, cores() // workers), workers=workers)
    seconds = time.perf_counter() - started
    if not result.ok:
        sys.exit(f"cold run with {workers} workers failed: {result.failure_summary()}")
    return {"seconds": seconds, "scenes_per_minute": 60 * len(scenes) / seconds,
            "per_scene_s": statistics.median(r.seconds for r in result.scenes)}


def warm(args, scenes, model, workers: int, out: Path, warmup: list[Path]) -> dict:
    import distributed

    from glgeo.batch import run_batch

    opts = options(args, cores() // workers)
    with distributed.LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0", silence_logs=logging.ERROR
    ) as cluster, distributed.Client(cluster) as client:
        first = run_batch([str(s) for s in warmup[:workers]], fresh(out / "warmup"), model=model, options=opts, scheduler=client)
        if len({r.worker for r in first.scenes}) != workers:
            print(f"  (warm-up reached {len({r.worker for r in first.scenes})} of {workers} workers)", file=sys.stderr)
        started = time.perf_counter()
        result = run_batch([str(s) for s in scenes], fresh(out / "run"), model=model, options=opts, scheduler=client)
        seconds = time.perf_counter() - started
    if not result.ok:
        sys.exit(f"warm run with {workers} workers failed: {result.failure_summary()}")
    used = Counter(r.worker for r in result.scenes)
    return {"seconds": seconds, "scenes_per_minute": 60 * len(scenes) / seconds,
            "per_scene_s": statistics.median(r.seconds for r in result.scenes),
            "scenes_per_worker": sorted(used.values())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("GLGEO_SAMPLE_DATA", REPO.parent / "shared" / "data")))
    parser.add_argument("--scenes", type=int, default=8, help="scenes per run")
    parser.add_argument("--size", type=int, default=1024, help="scene side in px (at most 2448)")
    parser.add_argument("--workers", default="1,2", help="worker counts to compare")
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--mode", default="g2l")
    parser.add_argument("--patch", type=int, default=508)
    parser.add_argument("--global-size", type=int, default=508)
    parser.add_argument("--batch-size", type=int, default=None, help="default: sized to the device")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip-cold", action="store_true", help="only the warm (steady-state) figures")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    worker_counts = [int(w) for w in args.workers.split(",")]

    work = Path(tempfile.mkdtemp(prefix="glgeo-bench-batch-"))
    try:
        scenes = build_scenes(args.data, args.scenes + max(worker_counts), args.size, work)
        scenes, warmup = scenes[: args.scenes], scenes[args.scenes :]
        model = make_checkpoint(args.backbone, args.mode, args.patch, args.global_size, work)
        print(f"machine: {machine()}")
        print(
            f"{len(scenes)} scenes of {args.size} x {args.size} px (DeepGlobe crops), GLNet {args.backbone} {args.mode}, "
            f"patch {args.patch}, global {args.global_size}, device {args.device}"
        )
        print(f"{'workers':>7} {'torch threads':>13} {'cold s':>8} {'cold scenes/min':>15} {'warm s':>8} "
              f"{'warm scenes/min':>15} {'s/scene in task':>15} {'scenes per worker':>17}")
        figures = {}
        for n in worker_counts:
            c = None if args.skip_cold else cold(args, scenes, model, n, work / f"cold_{n}")
            w = warm(args, scenes, model, n, work / f"warm_{n}", warmup)
            figures[n] = {"cold": c, "warm": w, "torch_threads": cores() // n}
            print(
                f"{n:>7} {cores() // n:>13} {c['seconds'] if c else float('nan'):>8.1f} "
                f"{c['scenes_per_minute'] if c else float('nan'):>15.2f} {w['seconds']:>8.1f} "
                f"{w['scenes_per_minute']:>15.2f} {w['per_scene_s']:>15.2f} {str(w['scenes_per_worker']):>17}",
                flush=True,
            )
        if len(worker_counts) > 1:
            base = figures[worker_counts[0]]["warm"]["scenes_per_minute"]
            for n in worker_counts[1:]:
                print(f"warm speed-up of {n} workers over {worker_counts[0]}: {figures[n]['warm']['scenes_per_minute'] / base:.2f}x")
        if args.json:
            args.json.write_text(json.dumps({"machine": machine(), "args": {k: str(v) for k, v in vars(args).items()},
                                             "figures": figures}, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
