"""``glgeo models``: list the shipped model zoo."""

from __future__ import annotations

import click


@click.command("models")
@click.option("--json", "as_json", is_flag=True, help="Print the full model cards as JSON.")
def models(as_json: bool) -> None:
    """List the models shipped with glgeo and their key facts."""
    import json

    from glgeo.models.zoo import list_models, model_card

    names = list_models()
    if as_json:
        click.echo(json.dumps({n: model_card(n) for n in names}, indent=2))
        return
    if not names:
        click.echo("No zoo models installed.")
        return
    for name in names:
        card = model_card(name)
        classes = ", ".join(c["name"] for c in card.get("classes", []))
        metrics = card.get("metrics", {})
        metric = ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items() if k in ("miou", "building_iou", "pixel_accuracy"))
        click.echo(f"{name}")
        click.echo(f"  {card.get('summary', '')}")
        scale, gsd = card.get("scene_scale", 1), card.get("gsd_m")
        at = f", trained at {gsd:g} m per pixel" if gsd else ""
        at += f" (scenes read at {scale:g} of their resolution)" if scale != 1 else ""
        click.echo(f"  backbone {card.get('backbone')}, mode {card.get('mode')}, patch {card.get('patch_size')}, global {card.get('global_size')}{at}")
        click.echo(f"  classes: {classes}")
        if metric:
            click.echo(f"  validation: {metric}")
        click.echo(f"  file: {card.get('file_size_mb', '?')} MB")
