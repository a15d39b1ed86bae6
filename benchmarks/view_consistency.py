"""Does a model's global branch keep its answer when its view is cut or shifted?

On the 256 px DeepGlobe copies (``../shared/data/deepglobe_256``, whole 2448 px images at
4.78 m: what the default model's global branch sees of a DeepGlobe image), for each
checkpoint, in ``global`` mode (the global branch alone, at its logits' resolution):

* **cut**: each image against the same image with the first 14 % of its rows and 21 % of
  its columns cut off (``benchmarks/invariance.py`` cuts 333 of 2448 rows and 517 columns
  of the full-resolution images), the rest resized to the global size as a scene's view is:
  the share of the shared pixels that get the same class;
* **mosaic**: the images four at a time in a 2 x 2 mosaic, and a view of one image's size
  at the mosaic's centre (a quarter of each image, the others beyond its edges, as a
  context window that straddles two kinds of land): the share of its pixels that get the
  class each image gets alone.

This is how the default model's global branch was chosen (``glgeo train
--cut-consistency``, docs/train.md): on the 38 validation ids its checkpoints were chosen
on (the card's ``validation_scenes``), never on the held-out ones. It measures steadiness,
not accuracy.

Example::

    python benchmarks/view_consistency.py deepglobe-landcover runs/g/stage1/best.pt
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CUT_ROWS, CUT_COLS = 333 / 2448, 517 / 2448


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="checkpoint files or zoo names")
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("GLGEO_SAMPLE_DATA", REPO.parent / "shared" / "data")))
    parser.add_argument("--ids", default=None,
                        help="comma-separated DeepGlobe ids (default: the validation ids of the deepglobe-landcover card)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import torch
    import torch.nn.functional as F
    from PIL import Image

    from glgeo.models import load_checkpoint
    from glgeo.models.zoo import model_card

    torch.set_num_threads(args.threads)
    root = args.data / "deepglobe_256" / "images"
    if not root.is_dir():
        raise SystemExit(f"no DeepGlobe 256 px copies at {root}: pass --data (the shared sample data folder)")
    ids = args.ids.split(",") if args.ids else model_card("deepglobe-landcover")["validation_scenes"]
    views = [torch.from_numpy(np.asarray(Image.open(root / f"{i}_sat.jpg").convert("RGB"), np.float32) / 255).permute(2, 0, 1)
             for i in ids]
    print(f"{len(ids)} DeepGlobe ids at 256 px, the global branch alone, one torch thread")
    print(f"{'model':60s} {'cut':>8s} {'mosaic':>8s}")
    for name in args.models:
        ck = load_checkpoint(name)
        net = ck.model.eval()
        size = ck.global_size

        def classes(x: torch.Tensor, out: tuple[int, int]) -> torch.Tensor:
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
            with torch.no_grad():
                return F.interpolate(net.encode_global(x).logits.float(), size=out, mode="bilinear", align_corners=False).argmax(1)

        same = total = 0
        for v in views:
            h, w = v.shape[-2:]
            r, c = round(CUT_ROWS * h), round(CUT_COLS * w)
            whole, cut = classes(v[None], (h, w))[0], classes(v[None, :, r:, c:], (h - r, w - c))[0]
            same += int((whole[r:, c:] == cut).sum())
            total += cut.numel()
        cut_share = same / total
        same = total = 0
        for g in range(0, len(views) - 3, 4):
            four = torch.stack(views[g : g + 4])
            h, w = four.shape[-2:]
            alone = classes(four, (h, w))
            mosaic = torch.cat([torch.cat([four[0], four[1]], 2), torch.cat([four[2], four[3]], 2)], 1)
            tiles = torch.cat([torch.cat([alone[0], alone[1]], 1), torch.cat([alone[2], alone[3]], 1)], 0)
            t, l = h // 2, w // 2
            window = classes(mosaic[None, :, t : t + h, l : l + w], (h, w))[0]
            same += int((tiles[t : t + h, l : l + w] == window).sum())
            total += window.numel()
        print(f"{str(name)[-60:]:60s} {100 * cut_share:7.2f}% {100 * same / total:7.2f}%")


if __name__ == "__main__":
    main()
