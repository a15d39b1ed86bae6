"""Does the same place get the same map whatever the scene's size or cut?

On the real DeepGlobe samples (``../shared/data/deepglobe``) and a model (default: the
zoo's ``deepglobe-landcover``), two engines are compared in one run:

* ``glgeo``: the default settings (context windows of the model's footprint, each with a
  global view at one ground resolution and a mirrored margin, patch grids and global images
  on a lattice fixed to the map, G->L crops at the patches' exact places, tapered blending,
  nodata seen as the valid pixels mirrored);
* ``before``: the engine as it was before context windows (``footprint=0``: the whole
  scene squeezed into one global image; ``blend="sum"``: plain sum of patch logits;
  ``nodata_fill="zero"``: black where the scene has no data; ``context_crop="cells"``:
  G->L crops at whole feature cells; ``grid_anchor="scene"``: grids start at the scene's
  first pixel).

The nine images are tiles of one map: each is georeferenced where it lies in the mosaic (a
pixel-sized translation, no CRS), as the tiles of an orthophoto are, and a cut keeps its
place as ``gdal_translate -srcwin`` keeps it.

It prints:

1. **mosaic**: nine tiles segmented alone, and as one 3 x 3 mosaic placed at an offset
   inside a nodata border (so image edges do not fall on window edges): mIoU and pixel
   accuracy of both, against the ground truth, and the share of pixels that get the same
   class in both; that share by distance from each image's edge (in the mosaic an edge is a
   seam with an unrelated neighbour image, which the model sees in its context), and the
   mIoU of both on the pixels at least 600 px from any edge; the share of pixels right in
   both by distance from the nearest edge, split by what that edge faces in the mosaic (a
   neighbour image or the nodata border), with each band's part of the change in pixel
   accuracy;
2. **cut**: each tile against the same tile with its first 333 rows and 517 columns cut
   off: the share of the shared pixels that get the same class; for ``glgeo`` also with
   plain images (the JPEG, and the cut without georeferencing), whose place on a map is
   not known;
3. **lines**: straight class-change lines (a row or column boundary where more than 3 % of
   the pixels change class and 4 times more than the median of the 10 boundaries around
   it) in the predictions and in the hand-drawn ground truth;
4. **time**: seconds per megapixel of both engines on the single images and the mosaic
   (the faster of two alternating runs), measured in this run with one torch thread, and
   their ratio.

Example::

    python benchmarks/invariance.py                      # the default model, nine images
    python benchmarks/invariance.py --model runs/dg/model.pt --images 104113,172307,...
    python benchmarks/invariance.py --mode global        # the global branch alone
    python benchmarks/invariance.py --edge-margin 28     # glgeo with an edge margin (segment --edge-margin)
    python benchmarks/invariance.py --global-margin 32   # glgeo with another global margin

Accuracy figures here compare the engines with each other; they are not a model's
held-out accuracy (some of these images trained the zoo model; see its card for that).
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CUT_ROWS, CUT_COLS = 333, 517
#: distance bands from an image's edge, px at 0.5 m (the last one: the image's centre)
SEAM_BANDS = (0, 100, 300, 600, 10**6)
#: finer bands for the split by what an edge faces in the mosaic (a neighbour image or the border)
FACING_BANDS = (0, 25, 100, 300, 10**6)


def straight_lines(classes: np.ndarray, valid: np.ndarray | None = None) -> int:
    """Row and column boundaries where > 3 % of pixels change class and 4x more than the
    median of the 10 boundaries around them."""
    count = 0
    for axis in (0, 1):
        change = np.diff(classes.astype(np.int16), axis=axis) != 0
        if valid is not None:
            both = valid[1:, :] & valid[:-1, :] if axis == 0 else valid[:, 1:] & valid[:, :-1]
            frac = (change & both).sum(axis=1 - axis) / np.maximum(both.sum(axis=1 - axis), 1)
        else:
            frac = change.mean(axis=1 - axis)
        for i, f in enumerate(frac):
            around = np.concatenate([frac[max(0, i - 5) : i], frac[i + 1 : i + 6]])
            if f > 0.03 and f > 4 * max(np.median(around), 1e-9):
                count += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("GLGEO_SAMPLE_DATA", REPO.parent / "shared" / "data")))
    parser.add_argument("--model", default="deepglobe-landcover")
    parser.add_argument("--images", default=None, help="comma-separated DeepGlobe ids (default: the first nine)")
    parser.add_argument("--border", type=int, default=700, help="nodata border around the mosaic, px (0.5 m)")
    parser.add_argument("--mode", default=None, choices=["global", "g2l", "bidirectional"],
                        help="the model's mode for both engines (default: the model's own)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: times comparable across runs)")
    parser.add_argument("--edge-margin", type=int, default=0, help="glgeo engine: the edge margin (--edge-margin), px")
    parser.add_argument("--global-margin", type=int, default=None,
                        help="glgeo engine: the global margin (--global-margin), px (default: the engine's)")
    args = parser.parse_args()

    import rasterio
    import torch
    from affine import Affine
    from rasterio.windows import Window

    import glgeo
    from glgeo.datasets import read_mask_ids
    from glgeo.inference import InferenceSettings
    from glgeo.metrics import confusion_matrix, SegmentationScores
    from glgeo.schemes import NODATA_ID, get_scheme
    from glgeo.segmentation import load_model

    torch.set_num_threads(args.threads)
    # the tiles and cuts carry no CRS (or no georeferencing) on purpose: glgeo's warning
    # about that, one per scene and engine, would bury the table; other warnings show
    from glgeo.segmentation import NO_CRS_OUTPUT_WARNING, PLAIN_OUTPUT_WARNING

    shown = logging.StreamHandler()
    shown.addFilter(lambda record: record.msg not in (PLAIN_OUTPUT_WARNING, NO_CRS_OUTPUT_WARNING))
    logging.getLogger("glgeo").addHandler(shown)
    warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
    root = args.data / "deepglobe"
    ids = args.images.split(",") if args.images else sorted(p.name.split("_")[0] for p in (root / "images").glob("*_sat.jpg"))[:9]
    if len(ids) != 9:
        sys.exit(f"need nine DeepGlobe images under {root}, found {len(ids)}")
    checkpoint = load_model(args.model)
    scheme = checkpoint.scheme
    deepglobe = get_scheme("deepglobe")
    engines = {"glgeo": InferenceSettings(mode=args.mode, edge_margin=args.edge_margin, global_margin=args.global_margin),
               "before": InferenceSettings(mode=args.mode, footprint=0, blend="sum", nodata_fill="zero", context_crop="cells",
                                           grid_anchor="scene")}
    print(f"# {platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"{args.threads} torch thread(s); model {args.model} (footprint {checkpoint.footprint} px at scale "
          f"{checkpoint.scene_scale:g}, mode {checkpoint.mode})")

    def truth(name: str) -> np.ndarray:
        with rasterio.open(root / "masks" / f"{name}_mask.png") as src:
            return read_mask_ids(src, deepglobe, rgb_threshold=128)

    def write_tile(path: Path, pixels: np.ndarray, transform=None) -> Path:
        """An RGB GeoTIFF of the pixels, at ``transform`` (no CRS: a pixel-sized map) or plain."""
        place = {} if transform is None else {"transform": transform}
        with rasterio.open(path, "w", driver="GTiff", width=pixels.shape[2], height=pixels.shape[1], count=3,
                           dtype="uint8", **place) as dst:
            dst.write(pixels)
        return path

    def run(scene: Path, out: Path, settings) -> tuple[np.ndarray, float, int]:
        start = time.perf_counter()
        summary = glgeo.segment(scene, out, model=checkpoint, settings=settings, overwrite=True)
        seconds = time.perf_counter() - start
        with rasterio.open(out) as src:  # the file's nodata (7 in 3-bit DeepGlobe rasters) -> NODATA_ID
            ids = src.read(1)
            return np.where(ids == src.nodata, NODATA_ID, ids), seconds, summary.stats.windows

    truths = {n: truth(n) for n in ids}
    side = truths[ids[0]].shape[0]
    rows, cols = np.mgrid[:side, :side]
    to_edge = np.minimum(np.minimum(rows, cols), np.minimum(side - 1 - rows, side - 1 - cols))
    seam_bands = [(to_edge >= lo) & (to_edge < hi) for lo, hi in zip(SEAM_BANDS[:-1], SEAM_BANDS[1:])]
    with tempfile.TemporaryDirectory(prefix="glgeo-invariance-") as tmp:
        folder = Path(tmp)
        # the mosaic: nine images in a 3 x 3 block inside a nodata border, with a mask
        b = args.border
        mosaic = folder / "mosaic.tif"
        size = 3 * side + 2 * b
        profile = dict(driver="GTiff", width=size, height=size, count=3, dtype="uint8", tiled=True,
                       blockxsize=512, blockysize=512, compress="deflate")
        with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(mosaic, "w", **profile) as dst:
            mask = np.zeros((size, size), dtype=np.uint8)
            for k, name in enumerate(ids):
                r, c = divmod(k, 3)
                with rasterio.open(root / "images" / f"{name}_sat.jpg") as src:
                    dst.write(src.read(), window=Window(b + c * side, b + r * side, side, side))
                mask[b + r * side : b + (r + 1) * side, b + c * side : b + (c + 1) * side] = 255
            dst.write_mask(mask)
        # engines interleaved image by image, so a change in the machine's load hits both alike
        alone = {e: {} for e in engines}
        cut_agree = {e: [] for e in engines}
        seconds = {e: {"alone": 0.0, "mosaic": 0.0} for e in engines}
        windows = {}
        plain_agree = []
        for k, name in enumerate(ids):
            jpeg = root / "images" / f"{name}_sat.jpg"
            r, c = divmod(k, 3)
            with rasterio.open(jpeg) as src:
                pixels = src.read()
            place = Affine.translation(b + c * side, b + r * side)  # where the tile lies in the mosaic
            image = write_tile(folder / f"tile-{name}.tif", pixels, place)
            cut_window = Window(CUT_COLS, CUT_ROWS, side - CUT_COLS, side - CUT_ROWS)
            cut_pixels = pixels[:, CUT_ROWS:, CUT_COLS:]
            cut = write_tile(folder / f"cut-{name}.tif", cut_pixels, rasterio.windows.transform(cut_window, place))
            for engine, settings in engines.items():
                alone[engine][name], s, _ = run(image, folder / f"{engine}-{name}.tif", settings)
                seconds[engine]["alone"] += s
                cut_pred, _, _ = run(cut, folder / f"{engine}-cut-{name}.tif", settings)
                cut_agree[engine].append((cut_pred == alone[engine][name][CUT_ROWS:, CUT_COLS:]).mean())
            # plain images: the JPEG and its cut, neither with a place on a map
            plain, _, _ = run(jpeg, folder / f"plain-{name}.tif", engines["glgeo"])
            plain_cut, _, _ = run(write_tile(folder / f"plain-cut-{name}.tif", cut_pixels), folder / f"plain-cut-{name}-out.tif",
                                  engines["glgeo"])
            plain_agree.append((plain_cut == plain[CUT_ROWS:, CUT_COLS:]).mean())
        wholes = {}
        for repeat in range(2):  # alternating, the faster of two runs: one run is at the mercy of the machine's load
            for engine, settings in engines.items():
                wholes[engine], s, windows[engine] = run(mosaic, folder / f"{engine}-mosaic.tif", settings)
                seconds[engine]["mosaic"] = s if repeat == 0 else min(s, seconds[engine]["mosaic"])
        results: dict[str, dict] = {}
        for engine in engines:
            whole = wholes[engine]
            conf_alone = np.zeros((scheme.n_classes, scheme.n_classes + 1), dtype=np.int64)
            conf_mosaic = conf_alone.copy()
            same = lines_alone = lines_mosaic = lines_truth = 0
            same_by_band = np.zeros(len(SEAM_BANDS) - 1)
            right_by_band = np.zeros((2, len(SEAM_BANDS) - 1))  # alone, mosaic: share of pixels right
            conf_inner_alone, conf_inner_mosaic = conf_alone.copy(), conf_alone.copy()
            # pixels right (alone, mosaic) and counted, by the kind of edge nearest (neighbour image, border)
            facing = np.zeros((2, 3, len(FACING_BANDS) - 1))
            for k, name in enumerate(ids):
                r, c = divmod(k, 3)
                part = whole[b + r * side : b + (r + 1) * side, b + c * side : b + (c + 1) * side]
                conf_alone += confusion_matrix(truths[name], alone[engine][name], scheme.n_classes)
                conf_mosaic += confusion_matrix(truths[name], part, scheme.n_classes)
                same += int((part == alone[engine][name]).sum())
                # how far from the image's edge (a seam with a foreign neighbour in the mosaic)
                for i, band in enumerate(seam_bands):
                    same_by_band[i] += (part == alone[engine][name])[band].mean() / 9
                    right_by_band[0, i] += (alone[engine][name] == truths[name])[band].mean() / 9
                    right_by_band[1, i] += (part == truths[name])[band].mean() / 9
                inner = seam_bands[-1]
                edges = [(rows, r > 0), (side - 1 - rows, r < 2), (cols, c > 0), (side - 1 - cols, c < 2)]
                nearest = np.argmin(np.stack([d for d, _ in edges]), axis=0)
                to_neighbour = np.array([f for _, f in edges])[nearest]
                for j, kind in enumerate((to_neighbour, ~to_neighbour)):
                    for i, (lo, hi) in enumerate(zip(FACING_BANDS[:-1], FACING_BANDS[1:])):
                        sel = kind & (to_edge >= lo) & (to_edge < hi)
                        facing[j, :, i] += ((alone[engine][name] == truths[name])[sel].sum(),
                                            (part == truths[name])[sel].sum(), sel.sum())
                conf_inner_alone += confusion_matrix(truths[name][inner], alone[engine][name][inner], scheme.n_classes)
                conf_inner_mosaic += confusion_matrix(truths[name][inner], part[inner], scheme.n_classes)
                lines_alone += straight_lines(alone[engine][name])
                lines_mosaic += straight_lines(part)
                lines_truth += straight_lines(truths[name])
            if not ((whole[:b] == NODATA_ID).all() and (whole[:, :b] == NODATA_ID).all()):
                sys.exit("the mosaic's nodata border got classes")
            results[engine] = dict(
                alone=SegmentationScores(conf_alone, scheme), mosaic=SegmentationScores(conf_mosaic, scheme),
                same=same / (9 * side * side), cut=np.array(cut_agree[engine]), windows=windows[engine],
                seconds=seconds[engine], lines=(lines_alone, lines_mosaic, lines_truth), mp=9 * side * side / 1e6,
                mosaic_mp=size * size / 1e6, same_by_band=same_by_band, right_by_band=right_by_band,
                inner_alone=SegmentationScores(conf_inner_alone, scheme),
                inner_mosaic=SegmentationScores(conf_inner_mosaic, scheme), facing=facing,
            )

    print(f"{'engine':<8} {'what':<34} {'mIoU':>8} {'pix.acc':>8}")
    for engine, r in results.items():
        a, m = r["alone"], r["mosaic"]
        print(f"{engine:<8} {'nine images alone':<34} {100 * a.miou:7.2f}% {100 * a.pixel_accuracy:7.2f}%")
        label = f"3 x 3 mosaic ({r['windows']} windows)"
        print(f"{engine:<8} {label:<34} {100 * m.miou:7.2f}% {100 * m.pixel_accuracy:7.2f}%"
              f"   (mosaic - alone: {100 * (m.miou - a.miou):+.2f} / {100 * (m.pixel_accuracy - a.pixel_accuracy):+.2f} points;"
              f" same class as alone on {100 * r['same']:.2f} %)")
    print("same class as alone, by distance from the image's edge (its seam with a neighbour in the mosaic):")
    for engine, r in results.items():
        bands = ", ".join(f"{lo}-{hi if hi < side else ''} px {100 * v:.2f} %"
                          for lo, hi, v in zip(SEAM_BANDS[:-1], SEAM_BANDS[1:], r["same_by_band"]))
        ia, im = r["inner_alone"], r["inner_mosaic"]
        print(f"{engine:<8} {bands}; pixels {SEAM_BANDS[-2]}+ px from the seams: mIoU alone {100 * ia.miou:.2f} %, "
              f"mosaic {100 * im.miou:.2f} % ({100 * (im.miou - ia.miou):+.2f} points)")
    print("pixels right (the truth's class), alone -> mosaic, by distance from the seams:")
    for engine, r in results.items():
        ra, rm = r["right_by_band"]
        print(f"{engine:<8} " + ", ".join(f"{lo}-{hi if hi < side else ''} px {100 * a:.1f} -> {100 * m:.1f} %"
                                          for lo, hi, a, m in zip(SEAM_BANDS[:-1], SEAM_BANDS[1:], ra, rm)))
    print("the same, by what the nearest edge faces in the mosaic (points: that band's share of the change in pixel accuracy):")
    for engine, r in results.items():
        for j, kind in enumerate(("a neighbour image", "the nodata border")):
            right_alone, right_mosaic, count = r["facing"][j]
            print(f"{engine:<8} facing {kind:<17} " + ", ".join(
                f"{lo}-{hi if hi < side else ''} px {100 * a / k:.1f} -> {100 * m / k:.1f} % ({100 * (m - a) / (9 * side * side):+.2f})"
                for lo, hi, a, m, k in zip(FACING_BANDS[:-1], FACING_BANDS[1:], right_alone, right_mosaic, count)))
    for engine, r in results.items():
        print(f"{engine:<8} cut {CUT_ROWS} rows x {CUT_COLS} cols: same class on {100 * r['cut'].mean():.2f} % of the shared "
              f"pixels (worst image {100 * r['cut'].min():.2f} %)")
    print(f"glgeo    cut of plain images (no place on a map): same class on {100 * np.mean(plain_agree):.2f} % of the shared "
          f"pixels (worst image {100 * min(plain_agree):.2f} %)")
    g, o = results["glgeo"], results["before"]
    print(f"straight class-change lines: ground truth {g['lines'][2]}; glgeo alone {g['lines'][0]}, mosaic {g['lines'][1]}; "
          f"before alone {o['lines'][0]}, mosaic {o['lines'][1]}")
    for what, mp in (("alone", g["mp"]), ("mosaic", g["mosaic_mp"])):
        tg, to = g["seconds"][what] / mp, o["seconds"][what] / mp
        print(f"time per MP ({what}): glgeo {tg:.3f} s, before {to:.3f} s: {tg / to:.2f}x")


if __name__ == "__main__":
    main()
