"""``glgeo evaluate``: score predictions against truth, or a model against a dataset split or
against imagery with polygon labels."""

from __future__ import annotations

import json
from pathlib import Path

import click

from glgeo.modes import MODES
from glgeo.splits import DATASET_KINDS

from .options import device_opt, labels_options, overwrite_opt, progress_bar
from .segment import parse_bands


def _scheme(value: str):
    from glgeo.schemes import load_scheme

    return load_scheme(value)


def _input_files(preds, truths, model, labels, images, split_file, scheme) -> tuple:
    """Every file the command reads (--images patterns expanded), which -o must not replace."""
    import glob
    import os

    files = [*preds, *truths, *(p for p in (labels, split_file) if p is not None)]
    files += [name for name in (model, scheme) if name is not None and Path(name).is_file()]  # not zoo or scheme names
    for pattern in images:
        text = os.path.expanduser(pattern)
        files += glob.glob(text, recursive=True) if any(c in text for c in "*?[") else [text]
    return tuple(files)


def _check_report(json_path: Path, overwrite: bool) -> None:
    """Refuse a report name other than .json (the report is JSON only), then an existing
    report without ``--overwrite``; called once the command's inputs are known not to be it
    (naming one of them says so instead)."""
    from glgeo.atomic import check_output_path

    if json_path.suffix.lower() != ".json":
        raise click.ClickException(
            f"-o {json_path}: the report is written as JSON only; give a .json name (e.g. -o {json_path.with_suffix('.json')})"
        )
    check_output_path(json_path, overwrite=overwrite)


#: Options that set how a model predicts or which scenes it reads: not for --pred/--truth.
_MODEL_ONLY = ("kind", "root", "images", "labels", "label_field", "layer", "split_file", "val_cities", "split_seed",
               "part", "scale", "mode", "device", "precision", "batch_size", "released")


def _given(ctx: click.Context) -> list[click.Parameter]:
    """The options given on the command line (not left at their defaults)."""
    return [p for p in ctx.command.params if ctx.get_parameter_source(p.name) == click.core.ParameterSource.COMMANDLINE]


def _inference_settings(device: str, precision: str, batch_size: int | None, mode: str | None, released: bool):
    """How --model segments each image: glgeo's defaults, or with --released the released code's."""
    from glgeo.inference import InferenceSettings

    if released:
        from .main import refuse_released_conflicts

        refuse_released_conflicts()
        return InferenceSettings.released(device=device, batch_size=batch_size, mode=mode)
    return InferenceSettings(device=device, precision=precision, batch_size=batch_size, mode=mode)  # type: ignore[arg-type]


def _flag(param: click.Parameter) -> str:
    return max(param.opts, key=len)


def _given_options(ctx: click.Context) -> dict:
    """The options given, by flag (a report says how it was made: a --tta or --mode global
    report is told from a plain one)."""
    def plain(value):
        if isinstance(value, (tuple, list)):
            return [plain(v) for v in value]
        return str(value) if isinstance(value, Path) else value

    return {_flag(p): plain(ctx.params[p.name]) for p in _given(ctx)
            if p.name not in ("json_path", "as_json", "overwrite")}


@click.command(short_help="Score predictions (IoU, mIoU, accuracy), or a model on a dataset split.")
@click.option("--pred", "preds", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A prediction raster (class ids, as `glgeo segment` writes); repeat with --truth.")
@click.option("--truth", "truths", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The truth raster for each --pred, in the same order.")
@click.option("--truth-encoding", type=click.Choice(["mask", "ids"]), default="mask", show_default=True,
              help="mask: the dataset's published encoding (DeepGlobe colours, Inria 0/255); ids: class ids.")
@click.option("--scheme", default=None,
              help="Class scheme: deepglobe, inria or a JSON file. Default: the one the predictions carry "
                   "(glgeo segment writes it), or the dataset's.")
@click.option("--model", default=None, help="A checkpoint or zoo model to evaluate on a dataset split.")
@click.option("--dataset", "kind", type=click.Choice(DATASET_KINDS), default=None,
              help="With --model: the dataset layout of --root.")
@click.option("--root", type=click.Path(path_type=Path), default=None, help="With --model: the dataset folder.")
@labels_options
@click.option("--split-file", type=click.Path(exists=True, path_type=Path), default=None, help="Split lists (see train).")
@click.option("--val-cities", default=None, help="Inria: leave-cities-out validation cities.")
@click.option("--split-seed", type=int, default=0, show_default=True)
@click.option("--part", type=click.Choice(["val", "test", "train"]), default="val", show_default=True,
              help="Which part of the split to evaluate.")
@click.option("--scale", type=click.FloatRange(0, 1, min_open=True), default=1.0, show_default=True,
              help="Score at this fraction of the scenes' resolution (scenes and masks resampled first: quicker). "
                   "The model reads scenes at its own training scale either way.")
@click.option("--gsd", type=float, default=None,
              help="With --dataset: metres per pixel of the images when their files do not say (as train --gsd; "
                   "DeepGlobe 256 px copies: 4.78125); the model reads them at its own resolution from it.")
@click.option("--mode", type=click.Choice(MODES), default=None,
              help="GLNet mode to score (e.g. global for the global branch alone). Default: the model's own.")
@click.option("--tta", is_flag=True, help="With --model: test-time augmentation, as in glgeo segment --tta.")
@click.option("--released", is_flag=True,
              help="With --model: score the released GLNet computation, as glgeo segment --released computes it "
                   "(one global image of each whole image resized by PIL, plain sums, nearest upsampling, fp32; "
                   "8-bit images only): for the paper's figures with checkpoints from glgeo import-glnet.")
@click.option("-b", "--bidx", "--bands", "bands", callback=parse_bands, metavar="R,G,B",
              help="With --model: 1-based bands fed to it, as in glgeo segment. Default: the bands the model was "
                   "trained on, where it records others than 1,2,3; else the bands the file labels red, green and "
                   "blue; else the non-alpha bands.")
@device_opt
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16", "fp16"]), default="auto", show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="Patches per forward pass  [default: 2 on a CPU, by free memory on a GPU]")
@click.option("-o", "--out", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the report (with the confusion matrix) as JSON to this .json file.")
@overwrite_opt
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON instead of the table (as segment --json).")
@click.pass_context
def evaluate(ctx, preds, truths, truth_encoding, scheme, model, kind, root, images, labels, label_field, layer, split_file,
             val_cities, split_seed, part, scale, gsd, mode, tta, released, bands, device, precision, batch_size,
             json_path, overwrite, as_json) -> None:
    """Confusion matrix, per-class IoU, mIoU, building IoU (Inria) and pixel accuracy.

    Either compare prediction rasters with truth rasters, window by window:

    \b
      glgeo evaluate --pred pred.tif --truth gt.tif

    or run a model on a dataset split with segment's streaming inference, which also
    reports time per image and peak memory (GPU memory on CUDA):

    \b
      glgeo evaluate --model run/model.pt --dataset deepglobe --root data/deepglobe \\
          --split-file splits/ --part val -o report.json

    or on your own imagery, scored against polygons rasterized on each image's grid:

    \b
      glgeo evaluate --model run/model.pt --images 'held-out/*.tif' --labels footprints.gpkg
    """
    from glgeo.atomic import atomic_path, check_output_path
    from glgeo.errors import InputError

    from .main import logs_in_flag_terms  # every glgeo warning in this command's flags

    if json_path is not None:  # naming an input is refused first; the name and --overwrite once all are known
        check_output_path(json_path, overwrite=True,
                          inputs=_input_files(preds, truths, model, labels, images, split_file, scheme))
    if model is None:
        given = [p for p in _given(ctx) if p.name in _MODEL_ONLY]
        if given:
            flags = ", ".join(map(_flag, given))
            raise click.UsageError(f"{flags} {'do' if len(given) > 1 else 'does'} not apply to --pred/--truth, which"
                                   " compare rasters already made: drop them, or score a --model")
        if tta or bands:
            raise click.UsageError(f"{'--tta' if tta else '--bands'} needs --model: it changes how the model predicts,"
                                   " not how rasters compare")
        if gsd is not None:
            raise click.UsageError("--gsd goes with --model and --dataset: it sets how the model reads the images")
        if not preds:
            raise click.UsageError("give --pred/--truth pairs, or --model with --dataset and --root or with --images and --labels")
        if len(preds) != len(truths):
            raise click.UsageError(f"{len(preds)} --pred but {len(truths)} --truth: give one truth per prediction")
        from glgeo.datasets import DEEPGLOBE_RGB_THRESHOLD
        from glgeo.evaluate import evaluate_rasters, prediction_scheme

        chosen = _scheme(scheme) if scheme is not None else prediction_scheme(preds[0])
        threshold = (
            DEEPGLOBE_RGB_THRESHOLD if chosen is not None and chosen.name == "deepglobe" and truth_encoding == "mask"
            else None
        )
        if json_path is not None:
            _check_report(json_path, overwrite)
        with progress_bar(ctx, unit="image", desc="evaluate") as progress, logs_in_flag_terms("glgeo", "evaluate"):
            report = evaluate_rasters(
                list(zip(preds, truths)), _scheme(scheme) if scheme else None, truth_encoding, threshold, progress
            )
    elif images or labels is not None:
        if preds or truths or kind is not None or root is not None:
            raise click.UsageError("give --model with either --images/--labels or --dataset/--root, not both")
        if not images or labels is None:
            raise click.UsageError("--images and --labels go together")
        if scale != 1.0 or scheme is not None or gsd is not None:
            raise click.UsageError("--scale, --gsd and --scheme do not apply to --images: the model's own scheme and resolution are used")
        from glgeo.evaluate import evaluate_imagery
        from glgeo.geodata import expand_images

        files = expand_images(images)
        if json_path is not None:
            _check_report(json_path, overwrite)
        settings = _inference_settings(device, precision, batch_size, mode, released)
        with progress_bar(ctx, unit="image", desc="evaluate") as progress, logs_in_flag_terms("glgeo", "evaluate"):
            report = evaluate_imagery(model, files, labels, label_field=label_field, layer=layer,
                                      settings=settings, progress=progress, tta=tta, bands=bands)
    else:
        if preds or truths:
            raise click.UsageError("give either --pred/--truth or --model, not both")
        if label_field or layer:
            raise click.UsageError("--label-field and --layer go with --images and --labels")
        if kind is None or root is None:
            raise click.UsageError("--model needs --dataset and --root (and optionally a split)")
        from glgeo.datasets import open_dataset
        from glgeo.evaluate import evaluate_model
        from glgeo.splits import make_split

        collection = open_dataset(kind, root, _scheme(scheme) if scheme else None)
        if json_path is not None:  # nor a file of the dataset
            check_output_path(json_path, overwrite=True, inputs=tuple(p for s in collection.scenes for p in (s.image, s.mask)))
            _check_report(json_path, overwrite)
        split = make_split(
            kind, collection.names, split_file=split_file,
            val_cities=[c for c in (val_cities or "").split(",") if c.strip()], seed=split_seed,
        )
        names = split.part(part)
        if not names:
            raise InputError(f"the {part} part of the split is empty; choose another --part or split")
        settings = _inference_settings(device, precision, batch_size, mode, released)
        with progress_bar(ctx, unit="image", desc="evaluate") as progress, logs_in_flag_terms("glgeo", "evaluate"):
            report = evaluate_model(
                model, collection, names, settings, scale=scale, progress=progress, tta=tta, gsd=gsd, bands=bands
            )
    data = {**report.to_dict(), "options": _given_options(ctx)}
    if json_path is not None:
        with atomic_path(json_path) as tmp:
            tmp.write_text(json.dumps(data, indent=1))
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    from .main import cli_message

    click.echo(cli_message(report.table(), "evaluate"))
    if json_path is not None:
        click.echo(f"report: {json_path}")
