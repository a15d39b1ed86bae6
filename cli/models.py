"""``glgeo models``: list the shipped model zoo."""

from __future__ import annotations

import click


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _figures(metrics: dict, baseline: dict | None, own: dict | None = None) -> str:
    """A report's headline figures in percent, with the mIoU of a constant answer: the
    training masks' majority class and, where it differs, the scenes' own most common one."""
    parts = []
    if metrics.get("building_iou") is not None:
        parts.append(f"building IoU {_pct(metrics['building_iou'])}")
    parts.append(f"mIoU {_pct(metrics.get('miou'))}")
    parts.append(f"pixel accuracy {_pct(metrics.get('pixel_accuracy'))}")
    text = ", ".join(parts)
    if baseline:
        text += f" (majority class {baseline['class']} everywhere: mIoU {_pct(baseline.get('miou'))}"
        if own and own["class"] != baseline["class"]:
            text += f"; these scenes' most common, {own['class']}: {_pct(own.get('miou'))}"
        text += ")"
    return text


def _reading(gsd: float | None, scale: float) -> str:
    """How glgeo segment reads scenes for a model: at its training resolution where the
    scene is georeferenced, else at its training scale."""
    if gsd:
        at = f", trained at {gsd:g} m per pixel (georeferenced scenes are read at that resolution"
        return at + (f", plain images at {scale:g} of their size)" if scale != 1 else ")")
    at = ", training resolution not recorded"
    return at + (f" (scenes read at {scale:g} of their resolution)" if scale != 1 else " (scenes read as they are)")


def _describe_file(path: str) -> None:
    """What a checkpoint file (glgeo train's, import-glnet's) says about itself."""
    from glgeo.models import load_checkpoint

    ck = load_checkpoint(path)
    cfg = ck.model.config
    training = ck.metadata.get("training") if isinstance(ck.metadata.get("training"), dict) else {}
    click.echo(path)
    source = ck.metadata.get("source") or ck.metadata.get("command") or "a glgeo checkpoint"
    click.echo(f"  {source}")
    click.echo(f"  backbone {cfg.backbone}, heads {cfg.pyramid_channels}/{cfg.segmentation_channels}, mode {ck.mode}, "
               f"patch {ck.patch_size}, global {ck.global_size}, footprint {ck.footprint or '-'} px{_reading(ck.gsd, ck.scene_scale)}")
    click.echo(f"  classes ({ck.scheme.name}): {', '.join(ck.scheme.names)}")
    val = ck.metadata.get("val")
    if isinstance(val, dict) and val.get("miou") is not None:
        click.echo(f"  its run's validation (checkpoint choice, not a held-out score): mIoU {_pct(val['miou'])}")
    if training.get("stage"):
        what = "area(s) of imagery" if training.get("dataset") == "geo" else "scenes"  # imagery: scenes drawn from areas
        click.echo(f"  trained to stage {training['stage']} on {training.get('train_scenes', '?')} {what}")


@click.command("models")
@click.argument("names", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Print the full model cards as JSON.")
def models(names: tuple[str, ...], as_json: bool) -> None:
    """List the models shipped with glgeo and their key facts (NAMES: only these, zoo names
    or checkpoint files).

    Scores are those of each card's reports: scenes that neither training nor checkpoint
    choice saw. The whole card: models/zoo/NAME.md, or --json.
    """
    import json

    from glgeo.models.zoo import ZOO_DIR, list_models, model_card

    from pathlib import Path

    available = list_models()
    files = [n for n in names if n not in available and Path(n).is_file()]
    unknown = [n for n in names if n not in available and n not in files]
    if unknown:
        raise click.ClickException(
            f"no zoo model or checkpoint file named {', '.join(unknown)}; the zoo has {', '.join(available) or 'none'}"
        )
    if files:
        if as_json:
            raise click.UsageError("--json prints zoo cards; a checkpoint file has none")
        for path in files:
            _describe_file(path)
        names = tuple(n for n in names if n not in files)
        if not names:
            return
    shown = list(names) or available
    if as_json:
        click.echo(json.dumps({n: model_card(n) for n in shown}, indent=2))
        return
    if not shown:
        click.echo("No zoo models installed.")
        return
    for name in shown:
        card = model_card(name)
        classes = ", ".join(c["name"] for c in card.get("classes", []))
        click.echo(f"{name}")
        click.echo(f"  {card.get('summary', '')}")
        at = _reading(card.get("gsd_m"), card.get("scene_scale", 1))
        click.echo(f"  backbone {card.get('backbone')}, mode {card.get('mode')}, patch {card.get('patch_size')}, global {card.get('global_size')}{at}")
        click.echo(f"  classes: {classes}")
        reports = card.get("reports") or []
        for report in reports:
            figures = _figures(report["metrics"], report.get("majority_baseline"), report.get("scenes_majority_baseline"))
            click.echo(f"  {report['label']}: {figures}")
        if not reports and card.get("metrics"):
            click.echo(f"  validation: {_figures(card['metrics'], card.get('majority_baseline'))}")
        click.echo(f"  file: {card.get('file_size_mb', '?')} MiB; card: {ZOO_DIR / (name + '.md')}")
