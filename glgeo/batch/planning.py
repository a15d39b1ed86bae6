"""Jobs: one per scene, its outputs named after it; the batch's options; which scenes are
already done (decided before any cluster starts)."""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from ..errors import InputError
from ..inference import InferenceSettings
from ..writer import OutputOptions
from .inputs import is_remote, scene_stem

log = logging.getLogger("glgeo.batch")

#: Suffix of the per-scene class rasters and GeoPackages written into the output folder.
RASTER_SUFFIX = ".tif"
VECTOR_SUFFIX = ".gpkg"
#: A scene's GeoPackage is ``<stem>-polygons.gpkg``: QGIS would show the class raster's
#: ``<stem>.qmd`` as the metadata of a ``<stem>.gpkg`` beside it.
VECTOR_NAME_END = f"-polygons{VECTOR_SUFFIX}"
#: What a scene's outputs are, after its stem: the class raster, its sidecars, the GeoPackage.
_OUTPUT_SUFFIXES = (RASTER_SUFFIX, f"{RASTER_SUFFIX}.aux.xml", ".qml", ".qmd", VECTOR_NAME_END)


def vector_path(output: Path) -> Path:
    """The GeoPackage of the scene whose class raster is ``output`` (``<stem>-polygons.gpkg``)."""
    return output.with_name(output.stem + VECTOR_NAME_END)


@dataclass(frozen=True)
class SceneJob:
    """One scene of a batch and the outputs it gets.

    Attributes:
        scene: the input (a path or URL, as rasterio opens it).
        output: the class raster (``<out_dir>/<stem>.tif``).
        vector: the scene's GeoPackage (``<out_dir>/<stem>-polygons.gpkg``), or ``None``
            when not vectorizing.
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
    for scene in _without_own_outputs(scenes, out):
        stem = scene_stem(scene)
        if stem in by_stem:
            raise InputError(
                f"scenes {by_stem[stem]!r} and {scene!r} would both write {stem}{RASTER_SUFFIX}; "
                "rename one, or run them into different out_dir folders"
            )
        by_stem[stem] = scene
        output = out / f"{stem}{RASTER_SUFFIX}"
        job = SceneJob(scene, output, vector_path(output) if vector else None)
        if not is_remote(scene):
            for target in job.outputs:
                if os.path.abspath(target) == os.path.abspath(scene):
                    raise InputError(f"output {str(target)!r} would replace the scene itself; choose another out_dir")
        jobs.append(job)
    return jobs


def _without_own_outputs(scenes: Sequence[str], out: Path) -> list[str]:
    """``scenes`` less the files an earlier run of the same batch wrote into ``out``: an
    output folder inside a globbed input folder (``data/**/*.tif`` into ``data/maps``) must
    not make the rerun that resumes the batch see its own outputs as scenes."""
    folder = os.path.abspath(out)
    theirs = {
        os.path.join(folder, scene_stem(scene) + suffix)
        for scene in scenes
        if is_remote(scene) or os.path.dirname(os.path.abspath(scene)) != folder
        for suffix in _OUTPUT_SUFFIXES
    }
    kept = [scene for scene in scenes if is_remote(scene) or os.path.abspath(scene) not in theirs]
    if len(kept) < len(scenes):
        left_out = [scene for scene in scenes if scene not in kept]
        log.warning(
            "left out %d files in the output folder %s that are outputs of this batch's scenes (e.g. %s)",
            len(left_out), out, left_out[0],
        )
    return kept


@dataclass(frozen=True)
class BatchOptions:
    """How each scene is segmented, and what a batch does around it.

    Attributes:
        settings: inference settings shared by every scene. ``device`` ``auto``/``cuda`` is
            resolved per worker (see :func:`worker_device`).
        bands: 1-based bands fed as RGB (default: each scene's non-alpha bands).
        scheme: fail scenes unless the model predicts this class scheme.
        output_options: tiling, compression and COG conversion of the class rasters.
        vector: also vectorize each scene into ``<out_dir>/<stem>-polygons.gpkg`` in the same task.
        vector_merge: after the run, merge the per-scene polygons (with a ``scene``
            column) into this GeoPackage; implies ``vector``.
        overwrite: segment scenes whose outputs exist (default: skip them).
        retries: how often a scene is retried after an unexpected error or a dead worker.
        manifest: where to write the run's manifest (``.json`` or ``.csv``), or ``None``.
        torch_threads: CPU threads per scene; ``None``: CPU cores / local workers for a
            local cluster, torch's default elsewhere (1 in a Dask worker started by a
            nanny, which sets ``OMP_NUM_THREADS=1``).
        manifest_wording: how the manifest words glgeo's errors and warnings, which name
            Python arguments (``pass overwrite=True``): the command line gives its flags'
            terms (``pass --overwrite``); ``None``: as glgeo says them. Used in this
            process only (the manifest is written here).
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
    manifest_wording: Callable[[str], str] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.retries, bool) or not isinstance(self.retries, int) or self.retries < 0:
            raise InputError(f"retries must be 0 or more, got {self.retries!r}")
        if self.torch_threads is not None and self.torch_threads < 1:
            raise InputError(f"torch threads must be 1 or more, got {self.torch_threads}")
        if self.vector_merge is not None:
            merge = Path(self.vector_merge)
            if merge.suffix.lower() != VECTOR_SUFFIX:
                raise InputError(f"vector_merge={str(merge)!r} must be a GeoPackage (.gpkg)")
            object.__setattr__(self, "vector_merge", merge)
            object.__setattr__(self, "vector", True)
        if self.output_options.format is not None and self.output_options.format.upper() not in ("COG", "GTIFF"):
            raise InputError(
                f"format={self.output_options.format!r}: a batch writes each scene as <name>.tif; choose COG or GTiff"
            )
        if self.manifest is not None:
            manifest = Path(self.manifest)
            if manifest.suffix.lower() not in (".json", ".csv"):
                raise InputError(f"manifest {str(manifest)!r} must end in .json or .csv")
            object.__setattr__(self, "manifest", manifest)


# a temporary file and what GDAL writes beside it: ``.<stem>.<token>.copy.tif.aux.xml``,
# ``.<stem>.<token>.copy.tif.ovr.tmp`` (a COG's overviews being built); not a GeoPackage's,
# which another scene's may be (scene ``a``'s ``a-polygons.gpkg`` beside scene ``a-polygons``)
_PARTIAL = r"^\.{stem}(?:\.tif\.aux)?\.[^.]+\.(?:part|stage|cog|copy)(?:\.(?!gpkg)[^.]+){{0,3}}$"
# the scene's GeoPackage being written, with SQLite's journal files
_PARTIAL_VECTOR = r"^\.{stem}\.[^.]+\.part\.gpkg(?:-journal|-wal|-shm)?$"


def remove_partials(job: SceneJob, *, quiet: bool = False) -> int:
    """Remove temporary files an interrupted attempt at ``job`` left in its folder.

    Only hidden files named as glgeo's atomic writers name them for this scene's outputs
    (``.<stem>.<token>.part.tif``, ``.<stem>.<token>.stage.tif``,
    ``.<stem>-polygons.<token>.part.gpkg`` ...) are touched, and the sidecars of a class
    raster that is not there (``<stem>.qml``, ``<stem>.qmd``, ``<stem>.tif.aux.xml``: left
    when the raster was deleted to have the scene computed again, they would stop it).

    Args:
        job: the scene.
        quiet: say what was removed only at DEBUG level (the batch cleaning up after its own
            interruption), not as a warning.

    Returns:
        How many partial files were removed (the sidecars are not counted).
    """
    folder = job.output.parent
    patterns = [re.compile(_PARTIAL.format(stem=re.escape(job.output.stem)))]
    if job.vector is not None:
        patterns.append(re.compile(_PARTIAL_VECTOR.format(stem=re.escape(job.vector.stem))))
    removed = 0
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    orphans = set()
    if not job.output.exists():
        from ..writer import sidecar_paths

        orphans = {p.name for p in sidecar_paths(job.output)}
    sidecars = 0
    for entry in entries:
        orphan = entry.name in orphans
        if entry.is_file(follow_symlinks=False) and (orphan or any(p.match(entry.name) for p in patterns)):
            try:
                os.unlink(entry.path)
            except FileNotFoundError:
                continue
            sidecars += orphan
            removed += not orphan
    if sidecars:
        log.log(logging.DEBUG if quiet else logging.INFO,
                "removed %d sidecars of %s, whose class raster is not there, to compute it again", sidecars, job.output)
    if removed:
        log.log(logging.DEBUG if quiet else logging.WARNING,
                "removed %d partial files of an interrupted attempt at %s", removed, job.scene)
    return removed


def outputs_done(job: SceneJob, options: BatchOptions) -> tuple[bool, bool]:
    """``(raster done, vector done)``: whether each output of ``job`` is already there
    (and kept: not ``overwrite``). Outputs are written atomically, so there means complete."""
    raster_done = job.output.is_file() and not options.overwrite
    vector_done = job.vector is None or (job.vector.is_file() and not options.overwrite)
    return raster_done, vector_done


def kept_otherwise(output: Path, output_options: OutputOptions) -> str | None:
    """How a finished class raster that a rerun keeps differs from what this run's creation
    options ask, where the file says: its bits per pixel (``NBITS``, and with it its nodata
    value) and its compression (``COMPRESS``). ``None`` when it does not, or nothing
    checkable was asked. Output options do not change the classes, so a finished output is
    kept as it was written; this says so instead of letting the options seem applied."""
    asked = {k.upper(): str(v) for k, v in output_options.creation_options}
    wanted = {key: asked[key] for key in ("NBITS", "COMPRESS") if key in asked}
    if not wanted:
        return None
    import numpy as np
    import rasterio

    try:
        with rasterio.open(output) as src:
            structure = src.tags(ns="IMAGE_STRUCTURE")
            bits = src.tags(1, ns="IMAGE_STRUCTURE").get("NBITS")  # a band's; none: whole bytes
            has = {"NBITS": bits or str(8 * np.dtype(src.dtypes[0]).itemsize),
                   "COMPRESS": structure.get("COMPRESSION", "NONE")}
    except rasterio.errors.RasterioIOError:
        return None  # an unreadable output is said where its areas are read
    differs = [f"{key}={has[key]}, this run asked {key}={value}" for key, value in wanted.items()
               if has[key].upper() != value.upper()]
    return "; ".join(differs) or None
