"""``glgeo.segment``: one scene in, a georeferenced, QGIS-ready class raster out.

Example:
    >>> import glgeo
    >>> summary = glgeo.segment("scene.tif", "landcover.tif", model="model.pt")  # doctest: +SKIP
    >>> summary.class_areas  # doctest: +SKIP
    {'urban': 1520.25, 'agriculture': 80211.0, ...}
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import rasterio

from .aoi import aoi_files, region_in_pixels
from .areas import AreaTally, ClassArea, PixelAreas
from .atomic import check_output_path
from .errors import CheckpointError, InputError, OutputError, UnknownNameError
from .blend import WORKING_SCORE_DTYPE, RowBand, ToSceneGrid
from .inference import InferenceSettings, InferenceStats, StreamingSegmenter
from .progress import ProgressCallback
from .io import SceneInfo, SceneReader, inspect_scene, warn_if_alpha_holds_data, warn_if_black_edges, working_grid
from .provenance import Provenance, blend_rule, context_rule, file_sha256, options_rule, scene_stamp, utc_now
from .resolution import (
    Scale, coarseness, describe_scale, is_full_resolution, reading_gsd, run_scale, scale_json, warn_if_stretched,
)
from .schemes import NODATA_ID, list_schemes
from .writer import ClassRasterWriter, OutputOptions, output_driver, sidecar_paths

log = logging.getLogger(__name__)

#: Bands GLNet takes (RGB).
MODEL_BANDS = 3


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
        area_unit: unit of :attr:`ClassArea.area`: ``"m2"`` (on the ground, in any CRS:
            see :class:`glgeo.areas.PixelAreas`), ``"px"`` (plain images) or ``"map unit2"``
            (a transform without a CRS).
        classes: area per class, by id.
        nodata_pixels: pixels written as nodata.
        model: the checkpoint used.
        stats: what the engine did (mode, device, patches computed/skipped, timings).
        scale: the fraction of the scene's resolution the model ran at (1: full;
            ``(rows, cols)`` where each axis was read at its own,
            :func:`glgeo.resolution.reading_scale`).
        provenance: what the outputs' metadata says made them (model, its SHA-256,
            glgeo version, mode, precision, reading scale and GSD, blend rule, date).
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
    scale: Scale = 1.0
    provenance: Provenance | None = None

    @property
    def class_areas(self) -> dict[str, float]:
        """Area per class name, in :attr:`area_unit`."""
        return {c.name: c.area for c in self.classes}

    @property
    def model_name(self) -> str:
        """The model as the outputs' metadata names it (zoo name or checkpoint file name)."""
        return self.provenance.model if self.provenance is not None else self.model

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
            "scale": scale_json(self.scale),
            "mode": s.mode,
            "device": s.device,
            "precision": s.precision,
            "patches": s.patches,
            "context_windows": s.windows,
            "context_windows_skipped_nodata": s.skipped_windows,
            "footprint": s.footprint,
            "blend": s.blend,
            "batch_size": s.batch_size,
            "patches_computed": s.computed,
            "patches_skipped_nodata": s.skipped_nodata,
            "patches_skipped_coarse_to_fine": s.skipped_c2f,
            "stretch": s.stretch,
            "timings_s": s.timings.as_dict(),
            "megapixels_per_second": round(self.megapixels_per_second, 4),
            "provenance": self.provenance.to_dict() if self.provenance is not None else None,
        }


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


def model_identity(model: Any, checkpoint: Any) -> tuple[str, str]:
    """``(name, sha256)`` of a model: its zoo name or file name, and its file's SHA-256
    (empty for a checkpoint never saved)."""
    from glgeo.models.zoo import ZOO_DIR

    path = getattr(checkpoint, "path", None)
    if path is None:
        return "unsaved checkpoint", ""
    path = Path(path)
    if path.parent.resolve() == ZOO_DIR.resolve():
        name = path.stem
    else:
        name = path.name
    try:
        return name, file_sha256(path)
    except OSError:
        return name, ""


def installed_version() -> str:
    """The version of the glgeo that writes an output (its provenance's ``GLGEO_VERSION``)."""
    from glgeo import __version__

    return __version__


#: A global-only model warns when a scene's global image is this many times coarser (or
#: finer) than the global images it was trained on.
GLOBAL_RESOLUTION_FACTOR = 2.0


#: What :func:`segment` warns of a scene without georeferencing (callers whose outputs are
#: temporary, as :func:`glgeo.evaluate_model`'s, leave it out).
PLAIN_OUTPUT_WARNING = "%s has no georeferencing: the output has none either and areas are in pixels"
#: A scene placed by rational polynomial coefficients only (a satellite scene before orthorectification).
RPC_OUTPUT_WARNING = (
    "%s is placed by rational polynomial coefficients (RPCs) only: the output carries the same RPCs, areas are in "
    "pixels and its resolution is unknown here (pass gsd=METRES); gdalwarp -rpc orthorectifies the scene, or the map"
)
#: ... and is read as imagery of the model's resolution (its GSD as the model assumes it).
PLAIN_OUTPUT_GSD_WARNING = PLAIN_OUTPUT_WARNING + (
    "; it is read as if its pixels were %.3g m on the ground, as the model's training imagery (pass gsd=METRES "
    "if they are not)"
)

#: ... of a scene with a geotransform (a world file) but no CRS.
NO_CRS_OUTPUT_WARNING = (
    "%s has a geotransform but no CRS: the output keeps the transform, without a CRS, and areas are in squared units "
    "of the transform; its pixel size (%.6g units) is not taken as metres (pass gsd=METRES if it is), and a CRS puts "
    "the map in place (gdal_edit.py -a_srs EPSG:CODE on the scene or the output)"
)
#: ... of a scene placed by ground control points only (no geotransform).
GCP_OUTPUT_WARNING = (
    "%s is placed by ground control points only: the output carries the same GCPs and areas are in pixels; %s, and "
    "gdalwarp makes a north-up scene of it"
)
#: What :func:`segment` warns of a map that holds no class (it names the map: callers whose
#: outputs are temporary, as :func:`glgeo.evaluate_model`'s, say it of the scene instead).
NO_CLASS_WARNING = "every pixel of %s is nodata%s: %s holds no class"


def model_bands(checkpoint) -> tuple[int, ...] | None:
    """The bands a scene is fed by default: those the model was trained on, where it records
    bands other than the first three (``None``: the scene's own default)."""
    bands = checkpoint.bands
    return None if bands is None or bands == (1, 2, 3) else bands


def check_model_scheme(checkpoint: Any, scheme: str | None, name: str | None = None) -> None:
    """Refuse a model that does not predict the class scheme called ``scheme`` (``None``:
    any), saying whether the name is one glgeo knows.

    Args:
        checkpoint: the loaded model (a :class:`glgeo.models.checkpoint.Checkpoint`).
        name: how the caller named the model (a zoo name or a path); default its file.

    Raises:
        UnknownNameError: ``scheme`` is neither a registered scheme nor the model's own.
        InputError: the model predicts another scheme.
    """
    if scheme is None or checkpoint.scheme.name == scheme:
        return
    label = name or (str(checkpoint.path) if checkpoint.path is not None else None)
    model = f"model {label!r}" if label else "the model"
    known = list_schemes()
    if scheme not in known:
        choices = sorted({*known, checkpoint.scheme.name})
        raise UnknownNameError(
            f"scheme={scheme!r} is no known class scheme; choose from: {', '.join(choices)} ({model} predicts"
            f" {checkpoint.scheme.name!r})"
        )
    raise InputError(
        f"{model} predicts the {checkpoint.scheme.name!r} classes, not {scheme!r}; choose a model trained for that scheme"
    )


#: A scene whose working grid is smaller than this share of a patch on both sides is warned
#: about: the model sees next to none of the context it learned from.
TINY_SCENE_SHARE = 0.25
#: A scene narrower than this share of a patch (on its working grid), however long, is
#: warned about too: a strip 1-3 px high of two Joplin tiles got the class the same row
#: gets in the tiles on 17 % of its pixels, and water where the tiles have none.
NARROW_SCENE_SHARE = 1 / 16


def warn_if_tiny(info: SceneInfo, scale: Scale, patch_size: int, model_gsd: float | None) -> None:
    """Warn when a scene is, at the model's resolution, smaller than :data:`TINY_SCENE_SHARE`
    of a patch on both sides (a 20 x 20 px crop of a 0.6 m tile is 6 x 6 px at the land-cover
    model's 2 m), or narrower than :data:`NARROW_SCENE_SHARE` of one however long (a strip
    of a few rows): its classes come from almost no context, and differ from those the same
    pixels get in the scene around them."""
    grid = working_grid(info, scale)
    at = f" at the model's {model_gsd:.3g} m" if model_gsd is not None and info.gsd is not None else " as the model reads it"
    if max(grid.height, grid.width) >= TINY_SCENE_SHARE * patch_size:
        if min(grid.height, grid.width) < NARROW_SCENE_SHARE * patch_size:
            log.warning(
                "%s is a strip only %d px across (%d x %d px%s), far narrower than one %d px patch: the model sees "
                "almost none of the context it learned from, so its classes here are unreliable; segment a larger "
                "scene around it and keep this part with aoi=FILE or bounds=(LEFT, BOTTOM, RIGHT, TOP)",
                info.path, min(grid.height, grid.width), grid.width, grid.height, at, patch_size,
            )
        return
    log.warning(
        "%s is only %d x %d px%s, far less than one %d px patch: the model sees almost none of the context it learned "
        "from, so its classes here are unreliable; segment a larger scene around it and keep this part with "
        "aoi=FILE or bounds=(LEFT, BOTTOM, RIGHT, TOP)", info.path, grid.width, grid.height, at, patch_size,
    )


def warn_of_the_scene(info: SceneInfo, checkpoint: Any, settings: InferenceSettings, scale: Scale) -> None:
    """Every warning about a scene itself, before it is segmented (in one process or split
    over workers): an output it cannot place, too small or too narrow for the model,
    undeclared black edges, an alpha band that holds data, pixels not square on the ground."""
    warn_of_an_unplaced_output(info, checkpoint, settings, scale)
    warn_if_tiny(info, scale, settings.patch_size or checkpoint.patch_size, checkpoint.gsd)
    warn_if_black_edges(info)
    warn_if_alpha_holds_data(info)
    warn_if_stretched(info, scale)


def warn_of_an_unplaced_output(info: SceneInfo, checkpoint: Any = None, settings: Any = None,
                                scale: Scale | None = None) -> None:
    """Warn when the output cannot be placed on a map as the scene is not: ground control
    points only, a transform without a CRS, or no georeferencing at all (every way a scene
    is segmented says it, in one process or split over workers). A plain image read at the
    scale the model was trained at (``scale``, no ``gsd`` or ``scale`` in ``settings``) is
    said to be taken as imagery of the model's resolution."""
    if info.gcps is not None:
        gsd = info.gsd
        log.warning(GCP_OUTPUT_WARNING, info.path, "its resolution is unknown here (pass gsd=METRES)" if gsd is None else
                    f"it is read as {gsd:.3g} m pixels, the size its GCPs give them")
    elif info.has_transform and not info.is_georeferenced:
        log.warning(NO_CRS_OUTPUT_WARNING, info.path, math.hypot(info.transform.a, info.transform.d))
    elif not info.is_georeferenced and info.rpcs is not None:
        log.warning(RPC_OUTPUT_WARNING, info.path)
    elif not info.is_georeferenced:
        gsd = getattr(checkpoint, "gsd", None)
        assumed = (settings is not None and settings.gsd is None and settings.scale is None
                   and isinstance(scale, (int, float)) and gsd is not None)
        if assumed:
            log.warning(PLAIN_OUTPUT_GSD_WARNING, info.path, gsd * scale)
        else:
            log.warning(PLAIN_OUTPUT_WARNING, info.path)


def warn_if_no_class(counts: np.ndarray, info: SceneInfo, out: Path) -> None:
    """Warn when a written map holds no class at all (``counts``: pixels per class id, 256
    long): a scene of nodata, or an area of interest over nodata only."""
    if not counts[:NODATA_ID].any():
        where = " or outside the area of interest" if info.region is not None else ""
        log.warning(NO_CLASS_WARNING, info.path, where, out)


def global_resolution_warning(
    checkpoint, info: SceneInfo, mode: str, global_size: int, footprint: int | None = None,
    global_view: str = "squeeze",
) -> str | None:
    """Why a model run in ``global`` mode may do poorly on this scene, or ``None``.

    The global branch sees each context window (the whole scene when it is smaller than
    the model's footprint) as one ``global_size`` image. Squeezed (``global_view="squeeze"``)
    its pixels are ``window extent / global_size`` on the ground; with the ``fixed`` view
    and a footprint, every window is seen at the full footprint's ``footprint extent /
    global_size``, whatever the scene's size. A global-only model trained on scenes of one
    size (``metadata.training.global_gsd_m``) does well only on views of a similar ground
    resolution: a squeezed scene far smaller than its footprint comes out over-smoothed,
    one seen whole (``footprint=0``) far coarser. Needs the scene's ground sample distance
    (georeferenced scenes in a projected or geographic CRS).

    Args:
        global_size: the global image side of a full window.
        footprint: the context footprint the run uses, in working px (``None``: the
            checkpoint's; 0: the whole scene is one window).
        global_view: the run's global view (:attr:`InferenceSettings.global_view`).
    """
    training = checkpoint.metadata.get("training")
    trained = training.get("global_gsd_m") if isinstance(training, dict) else None
    if mode != "global" or info.gsd is None or not isinstance(trained, (int, float)) or not trained > 0:
        return None
    extent = max(info.width, info.height) * info.gsd
    footprint = checkpoint.footprint if footprint is None else (footprint or None)
    if footprint and checkpoint.gsd:
        window = footprint * checkpoint.gsd
        # a larger scene is cut into windows; the fixed view keeps a full window's resolution
        extent = window if global_view == "fixed" else min(extent, window)
    seen = extent / global_size
    if seen > trained * GLOBAL_RESOLUTION_FACTOR or seen < trained / GLOBAL_RESOLUTION_FACTOR:
        extent_km = trained * global_size / 1000
        advice = (
            f"cut the scene into tiles of about {extent_km:.2g} km (footprint=...), or use a model with a local branch"
            if seen > trained
            else "segment scenes of at least that extent, or use a model with a local branch"
        )
        return (
            f"{info.path}: this model predicts each view from one {global_size} px image, here {seen:.3g} m per "
            f"pixel; it was trained on views of about {extent_km:.2g} km ({trained:.3g} m per pixel): {advice}"
        )
    return None


def check_sidecars(out: Path, overwrite: bool) -> None:
    """Refuse, without ``overwrite``, a class raster whose sidecars (``.qml``, ``.qmd``,
    ``.aux.xml``) already exist: they are part of the output (``landcover.png`` would
    replace ``landcover.tif``'s style).

    Raises:
        OutputError: a sidecar exists and ``overwrite`` is false.
    """
    if overwrite:
        return
    for sidecar in sidecar_paths(out):
        if sidecar.exists():
            raise OutputError(
                f"{str(sidecar)!r}, a sidecar this output writes, already exists; pass overwrite=True to replace it"
            )


def check_outputs(
    out: str | os.PathLike, probabilities: str | os.PathLike | None, inputs: tuple, overwrite: bool,
    output_options: OutputOptions,
) -> tuple[Path, Path | None]:
    """Check a run's class raster and score raster paths before any work, as
    :func:`segment` and :func:`glgeo.batch.run_split` both do: none may be one of the run's
    ``inputs`` (the scene, an area of interest's file), each must have a format glgeo
    writes (said before what ``overwrite`` would mend), and neither it nor its sidecars
    may exist without ``overwrite``.

    Returns:
        ``(class raster, score raster or None)``.

    Raises:
        OutputError, InputError: as :func:`check_output_path`, :func:`check_sidecars`,
            :func:`check_scores_path` and :func:`glgeo.writer.output_driver` say.
    """
    for target in (out, probabilities):
        # checked here too: atomic.check_output_path's OSError guard swallows this error
        if target is not None and any(_same_file(target, item) for item in inputs):
            raise OutputError(f"output {str(target)!r} is the same file as the input; choose another name")
    output_driver(Path(out), output_options)
    if probabilities is not None:
        output_driver(Path(probabilities), output_options, bands=2)
    out_path = check_output_path(out, overwrite=overwrite, inputs=inputs)
    check_sidecars(out_path, overwrite)
    scores_path = None if probabilities is None else check_scores_path(probabilities, out_path, overwrite, inputs)
    return out_path, scores_path


def check_scores_path(probabilities: str | os.PathLike, out: Path, overwrite: bool, inputs: tuple) -> Path:
    """The score raster's path, checked as :func:`check_output_path` (against the run's
    ``inputs``) and :func:`check_sidecars` check the class raster's, and apart from it: the two must not
    share a file, nor a sidecar (``landcover.tif`` and ``landcover.img`` would both be
    styled by ``landcover.qml``).

    Raises:
        OutputError: as :func:`check_output_path`, or the two outputs clash.
    """
    path = check_output_path(probabilities, overwrite=overwrite, inputs=inputs)
    if path.resolve() == out.resolve():
        raise OutputError(f"probabilities={str(probabilities)!r} names the class raster itself; choose another file")
    if path.with_suffix("").resolve() == out.with_suffix("").resolve():
        raise OutputError(
            f"probabilities={str(probabilities)!r} and the class raster {out.name!r} would share their QGIS style "
            f"({out.with_suffix('.qml').name}); give the scores another name, such as {out.stem}-scores{path.suffix}"
        )
    check_sidecars(path, overwrite)
    return path


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
    aoi: Any = None,
    bounds: tuple[float, float, float, float] | None = None,
    tta: bool = False,
) -> SegmentSummary:
    """Segment a scene with GLNet into a class raster on the scene's own grid.

    Args:
        scene: anything rasterio opens (GeoTIFF, COG, VRT, JPEG/PNG, ``/vsicurl/`` URL).
        out: the class raster to write (a COG: class ids packed in
            :func:`~glgeo.schemes.class_raster_bits` bits, nodata the largest value they
            hold, colour table, ``.qml`` and ``.aux.xml`` sidecars; see :mod:`glgeo.writer`).
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
        output_options: format (from the extension: ``.tif`` COG, ``.png``, ``.img``; or
            ``output_options.format``), GDAL creation options, tiling, compression and COG
            conversion of the outputs.
        progress: ``progress(done, total)`` as patches are processed.
        aoi: an area of interest: a vector file of polygons in any CRS (reprojected to the
            scene's; ``areas.gpkg|layername=NAME`` for one layer of a file of several), a
            GeoDataFrame (in its CRS) or a shapely geometry in the scene's CRS. Only pixels whose centre
            is inside are segmented; the others are nodata, and patches with no pixel
            inside are not computed (see :mod:`glgeo.aoi`).
        bounds: ``(left, bottom, right, top)`` in the scene's CRS: the same, for a box
            (with ``aoi``, their intersection).
        tta: test-time augmentation: the prediction averaged over the eight flips and
            quarter turns of the scene, global images and patches turned together
            (:mod:`glgeo.tta`; modes ``global`` and ``g2l``, eight times the cost).

    Returns:
        A :class:`SegmentSummary` with class areas (m² on the ground in any CRS: see
        :class:`glgeo.areas.PixelAreas`) and timings.

    Raises:
        SceneError: the scene is missing, unreadable or not a raster.
        InputError: bad bands, settings, an output format glgeo does not write (a lossy
            JPEG, an unknown extension), or a model/scheme mismatch.
        OutputError: an output exists (without ``overwrite``), equals the input, or its
            folder is missing.
        CheckpointError: the model cannot be loaded.
        UnknownNameError: ``scheme`` names no class scheme glgeo knows.
    """
    inputs = (scene, *aoi_files(aoi))  # no output may replace them, not even with overwrite
    out_path, scores_path = check_outputs(out, probabilities, inputs, overwrite, output_options)
    # the scene first (a missing one is said before the model is loaded); its bands may be
    # the model's, chosen once it is loaded
    try:
        info = inspect_scene(scene, bands, needed=MODEL_BANDS)
        band_error = None
    except InputError as exc:
        if bands:
            raise
        band_error = exc
    checkpoint = load_model(model)
    check_model_scheme(checkpoint, scheme, str(model) if isinstance(model, (str, os.PathLike)) else None)
    if checkpoint.scheme.n_classes != checkpoint.model.config.n_classes:
        raise CheckpointError(
            f"model predicts {checkpoint.model.config.n_classes} classes but its scheme "
            f"{checkpoint.scheme.name!r} has {checkpoint.scheme.n_classes}"
        )
    if not bands and model_bands(checkpoint) is not None:
        info = inspect_scene(scene, model_bands(checkpoint), needed=MODEL_BANDS)
    elif band_error is not None:
        raise band_error
    region = region_in_pixels(info, aoi=aoi, bounds=bounds)
    if region is not None:
        info = replace(info, has_mask=True, region=region)
        log.info("segmenting only the area of interest: %.1f %% of %s", 100 * region.area / (info.width * info.height),
                 info.path)
    pixel_areas = PixelAreas(info.crs, info.transform, info.width, info.height)
    pixel_areas.report(log, str(info.path))
    scene_gsd = info.gsd if info.gsd is not None else settings.gsd
    scale = run_scale(checkpoint, info, settings.scale, settings.gsd)
    warn_of_the_scene(info, checkpoint, settings, scale)
    asked = options_rule(settings, bands=bands, tta=tta, aoi=aoi, bounds=bounds)  # before anything is resolved
    if settings.mode is None:  # the mode it was trained for (an earlier stage's checkpoint: not its architecture's)
        settings = replace(settings, mode=checkpoint.mode)
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
        footprint=checkpoint.footprint,
        coarseness=coarseness(checkpoint, scene_gsd, scale),
    )
    warning = global_resolution_warning(
        checkpoint, info, engine.mode, engine.global_size, engine.footprint or 0, engine.global_view
    )
    if warning:
        log.warning(warning)
    log.info(
        "segmenting %s (%d x %d, bands %s) with %s, mode %s on %s",
        info.path, info.width, info.height, ",".join(map(str, info.bands)), checkpoint.model.config.backbone, engine.mode, engine.device,
    )
    if not is_full_resolution(scale):
        log.info("the model runs at %s of the scene's resolution; the output keeps the scene's grid", describe_scale(scale))
    class_scheme, source = checkpoint.scheme, str(checkpoint.path or model)
    model_name, model_sha256 = model_identity(model, checkpoint)
    # The engine runs its own inference copy of the network: drop this function's
    # references to the original, so a model loaded here (or handed over with no other
    # reference, ``segment(..., model=load_model(path))``) is not held in fp32 for the whole
    # run. A Checkpoint the caller keeps stays theirs, untouched.
    del checkpoint, network
    model = source
    tally = AreaTally(pixel_areas)
    counts = tally.counts

    # One fixed GDAL block cache for reading, writing and the COG conversion: GDAL's default
    # (5 % of RAM) would let resident memory grow with the scene up to that size.
    with rasterio.Env(GDAL_CACHEMAX=settings.gdal_cache_mb * 2**20), ClassRasterWriter(
        out_path, info, class_scheme, scores_path, output_options
    ) as writer:

        def sink(band: RowBand) -> None:
            tally.add(band.classes, band.row_off)
            writer.write(band)

        with SceneReader(info, scale=scale, nodata_fill=settings.nodata_fill,
                         global_resampling=settings.global_resampling) as reader:
            grid = reader.info
            with_scores = scores_path is not None
            score_dtype = "uint8"
            if grid is not info:
                # predictions on the coarser working grid, written on the scene's own: scores
                # interpolated between working pixels (as patch logits reach their pixels)
                score_dtype = WORKING_SCORE_DTYPE
                sink = ToSceneGrid(
                    (grid.height, grid.width), (info.height, info.width), sink,
                    reader.read_source_valid if reader.source_may_be_invalid else None,
                    interpolation=settings.logit_upsampling, scores=with_scores, score_dtype=score_dtype,
                )
                with_scores = with_scores or settings.logit_upsampling == "bilinear"
            stats = engine.run(reader, sink, scores=with_scores, progress=progress, score_dtype=score_dtype)
        provenance = Provenance(
            model=model_name,
            model_sha256=model_sha256,
            glgeo_version=installed_version(),
            mode=stats.mode,
            precision=stats.precision,
            scale=scale,
            gsd_m=reading_gsd(info.gsd, scale),
            blend=blend_rule(settings),
            nodata_fill=settings.nodata_fill,
            context=stats.context or context_rule(settings),
            options=asked,
            created=utc_now(),
            scene=scene_stamp(info.path, info.title),
            stretch=stats.stretch,
        )
        writer.set_tags(provenance.tags())
        start = time.perf_counter()
        writer.commit()
        finish = time.perf_counter() - start
        stats.timings.write += finish
        stats.timings.total += finish

    warn_if_no_class(counts, info, out_path)
    classes, area_unit = tally.class_areas(class_scheme)
    summary = SegmentSummary(
        scene=info.path,
        output=out_path,
        probabilities=scores_path,
        height=info.height,
        width=info.width,
        crs=info.crs.to_string() if info.crs is not None else None,
        area_unit=area_unit,
        classes=classes,
        nodata_pixels=int(counts[NODATA_ID]),
        model=source,
        stats=stats,
        scale=scale,
        provenance=provenance,
    )
    log.info("wrote %s in %.1f s (%.2f MP/s)", out_path, summary.seconds, summary.megapixels_per_second)
    return summary
