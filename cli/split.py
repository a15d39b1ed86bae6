"""Split glue for ``glgeo segment``: one scene (``-o``) over Dask workers, block by block.

``glgeo segment SCENE -o OUT --workers N`` (or ``--scheduler ADDRESS``) hands over to
:func:`run_split_from_cli`, which calls :func:`glgeo.batch.run_split` and reports.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path
from typing import Any

import click

from .batch import BatchArgs
from .options import check_vector_output, echo_segment_summary, plural, progress_bar, vectorize_output, where_it_ran


def run_split_from_cli(
    ctx: click.Context,
    batch: BatchArgs,
    scene: str,
    out: str,
    *,
    model: str,
    settings: Any,
    bands: tuple[int, ...] | None = None,
    scheme: str | None = None,
    output_options: Any = None,
    overwrite: bool = False,
    as_json: bool = False,
    probabilities: str | None = None,
    vector: str | None = None,
    aoi: str | None = None,
    bounds: tuple[float, float, float, float] | None = None,
    tta: bool = False,
    mosaic: Any = None,
) -> None:
    """Segment one scene split into blocks on a Dask cluster and report it as ``glgeo
    segment SCENE -o OUT`` does (plus the blocks). ``mosaic``: the scene is ``--mosaic``'s
    VRT of tiles (a :class:`cli.mosaic.MosaicRun`), whose tiles' maps are cut after it."""
    from glgeo.batch import BatchOptions, require_distributed, run_split
    from glgeo.batch.split import blocks_folder, blocks_kept
    from glgeo.errors import Interruption
    from glgeo.split import DEFAULT_BLOCK_ROWS
    from glgeo.writer import OutputOptions

    from .main import Interrupted, logs_in_flag_terms

    hidden = mosaic is not None and mosaic.hidden  # the mosaic's map only for its tiles' maps: replaced
    if vector is not None:
        check_vector_output(vector, overwrite=overwrite, scene=scene, out=out, aoi=aoi)
    if batch.scheduler or batch.workers > 1:
        # Imported before the run: importing distributed sets its loggers to INFO, which would
        # undo run_split's "Dask's INFO lines only with -v" if it happened inside the run.
        require_distributed()
    rows, cols = batch.block_windows or (DEFAULT_BLOCK_ROWS, None)
    from .main import cli_message

    options = BatchOptions(
        settings=settings,
        bands=bands,
        scheme=scheme,
        output_options=output_options or OutputOptions(),
        overwrite=overwrite,
        retries=batch.retries,
        manifest=Path(batch.manifest) if batch.manifest else None,
        torch_threads=batch.torch_threads,
        manifest_wording=functools.partial(cli_message, command="segment"),  # --overwrite, not overwrite=True
    )
    try:
        with progress_bar(ctx, unit="block", desc="segment") as progress, logs_in_flag_terms("glgeo", "segment"):
            result = run_split(
                scene, out, model=model, options=dataclasses.replace(options, overwrite=True) if hidden else options, probabilities=probabilities, aoi=aoi, bounds=bounds, tta=tta,
                rows_per_block=rows, cols_per_block=cols, scheduler=batch.scheduler, workers=batch.workers,
                progress=progress,
            )  # fmt: skip
    except Interruption:
        raise  # the library says what is finished (and wrote the manifest)
    except KeyboardInterrupt as exc:  # before the blocks ran
        folder = blocks_folder(Path(out))
        if not folder.is_dir():
            raise
        finished, kept = blocks_kept(folder)
        again = "run the same command again to resume" if finished else "run the same command again"
        raise Interrupted(f"Interrupted: {out} was not written; {kept}: {again} (or delete that folder)", exc) from None
    summary = result.summary
    report = summary.to_dict()
    report["blocks"] = [b.to_dict() for b in result.blocks]
    report["workers"] = result.workers
    if result.manifest is not None:
        report["manifest"] = str(result.manifest)
    if vector is not None:
        try:
            report["vector"] = vectorize_output(out, vector, overwrite=overwrite)
        except click.ClickException as exc:  # the raster is complete: the manifest says so, and why no GeoPackage
            result.record_vector(None, error=exc.format_message())
            raise
        except KeyboardInterrupt as exc:
            result.record_vector(None, error=str(exc))
            raise
        result.record_vector(report["vector"])  # the library wrote the row before the GeoPackage was made
    if mosaic is not None:
        mosaic.finish(ctx, report, output_options=options.output_options, overwrite=overwrite)

    quiet = (ctx.find_root().obj or {}).get("quiet", False)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    if quiet:
        return
    stats, counts, plan = summary.stats, result.counts, result.plan
    windows = plan.windows[0] * plan.windows[1]
    what = (
        f"{plural(windows, 'context window')} in {plural(len(plan.blocks), 'block')}"
        f" {where_it_ran(result.workers)}"
        f" ({counts['done']} computed, {counts['skipped']} kept from an earlier run; {plan.windows_computed} window computations"
        f" for {windows} windows: each block computes the windows it touches), {plural(stats.computed, 'patch')} computed"
    )
    echo_segment_summary(summary, what, report.get("vector"), name=hidden and report["scene"])
    if mosaic is not None:
        mosaic.echo(report)
    if result.manifest is not None:
        click.echo(f"manifest: {result.manifest}")
