"""Reading scenes for GLNet: band choice, value scaling, valid masks, global and patch reads.

Anything rasterio opens is a scene: GeoTIFFs, COGs, VRTs, JPEG/PNG files without
georeferencing (DeepGlobe), ``/vsicurl/`` URLs.

Pixel values become network inputs in two steps:

1. an optional *stretch* of each band from ``[low, high]`` onto the checkpoint's input
   range. 8-bit scenes are not stretched. For 16-bit and float scenes fed to a model
   trained on bytes (the checkpoint's range ends at 255 or below) the default ``"auto"``
   stretch maps each band's 1st..99th percentile onto that range, so a 12-bit sensor's
   values are not clipped at 255 nor squeezed into a few grey levels; a float scene whose
   values all lie within 0..1 (reflectance) is read as 0..1, alike for every band. The percentiles are measured on a
   nearest-neighbour sample of at most 1024 x 1024 valid pixels (unsmoothed, so they
   describe full-resolution values). Values beyond them saturate; the share of the
   sample that saturates is logged and reported (never silent).
   Pass an explicit ``(low, high)`` to control it, or ``"none"`` to feed raw values.
2. the checkpoint's :class:`~glgeo.models.checkpoint.InputScaling`
   (``(x - min) / (max - min)``, bytes / 255 for the released models).

Nodata values, internal masks and alpha bands all become one boolean *valid* mask per
pixel (GDAL's mask of the chosen bands, a pixel being valid where any band is valid, as in
GDAL's dataset mask). Where a view has invalid pixels the network is fed its valid pixels
mirrored into the gap (``nodata_fill``, :mod:`glgeo.nodata`), their mean colour or black.

The global branch gets one decimated read of the whole scene at the model's global size with
bilinear resampling, computed from the full-resolution pixels and never from the file's
overviews (:func:`glgeo.resolution.open_pixels`: the map must not depend on
whether or how overviews were built), which GDAL applies with a kernel widened by the
decimation factor: an antialiasing filter equal, to within rounding, to PIL's bilinear
resize that the released GLNet was trained with.

Patches are read with windowed reads, a batch at a time, in the grid's row-major order (the
file's block order); :meth:`SceneReader.iter_batches` reads the next batches in a
background thread with its own dataset handle while the caller runs the network.

A model trained on scenes read at a fraction of their resolution (``glgeo train --scale
0.25``) is fed the same way: :class:`SceneReader` with ``scale`` reads on a coarser
*working grid* (:func:`working_grid`, the same size training used), each patch a windowed
read of the matching full-resolution window decimated with GDAL's antialiased bilinear
resampling, as training read them; :meth:`SceneReader.read_source_valid` gives the
full-resolution valid mask for putting the prediction back on the scene's own grid.
"""

from __future__ import annotations

import logging
import math
import os
import shlex
import time
import queue
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterable, Iterator, Literal, Sequence, TypeVar

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import ColorInterp, MaskFlags, Resampling
from rasterio.errors import RasterioIOError
from rasterio.windows import Window

from .errors import InputError, InternalError, SceneError
from .nodata import mirror_fill
from .resolution import Scale, axis_scales, describe_scale, ground_sample_distance, open_pixels, scaled_size, scaled_transform
from .tiling import PatchWindow

log = logging.getLogger(__name__)

T = TypeVar("T")

#: What network inputs hold where a scene has no data (see :meth:`Stretch.apply`).
NodataFill = Literal["mirror", "mean", "zero"]
NODATA_FILLS: tuple[str, ...] = ("mirror", "mean", "zero")

#: Percentiles of the automatic stretch for 16-bit and float scenes.
AUTO_STRETCH_PERCENTILES = (1.0, 99.0)

#: Side of the nearest-neighbour sample the automatic stretch is measured on.
STRETCH_SAMPLE_SIZE = 1024

StretchSpec = Literal["auto", "none"] | tuple[float, float]


@dataclass(frozen=True)
class SceneInfo:
    """What glgeo needs to know about a scene before reading pixels.

    Attributes:
        path: the path or URL as given.
        height: rows.
        width: columns.
        count: bands in the file.
        bands: the 1-based bands fed to the model, in order.
        dtype: the bands' data type (``uint8``, ``uint16``, ``float32``...).
        crs: coordinate reference system, ``None`` for plain images.
        transform: pixel-to-map transform (identity for plain images).
        nodata: the nodata value of the chosen bands, if any.
        has_mask: whether any pixel can be invalid (nodata, internal mask or alpha).
        block_shape: ``(rows, cols)`` of the file's blocks (strips or tiles).
        region: only pixels whose centre lies in this shapely geometry, in the scene's
            pixel coordinates, are valid (an area of interest: see :mod:`glgeo.aoi`);
            ``None``: every pixel. Set with ``has_mask=True``.
        has_overviews: whether the file has overviews (which its reads must not use, see
            :func:`glgeo.resolution.open_pixels`); ``None``: not known, looked up on opening.
        gcps: ``(ground control points, their CRS)`` of a scene placed by GCPs only (no
            geotransform), which its outputs carry; ``None`` otherwise.
        rpcs: the scene's rational polynomial coefficients (:class:`rasterio.rpc.RPC`: a
            satellite scene before orthorectification), which its outputs carry, so that
            ``gdalwarp -rpc`` places the map as it would the scene; ``None`` without.
        title: what the outputs' metadata calls the scene where its file name would not say
            (a mosaic of tiles, :mod:`glgeo.mosaic`: its tiles' names); ``None``: the file's name.
    """

    path: str
    height: int
    width: int
    count: int
    bands: tuple[int, ...]
    dtype: str
    crs: CRS | None
    transform: Affine
    nodata: float | None
    has_mask: bool
    block_shape: tuple[int, int]
    region: object | None = None
    has_overviews: bool | None = None
    gcps: tuple[tuple, CRS | None] | None = None
    title: str | None = None
    rpcs: object | None = None

    @property
    def is_georeferenced(self) -> bool:
        """Whether the scene has a CRS (plain JPEG/PNG files do not)."""
        return self.crs is not None

    @property
    def has_transform(self) -> bool:
        """Whether the scene has a geotransform (a CRS, a world file, or one without CRS)."""
        return self.crs is not None or self.transform != Affine.identity()

    @property
    def pixel_area(self) -> float:
        """Area of one pixel in map units squared (1 for plain images)."""
        return abs(self.transform.a * self.transform.e - self.transform.b * self.transform.d)

    @property
    def measured_by(self) -> tuple[CRS | None, Affine]:
        """The CRS and pixel-to-map transform its pixels' size on the ground is measured
        with: the scene's own, or for a scene placed by ground control points only, the
        affine transform that fits them best (least squares) in their CRS; GCPs that do not
        span the image (fewer than three, or in a line) tell none. The output keeps the GCPs
        themselves: this only tells the resolution."""
        if self.gcps is not None and not self.has_transform:
            points, crs = self.gcps
            fitted = _affine_through(points) if crs is not None else None
            if fitted is not None:
                return crs, fitted
        return self.crs, self.transform

    @property
    def gsd(self) -> float | None:
        """Ground sample distance in metres (see :func:`ground_sample_distance`; for a
        scene placed by ground control points, measured with them: :attr:`measured_by`)."""
        return ground_sample_distance(*self.measured_by, self.height, self.width)


def _affine_through(points: Sequence) -> Affine | None:
    """The affine transform from pixel ``(col, row)`` to map ``(x, y)`` that fits ground
    control points best (least squares), or ``None`` where they do not span the image
    (fewer than three, or in a line: rasterio's ``from_gcps`` then returns whatever GDAL
    left in memory)."""
    pixels = np.array([(p.col, p.row, 1.0) for p in points], dtype=np.float64).reshape(-1, 3)
    if len(pixels) < 3 or np.linalg.matrix_rank(pixels) < 3:
        return None
    ground = np.array([(p.x, p.y) for p in points], dtype=np.float64)
    (a, b, c), *_ = np.linalg.lstsq(pixels, ground[:, 0], rcond=None)
    (d, e, f), *_ = np.linalg.lstsq(pixels, ground[:, 1], rcond=None)
    fitted = Affine(a, b, c, d, e, f)
    return fitted if math.isfinite(fitted.determinant) and abs(fitted.determinant) > 0 else None


def read_error_detail(exc: Exception) -> str:
    """What GDAL said of a failed read, without rasterio's pointer to the exception before."""
    return str(exc).replace(" See previous exception for details.", "").rstrip(". ")


def read_failed_error(path: str, exc: Exception) -> SceneError:
    """The error of a read that failed part-way through a scene: the file is most often
    truncated (an interrupted copy or download) or corrupt."""
    detail = read_error_detail(exc)
    return SceneError(
        f"reading {path!r} failed ({detail}): the file may be truncated or corrupt; check it with "
        f"`gdalinfo -checksum {path}` and copy it again"
    )


def working_grid(info: SceneInfo, scale: Scale) -> SceneInfo:
    """The grid a scene is read on at ``scale`` of its resolution (``1``: the scene's own;
    ``(rows, cols)``: a scale of its own on each axis, :func:`glgeo.resolution.reading_scale`).

    Its size is the scene's times ``scale``, rounded (as ``glgeo train --scale`` reads
    scenes); its transform covers the same footprint with coarser pixels.

    Raises:
        InputError: ``scale`` outside ``(0, 1]``.
    """
    down, across = axis_scales(scale)
    if not (0 < down <= 1 and 0 < across <= 1):
        raise InputError(f"scale must be in (0, 1], got {describe_scale(scale)}")
    if (down, across) == (1, 1):
        return info
    height, width = scaled_size(info.height, info.width, scale)
    rows, cols = info.block_shape
    return replace(
        info,
        height=height,
        width=width,
        transform=scaled_transform(info.transform, (info.height, info.width), (height, width)),
        block_shape=(max(1, round(rows * down)), max(1, round(cols * across))),
    )


@dataclass(frozen=True)
class Stretch:
    """A linear map of raw band values onto network inputs in ``[0, 1]``.

    ``input = (raw - offset) / scale`` per band, then clipped to ``[0, 1]`` when
    ``saturates`` (a stretch chosen from percentiles).

    Attributes:
        offset: per-band value mapped to 0.
        scale: per-band value range mapped to 1.
        saturates: whether values outside the range are clipped to 0..1.
        description: how the stretch was chosen, for logs and summaries.
        saturated_fraction: share of the global read's valid values that saturate.
    """

    offset: tuple[float, ...]
    scale: tuple[float, ...]
    saturates: bool
    description: str
    saturated_fraction: float = 0.0

    @property
    def reported(self) -> str:
        """The description, with the share of values that saturate where the stretch clips
        (what a summary says: clipped values are never silent)."""
        if not self.saturates:
            return self.description
        return f"{self.description} ({100 * self.saturated_fraction:.2f} % of values saturate)"

    def __post_init__(self) -> None:
        if len(self.offset) != len(self.scale) or not self.offset:
            raise InputError("a stretch needs one offset and one scale per band")
        if any(not s > 0 for s in self.scale):
            raise InputError(f"a stretch needs a positive range per band, got {self.scale}")

    def apply(self, raw: np.ndarray, valid: np.ndarray | None = None, fill: NodataFill = "zero") -> np.ndarray:
        """Raw values ``(bands, ...)`` to float32 network inputs.

        Invalid pixels (``valid`` false, or its share where ``valid`` is a fraction) become
        the valid pixels mirrored across the nearest edge of the nodata region
        (``fill="mirror"``, :mod:`glgeo.nodata`), each band's mean over the valid pixels of
        ``raw`` (``fill="mean"``) or 0 (``fill="zero"``, the released code's black): black
        nodata in a context window reads as dark ground (water, shadow) to a model and
        changes the classes around it; a flat colour, less so; the mirror continues the
        ground beside it. Where ``valid`` is a fraction, the mirror is of the fully valid
        pixels (of the partly valid ones where none is fully valid). The mirror needs one
        ``(rows, cols)`` mask for ``(bands, rows, cols)`` values (every read of
        :class:`SceneReader`); other shapes take the mean.
        """
        shape = (len(self.offset),) + (1,) * (raw.ndim - 1)
        out = raw.astype(np.float32, copy=True)
        out -= np.asarray(self.offset, dtype=np.float32).reshape(shape)
        out /= np.asarray(self.scale, dtype=np.float32).reshape(shape)
        if self.saturates:
            np.clip(out, 0.0, 1.0, out=out)
        # NaNs become 0 before weighting: NaN x 0 would stay NaN and spoil the mean
        np.nan_to_num(out, copy=False, nan=0.0, posinf=1.0, neginf=0.0)
        if valid is not None:
            weight = valid.astype(np.float32)
            weight = weight[None] if valid.ndim == raw.ndim - 1 else weight
            out *= weight
            if fill != "zero" and weight.min() < 1 and weight.max() > 0:
                if fill == "mirror" and valid.ndim == 2 and raw.ndim == 3:
                    whole = valid >= 1
                    sources = whole if whole.any() else valid > 0
                    out += mirror_fill(out / np.maximum(weight, 1e-6), sources) * (1.0 - weight)
                else:
                    axes = tuple(range(1, out.ndim))
                    mean = out.sum(axis=axes, keepdims=True) / np.maximum(weight.sum(axis=axes, keepdims=True), 1e-6)
                    out += mean * (1.0 - weight)
        return out


#: Share of a scene's values beyond the model's input range above which ``stretch none`` warns.
STRETCH_NONE_WARNING = 0.05
#: Share of the model's input range below which the span of a scene's values makes
#: ``stretch none`` warn (float reflectance of 0..1 fed to a model of bytes: a flat image).
STRETCH_NONE_SPAN = 0.02


def choose_stretch(
    info: SceneInfo,
    global_raw: np.ndarray,
    global_valid: np.ndarray,
    scaling_min: float,
    scaling_max: float,
    spec: StretchSpec = "auto",
) -> Stretch:
    """The stretch for a scene, from a decimated sample of it.

    Args:
        info: the scene.
        global_raw: a sample of the scene ``(bands, h, w)`` in raw values.
        global_valid: its valid mask ``(h, w)``.
        scaling_min: the checkpoint's input scaling minimum.
        scaling_max: the checkpoint's input scaling maximum.
        spec: ``"auto"`` (see the module doc), ``"none"`` (raw values through the
            checkpoint's scaling) or an explicit ``(low, high)`` for every band.
    """
    n = len(info.bands)
    checkpoint = Stretch((scaling_min,) * n, (scaling_max - scaling_min,) * n, False, "checkpoint scaling")
    if spec == "none" or (spec == "auto" and (info.dtype in ("uint8", "int8") or scaling_max > 255.0)):
        if spec == "none":
            values = global_raw[:, global_valid.astype(bool)].astype(np.float64)
            outside = float(((values < scaling_min) | (values > scaling_max)).mean()) if values.size else 0.0
            log.info("input stretch: none, the model's scaling %g..%g (%.2f %% of values beyond it)",
                     scaling_min, scaling_max, 100 * outside)
            if outside > STRETCH_NONE_WARNING:
                log.warning(
                    "%s: %.1f %% of the values lie beyond the model's input range %g..%g and saturate (stretch none): "
                    "the map may mean little; leave stretch=auto, or give the data's range as stretch=(LOW, HIGH)",
                    info.path, 100 * outside, scaling_min, scaling_max,
                )
            elif values.size and np.ptp(values) < STRETCH_NONE_SPAN * (scaling_max - scaling_min):
                log.warning(
                    "%s: the values span %g..%g, %.2g %% of the model's input range %g..%g (stretch none): the model "
                    "sees an almost flat image and the map may mean little; leave stretch=auto, or give the data's "
                    "range as stretch=(LOW, HIGH)", info.path, values.min(), values.max(),
                    100 * np.ptp(values) / (scaling_max - scaling_min), scaling_min, scaling_max,
                )
        return checkpoint
    if isinstance(spec, tuple):
        low, high = float(spec[0]), float(spec[1])
        if not high > low:
            raise InputError(f"stretch needs high > low, got {low},{high}")
        stretch = Stretch((low,) * n, (high - low,) * n, True, f"fixed {low:g}..{high:g}")
    elif spec == "auto":
        values = global_raw[:, global_valid.astype(bool)].astype(np.float64)
        values = values[:, np.isfinite(values).all(axis=0)]
        if values.size == 0:
            return checkpoint
        if np.dtype(info.dtype).kind == "f" and values.min() >= 0 and values.max() <= 1:
            # reflectance as 0..1: read in the range it is in, alike for every band (a percentile stretch
            # of each changed its colours: 48 % more building area than the same pixels as bytes)
            stretch = Stretch((0.0,) * n, (1.0,) * n, True, f"{info.dtype} values within 0..1, read as 0..1")
        else:
            lo_pct, hi_pct = AUTO_STRETCH_PERCENTILES
            lows = np.percentile(values, lo_pct, axis=1)
            highs = np.percentile(values, hi_pct, axis=1)
            highs = np.where(highs > lows, highs, lows + 1.0)
            stretch = Stretch(
                tuple(float(v) for v in lows),
                tuple(float(h - l) for l, h in zip(lows, highs)),
                True,
                f"{info.dtype} stretched per band from percentiles {lo_pct:g}-{hi_pct:g}: "
                + ", ".join(f"{l:g}..{h:g}" for l, h in zip(lows, highs)),
            )
    else:
        raise InputError(f"stretch must be 'auto', 'none' or (low, high), got {spec!r}")
    values = global_raw[:, global_valid.astype(bool)].astype(np.float64)
    if values.size:
        lows = np.asarray(stretch.offset)[:, None]
        highs = lows + np.asarray(stretch.scale)[:, None]
        fraction = float(((values < lows) | (values > highs)).mean())
    else:
        fraction = 0.0
    stretch = Stretch(stretch.offset, stretch.scale, True, stretch.description, fraction)
    log.info("input stretch: %s (%.2f %% of values saturate)", stretch.description, 100 * fraction)
    return stretch


def default_bands(src: rasterio.io.DatasetReader, needed: int) -> tuple[int, ...]:
    """The bands to feed when the user chose none: those labelled red, green and blue, in
    that order, where the file labels them (a BGR file, four bands of which three are RGB);
    else all but alpha, if that is ``needed``. Says so when the labels choose other bands
    than the file's first ones (:func:`labelled_bands` does not)."""
    chosen, relabelled = labelled_bands(src, needed)
    if not relabelled:
        return chosen
    colour = [b for b, ci in zip(src.indexes, src.colorinterp) if ci != ColorInterp.alpha]
    if list(chosen) != colour[: len(chosen)]:  # labels in another order than the file's (BGR)
        log.warning(
            "%s: reading bands %s, which the file labels red, green and blue (of %d bands); pass bands=(%s) to "
            "read others", src.name, ",".join(map(str, chosen)), src.count, ", ".join(map(str, colour[:3])),
        )
    else:  # the first bands, with more after them (RGB + near infrared): another choice brings those in
        left = [b for b in colour if b not in chosen]
        example = (left[0], *chosen[: needed - 1])
        log.warning(
            "%s: reading bands %s, which the file labels red, green and blue, and leaving out band%s %s (of %d bands); pass "
            "bands=(%s), say, to feed band %d first (a false-colour composite, for a model trained on one)",
            src.name, ",".join(map(str, chosen)), "s" if len(left) > 1 else "", ",".join(map(str, left)), src.count,
            ", ".join(map(str, example)), left[0],
        )
    return chosen


def labelled_bands(src: rasterio.io.DatasetReader, needed: int) -> tuple[tuple[int, ...], bool]:
    """:func:`default_bands` without a word: the bands, and whether the file's colour labels
    chose them (``True`` where they differ from its non-alpha bands in file order, as in a
    BGR file or one with a near-infrared band first).

    Raises:
        InputError: paletted bands; no labels and not ``needed`` non-alpha bands.
    """
    interp = list(src.colorinterp)
    if ColorInterp.palette in interp:
        raise InputError(_paletted(interp.index(ColorInterp.palette) + 1, src.name))
    colour = [i + 1 for i, ci in enumerate(interp) if ci != ColorInterp.alpha]
    labelled = [interp.count(ci) == 1 for ci in (ColorInterp.red, ColorInterp.green, ColorInterp.blue)]
    if needed == 3 and all(labelled):
        chosen = tuple(interp.index(ci) + 1 for ci in (ColorInterp.red, ColorInterp.green, ColorInterp.blue))
        return chosen, chosen != tuple(colour)
    if len(colour) == needed:
        return tuple(colour), False
    raise InputError(
        f"scene has {len(colour)} band{'s' if len(colour) != 1 else ''} (alpha not counted); "
        f"this model needs {needed} (RGB){_band_choice_advice(colour, needed)}"
    )


def _band_choice_advice(colour: Sequence[int], needed: int) -> str:
    """What to do about a scene whose ``colour`` (non-alpha, 1-based) bands, unlabelled, are
    not the ``needed`` ones: the end of :func:`labelled_bands`'s message."""
    if len(colour) > needed:
        return f": pass bands=({', '.join(map(str, colour[:needed]))}) to choose them"
    if len(colour) == 1:  # grey: the same band as red, green and blue
        return f": pass bands=({', '.join([str(colour[0])] * needed)}) to choose them"
    if not colour:
        return ": it has no colour band to read; give a scene with red, green and blue bands"
    # Two bands are no RGB image: a repeat runs, but only the user knows whether it means anything.
    repeat = ", ".join(map(str, [colour[0]] * (needed - len(colour)) + list(colour)))
    return (
        f", so it cannot be read as RGB: give a scene with red, green and blue bands (gdalbuildvrt -separate"
        f" RGB.vrt R.tif G.tif B.tif stacks single-band files), or repeat a band, e.g. bands=({repeat}),"
        " if the model may see these bands as colours"
    )


def _paletted(band: int, name: str) -> str:
    return (f"band {band} of {name} holds palette indices (a colour table), not colours: expand it to RGB first, "
            "e.g. gdal_translate -expand rgb IN.tif OUT.tif")


#: Share of a scene's edge pixels that, black in every band (0) in a scene that declares
#: no nodata, are taken for an undeclared collar or gap worth a warning.
BLACK_EDGE_SHARE = 0.1
#: Edge pixels looked at along each side of a scene, at most (the side sampled evenly).
EDGE_SAMPLES = 4096


def black_edge_share(info: SceneInfo) -> float:
    """The share of a scene's edge pixels (its outer rows and columns, each side sampled at
    up to :data:`EDGE_SAMPLES` pixels) that are 0 in every band fed to the model: reading
    four thin strips, whatever the scene's size."""
    black = total = 0
    with open_pixels(info.path) as src:
        h, w = info.height, info.width
        for window in (Window(0, 0, w, min(2, h)), Window(0, max(0, h - 2), w, min(2, h)),
                       Window(0, 0, min(2, w), h), Window(max(0, w - 2), 0, min(2, w), h)):
            shape = (len(info.bands), min(int(window.height), EDGE_SAMPLES), min(int(window.width), EDGE_SAMPLES))
            try:
                data = src.read(list(info.bands), window=window, out_shape=shape, resampling=Resampling.nearest)
            except RasterioIOError as exc:
                raise read_failed_error(str(info.path), exc) from None
            zero = np.all(data == 0, axis=0)
            black += int(np.count_nonzero(zero))
            total += zero.size
    return black / total if total else 0.0


def warn_if_black_edges(info: SceneInfo) -> None:
    """Warn when a scene that says no pixel lacks data (no nodata value, mask or alpha band)
    is black (0 in every band) along much of its edges: the collar ``gdalwarp`` leaves
    without ``-dstnodata``, or the gap of a VRT of tiles built without ``-addalpha``. The
    model classifies those pixels and, as context, they sway the classes near them (a
    warped Joplin tile, 47 % collar: 10 % of the pixels inside got the class they get
    with the collar declared nodata)."""
    if info.has_mask:
        return
    share = black_edge_share(info)
    if share >= BLACK_EDGE_SHARE:
        log.warning(
            "%s declares no nodata, but %.0f %% of its edge pixels are black (0 in every band): if they are no data "
            "(the collar of a warp, the gap between tiles), the model classifies them and they sway the classes "
            "beside them; declare them and segment that (gdal_translate -of VRT -a_nodata 0 %s %s; or gdalwarp "
            "-dstalpha, gdalbuildvrt -addalpha)", info.path, 100 * share, shlex.quote(str(info.path)),
            shlex.quote(os.path.splitext(os.path.basename(str(info.path)))[0] + "-nodata.vrt"),
        )


#: Share of an alpha band's pixels (sampled) that, neither transparent (0) nor opaque (the
#: type's largest value), make it look like a data band declared alpha: a 4-band RGB + NIR
#: file written by GDAL or rasterio without a photometric option comes out as RGBA.
ALPHA_DATA_SHARE = 0.25
#: Windows of an alpha band sampled to tell (:func:`alpha_as_data_share`): a grid of
#: ``ALPHA_WINDOWS x ALPHA_WINDOWS`` windows of ``ALPHA_WINDOW`` px, a few blocks' reads
#: whatever the scene's size (a remote file is not read whole for a warning).
ALPHA_WINDOWS, ALPHA_WINDOW = 4, 64


def alpha_as_data_share(path: str | os.PathLike) -> tuple[int, float] | None:
    """``(band, share)``: a scene's alpha band and the share of its pixels (sampled in
    :data:`ALPHA_WINDOWS` x :data:`ALPHA_WINDOWS` windows spread over the scene) that are
    neither transparent (0) nor opaque (the type's largest value, or 255 in a 16-bit band);
    ``None`` without an alpha band."""
    with rasterio.open(path) as src:
        alpha = next((i + 1 for i, ci in enumerate(src.colorinterp) if ci == ColorInterp.alpha), None)
        if alpha is None:
            return None
        size = (min(ALPHA_WINDOW, src.height), min(ALPHA_WINDOW, src.width))
        tops = np.linspace(0, src.height - size[0], ALPHA_WINDOWS).round().astype(int)
        lefts = np.linspace(0, src.width - size[1], ALPHA_WINDOWS).round().astype(int)
        try:
            values = np.stack([src.read(alpha, window=Window(int(left), int(top), size[1], size[0]))
                               for top in np.unique(tops) for left in np.unique(lefts)])
        except RasterioIOError as exc:
            raise read_failed_error(str(path), exc) from None
        dtype = np.dtype(src.dtypes[alpha - 1])
    opaque = [np.iinfo(dtype).max, 255] if dtype.kind in "ui" else [1.0, 255.0]
    between = np.count_nonzero((values != 0) & ~np.isin(values, opaque))
    return alpha, between / values.size


def warn_if_alpha_holds_data(info: SceneInfo) -> None:
    """Warn when a scene's alpha band looks like data (most of its pixels neither 0 nor
    opaque): GDAL, QGIS and glgeo read it as the mask, so its 0s get no class. A 4-band
    RGB + NIR file that GDAL or rasterio wrote without ``PHOTOMETRIC`` declares its NIR
    band alpha; its zeros then went without a class, silently."""
    if not info.has_mask:  # no alpha band (nor any mask): nothing to open the file again for
        return
    found = alpha_as_data_share(info.path)
    if found is None or found[1] < ALPHA_DATA_SHARE:
        return
    band, share = found
    log.warning(
        "%s: band %d is declared alpha (transparency), but %.1f %% of its pixels are neither transparent nor opaque, "
        "as a data band's are (a near-infrared band in a 4-band file written as RGBA); it is read as the scene's "
        "mask: where it is 0 the map has no data. If it is no transparency, declare it so and segment that: "
        "gdal_translate -of VRT -colorinterp_%d undefined %s %s",
        info.path, band, 100 * share, band, shlex.quote(str(info.path)),
        shlex.quote(os.path.splitext(os.path.basename(str(info.path)))[0] + "-bands.vrt"),
    )


def masked_beyond_nodata(src: rasterio.io.DatasetReader, band: int = 1) -> bool:
    """Whether ``band``'s pixels without data are marked by a mask, an internal mask band or
    an alpha band (which GDAL's tools and QGIS honour), rather than by a nodata value or not
    at all: readers of class rasters must then read that mask (``src.read_masks``)."""
    flags = src.mask_flag_enums[band - 1]
    return MaskFlags.all_valid not in flags and MaskFlags.nodata not in flags


def open_raster(path: str | os.PathLike, kinds: str = "a GeoTIFF, VRT, JPEG or PNG") -> rasterio.io.DatasetReader:
    """Open a scene's file, or say in one line why it cannot be (``kinds``: what to give instead).

    Raises:
        SceneError: a local file that is missing, or a file that is not a raster.
    """
    name = str(path)
    if "://" not in name and not name.startswith("/vsi") and not Path(name).exists():
        raise SceneError(f"scene {name!r} does not exist; check the path")
    try:
        return rasterio.open(name)
    except RasterioIOError as exc:
        raise SceneError(f"cannot open {name!r} as a raster ({exc}); give {kinds}") from None


def inspect_scene(path: str | os.PathLike, bands: Sequence[int] | None = None, needed: int = 3) -> SceneInfo:
    """Open a scene, check it, and describe it.

    Args:
        path: anything rasterio opens.
        bands: 1-based bands to feed, in order (default: the non-alpha bands).
        needed: how many bands the model takes.

    Raises:
        SceneError: missing, unreadable or not a raster.
        InputError: wrong band count or band numbers out of range.
    """
    from .mosaic import mosaic_title  # the mosaic opens its tiles with open_raster

    name = str(path)
    with open_raster(name) as src:
        if bands is None or len(bands) == 0:
            chosen = default_bands(src, needed)
        else:
            chosen = tuple(int(b) for b in bands)
            bad = [b for b in chosen if not 1 <= b <= src.count]
            if bad:
                listed = ", ".join(map(str, bad))
                raise InputError(
                    f"band{'s' if len(bad) > 1 else ''} {listed} {'are' if len(bad) > 1 else 'is'} not in the scene,"
                    f" which has {'band 1' if src.count == 1 else f'bands 1-{src.count}'}"
                )
            if len(chosen) != needed:
                raise InputError(f"bands={chosen} names {len(chosen)} band{'s' if len(chosen) != 1 else ''}; this model needs {needed} (RGB)")
        paletted = [b for b in chosen if src.colorinterp[b - 1] == ColorInterp.palette]
        if paletted:
            raise InputError(_paletted(paletted[0], name))
        dtypes = {src.dtypes[b - 1] for b in chosen}
        if len(dtypes) != 1:
            raise InputError(f"the chosen bands mix data types ({', '.join(sorted(dtypes))}); choose bands of one type")
        flags = [src.mask_flag_enums[b - 1] for b in chosen]
        has_mask = any(MaskFlags.all_valid not in f for f in flags)
        crs = src.crs if src.crs else None
        gcps, gcp_crs = src.gcps
        placed_by_gcps = crs is None and src.transform == Affine.identity() and bool(gcps)
        return SceneInfo(
            path=name,
            height=src.height,
            width=src.width,
            count=src.count,
            bands=chosen,
            dtype=dtypes.pop(),
            crs=crs,
            transform=src.transform,
            nodata=src.nodatavals[chosen[0] - 1],
            has_mask=has_mask,
            block_shape=tuple(src.block_shapes[chosen[0] - 1]),  # type: ignore[arg-type]
            has_overviews=any(src.overviews(b) for b in chosen),
            gcps=(tuple(gcps), gcp_crs if gcp_crs else None) if placed_by_gcps else None,
            rpcs=src.rpcs or None,
            title=mosaic_title(src.tags()),
        )


@dataclass(frozen=True)
class PatchBatch:
    """Pixels of a batch of patches.

    Attributes:
        windows: the patches.
        images: ``(N, bands, h, w)`` float32 network inputs (stretched and scaled).
        valid: ``(N, h, w)`` boolean valid masks.
        seconds: time spent reading and converting them.
    """

    windows: tuple[PatchWindow, ...]
    images: np.ndarray
    valid: np.ndarray
    seconds: float

    def any_valid(self) -> np.ndarray:
        """``(N,)`` whether each patch has at least one valid pixel."""
        return self.valid.reshape(len(self.windows), -1).any(axis=1)


def _clip_to(pw: PatchWindow, height: int, width: int) -> tuple[PatchWindow, tuple[int, int, int, int]]:
    """The part of a patch inside a ``height x width`` grid, and how far the patch reaches
    beyond it ``(above, below, before, after)``; a mirror image of the part must be able to
    fill that (each reach smaller than the part)."""
    top, left = max(pw.top, 0), max(pw.left, 0)
    bottom, right = min(pw.bottom, height), min(pw.right, width)
    reach = (top - pw.top, pw.bottom - bottom, left - pw.left, pw.right - right)
    if bottom - top <= max(reach[:2]) or right - left <= max(reach[2:]):
        raise InternalError(f"patch {pw} reaches farther beyond the {height} x {width} grid than it lies inside")
    return replace(pw, top=top, left=left, height=bottom - top, width=right - left), reach


#: How the global image is made from the scene's pixels (``global_resampling``): GDAL's
#: antialiased bilinear read, or PIL's 8-bit bilinear resize (:mod:`glgeo.pil_resize`).
GLOBAL_RESAMPLINGS: tuple[str, ...] = ("gdal", "pil")


def check_global_resampling(info: SceneInfo, global_resampling: str) -> None:
    """Refuse a global resampling the scene cannot have: ``pil`` (PIL's 8-bit resize, the
    released code's) needs an 8-bit scene."""
    if global_resampling not in GLOBAL_RESAMPLINGS:
        raise InputError(f"global_resampling must be one of {', '.join(GLOBAL_RESAMPLINGS)}, got {global_resampling!r}")
    if global_resampling == "pil" and np.dtype(info.dtype) != np.uint8:
        raise InputError(
            f"global_resampling='pil' (the released code's 8-bit resize) needs an 8-bit scene, as the released code "
            f"read; {info.path} is {info.dtype}: convert it to 8 bits (gdal_translate -ot Byte -scale), or use "
            "global_resampling='gdal' (without --released)"
        )


class SceneReader:
    """Reads a scene's global image and patches for GLNet.

    Use as a context manager. The dataset handle opened here serves the main thread; the
    background reader of :meth:`iter_batches` opens its own (GDAL handles are not shared
    across threads).

    Args:
        info: the scene, from :func:`inspect_scene`.
        gdal_cache_mb: GDAL block cache for this process, in MB. GDAL's default (5 % of the
            RAM) would let the cache, and so the resident memory, grow with the scene; a
            fixed cache keeps memory flat. It must hold about one patch row of blocks.
        scale: read the scene at this fraction of its resolution (or ``(rows, cols)``, one
            for each axis): :attr:`info` is then the
            coarser :func:`working_grid`, which patch windows refer to, and
            :attr:`source` the file itself.
        nodata_fill: what the network inputs hold where the scene has no data: the valid
            pixels mirrored into the gap (``mirror``), each band's mean over the image's
            valid pixels (``mean``) or 0 (``zero``, the released code); see
            :meth:`Stretch.apply`.
        global_resampling: how :meth:`read_global_raw` decimates: GDAL's antialiased
            bilinear read (``gdal``) or PIL's 8-bit bilinear resize, bit for bit (``pil``,
            the released code's; :mod:`glgeo.pil_resize`), which needs an 8-bit scene.

    Attributes:
        info: the grid reads refer to (the scene's own unless ``scale`` is below 1).
        source: the scene as opened.
    """

    def __init__(
        self, info: SceneInfo, gdal_cache_mb: int | None = None, scale: Scale = 1.0, nodata_fill: NodataFill = "mirror",
        global_resampling: str = "gdal",
    ) -> None:
        if nodata_fill not in NODATA_FILLS:
            raise InputError(f"nodata_fill must be one of {', '.join(NODATA_FILLS)}, got {nodata_fill!r}")
        check_global_resampling(info, global_resampling)
        self.source = info
        self.scale = scale
        self.nodata_fill = nodata_fill
        self.global_resampling = global_resampling
        self.info = working_grid(info, scale)
        self._ratio = (info.height / self.info.height, info.width / self.info.width)
        self.stretch: Stretch | None = None
        self._float = np.dtype(info.dtype).kind == "f"  # NaNs and infinities: no data (_finite)
        self._env = rasterio.Env(GDAL_CACHEMAX=gdal_cache_mb * 1024 * 1024) if gdal_cache_mb else rasterio.Env()
        self._src: rasterio.io.DatasetReader | None = None

    def __enter__(self) -> "SceneReader":
        self._env.__enter__()
        try:
            self._src = open_pixels(self.info.path, self.info.has_overviews)  # the pixels decide, not overviews
        except RasterioIOError as exc:
            self._env.__exit__(None, None, None)
            raise SceneError(f"cannot open {self.info.path!r}: {exc}") from None
        return self

    def __exit__(self, *exc: object) -> None:
        if self._src is not None:
            self._src.close()
            self._src = None
        self._env.__exit__(*exc)

    @property
    def source_may_be_invalid(self) -> bool:
        """Whether a pixel of the scene can hold no data: it has a nodata value, a mask or
        an alpha band, or floating-point values (NaN and infinities hold no data)."""
        return self.source.has_mask or self._float

    @property
    def src(self) -> rasterio.io.DatasetReader:
        if self._src is None:
            raise SceneError("the scene reader is closed; use it inside a `with` block")
        return self._src

    # ----------------------------------------------------------------- global
    def read_global_raw(
        self, size: int | tuple[int, int], window: PatchWindow | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The whole scene, or one ``window`` of it (a context window, in :attr:`info`'s
        pixels), decimated to ``size`` (antialiased bilinear), in raw values.

        Returns:
            ``(bands, gh, gw)`` float32 raw values and the ``(gh, gw)`` valid mask.
        """
        gh, gw = (size, size) if isinstance(size, int) else size
        bands = list(self.info.bands)
        source = None if window is None else self._source_window(window)
        try:
            if self.global_resampling == "pil":
                raw = self._resize_like_pil(bands, source, (gh, gw))
            else:
                raw = self.src.read(
                    bands, window=source, out_shape=(len(bands), gh, gw), resampling=Resampling.bilinear,
                    out_dtype="float32",
                )
            # the global branch sees the whole window, also outside an area of interest: its context
            valid = self._finite(raw, self._read_valid(source, (gh, gw), region=False))
        except RasterioIOError as exc:
            raise read_failed_error(self.info.path, exc) from None
        return raw, valid

    def _resize_like_pil(self, bands: list[int], source: Window | None, size: tuple[int, int]) -> np.ndarray:
        """``source`` (the whole scene: ``None``) of the 8-bit scene resized to ``size`` as
        ``PIL.Image.resize(..., BILINEAR, box=...)`` of the whole image computes it, read a
        band of rows at a time (:func:`glgeo.pil_resize.resize_rows`), as float32. Pixels
        with no data enter it as 0 (the released code knew no nodata: what a scene without
        any gets is the released image exactly)."""
        from .pil_resize import resize_rows

        height, width = self.source.height, self.source.width
        box = None
        if source is not None:
            box = (source.col_off, source.row_off, source.col_off + source.width, source.row_off + source.height)

        def read(rows: slice, cols: slice) -> np.ndarray:
            window = Window.from_slices(rows, cols)
            values = self.src.read(bands, window=window)
            if self.source.has_mask:  # no data enters the resize as black, as --nodata-fill zero shows it
                values[:, ~self.src.read_masks(bands, window=window).any(axis=0)] = 0
            return values

        return resize_rows(read, (height, width), size, box=box).astype(np.float32)

    def read_global(
        self,
        size: int | tuple[int, int],
        stretch: StretchSpec,
        scaling: tuple[float, float],
        window: PatchWindow | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The global branch's input: the decimated scene (or one context ``window``) as
        network inputs.

        Also fixes the reader's stretch (:attr:`stretch`) from this read, which patch
        reads then use; a window's read uses the stretch already fixed
        (:meth:`fix_stretch`), so every window of a scene maps values the same way.

        Args:
            size: global image side (or ``(rows, cols)``).
            stretch: the stretch rule (see :func:`choose_stretch`).
            scaling: the checkpoint's input scaling ``(min, max)``.
            window: a context window of :attr:`info`; ``None``: the whole scene.

        Returns:
            ``(bands, gh, gw)`` float32 inputs and the ``(gh, gw)`` valid mask.
        """
        gh, gw = (size, size) if isinstance(size, int) else size
        pads = (0, 0, 0, 0)
        if window is not None and (
            window.top < 0 or window.left < 0 or window.bottom > self.info.height or window.right > self.info.width
        ):
            window, pads = self._global_inside(window, (gh, gw))
            gh, gw = gh - pads[0] - pads[1], gw - pads[2] - pads[3]
        raw, valid = self.read_global_raw((gh, gw), window)
        if window is None:
            self.fix_stretch(stretch, scaling, (raw, valid))
        elif self.stretch is None:
            self.fix_stretch(stretch, scaling)
        image = self.stretch.apply(raw, valid, self.nodata_fill)  # type: ignore[union-attr]
        if any(pads):  # beyond the scene's edge: the scene mirrored there, as patches see it
            above, below, before, after = pads
            image = np.pad(image, ((0, 0), (above, below), (before, after)), mode="reflect")
            valid = np.pad(valid, ((above, below), (before, after)))
        return image, valid

    def _global_inside(self, box: PatchWindow, size: tuple[int, int]) -> tuple[PatchWindow, tuple[int, int, int, int]]:
        """For a global image of ``size`` over ``box`` (whole working-grid pixels per image
        pixel) reaching beyond the scene: the part of the box under the image pixels wholly
        inside the scene, and how many image pixels lie beyond it ``(above, below, before,
        after)``."""
        (gh, gw), reach = size, []
        for start, length, n, limit in ((box.top, box.height, gh, self.info.height), (box.left, box.width, gw, self.info.width)):
            if length % n:
                raise InternalError(f"a global image of {n} px cannot cover {length} px in whole pixels")
            step = length // n
            first = -(-max(0, -start) // step)  # image pixels before the scene's first pixel
            last = min(n, (limit - start) // step)  # past its last
            if last - first < 2:
                raise InternalError(f"the global box {box} reaches too far beyond the {self.info.height} x {self.info.width} grid")
            reach.append((first, n - last, start + first * step, (last - first) * step))
        (above, below, top, height), (before, after, left, width) = reach
        return replace(box, top=top, left=left, height=height, width=width), (above, below, before, after)

    def fix_stretch(
        self,
        stretch: StretchSpec,
        scaling: tuple[float, float],
        global_read: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> Stretch:
        """Choose the scene's input stretch (:attr:`stretch`, see :func:`choose_stretch`)
        once for the whole scene.

        Args:
            stretch: the stretch rule.
            scaling: the checkpoint's input scaling ``(min, max)``.
            global_read: the whole scene's decimated raw values and valid mask, when
                already read; otherwise only what the rule needs is read (nothing for
                8-bit scenes).
        """
        # "none" reads a sample too, to say how much of a wider range it saturates
        needs_values = self.info.dtype not in ("uint8", "int8")
        if needs_values:
            # statistics from a nearest-neighbour sample: the antialiased global image is
            # smoothed, and its percentiles would understate the full-resolution range
            sample, sample_valid = self.read_sample(STRETCH_SAMPLE_SIZE)
        elif global_read is not None:
            sample, sample_valid = global_read
        else:
            sample = np.zeros((len(self.info.bands), 1, 1), dtype=np.float32)
            sample_valid = np.zeros((1, 1), dtype=bool)
        self.stretch = choose_stretch(self.info, sample, sample_valid, scaling[0], scaling[1], stretch)
        return self.stretch

    def has_data(self, window: PatchWindow) -> bool:
        """Whether a context window (in :attr:`info`'s pixels) holds any valid pixel (inside
        the area of interest, if any), read from the scene's mask at full resolution."""
        if not self.info.has_mask:
            return True
        source = self._source_window(window)
        try:
            return bool(self._in_region(self.src.read_masks(list(self.source.bands), window=source).any(axis=0), source).any())
        except RasterioIOError as exc:
            raise read_failed_error(self.info.path, exc) from None

    def read_sample(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        """An unsmoothed sample of the scene's values: a nearest-neighbour decimated read of
        at most ``size x size`` pixels (raw values, valid mask)."""
        shape = (min(size, self.info.height), min(size, self.info.width))
        bands = list(self.info.bands)
        try:
            raw = self.src.read(bands, out_shape=(len(bands), *shape), resampling=Resampling.nearest, out_dtype="float32")
            valid = self._finite(raw, self._read_valid(None, shape, region=False))
        except RasterioIOError as exc:
            raise read_failed_error(self.info.path, exc) from None
        return raw, valid

    # ---------------------------------------------------------------- patches
    def _finite(self, raw: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """``valid`` (``(rows, cols)``) without the pixels where a band of ``raw`` is NaN or
        infinite: in a floating-point scene such values hold no data, declared or not
        (a NaN fed to the network, or an infinity stretched to white, changes the classes
        of the whole context window around it)."""
        if not self._float or raw.dtype.kind != "f":
            return valid
        finite = np.isfinite(raw).all(axis=0)
        return valid if finite.all() else valid & finite

    def _read_valid(
        self,
        window: Window | None,
        out_shape: tuple[int, int] | None = None,
        resampling: Resampling = Resampling.nearest,
        region: bool = True,
    ) -> np.ndarray:
        """Valid pixels (any band valid); decimated with ``resampling`` to ``out_shape``: with
        ``average`` a coarse pixel is valid where any of the pixels it covers is. With
        ``region``, only pixels in the area of interest (:attr:`SceneInfo.region`)."""
        if not self.info.has_mask:
            shape = out_shape or (int(window.height), int(window.width))  # type: ignore[union-attr]
            return np.ones(shape, dtype=bool)
        kwargs = {"out_shape": (len(self.info.bands), *out_shape), "resampling": resampling} if out_shape else {}
        masks = self.src.read_masks(list(self.info.bands), window=window, **kwargs)
        return self._in_region(masks.any(axis=0), window) if region else masks.any(axis=0)

    def _in_region(self, valid: np.ndarray, window: Window | None) -> np.ndarray:
        """``valid`` (over a window of the scene, maybe decimated) and-ed with the area of interest."""
        if self.source.region is None:
            return valid
        from .aoi import region_mask

        if window is None:
            window = Window(0, 0, self.source.width, self.source.height)
        inside = region_mask(self.source.region, window.col_off, window.row_off, window.width, window.height, valid.shape)
        return valid & inside

    def _source_window(self, pw: PatchWindow) -> Window:
        """The scene's window under a patch of :attr:`info` (fractional when scaled)."""
        if self.info is self.source:
            return Window(pw.left, pw.top, pw.width, pw.height)
        ry, rx = self._ratio
        return Window(pw.left * rx, pw.top * ry, pw.width * rx, pw.height * ry)

    def read_source_valid(self, row_off: int, height: int) -> np.ndarray:
        """The scene's own valid mask for rows ``row_off .. row_off + height`` (full width,
        full resolution), for a prediction made on a coarser working grid."""
        window = Window(0, row_off, self.source.width, height)
        if not self.source.has_mask and not self._float:
            return np.ones((height, self.source.width), dtype=bool)
        bands = list(self.source.bands)
        try:
            if self.source.has_mask:
                valid = self._in_region(self.src.read_masks(bands, window=window).any(axis=0), window)
            else:
                valid = np.ones((height, self.source.width), dtype=bool)
            # a floating-point scene's NaNs and infinities: no data (see _finite)
            return self._finite(self.src.read(bands, window=window), valid) if self._float else valid
        except RasterioIOError as exc:
            raise read_failed_error(self.info.path, exc) from None

    def read_patches(self, windows: Sequence[PatchWindow], skip_pixels: frozenset[int] | None = None) -> PatchBatch:
        """Read a batch of patches (same shape) as network inputs and valid masks.

        A patch may reach beyond the scene's edge (the engine's edge margins,
        :func:`glgeo.tiling.edge_margins`): the part inside is read and mirrored outward at
        the edge for the network, and is all the valid mask holds.

        Args:
            windows: the patches.
            skip_pixels: grid indices of patches whose pixels are not needed (only their
                valid masks are read; their images are zeros).
        """
        if self.stretch is None:
            raise SceneError("read the global image first: it fixes the input stretch")
        start = time.perf_counter()
        bands = list(self.info.bands)
        h, w = windows[0].height, windows[0].width
        images = np.empty((len(windows), len(bands), h, w), dtype=np.float32)
        valid = np.empty((len(windows), h, w), dtype=bool)
        # on a working grid: decimated reads, antialiased bilinear as training read them
        scaled = self.info is not self.source
        try:
            for i, pw in enumerate(windows):
                inside, reach = _clip_to(pw, self.info.height, self.info.width)
                above, below, before, after = reach
                window = self._source_window(inside)
                shape = (inside.height, inside.width)
                # the scene's own valid pixels feed the network (real pixels around an area of
                # interest, as without it); the area of interest decides what is computed and kept
                scene_valid = (
                    self._read_valid(window, shape, Resampling.average, region=False) if scaled
                    else self._read_valid(window, region=False)
                )
                kept = self._in_region(scene_valid, window)
                if kept.any() and not (skip_pixels and pw.index in skip_pixels):
                    resample = {"out_shape": (len(bands), *shape), "resampling": Resampling.bilinear} if scaled else {}
                    raw = self.src.read(bands, window=window, **resample)
                    fed = scene_valid
                    if self._float:  # NaNs and infinities hold no data: filled for the network
                        fed = self._finite(raw, scene_valid)
                        if not scaled:  # and left without a class (on a working grid, whose pixels
                            # near one took it into their decimation, the scene's own grid decides:
                            # read_source_valid)
                            kept = self._in_region(fed, window)
                    image = self.stretch.apply(raw, fed, self.nodata_fill)
                    if any(reach):  # the part beyond the scene: the scene mirrored at its edge
                        image = np.pad(image, ((0, 0), (above, below), (before, after)), mode="reflect")
                    images[i] = image
                else:
                    if kept.any() and self._float and not scaled:  # not computed; its NaNs still no data
                        kept = self._in_region(self._finite(self.src.read(bands, window=window), scene_valid), window)
                    images[i] = 0.0  # never computed: skip the pixel read
                valid[i] = np.pad(kept, ((above, below), (before, after))) if any(reach) else kept
        except RasterioIOError as exc:
            raise read_failed_error(self.info.path, exc) from None
        return PatchBatch(tuple(windows), images, valid, time.perf_counter() - start)

    def iter_batches(
        self,
        batches: Iterable[Sequence[PatchWindow]],
        prefetch: int = 1,
        skip_pixels: frozenset[int] | None = None,
    ) -> Iterator[PatchBatch]:
        """Read ``batches`` in order, ``prefetch`` batches ahead in a background thread.

        ``skip_pixels`` is passed to :meth:`read_patches`.

        With ``prefetch=0`` every batch is read in the calling thread when asked for.
        Errors in the background reader are raised here, in the caller's thread.
        """
        if prefetch <= 0:
            for batch in batches:
                yield self.read_patches(batch, skip_pixels)
            return
        yield from self.read_ahead(lambda reader: (reader.read_patches(b, skip_pixels) for b in batches), prefetch)

    def read_ahead(self, produce: Callable[["SceneReader"], Iterable[T]], depth: int = 1) -> Iterator[T]:
        """What ``produce(reader)`` yields, made in a background thread up to ``depth``
        items ahead of the caller.

        ``produce`` gets the thread's own reader (GDAL handles are not shared across
        threads): this reader's scene, scale, nodata fill and stretch, opened in the thread.
        Errors in the thread are raised here, in the caller's thread. Closing the returned
        iterator (or leaving it) stops the thread.
        """
        if depth < 1:
            raise InternalError(f"read_ahead needs a depth of at least 1, got {depth}")
        worker_reader = SceneReader(
            self.source, scale=self.scale, nodata_fill=self.nodata_fill, global_resampling=self.global_resampling
        )  # the cache size is process-wide: set by the caller
        worker_reader.stretch = self.stretch
        out: queue.Queue = queue.Queue(maxsize=depth)
        stop = threading.Event()
        _done = object()

        def work() -> None:
            try:
                with worker_reader:
                    for item in produce(worker_reader):
                        if stop.is_set():
                            return
                        out.put(item)
                out.put(_done)
            except BaseException as exc:  # handed to the consumer, which re-raises it
                out.put(exc)

        thread = threading.Thread(target=work, name="glgeo-reader", daemon=True)
        thread.start()
        try:
            while True:
                item = out.get()
                if item is _done:
                    break
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            while thread.is_alive():  # unblock a reader waiting on a full queue
                try:
                    out.get(timeout=0.05)
                except queue.Empty:
                    pass
            thread.join()
