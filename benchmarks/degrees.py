"""Does a scene in degrees get the map its ground gets in UTM?

A scene in degrees (EPSG:4326) away from the equator has pixels taller than wide on the
ground: 1.25 times at Joplin's 37 N. glgeo reads each axis at its own scale so the model
sees square pixels (:func:`glgeo.resolution.reading_scale`). This benchmark warps the
held-out Joplin tile (``joplin/tile_1361-9136.tif``, 0.6 m, EPSG:26915) to EPSG:4326 with
square degree pixels 0.6 m tall on the ground (0.48 m wide), rasterizes the building
footprints on each grid, segments with ``inria-buildings`` and prints building IoU and
building area for:

* the UTM tile as it is;
* the UTM tile resampled half a pixel with the same bilinear resampling as the warp (what
  any resampling of its input costs the model, the warp's included);
* the degree scene read with square pixels (the default);
* the degree scene read at one scale for both axes (the GSD rule alone, as glgeo read
  such scenes before 6 December 2026: ``--scale`` of the pixel's area).

Then, as a second measure of how much the model's map depends on resampling, the held-out
Austin rows (``inria/austin_crop_top_image.tif`` rows 500-699, 0.3 m) segmented from the
0.3 m file (glgeo reads them at the model's 0.6 m) and brought to 0.6 m beforehand with
GDAL's average, bilinear, cubic and Lanczos resampling (the truth: average of the 0/255
mask, >= 128).

Example::

    python benchmarks/degrees.py [--data ../shared/data] [--model inria-buildings]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from _machine import machine  # noqa: E402

TILE = "tile_1361-9136"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("GLGEO_SAMPLE_DATA", REPO.parent / "shared" / "data")))
    parser.add_argument("--model", default="inria-buildings")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import geopandas as gpd
    import rasterio
    import torch
    from affine import Affine
    from pyproj import Geod
    from rasterio.features import rasterize
    from rasterio.warp import Resampling, reproject, transform_bounds

    from glgeo import segment
    from glgeo.inference import InferenceSettings
    from glgeo.io import inspect_scene
    from glgeo.models.checkpoint import load_checkpoint
    from glgeo.resolution import describe_scale, scale_between

    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.ERROR)
    tile = args.data / "joplin" / f"{TILE}.tif"
    if not tile.exists():
        sys.exit(f"{tile} not found: point --data at the shared sample data")
    footprints = gpd.read_file(args.data / "joplin" / "footprints.geojson")
    print(f"# {machine()}")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)

        def write(name: str, src, crs, transform, width: int, height: int) -> tuple[Path, Path]:
            """``src`` warped bilinearly onto a grid, and the footprints rasterized on it."""
            image = tmp / f"{name}.tif"
            profile = src.profile | {"crs": crs, "transform": transform, "width": width, "height": height, "nodata": 0,
                                     "tiled": True, "blockxsize": 256, "blockysize": 256, "compress": "deflate"}
            with rasterio.open(image, "w", **profile) as dst:
                for band in src.indexes:
                    reproject(rasterio.band(src, band), rasterio.band(dst, band), resampling=Resampling.bilinear, dst_nodata=0)
            truth = tmp / f"{name}_truth.tif"
            mask = rasterize(((g, 1) for g in footprints.to_crs(crs).geometry), out_shape=(height, width),
                             transform=transform, dtype=np.uint8)
            with rasterio.open(truth, "w", driver="GTiff", width=width, height=height, count=1, dtype="uint8",
                               crs=crs, transform=transform) as dst:
                dst.write(mask, 1)
            return image, truth

        with rasterio.open(tile) as src:
            utm_truth = tmp / "utm_truth.tif"
            mask = rasterize(((g, 1) for g in footprints.to_crs(src.crs).geometry), out_shape=src.shape,
                             transform=src.transform, dtype=np.uint8)
            with rasterio.open(utm_truth, "w", driver="GTiff", width=src.width, height=src.height, count=1,
                               dtype="uint8", crs=src.crs, transform=src.transform) as dst:
                dst.write(mask, 1)
            shifted = write("utm_shifted", src, src.crs, src.transform @ Affine.translation(0.5, 0.5),
                            src.width - 1, src.height - 1)
            left, bottom, right, top = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
            lat = (bottom + top) / 2
            metres_per_degree = Geod(ellps="GRS80").inv(left, lat, left, lat + 1e-3)[2] / 1e-3
            res = src.res[1] / metres_per_degree  # square degree pixels, as tall as the tile's on the ground
            degrees = write("degrees", src, "EPSG:4326", Affine(res, 0, left, 0, -res, top),
                            int((right - left) / res), int((top - bottom) / res))

        runs = [("UTM tile as it is", tile, utm_truth, None),
                ("UTM tile resampled half a pixel", *shifted, None),
                ("degrees, square pixels (default)", *degrees, None),
                ("degrees, one scale for both axes", *degrees, "area")]
        print(f"{'scene':36} {'reading scale':>22} {'building IoU':>13} {'building ha':>12} {'truth ha':>9}")
        for i, (label, image, truth, scale) in enumerate(runs):
            settings = InferenceSettings(device="cpu")
            if scale == "area":  # the pixel's area side over the model's GSD: one number
                info, checkpoint = inspect_scene(image), load_checkpoint(args.model)
                settings = InferenceSettings(device="cpu", scale=scale_between(info.gsd, checkpoint.gsd))
            out = tmp / f"map{i}.tif"
            summary = segment(image, out, model=args.model, settings=settings)
            with rasterio.open(out) as pred, rasterio.open(truth) as t:
                ids, building, valid = pred.read(1), t.read(1) == 1, pred.read_masks(1) > 0
            found = (ids == 1) & valid
            iou = (found & building).sum() / (found | (building & valid)).sum()
            # areas on the ground, from the summary (m²); the truth's from its pixels' share
            area = {c.name: c.area for c in summary.classes}
            truth_ha = building[valid].mean() * sum(area.values()) / 1e4
            shown = describe_scale(summary.scale)
            print(f"{label:36} {shown:>22} {100 * iou:13.1f} {area.get('building', 0) / 1e4:12.2f} {truth_ha:9.2f}",
                  flush=True)

        from rasterio.windows import Window

        austin = args.data / "inria"
        rows = Window(0, 500, 1000, 200)
        print(f"\n{'Austin rows 500-699':36} {'building IoU':>13}")
        for method in ("read by glgeo", "average", "bilinear", "cubic", "lanczos"):
            factor = 1 if method == "read by glgeo" else 2
            image, truth = tmp / f"austin_{method.split()[0]}.tif", tmp / f"austin_{method.split()[0]}_truth.tif"
            for source, target, resampling in (("austin_crop_top_image.tif", image, method),
                                               ("austin_crop_top_gt.tif", truth, "average")):
                with rasterio.open(austin / source) as src:
                    shape = (src.count, rows.height // factor, rows.width // factor)
                    how = Resampling.bilinear if factor == 1 else getattr(Resampling, resampling)
                    data = src.read(window=rows, out_shape=shape, resampling=how)
                    if target is truth:
                        data = (data >= 128).astype(np.uint8)
                    profile = src.profile | {"height": shape[1], "width": shape[2], "count": shape[0],
                                             "transform": src.window_transform(rows) @ Affine.scale(factor)}
                    with rasterio.open(target, "w", **profile) as dst:
                        dst.write(data)
            out = tmp / f"austin_{method.split()[0]}_map.tif"
            segment(image, out, model=args.model, settings=InferenceSettings(device="cpu"))
            with rasterio.open(out) as pred, rasterio.open(truth) as t:
                found, building = pred.read(1) == 1, t.read(1) == 1
            print(f"{method:36} {100 * (found & building).sum() / (found | building).sum():13.1f}", flush=True)


if __name__ == "__main__":
    main()
