"""Resolution: the one home of the rules that relate a scene's pixels to a model's.

Three sizes meet when a model meets a scene:

* the **ground sample distance** (GSD): metres per pixel of georeferenced imagery
  (:func:`ground_sample_distance`), recorded in checkpoints for the imagery the model
  learned from (:attr:`Checkpoint.gsd <glgeo.models.checkpoint.Checkpoint.gsd>`);
* the **reading scale**: the fraction of its resolution a scene is read at, so the model
  sees it at the GSD it was trained at (:func:`reading_scale`, within
  :data:`SCALE_TOLERANCE`), and with square pixels on the ground: a scene whose pixels are
  not square there (one in degrees away from the equator) is read at a scale of its own on
  each axis, ``(rows, cols)`` (:data:`Scale`); the scene is then read on a coarser **working grid** of
  :func:`scaled_size` pixels whose transform is :func:`scaled_transform`
  (:func:`glgeo.io.working_grid`); training reads its scenes by the same rule;
* the **context footprint**: the side, on the working grid, of the images the model was
  trained on (:attr:`Checkpoint.footprint <glgeo.models.checkpoint.Checkpoint.footprint>`);
  larger scenes are cut into context windows of that size (:func:`glgeo.tiling.window_grid`);
* the **map origin** of the working grid (:func:`map_origin`): where the scene's first
  pixel lies, counted in working-grid pixels from the map's origin, so patch grids and
  global images can be laid on one lattice fixed to the map
  (:attr:`InferenceSettings.grid_anchor <glgeo.inference.InferenceSettings.grid_anchor>`).

Every decimated read, for inference and for training on dataset folders, is computed from
the scene's full-resolution pixels, never from the file's overviews (:func:`open_pixels`;
training on ``--images`` reads through torchgeo, which opens its files itself).
"""

from __future__ import annotations

import logging
import operator
from typing import TYPE_CHECKING, Any, Union

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS

if TYPE_CHECKING:
    from .io import SceneInfo

log = logging.getLogger(__name__)

#: A reading scale: one fraction of the scene's resolution for both axes, or ``(rows, cols)``
#: where the scene's pixels are not square on the ground and each axis is read at its own
#: (:func:`reading_scale`).
Scale = Union[float, tuple[float, float]]


def axis_scales(scale: Scale) -> tuple[float, float]:
    """``(rows, cols)``: the fraction of its resolution a scene is read at down and across."""
    if isinstance(scale, tuple):
        return float(scale[0]), float(scale[1])
    return float(scale), float(scale)


def area_scale(scale: Scale) -> float:
    """The side of a working pixel's area over the scene pixel's: the geometric mean of
    :func:`axis_scales` (a scene's GSD over this is the working grid's)."""
    rows, cols = axis_scales(scale)
    return float(np.sqrt(rows * cols))


def is_full_resolution(scale: Scale) -> bool:
    """Whether ``scale`` reads the scene as it is (1 on both axes)."""
    return axis_scales(scale) == (1.0, 1.0)


def as_scale(rows: float, cols: float) -> Scale:
    """The scale of ``rows`` and ``cols``: one number where they are equal, else the pair."""
    return rows if rows == cols else (rows, cols)


def scale_json(scale: Scale) -> float | list[float]:
    """``scale`` as JSON holds it: a number, or ``[rows, cols]``."""
    return list(scale) if isinstance(scale, tuple) else scale


def reading_gsd(scene_gsd: float | None, scale: Scale) -> float | None:
    """Metres per working pixel of a scene of ``scene_gsd`` read at ``scale`` (the image the
    model saw: its provenance's ``GLGEO_READING_GSD_M``), 6 significant digits."""
    return None if scene_gsd is None else _significant(scene_gsd / area_scale(scale))


def stretch(sides: tuple[float, float]) -> float:
    """How many times longer a pixel's longer side is than its shorter (``(across, down)``
    metres, :func:`ground_pixel_sides`): 1 for square pixels."""
    return max(sides) / min(sides)


def describe_scale(scale: Scale) -> str:
    """``0.25``, or ``1 down x 0.803 across`` for a scale of its own on each axis."""
    rows, cols = axis_scales(scale)
    return f"{rows:.3g}" if rows == cols else f"{rows:.3g} down x {cols:.3g} across"


def ground_sample_distance(crs: CRS | None, transform: Affine, height: int = 0, width: int = 0) -> float | None:
    """Metres per pixel on the ground: the square root of a pixel's ground area, at the
    scene's centre (``height`` x ``width`` px).

    A projected CRS in metres or feet gives it as it is where its own m² are the ground's to
    within :data:`glgeo.areas.GROUND_TOLERANCE` (UTM, national grids); elsewhere (a Mercator
    projection such as Web Mercator, whose metres are 1 / cos(latitude) of the ground's; a
    geographic CRS, in degrees) it is measured on the CRS's ellipsoid, as class areas are
    (:class:`glgeo.areas.PixelAreas`). ``None`` for plain images and for other units.
    """
    from .areas import GROUND_TOLERANCE, area_unit, ground_per_unit2

    if crs is None:
        return None
    unit, factor = area_unit(crs, transform)
    if unit not in ("m2", "deg2"):
        return None
    t = transform
    x, y = t.a * width / 2 + t.b * height / 2 + t.c, t.d * width / 2 + t.e * height / 2 + t.f
    if unit == "deg2" and not -90 <= y <= 90:
        return None
    pixel = abs(t.a * t.e - t.b * t.d)
    try:
        sides = (float(np.hypot(t.a, t.d)), float(np.hypot(t.b, t.e)))
        ground = pixel * float(ground_per_unit2(crs, np.array([x]), np.array([y]), step=sides)[0])
    except Exception:  # noqa: BLE001 - PROJ cannot measure there
        ground = float("nan")
    own = pixel * factor
    if not (np.isfinite(ground) and ground > 0):
        return None if unit == "deg2" else _significant(np.sqrt(own))
    if unit == "m2" and abs(own / ground - 1) <= GROUND_TOLERANCE:
        return _significant(np.sqrt(own))
    return _significant(np.sqrt(ground))


#: Pixels whose sides on the ground differ by more than this factor are stretched for the
#: model (it learned from square pixels): :func:`warn_if_stretched` says so.
STRETCH_TOLERANCE = 1.1


def ground_pixel_sides(crs: CRS | None, transform: Affine, height: int = 0, width: int = 0) -> tuple[float, float] | None:
    """``(across, down)``: the ground length, in metres, of a pixel's sides along its row and
    along its column at the scene's centre (geodesic distances on the CRS's ellipsoid);
    ``None`` without a CRS or an ellipsoid."""
    if crs is None:
        return None
    try:
        from pyproj import CRS as ProjCRS
        from pyproj import Transformer

        pcrs = ProjCRS.from_wkt(crs.to_wkt())
        geod = pcrs.get_geod()
        if geod is None:
            return None
        t = transform
        cols, rows = np.array([width / 2, width / 2 + 1, width / 2]), np.array([height / 2, height / 2, height / 2 + 1])
        xs, ys = t.a * cols + t.b * rows + t.c, t.d * cols + t.e * rows + t.f
        if not pcrs.is_geographic:
            xs, ys = Transformer.from_crs(pcrs, pcrs.geodetic_crs, always_xy=True).transform(xs, ys)
        across = geod.inv(xs[0], ys[0], xs[1], ys[1])[2]
        down = geod.inv(xs[0], ys[0], xs[2], ys[2])[2]
    except Exception:  # noqa: BLE001 - a CRS PROJ cannot measure in
        return None
    return (float(across), float(down)) if np.isfinite([across, down]).all() and min(across, down) > 0 else None


def warn_if_stretched(info: SceneInfo, scale: Scale = 1.0) -> None:
    """Warn when a scene read at ``scale`` still gives the model pixels far from square on
    the ground (a scene in degrees away from the equator read at a scale given for both
    axes): the model, which learned from square pixels, sees the ground stretched.
    :func:`reading_scale` avoids it by reading each axis at its own scale."""
    sides = ground_pixel_sides(info.crs, info.transform, info.height, info.width)
    if sides is None:
        return
    rows, cols = axis_scales(scale)
    across, down = sides[0] / cols, sides[1] / rows
    seen = stretch((across, down))
    if seen > STRETCH_TOLERANCE:
        log.warning(
            "%s has pixels of %.3g x %.3g m on the ground (%s)%s: the model sees the ground squeezed %.2f times"
            " %s, which costs accuracy; leave the reading scale to glgeo (it reads each axis at its own scale)"
            " or reproject the scene to a projected CRS with square pixels (e.g. its UTM zone)",
            info.path, sides[0], sides[1], info.crs.to_string(),
            "" if (rows, cols) == (1.0, 1.0) else f", read at {describe_scale(scale)}", seen,
            "north-south" if down > across else "east-west",
        )


def _significant(value: float, digits: int = 6) -> float:
    """``value`` to ``digits`` significant digits (0.30000000000003 -> 0.3)."""
    return float(f"{value:.{digits}g}")


def whole_pixels(value: Any, least: int) -> int | None:
    """``value`` as an ``int`` (numpy's integers too) where it is a whole number of pixels of
    at least ``least``; ``None`` where it is not (a float, a bool, too small)."""
    if isinstance(value, bool):
        return None
    try:
        whole = operator.index(value)
    except TypeError:
        return None
    return whole if whole >= least else None


def scaled_size(height: int, width: int, scale: Scale) -> tuple[int, int]:
    """A scene's size once read at ``scale`` of its resolution (its working grid): each
    side times its axis's scale, rounded, at least 1 px."""
    rows, cols = axis_scales(scale)
    return max(1, round(height * rows)), max(1, round(width * cols))


def scaled_transform(transform: Affine, size: tuple[int, int], scaled: tuple[int, int]) -> Affine:
    """The transform of a grid of ``scaled`` ``(rows, cols)`` covering the same footprint as
    ``transform``'s grid of ``size``."""
    return transform @ Affine.scale(size[1] / scaled[1], size[0] / scaled[0])


#: Open options (``rasterio.open(path, **FULL_RESOLUTION_READS)``) for reading a scene's pixels:
#: GDAL computes every decimated read from the full-resolution pixels instead of the file's
#: overviews (internal or ``.ovr``, or a JPEG's reduced-resolution decoding). A map then
#: depends on the pixels only: overviews built with nearest resampling (``gdaladdo``'s and
#: QGIS's "Build pyramids" default) changed the class of 1.4-8.7 % of a DeepGlobe image's pixels,
#: and saving a JPEG as a GeoTIFF 0.3-4.3 %. A VRT's sources may still use their own overviews
#: (GDAL reads each source decimated).
FULL_RESOLUTION_READS = {"OVERVIEW_LEVEL": "NONE"}


def open_pixels(path: Any, overviews: bool | None = None) -> rasterio.io.DatasetReader:
    """Open a raster whose pixels are read, decimated reads computed from its full
    resolution: with :data:`FULL_RESOLUTION_READS` where the file has overviews (GDAL then
    wraps it, which costs block cache), as it is where it has none. ``overviews``: whether
    it has them, when the caller knows (:attr:`glgeo.io.SceneInfo.has_overviews`: no
    second opening); ``None``: looked up."""
    if overviews is None:
        src = rasterio.open(path)
        if not (FULL_RESOLUTION_READS and any(src.overviews(band) for band in src.indexes)):
            return src
        src.close()
    elif not (overviews and FULL_RESOLUTION_READS):
        return rasterio.open(path)
    return rasterio.open(path, **FULL_RESOLUTION_READS)

#: Scenes within this share of the model's resolution are read as they are.
SCALE_TOLERANCE = 0.05
#: Scenes read coarser than the model's imagery by more than this share are warned about
#: (a 0.67 m tile for a 0.6 m model is within what a model of a resolution range meets).
COARSER_WARNING = 0.25


def reading_scale(checkpoint, info: SceneInfo, gsd: float | None = None) -> Scale:
    """The fraction of its resolution a scene is read at for a model (the default of
    ``InferenceSettings.scale``).

    With both ground sample distances known (the model's from its training data,
    :attr:`~glgeo.models.checkpoint.Checkpoint.gsd`; the scene's from its CRS and
    transform), the scene is read at the model's resolution: ``scene_gsd / model_gsd``,
    never above 1 (a scene coarser than the model's imagery is read as it is, with a
    warning), and 1 within :data:`SCALE_TOLERANCE`. Otherwise (plain images, CRSs without
    units, models that do not say) the scale the model was trained at, which assumes
    imagery of its training data's resolution. ``gsd``: the scene's metres per pixel
    where its file does not say (``InferenceSettings.gsd``).

    A scene whose pixels are not square on the ground (their sides differ by more than
    :data:`SCALE_TOLERANCE`: a scene in degrees away from the equator, 1.25 times taller
    than wide at 37 degrees) is read at a scale of its own on each axis, ``(rows, cols)``,
    so the model sees square pixels as it learned from: the model's GSD where both sides
    are finer, else the coarser side's (no axis is read above 1, :func:`square_scale`).
    """
    model_gsd, scene_gsd = checkpoint.gsd, info.gsd if info.gsd is not None else gsd
    sides = ground_pixel_sides(*info.measured_by, info.height, info.width) if info.gsd is not None else None
    if model_gsd is None or scene_gsd is None:
        if checkpoint.scene_scale != 1:
            log.info(
                "reading %s at %g of its resolution, as the model was trained%s",
                info.path, checkpoint.scene_scale,
                "" if model_gsd is None else f" (its imagery: {model_gsd:g} m; this scene's resolution is unknown)",
            )
        return square_scale(checkpoint.scene_scale, sides, None, info.path)
    if sides is not None and stretch(sides) > 1 + SCALE_TOLERANCE:
        _warn_if_coarser(max(sides), model_gsd, info.path)
        return square_scale(1.0, sides, model_gsd, info.path)
    return scale_between(scene_gsd, model_gsd, info.path)


def run_scale(checkpoint, info: SceneInfo, scale: Scale | None, gsd: float | None = None) -> Scale:
    """The scale a run reads a scene at: ``scale`` where the user chose one
    (``InferenceSettings.scale``), else :func:`reading_scale`. A chosen scale below 1 that
    makes the scene coarser than the model's imagery (both GSDs known) is warned about, as
    a scene that coarse is (a scale of 1 reads the file as it is: what it holds is the
    caller's to say, as evaluate does of its resampled copies)."""
    if scale is None:
        return reading_scale(checkpoint, info, gsd)
    scene_gsd = info.gsd if info.gsd is not None else gsd
    if checkpoint.gsd is not None and scene_gsd is not None and min(axis_scales(scale)) < 1:
        read_gsd = scene_gsd / min(axis_scales(scale))
        if read_gsd / checkpoint.gsd > 1 + COARSER_WARNING:
            log.warning(
                "scale=%s reads %s at %.3g m pixels, coarser than the %.3g m the model was trained on: predictions "
                "may be poor; drop scale=%s to read it at the model's resolution",
                describe_scale(scale), info.path, read_gsd, checkpoint.gsd, describe_scale(scale),
            )
    return scale


def square_scale(scale: float, sides: tuple[float, float] | None, model_gsd: float | None, name: Any = "the scene") -> Scale:
    """The reading scale that gives square ground pixels to a scene whose pixel sides on the
    ground are ``sides`` (``(across, down)`` metres, :func:`ground_pixel_sides`).

    With ``model_gsd``: each axis read at the model's GSD, or at the coarser side's where
    that is coarser (no axis above 1), and 1 within :data:`SCALE_TOLERANCE`. Without it:
    ``scale`` for the coarser axis, the finer one read coarser to match. ``scale`` as it
    is where ``sides`` is ``None`` or square within the tolerance. Logged (INFO) with
    ``name`` unless it is ``None``."""
    if sides is None or stretch(sides) <= 1 + SCALE_TOLERANCE:
        return scale
    across, down = sides
    if model_gsd is not None:
        side = max(model_gsd, across, down)
        rows, cols = down / side, across / side
        rows, cols = (1.0 if s >= 1 - SCALE_TOLERANCE else float(_significant(s)) for s in (rows, cols))
    else:
        side = max(across, down) / scale
        rows, cols = float(_significant(down / side)), float(_significant(across / side))
    if name is not None:
        log.info(
            "%s has pixels of %.3g x %.3g m on the ground: read at %s of its resolution, so the model sees square"
            " %.3g m pixels", name, across, down, describe_scale((rows, cols)), down / rows,
        )
    return as_scale(rows, cols)


def square_side(crs: CRS | None, transform: Affine, height: int, width: int) -> float | None:
    """The ground side, in metres, of the square pixels a scene is read at by
    :func:`square_scale` at scale 1: its :func:`ground_sample_distance` where its pixels are
    square within :data:`SCALE_TOLERANCE`, else their longer side; ``None`` where unknown.
    Training records it as its imagery's GSD, so ``glgeo segment`` reads such scenes as
    training did."""
    gsd = ground_sample_distance(crs, transform, height, width)
    if gsd is None:
        return None
    sides = ground_pixel_sides(crs, transform, height, width)
    if sides is None or stretch(sides) <= 1 + SCALE_TOLERANCE:
        return gsd
    return _significant(max(sides))


def scale_between(scene_gsd: float, model_gsd: float, name: Any = "the scene") -> float:
    """The fraction of its resolution a scene of ``scene_gsd`` metres per pixel is read at
    for a model trained on ``model_gsd``: ``scene_gsd / model_gsd``, never above 1 (with a
    warning naming ``name``: a coarser scene is read as it is), 1 within
    :data:`SCALE_TOLERANCE`."""
    _warn_if_coarser(scene_gsd, model_gsd, name)
    scale = scene_gsd / model_gsd
    if scale >= 1 - SCALE_TOLERANCE:
        return 1.0
    log.info("%s has %.3g m pixels: read at the model's %.3g m (scale %.3g)", name, scene_gsd, model_gsd, scale)
    return scale


def _warn_if_coarser(scene_gsd: float, model_gsd: float, name: Any) -> None:
    """Warn when a scene's pixels (their longer side, where they are not square) are coarser
    than the model's imagery by more than :data:`COARSER_WARNING`: no axis is read finer
    than the file, so the model sees them coarser than it learned."""
    if scene_gsd / model_gsd > 1 + COARSER_WARNING:
        log.warning(
            "%s has %.3g m pixels, coarser than the %.3g m the model was trained on: predictions may be poor; "
            "choose a model trained for this resolution",
            name, scene_gsd, model_gsd,
        )


def coarseness(checkpoint, scene_gsd: float | None, scale: Scale) -> float:
    """How many times coarser a scene's working grid is than the model's imagery: its
    metres per working pixel (``scene_gsd`` over :func:`area_scale`) over the model's
    (:attr:`Checkpoint.gsd <glgeo.models.checkpoint.Checkpoint.gsd>`), where that is above
    1 (a scene coarser than the model's imagery is read as it is, :func:`scale_between`);
    1 where either resolution is unknown or the scene is read at the model's."""
    if scene_gsd is None or checkpoint.gsd is None or not scene_gsd > 0 or not area_scale(scale) > 0:
        return 1.0
    return max(1.0, scene_gsd / area_scale(scale) / checkpoint.gsd)


def map_origin(transform: Affine, scale: Scale = 1.0) -> tuple[int, int]:
    """Where a scene's first pixel lies on its map, in pixels of its working grid at
    ``scale``: ``(row, col)`` counted from the map's origin along the scene's own axes,
    rounded to whole pixels.

    Two scenes cut from one raster (``gdal_translate -srcwin``, a windowed read) differ by
    exactly their offset, so a lattice counted from here is the same ground in both. It
    uses the nominal working pixel (the file's pixel over ``scale``), not one rounded to
    each scene's size, so large map coordinates do not drift apart. Plain images (an
    identity transform) and rotated grids get ``(0, 0)``: their own first pixel.
    """
    if transform.b or transform.d or not transform.a or not transform.e:
        return 0, 0
    rows, cols = axis_scales(scale)
    return round(transform.f / transform.e * rows), round(transform.c / transform.a * cols)
