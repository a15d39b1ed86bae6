"""Many scenes, many machines: batch segmentation, one task per scene; or one giant
scene, one task per block of its context windows (:func:`run_split`,
:mod:`~glgeo.batch.split`).

:func:`run_batch` turns a list of inputs into one task per scene and runs them

* on an existing Dask cluster (``scheduler="tcp://host:8786"`` or a
  ``distributed.Client``): local, SSH, HPC job queues through dask-jobqueue, Kubernetes;
* on a local cluster of ``workers`` processes started for the run (``workers > 1``);
* in this process, one scene after the other (``workers=1``: no Dask needed).

Dask (``dask[distributed]``, installed with glgeo) is imported only for the first
two. Every task

* skips its scene when the outputs already exist: outputs are written atomically (see
  :mod:`glgeo.atomic`), so "exists" means "complete" and a rerun resumes a stopped batch;
* removes what an interrupted attempt at the same scene left behind (hidden ``.part``,
  ``.stage`` and ``.cog`` temporary files of that scene only);
* loads the checkpoint once per worker process and keeps it (:func:`cached_model`), and on
  a machine with several GPUs uses the GPU that matches the worker (:func:`worker_device`);
* reports what it did as a :class:`SceneResult` (status, outputs, class areas, seconds,
  worker, error), never an exception: a scene with a bad input fails alone.

Scenes whose outputs are all there are skipped before any Dask cluster starts: a rerun of
a finished batch starts none. Dask's own log lines show only with ``-v`` (the ``glgeo``
logger at INFO).

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

The package has one module per concept: :mod:`~glgeo.batch.inputs` (paths, globs, lists),
:mod:`~glgeo.batch.planning` (jobs, options, what is already done),
:mod:`~glgeo.batch.manifest` (results and the manifest file), :mod:`~glgeo.batch.worker`
(model cache, devices, the per-scene task), :mod:`~glgeo.batch.scheduling` (in-process,
local or remote Dask), :mod:`~glgeo.batch.merge` (the merged GeoPackage) and
:mod:`~glgeo.batch.split` (one scene's blocks as tasks).
"""

from __future__ import annotations

from .inputs import expand_inputs, is_remote, read_input_list, scene_stem
from .manifest import BatchResult, BlockResult, SceneResult, Status, read_manifest, write_manifest
from .merge import merge_vectors
from .planning import RASTER_SUFFIX, VECTOR_SUFFIX, BatchOptions, SceneJob, outputs_done, plan_jobs, remove_partials
from .scheduling import MANIFEST_INTERVAL_S, open_client, require_distributed, run_batch
from .split import SplitJob, SplitResult, blocks_folder, process_block, run_split
from .worker import cached_model, class_areas_of, process_scene, worker_device

__all__ = [
    "BatchOptions",
    "BatchResult",
    "BlockResult",
    "MANIFEST_INTERVAL_S",
    "RASTER_SUFFIX",
    "SceneJob",
    "SceneResult",
    "SplitJob",
    "SplitResult",
    "Status",
    "VECTOR_SUFFIX",
    "blocks_folder",
    "cached_model",
    "class_areas_of",
    "expand_inputs",
    "is_remote",
    "merge_vectors",
    "open_client",
    "outputs_done",
    "plan_jobs",
    "process_block",
    "process_scene",
    "read_input_list",
    "read_manifest",
    "remove_partials",
    "require_distributed",
    "run_batch",
    "run_split",
    "scene_stem",
    "worker_device",
    "write_manifest",
]
