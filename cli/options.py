"""Options shared by several commands (like rasterio's ``rio/options.py``)."""

from __future__ import annotations

import contextlib
import logging
import shlex
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import click

from glgeo.progress import ProgressCallback

overwrite_opt = click.option(
    "--overwrite", is_flag=True, help="Replace outputs that already exist."
)

device_opt = click.option(
    "--device",
    default="auto",
    show_default=True,
    help="auto, cpu, cuda or cuda:N.",
)

model_opt = click.option(
    "--model",
    "model",
    default="deepglobe-landcover",
    show_default=True,
    help="A zoo model name (see `glgeo models`) or a checkpoint file.",
)


def _creation_options(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, str]:
    options: dict[str, str] = {}
    for value in values:
        key, sep, text = value.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{value!r}: give KEY=VALUE, e.g. --co COMPRESS=ZSTD")
        options[key.strip().upper()] = text.strip()
    return options


format_opt = click.option(
    "-f",
    "--format",
    "driver",
    default=None,
    metavar="DRIVER",
    help="Output format (GDAL driver): COG, GTiff, PNG or HFA. Default: from the extension (.tif: COG, .png, .img).",
)

creation_options_opt = click.option(
    "--co",
    "--profile",
    "creation_options",
    multiple=True,
    callback=_creation_options,
    metavar="NAME=VALUE",
    help="GDAL creation option of the output, over glgeo's defaults (repeatable), e.g. --co COMPRESS=ZSTD.",
)


def plural(n: int, noun: str, nouns: str | None = None) -> str:
    """``1 polygon``, ``2 polygons``, ``1 patch``, ``3 patches`` (thousands separated)."""
    if nouns is None:
        nouns = noun + ("es" if noun.endswith(("s", "sh", "ch", "x", "z")) else "s")
    return f"{n:,} {noun if n == 1 else nouns}"


def where_it_ran(workers: str) -> str:
    """``in this process``, ``on a local cluster of N workers`` or ``on the Dask cluster at
    ADDRESS``, from a batch's or a split's ``workers``."""
    if workers == "in-process":
        return "in this process"
    if workers.startswith("local cluster"):
        return f"on a {workers}"
    return f"on the Dask cluster at {workers}"


def echo_segment_summary(summary: Any, what: str, vector: str | None = None, name: str | None = None) -> None:
    """What ``glgeo segment`` prints for one scene: ``OUT: W x H px, <what>, model, mode,
    precision on device[, read at ...], seconds (MP/s)``, one line per class
    (:func:`glgeo.areas.format_class_areas`), the nodata pixels if any, and the GeoPackage
    written, if any. ``name``: what the first line calls the output where it is not kept."""
    from glgeo.areas import format_class_areas
    from glgeo.resolution import describe_scale, is_full_resolution

    stats = summary.stats
    click.echo(
        f"{name or summary.output}: {summary.width} x {summary.height} px, {what}, model {summary.model_name},"
        f" mode {stats.mode}, {stats.precision} on {stats.device}"
        + ("" if is_full_resolution(summary.scale) else f", read at {describe_scale(summary.scale)} of its resolution")
        + f", {summary.seconds:.1f} s ({summary.megapixels_per_second:.2f} MP/s)"
    )
    for line in format_class_areas(summary.classes, summary.area_unit):
        click.echo(line)
    if summary.nodata_pixels:
        share = 100 * summary.nodata_pixels / (summary.width * summary.height)
        click.echo(f"  nodata: {summary.nodata_pixels:,} px ({share:.2f} % of the scene), no class")
    if vector is not None:
        click.echo(f"polygons: {vector}")


def check_vector_output(vector: str, *, overwrite: bool, scene: str, out: str, aoi: str | None) -> None:
    """``--vector``'s GeoPackage checked before the scene is computed: a ``.gpkg`` that
    replaces none of the run's inputs or outputs (the scene, the class raster, the area of
    interest), not even with ``--overwrite``."""
    from glgeo.aoi import aoi_files
    from glgeo.vectorization import check_gpkg_output

    check_gpkg_output(vector, overwrite=overwrite, inputs=(scene, out, *aoi_files(aoi)))


def vectorize_output(out: str, vector: str, *, overwrite: bool) -> str:
    """Vectorize the class raster just written (``--vector``) and return the GeoPackage's path.

    The raster is complete and stays: a failure or an interruption here says so, and how to
    make the GeoPackage from it, instead of claiming that nothing was left behind.
    """
    from glgeo.errors import GlgeoError
    from glgeo.vectorization import vectorize

    from .main import Interrupted, cli_message

    remedy = f"glgeo vectorize {shlex.quote(out)} -o {shlex.quote(vector)}" + (" --overwrite" if overwrite else "")
    try:
        result = vectorize(out, vector, overwrite=overwrite)
    except GlgeoError as exc:
        raise click.ClickException(
            f"{out} is complete, but {vector} was not written: {cli_message(str(exc), 'vectorize')}; then {remedy}"
            " makes it"
        ) from None
    except KeyboardInterrupt as exc:
        raise Interrupted(
            f"Interrupted while vectorizing: {out} is complete; {vector} was not written ({remedy} makes it).", exc
        ) from None
    return str(getattr(result, "path", vector))


def labels_options(f: Callable) -> Callable:
    """``--images``, ``--labels``, ``--label-field``, ``--layer``: imagery and labels read
    through torchgeo (``glgeo train``, ``glgeo evaluate``)."""
    options = [
        click.option("--images", "images", multiple=True, metavar="FILE|GLOB",
                     help="Georeferenced image files or quoted glob patterns (repeat), any CRS; with --labels."),
        click.option("--labels", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
                     help="Labels of --images: polygons (GeoPackage, shapefile, GeoJSON; any CRS) or a label raster."),
        click.option("--label-field", default=None,
                     help="Vector field holding each polygon's class (a class name or id of --scheme). "
                          "Default: every polygon is class 1 of a two-class scheme (inria: building)."),
        click.option("--layer", default=None, help="Vector layer of --labels (default: the first)."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def progress_enabled(ctx: click.Context) -> bool:
    """Whether the command should draw progress bars (on stderr; not with -q)."""
    obj = ctx.find_root().obj or {}
    return not obj.get("quiet", False)


@contextlib.contextmanager
def _logs_above_bars(drawing: bool) -> Iterator[None]:
    """While bars are drawn, log records on the terminal print above them (through
    ``tqdm.write``) instead of into the bar's line; handlers writing elsewhere are kept."""
    from tqdm.contrib.logging import logging_redirect_tqdm

    root = logging.getLogger()
    if drawing and any(isinstance(h, logging.StreamHandler) and h.stream in (sys.stderr, sys.stdout) for h in root.handlers):
        with logging_redirect_tqdm():
            yield
    else:
        yield


@contextlib.contextmanager
def progress_bar(ctx: click.Context, unit: str, desc: str) -> Iterator[ProgressCallback]:
    """A ``progress(done, total)`` callback drawing a tqdm bar (with its rate) on stderr.

    The bar appears at the first call, so errors raised before any work print no empty
    bar; with ``-q`` nothing is drawn.
    """
    from tqdm import tqdm

    bars: list[tqdm] = []

    def update(done: int, total: int) -> None:
        if not bars:
            bars.append(tqdm(total=total, unit=unit, desc=desc, disable=not progress_enabled(ctx), leave=False))
        bars[0].update(done - bars[0].n)

    try:
        with _logs_above_bars(progress_enabled(ctx)):
            yield update
    finally:
        for bar in bars:
            bar.close()
