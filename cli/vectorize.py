"""``glgeo vectorize``: class raster -> styled GeoPackage polygons."""

from __future__ import annotations

import math
from pathlib import Path

import click

from glgeo.cli.main import logs_in_flag_terms
from glgeo.cli.options import overwrite_opt, plural, progress_bar


def _class_list(values: tuple[str, ...]) -> list[str] | None:
    names = [item.strip() for value in values for item in value.split(",") if item.strip()]
    return names or None


def _positive(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """Refuse a zero, negative or infinite ``--min-area`` / ``--simplify`` with one line naming the option."""
    if value is not None and (not math.isfinite(value) or value <= 0):
        raise click.ClickException(f"{param.opts[0]} must be a positive number, got {value:g}")
    return value


@click.command(short_help="Polygonize a class raster into a styled GeoPackage.")
@click.argument("raster", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--out",
    "-o",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="GeoPackage to write (.gpkg).",
)
@click.option(
    "--scheme",
    default=None,
    help="Class scheme (deepglobe, inria...). Default: the one the raster carries.",
)
@click.option(
    "--min-area",
    type=float,
    default=None,
    callback=_positive,
    help="Merge regions smaller than this (m² on the ground; map units without a CRS) into their neighbours first.",
)
@click.option(
    "--simplify",
    type=float,
    default=None,
    callback=_positive,
    metavar="TOL",
    help="Simplify borders by TOL (metres on the ground; map units without a CRS); neighbours keep sharing them.",
)
@click.option(
    "--classes",
    multiple=True,
    metavar="NAMES",
    help="Only these classes, comma separated or repeated (e.g. --classes building).",
)
@click.option(
    "--nodata",
    type=int,
    default=None,
    help="The value marking pixels without data. Default: the raster's own nodata value (none: every pixel is a class).",
)
@click.option("--layer", default=None, help="Layer name. Default: the raster's file name without its extension (landcover.tif: landcover).")
@click.option(
    "--block-size",
    type=click.IntRange(min=1),
    default=2048,
    show_default=True,
    help="Pixels per side of the blocks polygonized at once (memory grows with its square).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON (as segment --json).")
@overwrite_opt
@click.pass_context
def vectorize(
    ctx: click.Context,
    raster: Path,
    out: Path,
    scheme: str | None,
    min_area: float | None,
    simplify: float | None,
    classes: tuple[str, ...],
    nodata: int | None,
    layer: str | None,
    block_size: int,
    as_json: bool,
    overwrite: bool,
) -> None:
    """Polygonize the class raster RASTER into a GeoPackage that opens styled in QGIS.

    One polygon per connected region of one class, in the raster's CRS, with attributes
    class_id, class_name and area_m2; nodata is never vectorized and holes are kept.

    \b
    Example:
      glgeo vectorize landcover.tif --out landcover-polygons.gpkg --min-area 100 --simplify 1
    """
    from glgeo.vectorization import vectorize as run_vectorize

    kwargs = dict(
        scheme=scheme,
        min_area=min_area,
        simplify=simplify,
        classes=_class_list(classes),
        layer=layer,
        nodata=nodata,
        overwrite=overwrite,
        block_size=block_size,
    )
    with progress_bar(ctx, unit="block", desc="vectorize") as progress, logs_in_flag_terms("glgeo", "vectorize"):
        result = run_vectorize(raster, out, progress=progress, **kwargs)

    from glgeo.areas import format_area

    if as_json:
        import json

        click.echo(json.dumps(result.to_dict(), indent=2))
        return
    quiet = (ctx.find_root().obj or {}).get("quiet", False)
    if quiet:
        return
    click.echo(
        f"{result.path}: {plural(result.n_polygons, 'polygon')} in layer {result.layer} ({result.crs or 'no CRS'})"
    )
    if result.polygons_per_class:
        width = max(len(name) for name in result.polygons_per_class)
        counts = {name: plural(n, "polygon") for name, n in result.polygons_per_class.items()}
        count_width = max(len(text) for text in counts.values())
        for name, text in counts.items():
            area = format_area(result.area_per_class.get(name, 0.0), result.area_units)
            click.echo(f"  {name:<{width}}  {text:>{count_width}}  {area}")
    if result.merged_regions:
        lost = result.classes_without_polygons
        click.echo(
            f"--min-area merged {plural(result.merged_regions, 'region')} ({result.merged_pixels:,} px) into"
            " neighbouring regions"
            + (f"; no polygon left for {', '.join(lost)} (see the warning)" if lost else "")
        )
