"""Turn a trained run into a zoo entry: fp16 checkpoint, JSON model card, Markdown card.

The metrics are measured here with glgeo's evaluation (the model streamed through
``glgeo.segment`` over each scene, scored at the masks' resolution), next to the
majority-class baselines: the class most frequent in the *training* masks, predicted
everywhere, and (where it differs) the class most frequent in a report's own truth, the best
any constant answer could score there. By default they are measured on the split's validation part; ``--report``
(repeatable) measures them instead on scenes that checkpoint choice never saw, e.g. the
test part that ``glgeo train --holdout-share`` set apart, so the card says what users get.
The first report is the card's headline ``metrics``; each report also gives every class's
IoU spread across images.

Usage (see train_zoo.sh for the runs):
    python models/zoo/make_card.py NAME CHECKPOINT --dataset deepglobe --root DATA/deepglobe \
        --split-file DATA/deepglobe/splits --summary "..." --data "..." --validation "..." \
        --licence "..." --command "..." --train-seconds S --machine "..." [--scheme inria] \
        [--report LABEL ROOT SPLIT_FILE PART ...] [--report-gsd LABEL METRES ...]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import rasterio
import torch

from glgeo.datasets import open_dataset, read_mask_ids
from glgeo.evaluate import evaluate_model
from glgeo.inference import InferenceSettings
from glgeo.models import load_checkpoint, save_checkpoint
from glgeo.schemes import get_scheme
from glgeo.splits import make_split

ZOO = Path(__file__).resolve().parent


def class_pixels(collection, names, n_classes: int) -> np.ndarray:
    counts = np.zeros(n_classes, dtype=np.int64)
    for name in names:
        with rasterio.open(collection.scene(name).mask) as src:
            ids = read_mask_ids(src, collection.scheme, rgb_threshold=collection.rgb_threshold)
        counts += np.bincount(ids[ids < n_classes].ravel(), minlength=n_classes)[:n_classes]
    return counts


def section(r: dict, pct, unscored=()) -> str:
    """A report's Markdown: pooled scores against the majority class, per-class IoU with its
    spread across images (the classes named in ``unscored``, left out of the mIoU, say so)."""
    m, b = r["metrics"], r["majority_baseline"]
    # the training masks' majority class, and (where it differs) these scenes' own most common
    # one: the best any constant answer could do here
    bases = [b] + ([r["scenes_majority_baseline"]] if r["scenes_majority_baseline"]["class"] != b["class"] else [])
    heads = (f"training's majority class ({b['class']}) | these scenes' most common class "
             f"({bases[-1]['class']}) |" if len(bases) == 2 else f"majority class ({b['class']}) |")
    cells = lambda key: " | ".join(pct(x[key]) for x in bases)  # noqa: E731
    extra = f"\n| building IoU | {pct(m['building_iou'])} | {cells('building_iou')} |" if "building_iou" in m else ""
    tta = ""
    if "tta" in r:
        t = r["tta"]
        tta = (f"\n| with `--tta` (8 flips/rotations) | mIoU {pct(t['miou'])}, pixel accuracy {pct(t['pixel_accuracy'])}, "
               f"{t['seconds_per_image']:.2f} s per image (without: {r['seconds_per_image']:.2f} s) |" + " |" * len(bases))
    rows = []
    for c, v in m["iou"].items():
        sp = r["iou_across_images"].get(c)
        across = "-" if sp is None else (
            f"{pct(sp['mean'])} +- {pct(sp['std'])} ({pct(sp['min'])}-{pct(sp['max'])}, {sp['images']} images)"
        )
        rows.append(f"| {c}{' (not in mIoU)' if c in unscored else ''} | {pct(v)} | {across} |")
    return f"""## {r["label"]}

{len(r["scenes"])} scenes ({r["pixels"] / 1e6:.1f} Mpx), measured with glgeo's evaluation, {r["seconds_per_image"]:.2f} s per image:

| | this model | {heads}
|---|---|---|{"---|" * (len(bases) - 1)}
| mIoU | {pct(m["miou"])} | {cells("miou")} |{extra}
| pixel accuracy | {pct(m["pixel_accuracy"])} | {cells("pixel_accuracy")} |{tta}

| class | IoU (all pixels) | IoU per image: mean +- sd (min-max, images with the class in truth or prediction) |
|---|---|---|
""" + "\n".join(rows) + "\n"


def summarise(label: str, names, report, seconds: float, scheme, majority: int, tta: dict | None = None) -> dict:
    """A report's card entry: pooled scores, the training masks' majority class's and the
    scenes' own most common class's, per-class IoU spread."""
    scores = report.scores
    per_image = np.array([i.iou for i in report.images], dtype=np.float64)
    spread = {}
    for k, c in enumerate(scheme.names):
        values = per_image[:, k][~np.isnan(per_image[:, k])]
        spread[c] = None if not len(values) else {
            "mean": float(values.mean()), "std": float(values.std()), "min": float(values.min()),
            "max": float(values.max()), "images": int(len(values)),
        }
    metrics = {
        "miou": scores.miou,
        "pixel_accuracy": scores.pixel_accuracy,
        "iou": {c: (None if np.isnan(v) else float(v)) for c, v in zip(scheme.names, scores.iou)},
    }
    if scores.building_iou is not None:
        metrics["building_iou"] = scores.building_iou
    scored = list(scheme.scored_ids)
    common = scored[int(np.argmax(scores.confusion.sum(axis=1)[scored]))]
    return {
        "label": label, "scenes": list(names), "metrics": metrics,
        "majority_baseline": constant_answer(scores, majority, scheme),
        "scenes_majority_baseline": constant_answer(scores, common, scheme),
        "iou_across_images": spread,
        "image_miou": {i.name: i.miou for i in report.images},
        "pixels": scores.n_pixels, "seconds_per_image": report.seconds_per_image, "seconds": round(seconds, 1),
        **({"tta": tta} if tta is not None else {}),
    }


def constant_answer(scores, class_id: int, scheme) -> dict:
    """The scores of ``class_id`` predicted everywhere on a report's truth."""
    baseline = scores.majority_baseline(class_id)
    base = {"class": scheme.names[class_id], "miou": baseline.miou, "pixel_accuracy": baseline.pixel_accuracy}
    if baseline.building_iou is not None:
        base["building_iou"] = baseline.building_iou
    return base


def tta_summary(report, scheme) -> dict:
    """A report's ``--tta`` entry."""
    return {
        "miou": report.scores.miou,
        "pixel_accuracy": report.scores.pixel_accuracy,
        "iou": {c: (None if np.isnan(v) else float(v)) for c, v in zip(scheme.names, report.scores.iou)},
        "seconds_per_image": report.seconds_per_image,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name")
    p.add_argument("checkpoint")
    p.add_argument("--dataset", required=True)
    p.add_argument("--root", required=True)
    p.add_argument("--scheme", default=None)
    p.add_argument("--split-file", required=True)
    p.add_argument("--validation", required=True, help="Which data validates, in words.")
    p.add_argument("--summary", required=True)
    p.add_argument("--data", required=True, help="Training data, in words.")
    p.add_argument("--licence", required=True)
    p.add_argument("--command", required=True)
    p.add_argument("--train-seconds", type=float, required=True)
    p.add_argument("--machine", required=True)
    p.add_argument("--mode", default=None, choices=["global", "g2l"],
                   help="Ship only the parts of this mode (e.g. stage 2 of a bidirectional run as a G->L model).")
    p.add_argument("--notes", default=None, help="A Markdown file appended to the card (comparisons, caveats).")
    p.add_argument("--report", nargs=4, action="append", metavar=("LABEL", "ROOT", "SPLIT_FILE", "PART"), default=None,
                   help="Measure on this part of a split of --dataset at ROOT (repeatable; default: the validation part).")
    p.add_argument("--report-gsd", nargs=2, action="append", metavar=("LABEL", "METRES"), default=[],
                   help="Metres per pixel of a report's images when their files do not say (evaluate --gsd).")
    p.add_argument("--tta", action="store_true",
                   help="Also measure each report with test-time augmentation (glgeo segment --tta): gain and cost.")
    args = p.parse_args()

    ck = load_checkpoint(args.checkpoint)
    if args.mode and args.mode != ck.model.config.mode:
        ck.model = ck.model.with_mode(args.mode).eval()  # the same weights, without the other mode's parts
    with torch.no_grad():  # measure what ships: the float16 weights
        for tensor in ck.model.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(tensor.half())
    collection = open_dataset(args.dataset, args.root, get_scheme(args.scheme) if args.scheme else None)
    split = make_split(args.dataset, collection.names, split_file=args.split_file)
    scheme = collection.scheme
    training = ck.metadata.setdefault("training", {})
    if ck.gsd is None and collection.gsd is not None:
        # runs from before glgeo train recorded it: the same rule (training imagery / scale)
        training["gsd_m"] = collection.gsd / ck.scene_scale
    train_counts = class_pixels(collection, split.train, scheme.n_classes)
    majority = int(np.argmax(train_counts))
    chosen_on = set(split.val)  # the scenes checkpoint choice saw

    reports = []
    tta_results: dict[str, dict] = {}
    specs = args.report or [["validation", args.root, args.split_file, "val"]]
    gsds = {label: float(metres) for label, metres in args.report_gsd}
    if set(gsds) - {spec[0] for spec in specs}:
        raise SystemExit(f"--report-gsd names no report: {', '.join(sorted(set(gsds) - {spec[0] for spec in specs}))}")
    for label, root, split_file, part in specs:
        data = open_dataset(args.dataset, root, scheme)
        names = list(make_split(args.dataset, data.names, split_file=split_file).part(part))
        # a report is on scenes checkpoint choice never saw (the same id in another folder,
        # at another resolution, is the same scene)
        seen = sorted(chosen_on & set(names)) if args.report else []
        if seen:
            raise SystemExit(f"report {label!r} holds scenes the checkpoint was chosen on: {', '.join(seen)}")
        start = time.perf_counter()
        settings = InferenceSettings(device="cpu", precision="fp32")
        report = evaluate_model(ck, data, names, settings=settings, gsd=gsds.get(label))
        reports.append((label, names, report, time.perf_counter() - start))
        if args.tta:
            with_tta = evaluate_model(ck, data, names, settings=settings, tta=True, gsd=gsds.get(label))
            tta_results[label] = tta_summary(with_tta, scheme)

    summaries = [summarise(*r, scheme, majority, tta_results.get(r[0])) for r in reports]
    head = summaries[0]
    metrics, base_metrics = head["metrics"], head["majority_baseline"]
    scores = reports[0][2].scores
    eval_seconds = reports[0][3]  # the headline report's, as its pixels and seconds per image
    report = reports[0][2]

    out = ZOO / f"{args.name}.pt"
    cfg = ck.model.config
    card = {
        "name": args.name,
        "summary": args.summary,
        "scheme": scheme.name,
        "classes": [{"id": c.id, "name": c.name, "color": list(c.color)} for c in scheme.classes],
        "backbone": cfg.backbone,
        "mode": cfg.mode,
        "pyramid_channels": cfg.pyramid_channels,
        "segmentation_channels": cfg.segmentation_channels,
        "input_scaling": ck.input_scaling.to_dict(),
        "patch_size": ck.patch_size,
        "global_size": ck.global_size,
        "scene_scale": ck.scene_scale,
        "gsd_m": ck.gsd,
        "global_gsd_m": training.get("global_gsd_m"),
        "focal_gamma": ck.focal_gamma,
        "training_data": args.data,
        "training_data_licence": args.licence,
        "validation_data": args.validation,
        "validation_scenes": list(split.val),
        "training_command": args.command,
        "training_seconds": round(args.train_seconds),
        "training_machine": args.machine,
        "metrics": metrics,
        "majority_baseline": base_metrics,
        "reports": summaries,
        "evaluation": {
            "tool": "glgeo.evaluate.evaluate_model (streaming segment, the masks' resolution, CPU, fp32)",
            "pixels": scores.n_pixels,
            "seconds_per_image": report.seconds_per_image,
            "seconds": round(eval_seconds, 1),
        },
        "weights": "float16",
    }
    recorded = training.get("split")
    if isinstance(recorded, dict):  # evaluate flags scores on these scenes (zoo_splits.py for older files)
        card["split"] = {k: recorded[k] for k in ("kind", "train", "val") if k in recorded}
    save_checkpoint(out, ck.model, ck.scheme, ck.input_scaling, ck.global_size, ck.patch_size, ck.focal_gamma,
                    metadata={**ck.metadata, "zoo_name": args.name, "card": f"{args.name}.json"}, half=True)
    card["file_size_mb"] = round(out.stat().st_size / 2**20, 1)
    card["sha256"] = hashlib.sha256(out.read_bytes()).hexdigest()
    (ZOO / f"{args.name}.json").write_text(json.dumps(card, indent=2) + "\n")

    pct = lambda v: "-" if v is None else f"{100 * v:.1f}"  # noqa: E731
    scale_note = (
        f", on scenes read at {ck.scene_scale:g} of their resolution" if ck.scene_scale != 1 else ""
    )
    if ck.gsd is not None:
        scale_note += (
            f" ({ck.gsd:g} m per pixel: `glgeo segment` reads georeferenced scenes at that resolution, "
            "plain images at the training scale; the output keeps the scene's grid)"
        )
    unscored = [scheme.names[i] for i in scheme.ignore_in_miou]
    sections = "\n".join(section(r, pct, unscored) for r in summaries)
    (ZOO / f"{args.name}.md").write_text(
        f"""# {args.name}

{args.summary}

| | |
|---|---|
| classes | {", ".join(f"{c.id} {c.name} ({c.hex_color})" for c in scheme.classes)} |
| architecture | GLNet {cfg.mode}, {cfg.backbone}, heads {cfg.pyramid_channels}/{cfg.segmentation_channels} |
| input | RGB, {ck.input_scaling.min:g}-{ck.input_scaling.max:g} scaled to 0-1, no mean/std |
| patch / global size | {ck.patch_size} / {ck.global_size} px{scale_note} |
| focal gamma | {ck.focal_gamma:g} |
| training data | {args.data} |
| licence of the data | {args.licence} |
| training | {args.machine}, {args.train_seconds / 60:.0f} min |
| file | {card["file_size_mb"]} MiB, float16 weights |

Training command (from `models/zoo/train_zoo.sh`):

```
{args.command}
```

{sections}
Fine-tune it on your own data with `glgeo train --init {args.name}`.
"""
        + ("\n" + Path(args.notes).read_text() if args.notes else "")
    )
    print(json.dumps({k: card[k] for k in ("name", "metrics", "majority_baseline", "file_size_mb")}, indent=2))


if __name__ == "__main__":
    main()
