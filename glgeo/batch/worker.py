"""The worker side: the model cache, the device of each worker, and the task run per scene."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
import threading
import time
from typing import TYPE_CHECKING, Any, Iterator

from ..errors import GlgeoError
from .manifest import SceneResult, Status
from .planning import BatchOptions, SceneJob, outputs_done, remove_partials

if TYPE_CHECKING:  # pragma: no cover
    from glgeo.models.checkpoint import Checkpoint

log = logging.getLogger("glgeo.batch")

_MODEL_CACHE: dict[str, "Checkpoint"] = {}
_MODEL_LOCK = threading.Lock()


def cached_model(model: str) -> "Checkpoint":
    """The checkpoint ``model`` (zoo name or path), loaded once per process and kept.

    A Dask worker process calls this for each scene; only its first call reads the file.
    A file that changed since (a model retrained under the same name, on a cluster that
    stayed up) is read again.
    """
    from ..segmentation import load_model

    try:
        stat = os.stat(model)
        key = f"{model}|{stat.st_mtime_ns}|{stat.st_size}"
    except OSError:  # a zoo name
        key = model
    with _MODEL_LOCK:
        checkpoint = _MODEL_CACHE.get(key)
        if checkpoint is None:
            started = time.perf_counter()
            checkpoint = load_model(model)
            for old in [k for k in _MODEL_CACHE if k.split("|")[0] == model]:
                del _MODEL_CACHE[old]
            _MODEL_CACHE[key] = checkpoint
            log.info("loaded model %s in %.1f s (pid %d)", model, time.perf_counter() - started, os.getpid())
        return checkpoint


def worker_device(spec: str, worker_name: object, n_gpus: int) -> str:
    """The device a worker uses, so that GPU workers on one machine each get their own GPU.

    ``cpu`` and ``cuda:N`` are kept. ``auto`` and ``cuda`` become ``cuda:<i mod n_gpus>``
    where ``i`` is the worker's number: its name when that is an integer (LocalCluster,
    ``dask worker --name``) or ends in ``-<i>`` (``dask worker --nworkers``), else 0. A
    worker whose process sees one GPU (``CUDA_VISIBLE_DEVICES`` set per worker, as
    dask-cuda does) uses ``cuda:0``. Without GPUs, ``auto`` is ``cpu``.

    Args:
        spec: the device asked for (``auto``, ``cpu``, ``cuda``, ``cuda:N``).
        worker_name: the Dask worker's name (``None`` outside a worker).
        n_gpus: CUDA devices this process sees.
    """
    text = spec.strip().lower()
    if text == "cpu" or text.startswith("cuda:"):
        return text
    if n_gpus < 1:
        return "cpu" if text == "auto" else text  # "cuda" without a GPU: let the engine say so
    index = 0
    match = re.search(r"(?:^|-)(\d+)$", str(worker_name)) if worker_name is not None else None
    if match:
        index = int(match.group(1))
    return f"cuda:{index % n_gpus}"


def interrupts_left_to_the_run() -> Any:
    """A Dask worker plugin for a local cluster's worker processes: they ignore SIGINT.

    Ctrl-C reaches every process of the terminal's process group. The run in the main
    process stops the batch, records what is finished and closes the cluster, which ends
    its workers; a worker process that took the signal itself printed its event loop's
    tracebacks (60 lines for two workers) above the run's one line.
    """
    from distributed import WorkerPlugin

    class LeaveInterruptsToTheRun(WorkerPlugin):
        name = "glgeo-leave-interrupts-to-the-run"

        def setup(self, worker: object) -> None:
            import signal

            if threading.current_thread() is threading.main_thread():  # a worker process's event loop
                signal.signal(signal.SIGINT, signal.SIG_IGN)

    return LeaveInterruptsToTheRun()


def class_areas_of(raster: str | os.PathLike) -> tuple[dict[str, float], str]:
    """Area per class of an existing glgeo class raster (see :func:`glgeo.areas.raster_class_areas`).

    Returns:
        ``(areas by class name, unit)``.

    Raises:
        SceneError: the raster cannot be read.
        InputError: it does not carry a class scheme (not written by glgeo).
    """
    from ..areas import raster_class_areas

    classes, unit = raster_class_areas(raster)
    return {c.name: c.area for c in classes}, unit


def this_worker() -> tuple[str, object]:
    """``(address, name)`` of the Dask worker running this code, or ``("in-process", None)``."""
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return "in-process", None
    log_like_the_cli()
    return str(worker.address), worker.name


#: The environment variable that sets the lowest level a worker prints glgeo's records at
#: (:func:`log_like_the_cli`); ``glgeo -q`` sets it to ``error`` for the worker processes
#: of a local cluster, which start from the command's environment.
WORKER_LOG_LEVEL = "GLGEO_WORKER_LOG_LEVEL"


def log_like_the_cli() -> None:
    """In a process nobody configured logging in (a Dask worker), print glgeo's records as
    the command line does (``WARNING: ...``), not as bare messages, at the level
    :data:`WORKER_LOG_LEVEL` says (``-q`` sets it to ``error``; warnings are still made, for
    the manifest's rows: :func:`scene_warnings`). Rasterio's warning that a
    plain image has no geotransform is left out, as the command line leaves it out: glgeo's
    own log says so."""
    import sys
    import warnings

    warnings.filterwarnings("ignore", message="Dataset has no geotransform")
    glgeo_log = logging.getLogger("glgeo")
    if logging.getLogger().handlers or glgeo_log.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    handler.addFilter(_not_kept_for_the_client)
    printed = os.environ.get(WORKER_LOG_LEVEL, "").upper()
    if isinstance(logging.getLevelName(printed), int):  # a level's name (else: everything)
        handler.setLevel(printed)
    glgeo_log.addHandler(handler)


#: Threads of this process running a scene whose warnings are kept (:class:`_SceneWarnings`).
_KEEPING: set[int] = set()


def _not_kept_for_the_client(record: logging.LogRecord) -> bool:
    """A Dask worker does not print the warnings it keeps in a scene's result: the client
    prints them as results arrive (at most a few of each kind, ``glgeo segment``), not
    every worker each of its own."""
    return not (record.levelno == logging.WARNING and record.thread in _KEEPING)


def visible_gpus() -> int:
    """How many CUDA devices this process sees (0 without CUDA)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _vectorize(job: SceneJob, overwrite: bool) -> None:
    from ..vectorization import vectorize

    if job.vector is not None:
        vectorize(job.output, job.vector, overwrite=overwrite)


def process_scene(job: SceneJob, model: str, options: BatchOptions) -> SceneResult:
    """Segment (and vectorize) one scene; the task every worker runs.

    Errors glgeo raises on purpose become a ``failed`` result; anything else propagates, so
    that the scheduler retries the scene.

    Args:
        job: the scene and its outputs.
        model: a zoo name or a checkpoint path the worker can read.
        options: the batch's options.
    """
    started = time.perf_counter()
    address, name = this_worker()

    def result(status: Status, **kwargs: Any) -> SceneResult:
        return SceneResult(
            input=job.scene,
            output=str(job.output),
            vector=str(job.vector) if job.vector else None,
            status=status,
            seconds=time.perf_counter() - started,
            worker=address,
            warnings=tuple(warned),
            **kwargs,
        )

    with scene_warnings() as warned:  # anything but a GlgeoError propagates: the scheduler retries it
        partials = remove_partials(job)
        try:
            raster_done, vector_done = outputs_done(job, options)
            if raster_done and vector_done:
                areas, unit = class_areas_of(job.output)
                return result("skipped", class_areas=areas, area_unit=unit, partials_removed=partials)
            device = ""
            if raster_done:
                log.info("%s: class raster already there, vectorizing only", job.scene)
                areas, unit = class_areas_of(job.output)
            else:
                from ..segmentation import segment

                settings = options.settings
                wanted = worker_device(settings.device, name, visible_gpus()) if address != "in-process" else settings.device
                threads = options.torch_threads or settings.torch_threads
                if wanted != settings.device or threads != settings.torch_threads:
                    settings = dataclasses.replace(settings, device=wanted, torch_threads=threads)
                summary = segment(
                    job.scene,
                    job.output,
                    model=cached_model(model),
                    bands=options.bands,
                    settings=settings,
                    scheme=options.scheme,
                    overwrite=options.overwrite,
                    output_options=options.output_options,
                )
                areas, unit, device = summary.class_areas, summary.area_unit, summary.stats.device
            if job.vector is not None and not vector_done:
                _vectorize(job, options.overwrite)
        except GlgeoError as exc:
            return result("failed", error=f"{type(exc).__name__}: {exc}", partials_removed=partials)
        return result("done", class_areas=areas, area_unit=unit, device=device, partials_removed=partials)


@contextlib.contextmanager
def scene_warnings() -> Iterator[list[str]]:
    """The warnings glgeo logs in this thread inside the block, in order, for a scene's row
    of the manifest (:class:`_SceneWarnings`; the handler is removed however the block ends)."""
    handler = _SceneWarnings()
    logger = logging.getLogger("glgeo")
    logger.addHandler(handler)
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)
        handler.close()


class _SceneWarnings(logging.Handler):
    """Keeps the warnings glgeo logs in this thread while one scene runs (a Dask worker may
    run scenes in several threads), for the scene's row of the manifest.

    Made where nothing handles glgeo's logs (a script that set up no logging), it also
    hands them to :data:`logging.lastResort`: any handler on the ``glgeo`` logger stops
    Python's fallback from printing them, and a library caller saw no warning at all.
    """

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.thread = threading.get_ident()
        self.messages: list[str] = []
        self.fallback = None if logging.getLogger("glgeo").hasHandlers() else logging.lastResort
        _KEEPING.add(self.thread)

    def close(self) -> None:
        _KEEPING.discard(self.thread)
        super().close()

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread:
            self.messages.append(record.getMessage())
            if self.fallback is not None and record.levelno >= self.fallback.level:
                self.fallback.handle(record)
