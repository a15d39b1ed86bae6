"""Cut the shared Inria Austin crop into the zoo's training and validation parts.

The crop (``inria/austin_crop_top_image.tif`` and ``_gt.tif``, 1000 x 700 px at 0.3 m) is
split by columns: columns 0-699 train, columns 700-999 validate. Both parts are written
as a ``folder`` dataset (``images/``, ``masks/``) with a split file, keeping the
georeferencing of each window.

Usage: python models/zoo/prepare_inria_crop.py DATA_DIR OUT_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import rasterio
from rasterio.windows import Window, transform

TRAIN_COLUMNS = (0, 700)
VAL_COLUMNS = (700, 1000)


def cut(src_path: Path, dst_path: Path, cols: tuple[int, int]) -> None:
    with rasterio.open(src_path) as src:
        window = Window(cols[0], 0, cols[1] - cols[0], src.height)
        profile = src.profile | {
            "width": int(window.width),
            "height": int(window.height),
            "transform": transform(window, src.transform),
            "tiled": True,
            "blockxsize": 256,
            "blockysize": 256,
            "compress": "deflate",
        }
        with rasterio.open(dst_path, "w", **profile) as dst:
            dst.write(src.read(window=window))


def main(data_dir: str, out_dir: str) -> None:
    inria, out = Path(data_dir) / "inria", Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    for part, cols in (("austin_left", TRAIN_COLUMNS), ("austin_right", VAL_COLUMNS)):
        cut(inria / "austin_crop_top_image.tif", out / "images" / f"{part}.tif", cols)
        cut(inria / "austin_crop_top_gt.tif", out / "masks" / f"{part}.tif", cols)
    (out / "split.json").write_text(json.dumps({"train": ["austin_left"], "val": ["austin_right"]}))


if __name__ == "__main__":
    main(*sys.argv[1:3])
