"""``glgeo import-glnet``: convert the GLNet authors' released checkpoints."""

from __future__ import annotations

import logging

import click

from glgeo.atomic import check_output_path

from .options import overwrite_opt

log = logging.getLogger("glgeo")


@click.command("import-glnet")
@click.option("--global", "global_path", required=True, type=click.Path(dir_okay=False), help="Released global model (.pth, stage 1).")
@click.option("--g2l", "g2l_path", type=click.Path(dir_okay=False),
              help="Released global-to-local model (.pth, stage 2): a G->L model. Not read with --l2g.")
@click.option("--l2g", "l2g_path", type=click.Path(dir_okay=False),
              help="Released local-to-global model (.pth, stage 3): a bidirectional model (it holds the local "
                   "branch too, as the released code evaluates it).")
@click.option("--scheme", default="deepglobe", show_default=True, help="Class scheme of the released files.")
@click.option("--global-size", type=click.IntRange(min=8), default=508, show_default=True,
              help="Global image side the model was trained with.")
@click.option("--patch-size", type=click.IntRange(min=8), default=508, show_default=True,
              help="Patch side the model was trained with.")
@click.option("--focal-gamma", type=click.FloatRange(min=0), default=3.0, show_default=True,
              help="Focal gamma of the released training code.")
@click.option("--footprint", type=click.IntRange(min=8), default=None,
              help="Side in px of the images the model was trained on (its context footprint: larger scenes are "
                   "cut into windows of this size). Default: DeepGlobe's 2448, Inria's 5000, by --scheme.")
@click.option("--gsd", type=click.FloatRange(min=0, min_open=True), default=None, metavar="METRES",
              help="Metres per pixel of the imagery the model was trained on: glgeo segment reads georeferenced "
                   "scenes at it. Default: DeepGlobe's 0.5, Inria's 0.3, by --scheme.")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False), help="glgeo checkpoint to write.")
@overwrite_opt
def import_glnet(global_path, g2l_path, l2g_path, scheme, global_size, patch_size, focal_gamma, footprint, gsd, out,
                 overwrite):
    """Convert released GLNet checkpoints to one glgeo checkpoint.

    With --g2l the model is G->L; with --l2g it is bidirectional (G<->L). The result is
    used with `glgeo segment --model OUT`.
    """
    from glgeo.models.checkpoint import PUBLISHED_IMAGE_SIZE, import_released, save_released
    from glgeo.schemes import get_scheme

    if g2l_path is None and l2g_path is None:
        raise click.UsageError("give --g2l (a G->L model) or --l2g (a bidirectional model) beside --global")
    class_scheme = get_scheme(scheme)
    if footprint is None and class_scheme.name not in PUBLISHED_IMAGE_SIZE:
        raise click.UsageError(f"the released files' image size for scheme {class_scheme.name!r} is not known: pass --footprint")
    inputs = tuple(p for p in (global_path, g2l_path, l2g_path) if p is not None)
    out_path = check_output_path(out, overwrite=overwrite, inputs=inputs)
    if g2l_path is not None and l2g_path is not None:
        log.warning(
            "--g2l %s is not read: a bidirectional model takes its local branch from the --l2g file, as the released"
            " code evaluates it", g2l_path,
        )
    model = import_released(global_path, None if l2g_path else g2l_path, l2g_path, class_scheme)
    sources = {"global": global_path, **({"l2g": l2g_path} if l2g_path else {"g2l": g2l_path})}
    save_released(out_path, model, class_scheme, global_size=global_size, patch_size=patch_size,
                  focal_gamma=focal_gamma, footprint=footprint, gsd=gsd, sources=sources)
    click.echo(f"Wrote {model.config.mode} GLNet ({class_scheme.name}, {class_scheme.n_classes} classes) to {out_path}")
