"""``glgeo evaluate``: score predictions against truth, or a model against a dataset split."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

import click

from .options import device_opt, progress_enabled


def _scheme(value: str):
    from glgeo.schemes import ClassScheme, get_scheme

    path = Path(value)
    if path.suffix.lower() == ".json" and path.is_file():
        return ClassScheme.from_dict(json.loads(path.read_text()))
    return get_scheme(value)


@click.command(short_help="Score predictions (IoU, mIoU, accuracy), or a model on a dataset split.")
@click.option("--pred", "preds", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A prediction raster (class ids, as `glgeo segment` writes); repeat with --truth.")
@click.option("--truth", "truths", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The truth raster for each --pred, in the same order.")
@click.option("--truth-encoding", type=click.Choice(["mask", "ids"]), default="mask", show_default=True,
              help="mask: the dataset's published encoding (DeepGlobe colours, Inria 0/255); ids: class ids.")
@click.option("--scheme", default=None, help="Class scheme: deepglobe, inria or a JSON file (default: the dataset's).")
@click.option("--model", default=None, help="A checkpoint or zoo model to evaluate on a dataset split.")
@click.option("--dataset", "kind", type=click.Choice(["inria", "deepglobe", "folder"]), default=None,
              help="With --model: the dataset layout of --root.")
@click.option("--root", type=click.Path(path_type=Path), default=None, help="With --model: the dataset folder.")
@click.option("--split-file", type=click.Path(exists=True, path_type=Path), default=None, help="Split lists (see train).")
@click.option("--val-cities", default=None, help="Inria: leave-cities-out validation cities.")
@click.option("--split-seed", type=int, default=0, show_default=True)
@click.option("--part", type=click.Choice(["val", "test", "train"]), default="val", show_default=True,
              help="Which part of the split to evaluate.")
@click.option("--scale", type=float, default=1.0, show_default=True,
              help="Score at this fraction of the scenes' resolution (scenes and masks resampled first: quicker). "
                   "The model reads scenes at its own training scale either way.")
@click.option("--mode", type=click.Choice(["global", "local", "g2l", "bidirectional"]), default=None,
              help="GLNet mode to score (e.g. global for the global branch alone). Default: the model's own.")
@click.option("--tta", is_flag=True, help="With --model: test-time augmentation, as in glgeo segment --tta.")
@device_opt
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16", "fp16"]), default="auto", show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="Patches per forward pass  [default: 2 on a CPU, by free memory on a GPU]")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the report as JSON here.")
@click.pass_context
def evaluate(ctx, preds, truths, truth_encoding, scheme, model, kind, root, split_file, val_cities, split_seed, part,
             scale, mode, tta, device, precision, batch_size, json_path) -> None:
    """Confusion matrix, per-class IoU, mIoU, building IoU (Inria) and pixel accuracy.

    Either compare prediction rasters with truth rasters, window by window:

    \b
      glgeo evaluate --pred pred.tif --truth gt.tif --scheme inria

    or run a model on a dataset split with segment's streaming inference, which also
    reports time per image and peak memory (GPU memory on CUDA):

    \b
      glgeo evaluate --model run/model.pt --dataset deepglobe --root data/deepglobe \\
          --split-file splits/ --part val --json report.json
    """
    from glgeo.atomic import atomic_path, check_output_path
    from glgeo.errors import InputError

    if json_path is not None:
        check_output_path(json_path, overwrite=True)
    show = progress_enabled(ctx)
    if model is None:
        if tta:
            raise click.UsageError("--tta needs --model: it changes how the model predicts, not how rasters compare")
        if not preds:
            raise click.UsageError("give --pred/--truth pairs, or --model with --dataset and --root")
        if len(preds) != len(truths):
            raise click.UsageError(f"{len(preds)} --pred but {len(truths)} --truth: give one truth per prediction")
        if scheme is None:
            raise click.UsageError("--scheme is needed to compare rasters (deepglobe, inria or a JSON file)")
        from glgeo.datasets import DEEPGLOBE_RGB_THRESHOLD
        from glgeo.evaluate import evaluate_rasters

        chosen = _scheme(scheme)
        threshold = DEEPGLOBE_RGB_THRESHOLD if chosen.name == "deepglobe" and truth_encoding == "mask" else None
        report = evaluate_rasters(list(zip(preds, truths)), chosen, truth_encoding, threshold)
    else:
        if preds or truths:
            raise click.UsageError("give either --pred/--truth or --model, not both")
        if kind is None or root is None:
            raise click.UsageError("--model needs --dataset and --root (and optionally a split)")
        from glgeo.datasets import open_dataset
        from glgeo.evaluate import evaluate_model
        from glgeo.inference import InferenceSettings
        from glgeo.splits import make_split

        collection = open_dataset(kind, root, _scheme(scheme) if scheme else None)
        split = make_split(
            kind, collection.names, split_file=split_file,
            val_cities=[c for c in (val_cities or "").split(",") if c.strip()], seed=split_seed,
        )
        names = split.part(part)
        if not names:
            raise InputError(f"the {part} part of the split is empty; choose another --part or split")
        settings = InferenceSettings(device=device, precision=precision, batch_size=batch_size, mode=mode)
        bar_context = click.progressbar(length=len(names), label="evaluating", file=sys.stderr)
        with bar_context if show else contextlib.nullcontext() as bar:
            progress = (lambda done, total: bar.update(done - bar.pos)) if bar is not None else None
            report = evaluate_model(model, collection, names, settings, scale=scale, progress=progress, tta=tta)
    click.echo(report.table())
    if json_path is not None:
        with atomic_path(json_path) as tmp:
            tmp.write_text(json.dumps(report.to_dict(), indent=1))
        click.echo(f"report: {json_path}")
