"""Train GLNet on your own imagery and polygon labels, then score it on a tile it never trained on.

Uses the real Joplin sample of the shared data: three 0.6 m orthophoto tiles in EPSG:26915,
a post-tornado tile of the same area in EPSG:4326 (degrees), and 397 building footprints
as polygons in EPSG:4326. torchgeo warps everything to one CRS and resolution (here the
tiles' UTM zone at 2.4 m: ``scale=0.25``), rasterizes the footprints on the fly and draws
training scenes at random; ``tile_1361-9136.tif`` is held out for validation (it never
trains). Then ``glgeo.segment`` maps that tile with the model, and
``glgeo.evaluate.evaluate_imagery`` scores the map against the footprints.

    python examples/train_imagery.py --out /tmp/joplin-example
    # the same from the command line:
    glgeo train --images '../shared/data/joplin/*.tif' --labels ../shared/data/joplin/footprints.geojson \\
        --val-images tile_1361-9136.tif --scale 0.25 --scene-size 128 --mode global \\
        --backbone resnet18 --pyramid-channels 64 --segmentation-channels 32 --global-size 128 \\
        --patch-size 128 --batch-size 4 --epochs 3 --lr 1e-3 --precision fp32 --loader-workers 0 \\
        --out /tmp/joplin-example/run
    glgeo evaluate --model /tmp/joplin-example/run/model.pt \\
        --images ../shared/data/joplin/tile_1361-9136.tif --labels ../shared/data/joplin/footprints.geojson

Polygons with a class per feature: ``label_field="class"`` (values: class names or ids of
the scheme); a GeoPackage layer: ``layer="buildings"``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HELD_OUT = "tile_1361-9136.tif"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("GLGEO_SAMPLE_DATA", REPO.parent / "shared" / "data")))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args(argv)

    from glgeo import segment
    from glgeo.evaluate import evaluate_imagery
    from glgeo.geodata import GeoInputs
    from glgeo.inference import InferenceSettings
    from glgeo.training import DataSettings, TrainSettings, train

    joplin = args.data / "joplin"
    inputs = GeoInputs(
        images=(str(joplin / "*.tif"),),
        labels=joplin / "footprints.geojson",
        scene_size=128,
        val_images=(HELD_OUT,),
    )
    result = train(
        DataSettings("geo", geo=inputs, scale=0.25, global_size=128, patch_size=128, batch_size=4, workers=0),
        TrainSettings(args.out / "run", backbone="resnet18", pyramid_channels=64, segmentation_channels=32,
                      mode="global", epochs=(args.epochs,) * 3, lr=(1e-3,) * 3, precision="fp32",
                      progress_bar=False),
    )
    stage = result.stages[0]
    print(f"trained on {len(result.split.train)} areas in {result.split.crs} at {result.split.res[0]:g} m per pixel; "
          f"validated on {len(result.split.val)} scenes of {result.split.rule}")
    print(f"loss {stage.first_loss:.4f} -> {stage.last_loss:.4f} in {stage.seconds:.0f} s; model {result.model}")

    settings = InferenceSettings(device="cpu", precision="fp32")
    summary = segment(joplin / HELD_OUT, args.out / "buildings.tif", model=result.model, settings=settings, overwrite=True)
    print(f"segmented {HELD_OUT}: {summary.class_areas}")
    report = evaluate_imagery(result.model, [str(joplin / HELD_OUT)], joplin / "footprints.geojson", settings=settings)
    print(report.table())
    (args.out / "report.json").write_text(json.dumps(report.to_dict(), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
