"""``glgeo vectorize``: class raster -> styled GeoPackage polygons."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from glgeo.cli.options import overwrite_opt, progress_enabled


class _BlockProgress:
    """A progress bar over blocks, drawn from the first block on (not before checks pass)."""

    def __init__(self) -> None:
        self._bar = None

    def __call__(self, done: int, total: int) -> None:
        if self._bar is None:
            self._bar = click.progressbar(length=total, label="Vectorizing", file=sys.stderr)
            self._bar.__enter__()
        self._bar.update(done - self._bar.pos)

    def __enter__(self) -> "_BlockProgress":
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc_info)


def _class_list(values: tuple[str, ...]) -> list[str] | None:
    names = [item.strip() for value in values for item in value.split(",") if item.strip()]
    return names or None


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
    help="Merge regions smaller than this (m² in projected CRSs) into their neighbours first.",
)
@click.option(
    "--simplify",
    type=float,
    default=None,
    metavar="TOL",
    help="Simplify borders by TOL (CRS units); neighbours keep sharing them.",
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
@click.option("--layer", default=None, help="Layer name. Default: the raster's file name.")
@click.option(
    "--block-size",
    type=click.IntRange(min=1),
    default=2048,
    show_default=True,
    help="Pixels per side of the blocks polygonized at once (memory grows with its square).",
)
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
    overwrite: bool,
) -> None:
    """Polygonize the class raster RASTER into a GeoPackage that opens styled in QGIS.

    One polygon per connected region of one class, in the raster's CRS, with attributes
    class_id, class_name and area_m2; nodata is never vectorized and holes are kept.

    \b
    Example:
      glgeo vectorize landcover.tif --out landcover.gpkg --min-area 100 --simplify 1
    """
    from glgeo.vectorize import vectorize as run_vectorize

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
    if progress_enabled(ctx):
        with _BlockProgress() as progress:
            result = run_vectorize(raster, out, progress=progress, **kwargs)
    else:
        result = run_vectorize(raster, out, **kwargs)

    per_class = ", ".join(f"{name} {count}" for name, count in result.polygons_per_class.items()) or "none"
    click.echo(
        f"Wrote {result.n_polygons} polygons ({per_class}) to {result.path} layer {result.layer!r}"
        f" [{result.crs or 'no CRS'}]"
    )
