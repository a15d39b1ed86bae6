"""``glgeo.segment``: one scene in, a georeferenced, QGIS-ready class raster out.

Example:
    >>> import glgeo
    >>> summary = glgeo.segment("scene.tif", "landcover.tif", model="model.pt")  # doctest: +SKIP
    >>> summary.class_areas  # doctest: +SKIP
    {'urban': 1520.25, 'agriculture': 80211.0, ...}
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import rasterio

from .atomic import check_output_path
from ._callable import make_module_callable
from .errors import CheckpointError, InputError, OutputError
from .blend import RowBand, ToSceneGrid
from .inference import InferenceSettings, InferenceStats, ProgressCallback, StreamingSegmenter
from .io import SceneInfo, SceneReader, inspect_scene, working_grid
from .schemes import NODATA_ID
from .writer import ClassRasterWriter, OutputOptions

log = logging.getLogger(__name__)

#: Bands GLNet takes (RGB).
MODEL_BANDS = 3


@dataclass(frozen=True)
class ClassArea:
    """How much of the scene one class covers.

    Attributes:
        id: class id in the raster.
        name: class name.
        pixels: pixels of that class.
        area: area in map units squared (pixels for scenes without a CRS).
        fraction: share of the valid pixels.
    """

    id: int
    name: str
    pixels: int
    area: float
    fraction: float


@dataclass(frozen=True)
class SegmentSummary:
    """What :func:`segment` wrote and how long it took.

    Attributes:
        scene: the input.
        output: the class raster written.
        probabilities: the score raster written, if any.
        height: rows of the scene (and output).
        width: columns.
        crs: the CRS as a string (``None`` for plain images).
        area_unit: unit of :attr:`ClassArea.area` (``"metre^2"``, ``"pixel"`` ...).
        classes: area per class, by id.
        nodata_pixels: pixels written as nodata (255).
        model: the checkpoint used.
        stats: what the engine did (mode, device, patches computed/skipped, timings).
        scale: the fraction of the scene's resolution the model ran at (1: full).
    """

    scene: str
    output: Path
    probabilities: Path | None
    height: int
    width: int
    crs: str | None
    area_unit: str
    classes: tuple[ClassArea, ...]
    nodata_pixels: int
    model: str
    stats: InferenceStats = field(repr=False)
    scale: float = 1.0

    @property
    def class_areas(self) -> dict[str, float]:
        """Area per class name, in :attr:`area_unit`."""
        return {c.name: c.area for c in self.classes}

    @property
    def seconds(self) -> float:
        """Wall time of the run (reading, network, blending, writing, COG conversion)."""
        return self.stats.timings.total

    @property
    def megapixels_per_second(self) -> float:
        """Scene megapixels segmented per second of :attr:`seconds`."""
        return self.height * self.width / 1e6 / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able summary."""
        s = self.stats
        return {
            "scene": self.scene,
            "output": str(self.output),
            "probabilities": str(self.probabilities) if self.probabilities else None,
            "size": [self.height, self.width],
            "crs": self.crs,
            "area_unit": self.area_unit,
            "classes": [c.__dict__ for c in self.classes],
            "nodata_pixels": self.nodata_pixels,
            "model": self.model,
            "scale": self.scale,
            "mode": s.mode,
            "device": s.device,
            "precision": s.precision,
            "patches": s.patches,
            "batch_size": s.batch_size,
            "patches_computed": s.computed,
            "patches_skipped_nodata": s.skipped_nodata,
            "patches_skipped_coarse_to_fine": s.skipped_c2f,
            "stretch": s.stretch,
            "timings_s": s.timings.as_dict(),
            "megapixels_per_second": round(self.megapixels_per_second, 4),
        }


def _area_unit(info: SceneInfo) -> str:
    if info.crs is None:
        return "pixel"
    try:
        unit = info.crs.linear_units
    except Exception:  # pyproj-less CRS objects may not know their units
        unit = "unknown"
    return f"{unit}^2" if unit and unit != "unknown" else "map unit^2"


def _same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


def load_model(model: Any, map_location: str = "cpu"):
    """A :class:`glgeo.models.checkpoint.Checkpoint` from a zoo name, a path or a loaded one."""
    from glgeo.models.checkpoint import Checkpoint, load_checkpoint

    if isinstance(model, Checkpoint):
        return model
    if isinstance(model, (str, os.PathLike)):
        return load_checkpoint(model, map_location=map_location)
    raise InputError(f"model must be a zoo name, a checkpoint path or a loaded Checkpoint, not {type(model).__name__}")


#: Scenes within this share of the model's resolution are read as they are.
SCALE_TOLERANCE = 0.05

#: Smallest side, in pixels, of a scene read at a model's coarser resolution.
MIN_WORKING_SIDE = 16


def reading_scale(checkpoint, info: SceneInfo) -> float:
    """The fraction of its resolution a scene is read at for a model (the default of
    ``InferenceSettings.scale``).

    With both ground sample distances known (the model's from its training data,
    :attr:`~glgeo.models.checkpoint.Checkpoint.gsd`; the scene's from its CRS and
    transform), the scene is read at the model's resolution: ``scene_gsd / model_gsd``,
    never above 1 (a scene coarser than the model's imagery is read as it is, with a
    warning), and 1 within :data:`SCALE_TOLERANCE`. Otherwise (plain images, CRSs without
    units, models that do not say) the scale the model was trained at, which assumes
    imagery of its training data's resolution.
    """
    model_gsd, scene_gsd = checkpoint.gsd, info.gsd
    if model_gsd is None or scene_gsd is None:
        if checkpoint.scene_scale != 1:
            log.info(
                "reading %s at %g of its resolution, as the model was trained%s",
                info.path, checkpoint.scene_scale,
                "" if model_gsd is None else f" (its imagery: {model_gsd:g} m; this scene's resolution is unknown)",
            )
        return checkpoint.scene_scale
    scale = scene_gsd / model_gsd
    if scale > 1 + SCALE_TOLERANCE:
        log.warning(
            "%s has %.3g m pixels, coarser than the %.3g m the model was trained on: predictions may be poor; "
            "choose a model trained for this resolution",
            info.path, scene_gsd, model_gsd,
        )
    if scale >= 1 - SCALE_TOLERANCE:
        return 1.0
    log.info("%s has %.3g m pixels: read at the model's %.3g m (scale %.3g)", info.path, scene_gsd, model_gsd, scale)
    return scale


#: A global-only model warns when a scene's global image is this many times coarser (or
#: finer) than the global images it was trained on.
GLOBAL_RESOLUTION_FACTOR = 2.0


def global_resolution_warning(checkpoint, info: SceneInfo, mode: str, global_size: int) -> str | None:
    """Why a model run in ``global`` mode may do poorly on this scene, or ``None``.

    The global branch sees the whole scene as one ``global_size`` image, so its pixels are
    ``scene extent / global_size`` on the ground whatever the scene's own resolution. A
    global-only model trained on scenes of one size (``metadata.training.global_gsd_m``)
    does well only on scenes of a similar extent; far larger scenes come out coarse, far
    smaller ones over-smoothed. Needs the scene's ground sample distance (georeferenced
    scenes in a projected or geographic CRS).
    """
    training = checkpoint.metadata.get("training")
    trained = training.get("global_gsd_m") if isinstance(training, dict) else None
    if mode != "global" or info.gsd is None or not isinstance(trained, (int, float)) or not trained > 0:
        return None
    seen = max(info.width, info.height) * info.gsd / global_size
    if seen > trained * GLOBAL_RESOLUTION_FACTOR or seen < trained / GLOBAL_RESOLUTION_FACTOR:
        extent_km = trained * global_size / 1000
        return (
            f"{info.path}: this model predicts from one {global_size} px image of the whole scene, "
            f"here {seen:.3g} m per pixel; it was trained on scenes of about {extent_km:.2g} km "
            f"({trained:.3g} m per pixel): cut the scene into tiles of about {extent_km:.2g} km, "
            "or use a model with a local branch"
        )
    return None


def segment(
    scene: str | os.PathLike,
    out: str | os.PathLike,
    *,
    model: Any = "deepglobe-landcover",
    bands: tuple[int, ...] | None = None,
    settings: InferenceSettings = InferenceSettings(),
    probabilities: str | os.PathLike | None = None,
    scheme: str | None = None,
    overwrite: bool = False,
    output_options: OutputOptions = OutputOptions(),
    progress: ProgressCallback | None = None,
    tta: bool = False,
) -> SegmentSummary:
    """Segment a scene with GLNet into a class raster on the scene's own grid.

    Args:
        scene: anything rasterio opens (GeoTIFF, COG, VRT, JPEG/PNG, ``/vsicurl/`` URL).
        out: the class raster to write (a COG: uint8 class ids, nodata 255, colour table,
            ``.qml`` and ``.aux.xml`` sidecars).
        model: a zoo model name, a glgeo checkpoint file, or a loaded ``Checkpoint``.
        bands: 1-based bands to feed as RGB (default: the scene's non-alpha bands).
        settings: patch geometry, scale, mode, device, precision, batching (see
            :class:`~glgeo.inference.InferenceSettings`). A model trained on scenes read at
            a fraction of their resolution (``glgeo train --scale``) reads this one the
            same way unless ``settings.scale`` says otherwise (1: imagery already that
            coarse); the output is on the scene's own grid either way.
        probabilities: also write per-class uint8 scores (softmax x 255) here.
        scheme: the class scheme the caller expects (``deepglobe``, ``inria`` ...): a model
            predicting another scheme is an error. ``None``: the model's.
        overwrite: replace existing outputs.
        output_options: tiling, compression and COG conversion of the outputs.
        progress: ``progress(done, total)`` as patches are processed.
        tta: test-time augmentation: the prediction averaged over the eight flips and
            quarter turns of the global image (:mod:`glgeo.tta`; ``global`` mode only,
            eight times the global branch's cost).

    Returns:
        A :class:`SegmentSummary` with class areas in map units and timings.

    Raises:
        SceneError: the scene is missing, unreadable or not a raster.
        InputError: bad bands, settings or a model/scheme mismatch.
        OutputError: an output exists (without ``overwrite``), equals the input, or its
            folder is missing.
        CheckpointError: the model cannot be loaded.
    """
    for target in (out, probabilities):
        # checked here too: atomic.check_output_path's OSError guard swallows this error
        if target is not None and _same_file(target, scene):
            raise OutputError(f"output {str(target)!r} is the same file as the input; choose another name")
    out_path = check_output_path(out, overwrite=overwrite, inputs=(scene,))
    scores_path = None
    if probabilities is not None:
        scores_path = check_output_path(probabilities, overwrite=overwrite, inputs=(scene,))
        if scores_path.resolve() == out_path.resolve():
            raise OutputError("--probabilities must name a different file than the class raster")
    info = inspect_scene(scene, bands, needed=MODEL_BANDS)
    if not info.is_georeferenced:
        log.warning("%s has no georeferencing: the output has none either and areas are in pixels", info.path)
    checkpoint = load_model(model)
    if scheme is not None and checkpoint.scheme.name != scheme:
        raise InputError(
            f"model {str(model)!r} predicts the {checkpoint.scheme.name!r} classes, not {scheme!r}; "
            "choose a model trained for that scheme"
        )
    if checkpoint.scheme.n_classes != checkpoint.model.config.n_classes:
        raise CheckpointError(
            f"model predicts {checkpoint.model.config.n_classes} classes but its scheme "
            f"{checkpoint.scheme.name!r} has {checkpoint.scheme.n_classes}"
        )
    scale = reading_scale(checkpoint, info) if settings.scale is None else settings.scale
    if scale < 1:
        grid = working_grid(info, scale)
        if min(grid.height, grid.width) < MIN_WORKING_SIDE:
            raise InputError(
                f"read at {scale:.3g} of its resolution (the model's {checkpoint.gsd or '?'} m per pixel), "
                f"{info.path} is only {grid.width} x {grid.height} px, too small to segment; pass --scale 1 "
                "to run the model on it as it is"
            )
    if settings.mode is None:  # the mode it was trained for (an earlier stage's checkpoint: not its architecture's)
        settings = replace(settings, mode=checkpoint.mode)
    warning = global_resolution_warning(checkpoint, info, settings.mode, settings.global_size or checkpoint.global_size)
    if warning:
        log.warning(warning)
    network = checkpoint.model
    if tta:
        from .tta import FlipRotateTTA

        network = FlipRotateTTA(network)
    engine = StreamingSegmenter(
        network,
        settings,
        patch_size=checkpoint.patch_size,
        global_size=checkpoint.global_size,
        scaling=(checkpoint.input_scaling.min, checkpoint.input_scaling.max),
    )
    log.info(
        "segmenting %s (%d x %d, bands %s) with %s, mode %s on %s",
        info.path, info.width, info.height, info.bands, checkpoint.model.config.backbone, engine.mode, engine.device,
    )
    if scale != 1:
        log.info("the model runs at %.3g of the scene's resolution; the output keeps the scene's grid", scale)
    class_scheme, source = checkpoint.scheme, str(checkpoint.path or model)
    # The engine runs its own inference copy of the network: drop this function's
    # references to the original, so a model loaded here (or handed over with no other
    # reference, ``segment(..., model=load_model(path))``) is not held in fp32 for the whole
    # run. A Checkpoint the caller keeps stays theirs, untouched.
    del checkpoint
    model = source
    counts = np.zeros(256, dtype=np.int64)

    # One fixed GDAL block cache for reading, writing and the COG conversion: GDAL's default
    # (5 % of RAM) would let resident memory grow with the scene up to that size.
    with rasterio.Env(GDAL_CACHEMAX=settings.gdal_cache_mb * 2**20), ClassRasterWriter(
        out_path, info, class_scheme, scores_path, output_options
    ) as writer:

        def sink(band: RowBand) -> None:
            # in slices: bincount copies its input to int64 (8 bytes a pixel)
            for top in range(0, band.height, 32):
                counts[:] += np.bincount(band.classes[top : top + 32].ravel(), minlength=256)
            writer.write(band)

        with SceneReader(info, scale=scale) as reader:
            grid = reader.info
            with_scores = scores_path is not None
            if grid is not info:
                # predictions on the coarser working grid, written on the scene's own: scores
                # interpolated between working pixels (as patch logits reach their pixels)
                sink = ToSceneGrid(
                    (grid.height, grid.width), (info.height, info.width), sink,
                    reader.read_source_valid if info.has_mask else None,
                    interpolation=settings.logit_upsampling, scores=with_scores,
                )
                with_scores = with_scores or settings.logit_upsampling == "bilinear"
            stats = engine.run(reader, sink, scores=with_scores, progress=progress)
        start = time.perf_counter()
        writer.commit()
        finish = time.perf_counter() - start
        stats.timings.write += finish
        stats.timings.total += finish

    valid = int(counts[:NODATA_ID].sum())
    pixel_area = info.pixel_area if info.crs is not None else 1.0
    classes = tuple(
        ClassArea(
            id=c.id,
            name=c.name,
            pixels=int(counts[c.id]),
            area=float(counts[c.id] * pixel_area),
            fraction=float(counts[c.id] / valid) if valid else 0.0,
        )
        for c in class_scheme.classes
    )
    summary = SegmentSummary(
        scene=info.path,
        output=out_path,
        probabilities=scores_path,
        height=info.height,
        width=info.width,
        crs=info.crs.to_string() if info.crs is not None else None,
        area_unit=_area_unit(info),
        classes=classes,
        nodata_pixels=int(counts[NODATA_ID]),
        model=source,
        stats=stats,
        scale=scale,
    )
    log.info("wrote %s in %.1f s (%.2f MP/s)", out_path, summary.seconds, summary.megapixels_per_second)
    return summary


make_module_callable(__name__, segment)
