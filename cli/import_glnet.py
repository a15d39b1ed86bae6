"""``glgeo import-glnet``: convert the GLNet authors' released checkpoints."""

from __future__ import annotations

from pathlib import Path

import click

from glgeo.atomic import check_output_path

from .options import overwrite_opt


@click.command("import-glnet")
@click.option("--global", "global_path", required=True, type=click.Path(dir_okay=False), help="Released global model (.pth, stage 1).")
@click.option("--g2l", "g2l_path", required=True, type=click.Path(dir_okay=False), help="Released global-to-local model (.pth, stage 2).")
@click.option("--l2g", "l2g_path", type=click.Path(dir_okay=False), help="Released local-to-global model (.pth, stage 3): makes the model bidirectional.")
@click.option("--scheme", default="deepglobe", show_default=True, help="Class scheme of the released files.")
@click.option("--global-size", default=508, show_default=True, help="Global image side the model was trained with.")
@click.option("--patch-size", default=508, show_default=True, help="Patch side the model was trained with.")
@click.option("--focal-gamma", default=3.0, show_default=True, help="Focal gamma of the released training code.")
@click.option("--footprint", type=click.IntRange(min=8), default=None,
              help="Side in px of the images the model was trained on (its context footprint: larger scenes are "
                   "cut into windows of this size). Default: DeepGlobe's 2448, Inria's 5000, by --scheme.")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False), help="glgeo checkpoint to write.")
@overwrite_opt
def import_glnet(global_path, g2l_path, l2g_path, scheme, global_size, patch_size, focal_gamma, footprint, out, overwrite):
    """Convert released GLNet checkpoints to one glgeo checkpoint.

    With --l2g the model is bidirectional (G<->L), without it G->L. The result is used
    with `glgeo segment --model OUT`.
    """
    from glgeo.models.checkpoint import PUBLISHED_IMAGE_SIZE, InputScaling, import_released, save_checkpoint
    from glgeo.schemes import get_scheme

    class_scheme = get_scheme(scheme)
    if footprint is None:
        footprint = PUBLISHED_IMAGE_SIZE.get(class_scheme.name)
        if footprint is None:
            raise click.UsageError(f"the released files' image size for scheme {class_scheme.name!r} is not known: pass --footprint")
    out_path = check_output_path(out, overwrite=overwrite)
    model = import_released(global_path, g2l_path, l2g_path, class_scheme)
    sources = {"global": global_path, "g2l": g2l_path, **({"l2g": l2g_path} if l2g_path else {})}
    save_checkpoint(
        out_path,
        model,
        class_scheme,
        InputScaling(0.0, 255.0),
        global_size=global_size,
        patch_size=patch_size,
        focal_gamma=focal_gamma,
        metadata={
            "source": "GLNet authors' released checkpoints (Chen et al., CVPR 2019)",
            "released_files": {k: Path(v).name for k, v in sources.items()},
            "training": {"dataset": class_scheme.name, "scene_scale": 1.0, "footprint_px": footprint},
        },
    )
    click.echo(f"Wrote {model.config.mode} GLNet ({class_scheme.name}, {class_scheme.n_classes} classes) to {out_path}")
