"""Batch glue for ``glgeo segment``: many scenes, one task each, locally or on a Dask cluster.

``glgeo segment`` takes one scene and ``-o``; with several scenes, globs, ``@list.txt``,
``--input-list``, ``--out-dir``, ``--scheduler`` or ``--workers N`` it hands over to
:func:`run_batch_from_cli`, which calls :func:`glgeo.batch.run_batch` and reports. The batch
options are added by one decorator, :func:`batch_options`, that packs them into a
:class:`BatchArgs` passed as the ``batch`` keyword argument::

    @click.command()
    @click.argument("scenes", nargs=-1)
    @batch_options
    ...
    def segment(ctx, scenes, ..., batch: BatchArgs):
        if batch.wanted(scenes):
            return run_batch_from_cli(ctx, batch, scenes, ...)
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import click

from .options import plural, progress_bar, where_it_ran

_GLOB_CHARS = re.compile(r"[*?\[]")


@dataclass(frozen=True)
class BatchArgs:
    """The batch options of ``glgeo segment``, as parsed by click.

    Attributes:
        out_dir: folder for ``<stem>.tif`` (and ``<stem>-polygons.gpkg``) per scene.
        input_lists: text files of scene paths/URLs, one per line.
        scheduler: address of an existing Dask scheduler.
        workers: local worker processes when no scheduler is given (1: in this process).
        retries: retries of a scene after an unexpected error or a dead worker.
        manifest: the manifest to write (default ``<out_dir>/manifest.json``).
        vectors: one GeoPackage per scene.
        vector_merge: one GeoPackage of all scenes' polygons, written at the end.
        torch_threads: CPU threads per scene.
        block_windows: one scene split over the workers: ``(rows, cols)`` context windows
            per block (``cols`` ``None``: full-width strips).
    """

    out_dir: str | None = None
    input_lists: tuple[str, ...] = ()
    scheduler: str | None = None
    workers: int = 1
    retries: int = 2
    manifest: str | None = None
    vectors: bool = False
    vector_merge: str | None = None
    torch_threads: int | None = None
    block_windows: tuple[int, int | None] | None = None

    def splits(self, scenes: Sequence[str], out: str | None) -> bool:
        """Whether the command line asks for one scene (``-o``) split over Dask workers."""
        return bool(
            len(scenes) == 1
            and out is not None
            and (self.scheduler or self.workers > 1)
            and not (self.out_dir or self.input_lists or self.vectors or self.vector_merge)
            and not scenes[0].startswith("@")
            and not (_GLOB_CHARS.search(scenes[0]) and "://" not in scenes[0] and not Path(scenes[0]).exists())
        )

    def wanted(self, scenes: Sequence[str]) -> bool:
        """Whether the command line asks for a batch rather than one scene with ``-o``."""
        return bool(
            len(scenes) != 1
            or self.out_dir
            or self.input_lists
            or self.scheduler
            or self.workers > 1
            or self.vectors
            or self.vector_merge
            or self.manifest
            or scenes[0].startswith("@")
            or (_GLOB_CHARS.search(scenes[0]) and "://" not in scenes[0] and not Path(scenes[0]).exists())
        )


_OPTIONS: list[Callable[[Callable], Callable]] = [
    click.option(
        "--out-dir",
        type=click.Path(file_okay=False),
        default=None,
        help="Several scenes: write <scene name>.tif for each here (created if missing).",
    ),
    click.option(
        "--input-list",
        "input_lists",
        multiple=True,
        type=click.Path(dir_okay=False),
        help="A text file of scene paths or URLs, one per line (same as @FILE). Repeatable.",
    ),
    click.option(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="Run the scenes on an existing Dask cluster (e.g. tcp://head:8786). Uses Dask (installed with glgeo).",
    ),
    click.option(
        "--workers",
        type=click.IntRange(min=1),
        default=1,
        show_default=True,
        help="Without --scheduler: worker processes of a local Dask cluster (1: scenes run one after the other in this process).",
    ),
    click.option(
        "--retries",
        type=click.IntRange(min=0),
        default=2,
        show_default=True,
        help="Retry a scene this often after an unexpected error or a dead worker.",
    ),
    click.option(
        "--manifest",
        type=click.Path(dir_okay=False),
        default=None,
        help="Run manifest, .json or .csv: one row per scene. Default: <out-dir>/manifest.json.",
    ),
    click.option("--vectors", is_flag=True, help="Several scenes: also write one GeoPackage per scene in --out-dir."),
    click.option(
        "--vector-merge",
        type=click.Path(dir_okay=False),
        default=None,
        help="Several scenes: also merge all scenes' polygons into this GeoPackage at the end (implies --vectors).",
    ),
    click.option(
        "--torch-threads",
        type=click.IntRange(min=1),
        default=None,
        help="CPU threads per scene. Default: cores / workers on a local cluster, torch's default on a remote one.",
    ),
]

def _parse_block_windows(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, int | None] | None:
    if value is None:
        return None
    match = re.fullmatch(r"(\d+)(?:x(\d+))?", value.strip().lower())
    if not match or int(match.group(1)) < 1 or (match.group(2) is not None and int(match.group(2)) < 1):
        raise click.BadParameter(f"{value!r}: give window rows per block (e.g. 4: full-width strips) or ROWSxCOLS (e.g. 4x4)")
    return int(match.group(1)), int(match.group(2)) if match.group(2) else None


_OPTIONS.append(
    click.option(
        "--block-windows",
        callback=_parse_block_windows,
        default=None,
        metavar="ROWS[xCOLS]",
        help="One scene with -o and --workers/--scheduler: split it into blocks of this many context windows, "
        "one task each (ROWS: full-width strips).  [default: 4]",
    )
)

_NAMES = (
    "out_dir", "input_lists", "scheduler", "workers", "retries", "manifest", "vectors", "vector_merge", "torch_threads",
    "block_windows",
)  # fmt: skip


def batch_options(command: Callable) -> Callable:
    """Add the batch options to a click command and pass them as ``batch=BatchArgs(...)``."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        values = {name: kwargs.pop(name) for name in _NAMES}
        values["input_lists"] = tuple(values["input_lists"] or ())
        return command(*args, batch=BatchArgs(**values), **kwargs)

    for option in reversed(_OPTIONS):
        wrapper = option(wrapper)
    return wrapper


def run_batch_from_cli(
    ctx: click.Context,
    batch: BatchArgs,
    scenes: Sequence[str],
    *,
    model: str,
    settings: Any,
    bands: tuple[int, ...] | None = None,
    scheme: str | None = None,
    output_options: Any = None,
    overwrite: bool = False,
    as_json: bool = False,
    out: str | None = None,
    probabilities: str | None = None,
    vector: str | None = None,
) -> None:
    """Run a batch for ``glgeo segment`` and report it; exit 1 if any scene failed.

    Args:
        ctx: the command's context (for -q and the progress bar).
        batch: the batch options.
        scenes: the SCENES arguments (paths, globs, URLs, ``@list.txt``).
        model: zoo name or checkpoint path.
        settings: the :class:`glgeo.inference.InferenceSettings` built from the options.
        bands, scheme, output_options, overwrite, as_json: as for one scene.
        out, probabilities, vector: single-scene options; an error in a batch, with a hint.
    """

    from glgeo.batch import BatchOptions, run_batch
    from glgeo.writer import OutputOptions

    if out is not None:
        if len(scenes) == 1 and not batch.out_dir and not batch.input_lists and not scenes[0].startswith("@"):
            given = [f for f, on in (("--manifest", batch.manifest), ("--vectors", batch.vectors),
                                     ("--vector-merge", batch.vector_merge)) if on]
            if given:  # one scene with -o: these belong to batches (and --manifest to a split over workers)
                raise click.UsageError(
                    f"{', '.join(given)} belong{'s' if len(given) == 1 else ''} to a batch (--out-dir DIR)"
                    + (" or to one scene split over Dask workers (-o OUT --workers N)" if given == ["--manifest"] else "")
                    + ("; for one scene with -o, write its polygons with --vector FILE.gpkg" if given != ["--manifest"] else "")
                )
        raise click.UsageError("with several scenes, write them with --out-dir DIR instead of -o/--out")
    if probabilities is not None:
        raise click.UsageError("--probabilities names one file: it works for one scene with -o, not for a batch")
    if vector is not None:
        raise click.UsageError(
            "--vector names one file: in a batch use --vectors (one GeoPackage per scene) or --vector-merge FILE.gpkg"
        )
    if not batch.out_dir:
        raise click.UsageError("give --out-dir DIR: each scene is written there as <scene name>.tif")
    if not scenes and not batch.input_lists:
        raise click.UsageError("name the scenes: files, globs, URLs, @list.txt or --input-list FILE")
    manifest = Path(batch.manifest) if batch.manifest else Path(batch.out_dir) / "manifest.json"
    from .main import cli_message

    options = BatchOptions(
        settings=settings,
        bands=bands,
        scheme=scheme,
        output_options=output_options or OutputOptions(),
        vector=batch.vectors,
        vector_merge=Path(batch.vector_merge) if batch.vector_merge else None,
        overwrite=overwrite,
        retries=batch.retries,
        manifest=manifest,
        torch_threads=batch.torch_threads,
        manifest_wording=functools.partial(cli_message, command="segment"),  # --overwrite, not overwrite=True
    )
    from .main import logs_in_flag_terms

    with (
        progress_bar(ctx, unit="scene", desc="segment") as progress,
        logs_in_flag_terms("glgeo", "segment"),
        repeats_collapsed(manifest),
    ):
        result = run_batch(
            [*scenes, *(f"@{f}" for f in batch.input_lists)],
            batch.out_dir,
            model=model,
            options=options,
            scheduler=batch.scheduler,
            workers=batch.workers,
            progress=progress,
        )

    quiet = (ctx.find_root().obj or {}).get("quiet", False)
    counts = result.counts
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
    elif not quiet:
        where = where_it_ran(result.workers)
        rate = f" ({result.scenes_per_minute:.1f} scenes/min)" if counts["done"] else ""
        click.echo(
            f"{plural(len(result.scenes), 'scene')} {where}: {counts['done']} done, {counts['skipped']} skipped "
            f"(outputs already there), {counts['failed']} failed in {result.seconds:.1f} s{rate}"
        )
        click.echo(f"manifest: {result.manifest}")
        warned = sum(1 for r in result.scenes if r.warnings)
        if warned and result.manifest is not None:
            click.echo(f"warnings about {plural(warned, 'scene')}: each scene's row of {result.manifest} lists them")
        if result.vector_merge is not None:
            click.echo(f"polygons: {result.vector_merge}")
    if not result.ok:
        from .main import cli_message

        for line in result.failure_summary():  # the library's words, with the command's flags
            click.echo(f"failed: {cli_message(line, 'segment')}", err=True)
        raise click.ClickException(
            f"{counts['failed']} of {len(result.scenes)} scenes failed (see {result.manifest}); "
            "fix the cause and run the same command again: finished scenes are skipped"
        )


#: How many warnings of one kind a batch prints before it says the rest are in the manifest.
REPEATS_SHOWN = 3


class _RepeatsCollapsed(logging.Filter):
    """Lets through the first :data:`REPEATS_SHOWN` warnings of each kind (the same message
    but for the scene's name, paths and numbers), the next with a note that the rest are
    not printed, then none: a batch of 800 plain images printed "has no georeferencing"
    800 times. Each scene's warnings are in its manifest row."""

    def __init__(self, manifest: Path) -> None:
        super().__init__()
        self.manifest = manifest
        self.seen: dict[tuple[str, str], int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.WARNING or not record.name.startswith("glgeo"):
            return True
        decided = getattr(record, "glgeo_shown", None)  # each handler asks: count a record once
        if decided is not None:
            return decided
        record.glgeo_shown = shown = self._shown(record)
        return shown

    def _shown(self, record: logging.LogRecord) -> bool:
        key = (record.name, _kind(record))
        self.seen[key] = count = self.seen.get(key, 0) + 1
        if count <= REPEATS_SHOWN:
            return True
        if count == REPEATS_SHOWN + 1:
            record.msg = (f"{record.getMessage()} (further warnings like this one are not printed: each scene's row of "
                          f"{self.manifest} lists its warnings)")
            record.args = ()
            return True
        return False


_VARYING = re.compile(r"'[^']*'|\"[^\"]*\"|\S*[/\\]\S*|\S+\.[A-Za-z][A-Za-z0-9]{1,4}\b|\d+(?:\.\d+)?")


def _kind(record: logging.LogRecord) -> str:
    """A warning's kind: its template where it has one, else its text with quoted names,
    paths, file names and numbers blanked."""
    if record.args and isinstance(record.msg, str):
        return record.msg
    return _VARYING.sub("_", record.getMessage())


def repeats_collapsed(manifest: Path) -> contextlib.AbstractContextManager:
    """While the block runs, the terminal's handlers print at most :data:`REPEATS_SHOWN`
    warnings of each kind from glgeo (then one line saying where the rest are)."""
    from .main import on_the_handlers

    return on_the_handlers(_RepeatsCollapsed(manifest))
