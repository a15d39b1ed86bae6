"""Does a model draw a class along the scene's edge that it does not draw inside?

For each full-resolution DeepGlobe scene (default: the crossvali scenes of
``../shared/data/deepglobe`` that the default model's training and checkpoint choice never
saw), segmented with the default patch grid (the released one: the scene's edge is the
edge of a patch) and with an edge margin (``--edge-margin PX``, default 28: the patch grid
reaches past the scene's edge over the scene mirrored there), printed:

* the share of each class in the outer 4 m of the scene, 4-20 m from the edge, and farther
  in; the class the model over-draws most at the edge (its outer-4 m share minus its inner
  share) is printed, with the truth's shares for comparison;
* the pixel accuracy within 20 m of the edge and farther in;

and, pooled over the scenes for each grid, the share of pixels right within 20 m of the
edge, farther in and overall, and the patches per scene. ``--root``, ``--split-file`` and
``--part`` choose other scenes in DeepGlobe's layout (``ID_sat.jpg``, ``ID_mask.png``),
such as the stage-2 validation scenes ``models/zoo/prepare_landcover.py`` writes, on which
an edge margin for a model is chosen; ``--edge-margin`` takes several margins to compare.

With ``--mirror PX`` each scene is also segmented mirrored outward by ``PX`` pixels on every
side (its own image reflected at its edges, as U-Net's overlap-tile strategy extends an
image) and cropped back, with the released grid: the diagnosis that led to the edge
margin. Where the rim disappears there, it comes from the scene's edge falling on the edge
of a patch, where the local branch's convolutions see zero padding; the global view then
also changes (it covers the mirrored margin), so the accuracy columns show the net effect.
The edge margin mirrors only what the local branch reads (and the global features its
patches crop), so the window's global view stays the scene's.

Example::

    python benchmarks/edge_rim.py
    python benchmarks/edge_rim.py --mirror 256
    python benchmarks/edge_rim.py --root runs/lc24 --split-file runs/lc24/split.json --part val \
        --edge-margin 16,24,28,32 --summary
"""

from __future__ import annotations

import argparse
import json
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

#: Bands from the edge, in metres (DeepGlobe: 0.5 m pixels).
OUTER_M, NEAR_M = 4, 20


def bands(shape: tuple[int, int], gsd: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Masks of the outer ``OUTER_M`` metres, ``OUTER_M``-``NEAR_M`` m and the rest."""
    rows, cols = np.ogrid[: shape[0], : shape[1]]
    distance = np.minimum(np.minimum(rows, shape[0] - 1 - rows), np.minimum(cols, shape[1] - 1 - cols)) * gsd
    outer = distance < OUTER_M
    near = (distance >= OUTER_M) & (distance < NEAR_M)
    return outer, near, ~(outer | near)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="deepglobe-landcover")
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("GLGEO_SAMPLE_DATA", REPO.parent / "shared" / "data")))
    parser.add_argument("--root", type=Path, default=None, help="scenes in DeepGlobe's layout (default: DATA/deepglobe)")
    parser.add_argument("--ids", default=None, help="comma-separated DeepGlobe ids (default: the crossvali scenes)")
    parser.add_argument("--split-file", type=Path, default=None, help="a JSON split file ({part: [ids]}) naming the scenes")
    parser.add_argument("--part", default="val", help="the split file's part")
    parser.add_argument("--mirror", type=int, default=0, help="also segment each scene mirrored outward by this many px")
    parser.add_argument("--edge-margin", default="28", help="edge margins to compare, px of the working grid, comma-separated")
    parser.add_argument("--summary", action="store_true", help="print the pooled figures only")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import rasterio
    import torch
    from PIL import Image

    import glgeo
    from glgeo.datasets import read_mask_ids
    from glgeo.inference import InferenceSettings
    from glgeo.models import load_checkpoint
    from glgeo.schemes import get_scheme

    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore", module="rasterio")
    torch.set_num_threads(args.threads)
    root = args.root or args.data / "deepglobe"
    if not (root / "images").is_dir():
        raise SystemExit(f"no full-resolution DeepGlobe images at {root}: pass --data (the shared sample data folder)")
    if args.ids:
        ids = args.ids.split(",")
    elif args.split_file:
        ids = json.loads(args.split_file.read_text())[args.part]
    else:
        names = (root / "splits" / "crossvali.txt").read_text().split()
        ids = [n.removesuffix("_sat.jpg") for n in names if (root / "images" / n).exists()]
    scheme = get_scheme("deepglobe")
    checkpoint = load_checkpoint(args.model)
    released_grid = InferenceSettings(device="cpu", torch_threads=args.threads, edge_margin=0)
    margins = [int(m) for m in args.edge_margin.split(",") if int(m) > 0]
    grids = [("no margin", released_grid)] + [
        (f"margin {m} px", InferenceSettings(device="cpu", torch_threads=args.threads, edge_margin=m)) for m in margins
    ]
    # per run: right within 20 m, pixels within 20 m, right farther, pixels farther, patches
    pooled: dict[str, np.ndarray] = {}
    print(f"# {machine()}; model {args.model}; {OUTER_M} m = {OUTER_M * 2} px of DeepGlobe's 0.5 m")
    with tempfile.TemporaryDirectory(prefix="glgeo-rim-") as tmp:
        for name in ids:
            image = root / "images" / f"{name}_sat.jpg"
            with rasterio.open(root / "masks" / f"{name}_mask.png") as src:
                truth = read_mask_ids(src, scheme)
            outer, near, inner = bands(truth.shape, 0.5)
            runs = [(label, image, 0, settings) for label, settings in grids]
            if args.mirror:
                pixels = np.asarray(Image.open(image).convert("RGB"))
                mirrored = Path(tmp) / f"{name}-mirrored.png"
                Image.fromarray(np.pad(pixels, ((args.mirror,) * 2, (args.mirror,) * 2, (0, 0)), mode="reflect")).save(mirrored)
                runs.append((f"mirrored {args.mirror} px", mirrored, args.mirror, released_grid))
            for label, path, pad, settings in runs:
                out = Path(tmp) / f"{name}.tif"
                summary = glgeo.segment(path, out, model=checkpoint, settings=settings, overwrite=True)
                with rasterio.open(out) as src:
                    classes = src.read(1)
                if pad:
                    classes = classes[pad:-pad, pad:-pad]
                shares = [(np.mean(classes[outer] == c), np.mean(classes[inner] == c), c) for c in range(scheme.n_classes)]
                edge, inside, c = max(shares, key=lambda s: s[0] - s[1])
                right = classes == truth
                edge_band = outer | near
                pooled.setdefault(label, np.zeros(5))
                pooled[label] += (right[edge_band].sum(), edge_band.sum(), right[inner].sum(), inner.sum(), summary.stats.patches)
                if args.summary:
                    continue
                print(
                    f"{name} {label:14s} {scheme.classes[c].name}: {100 * edge:5.1f} % of the outer {OUTER_M} m, "
                    f"{100 * np.mean(classes[near] == c):5.1f} % at {OUTER_M}-{NEAR_M} m, {100 * inside:5.1f} % inside "
                    f"(truth {100 * np.mean(truth[outer] == c):.1f} / {100 * np.mean(truth[inner] == c):.1f}); "
                    f"right within {NEAR_M} m {100 * right[outer | near].mean():5.1f} %, inside {100 * right[inner].mean():5.1f} %; "
                    f"{summary.stats.patches} patches",
                    flush=True,
                )
    print(f"pooled over {len(ids)} scenes: pixels right within {NEAR_M} m of the edge / farther in / overall; patches per scene")
    for label, (near_right, near_n, in_right, in_n, patches) in pooled.items():
        print(f"{label:16s} {100 * near_right / near_n:5.1f} % / {100 * in_right / in_n:5.1f} % / "
              f"{100 * (near_right + in_right) / (near_n + in_n):5.1f} %; {patches / len(ids):.1f} patches")


if __name__ == "__main__":
    main()
