"""Running the tasks: in this process, on a local Dask cluster, or on an existing one."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import threading
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from ..atomic import check_folder_writable
from ..errors import GlgeoError, InputError, Interruption, MissingDependencyError, OutputError
from ..progress import ProgressCallback
from .inputs import expand_inputs, is_remote
from .manifest import BatchResult, SceneResult, check_manifest_target, write_manifest
from .merge import check_merge_target, merge_vectors
from .planning import BatchOptions, SceneJob, kept_otherwise, outputs_done, plan_jobs, remove_partials, vector_path
from .worker import class_areas_of, interrupts_left_to_the_run, process_scene

if TYPE_CHECKING:  # pragma: no cover
    from distributed import Client

log = logging.getLogger("glgeo.batch")

#: ``progress(done, total)``: scenes finished (done, skipped or failed) so far and in all.

#: How often (seconds) the manifest is rewritten while a run goes on.
MANIFEST_INTERVAL_S = 30.0

_INSTALL_HINT = "pip install 'dask[distributed]>=2024.1'"


def require_distributed() -> Any:
    """Import ``dask.distributed`` or say how to install it.

    Returns:
        The ``distributed`` module.

    Raises:
        MissingDependencyError: Dask's distributed scheduler is not installed.
    """
    try:
        import distributed
    except ImportError:
        raise MissingDependencyError(
            "running scenes on a Dask cluster (a scheduler, or workers above 1) needs dask.distributed: "
            f"install it with `{_INSTALL_HINT}`, or run with workers=1"
        ) from None
    return distributed


def _failed(job: SceneJob, error: str, worker: str = "") -> SceneResult:
    return SceneResult(
        input=job.scene,
        output=str(job.output),
        vector=str(job.vector) if job.vector else None,
        status="failed",
        worker=worker,
        error=error,
    )


def describe_failure(exc: BaseException) -> str:
    """One line for a scene's (or block's) failure in the manifest and the log: the error's
    type and message, and what a worker killed on every attempt usually means."""
    name = type(exc).__name__
    if name == "KilledWorker":
        return (
            "KilledWorker: the workers running this scene died on every attempt (out of memory? "
            "see the worker logs; give workers more memory or use a smaller batch_size)"
        )
    return f"{name}: {exc}"


def model_reference(model: Any) -> str:
    """A model reference workers can load: an absolute path when it is a local file."""
    from glgeo.models.checkpoint import Checkpoint

    if isinstance(model, Checkpoint):
        if model.path is None:
            raise InputError("a batch needs the model as a file or zoo name (workers load it); save the checkpoint first")
        model = model.path
    if not isinstance(model, (str, os.PathLike)):
        raise InputError(f"model must be a zoo name or a checkpoint path, not {type(model).__name__}")
    path = Path(model).expanduser()
    return str(path.resolve()) if path.is_file() else os.fspath(model)


def _refuse_outputs_made_otherwise(jobs: Sequence[SceneJob], reference: str, options: BatchOptions) -> None:
    """Refuse a batch that would keep, as finished, outputs another model made, the same
    model made with other options, or another scene of the same file name made (its grid
    is not the scene's): a rerun skipped them and reported their classes as this run's.

    What made an output is read from its provenance (``GLGEO_MODEL_SHA256``,
    ``GLGEO_OPTIONS``); outputs without it (not glgeo's, or older) are not judged.
    """
    if options.overwrite:
        return
    import rasterio

    from ..provenance import Provenance, file_sha256, made_from_another_file, options_rule

    path = Path(reference)
    if not path.is_file():
        from glgeo.models.zoo import zoo_path

        try:
            path = zoo_path(reference)
        except GlgeoError:
            return  # the workers will say what is wrong with it
    ours = file_sha256(path)
    our_options = options_rule(options.settings, bands=options.bands)
    other_model, other_options, other_scene, other_file = [], [], [], []
    for job in jobs:
        if not job.output.is_file():
            continue
        try:
            with rasterio.open(job.output) as src:
                tags, grid = src.tags(), _grid(src)
        except rasterio.errors.RasterioIOError:
            continue  # not readable: the scene runs again or fails on its own
        made = Provenance.from_tags(tags)
        if made is None:
            continue
        try:
            with rasterio.open(job.scene) as scene:
                scene_grid = _grid(scene)
        except rasterio.errors.RasterioIOError:
            scene_grid = grid  # the scene's own failure is said when it runs
        if scene_grid != grid:  # every output has its scene's grid: this one is another scene's
            other_scene.append((job, grid, scene_grid))
        elif made.scene and made_from_another_file(made.scene, job.scene):  # another date of one tile, say
            other_file.append((job, made))
        elif made.model_sha256 and made.model_sha256 != ours:
            other_model.append((job, made))
        elif "GLGEO_OPTIONS" in tags and not _same_options(made, our_options):
            other_options.append((job, made))
    remedy = "they would be kept as they are; pass overwrite=True to replace them, or write to another out_dir"
    if other_scene:
        job, grid, scene_grid = other_scene[0]
        raise InputError(
            f"{_outputs_of(len(other_scene), len(jobs))} there from another scene of the same name"
            f" ({job.output}: {_describe_grid(grid)}; {job.scene}: {_describe_grid(scene_grid)}): {remedy}"
        )
    if other_file:
        job, made = other_file[0]
        was = json.loads(made.scene).get("path", "?")
        raise InputError(
            f"{_outputs_of(len(other_file), len(jobs))} there, made from another file of the same name or this file "
            f"before it changed ({job.output}: from {was}; this batch: {job.scene}): {remedy}"
        )
    if other_model:
        job, made = other_model[0]
        raise InputError(
            f"{_outputs_of(len(other_model), len(jobs))} there from another model ({job.output}: "
            f"{made.model}, SHA-256 {made.model_sha256[:12]}...; this batch's model: {path.name}, {ours[:12]}...): "
            f"{remedy}"
        )
    if other_options:
        job, made = other_options[0]
        raise InputError(
            f"{_outputs_of(len(other_options), len(jobs))} there, made with other options "
            f"({job.output}: {made.options}; this batch: {our_options}): {remedy}"
        )


def _same_options(made: Any, ours: str) -> bool:
    """Whether an output's recorded options (``GLGEO_OPTIONS``) are this batch's ``ours``
    (:func:`~glgeo.provenance.options_rule`), a precision asked by name counting as the
    one the output was computed in (``precision=bf16`` against an ``auto`` run that ran
    bf16, and the other way round)."""
    def split(rule: str) -> tuple[set[str], str | None]:
        parts = set() if rule == "defaults" else {p.strip() for p in rule.split(", ")}
        asked = next((p for p in parts if p.startswith("precision=")), None)
        return parts - {asked}, None if asked is None else asked.split("=", 1)[1]

    (theirs, their_precision), (mine, my_precision) = split(made.options), split(ours)
    resolved = {their_precision or "auto", my_precision or "auto"} - {"auto"}
    return theirs == mine and resolved <= {made.precision}


def _unreadable_vector(path: Path) -> str | None:
    """Why a scene's finished GeoPackage cannot be read (a truncated copy: SQLite's quick
    check reads every page), or ``None``."""
    import sqlite3
    from urllib.parse import quote

    try:
        with contextlib.closing(sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True)) as db:
            verdict = db.execute("PRAGMA quick_check").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        return str(exc)
    return None if verdict == "ok" else str(verdict)


@contextlib.contextmanager
def _gdal_warnings_muted() -> Iterator[None]:
    """GDAL's warnings left unsaid while finished outputs are looked at: a truncated one
    printed five raw ``CPLE_AppDefined ... tags apparently corrupt`` lines before its row's
    error, which says what to do (delete it). GDAL's errors still raise."""
    gdal_log = logging.getLogger("rasterio._env")
    level = gdal_log.level
    gdal_log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        gdal_log.setLevel(level)


def _outputs_of(count: int, total: int) -> str:
    """``the output of the scene is`` / ``the outputs of 3 of the 12 scenes are``."""
    if total == 1:
        return "the scene's output is"
    return f"the output{'s' if count > 1 else ''} of {count} of the {total} scenes {'are' if count > 1 else 'is'}"


def _without_own_files(scenes: list[str], options: BatchOptions) -> list[str]:
    """``scenes`` less this batch's merged GeoPackage and manifest, which a glob such as
    ``data/**/*`` matches on the rerun (it took the merge for a scene that failed)."""
    own = {os.path.abspath(p) for p in (options.vector_merge, options.manifest) if p is not None}
    kept = [scene for scene in scenes if is_remote(scene) or os.path.abspath(scene) not in own]
    if len(kept) < len(scenes):
        log.warning("left out %s: this batch's own output, not a scene", ", ".join(s for s in scenes if s not in kept))
    return kept


def _grid(src) -> tuple:
    """A raster's grid: size and transform (an output has its scene's; its CRS too, but a
    CRS read back from another format may be spelt otherwise, so it is not compared)."""
    return (src.width, src.height, tuple(round(v, 9) for v in src.transform[:6]))


def _describe_grid(grid: tuple) -> str:
    width, height, transform = grid
    return f"{width} x {height} px from ({transform[2]:.10g}, {transform[5]:.10g})"


class _Run:
    """Collects results, reports progress and rewrites the manifest now and then."""

    def __init__(self, jobs: Sequence[SceneJob], options: BatchOptions, progress: ProgressCallback | None, workers: str):
        self.jobs = jobs
        self.options = options
        self.progress = progress
        self.workers = workers
        self.results: dict[int, SceneResult] = {}
        self.started = time.perf_counter()
        self.wall_started = time.time()  # outputs written since are this run's
        self.last_manifest = self.started

    def add(self, index: int, result: SceneResult) -> None:
        self.results[index] = result
        if self.workers != "in-process":  # a worker kept them for the manifest and printed none
            for warning in result.warnings:
                log.warning(warning)
        if result.status == "failed":
            log.warning("%s failed: %s", result.input, result.error)
        if self.progress is not None:
            self.progress(len(self.results), len(self.jobs))
        if self.options.manifest is not None and time.perf_counter() - self.last_manifest > MANIFEST_INTERVAL_S:
            try:
                write_manifest(self.result(), self.options.manifest, self.options.manifest_wording)
            except OutputError as exc:  # the batch goes on; the end of the run tries again and says so
                log.warning("%s (the batch goes on)", exc)
            self.last_manifest = time.perf_counter()

    def result(self, vector_merge: Path | None = None) -> BatchResult:
        rows = tuple(self.results.get(i) or _failed(job, "not run (the batch was interrupted)") for i, job in enumerate(self.jobs))
        return BatchResult(rows, time.perf_counter() - self.started, self.workers, self.options.manifest, vector_merge)


def _skip_finished(run: _Run) -> list[int]:
    """Record the scenes whose outputs are all there as skipped; the indices of the others.

    Runs on the submitting machine before any cluster starts, so a rerun of a finished
    batch starts none (the areas of skipped scenes are read back from their rasters).
    """
    import rasterio

    from ..io import read_error_detail

    pending = []
    kept = []  # (scene, how its output differs from this run's creation options)
    for index, job in enumerate(run.jobs):
        raster_done, vector_done = outputs_done(job, run.options)
        if not (raster_done and vector_done):
            pending.append(index)
            continue
        started = time.perf_counter()
        partials = remove_partials(job)
        common = dict(input=job.scene, output=str(job.output), vector=str(job.vector) if job.vector else None,
                      partials_removed=partials)
        try:
            areas, unit = class_areas_of(job.output)
        except GlgeoError as exc:
            result = SceneResult(status="failed", error=f"{type(exc).__name__}: {exc}", **common)
        except rasterio.errors.RasterioIOError as exc:  # a finished output damaged since (a truncated copy)
            detail = read_error_detail(exc)
            error = f"{job.output} is there but cannot be read ({detail}); delete it and run the same command again"
            result = SceneResult(status="failed", error=f"OutputError: {error}", **common)
        else:
            damaged = _unreadable_vector(job.vector) if job.vector is not None else None
            if damaged is not None:  # a finished GeoPackage damaged since: the merge failed on it only later
                error = f"{job.vector} is there but cannot be read ({damaged}); delete it and run the same command again"
                run.add(index, SceneResult(status="failed", error=f"OutputError: {error}", **common))
                continue
            differs = kept_otherwise(job.output, run.options.output_options)
            said = () if differs is None else (f"kept as it was written ({differs}): output options do not change the"
                                               " classes; pass overwrite=True to write it again with them",)
            kept += [(job.output, differs)] if differs else []
            result = SceneResult(status="skipped", class_areas=areas, area_unit=unit,
                                 seconds=time.perf_counter() - started, warnings=said, **common)
        run.add(index, result)
    if kept:
        log.warning("%d finished output%s kept as written, not as this run's output options ask (e.g. %s: %s); pass"
                    " overwrite=True to write %s again", len(kept), " was" if len(kept) == 1 else "s were", *kept[0],
                    "it" if len(kept) == 1 else "them")
    return pending


@contextlib.contextmanager
def dask_logs_at_glgeo_level() -> Iterator[None]:
    """Dask's INFO lines (workers starting, "Nanny at ... closed") only with ``-v``: while a
    cluster runs, Dask's loggers show what glgeo's logger shows, at least warnings. The
    batched comms' INFO line with a CommClosedError traceback, which a cluster prints when
    it closes as it should, and the nannies' warning that a worker slow to exit was killed
    (:func:`_not_a_slow_exit`) are shown only with ``-vv``."""
    wanted = logging.INFO if log.isEnabledFor(logging.INFO) else logging.WARNING
    names = ("distributed", "dask", "distributed.batched")
    loggers = [logging.getLogger(name) for name in names]
    before = [logger.level for logger in loggers]
    debug = log.isEnabledFor(logging.DEBUG)
    for name, logger in zip(names, loggers):
        level = max(wanted, logging.WARNING) if name == "distributed.batched" and not debug else wanted
        if logger.getEffectiveLevel() < level:
            logger.setLevel(level)
    nanny = logging.getLogger("distributed.nanny")
    if not debug:
        nanny.addFilter(_not_a_slow_exit)
    try:
        yield
    finally:
        for logger, level in zip(loggers, before):
            logger.setLevel(level)
        nanny.removeFilter(_not_a_slow_exit)


def _not_a_slow_exit(record: logging.LogRecord) -> bool:
    """Closing a local cluster, a nanny kills a worker process that takes more than a few
    seconds to exit (on a loaded machine) and warns "Worker process still alive after 4.0
    seconds, killing", once per worker, after the batch finished: its results are already
    in, so the warning is noise."""
    return not str(record.msg).startswith("Worker process still alive after")


def _run_in_process(run: _Run, model: str, pending: Sequence[int]) -> None:
    for index in pending:
        job = run.jobs[index]
        attempt = 0
        while True:
            try:
                result = process_scene(job, model, run.options)
                break
            except Exception as exc:  # noqa: BLE001 - any unexpected error is retried, then reported
                attempt += 1
                if attempt > run.options.retries:
                    log.debug("%s", traceback.format_exc())
                    result = _failed(job, describe_failure(exc), "in-process")
                    break
                log.warning("%s: %s; retrying (%d of %d)", job.scene, describe_failure(exc), attempt, run.options.retries)
        run.add(index, result)


def submit_and_collect(
    client: "Client", tasks: Sequence[tuple[Any, str, Any, tuple]], retries: int, collect, name=str
) -> None:
    """Run ``tasks`` on the cluster and hand each result over as it finishes.

    Args:
        client: the Dask client.
        tasks: ``(item, key, function, args)``: ``function(*args)`` runs as task ``key``.
        retries: how often Dask reruns a failed task.
        collect: ``collect(item, result, error)`` per finished task, in the order they
            finish; ``error`` is the one-line description of what ended it after its
            retries (``result`` is then ``None``).
        name: ``name(item)``, what a task is called in the warning that a worker died while
            running it (:func:`_worker_deaths_named`).

    Whatever has not finished is cancelled when this returns or raises (Ctrl-C).
    """
    distributed = require_distributed()
    futures = {}
    with _worker_deaths_named(client, {key: name(item) for item, key, _, _ in tasks}):
        for item, key, function, args in tasks:
            futures[client.submit(function, *args, key=key, retries=retries, pure=False)] = item
        try:
            for future in distributed.as_completed(futures):
                try:
                    result, error = future.result(), None
                except Exception as exc:  # noqa: BLE001 - the task failed after its retries
                    result, error = None, describe_failure(exc)
                collect(futures[future], result, error)
                future.release()
        finally:
            client.cancel(list(futures))


@contextlib.contextmanager
def _worker_deaths_named(client: "Client", names: dict[str, str]) -> Iterator[None]:
    """While the block runs, a worker that dies (out of memory, killed) is told with what it
    was running: Dask's own line, "Restarting worker", names no scene.

    The scheduler logs each worker it loses, with the tasks it was processing, as an event
    of its topic ``all``; the client follows that topic meanwhile. A client has one handler
    per topic: one that already follows ``all`` (a caller's) is left as it is, without
    these warnings.
    """
    handlers = getattr(client, "_event_handlers", None)
    if not isinstance(handlers, dict) or handlers.get("all", _ignore_event) is not _ignore_event:
        yield
        return

    def on_event(event: tuple[float, Any]) -> None:
        msg = event[1] if isinstance(event, tuple) and len(event) == 2 else event
        if not isinstance(msg, dict) or msg.get("action") != "remove-worker" or msg.get("expected"):
            return
        ours = sorted(names[key] for key in msg.get("processing-tasks", ()) if key in names)
        if ours:
            log.warning(
                "a Dask worker (%s) died while running %s (out of memory? killed?); the scheduler runs %s again on "
                "another worker unless %s died with its worker too often (retries)", msg.get("worker", "?"),
                ", ".join(ours), "it" if len(ours) == 1 else "them", "it has" if len(ours) == 1 else "they have",
            )

    client.subscribe_topic("all", on_event)
    try:
        yield
    finally:
        with contextlib.suppress(Exception):  # a client already closed
            client.unsubscribe_topic("all")
        # not removed: an event already on its way would find no handler, and Dask's client
        # then logs a ValueError traceback (its unsubscribe_topic raises for an unknown topic)
        handlers["all"] = _ignore_event


def _ignore_event(event: Any) -> None:
    """The handler left on a client's topic ``all`` once :func:`_worker_deaths_named` is done
    with it: events still on their way are dropped."""


def _run_on_client(run: _Run, client: "Client", model: str, pending: Sequence[int]) -> None:
    token = f"{time.time_ns():x}"
    tasks = [
        (index, f"glgeo-segment-{run.jobs[index].output.stem}-{token}-{index}", process_scene,
         (run.jobs[index], model, run.options))
        for index in pending
    ]  # fmt: skip

    def collect(index: int, result: Any, error: str | None) -> None:
        run.add(index, result if error is None else _failed(run.jobs[index], error))

    submit_and_collect(client, tasks, run.options.retries, collect, name=lambda index: run.jobs[index].scene)


def _local_torch_threads(workers: int) -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // workers)


def run_batch(
    inputs: Sequence[str | os.PathLike] | Sequence[SceneJob],
    out_dir: str | os.PathLike | None = None,
    *,
    model: Any = "deepglobe-landcover",
    options: BatchOptions = BatchOptions(),
    scheduler: "str | Client | None" = None,
    workers: int = 1,
    progress: ProgressCallback | None = None,
) -> BatchResult:
    """Segment many scenes, one task per scene, and write a manifest.

    Args:
        inputs: scene paths, URLs, globs, ``@list.txt`` files (see :func:`expand_inputs`),
            or ready :class:`SceneJob` objects (then ``out_dir`` is not used).
        out_dir: folder for ``<stem>.tif`` (and ``<stem>-polygons.gpkg``) per scene; created when
            missing.
        model: a zoo model name or a checkpoint file every worker can read.
        options: per-scene settings, retries, manifest, vectors.
        scheduler: an existing Dask cluster: its scheduler address (``tcp://host:8786``) or
            a connected ``distributed.Client``.
        workers: without ``scheduler``: ``1`` runs the scenes in this process one after the
            other (no Dask needed); ``N > 1`` starts a local cluster of N worker processes
            for the run.
        progress: ``progress(done, total)`` after each scene.

    Returns:
        The per-scene results (failed scenes included: this function does not raise for
        them; check :attr:`BatchResult.ok`).

    Raises:
        InputError: no scenes, a glob matching nothing, clashing output names, bad options.
        MissingDependencyError: Dask is needed (``scheduler`` or ``workers > 1``) but not
            installed.
        OutputError: the output folder or the manifest cannot be written.
    """
    started = time.perf_counter()
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise InputError(f"workers must be 1 or more, got {workers!r}")
    jobs_given = bool(inputs) and all(isinstance(i, SceneJob) for i in inputs)
    if jobs_given:
        jobs = list(inputs)  # type: ignore[arg-type]
    else:
        if out_dir is None:
            raise InputError("give an output folder (out_dir) for the scenes' outputs")
        jobs = plan_jobs(_without_own_files(expand_inputs(inputs), options), out_dir, vector=options.vector)  # type: ignore[arg-type]
    if options.vector and any(j.vector is None for j in jobs):
        jobs = [j if j.vector else dataclasses.replace(j, vector=vector_path(j.output)) for j in jobs]
    if options.vector_merge is not None:
        # the merge would replace that scene's polygons, and a rerun would merge them twice
        clash = next((j for j in jobs if j.vector is not None and j.vector.absolute() == options.vector_merge.absolute()), None)
        if clash is not None:
            raise InputError(
                f"vector_merge={str(options.vector_merge)!r} is the GeoPackage of the scene {clash.scene!r}; "
                "give the merged GeoPackage another name"
            )
        check_merge_target(options.vector_merge, options.overwrite)
    if options.manifest is not None:
        check_manifest_target(options.manifest, options.overwrite, () if jobs_given else inputs,
                              folders=sorted({j.output.parent for j in jobs}))
    # a manifest's or a merge's folder that cannot be written failed after every scene; one that
    # exists is checked before the output folders are made, so that a refusal leaves none behind
    # (one that does not exist yet may be made with them: results/ for --out-dir results/maps)
    summaries = [(target.absolute().parent, what) for target, what in (
        (options.manifest, "the manifest"), (options.vector_merge, "the merged GeoPackage")) if target is not None]
    out_folders = {j.output.parent.absolute() for j in jobs}
    for folder, what in summaries:
        if folder.is_dir() and folder not in out_folders:  # an output folder is said to be one, below
            check_folder_writable(folder, f"{what}'s folder", f"make it writable, or give {what} another path")
    for folder in sorted({j.output.parent for j in jobs}):
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(
                f"cannot create the output folder {str(folder)!r}: {exc.strerror or exc}; create it yourself, "
                "or give another out_dir"
            ) from None
    # a read-only folder failed each scene as it wrote
    for folder in sorted({j.output.parent for j in jobs if not all(outputs_done(j, options))}):
        check_folder_writable(folder, advice="make it writable, or give another out_dir")
    for folder, what in summaries:
        check_folder_writable(folder, f"{what}'s folder", f"make it writable, or give {what} another path")
    reference = model_reference(model)
    with _gdal_warnings_muted():  # a damaged output: said in its row, not in GDAL's words first
        _refuse_outputs_made_otherwise(jobs, reference, options)
    run = _Run(jobs, options, progress, "in-process")
    try:
        with _gdal_warnings_muted():
            pending = _skip_finished(run)
        if pending:
            _warn_if_tiles_meet([j.scene for j in jobs])
        if not pending:
            log.info("the outputs of all %d scenes are there: nothing to run", len(jobs))
        elif scheduler is None and (workers == 1 or len(pending) == 1):  # a cluster for one scene: only its start-up
            log.info("segmenting %d scene%s in this process", len(pending), "s" * (len(pending) > 1))
            _run_in_process(run, reference, pending)
        else:
            require_distributed()
            with dask_logs_at_glgeo_level():
                if scheduler is not None:
                    _run_on_existing(run, pending, scheduler, reference)
                else:
                    _run_on_local_cluster(run, pending, workers, reference)
    except KeyboardInterrupt as exc:  # Ctrl-C, SIGTERM: say what is finished, and record it
        run.started = started
        message = _interrupted(run)
        if scheduler is None:
            _remove_partials_of_unfinished(run)
        raise Interruption(message, exc) from None

    merged = None
    if options.vector_merge is not None:
        parts = [(r.input, Path(r.vector)) for _, r in sorted(run.results.items()) if r.status != "failed" and r.vector]
        if parts:
            try:
                merged = merge_vectors(parts, options.vector_merge)
            except GlgeoError as exc:
                # the scenes are done: record them, and say what became of them with why the merge was refused
                run.started = started
                result = run.result()
                where = ""
                if options.manifest is not None:
                    try:
                        write_manifest(result, options.manifest, options.manifest_wording)
                        where = f" (see {options.manifest})"
                    except OutputError as manifest_error:  # both said: neither hides the other
                        where = f" (outputs in {_output_folders(result)}; the manifest was not written either: {manifest_error})"
                counts = result.counts
                stale = (f"; {options.vector_merge} is an earlier run's merge, left as it was: it does not hold this "
                         "run's polygons" if options.vector_merge.exists() else "")
                raise type(exc)(
                    f"{exc}. The scenes were run: {counts['done']} done, {counts['skipped']} skipped, "
                    f"{counts['failed']} failed{where}{stale}"
                ) from None
            except KeyboardInterrupt as exc:
                run.started = started
                raise Interruption(_interrupted(run, f", {options.vector_merge} is not written"), exc) from None
        else:
            log.warning("no scene was vectorized: %s not written", options.vector_merge)
    run.started = started
    result = run.result(merged)
    if options.manifest is not None:
        _write_final_manifest(result, options)
    log.info(
        "batch of %d scenes: %d done, %d skipped, %d failed in %.1f s",
        len(jobs), result.counts["done"], result.counts["skipped"], result.counts["failed"], result.seconds,
    )
    return result


def _write_final_manifest(result: BatchResult, options: BatchOptions) -> None:
    """Write the manifest at the end of a run; where it cannot be written (a full disk),
    the error says what became of the scenes, which are finished all the same."""
    try:
        write_manifest(result, options.manifest, options.manifest_wording)
    except OutputError as exc:
        counts = result.counts
        raise OutputError(
            f"{exc}. The scenes were run all the same: {counts['done']} done, {counts['skipped']} skipped, "
            f"{counts['failed']} failed (outputs in {_output_folders(result)}); a rerun skips the finished ones"
        ) from None


def _output_folders(result: BatchResult) -> str:
    """The folders the scenes' outputs are in, for a message."""
    return ", ".join(sorted({str(Path(r.output).parent) for r in result.scenes}))


def _interrupted(run: _Run, unfinished: str = "") -> str:
    """What an interrupted batch finished and how to go on; writes the manifest first."""
    _record_finished_unreported(run)
    result = run.result()
    finished = sum(1 for r in result.scenes if r.status in ("done", "skipped"))
    record = ""
    if run.options.manifest is not None:
        try:
            write_manifest(result, run.options.manifest, run.options.manifest_wording)
            record = f" (each scene's row is in {run.options.manifest})"
        except OutputError as exc:
            log.warning("%s", exc)
    folders = sorted({str(job.output.parent) for job in run.jobs})
    return (
        f"Interrupted: {finished} of {len(run.jobs)} scenes are finished in {', '.join(folders)}{record}{unfinished}; "
        "run the same batch again to finish it: finished scenes are skipped"
    )


def _remove_partials_of_unfinished(run: _Run) -> None:
    """Remove the temporary files of the scenes an interrupted run was writing.

    The worker processes of a local cluster are gone once it is closed, killed in the
    middle of their scenes: their ``.<stem>.*.stage.tif``, a COG's ``.ovr.tmp``... stayed in
    the output folder until the next run removed them (a scene run in this process removes
    its own as it stops). Not on an existing cluster, whose workers may still be writing.
    """
    removed = sum(remove_partials(job, quiet=True) for job in run.jobs)  # a finished scene's are garbage too
    if removed:
        log.info("removed %d partial files of the interrupted scenes", removed)


def _record_finished_unreported(run: _Run) -> None:
    """Record as done the scenes whose outputs this run wrote but whose results never came
    back: a worker finished them while the batch was being stopped (the rerun skips them;
    the manifest said "not run"). Outputs are written atomically: one there, written since
    the run started, is complete and this run's; a scene whose class raster was finished
    before and whose GeoPackage this run wrote is done too."""
    for index, job in enumerate(run.jobs):
        if index in run.results:
            continue
        # a class raster this run wrote without its GeoPackage: stopped while vectorizing
        vectorizing = job.vector is not None and not job.vector.exists()
        outputs = [job.output] + ([job.vector] if job.vector is not None and not vectorizing else [])
        try:  # every output there, one written by this run (a raster kept from before, its GeoPackage new)
            if not any(path.stat().st_mtime >= run.wall_started for path in outputs):
                continue
            areas, unit = class_areas_of(job.output)
        except (OSError, GlgeoError):
            continue
        common = dict(input=job.scene, output=str(job.output), vector=str(job.vector) if job.vector else None,
                      class_areas=areas, area_unit=unit)
        if vectorizing:
            run.results[index] = SceneResult(status="failed", **common, error=(
                f"interrupted while vectorizing: {job.output} is complete, {job.vector} was not written; run the same"
                " batch again to vectorize it"))
            continue
        run.results[index] = SceneResult(status="done", warnings=("finished while the batch was being stopped",), **common)


@contextlib.contextmanager
def open_client(
    scheduler: "str | Client | None", workers: int, options: BatchOptions
) -> Iterator[tuple["Client", str, BatchOptions]]:
    """A Dask client for a run: on an existing cluster (``scheduler``: its address or a
    connected client, left open) or on a local cluster of ``workers`` processes started
    for the run and closed after it. The one scheduler path of many scenes and of split
    scenes (:mod:`glgeo.batch.split`).

    Yields:
        ``(client, where, options)``: where the tasks run (the scheduler's address, or
        ``local cluster of N workers``), and ``options`` with the torch threads of a local
        cluster's workers filled in (cores / workers).

    Raises:
        InputError: the scheduler cannot be reached.
    """
    distributed = require_distributed()
    if scheduler is not None:
        if isinstance(scheduler, str):
            try:
                client = distributed.Client(scheduler, timeout="30s")
            except (OSError, TimeoutError) as exc:
                raise InputError(
                    f"cannot reach the Dask scheduler at {scheduler!r} ({exc}); start one with `dask scheduler` "
                    "and workers with `dask worker ADDRESS`, or check the address"
                ) from None
            owned = True
        else:
            client, owned = scheduler, False
        try:
            n = len(client.scheduler_info().get("workers", {}))
            if n == 0:
                log.warning("the Dask cluster at %s has no workers yet; tasks wait until one joins", client.scheduler.address)
            log.info("running on the Dask cluster at %s (%d workers)", client.scheduler.address, n)
            yield client, str(client.scheduler.address), options
        finally:
            if owned:
                client.close()
        return
    import dask

    threads = options.torch_threads or options.settings.torch_threads or _local_torch_threads(workers)
    options = dataclasses.replace(options, torch_threads=threads)
    log.info("starting a local Dask cluster of %d worker processes (%d torch threads each)", workers, threads)
    # A worker that dies (out of memory, killed) gives its task to another worker this
    # many times before the task is reported as failed.
    with dask.config.set({"distributed.scheduler.allowed-failures": options.retries}), contextlib.ExitStack() as stack:
        with _ctrl_c_held_back():  # a Ctrl-C meanwhile stops the run once the cluster is up, and closes it
            cluster = stack.enter_context(distributed.LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=":0",
                # worker processes log even their shutdown races at ERROR ("Failed to communicate
                # with scheduler during heartbeat"); glgeo reports failed tasks itself
                silence_logs=logging.CRITICAL if not log.isEnabledFor(logging.INFO) else False,
            ))  # fmt: skip
            client = stack.enter_context(distributed.Client(cluster))
            client.register_plugin(interrupts_left_to_the_run())
        yield client, f"local cluster of {workers} workers", options


def _warn_if_tiles_meet(scenes: Sequence[str]) -> None:
    """Tiles of one area segmented one by one get maps that disagree where they meet: say
    so, and how to get one map without those seams."""
    from ..mosaic import meeting_tiles

    pairs = meeting_tiles(scenes)
    if pairs:
        meeting = {name for pair in pairs for name in pair}
        log.warning(
            "%d of the %d scenes meet others as tiles of one area do (e.g. %s and %s): maps made one by one "
            "disagree along those borders; for maps without seams, segment such tiles as one scene (glgeo segment "
            "TILES --mosaic --out-dir DIR: each tile's map cut from the one map, or -o MAP.tif: that map; "
            "glgeo.mosaic)",
            len(meeting), len(scenes), os.path.basename(pairs[0][0]), os.path.basename(pairs[0][1]),
        )


@contextlib.contextmanager
def _ctrl_c_held_back() -> Iterator[None]:
    """While a local cluster starts, a Ctrl-C is held back until the block ends, and the
    worker processes spawned start deaf to it.

    Ctrl-C reaches every process of the terminal's group: in the first seconds of a run, the
    worker processes being spawned printed tracebacks (an import interrupted), and the run
    stopped inside ``LocalCluster(...)`` left a half-started cluster that Dask's exit handler
    failed to close (an ``AssertionError``). Here SIGINT is blocked in this thread, so that
    the cluster's event loop thread, the threads it starts and the processes they spawn
    begin with it blocked (a signal mask is inherited, through ``exec`` too), and a SIGINT
    that reaches this process meanwhile is only noted; it is raised as ``KeyboardInterrupt``
    when the block ends, with the cluster up, which its context then closes.
    """
    import signal

    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not threading.main_thread():
        yield  # Windows; or not the main thread, which takes no Ctrl-C anyway
        return
    from multiprocessing import resource_tracker

    # started later, by the first process the cluster spawns, it would unblock SIGINT in
    # that thread (ensure_running blocks it around its own spawn, then unblocks it)
    resource_tracker.ensure_running()
    noted = []

    def note(signum: int, frame: Any) -> None:
        if noted:  # pressed again: a start that hangs can still be stopped, tracebacks and all
            raise KeyboardInterrupt
        noted.append(signum)
        log.warning("stopping once the local cluster has started (press Ctrl-C again to stop at once)")

    handler = signal.signal(signal.SIGINT, note)
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        signal.signal(signal.SIGINT, handler if handler is not None else signal.default_int_handler)
    if noted:
        raise KeyboardInterrupt


def _run_on_existing(run: _Run, pending: Sequence[int], scheduler: "str | Client", reference: str) -> None:
    with open_client(scheduler, 1, run.options) as (client, where, _):
        log.info("segmenting %d scenes on the Dask cluster at %s", len(pending), where)
        run.workers = where
        _run_on_client(run, client, reference, pending)


def _run_on_local_cluster(run: _Run, pending: Sequence[int], workers: int, reference: str) -> None:
    run.workers = f"local cluster of {workers} workers"  # an interruption while it starts is recorded so too
    with open_client(None, workers, run.options) as (client, where, options):
        run.options = options
        run.workers = where
        _run_on_client(run, client, reference, pending)
