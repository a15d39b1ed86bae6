"""``glgeo train``: GLNet's three-stage training on Inria, DeepGlobe, a folder of GeoTIFFs, or
imagery with polygon labels."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

import click

from glgeo.modes import TRAIN_MODES
from glgeo.splits import DATASET_KINDS

from .options import labels_options, progress_enabled


def _per_stage(kind: type, text: str, name: str, mode: str) -> tuple:
    """One value per stage (1, 2, 3) from ``text``: one value for every stage, one per stage
    of ``mode`` (global 1, g2l 2, bidirectional 3) or three."""
    n_stages = {"global": 1, "g2l": 2}.get(mode, 3)
    parts = [p for p in text.split(",") if p.strip()]
    try:
        values = [kind(p) for p in parts]
    except ValueError:
        raise click.BadParameter(f"expected numbers separated by commas, got {text!r}", param_hint=name)
    if len(values) not in {1, n_stages, 3}:
        raise click.BadParameter(
            f"give one value for every stage, or one per stage of --mode {mode} ({n_stages}), got {text!r}",
            param_hint=name,
        )
    return tuple(values + [values[-1]] * (3 - len(values)))


def _devices(text: str) -> str | int | list[int]:
    """``auto``, a count or GPU ids; anything else as it is, for the library to refuse in one line."""
    if text == "auto":
        return text
    values = [v.strip() for v in text.split(",") if v.strip()]
    if "," in text and values and all(v.lstrip("-").isdigit() for v in values):
        return [int(v) for v in values]
    return int(text) if text.strip().lstrip("-").isdigit() else text


def _scheme(value: str | None):
    from glgeo.schemes import load_scheme

    return None if value is None else load_scheme(value, register=True)


@click.command(short_help="Train GLNet (the paper's three stages).")
@click.option("--dataset", "kind", type=click.Choice(DATASET_KINDS), default=None,
              help="Layout of --root: Inria or DeepGlobe as published, or folder (ROOT/images + ROOT/masks).")
@click.option("--root", type=click.Path(path_type=Path), default=None, help="The dataset folder (with --dataset).")
@labels_options
@click.option("--crs", default=None, help="With --images: working CRS (default: the one most images use).")
@click.option("--res", type=float, default=None,
              help="With --images: working resolution in CRS units (default: the first such image's).")
@click.option("--scene-size", type=click.IntRange(min=64), default=1024, show_default=True,
              help="With --images: side of a training scene, px at the working resolution.")
@click.option("--scenes-per-epoch", type=click.IntRange(min=1), default=None,
              help="With --images: random scenes per epoch (default: about as many as fit side by side).")
@click.option("--val-images", multiple=True, metavar="NAME|GLOB",
              help="With --images: validate on the footprints of these images (repeat); they never train.")
@click.option("--val-bbox", default=None, metavar="XMIN,YMIN,XMAX,YMAX",
              help="With --images: validate inside this box (working CRS).")
@click.option("--val-fraction", type=float, default=None,
              help="With --images: validate on this fraction of the labelled extent (its east or south end).")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="The run folder (checkpoints, logs).")
@click.option("--scheme", default=None, help="Class scheme of a folder dataset: a name (deepglobe, inria) or a JSON file.")
@click.option("--stage", type=click.Choice(["1", "2", "3", "all"]), default="all", show_default=True,
              help="Train one stage, or every stage of --mode in sequence.")
@click.option("--mode", type=click.Choice(TRAIN_MODES), default="bidirectional", show_default=True,
              help="The model to end with: bidirectional has stages 1-3, g2l stages 1-2.")
@click.option("--backbone", default="resnet50", show_default=True, help="resnet18, resnet34, resnet50, resnet101.")
@click.option("--pyramid-channels", type=int, default=256, show_default=True, help="FPN width (paper 256).")
@click.option("--segmentation-channels", type=int, default=128, show_default=True, help="ps2 width (paper 128).")
@click.option("--init", default=None, help="Checkpoint (or zoo model) the first stage starts from.")
@click.option("--backbone-weights", default=None, metavar="FILE|MODEL",
              help="A fresh model's backbones from a torchvision ImageNet weights file, or from a glgeo "
                   "checkpoint or zoo model of the same backbone (any classes; e.g. deepglobe-landcover).")
@click.option("--resume", is_flag=True, help="Continue an interrupted run in --out; finished stages are skipped.")
@click.option("--split-file", type=click.Path(exists=True, path_type=Path), default=None,
              help="Split lists: a folder of train/val(crossvali)/test .txt, a JSON file, or name,split lines.")
@click.option("--val-cities", default=None, help="Inria: validate on every tile of these cities (e.g. tyrol-w,vienna).")
@click.option("--split-seed", type=int, default=0, show_default=True, help="Seed of the DeepGlobe/folder random split.")
@click.option("--epochs", default="20", show_default=True, help="Epochs: one value, or per stage (e.g. 20,10,10).")
@click.option("--lr", default="5e-5,2e-5,2e-5", show_default=True, help="Adam learning rate: one value or per stage.")
@click.option("--weight-decay", type=click.FloatRange(min=0), default=5e-4, show_default=True)
@click.option("--focal-gamma", type=float, default=3.0, show_default=True, help="Focal loss gamma (released code 3, paper 6).")
@click.option("--fmreg", "fmreg_weight", type=float, default=0.15, show_default=True, help="Feature-map regularisation weight.")
@click.option("--global-size", type=click.IntRange(min=32), default=None,
              help="Side of the downsampled scene.  [default: the --init model's, else 508]")
@click.option("--patch-size", type=click.IntRange(min=64), default=None,
              help="Side of the local patches.  [default: the --init model's, else 508]")
@click.option("--batch-size", type=int, default=6, show_default=True, help="Scenes per optimizer step.")
@click.option("--sub-batch", type=int, default=6, show_default=True, help="Patches per forward/backward (stages 2, 3).")
@click.option("--loader-workers", "workers", type=click.IntRange(min=0), default=2, show_default=True,
              help="Data-loading processes (PyTorch DataLoader workers; not Dask workers as in segment).")
@click.option("--workers", "old_workers", type=click.IntRange(min=0), default=None, hidden=True)
@click.option("-b", "--bidx", "--bands", "bands", default=None, metavar="R,G,B",
              help="The images' red, green, blue bands (1-based, rio's --bidx). Default: the bands each image labels "
                   "red, green and blue, else its three non-alpha bands, as glgeo segment reads scenes.")
@click.option("--input-range", default="0,255", show_default=True, help="Raw values mapped to 0 and 1.")
@click.option("--no-augment", is_flag=True, help="No random flips and rotations.")
@click.option("--color-jitter", type=float, default=0.0, show_default=True,
              help="Brightness, contrast and saturation jitter of training scenes: factors in 1 +- this.")
@click.option("--crop-jitter", type=float, default=0.0, show_default=True,
              help="Scale jitter: train on random windows of 1 - this to 1 of a scene's side, read as whole scenes.")
@click.option("--blur-jitter", type=click.FloatRange(0, 3), default=0.0, show_default=True,
              help="Blur jitter: each training scene blurred by a Gaussian of up to this many pixels (standard "
                   "deviation), so the model also learns resampled imagery (a reprojection).")
@click.option("--mosaic", type=float, default=0.0, show_default=True,
              help="Share of training scenes cut from a 2 x 2 mosaic of four scenes at a random place: views that "
                   "cut across scenes, as context windows cut across a large scene (--dataset inputs).")
@click.option("--balance", type=float, default=0.0, show_default=True,
              help="Class-balanced sampling power: 0 every scene once per epoch, 1 strongly favour scenes of rare classes.")
@click.option("--loss-balance", type=float, default=0.0, show_default=True,
              help="Class-weighted loss power: weigh each class's pixels by its share of the training pixels to the "
                   "power -this (capped at 10x the commonest class's); 0 every pixel alike, 1 every class alike "
                   "(--dataset inputs).")
@click.option("--cut-consistency", type=float, default=0.0, show_default=True,
              help="Stage 1: also train on a random cut of each view (up to a quarter off each side) and weigh by "
                   "this a loss asking for the same classes where view and cut overlap, so a place's class depends "
                   "less on where the scene is cut; with --mosaic, that share of the cuts also takes in other "
                   "training views beyond the view's edges; 0 off.")
@click.option("--lovasz", type=float, default=0.0, show_default=True,
              help="Add this weight of a Lovász-softmax loss (a convex surrogate of each class's 1 - IoU) to every "
                   "output's focal loss, asking for the classes' IoU directly; 0 off.")
@click.option("--ema", type=float, default=0.0, show_default=True,
              help="Keep an exponential moving average of the weights, with this decay per optimizer step (0.99: "
                   "about the last hundred steps; warmed up over the first): validation, best.pt and last.pt use "
                   "the average, a steadier model on little data; 0 off.")
@click.option("--gsd", type=float, default=None,
              help="Metres per pixel of the images when their georeferencing does not say (DeepGlobe 256 px copies: 4.78).")
@click.option("--holdout-share", type=float, default=0.0, show_default=True,
              help="Share of the validation scenes moved to the test part: never used to choose checkpoints.")
@click.option("--holdout-scenes", default=None,
              help="Validation scenes (comma-separated) moved to the test part, to be reported on.")
@click.option("--scale", type=click.FloatRange(0, 1, min_open=True), default=1.0, show_default=True,
              help="Read scenes at this fraction of their resolution (quick CPU runs; the paper uses 1).")
@click.option("--accelerator", default="auto", show_default=True, help="Lightning accelerator: auto, cpu, gpu.")
@click.option("--devices", default="auto", show_default=True, help="Lightning devices: auto, a count, or ids like 0,1.")
@click.option("--num-nodes", type=int, default=1, show_default=True, help="Machines (DDP).")
@click.option("--strategy", default="auto", show_default=True, help="Lightning strategy: auto, ddp, ddp_spawn, ...")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16", "fp16"]), default="auto", show_default=True,
              help="As segment's: auto is bf16 (fp16) mixed precision on CUDA, bf16 on CPUs with native bf16, else fp32.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--limit-train-batches", type=click.IntRange(min=1), default=None, help="Batches per epoch (short trial runs).")
@click.option("--limit-val-batches", type=click.IntRange(min=1), default=None, help="Validation scenes per epoch.")
@click.pass_context
def train(ctx: click.Context, kind, root, images, labels, label_field, layer, crs, res, scene_size, scenes_per_epoch,
          val_images, val_bbox, val_fraction, out, scheme, stage, mode, backbone, pyramid_channels, segmentation_channels,
          init, backbone_weights, resume, split_file, val_cities, split_seed, epochs, lr, weight_decay, focal_gamma,
          fmreg_weight, global_size, patch_size, batch_size, sub_batch, workers, old_workers, bands, input_range, no_augment,
          color_jitter, crop_jitter, blur_jitter, mosaic, balance, loss_balance, lovasz, cut_consistency, ema, gsd, holdout_share, holdout_scenes, scale,
          accelerator, devices, num_nodes, strategy, precision, seed, limit_train_batches, limit_val_batches) -> None:
    """Train GLNet on a dataset, in the paper's stages.

    Stage 1 trains the global branch on downsampled scenes; stage 2 the local branch with
    G->L sharing (global frozen); stage 3 the L->G global branch (local frozen). Each stage
    starts from the previous one's best checkpoint. OUT/stageN/best.pt and OUT/model.pt
    are glgeo checkpoints for `glgeo segment`; logs are CSV in OUT/stageN/logs, and
    TensorBoard too where the tensorboard package is installed (pip install tensorboard).

    Training data is a published dataset (--dataset, --root) or your own georeferenced
    imagery with labels (--images, --labels), read through torchgeo: warped to one CRS and
    resolution, polygons rasterized on the fly, scenes drawn at random for training and on a
    grid over a held-out area (--val-images, --val-bbox or --val-fraction) for validation.

    \b
    Example:
      glgeo train --dataset inria --root data/inria --out runs/inria --val-cities tyrol-w
      glgeo train --dataset deepglobe --root data/deepglobe --out runs/dg --devices 4 --strategy ddp
      glgeo train --images 'tiles/*.tif' --labels footprints.gpkg --val-images tile_9.tif --out runs/b
    """
    from glgeo.training import DataSettings, TrainSettings
    from glgeo.training import train as run_train

    if old_workers is not None:
        raise click.UsageError(
            "train's data loaders are set with --loader-workers N (--workers is segment's Dask worker count)"
        )
    given = {name: value for name, value in (("backbone", backbone), ("pyramid_channels", pyramid_channels),
                                             ("segmentation_channels", segmentation_channels))
             if ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE}
    if init and (given or global_size is None or patch_size is None):
        from glgeo.errors import CheckpointError
        from glgeo.models import load_checkpoint
        from glgeo.models.checkpoint import resolve_checkpoint

        try:
            resolve_checkpoint(init)
        except CheckpointError as exc:  # as the library says it: which option names nothing
            raise click.ClickException(f"--init {init}: {exc}") from None
        start = load_checkpoint(init)
        config = start.model.config  # the init model's own architecture is trained on: other values cannot apply
        differ = [f"--{n.replace('_', '-')} {v} (it has {getattr(config, n)})" for n, v in given.items()
                  if getattr(config, n) != v]
        if differ:
            raise click.UsageError(
                f"--init continues the model in {init} with its own architecture, so {', '.join(differ)} cannot"
                " apply; drop them, or start a fresh model from its backbones with --backbone-weights instead"
            )
        # it goes on seeing the images it learned from: its global and patch sizes, unless given
        global_size = start.global_size if global_size is None else global_size
        patch_size = start.patch_size if patch_size is None else patch_size
        del start
    global_size = 508 if global_size is None else global_size
    patch_size = 508 if patch_size is None else patch_size

    try:
        band_list = tuple(int(b) for b in bands.split(",")) if bands is not None else None
        low, high = (float(v) for v in input_range.split(","))
    except ValueError:
        raise click.BadParameter("--bidx takes three integers and --input-range two numbers, comma-separated") from None
    if band_list is not None and len(band_list) != 3:
        raise click.BadParameter(f"give three bands (red, green, blue), got {bands!r}", param_hint="-b/--bidx")
    geo = None
    if images or labels is not None:
        if kind is not None or root is not None:
            raise click.UsageError("give either --dataset/--root or --images/--labels, not both")
        if not images or labels is None:
            raise click.UsageError("--images and --labels go together")
        from glgeo.geodata import GeoInputs
        from glgeo.schemes import INRIA

        geo = GeoInputs(
            images=tuple(images), labels=labels, scheme=_scheme(scheme) or INRIA, label_field=label_field,
            layer=layer, crs=crs, res=res, scene_size=scene_size, scenes_per_epoch=scenes_per_epoch,
            val_images=tuple(val_images), val_bbox=_bbox(val_bbox), val_fraction=val_fraction,
        )
        kind = "geo"
    elif kind is None or root is None:
        raise click.UsageError("give --dataset and --root, or --images and --labels")
    elif val_images or val_bbox or val_fraction is not None or label_field or layer or crs or res is not None:
        raise click.UsageError("--val-images, --val-bbox, --val-fraction, --label-field, --layer, --crs and --res go with --images")
    data = DataSettings(
        kind=kind,
        root=root,
        geo=geo,
        scheme=None if geo is not None else _scheme(scheme),
        split_file=split_file,
        val_cities=tuple(c for c in (val_cities or "").split(",") if c.strip()),
        split_seed=split_seed,
        global_size=global_size,
        patch_size=patch_size,
        batch_size=batch_size,
        sub_batch=sub_batch,
        workers=workers,
        bands=band_list,
        input_range=(low, high),
        augment=not no_augment,
        scale=scale,
        gsd=gsd,
        color_jitter=color_jitter,
        crop_jitter=crop_jitter,
        blur_jitter=blur_jitter,
        mosaic=mosaic,
        balance=balance,
        holdout_share=holdout_share,
        holdout_scenes=tuple(n.strip() for n in (holdout_scenes or "").split(",") if n.strip()),
    )
    settings = TrainSettings(
        out=out,
        backbone=backbone,
        pyramid_channels=pyramid_channels,
        segmentation_channels=segmentation_channels,
        mode=mode,
        stage=stage,
        epochs=_per_stage(int, epochs, "--epochs", mode),
        lr=_per_stage(float, lr, "--lr", mode),
        weight_decay=weight_decay,
        focal_gamma=focal_gamma,
        loss_balance=loss_balance,
        lovasz=lovasz,
        cut_consistency=cut_consistency,
        ema=ema,
        fmreg_weight=fmreg_weight,
        init=init,
        backbone_weights=backbone_weights,
        resume=resume,
        accelerator=accelerator,
        devices=_devices(devices),
        num_nodes=num_nodes,
        strategy=strategy,
        precision=precision,
        seed=seed,
        limit_train_batches=limit_train_batches,
        limit_val_batches=limit_val_batches,
        progress_bar=progress_enabled(ctx),
        metadata={"command": "glgeo " + " ".join(shlex.quote(a) for a in sys.argv[1:])},
    )
    from .main import logs_in_flag_terms

    with logs_in_flag_terms("glgeo", "train"):
        result = run_train(data, settings)
    if _is_worker():
        return
    if kind == "geo":
        split = result.split
        click.echo(f"trained on {len(split.train)} area(s) of {', '.join(sorted({t.split(':')[0] for t in split.train}))} "
                   f"({split.crs}, {split.res[0]:g}{_unit(split.crs)} per pixel), "
                   + (f"validated on {len(split.val)} scene(s) of {split.rule}" if split.val else "no validation"))
    else:
        held = f", {len(result.split.test)} held out (test part of {out / 'split.json'})" if result.split.test else ""
        click.echo(f"trained {len(result.split.train)} scenes, validated on {len(result.split.val)}{held}")
    for s in result.stages:
        miou = "-" if s.best_miou is None else f"{100 * s.best_miou:.2f}"
        loss = "-" if s.first_loss is None else f"{s.first_loss:.4f} -> {s.last_loss:.4f}"
        click.echo(f"stage {s.stage}: {s.epochs} epoch{'s' if s.epochs != 1 else ''} in {s.seconds:.0f} s, loss (epoch mean) {loss}, best val mIoU {miou}:"
                   f" {s.best}")
    click.echo(f"model: {result.model}")


def _bbox(text: str | None) -> tuple[float, float, float, float] | None:
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 4:
        raise click.BadParameter(f"expected XMIN,YMIN,XMAX,YMAX, got {text!r}", param_hint="--val-bbox")
    return values  # type: ignore[return-value]


def _is_worker() -> bool:
    import os

    return os.environ.get("LOCAL_RANK", "0") != "0" or os.environ.get("NODE_RANK", "0") != "0"


def _unit(crs: Any) -> str:
    """`` m``, `` ft``, `` degrees``... of a CRS's axes (empty when it cannot say)."""
    try:
        import rasterio
        from rasterio.crs import CRS

        with rasterio.Env():  # GDAL's own error line goes to the log, not the terminal
            parsed = CRS.from_user_input(crs)
        if parsed.is_geographic:
            return " degrees"
        unit = (parsed.linear_units or "").lower()
    except Exception:  # noqa: BLE001 - a CRS rasterio cannot read: no unit said
        return ""
    return {"metre": " m", "meter": " m", "foot": " ft", "us survey foot": " US ft"}.get(unit, "")
