"""Put the shared DeepGlobe images into one stage-2 training set for the land-cover model.

Stage 2 trains the local branch and the aggregation of the global and local features. On
the six full-resolution training scenes alone, barren land is in one scene (482365) and
the aggregation learns it from that scene only: it never predicts barren elsewhere,
although the global branch, trained on the 166 low-resolution copies, finds it. This
script writes a DeepGlobe-layout folder (``images/<id>_sat.jpg``, ``masks/<id>_mask.png``)
that holds both, at the same 2448 px size so that ``glgeo train --scale 0.25`` reads every
scene at 2 m:

* the six full-resolution train scenes (hard links to the shared files), each also under
  ``COPIES - 1`` more names (``<id>-2``, ...), so ``COPIES * 6`` of the
  ``COPIES * 6 + 162`` training scenes are sharp (class-balanced sampling then reweighs
  them by their classes);
* the other 162 train ids of ``deepglobe_256`` (4.78 m; four of its 166 are the sharp
  scenes above) upsampled to 2448 px (bilinear; masks nearest): their detail is the
  copies' own, but their labels teach the aggregation what the global features of every
  class look like;
* for checkpoint choice: the full-resolution scene 855 and the 38 validation ids of the
  256 px copies (upsampled the same way).

``split.json`` lists them; the held-out scenes (the other 38 crossvali ids and the four
full-resolution crossvali scenes) are left out and stay unseen.

Usage: python models/zoo/prepare_landcover.py DATA_DIR OUT_DIR VAL_IDS_JSON [COPIES]
(VAL_IDS_JSON: the stage-1 run's split.json, whose ``val`` part is the 38 validation ids.)
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image

FULL_TRAIN = ("104113", "172307", "266", "3484", "482365", "6399")
FULL_VAL = ("855",)
SIZE = 2448


def link(src: Path, dst: Path) -> None:
    if dst.exists():
        dst.unlink()
    os.link(src, dst)


def upsample(src: Path, dst: Path, mask: bool) -> None:
    image = Image.open(src).convert("RGB")
    big = image.resize((SIZE, SIZE), Image.NEAREST if mask else Image.BILINEAR)
    if mask:
        # pure class colours, as the published masks
        big = Image.fromarray(np.where(np.asarray(big) >= 128, 255, 0).astype(np.uint8))
        big.save(dst)
    else:
        big.save(dst, quality=95)


def main(data_dir: str, out_dir: str, val_split: str, copies: int = 8) -> None:
    data, out = Path(data_dir), Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    lists = Path(data, "deepglobe", "splits", "train.txt").read_text().split()
    train_ids = {name.split("_")[0] for name in lists}
    val_ids = json.loads(Path(val_split).read_text())["val"]
    split: dict[str, list[str]] = {"train": [], "val": []}
    full = data / "deepglobe"
    for scene, part in [*((s, "train") for s in FULL_TRAIN), *((s, "val") for s in FULL_VAL)]:
        names = [scene] if part == "val" else [scene] + [f"{scene}-{k}" for k in range(2, copies + 1)]
        for name in names:
            link(full / "images" / f"{scene}_sat.jpg", out / "images" / f"{name}_sat.jpg")
            link(full / "masks" / f"{scene}_mask.png", out / "masks" / f"{name}_mask.png")
            split[part].append(name)
    small = data / "deepglobe_256"
    present = sorted(p.name.split("_")[0] for p in (small / "images").glob("*_sat.jpg"))
    for scene in present:
        part = "train" if scene in train_ids and scene not in FULL_TRAIN else "val" if scene in val_ids else None
        if part is None:
            continue  # a held-out id, or a full-resolution scene already in
        name = f"{scene}-lowres"
        upsample(small / "images" / f"{scene}_sat.jpg", out / "images" / f"{name}_sat.jpg", mask=False)
        upsample(small / "masks" / f"{scene}_mask.png", out / "masks" / f"{name}_mask.png", mask=True)
        split[part].append(name)
    (out / "split.json").write_text(json.dumps(split, indent=1))
    print(f"train: {len(split['train'])} scenes, val: {len(split['val'])} scenes -> {out}")


if __name__ == "__main__":
    if len(sys.argv) not in (4, 5):
        sys.exit("usage: python models/zoo/prepare_landcover.py DATA_DIR OUT_DIR VAL_IDS_JSON [COPIES]")
    main(sys.argv[1], sys.argv[2], sys.argv[3], *(int(a) for a in sys.argv[4:]))
