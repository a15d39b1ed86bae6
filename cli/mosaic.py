"""``glgeo segment TILES --mosaic``: tiles of one area segmented as one scene.

:func:`tiles_as_one_scene` writes the tiles' VRT (:func:`glgeo.mosaic.write_tiles_vrt`)
beside the output and says what the segment command runs on; :meth:`MosaicRun.finish`
then cuts the map into one map per tile (``--out-dir``) and reports the mosaic.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import shlex
from pathlib import Path
from typing import Any

import click

from .batch import BatchArgs
from .options import plural, progress_bar

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class MosaicRun:
    """A ``--mosaic`` command: its tiles and what it writes.

    Attributes:
        tiles: the tiles, in the VRT's order.
        layout: where they lie in the mosaic.
        note: the line that describes the mosaic (size, coverage, overlaps).
        scene: the VRT that is segmented.
        out: the mosaic's class raster: ``-o``, or a hidden file in ``--out-dir`` that is
            removed when the command ends (``hidden``).
        hidden: whether ``out`` is that hidden file.
        tile_maps: each tile's map (``--out-dir``: ``DIR/<tile name>.tif``), or none.
        tile_vectors: each tile's GeoPackage (``--vectors``), or none.
    """

    tiles: list[str]
    layout: Any
    note: str
    scene: str
    out: str
    hidden: bool = False
    tile_maps: tuple[Path, ...] = ()
    tile_vectors: tuple[Path, ...] = ()

    def finish(self, ctx: click.Context, report: dict[str, Any], *, output_options: Any, overwrite: bool) -> None:
        """After the mosaic's map is written: cut it into the tiles' maps (``--out-dir``),
        vectorize them (``--vectors``), and put the mosaic into ``report`` (the summary)."""
        report["scene"], report["tiles"] = f"mosaic of {len(self.tiles)} tiles", self.tiles
        if self.hidden:
            report["output"] = None
        if not self.tile_maps:
            return
        from glgeo.mosaic import cut_tile_maps

        from .main import Interrupted

        maps: list = []
        try:
            with progress_bar(ctx, unit="band", desc="tile maps") as progress:
                cut_tile_maps(self.out, self.tiles, self.tile_maps, layout=self.layout, options=output_options,
                              overwrite=overwrite, progress=progress, on_tile=maps.append)
        except KeyboardInterrupt as exc:
            raise Interrupted(
                f"Interrupted while cutting the mosaic's map into the tiles' maps: {len(maps)} of "
                f"{len(self.tile_maps)} are written (this run); run the same command with --overwrite to make them "
                "all", exc
            ) from None
        empty = [os.path.basename(m.tile) for m in maps if not any(c.pixels for c in m.classes)]
        if empty:  # outside --aoi / --bounds, or a tile without data
            log.warning("%s: no class on any pixel of %s (all nodata: outside --aoi/--bounds, or no data in the tile)",
                        plural(len(empty), "tile map"), ", ".join(empty[:5]) + (", ..." if len(empty) > 5 else ""))
        rows = [m.to_dict() for m in maps]
        for k, (row, vector) in enumerate(zip(rows, self.tile_vectors)):
            try:
                row["vector"] = _vectorize_tile(row["output"], str(vector), overwrite=overwrite)
            except KeyboardInterrupt as exc:
                raise Interrupted(
                    f"Interrupted while vectorizing the tiles' maps: the {len(rows)} tile maps are complete, the "
                    f"polygons of {k} of them are written; glgeo vectorize MAP.tif -o MAP-polygons.gpkg makes each of "
                    "the others (or run the same command with --overwrite)", exc
                ) from None
        report["tile_maps"] = rows

    def echo(self, report: dict[str, Any]) -> None:
        """The lines ``glgeo segment`` prints after the mosaic's summary."""
        click.echo(f"  {self.note}")
        rows = report.get("tile_maps") or []
        if rows:
            folder = os.path.dirname(rows[0]["output"]) or "."
            vectors = " and polygons (-polygons.gpkg)" if rows[0].get("vector") else ""
            names = ", ".join(os.path.basename(r["output"]) for r in rows[:3]) + (", ..." if len(rows) > 3 else "")
            click.echo(f"{plural(len(rows), 'tile map')}{vectors} cut from the mosaic's map, each on its tile's grid, "
                       f"in {folder}: {names}")


def _vectorize_tile(raster: str, vector: str, *, overwrite: bool) -> str:
    from glgeo.errors import GlgeoError
    from glgeo.vectorization import vectorize

    from .main import cli_message

    try:
        return str(vectorize(raster, vector, overwrite=overwrite).path)
    except GlgeoError as exc:
        remedy = f"glgeo vectorize {shlex.quote(raster)} -o {shlex.quote(vector)}" + (" --overwrite" if overwrite else "")
        raise click.ClickException(f"{raster} is complete, but {vector} was not written: "
                                   f"{cli_message(str(exc), 'vectorize')}; then {remedy} makes it") from None


def tiles_as_one_scene(
    ctx: click.Context, scenes: tuple[str, ...], out: str | None, overwrite: bool, batch: BatchArgs, *,
    vector: str | None, probabilities: str | None, output_options: Any,
) -> tuple[MosaicRun, BatchArgs]:
    """--mosaic: the tiles named (globs and lists expanded) as one scene, a VRT beside the
    output that is removed when the command ends. Its name and time stamp stay the same from
    run to run, so an interrupted --workers run resumes its blocks. With --out-dir, the
    tiles' own maps are checked here, before the work."""
    from glgeo.atomic import check_output_path
    from glgeo.batch.inputs import expand_inputs
    from glgeo.batch.planning import plan_jobs
    from glgeo.errors import InputError
    from glgeo.batch.inputs import is_remote
    from glgeo.mosaic import gdal_name, write_tiles_vrt
    from glgeo.writer import output_driver, sidecar_paths

    if batch.vector_merge or batch.manifest:
        raise click.UsageError("--mosaic writes one map of the tiles (-o OUT.tif, polygons with --vector FILE.gpkg) "
                               "and each tile's (--out-dir DIR, polygons with --vectors), not --vector-merge or "
                               "--manifest")
    if out is None and not batch.out_dir:
        raise click.UsageError("--mosaic writes one map of the tiles: give -o OUT.tif (and --vector FILE.gpkg for "
                               "its polygons), or --out-dir DIR for each tile's map cut from it (or both)")
    if batch.vectors and not batch.out_dir:
        raise click.UsageError("--vectors writes each tile's polygons beside its map: give --out-dir DIR too, or "
                               "--vector FILE.gpkg for the polygons of the -o map")
    if out is None and (vector or probabilities):
        flag = "--vector" if vector else "--probabilities"
        raise click.UsageError(f"{flag} belongs to the mosaic's own map: give -o OUT.tif too"
                               + (", or --vectors for each tile's polygons" if vector else ""))
    tiles = expand_inputs(scenes, batch.input_lists)
    if out is not None:
        own = Path(out).resolve()
        if any(not is_remote(t) and Path(t).resolve() == own for t in tiles) and _made_by_glgeo(own):
            # a rerun's glob over the tiles' folder matches the map it wrote (a tile named as -o is refused below)
            log.warning("%s is this command's output, not a tile: left out of the mosaic", out)
            tiles = [t for t in tiles if is_remote(t) or Path(t).resolve() != own]
    jobs = []
    if batch.out_dir:
        folder = Path(batch.out_dir)
        try:
            jobs = plan_jobs(tiles, folder, vector=batch.vectors)  # leaves out a rerun's own tile maps
        except InputError as exc:
            raise click.UsageError(str(exc)) from None
        tiles = [job.scene for job in jobs]
        if out is not None and any(Path(out).resolve() == job.output.resolve() for job in jobs):
            raise click.UsageError(f"-o {out} is the name of a tile's map in --out-dir: give the mosaic's map "
                                   "another name or folder")
    if len(tiles) < 2:
        raise click.UsageError("--mosaic segments two or more tiles as one scene; for one scene drop --mosaic")
    made = None  # --out-dir created here, removed again if the command stops before the work
    if batch.out_dir:
        if output_options.format is not None and output_options.format.upper() not in ("COG", "GTIFF"):
            raise click.UsageError(f"--format {output_options.format}: --out-dir writes each tile's map as <tile "
                                   "name>.tif; choose COG or GTiff (or write the -o map alone in that format)")
        output_driver(jobs[0].output, output_options)  # --co checked against the tile maps' driver, before the work
        folder = Path(batch.out_dir)
        if not folder.exists():
            folder.mkdir(parents=True)
            made = folder
    try:
        for job in jobs:
            for target in job.outputs:
                check_output_path(target, overwrite=overwrite, inputs=tuple(tiles))
        hidden = out is None
        if hidden:  # the same name for the same tiles, so that an interrupted --workers run resumes
            key = hashlib.sha256("\n".join(map(gdal_name, tiles)).encode()).hexdigest()[:12]
            out = str(Path(batch.out_dir) / f".mosaic-{key}.tif")
            ctx.call_on_close(lambda: [p.unlink(missing_ok=True) for p in (Path(out), *sidecar_paths(Path(out)))])
        target = check_output_path(out, overwrite=True, inputs=tuple(tiles))
        vrt = target.absolute().parent / (f".{target.stem}.tiles.vrt" if hidden else f".{target.name}.tiles.vrt")
        ctx.call_on_close(lambda: vrt.unlink(missing_ok=True))
        layout = write_tiles_vrt(tiles, vrt)
    except BaseException:
        if made is not None and not any(made.iterdir()):
            made.rmdir()
        raise
    # the VRT's time stamp: its newest local tile's (remote tiles: a fixed one), the same from run to run
    newest = max((os.stat(t).st_mtime_ns for t in tiles if not is_remote(t)), default=0)
    os.utime(vrt, ns=(newest, newest))
    note = (f"mosaic of {len(tiles)} tiles: {layout.width} x {layout.height} px, {100 * layout.coverage:.1f} % "
            "of it covered by tiles (the rest is nodata)"
            + ("; where tiles overlap, the pixels of the one named later" if layout.overlapping else ""))
    log.info(note)
    if layout.apart:  # said before the work: a glob over two blocks of tiles makes a large, mostly empty map
        log.warning(
            "%d of the %d tiles meet no other tile (e.g. %s): the mosaic gains nothing for them, and is %d x %d px, "
            "%.1f %% of it covered by tiles (the rest is written as nodata); segment tiles of separate areas "
            "apart (Ctrl-C to stop)", len(layout.apart), len(tiles), os.path.basename(tiles[layout.apart[0]]),
            layout.width, layout.height, 100 * layout.coverage,
        )
    run = MosaicRun(
        tiles, layout, note, str(vrt), out, hidden,
        tuple(job.output for job in jobs), tuple(job.vector for job in jobs if job.vector is not None),
    )
    return run, dataclasses.replace(batch, input_lists=(), out_dir=None, vectors=False)


def _made_by_glgeo(path: Path) -> bool:
    """Whether ``path`` is a class raster glgeo wrote (its metadata says which model made it)."""
    import rasterio

    from glgeo.provenance import glgeo_items

    try:
        with rasterio.open(path) as src:
            return bool(glgeo_items(src.tags()))
    except rasterio.errors.RasterioIOError:
        return False
