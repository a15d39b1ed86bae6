"""Cut the shared Austin crop and Joplin tiles into the buildings model's training data.

Writes a ``folder`` dataset (``images/``, ``masks/``, masks 0 background / 255 building,
each window keeping its georeferencing), ``split.json`` and ``split_refit.json``:

* train: Austin crop rows 0-499, columns 0-699; Joplin ``tile_337-9136``, three of its four
  512 px quarters.
* val (checkpoint choice): Austin rows 0-499, columns 700-999; the fourth (bottom right)
  quarter of ``tile_337-9136``.
* test (reported on, never trained on or chosen on): Austin rows 500-699, all columns, at
  their own 0.3 m; Joplin ``tile_1361-9136`` whole.
* ``split_refit.json``: the same test part, with train and val together as training
  scenes and no validation: the shipped model is the recipe, once checked on the val part,
  trained again on all the ground it may see.
* not used: Joplin ``tile_337-10160``, whose footprints miss its largest buildings (a
  warehouse and a hall in the south, apartment rows in the east, shops along the main road;
  ``docs/figures/joplin_footprints.png``): trained on, they would teach the model that
  such roofs are background; reported on, they would count every one it finds as wrong.

Training and validation windows are resampled to the model's 0.6 m (Joplin's own
resolution; the Austin crop is 0.3 m), so one pixel is the same ground everywhere; the
test windows keep their own resolution, as users' scenes do, and ``glgeo segment`` reads
them at 0.6 m. Joplin's masks are the shared building footprints (EPSG:4326) rasterized on
each tile's grid (EPSG:26915).

Usage: python models/zoo/prepare_buildings.py DATA_DIR OUT_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.features import rasterize
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

GSD = 0.6  # metres per pixel the model works at
AUSTIN_SPLIT = {  # name: (part, window as col_off, row_off, width, height)
    "austin_train": ("train", Window(0, 0, 700, 500)),
    "austin_val": ("val", Window(700, 0, 300, 500)),
    "austin_test": ("test", Window(0, 500, 1000, 200)),
}
JOPLIN_SPLIT = {  # tile: (part of each 512 px quarter, in the order top-left, top-right, bottom-left, bottom-right)
    "tile_337-9136": ("train", "train", "train", "val"),
}
JOPLIN_TEST = "tile_1361-9136"
# Not used: its footprints miss its largest buildings (docs/figures/joplin_footprints.png)
JOPLIN_UNUSED = ("tile_337-10160",)
PROFILE = {"driver": "GTiff", "tiled": True, "blockxsize": 256, "blockysize": 256, "compress": "deflate"}


def write(path: Path, data: np.ndarray, crs, transform) -> None:
    profile = PROFILE | {"count": data.shape[0], "height": data.shape[1], "width": data.shape[2],
                         "dtype": data.dtype, "crs": crs, "transform": transform}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)


def cut(src_path: Path, window: Window, gsd: float | None, building: bool = False) -> tuple[np.ndarray, object]:
    """``window`` of ``src_path``, resampled to ``gsd`` metres (None: as it is), and its transform."""
    with rasterio.open(src_path) as src:
        factor = 1.0 if gsd is None else src.res[0] / gsd
        h, w = round(window.height * factor), round(window.width * factor)
        # masks: a pixel is building where most of its ground is (average of 0/255 >= 128)
        data = src.read(window=window, out_shape=(src.count, h, w), resampling=Resampling.average)
        if building:
            data = np.where(data >= 128, 255, 0).astype(np.uint8)
        transform = window_transform(window, src.transform) * rasterio.Affine.scale(window.width / w, window.height / h)
        return data, (src.crs, transform)


def main(data_dir: str, out_dir: str) -> None:
    data, out = Path(data_dir), Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    split: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    inria = data / "inria"
    for name, (part, window) in AUSTIN_SPLIT.items():
        gsd = None if part == "test" else GSD
        image, (crs, transform) = cut(inria / "austin_crop_top_image.tif", window, gsd)
        mask, _ = cut(inria / "austin_crop_top_gt.tif", window, gsd, building=True)
        write(out / "images" / f"{name}.tif", image, crs, transform)
        write(out / "masks" / f"{name}.tif", mask, crs, transform)
        split[part].append(name)
    joplin = data / "joplin"
    footprints = gpd.read_file(joplin / "footprints.geojson")
    quarters = [Window(0, 0, 512, 512), Window(512, 0, 512, 512), Window(0, 512, 512, 512), Window(512, 512, 512, 512)]
    tiles = [(tile, q, part) for tile, parts in JOPLIN_SPLIT.items() for q, part in zip(quarters, parts)]
    tiles.append((JOPLIN_TEST, Window(0, 0, 1024, 1024), "test"))
    for tile, window, part in tiles:
        image, (crs, transform) = cut(joplin / f"{tile}.tif", window, None)
        shapes = footprints.to_crs(crs).geometry
        mask = rasterize(((g, 255) for g in shapes), out_shape=image.shape[1:], transform=transform, dtype=np.uint8)
        name = f"joplin_{tile.removeprefix('tile_')}" + ("" if part == "test" else f"_{window.col_off}_{window.row_off}")
        write(out / "images" / f"{name}.tif", image, crs, transform)
        write(out / "masks" / f"{name}.tif", mask[None], crs, transform)
        split[part].append(name)
    (out / "split.json").write_text(json.dumps(split, indent=1))
    # the recipe, once checked on the val part, trained again on train + val (same test)
    refit = {"train": split["train"] + split["val"], "val": [], "test": split["test"]}
    (out / "split_refit.json").write_text(json.dumps(refit, indent=1))
    for part, names in split.items():
        print(f"{part}: {', '.join(names)}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python models/zoo/prepare_buildings.py DATA_DIR OUT_DIR")
    main(sys.argv[1], sys.argv[2])
