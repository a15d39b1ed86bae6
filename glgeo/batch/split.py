"""One giant scene on many workers: its blocks of context windows as Dask tasks.

:func:`run_split` cuts a scene into blocks (:func:`glgeo.split.plan_split`), runs one task
per block on the same scheduler path as many scenes (:func:`~glgeo.batch.scheduling.open_client`:
an existing cluster, a local one, or this process), and assembles the class raster (and
scores) from the finished blocks into the COG :func:`glgeo.segment` writes, pixel for pixel.

* The blocks go to a hidden folder beside the output, ``.<output name>.blocks/``, each
  written under a temporary name and renamed when complete, with ``plan.json`` saying which
  scene, model, settings and blocks they belong to. The folder is removed once the output is
  complete.
* A worker that dies mid-block (killed, out of memory) loses only that block: the scheduler
  gives it to another worker (``retries``), whose attempt first removes the dead attempt's
  temporary file.
* An interrupted run (Ctrl-C, a lost cluster) keeps its finished blocks: the same command
  again computes only the missing ones (a folder planned for another scene, model or
  settings is emptied first, with a warning).
* Each worker holds one block at a time (the engine's buffers, a band of rows), never the
  scene; the assembly streams the block files band by band into one writer.
* The manifest has the scene's row and one row per block (:class:`BlockResult`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from ..aoi import aoi_files
from ..atomic import atomic_path
from ..device import peak_resident_mb
from ..errors import GlgeoError, InputError, Interruption, OutputError
from ..inference import InferenceStats, Timings
from ..progress import ProgressCallback
from ..resolution import reading_gsd, scale_json
from ..split import DEFAULT_BLOCK_ROWS, Block, SplitPlan, SplitScene, assemble, block_path, block_run, plan_split, prepare_scene
from ..split import remove_block_partials, write_block
from .manifest import BatchResult, BlockResult, SceneResult, Status, write_manifest
from .planning import BatchOptions
from .scheduling import dask_logs_at_glgeo_level, describe_failure, model_reference, open_client, submit_and_collect
from .worker import cached_model, scene_warnings, this_worker, visible_gpus, worker_device

if TYPE_CHECKING:  # pragma: no cover
    from distributed import Client

    from ..segmentation import SegmentSummary
    from ..tiling import PatchGrid

log = logging.getLogger("glgeo.batch")

@dataclass(frozen=True)
class SplitJob:
    """One split scene, as every block task gets it.

    Attributes:
        scene: the scene (a path or URL every worker can read).
        split: the prepared scene and its plan.
        folder: the blocks' folder.
        probabilities: keep per-class scores.
        tta: test-time augmentation.
    """

    scene: str
    split: SplitScene
    folder: Path
    probabilities: bool = False
    tta: bool = False


@dataclass(frozen=True)
class SplitResult:
    """What :func:`run_split` did.

    Attributes:
        summary: the scene's summary, as :func:`glgeo.segment` returns it (its ``stats``
            summed over the blocks: each window and its patches counted once, as in one
            process, though the windows at block edges are computed by each block they reach).
        plan: the blocks.
        blocks: one row per block.
        seconds: wall time of the run (cluster start and assembly included).
        assemble_seconds: of which assembling the output.
        workers: where the blocks ran (``in-process``, ``local cluster of N workers`` or the
            scheduler's address).
        manifest: the manifest written, if any.
        record: what the manifest holds (the scene's row and the blocks'), for
            :meth:`record_vector`.
        wording: how the manifest words messages (:attr:`BatchOptions.manifest_wording`).
    """

    summary: "SegmentSummary"
    plan: SplitPlan
    blocks: tuple[BlockResult, ...]
    seconds: float
    assemble_seconds: float
    workers: str
    manifest: Path | None = None
    record: BatchResult | None = field(default=None, repr=False, compare=False)
    wording: Callable[[str], str] | None = field(default=None, repr=False, compare=False)

    def record_vector(self, vector: str | os.PathLike | None, error: str | None = None) -> None:
        """Rewrite the manifest with the GeoPackage vectorized from the output after the
        split (``glgeo segment --vector``): the scene's row names ``vector``; with ``error``
        (vectorizing failed or was interrupted) the row is ``failed`` with that error, its
        class raster complete and its areas kept, and names no GeoPackage."""
        if self.manifest is None or self.record is None or not self.record.scenes:
            return
        row = self.record.scenes[0]
        if error is None:
            row = replace(row, vector=None if vector is None else os.fspath(vector))
        else:
            row = replace(row, vector=None, status="failed", error=error)
        write_manifest(replace(self.record, scenes=(row,)), self.manifest, self.wording)

    @property
    def counts(self) -> dict[str, int]:
        """Blocks per status (``done``: computed by this run; ``skipped``: kept from an
        interrupted one)."""
        return {s: sum(b.status == s for b in self.blocks) for s in ("done", "skipped", "failed")}


def blocks_folder(out: Path) -> Path:
    """The folder a split keeps its finished blocks in until the output is complete."""
    return out.with_name(f".{out.name}.blocks")


def process_block(job: SplitJob, block: Block, model: str, options: BatchOptions) -> BlockResult:
    """Segment one block into its file; the task every worker runs.

    A block whose file is already there (another attempt finished it) is skipped. Errors
    glgeo raises on purpose become a ``failed`` result; anything else propagates, so that
    the scheduler retries the block.
    """
    started = time.perf_counter()
    address, name = this_worker()

    def result(status: Status, **kwargs: Any) -> BlockResult:
        return BlockResult(block=block.name, box=block.box, windows=block.windows, status=status,
                           seconds=time.perf_counter() - started, worker=address, peak_rss_mb=peak_resident_mb(), **kwargs)

    partials = remove_block_partials(job.folder, block)
    if block_path(job.folder, block).is_file():
        return result("skipped", partials_removed=partials)
    try:
        settings = job.split.settings
        wanted = worker_device(settings.device, name, visible_gpus()) if address != "in-process" else settings.device
        threads = options.torch_threads or settings.torch_threads
        settings = replace(settings, device=wanted, torch_threads=threads)
        stats = write_block(job.split, block, cached_model(model), job.folder, probabilities=job.probabilities,
                            settings=settings, tta=job.tta)
    except GlgeoError as exc:
        return result("failed", error=f"{type(exc).__name__}: {exc}", partials_removed=partials)
    return result("done", device=stats.device, partials_removed=partials, stats=stats)


def _fingerprint(scene: str, reference: str, split: SplitScene, probabilities: bool, tta: bool, bands, aoi, bounds) -> str:
    """What the blocks in a folder depend on: a run that differs starts afresh."""

    def stamp(path: Any) -> Any:
        try:
            st = os.stat(path)
            found = [str(Path(path).resolve()), st.st_size, st.st_mtime_ns]
            if str(path).lower().endswith(".vrt") and st.st_size < 2**24:  # its sources' order, names, stamps
                found.append(hashlib.sha256(Path(path).read_bytes()).hexdigest())
            return found
        except (OSError, TypeError, ValueError):
            return str(path)

    what = {
        "scene": stamp(scene),
        "model": stamp(reference),
        "settings": repr(split.settings),
        "scale": scale_json(split.scale),
        "bands": list(split.info.bands),
        "aoi": stamp(aoi) if isinstance(aoi, (str, os.PathLike)) else repr(aoi),
        "bounds": bounds,
        "probabilities": probabilities,
        "tta": tta,
        "plan": split.plan.to_dict(),
    }
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()


def _prepare_folder(folder: Path, fingerprint: str, plan: SplitPlan) -> int:
    """Create the blocks' folder, or keep it for resuming when it was planned the same way
    (else empty it). Returns the finished blocks kept."""
    marker = folder / "plan.json"
    if folder.is_dir():
        try:
            same = json.loads(marker.read_text(encoding="utf-8")).get("fingerprint") == fingerprint
        except (OSError, ValueError, AttributeError):
            same = False
        if same:
            kept = sum(block_path(folder, b).is_file() for b in plan.blocks)
            if kept:
                log.info("resuming: %d of %d blocks are already finished in %s", kept, len(plan.blocks), folder)
            return kept
        log.warning("%s holds blocks of another scene, model or settings: starting afresh", folder)
        shutil.rmtree(folder)
    try:
        folder.mkdir()
        with atomic_path(marker) as tmp:
            tmp.write_text(json.dumps({"fingerprint": fingerprint, "blocks": len(plan.blocks)}) + "\n", encoding="utf-8")
    except OSError as exc:
        raise OutputError(f"cannot create the blocks folder {str(folder)!r}: {exc}") from None
    return 0


def _run_blocks_in_process(job, blocks, reference, options, add) -> None:
    for block in blocks:
        attempt = 0
        while True:
            try:
                row = process_block(job, block, reference, options)
                break
            except Exception as exc:  # noqa: BLE001 - any unexpected error is retried, then reported
                attempt += 1
                if attempt > options.retries:
                    log.debug("%s", traceback.format_exc())
                    row = BlockResult(block.name, block.box, block.windows, "failed", worker="in-process", error=describe_failure(exc))
                    break
                log.warning("%s: %s; retrying (%d of %d)", block.name, describe_failure(exc), attempt, options.retries)
        add(row)


def _run_blocks_on_client(client: "Client", job, blocks, reference, options, add) -> None:
    token = f"{time.time_ns():x}"
    tasks = [
        (block, f"glgeo-block-{block.name}-{token}", process_block, (job, block, reference, options)) for block in blocks
    ]

    def collect(block: Block, row: Any, error: str | None) -> None:
        add(row if error is None else BlockResult(block.name, block.box, block.windows, "failed", error=error))

    submit_and_collect(client, tasks, options.retries, collect, name=lambda block: f"{block.name} of {job.scene}")


def _warn_of_idle_workers(scene: str, plan: SplitPlan, windows: PatchGrid, workers: int, pending: int) -> None:
    """Say so when a local cluster would have fewer blocks than workers (the scene has few
    context windows for its blocks), and which blocks would spread it, with the work they
    would add (planned over the scene's context ``windows``: windows at block edges are
    computed by each block they touch, and where windows nearly coincide that is most of
    them); a single block left to compute runs in this process (a cluster would only add
    its start-up)."""
    blocks = len(plan.blocks)
    if blocks >= workers:
        return
    rows, cols, count = _spreading_blocks(*plan.windows, workers)
    advice = ""
    if count > blocks:
        shape = f"rows_per_block={rows}" + ("" if cols is None else f", cols_per_block={cols}")
        other = plan_split(windows, plan.scene, rows, cols)
        count = len(other.blocks)
        gain = min(workers, count) / other.overhead  # at best, against one process
        advice = (f"; {shape} makes {count} blocks, which compute {other.windows_computed} windows for the scene's "
                  f"{plan.windows[0] * plan.windows[1]} (windows at block edges are computed by each block they "
                  "touch)" + (": little faster than one process, if at all" if gain <= 1.2 else ""))
    if pending == 1:
        where = "segmenting it in this process" if blocks == 1 else "segmenting the one left in this process"
    else:
        where = f"{workers - blocks} of the workers stay idle"
    log.warning("%s: its %d x %d context windows make %d block%s for %d workers: %s%s",
                scene, *plan.windows, blocks, "s" * (blocks > 1), workers, where, advice)


def _spreading_blocks(window_rows: int, window_cols: int, workers: int) -> tuple[int, int | None, int]:
    """``(rows, cols, blocks)``: the largest blocks that give every worker one where the
    windows allow it: full-width strips (``cols`` ``None``) while there are enough window
    rows, else single window rows cut into columns."""
    if window_rows >= workers:
        rows = window_rows // workers
        return rows, None, -(-window_rows // rows)
    cols = max(1, window_cols // -(-workers // window_rows))
    return 1, cols, window_rows * -(-window_cols // cols)


def _summed_stats(rows: Sequence[BlockResult], plan: SplitPlan) -> InferenceStats:
    stats = [r.stats for r in rows if r.stats is not None]
    first = stats[0] if stats else None
    total = InferenceStats(
        mode=first.mode if first else "", device=first.device if first else "", precision=first.precision if first else "",
        patches=0, batch_size=first.batch_size if first else 0, windows=0, footprint=first.footprint if first else 0,
        blend=first.blend if first else "taper", stretch=first.stretch if first else "",
        context=first.context if first else "",
    )  # fmt: skip
    timings = Timings()
    # the windows at block edges are computed by each block they reach into: each counted once
    # (as one process counts them); the time is all the blocks' work
    windows: dict = {}
    for s in stats:
        if not s.window_counts:  # a scene of one window: counted as a whole
            windows.setdefault((0, 0), (s.patches, s.computed, s.skipped_nodata, s.skipped_c2f, s.skipped_windows))
        for key, counts in s.window_counts.items():
            windows.setdefault(key, counts)
        total.blender_bytes = max(total.blender_bytes, s.blender_bytes)
        for key, value in s.timings.__dict__.items():
            setattr(timings, key, getattr(timings, key) + value)
    for patches, computed, skipped_nodata, skipped_c2f, skipped_windows in windows.values():
        total.patches += patches
        total.computed += computed
        total.skipped_nodata += skipped_nodata
        total.skipped_c2f += skipped_c2f
        total.skipped_windows += skipped_windows
    total.windows = len(windows)
    total.window_counts = windows
    total.timings = timings
    return total


def blocks_kept(folder: Path, plan: SplitPlan | None = None) -> tuple[int, str]:
    """How many blocks an unfinished split leaves for the next run in ``folder``, and that
    in words (``2 of 3 blocks are finished, kept in FOLDER``; without the ``plan``, a
    split stopped before it was made, ``2 finished blocks are kept in FOLDER``)."""
    if plan is not None:
        finished = sum(block_path(folder, b).is_file() for b in plan.blocks)
        kept = f"{finished} of {len(plan.blocks)} blocks are finished, kept in {folder}"
    else:
        finished = len(list(folder.glob("block-*.tif")))
        kept = f"{finished} finished block{'s are' if finished > 1 else ' is'} kept in {folder}"
    return finished, kept if finished else f"no block was finished ({folder} holds only the plan)"


def _failure_reason(failed: Sequence[BlockResult], total: int) -> str:
    """Why blocks failed, in one line: the most frequent message in full with the first
    block that failed with it and how many others did, then how many failed otherwise (each
    block's error is in the manifest)."""
    groups: dict[str, list[BlockResult]] = {}
    for row in failed:
        groups.setdefault(row.error or "unknown error", []).append(row)
    ordered = sorted(groups.items(), key=lambda item: -len(item[1]))  # stable: first seen first among equals
    message, same = ordered[0]
    reason = f"{len(failed)} of {total} blocks failed: {same[0].block}: {message}"
    if len(same) > 1:
        reason += f" (and {len(same) - 1} other block{'s' * (len(same) > 2)} with the same message)"
    if len(ordered) > 1:
        others = sum(len(rows) for _, rows in ordered[1:])
        example = ordered[1][1][0]
        reason += (f"; {others} more with {len(ordered) - 1} other message{'s' * (len(ordered) > 2)}, e.g. "
                   f"{example.block}: {(example.error or '').splitlines()[0] if example.error else 'unknown error'}")
    return reason


def _record_stop(exc: BaseException, scene: str, out: Path, folder: Path, plan: SplitPlan, rows: dict[str, BlockResult],
                 manifest: Any, manifest_path: Path | None) -> Interruption | None:
    """Record in the manifest a split stopped before its output was written (Ctrl-C, a lost
    cluster): the blocks finished, failed and not run. Returns the :class:`Interruption` to
    raise for Ctrl-C (what is kept and how to go on), else ``None`` (the error goes on)."""
    interrupted = isinstance(exc, KeyboardInterrupt)
    blocks = []
    for b in plan.blocks:
        row = rows.get(b.name)
        if row is None:
            if block_path(folder, b).is_file():  # finished, its result never came back
                row = BlockResult(b.name, b.box, b.windows, "done")
            else:
                why = "the split was interrupted" if interrupted else f"the split stopped: {describe_failure(exc)}"
                row = BlockResult(b.name, b.box, b.windows, "failed", error=f"not run ({why})")
        blocks.append(row)
    finished, kept = blocks_kept(folder, plan)
    cause = "interrupted" if interrupted else f"stopped by {describe_failure(exc)}"
    record = ""
    try:
        manifest("failed", blocks, f"{cause}: {out} was not written; {kept}")
        if manifest_path is not None:
            record = f" (each block's row is in {manifest_path})"
    except OutputError as error:
        log.warning("%s", error)
    again = "run the same command again to resume" if finished else "run the same command again"
    if isinstance(exc, Interruption):
        log.warning("%s: %s, %s%s: %s", scene, cause, kept, record, again)
        return None
    if not interrupted:  # the error says what to do; the finished blocks are kept for the run after
        log.warning("%s: %s, %s%s", scene, cause, kept, record)
        return None
    return Interruption(f"Interrupted: {out} was not written; {kept}{record}: {again} (or delete that folder)", exc)


def run_split(
    scene: str | os.PathLike,
    out: str | os.PathLike,
    *,
    model: Any = "deepglobe-landcover",
    options: BatchOptions = BatchOptions(),
    probabilities: str | os.PathLike | None = None,
    aoi: Any = None,
    bounds: tuple[float, float, float, float] | None = None,
    tta: bool = False,
    rows_per_block: int = DEFAULT_BLOCK_ROWS,
    cols_per_block: int | None = None,
    scheduler: "str | Client | None" = None,
    workers: int = 1,
    progress: ProgressCallback | None = None,
) -> SplitResult:
    """Segment one scene split into blocks of context windows, one task per block, into the
    class raster :func:`glgeo.segment` writes (the same pixels).

    Args:
        scene: the scene; with Dask, a path or URL every worker can read.
        out: the class raster (a COG unless ``options.output_options`` say otherwise).
        model: a zoo name or a checkpoint file every worker can read.
        options: settings, bands, scheme, output options, overwrite, retries, manifest and
            torch threads, as for a batch (``vector`` options do not apply: vectorize the
            output).
        probabilities: also write per-class scores here.
        aoi: an area of interest (see :func:`glgeo.segment`).
        bounds: a box in the scene's CRS (see :func:`glgeo.segment`).
        tta: test-time augmentation (see :func:`glgeo.segment`).
        rows_per_block: context-window rows per block.
        cols_per_block: context-window columns per block (``None``: full-width strips).
        scheduler: an existing Dask cluster (address or client).
        workers: without ``scheduler``: 1 runs the blocks in this process, one after the
            other (still resumable); N starts a local cluster of N worker processes.
        progress: ``progress(done, total)`` after each block.

    Returns:
        The summary, the plan and one row per block.

    Raises:
        InputError, SceneError, CheckpointError: as :func:`glgeo.segment`, before any task.
        OutputError: an output exists (without ``options.overwrite``); blocks failed (the
            finished ones are kept: run again to resume; the error gives the most frequent
            message once, with how many blocks failed with it).
        Interruption: Ctrl-C or SIGTERM while the blocks ran or the output was assembled:
            says how many blocks are finished and where (the manifest is written first,
            with each block's row: ``done``, ``skipped``, or ``failed`` with ``not run``).
        MissingDependencyError: Dask is needed but not installed.
    """
    from ..provenance import Provenance, blend_rule, context_rule, options_rule, scene_stamp, utc_now
    from ..segmentation import SegmentSummary, check_outputs, installed_version, model_identity, warn_if_no_class

    started = time.perf_counter()
    with scene_warnings() as warned:  # for the scene's row of the manifest, as a batch keeps them
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise InputError(f"workers must be 1 or more, got {workers!r}")
        scene = os.fspath(scene)
        inputs = (scene, *aoi_files(aoi))
        out_path, scores_path = check_outputs(out, probabilities, inputs, options.overwrite, options.output_options)
        reference = model_reference(model)
        checkpoint = cached_model(reference)
        split = prepare_scene(
            scene, checkpoint, bands=options.bands, settings=options.settings, scheme=options.scheme, aoi=aoi,
            bounds=bounds, rows_per_block=rows_per_block, cols_per_block=cols_per_block,
        )  # fmt: skip
        plan = split.plan
        log.info(
            "%s: %d x %d context windows in %d blocks (%d x %d); windows at block boundaries are computed again: %.2f"
            " computations per window (1: none twice)",
            scene, *plan.windows, len(plan.blocks), plan.block_rows, plan.block_cols, plan.overhead,
        )  # fmt: skip
        folder = blocks_folder(out_path)
        fingerprint = _fingerprint(scene, reference, split, scores_path is not None, tta, options.bands, aoi, bounds)
        _prepare_folder(folder, fingerprint, plan)
        job = SplitJob(scene, split, folder, scores_path is not None, tta)

        rows: dict[str, BlockResult] = {}
        pending = []
        for block in plan.blocks:
            if block_path(folder, block).is_file():
                rows[block.name] = BlockResult(block.name, block.box, block.windows, "skipped")
            else:
                pending.append(block)
        failures: dict[str, int] = {}  # a failed block's message -> blocks that failed with it

        def add(row: BlockResult) -> None:
            rows[row.block] = row
            if row.status == "failed":
                message = row.error or "unknown error"
                failures[message] = failures.get(message, 0) + 1
                if failures[message] == 1:  # the others with the same message are counted at the end
                    log.warning("%s of %s failed: %s", row.block, scene, message)
                else:
                    log.debug("%s of %s failed with the same message as an earlier block", row.block, scene)
            if progress is not None:
                progress(len(rows), len(plan.blocks))

        written: list[BatchResult | None] = [None]  # the manifest's content, as last written

        def manifest(status: Status, blocks: Sequence[BlockResult], error: str | None = None, summary: Any = None) -> None:
            if options.manifest is None:
                return
            row = SceneResult(
                input=scene, output=str(out_path), vector=None, status=status,
                class_areas=summary.class_areas if summary else {}, area_unit=summary.area_unit if summary else "",
                seconds=time.perf_counter() - started, worker=where, device=summary.stats.device if summary else "",
                error=error, warnings=tuple(warned),
            )  # fmt: skip
            written[0] = BatchResult((row,), time.perf_counter() - started, where, options.manifest, blocks=tuple(blocks))
            write_manifest(written[0], options.manifest, options.manifest_wording)

        where = "in-process"
        recorded = False  # the manifest says how the run ended
        try:
            if scheduler is None and workers > 1 and pending:
                _warn_of_idle_workers(scene, plan, split.windows, workers, len(pending))
            if not pending:
                log.info("every block of %s is finished: assembling only", scene)
            elif scheduler is None and (workers == 1 or len(pending) == 1):  # a cluster for one block: only its start-up
                _run_blocks_in_process(job, pending, reference, options, add)
            else:
                with dask_logs_at_glgeo_level(), open_client(scheduler, workers, options) as (client, where, run_options):
                    log.info("segmenting %d blocks of %s on %s", len(pending), scene, where)
                    _run_blocks_on_client(client, job, pending, reference, run_options, add)
            blocks = tuple(rows[b.name] for b in plan.blocks)
            failed = [b for b in blocks if b.status == "failed"]
            if failed:
                reason = _failure_reason(failed, len(blocks))
                kept = blocks_kept(folder, plan)[1]
                manifest("failed", blocks, reason)
                recorded = True
                where_listed = f" (each block's error is in {options.manifest})" if options.manifest is not None else ""
                raise OutputError(f"{scene}: {reason}{where_listed}; {kept}: fix the cause and run again")
            stats = _summed_stats(blocks, plan)
            if not stats.mode:  # every block kept from an earlier run: how it was computed is in its file
                run = block_run(block_path(folder, plan.blocks[0]))
                stats.mode = run.get("mode") or split.settings.mode or checkpoint.mode
                stats.precision, stats.device = run.get("precision", ""), run.get("device", "")
                stats.stretch = run.get("stretch", "")
            name, sha256 = model_identity(reference, checkpoint)
            info = split.info
            provenance = Provenance(
                model=name, model_sha256=sha256, glgeo_version=installed_version(), mode=split.settings.mode or checkpoint.mode,
                precision=stats.precision or split.settings.precision, scale=split.scale,
                gsd_m=reading_gsd(info.gsd, split.scale),
                blend=blend_rule(split.settings), nodata_fill=split.settings.nodata_fill, context=stats.context or context_rule(split.settings),
                options=options_rule(options.settings, bands=options.bands, tta=tta, aoi=aoi, bounds=bounds), created=utc_now(),
                scene=scene_stamp(info.path, info.title), stretch=stats.stretch,
            )  # fmt: skip
            assembled = assemble(split, folder, out_path, checkpoint.scheme, scores_out=scores_path,
                                 output_options=options.output_options, tags=provenance.tags())
            recorded = True  # the output is complete: no "not written" from here on
            seconds = time.perf_counter() - started
            stats.timings.write += assembled.seconds
            stats.timings.total = seconds
            warn_if_no_class(assembled.counts, info, out_path)
            classes, area_unit = assembled.tally.class_areas(checkpoint.scheme)
            from ..schemes import NODATA_ID

            summary = SegmentSummary(
                scene=info.path, output=out_path, probabilities=scores_path, height=info.height, width=info.width,
                crs=info.crs.to_string() if info.crs is not None else None, area_unit=area_unit, classes=classes,
                nodata_pixels=int(assembled.counts[NODATA_ID]), model=str(checkpoint.path or reference), stats=stats,
                scale=split.scale, provenance=provenance,
            )  # fmt: skip
            manifest("done", blocks, summary=summary)  # before the blocks go: a Ctrl-C meanwhile leaves it said
            shutil.rmtree(folder, ignore_errors=True)
            log.info("wrote %s from %d blocks in %.1f s (assembly %.1f s)", out_path, len(blocks), seconds, assembled.seconds)
        except BaseException as exc:
            if recorded:
                raise
            if scheduler is None:  # a local cluster's workers are gone, killed mid-block: their temporaries too
                for block in pending:
                    remove_block_partials(folder, block)
            interruption = _record_stop(exc, scene, out_path, folder, plan, rows, manifest, options.manifest)
            if interruption is not None:
                raise interruption from None
            raise
        return SplitResult(summary, plan, blocks, seconds, assembled.seconds, where, options.manifest, written[0],
                           options.manifest_wording)
