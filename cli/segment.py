"""``glgeo segment``: stream a scene through GLNet into a georeferenced class raster."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import click

from glgeo.modes import MODES

from .batch import BatchArgs, batch_options
from .options import (
    check_vector_output, creation_options_opt, device_opt, echo_segment_summary, format_opt, model_opt, overwrite_opt,
    plural, progress_bar, vectorize_output,
)

log = logging.getLogger(__name__)


def parse_bands(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, ...] | None:
    """The ``--bands R,G,B`` option's callback (``segment`` and ``evaluate``): band numbers
    from 1, or ``None`` for the scene's own RGB bands."""
    if value is None:
        return None
    try:
        bands = tuple(int(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of band numbers, e.g. 1,2,3") from None
    if any(b < 1 for b in bands):
        raise click.BadParameter("band numbers start at 1")
    return bands


def _parse_footprint(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    if value is None:
        return None
    if value == "scene":
        return 0
    try:
        footprint = int(value)
    except ValueError:
        raise click.BadParameter(f"{value!r}: give a size in px (e.g. 612) or 'scene'") from None
    if footprint < 8:
        raise click.BadParameter(f"{value!r}: the footprint must be at least 8 px")
    return footprint


def _parse_stretch(ctx: click.Context, param: click.Parameter, value: str) -> object:
    if value in ("auto", "none"):
        return value
    try:
        low, high = (float(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r}: use auto, none or LOW,HIGH (e.g. 0,3000)") from None
    if not high > low:
        raise click.BadParameter(f"{value!r}: HIGH must be larger than LOW")
    return (low, high)


@click.command(short_help="Segment scenes into class rasters (COG, styled for QGIS), one or many (Dask).")
@click.argument("scenes", nargs=-1)
@click.option("-o", "--out", type=click.Path(dir_okay=False), help="Class raster to write (.tif), for one scene.")
@batch_options
@model_opt
@click.option("-b", "--bidx", "--bands", "bands", callback=parse_bands, metavar="R,G,B",
              help="1-based bands fed as RGB, e.g. 4,3,2 (rio's --bidx). Default: the bands the model was trained "
                   "on, where it records others than 1,2,3; else the bands the file labels red, green and blue; else "
                   "the non-alpha bands.")
@click.option(
    "--mode",
    type=click.Choice(MODES),
    default=None,
    help="GLNet mode. Default: the model's own.",
)
@click.option("--tta", is_flag=True,
              help="Test-time augmentation: average the 8 flips/rotations of the scene (modes global and g2l; 8x the cost).")
@click.option("--coarse-to-fine", is_flag=True, help="Binary models: run the local branch only inside the global branch's relaxed foreground box.")
@click.option("--patch-size", type=click.IntRange(min=8), default=None, help="Local patch side in px. Default: the model's.")
@click.option("--overlap", type=click.IntRange(min=0), default=50, show_default=True, help="Minimum overlap between patches in px.")
@click.option("--global-size", type=click.IntRange(min=8), default=None,
              help="Global image side in px (of a full context window). Default: the model's, times 1.2 with "
                   "--global-view fixed.")
@click.option("--global-view", type=click.Choice(["fixed", "squeeze"]), default="fixed", show_default=True,
              help="fixed: every context window's global image at one ground resolution (a window smaller than "
                   "the footprint gets a smaller image); squeeze: each window stretched to a square of "
                   "--global-size, as the released code.")
@click.option("--global-margin", type=click.IntRange(min=0), default=None, metavar="PX",
              help="With --global-view fixed (global and g2l modes): extend each global image by PX px of its "
                   "mirror image on every side before the global branch, and cut it off the features; a "
                   "multiple of 32.  [default: about a tenth of the global image, 32 px for the zoo models]")
@click.option("--context-crop", type=click.Choice(["exact", "cells"]), default="exact", show_default=True,
              help="How a patch's G->L context is cut from its window's global features: exact (at the "
                   "patch's exact place) or cells (at whole feature cells, as the released code).")
@click.option("--grid-anchor", type=click.Choice(["world", "scene"]), default=None,
              help="world: patch grids and global images start on a lattice fixed to the scene's map coordinates, "
                   "so a cut of a raster (or a tile of it) sees the ground on the raster's own lattice, and its map "
                   "differs from the raster's only where its context windows see other ground (97.5 % of a "
                   "DeepGlobe image's pixels keep their class under a cut, docs/segment.md); scene: at each context window's first pixel, as the released code.  [default: world "
                   "with --global-view fixed (a model with a context footprint, not --footprint scene) in global "
                   "and g2l modes without --coarse-to-fine, for patches of 64 px or more stepping 32 px or more; "
                   "else scene. A window less than a patch and 32 px across gets the scene's grid either way]")
@click.option("--gsd", type=click.FloatRange(min=0, min_open=True), default=None, metavar="METRES",
              help="Metres per pixel of a scene whose file does not say (a plain JPEG or PNG), for the reading "
                   "scale and the global view's resolution. Ignored where the file is georeferenced.")
@click.option("--footprint", callback=_parse_footprint, default=None, metavar="PX|scene",
              help="Context window side in px of the working grid: larger scenes are cut into overlapping windows, "
                   "each with its own global view. 'scene': one window, the whole scene squeezed into one global "
                   "image (the released code). Default: the size of the model's training images.")
@click.option("--window-overlap", type=click.IntRange(min=0), default=None,
              help="Minimum overlap between context windows in px; two windows blend over about twice it (or twice "
                   "the default), leaving the rest of a wider overlap to the window whose centre it is nearer "
                   "(with the taper blend, in g2l, global and local modes, without coarse-to-fine).  "
                   "[default: an eighth of the footprint]")
@click.option("--edge-margin", type=click.IntRange(min=0), default=0, show_default=True, metavar="PX",
              help="How far patch grids reach beyond the scene's edge, in px of the working grid, over the scene "
                   "mirrored there, so edge pixels are not on a patch's zero-padded edge (g2l and local modes, "
                   "tapered blend). 0: no mirrored margin (a grid on the map's lattice still reaches 0-31 px past the "
                   "edge; with --grid-anchor scene the scene's edge is a patch's).")
@click.option("--blend", type=click.Choice(["taper", "sum"]), default="taper", show_default=True,
              help="taper: weights falling towards patch and window edges, normalised (no seams); "
                   "sum: the released code's plain sum of logits.")
@click.option("--logit-upsampling", type=click.Choice(["bilinear", "nearest"]), default="bilinear", show_default=True,
              help="How patch logits (1/4 resolution) reach the patch's pixels, and the working grid's scores the "
                   "scene's pixels where the scene is read coarser; nearest: the released code.")
@click.option("--nodata-fill", type=click.Choice(["mirror", "mean", "zero"]), default="mirror", show_default=True,
              help="What the model sees where the scene has no data: its valid pixels mirrored across the nodata "
                   "edge, each band's mean over the valid pixels of its view, or 0 (black, as the released code; "
                   "a model reads it as dark ground).")
@click.option("--global-resampling", type=click.Choice(["gdal", "pil"]), default="gdal", show_default=True,
              help="How the global image is made from the scene's pixels: GDAL's antialiased bilinear read, or "
                   "PIL's bilinear resize of the 8-bit image, bit for bit (the released code's; 8-bit scenes only). "
                   "They differ by up to one grey level (beside no data more: PIL's resize sees it as black).")
@click.option("--released", is_flag=True,
              help="Reproduce the released GLNet computation exactly: --blend sum --logit-upsampling nearest "
                   "--precision fp32 --footprint scene --global-view squeeze --global-margin 0 --context-crop cells "
                   "--grid-anchor scene --edge-margin 0 --nodata-fill zero --global-resampling pil; any of these "
                   "given otherwise is refused (docs/segment.md).")
@click.option("--scale", type=click.FloatRange(min=0, max=1, min_open=True), default=None,
              help="Run the model on the scene read at this fraction of its resolution, on both axes (output "
                   "still on the scene's grid). Default: the model's resolution, from the scene's ground "
                   "resolution (each axis at its own scale where the pixels are not square on the ground, as in "
                   "degrees; 1 for imagery already that coarse); for plain images the scale the model was "
                   "trained at (train --scale).")
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="Patches per network call  [default: 2 on a CPU, by free memory on a GPU]")
@device_opt
@click.option(
    "--precision",
    type=click.Choice(["auto", "fp32", "bf16", "fp16"]),
    default="auto",
    show_default=True,
    help="auto: bf16 (or fp16) on CUDA, bf16 on CPUs with native bf16 (AVX-512 BF16, AMX), else fp32.",
)
@click.option("--compile", "compile_", is_flag=True,
              help="torch.compile the local branch: slightly faster per patch after a compile of up to a minute; for very large scenes.")
@click.option("--stretch", default="auto", show_default=True, callback=_parse_stretch, help="16-bit/float scenes: auto (1-99 percentile per band), none, or LOW,HIGH.")
@click.option("--probabilities", type=click.Path(dir_okay=False), default=None, help="Also write per-class scores (uint8, softmax x 255) here.")
@click.option("--vector", type=click.Path(dir_okay=False), default=None, help="Also vectorize the classes into this GeoPackage.")
@click.option("--aoi", type=click.Path(dir_okay=False), default=None,
              help="Segment only inside these polygons (any vector file, any CRS; 'FILE|layername=NAME' for one "
                   "layer of a file of several); other pixels are nodata.")
@click.option("--bounds", nargs=4, type=float, default=None, metavar="LEFT BOTTOM RIGHT TOP",
              help="Segment only inside this box, in the scene's CRS (with --aoi: inside both).")
@click.option("--scheme", default=None, help="Fail unless the model predicts this class scheme (deepglobe, inria...).")
@click.option("--no-cog", is_flag=True, help="Keep a plain tiled GeoTIFF (no COG overviews).")
@format_opt
@creation_options_opt
@click.option("--mosaic", is_flag=True,
              help="Segment the SCENES (tiles of one area on one pixel grid) as one scene: no seams where they meet, "
                   "as there are between maps made tile by tile. Into one map, -o OUT, and/or each tile's map cut "
                   "from it, on the tile's grid, into --out-dir DIR (--vectors: their polygons).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@overwrite_opt
@click.pass_context
def segment(
    ctx: click.Context,
    scenes: tuple[str, ...],
    out: str | None,
    model: str,
    bands: tuple[int, ...] | None,
    mode: str | None,
    tta: bool,
    coarse_to_fine: bool,
    patch_size: int | None,
    overlap: int,
    global_size: int | None,
    global_view: str,
    global_margin: int | None,
    context_crop: str,
    grid_anchor: str | None,
    gsd: float | None,
    footprint: int | None,
    window_overlap: int | None,
    edge_margin: int,
    blend: str,
    logit_upsampling: str,
    nodata_fill: str,
    global_resampling: str,
    released: bool,
    scale: float | None,
    batch_size: int | None,
    device: str,
    precision: str,
    compile_: bool,
    stretch: object,
    probabilities: str | None,
    vector: str | None,
    aoi: str | None,
    bounds: tuple[float, float, float, float] | None,
    scheme: str | None,
    no_cog: bool,
    driver: str | None,
    creation_options: dict[str, str],
    mosaic: bool,
    as_json: bool,
    overwrite: bool,
    batch: BatchArgs,
) -> None:
    """Segment SCENES (any raster GDAL opens) with GLNet into class rasters.

    The output has the scene's size, CRS and transform, class ids packed in the fewest
    bits that hold them plus nodata (DeepGlobe: 3 bits, nodata 7; --co NBITS=8: bytes,
    nodata 255), the class colours embedded and a .qml style QGIS loads by default. Example:

        glgeo segment scene.tif -o landcover.tif --model deepglobe-landcover

    One scene with -o and --workers N (or --scheduler ADDRESS) is split into blocks of
    context windows, one task each, and assembled into the same raster (--block-windows):

    \b
        glgeo segment county.tif -o county-landcover.tif --workers 8

    Several scenes (paths, globs, URLs, @list.txt) go to --out-dir, one task per scene,
    in this process, on a local Dask cluster (--workers N) or an existing one
    (--scheduler ADDRESS); finished scenes are skipped, a manifest lists them all:

    \b
        glgeo segment 'tiles/*.tif' --out-dir landcover --workers 4 --vector-merge city.gpkg

    Tiles of one area segmented one by one disagree where they meet; --mosaic segments
    them as one scene into one map:

    \b
        glgeo segment 'tiles/*.tif' --mosaic -o area-landcover.tif
        glgeo segment 'tiles/*.tif' --mosaic --out-dir landcover   # a map per tile, cut from it
    """

    from glgeo.atomic import check_output_path
    from glgeo.inference import InferenceSettings
    from glgeo.segmentation import segment as run_segment
    from glgeo.writer import OutputOptions

    if released:
        from glgeo.inference import RELEASED_SETTINGS as o

        from .main import refuse_released_conflicts

        refuse_released_conflicts()
        blend, logit_upsampling, precision = o["blend"], o["logit_upsampling"], o["precision"]
        footprint, nodata_fill, edge_margin = o["footprint"], o["nodata_fill"], o["edge_margin"]
        global_view, global_margin, context_crop, grid_anchor = (
            o["global_view"], o["global_margin"], o["context_crop"], o["grid_anchor"])
        global_resampling = o["global_resampling"]
    settings = InferenceSettings(
        global_view=global_view,  # type: ignore[arg-type]
        global_margin=global_margin,
        context_crop=context_crop,  # type: ignore[arg-type]
        grid_anchor=grid_anchor,  # type: ignore[arg-type]
        gsd=gsd,
        nodata_fill=nodata_fill,  # type: ignore[arg-type]
        global_resampling=global_resampling,  # type: ignore[arg-type]
        footprint=footprint,
        window_overlap=window_overlap,
        edge_margin=edge_margin,
        blend=blend,  # type: ignore[arg-type]
        logit_upsampling=logit_upsampling,  # type: ignore[arg-type]
        patch_size=patch_size,
        min_overlap=overlap,
        global_size=global_size,
        scale=scale,
        batch_size=batch_size,
        device=device,
        precision=precision,  # type: ignore[arg-type]
        mode=mode,  # type: ignore[arg-type]
        coarse_to_fine=coarse_to_fine,
        stretch=stretch,  # type: ignore[arg-type]
        compile=compile_,
    )
    output_options = OutputOptions(cog=not no_cog, format=driver, creation_options=creation_options)
    if not scenes and not batch.input_lists:
        raise click.UsageError(
            "name the scenes to segment: SCENE -o OUT.tif for one; files, globs, URLs, @list.txt or "
            "--input-list FILE with --out-dir DIR for several"
        )
    tiles = None
    if mosaic:
        from .mosaic import tiles_as_one_scene

        tiles, batch = tiles_as_one_scene(ctx, scenes, out, overwrite, batch, vector=vector, probabilities=probabilities,
                                          output_options=output_options)
        scenes, out = (tiles.scene,), tiles.out
    if batch.vector_merge:  # written at the end, replacing an earlier merge: its folder is checked now
        merge_folder = Path(batch.vector_merge).absolute().parent
        made_here = batch.out_dir is not None and merge_folder == Path(batch.out_dir).absolute()  # created if missing
        if not (made_here and not merge_folder.exists()):
            check_output_path(batch.vector_merge, overwrite=True, inputs=scenes)
    if batch.splits(scenes, out):
        from .split import run_split_from_cli

        run_split_from_cli(
            ctx, batch, scenes[0], out, model=model, settings=settings, bands=bands, scheme=scheme,
            output_options=output_options, overwrite=overwrite, as_json=as_json, probabilities=probabilities,
            vector=vector, aoi=aoi, bounds=bounds or None, tta=tta, mosaic=tiles,
        )
        return
    if batch.block_windows is not None:
        raise click.UsageError("--block-windows splits one scene: give one scene, -o OUT and --workers N or --scheduler")
    if batch.wanted(scenes):
        if tta:
            raise click.UsageError("--tta segments one scene per command for now; run glgeo segment SCENE -o OUT --tta per scene")
        from .batch import run_batch_from_cli

        if aoi is not None or bounds:
            raise click.UsageError("--aoi and --bounds work with one scene and -o; cut a batch's scene list instead")

        run_batch_from_cli(
            ctx, batch, scenes, model=model, settings=settings, bands=bands, scheme=scheme, output_options=output_options,
            overwrite=overwrite, as_json=as_json, out=out, probabilities=probabilities, vector=vector,
        )
        return
    if out is None:
        raise click.UsageError("give the class raster to write with -o/--out (or --out-dir for several scenes)")
    scene = scenes[0]
    if vector is not None:
        check_vector_output(vector, overwrite=overwrite, scene=scene, out=out, aoi=aoi)
    from .main import logs_in_flag_terms

    with progress_bar(ctx, unit="patch", desc="segment") as progress, logs_in_flag_terms("glgeo", "segment"):
        summary = run_segment(
            scene,
            out,
            model=model,
            bands=bands,
            settings=settings,
            probabilities=probabilities,
            scheme=scheme,
            overwrite=overwrite or (tiles is not None and tiles.hidden),
            output_options=output_options,
            progress=progress,
            aoi=aoi,
            bounds=bounds or None,
            tta=tta,
        )

    result = summary.to_dict()
    if vector is not None:
        result["vector"] = vectorize_output(out, vector, overwrite=overwrite)
    if tiles is not None:
        tiles.finish(ctx, result, output_options=output_options, overwrite=overwrite)

    quiet = (ctx.find_root().obj or {}).get("quiet", False)
    if as_json:
        click.echo(json.dumps(result, indent=2))
    elif not quiet:
        stats = summary.stats
        what = (f"{plural(stats.windows, 'context window')}, " if stats.windows > 1 else "") + (
            f"{plural(stats.computed, 'patch')} computed ({stats.skipped_nodata + stats.skipped_c2f} skipped)"
        )
        echo_segment_summary(summary, what, result.get("vector"), name=tiles and tiles.hidden and result["scene"])
        if tiles is not None:
            tiles.echo(result)
