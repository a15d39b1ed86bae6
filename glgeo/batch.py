"""Many scenes, many machines: batch segmentation, one task per scene.

A GLNet scene cannot be cut into independent chunks (the global branch sees the whole
scene), so the unit of work is one scene. :func:`run_batch` turns a list of inputs into one
task per scene and runs them

* on an existing Dask cluster (``scheduler="tcp://host:8786"`` or a
  ``distributed.Client``): local, SSH, HPC job queues through dask-jobqueue, Kubernetes;
* on a local cluster of ``workers`` processes started for the run (``workers > 1``);
* in this process, one scene after the other (``workers=1``: no Dask needed).

Dask (``dask[distributed]``, installed with glgeo) is imported only for the first two.
Every task

* skips its scene when the outputs already exist: outputs are written atomically (see
  :mod:`glgeo.atomic`), so "exists" means "complete" and a rerun resumes a stopped batch;
* removes what an interrupted attempt at the same scene left behind (hidden ``.part``,
  ``.stage`` and ``.cog`` temporary files of that scene only);
* loads the checkpoint once per worker process and keeps it (:func:`cached_model`), and on
  a machine with several GPUs uses the GPU that matches the worker (:func:`worker_device`);
* reports what it did as a :class:`SceneResult` (status, outputs, class areas, seconds,
  worker, error), never an exception: a scene with a bad input fails alone.

Unexpected errors (out of memory, a flaky network read) and workers that die are retried up
to ``retries`` times, on whichever worker is free (Dask's ``retries=`` for exceptions, the
scheduler's ``allowed-failures`` for dead workers); errors glgeo raises on purpose
(:class:`~glgeo.errors.GlgeoError`: a missing scene, wrong bands) are not, since they would
fail again. At the end a manifest (JSON or CSV) lists one row per scene, and with
``vector_merge`` the per-scene GeoPackages are merged into one.

Example:
    >>> from glgeo.batch import BatchOptions, run_batch
    >>> result = run_batch(["tiles/*.tif"], "out", model="model.pt", workers=4)  # doctest: +SKIP
    >>> result.counts  # doctest: +SKIP
    {'done': 118, 'skipped': 2, 'failed': 0}
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import glob
import io
import json
import logging
import os
import re
import threading
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Literal, Mapping, Sequence
from urllib.parse import urlparse

from .atomic import atomic_path
from .errors import GlgeoError, InputError, MissingDependencyError, OutputError
from .inference import InferenceSettings
from .writer import OutputOptions

if TYPE_CHECKING:  # pragma: no cover
    from distributed import Client

    from glgeo.models.checkpoint import Checkpoint

log = logging.getLogger(__name__)

#: ``progress(done, total)``: scenes finished (done, skipped or failed) so far and in all.
ProgressCallback = Callable[[int, int], None]

Status = Literal["done", "skipped", "failed"]

#: Suffix of the per-scene class rasters and GeoPackages written into the output folder.
RASTER_SUFFIX = ".tif"
VECTOR_SUFFIX = ".gpkg"

#: How often (seconds) the manifest is rewritten while a run goes on.
MANIFEST_INTERVAL_S = 30.0

_INSTALL_HINT = "pip install 'dask[distributed]>=2024.1'"
_GLOB_CHARS = re.compile(r"[*?\[]")
_REMOTE = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*://|/vsi)")


# --------------------------------------------------------------------------------------
# Optional dependency


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
            "running scenes on a Dask cluster (--scheduler, --workers > 1) needs dask.distributed: "
            f"install it with `{_INSTALL_HINT}`, or run with --workers 1"
        ) from None
    return distributed


# --------------------------------------------------------------------------------------
# Inputs and jobs


def is_remote(name: str) -> bool:
    """Whether ``name`` is a URL or a GDAL virtual path rather than a local file."""
    return bool(_REMOTE.match(name))


def read_input_list(path: str | os.PathLike) -> list[str]:
    """The scenes listed in a text file, one path or URL per line.

    Blank lines and lines starting with ``#`` are ignored; relative paths are relative to
    the list file's folder; globs are expanded.

    Raises:
        InputError: the file cannot be read, or a glob in it matches nothing.
    """
    list_path = Path(path)
    try:
        lines = list_path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InputError(f"cannot read the list of scenes {str(list_path)!r}: {exc.strerror or exc}") from None
    items = []
    for line in lines:
        item = line.strip()
        if not item or item.startswith("#"):
            continue
        if not is_remote(item) and not os.path.isabs(item):
            item = str(list_path.parent / item)
        items.append(item)
    return _expand(items, origin=f" (listed in {str(list_path)!r})")


def _expand(items: Iterable[str], origin: str = "") -> list[str]:
    scenes: list[str] = []
    for item in items:
        if not is_remote(item) and _GLOB_CHARS.search(item):
            matches = sorted(p for p in glob.glob(os.path.expanduser(item), recursive=True) if os.path.isfile(p))
            if not matches:
                raise InputError(f"no file matches {item!r}{origin}; check the pattern (quote it so the shell does not expand it)")
            scenes.extend(matches)
        else:
            scenes.append(os.path.expanduser(item) if not is_remote(item) else item)
    return scenes


def expand_inputs(items: Sequence[str | os.PathLike], input_lists: Sequence[str | os.PathLike] = ()) -> list[str]:
    """The scenes a user named: paths, URLs, globs and ``@list.txt`` files, in order.

    Args:
        items: scene paths, URLs (``https://``, ``s3://``, ``/vsicurl/``...), glob patterns
            (``tiles/**/*.tif``) or ``@file``: a text file of paths/URLs, one per line.
        input_lists: more text files of paths/URLs.

    Returns:
        The scenes, duplicates removed (first occurrence kept).

    Raises:
        InputError: nothing was given, a glob matches nothing, or a list cannot be read.
    """
    scenes: list[str] = []
    for item in items:
        text = os.fspath(item)
        if text.startswith("@"):
            scenes.extend(read_input_list(text[1:]))
        else:
            scenes.extend(_expand([text]))
    for list_file in input_lists:
        scenes.extend(read_input_list(list_file))
    unique = list(dict.fromkeys(scenes))
    if len(unique) < len(scenes):
        log.info("%d scenes were named more than once; each runs once", len(scenes) - len(unique))
    if not unique:
        raise InputError("no scenes given: name scene files, globs, URLs or a list file (@list.txt or --input-list)")
    return unique


def scene_stem(scene: str) -> str:
    """The name a scene's outputs get: its file name without the extension.

    ``https://host/a/b/tile_12.tif?sig=...`` -> ``tile_12``.
    """
    path = urlparse(scene).path if "://" in scene else scene
    name = os.path.basename(path.rstrip("/"))
    return os.path.splitext(name)[0] or name


@dataclass(frozen=True)
class SceneJob:
    """One scene of a batch and the outputs it gets.

    Attributes:
        scene: the input (a path or URL, as rasterio opens it).
        output: the class raster (``<out_dir>/<stem>.tif``).
        vector: the scene's GeoPackage, or ``None`` when not vectorizing.
    """

    scene: str
    output: Path
    vector: Path | None = None

    def __post_init__(self) -> None:
        if not self.scene:
            raise InputError("a scene job needs a scene")
        if self.output.suffix.lower() not in (".tif", ".tiff"):
            raise InputError(f"class raster {str(self.output)!r} must be a GeoTIFF (.tif)")
        if self.vector is not None and self.vector.suffix.lower() != VECTOR_SUFFIX:
            raise InputError(f"vector output {str(self.vector)!r} must be a GeoPackage (.gpkg)")

    @property
    def outputs(self) -> tuple[Path, ...]:
        """Every file the job writes under its final name."""
        return (self.output,) if self.vector is None else (self.output, self.vector)


def plan_jobs(scenes: Sequence[str], out_dir: str | os.PathLike, *, vector: bool = False) -> list[SceneJob]:
    """One :class:`SceneJob` per scene, outputs named after the scene in ``out_dir``.

    Raises:
        InputError: two scenes would write the same output (same file name in different
            folders), or an output would replace its own input.
    """
    out = Path(out_dir)
    jobs: list[SceneJob] = []
    by_stem: dict[str, str] = {}
    for scene in scenes:
        stem = scene_stem(scene)
        if stem in by_stem:
            raise InputError(
                f"scenes {by_stem[stem]!r} and {scene!r} would both write {stem}{RASTER_SUFFIX}; "
                "rename one, or run them into different --out-dir folders"
            )
        by_stem[stem] = scene
        job = SceneJob(scene, out / f"{stem}{RASTER_SUFFIX}", out / f"{stem}{VECTOR_SUFFIX}" if vector else None)
        if not is_remote(scene):
            for target in job.outputs:
                if os.path.abspath(target) == os.path.abspath(scene):
                    raise InputError(f"output {str(target)!r} would replace the scene itself; choose another --out-dir")
        jobs.append(job)
    return jobs


# --------------------------------------------------------------------------------------
# Options and results


@dataclass(frozen=True)
class BatchOptions:
    """How each scene is segmented, and what a batch does around it.

    Attributes:
        settings: inference settings shared by every scene. ``device`` ``auto``/``cuda`` is
            resolved per worker (see :func:`worker_device`).
        bands: 1-based bands fed as RGB (default: each scene's non-alpha bands).
        scheme: fail scenes unless the model predicts this class scheme.
        output_options: tiling, compression and COG conversion of the class rasters.
        vector: also vectorize each scene into ``<out_dir>/<stem>.gpkg`` in the same task.
        vector_merge: after the run, merge the per-scene polygons (with a ``scene``
            column) into this GeoPackage; implies ``vector``.
        overwrite: segment scenes whose outputs exist (default: skip them).
        retries: how often a scene is retried after an unexpected error or a dead worker.
        manifest: where to write the run's manifest (``.json`` or ``.csv``), or ``None``.
        torch_threads: CPU threads per scene; ``None``: CPU cores / local workers for a
            local cluster, torch's default elsewhere (1 in a Dask worker started by a
            nanny, which sets ``OMP_NUM_THREADS=1``).
    """

    settings: InferenceSettings = InferenceSettings()
    bands: tuple[int, ...] | None = None
    scheme: str | None = None
    output_options: OutputOptions = OutputOptions()
    vector: bool = False
    vector_merge: Path | None = None
    overwrite: bool = False
    retries: int = 2
    manifest: Path | None = None
    torch_threads: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.retries, bool) or not isinstance(self.retries, int) or self.retries < 0:
            raise InputError(f"retries must be 0 or more, got {self.retries!r}")
        if self.torch_threads is not None and self.torch_threads < 1:
            raise InputError(f"torch threads must be 1 or more, got {self.torch_threads}")
        if self.vector_merge is not None:
            merge = Path(self.vector_merge)
            if merge.suffix.lower() != VECTOR_SUFFIX:
                raise InputError(f"--vector-merge {str(merge)!r} must be a GeoPackage (.gpkg)")
            object.__setattr__(self, "vector_merge", merge)
            object.__setattr__(self, "vector", True)
        if self.manifest is not None:
            manifest = Path(self.manifest)
            if manifest.suffix.lower() not in (".json", ".csv"):
                raise InputError(f"manifest {str(manifest)!r} must end in .json or .csv")
            object.__setattr__(self, "manifest", manifest)


@dataclass(frozen=True)
class SceneResult:
    """What happened to one scene: one row of the manifest.

    Attributes:
        input: the scene.
        output: its class raster.
        vector: its GeoPackage, if vectorized.
        status: ``done`` (segmented now), ``skipped`` (outputs already there) or ``failed``.
        class_areas: area per class name (in :attr:`area_unit`); for skipped scenes, read
            back from the existing class raster.
        area_unit: unit of the areas (``metre^2``, ``pixel``...).
        seconds: wall time of the task, including retries' last attempt only.
        worker: the Dask worker address that ran the last attempt (``in-process`` without
            Dask).
        device: the torch device that segmented it (``cuda:1``, ``cpu``; empty when the
            class raster was already there).
        error: why the scene failed (``None`` otherwise).
        partials_removed: temporary files of an interrupted earlier attempt removed first.
    """

    input: str
    output: str
    vector: str | None
    status: Status
    class_areas: Mapping[str, float] = field(default_factory=dict)
    area_unit: str = ""
    seconds: float = 0.0
    worker: str = ""
    device: str = ""
    error: str | None = None
    partials_removed: int = 0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able row."""
        row = dataclasses.asdict(self)
        row["class_areas"] = dict(self.class_areas)
        row["seconds"] = round(self.seconds, 3)
        return row


@dataclass(frozen=True)
class BatchResult:
    """What a batch did.

    Attributes:
        scenes: one :class:`SceneResult` per scene, in input order.
        seconds: wall time of the run (cluster start included).
        workers: how the scenes ran (``in-process``, ``local cluster of 2 workers``, or the
            scheduler address).
        manifest: the manifest written, if any.
        vector_merge: the merged GeoPackage written, if any.
    """

    scenes: tuple[SceneResult, ...]
    seconds: float
    workers: str
    manifest: Path | None = None
    vector_merge: Path | None = None

    @property
    def counts(self) -> dict[str, int]:
        """Scenes per status."""
        counts = Counter(r.status for r in self.scenes)
        return {s: counts.get(s, 0) for s in ("done", "skipped", "failed")}

    @property
    def failed(self) -> tuple[SceneResult, ...]:
        """The scenes that failed."""
        return tuple(r for r in self.scenes if r.status == "failed")

    @property
    def ok(self) -> bool:
        """Whether no scene failed."""
        return not self.failed

    @property
    def scenes_per_minute(self) -> float:
        """Scenes segmented (not skipped) per minute of :attr:`seconds`."""
        return 60.0 * self.counts["done"] / self.seconds if self.seconds > 0 else 0.0

    def failure_summary(self, limit: int = 5) -> list[str]:
        """Why scenes failed: one line per distinct reason, most frequent first."""
        reasons = Counter((r.error or "unknown error").splitlines()[0] for r in self.failed)
        lines = []
        for reason, n in reasons.most_common(limit):
            example = next(r.input for r in self.failed if (r.error or "unknown error").splitlines()[0] == reason)
            lines.append(f"{n} scene{'s' if n > 1 else ''} ({'e.g. ' if n > 1 else ''}{example}): {reason}")
        if len(reasons) > limit:
            lines.append(f"... and {len(reasons) - limit} other reasons (see the manifest)")
        return lines

    def to_dict(self) -> dict[str, Any]:
        """The JSON manifest: run summary and one row per scene."""
        from glgeo import __version__

        return {
            "glgeo_version": __version__,
            "written": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "workers": self.workers,
            "seconds": round(self.seconds, 3),
            "scenes_per_minute": round(self.scenes_per_minute, 3),
            **self.counts,
            "vector_merge": str(self.vector_merge) if self.vector_merge else None,
            "scenes": [r.to_dict() for r in self.scenes],
        }


# --------------------------------------------------------------------------------------
# Manifest


def write_manifest(result: BatchResult, path: str | os.PathLike) -> Path:
    """Write the manifest atomically: JSON (run summary + rows) or CSV (one row per scene).

    The CSV has one ``area:<class>`` column per class seen in the run.

    Raises:
        InputError: the suffix is neither ``.json`` nor ``.csv``.
        OutputError: the file cannot be written.
    """
    target = Path(path)
    suffix = target.suffix.lower()
    if suffix == ".json":
        text = json.dumps(result.to_dict(), indent=2) + "\n"
    elif suffix == ".csv":
        classes = list(dict.fromkeys(name for r in result.scenes for name in r.class_areas))
        columns = ["input", "output", "vector", "status", "seconds", "worker", "device", "error", "partials_removed", "area_unit"]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns + [f"area:{c}" for c in classes], lineterminator="\n")
        writer.writeheader()
        for r in result.scenes:
            row = {k: v for k, v in r.to_dict().items() if k in columns}
            row.update({f"area:{c}": r.class_areas.get(c, "") for c in classes})
            writer.writerow(row)
        text = buffer.getvalue()
    else:
        raise InputError(f"manifest {str(target)!r} must end in .json or .csv")
    try:
        with atomic_path(target) as tmp:
            tmp.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise OutputError(f"cannot write the manifest {str(target)!r}: {exc}; check the folder exists and is writable") from None
    return target


def read_manifest(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of a manifest written by :func:`write_manifest` (JSON or CSV).

    Raises:
        InputError: the file is missing or not a glgeo manifest.
    """
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read manifest {str(source)!r}: {exc.strerror or exc}") from None
    if source.suffix.lower() == ".csv":
        return list(csv.DictReader(io.StringIO(text)))
    try:
        return list(json.loads(text)["scenes"])
    except (json.JSONDecodeError, KeyError, TypeError):
        raise InputError(f"{str(source)!r} is not a glgeo batch manifest") from None


# --------------------------------------------------------------------------------------
# Worker side: model cache, device, one scene


_MODEL_CACHE: dict[str, "Checkpoint"] = {}
_MODEL_LOCK = threading.Lock()


def cached_model(model: str) -> "Checkpoint":
    """The checkpoint ``model`` (zoo name or path), loaded once per process and kept.

    A Dask worker process calls this for each scene; only its first call reads the file.
    A file that changed since (a model retrained under the same name, on a cluster that
    stayed up) is read again.
    """
    from .segment import load_model

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


_PARTIAL = r"^\.{stem}(?:\.tif\.aux)?\.[^.]+\.(?:part|stage|cog)(?:\.[^.]+)?$"


def remove_partials(job: SceneJob) -> int:
    """Remove temporary files an interrupted attempt at ``job`` left in its folder.

    Only hidden files named as glgeo's atomic writers name them for this scene's outputs
    (``.<stem>.<token>.part.tif``, ``.<stem>.<token>.stage.tif`` ...) are touched.

    Returns:
        How many were removed.
    """
    folder = job.output.parent
    pattern = re.compile(_PARTIAL.format(stem=re.escape(job.output.stem)))
    removed = 0
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for entry in entries:
        if entry.is_file(follow_symlinks=False) and pattern.match(entry.name):
            try:
                os.unlink(entry.path)
                removed += 1
            except FileNotFoundError:
                continue
    if removed:
        log.warning("removed %d partial files of an interrupted attempt at %s", removed, job.scene)
    return removed


def class_areas_of(raster: str | os.PathLike) -> tuple[dict[str, float], str]:
    """Area per class of an existing glgeo class raster, read block by block.

    Returns:
        ``(areas by class name, unit)``.

    Raises:
        SceneError: the raster cannot be read.
        InputError: it does not carry a class scheme (not written by glgeo).
    """
    import numpy as np
    import rasterio

    from .errors import SceneError
    from .styles import scheme_from_tags

    try:
        src = rasterio.open(raster)
    except rasterio.errors.RasterioIOError as exc:
        raise SceneError(f"cannot read class raster {str(raster)!r}: {exc}") from None
    with src:
        scheme = scheme_from_tags(src.tags())
        if scheme is None:
            raise InputError(f"{str(raster)!r} carries no class scheme: it was not written by glgeo; remove it or pass --overwrite")
        counts = np.zeros(256, dtype=np.int64)
        for _, window in src.block_windows(1):
            counts += np.bincount(src.read(1, window=window).ravel(), minlength=256)[:256]
        if src.crs is not None:
            pixel_area = abs(src.transform.determinant)
            try:
                unit = src.crs.linear_units or "map unit"
            except Exception:  # noqa: BLE001 - some CRSs cannot name their units
                unit = "map unit"
            unit = f"{unit}^2" if unit != "unknown" else "map unit^2"
        else:
            pixel_area, unit = 1.0, "pixel"
    return {c.name: float(counts[c.id] * pixel_area) for c in scheme.classes}, unit


def _this_worker() -> tuple[str, object]:
    """``(address, name)`` of the Dask worker running this code, or ``("in-process", None)``."""
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return "in-process", None
    return str(worker.address), worker.name


def _n_gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _vectorize(job: SceneJob, overwrite: bool) -> None:
    from .vectorize import vectorize

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
    address, name = _this_worker()

    def result(status: Status, **kwargs: Any) -> SceneResult:
        return SceneResult(
            input=job.scene,
            output=str(job.output),
            vector=str(job.vector) if job.vector else None,
            status=status,
            seconds=time.perf_counter() - started,
            worker=address,
            **kwargs,
        )

    partials = remove_partials(job)
    try:
        raster_done = job.output.is_file() and not options.overwrite
        vector_done = job.vector is None or (job.vector.is_file() and not options.overwrite)
        if raster_done and vector_done:
            areas, unit = class_areas_of(job.output)
            return result("skipped", class_areas=areas, area_unit=unit, partials_removed=partials)
        device = ""
        if raster_done:
            log.info("%s: class raster already there, vectorizing only", job.scene)
            areas, unit = class_areas_of(job.output)
        else:
            from .segment import segment

            settings = options.settings
            wanted = worker_device(settings.device, name, _n_gpus()) if address != "in-process" else settings.device
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


# --------------------------------------------------------------------------------------
# Client side


def _failed(job: SceneJob, error: str, worker: str = "") -> SceneResult:
    return SceneResult(
        input=job.scene,
        output=str(job.output),
        vector=str(job.vector) if job.vector else None,
        status="failed",
        worker=worker,
        error=error,
    )


def _describe(exc: BaseException) -> str:
    name = type(exc).__name__
    if name == "KilledWorker":
        return (
            "KilledWorker: the workers running this scene died on every attempt (out of memory? "
            "see the worker logs; give workers more memory or use a smaller --batch-size)"
        )
    return f"{name}: {exc}"


def _model_reference(model: Any) -> str:
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


class _Run:
    """Collects results, reports progress and rewrites the manifest now and then."""

    def __init__(self, jobs: Sequence[SceneJob], options: BatchOptions, progress: ProgressCallback | None, workers: str):
        self.jobs = jobs
        self.options = options
        self.progress = progress
        self.workers = workers
        self.results: dict[int, SceneResult] = {}
        self.started = time.perf_counter()
        self.last_manifest = self.started

    def add(self, index: int, result: SceneResult) -> None:
        self.results[index] = result
        if result.status == "failed":
            log.warning("%s failed: %s", result.input, result.error)
        if self.progress is not None:
            self.progress(len(self.results), len(self.jobs))
        if self.options.manifest is not None and time.perf_counter() - self.last_manifest > MANIFEST_INTERVAL_S:
            write_manifest(self.result(), self.options.manifest)
            self.last_manifest = time.perf_counter()

    def result(self, vector_merge: Path | None = None) -> BatchResult:
        rows = tuple(self.results.get(i) or _failed(job, "not run (the batch was interrupted)") for i, job in enumerate(self.jobs))
        return BatchResult(rows, time.perf_counter() - self.started, self.workers, self.options.manifest, vector_merge)


def _run_in_process(run: _Run, model: str) -> None:
    for index, job in enumerate(run.jobs):
        attempt = 0
        while True:
            try:
                result = process_scene(job, model, run.options)
                break
            except Exception as exc:  # noqa: BLE001 - any unexpected error is retried, then reported
                attempt += 1
                if attempt > run.options.retries:
                    log.debug("%s", traceback.format_exc())
                    result = _failed(job, _describe(exc), "in-process")
                    break
                log.warning("%s: %s; retrying (%d of %d)", job.scene, _describe(exc), attempt, run.options.retries)
        run.add(index, result)


def _run_on_client(run: _Run, client: "Client", model: str) -> None:
    distributed = require_distributed()
    token = f"{time.time_ns():x}"
    futures = {}
    for index, job in enumerate(run.jobs):
        future = client.submit(
            process_scene,
            job,
            model,
            run.options,
            key=f"glgeo-segment-{job.output.stem}-{token}-{index}",
            retries=run.options.retries,
            pure=False,
        )
        futures[future] = index
    try:
        for future in distributed.as_completed(futures):
            index = futures[future]
            try:
                result = future.result()
            except Exception as exc:  # noqa: BLE001 - the scene failed after its retries
                result = _failed(run.jobs[index], _describe(exc))
            run.add(index, result)
            future.release()
    finally:
        client.cancel(list(futures))


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
        out_dir: folder for ``<stem>.tif`` (and ``<stem>.gpkg``) per scene; created when
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
    if inputs and all(isinstance(i, SceneJob) for i in inputs):
        jobs = list(inputs)  # type: ignore[arg-type]
    else:
        if out_dir is None:
            raise InputError("give an output folder (--out-dir) for the scenes' outputs")
        jobs = plan_jobs(expand_inputs(inputs), out_dir, vector=options.vector)  # type: ignore[arg-type]
    if options.vector and any(j.vector is None for j in jobs):
        jobs = [j if j.vector else dataclasses.replace(j, vector=j.output.with_suffix(VECTOR_SUFFIX)) for j in jobs]
    for folder in sorted({j.output.parent for j in jobs}):
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create the output folder {str(folder)!r}: {exc.strerror or exc}") from None
    reference = _model_reference(model)
    use_dask = scheduler is not None or workers > 1
    if use_dask:
        require_distributed()

    if scheduler is None and workers == 1:
        run = _Run(jobs, options, progress, "in-process")
        log.info("segmenting %d scenes in this process", len(jobs))
        _run_in_process(run, reference)
    elif scheduler is not None:
        run = _run_on_existing(jobs, options, progress, scheduler, reference)
    else:
        run = _run_on_local_cluster(jobs, options, progress, workers, reference)

    merged = None
    if options.vector_merge is not None:
        parts = [(r.input, Path(r.vector)) for _, r in sorted(run.results.items()) if r.status != "failed" and r.vector]
        if parts:
            merged = merge_vectors(parts, options.vector_merge)
        else:
            log.warning("no scene was vectorized: %s not written", options.vector_merge)
    run.started = started
    result = run.result(merged)
    if options.manifest is not None:
        write_manifest(result, options.manifest)
    log.info(
        "batch of %d scenes: %d done, %d skipped, %d failed in %.1f s",
        len(jobs), result.counts["done"], result.counts["skipped"], result.counts["failed"], result.seconds,
    )
    return result


def _run_on_existing(jobs, options, progress, scheduler, reference) -> _Run:
    distributed = require_distributed()
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
            log.warning("the Dask cluster at %s has no workers yet; scenes wait until one joins", client.scheduler.address)
        log.info("segmenting %d scenes on the Dask cluster at %s (%d workers)", len(jobs), client.scheduler.address, n)
        run = _Run(jobs, options, progress, str(client.scheduler.address))
        _run_on_client(run, client, reference)
    finally:
        if owned:
            client.close()
    return run


def _run_on_local_cluster(jobs, options, progress, workers, reference) -> _Run:
    import dask

    distributed = require_distributed()
    threads = options.torch_threads or options.settings.torch_threads or _local_torch_threads(workers)
    options = dataclasses.replace(options, torch_threads=threads)
    log.info("starting a local Dask cluster of %d worker processes (%d torch threads each)", workers, threads)
    # A worker that dies (out of memory, killed) gives its scene to another worker this
    # many times before the scene is reported as failed.
    with dask.config.set({"distributed.scheduler.allowed-failures": options.retries}):
        with distributed.LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            silence_logs=logging.ERROR,
        ) as cluster, distributed.Client(cluster) as client:
            run = _Run(jobs, options, progress, f"local cluster of {workers} workers")
            _run_on_client(run, client, reference)
    return run


# --------------------------------------------------------------------------------------
# Merged vectors


_MERGE_CHUNK = 100_000


def merge_vectors(parts: Sequence[tuple[str, Path]], out: str | os.PathLike) -> Path:
    """Merge per-scene GeoPackages into one layer with a ``scene`` column, atomically.

    Polygons keep their attributes (``class_id``, ``class_name``, ``area_m2``); scenes in
    another CRS than the first are reprojected to it. The layer gets the QGIS style of the
    first part. The file is replaced if it exists: it is derived from the per-scene files.

    Args:
        parts: ``(scene, GeoPackage)`` pairs, in order.
        out: the merged GeoPackage.

    Raises:
        InputError: no parts, or a part is not a GeoPackage written by glgeo.
        OutputError: the merged file cannot be written.
    """
    import pyogrio

    out_path = Path(out)
    if not parts:
        raise InputError("no scene was vectorized, so there is nothing to merge; see the manifest for why")
    if not out_path.parent.is_dir():
        raise OutputError(f"output folder {str(out_path.parent)!r} does not exist; create it first")
    layer = out_path.stem
    crs = None
    started = time.perf_counter()
    n_features = 0
    with atomic_path(out_path, suffix=VECTOR_SUFFIX) as tmp:
        for scene, part in parts:
            try:
                source = _feature_layer(part)
                info = pyogrio.read_info(part, layer=source)
            except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError, OSError) as exc:
                raise InputError(f"cannot read {str(part)!r} to merge it: {exc}") from None
            if crs is None:
                crs = info["crs"]
            offset = 0
            while True:
                frame = pyogrio.read_dataframe(part, layer=source, skip_features=offset, max_features=_MERGE_CHUNK)
                if frame.crs is not None and crs is not None and frame.crs != crs:
                    frame = frame.to_crs(crs)
                frame.insert(0, "scene", scene_stem(scene))
                if len(frame) or not tmp.exists():  # an empty first part still creates the layer
                    _append(frame, tmp, layer, out_path)
                n_features += len(frame)
                offset += _MERGE_CHUNK
                if offset >= info["features"]:
                    break
        _copy_style(parts[0][1], tmp, layer)
    log.info("merged %d polygons of %d scenes into %s in %.1f s", n_features, len(parts), out_path, time.perf_counter() - started)
    return out_path


def _feature_layer(path: Path) -> str:
    """The polygon layer of a GeoPackage written by :func:`glgeo.vectorize.vectorize`."""
    import pyogrio

    layers = [name for name, geometry in pyogrio.list_layers(path) if geometry and name != "layer_styles"]
    if not layers:
        raise InputError(f"{str(path)!r} holds no polygon layer; remove it so the scene is vectorized again")
    return str(layers[0])


def _append(frame: Any, tmp: Path, layer: str, out_path: Path) -> None:
    import pyogrio

    created = tmp.exists()
    try:
        pyogrio.write_dataframe(
            frame,
            tmp,
            layer=layer,
            driver="GPKG",
            append=created,
            geometry_type="Polygon",
            promote_to_multi=False,
            # GeoPackage 1.2, as glgeo.vectorize writes: read by the GDAL of older QGIS.
            **({} if created else {"dataset_options": {"VERSION": "1.2"}}),
        )
    except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError, OSError) as exc:
        raise OutputError(f"cannot write {str(out_path)!r}: {exc}") from None


def _copy_style(source: Path, target: Path, layer: str) -> None:
    """Give ``layer`` in ``target`` the default QGIS style of ``source``'s layer."""
    import sqlite3

    from .styles import write_gpkg_layer_style

    try:
        with sqlite3.connect(f"file:{source}?mode=ro", uri=True) as db:
            row = db.execute("SELECT styleQML FROM layer_styles WHERE useAsDefault ORDER BY id DESC LIMIT 1").fetchone()
    except sqlite3.Error:
        row = None
    if row and row[0]:
        write_gpkg_layer_style(target, layer, row[0], description="glgeo classes (merged scenes)")
    else:
        log.warning("%s has no QGIS style to copy; the merged layer opens unstyled", source)
