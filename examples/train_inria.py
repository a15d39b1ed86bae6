"""Train GLNet on an Inria-layout dataset, then evaluate it on the official validation tiles.

Builds a small dataset in the Inria Aerial Image Labeling layout from the real Austin crop
of the sample data (0.3 m, EPSG:26914): the crop is cut into 8 tiles ``austin1.tif`` ...
``austin8.tif`` under ``OUT/inria/AerialImageDataset/train/{images,gt}``, exactly as the
benchmark is published. Tiles 1-5 are Inria's official validation tiles, 6-8 train.
Then one short training stage (the global branch, resnet18, small sizes: a CPU minute)
and an evaluation of the model on the validation tiles with segment's streaming inference.

    python examples/train_inria.py --out /tmp/inria-example
    # the same from the command line:
    glgeo train --dataset inria --root /tmp/inria-example/inria --out /tmp/inria-example/run \\
        --mode global --backbone resnet18 --pyramid-channels 64 --segmentation-channels 32 \\
        --global-size 128 --patch-size 128 --batch-size 3 --epochs 3 --lr 1e-3 --loader-workers 0
    glgeo evaluate --model /tmp/inria-example/run/model.pt --dataset inria \\
        --root /tmp/inria-example/inria --device cpu -o report.json

For the real benchmark, point ``--root`` at the unpacked ``AerialImageDataset`` and use
the paper's settings (``--backbone resnet50 --mode bidirectional``, 508 px sizes).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import rasterio
from rasterio.windows import Window, transform as window_transform

REPO = Path(__file__).resolve().parents[1]


def make_inria_layout(image: Path, mask: Path, root: Path, rows: int = 2, cols: int = 4) -> Path:
    """Cut an image/mask pair into ``rows x cols`` tiles named austin1..N in the Inria layout."""
    base = root / "AerialImageDataset" / "train"
    for sub in ("images", "gt"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    for source, sub in ((image, "images"), (mask, "gt")):
        with rasterio.open(source) as src:
            th, tw = src.height // rows, src.width // cols
            for r in range(rows):
                for c in range(cols):
                    window = Window(c * tw, r * th, tw, th)
                    profile = {**src.profile, "width": tw, "height": th, "transform": window_transform(window, src.transform)}
                    profile.pop("blockxsize", None), profile.pop("blockysize", None), profile.pop("tiled", None)
                    with rasterio.open(base / sub / f"austin{r * cols + c + 1}.tif", "w", **profile) as dst:
                        dst.write(src.read(window=window))
    return root


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("GLGEO_SAMPLE_DATA", REPO.parent / "shared" / "data")))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args(argv)

    from glgeo.datasets import open_dataset
    from glgeo.evaluate import evaluate_model
    from glgeo.inference import InferenceSettings
    from glgeo.training import DataSettings, TrainSettings, train

    crop = args.data / "inria"
    root = make_inria_layout(crop / "austin_crop_top_image.tif", crop / "austin_crop_top_gt.tif", args.out / "inria")
    result = train(
        DataSettings("inria", root, global_size=128, patch_size=128, batch_size=3, workers=0),
        TrainSettings(args.out / "run", backbone="resnet18", pyramid_channels=64, segmentation_channels=32,
                      mode="global", epochs=(args.epochs,) * 3, lr=(1e-3,) * 3, progress_bar=False),
    )
    stage = result.stages[0]
    print(f"trained on {', '.join(result.split.train)}; validated on {', '.join(result.split.val)}")
    print(f"loss {stage.first_loss:.4f} -> {stage.last_loss:.4f} in {stage.seconds:.0f} s; model {result.model}")

    collection = open_dataset("inria", root)
    report = evaluate_model(result.model, collection, result.split.val, InferenceSettings(device="cpu"))
    print(report.table())
    (args.out / "report.json").write_text(json.dumps(report.to_dict(), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
