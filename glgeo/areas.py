"""Class areas: how much of a class raster each class covers, in one unit spelling.

``glgeo segment`` (while writing), a batch (for scenes already segmented) and
``glgeo vectorize`` (per polygon) all measure areas the same way:

* a projected CRS: square metres (``"m2"``), whatever the CRS's linear unit (feet are
  converted). Where the projection's own m² are more than 1 % off the ground's somewhere
  in the raster (a Mercator projection such as Web Mercator, whose m² overstate the
  ground's by 1 / cos²(latitude); a projection used far outside its zone), areas are
  measured on the ground instead: each pixel's own area on the CRS's ellipsoid
  (:class:`PixelAreas`), each polygon's area on the ellipsoid (:func:`ground_areas`);
* a geographic CRS: square metres on the ground too, measured so;
* no CRS: pixels (``"px"``) for a plain image (no transform either), else squared units of
  its transform (``"map unit2"``).

:func:`format_area` writes an area for people: ``850 m2``, ``12.35 ha``, ``4.21 km2``.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from affine import Affine

from .errors import InputError, InternalError, SceneError
from .schemes import NODATA_ID, ClassScheme

#: The unit spellings :func:`area_unit` returns (a CRS's own units; summaries and
#: polygons never hold ``"deg2"``: :class:`PixelAreas` measures those on the ground).
UNITS = ("m2", "deg2", "map unit2", "px")


@dataclass(frozen=True)
class ClassArea:
    """How much of a raster one class covers.

    Attributes:
        id: class id in the raster.
        name: class name.
        pixels: pixels of that class.
        area: area in the summary's unit (see :class:`PixelAreas`).
        fraction: share of the valid (not nodata) pixels; of their area where pixels'
            areas differ (measured on the ground, :class:`PixelAreas`).
    """

    id: int
    name: str
    pixels: int
    area: float
    fraction: float


def _is_plain(transform: Affine) -> bool:
    """Whether a transform is the identity (or its y-flip): a raster without georeferencing."""
    return transform in (Affine.identity(), Affine(1.0, 0.0, 0.0, 0.0, -1.0, 0.0))


def area_unit(crs, transform: Affine) -> tuple[str, float]:
    """``(unit, factor)``: the CRS's own unit of area, and the factor from a pixel's area in
    squared CRS units (``abs(transform.determinant)``) to it (metres for feet).

    Args:
        crs: a rasterio CRS, or ``None``.
        transform: the raster's pixel-to-map transform.
    """
    if crs is None:
        return ("px", 1.0 / abs(transform.determinant)) if _is_plain(transform) else ("map unit2", 1.0)
    try:
        if crs.is_geographic:
            return "deg2", 1.0
        _, metres_per_unit = crs.linear_units_factor
    except Exception:  # noqa: BLE001 - CRSs without known units (local, engineering)
        return "map unit2", 1.0
    return "m2", float(metres_per_unit) ** 2


#: Where a projection's own m² may differ from the ground's by more than this share
#: somewhere in a raster, its areas are measured on the ground (the CRS's ellipsoid).
GROUND_TOLERANCE = 0.01
#: Pixel areas are computed exactly at most this many lattice points along each side of
#: a raster and interpolated (bilinearly) between them.
_LATTICE_POINTS = 129


class PixelAreas:
    """The area of each pixel of a raster, on the ground where its CRS's own units are not.

    A projected CRS's pixels all have the same area in its own (squared, converted to
    metres) units. Those are the ground's to within :data:`GROUND_TOLERANCE` for most
    projected CRSs (UTM, state planes, national grids, equal-area projections) and are used
    as they are. Where they are not (a geographic CRS, whose units are degrees; a Mercator
    projection; a projection far outside its zone), each pixel gets its own area on the
    CRS's ellipsoid: computed at a lattice of points (:func:`ground_per_unit2`: a pixel's
    sides carried into an equal-area projection of the ellipsoid) and interpolated between
    them.

    Args:
        crs: a rasterio CRS, or ``None``.
        transform: the raster's pixel-to-map transform.
        width, height: the raster's size in pixels.

    Attributes:
        unit: the unit of the areas (see :func:`area_unit`): ``"m2"`` (on the ground, or
            the projection's within 1 %), ``"map unit2"`` or ``"px"``.
        ground: whether areas are measured on the ellipsoid, pixel by pixel.
        largest: the largest pixel's area.
        note: when measured on the ground, why, for a log line; else ``None``.
        warning: when the areas cannot be the ground's (the CRS is undefined somewhere in
            the raster, as a geostationary view's corners in space), why, for a warning.
        own_factor: from squared CRS units to the CRS's own unit of area (:func:`area_unit`).
    """

    def __init__(self, crs, transform: Affine, width: int, height: int) -> None:
        unit, factor = area_unit(crs, transform)
        self.own_factor = factor
        self.unit = "m2" if unit == "deg2" else unit
        self.ground = False
        self.note: str | None = None
        self.warning: str | None = None
        self._constant = abs(transform.determinant) * factor
        self.largest = self._constant
        if unit not in ("m2", "deg2") or width < 1 or height < 1:
            return
        rows = _lattice(height)
        cols = _lattice(width)
        c, r = np.meshgrid(cols, rows)  # pixel centres (the lattice is in centre coordinates)
        t = transform
        xs, ys = t.a * c + t.b * r + t.c, t.d * c + t.e * r + t.f
        try:
            # ground m² per m² of the CRS (or square degree): differences over a pixel's sides
            ratio = ground_per_unit2(crs, xs, ys, step=(math.hypot(t.a, t.d), math.hypot(t.b, t.e))) / factor
        except Exception:  # noqa: BLE001 - PROJ cannot measure in this CRS
            ratio = np.full(xs.shape, np.nan)
        if not (np.isfinite(ratio) & (ratio > 0)).all():
            self.warning = (
                f"areas cannot be measured on the ground over this raster in {crs.to_string()} (it reaches where"
                f" the CRS is undefined): they are in its own {'square degrees' if unit == 'deg2' else 'm²'},"
                " not the ground's; clip the raster to where the CRS is defined, or reproject it"
            )
            self.unit = unit
            return
        if unit == "m2" and (np.abs(1.0 / ratio - 1.0) <= GROUND_TOLERANCE).all():
            return
        self.ground = True
        self._rows, self._cols = rows, cols
        self._grid = self._constant * ratio
        self.largest = float(self._grid.max())
        centre = ratio[len(rows) // 2, len(cols) // 2]
        if unit == "deg2":
            self.note = f"areas in m² measured on the ground ({crs.to_string()} is a geographic CRS)"
        else:
            low, high = f"{1 / ratio.max():.3g}", f"{1 / ratio.min():.3g}"
            self.note = (
                f"areas in m² measured on the ground: {crs.to_string()}'s own m² are {1 / centre:.3g} times the ground's"
                f" at the raster's centre" + (f" ({low}-{high} over it)" if low != high else "")
            )

    def report(self, logger: logging.Logger, where: str) -> None:
        """Log how the areas are measured (INFO), or why they cannot be the ground's (WARNING)."""
        if self.warning is not None:
            logger.warning("%s: %s", where, self.warning)
        elif self.note is not None:
            logger.info("%s: %s", where, self.note)

    def block(self, row_off: int, col_off: int, height: int, width: int) -> np.ndarray | float:
        """The areas of the pixels of a block: ``(height, width)`` float64, or one number
        where every pixel's is the same."""
        if not self.ground:
            return self._constant
        r0, rw = _interpolation(self._rows, np.arange(row_off, row_off + height) + 0.5)
        c0, cw = _interpolation(self._cols, np.arange(col_off, col_off + width) + 0.5)
        g = self._grid
        by_row = g[r0] * (1 - rw)[:, None] + g[r0 + 1] * rw[:, None]
        return by_row[:, c0] * (1 - cw) + by_row[:, c0 + 1] * cw


def _lattice(n: int) -> np.ndarray:
    """Pixel-centre coordinates of the lattice along a side of ``n`` pixels (both ends included)."""
    return np.linspace(0.5, n - 0.5, min(n, _LATTICE_POINTS)) if n > 1 else np.array([0.5, 0.5 + 1e-9])


def _interpolation(nodes: np.ndarray, at: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Left node index and weight of the right node, for linear interpolation at ``at``."""
    i = np.clip(np.searchsorted(nodes, at, side="right") - 1, 0, len(nodes) - 2)
    return i, np.clip((at - nodes[i]) / (nodes[i + 1] - nodes[i]), 0.0, 1.0)


def _equal_area(pcrs, lon_0: float = 0.0):
    """The CRS's ground in an equal-area projection: a cylindrical equal-area projection on
    the CRS's own geodetic CRS (same ellipsoid, same datum, its angular unit and prime
    meridian, so grads and Paris longitudes are converted by PROJ). Its m² are the
    ellipsoid's, and its straight lines along parallels and meridians are theirs."""
    from pyproj.crs import ProjectedCRS
    from pyproj.crs.coordinate_operation import LambertCylindricalEqualAreaConversion

    conversion = LambertCylindricalEqualAreaConversion(latitude_first_parallel=0.0, longitude_natural_origin=lon_0)
    return ProjectedCRS(conversion=conversion, geodetic_crs=pcrs.geodetic_crs)


def ground_per_unit2(crs, xs: np.ndarray, ys: np.ndarray, step: tuple[float, float] = (1.0, 1.0)) -> np.ndarray:
    """The ground's area (m², on the CRS's ellipsoid) per squared unit of the CRS (square
    degrees or grads of a geographic CRS, squared metres or feet of a projected one) at the
    points ``xs, ys``: the Jacobian of an equal-area projection of the map coordinates
    (central differences of ``step`` units, e.g. a pixel's sides).

    Raises:
        ValueError: the CRS has no ellipsoid; PROJ cannot transform it.
    """
    from pyproj import CRS as ProjCRS
    from pyproj import Transformer

    pcrs = ProjCRS.from_wkt(crs.to_wkt())
    if pcrs.get_geod() is None:
        raise ValueError("it has no ellipsoid")
    transform = Transformer.from_crs(pcrs, _equal_area(pcrs), always_xy=True).transform
    hx, hy = abs(step[0]) / 2, abs(step[1]) / 2
    with np.errstate(invalid="ignore", over="ignore"):
        xe, ye = transform(xs + hx, ys)
        xw, yw = transform(xs - hx, ys)
        xn, yn = transform(xs, ys + hy)
        xs_, ys_ = transform(xs, ys - hy)
        jacobian = np.abs((np.asarray(xe) - xw) * (np.asarray(yn) - ys_) - (np.asarray(xn) - xs_) * (np.asarray(ye) - yw))
    return jacobian / (4 * hx * hy)


def ground_areas(geometries: np.ndarray, crs, max_segment: float | None = None) -> np.ndarray:
    """Areas (m²) of polygons on the ellipsoid of their CRS.

    The polygons are projected to an equal-area projection of the CRS's ellipsoid, where
    their planar area is the ellipsoid's. Edges along a raster's rows and columns stay
    straight there for geographic and Mercator rasters (parallels and meridians), so pixel
    polygons are measured exactly, as :class:`PixelAreas` sums their pixels; elsewhere give
    ``max_segment`` (CRS units) to follow their edges' curves.

    Args:
        geometries: shapely polygons, in ``crs``.
        crs: their CRS (rasterio, pyproj or a string), projected or geographic.
        max_segment: edges longer than this are cut into pieces first.
    """
    import shapely
    from pyproj import CRS as ProjCRS
    from pyproj import Transformer

    pcrs = ProjCRS.from_user_input(crs.to_wkt() if hasattr(crs, "to_wkt") else crs)
    if pcrs.get_geod() is None:
        raise InternalError(f"the CRS {pcrs.to_string()} has no ellipsoid to measure areas on")
    geoms = np.asarray(geometries, dtype=object)
    if not len(geoms):
        return np.zeros(0)
    if max_segment:
        geoms = shapely.segmentize(geoms, max_segment)
    # the equal-area projection centred on the polygons (none of them wraps around its
    # edge), its longitude from the geodetic CRS's own unit (degrees, grads) to degrees
    geodetic = pcrs.geodetic_crs
    xmin, ymin, xmax, ymax = shapely.total_bounds(geoms)
    lon = Transformer.from_crs(pcrs, geodetic, always_xy=True).transform((xmin + xmax) / 2, (ymin + ymax) / 2)[0]
    radians_per_unit = geodetic.axis_info[0].unit_conversion_factor if geodetic.axis_info else np.radians(1.0)
    lon_0 = float(np.degrees(lon * radians_per_unit)) if np.isfinite(lon) else 0.0
    to_ground = Transformer.from_crs(pcrs, _equal_area(pcrs, lon_0), always_xy=True)

    def project(coords: np.ndarray) -> np.ndarray:
        return np.column_stack(to_ground.transform(coords[:, 0], coords[:, 1]))

    return np.asarray(shapely.area(shapely.transform(geoms, project)), dtype=np.float64)


class AreaTally:
    """Pixels and areas per class of a class raster, added block by block.

    Args:
        pixel_areas: the raster's pixel areas.
    """

    def __init__(self, pixel_areas: PixelAreas) -> None:
        self.pixel_areas = pixel_areas
        self.counts = np.zeros(256, dtype=np.int64)
        self.areas = np.zeros(256, dtype=np.float64)

    def add(self, classes: np.ndarray, row_off: int, col_off: int = 0) -> None:
        """Count a block of class ids whose top left pixel is ``(row_off, col_off)``."""
        step = 8 if self.pixel_areas.ground else 32  # in slices: bincount copies its input to 8 bytes a pixel
        for top in range(0, classes.shape[0], step):
            part = classes[top : top + step]
            counts = np.bincount(part.ravel(), minlength=256)[:256]
            self.counts += counts
            if self.pixel_areas.ground:
                weights = self.pixel_areas.block(row_off + top, col_off, *part.shape)
                self.areas += np.bincount(part.ravel(), weights=np.ravel(weights), minlength=256)[:256]

    def class_areas(self, scheme: ClassScheme) -> tuple[tuple[ClassArea, ...], str]:
        """The classes of ``scheme`` in id order, and the unit of their areas."""
        if self.pixel_areas.ground:  # shares of the area, which pixels of unequal areas are not
            return _class_areas(self.counts, self.areas, scheme, self.areas), self.pixel_areas.unit
        areas = self.counts * self.pixel_areas.block(0, 0, 1, 1)
        return _class_areas(self.counts, areas, scheme), self.pixel_areas.unit


def _class_areas(
    counts: np.ndarray, areas: np.ndarray, scheme: ClassScheme, shares_of: np.ndarray | None = None
) -> tuple[ClassArea, ...]:
    """One :class:`ClassArea` per class; ``fraction``: of the valid pixels' count, or of
    ``shares_of`` (areas) where given."""
    weights = counts if shares_of is None else shares_of
    valid = float(weights[:NODATA_ID].sum())
    return tuple(
        ClassArea(
            id=c.id,
            name=c.name,
            pixels=int(counts[c.id]),
            area=float(areas[c.id]),
            fraction=float(weights[c.id] / valid) if valid else 0.0,
        )
        for c in scheme.classes
    )


def raster_class_areas(raster: str | os.PathLike) -> tuple[tuple[ClassArea, ...], str]:
    """Area per class of an existing glgeo class raster, read block by block.

    Pixels equal to the raster's declared nodata (255, or 7 in a 3-bit DeepGlobe GeoTIFF)
    count as nodata.

    Raises:
        SceneError: the raster cannot be read.
        InputError: it does not carry a class scheme (not written by glgeo).
    """
    import rasterio

    from .styles import scheme_from_tags

    try:
        src = rasterio.open(raster)
    except rasterio.errors.RasterioIOError as exc:
        raise SceneError(f"cannot read class raster {str(raster)!r}: {exc}") from None
    with src:
        scheme = scheme_from_tags(src.tags())
        if scheme is None:
            raise InputError(
                f"{str(raster)!r} carries no class scheme: it was not written by glgeo; remove it or pass overwrite=True"
            )
        tally = AreaTally(PixelAreas(src.crs if src.crs else None, src.transform, src.width, src.height))
        nodata = src.nodata
        packed_nodata = nodata is not None and 0 <= nodata < 256 and nodata == int(nodata) and int(nodata) != NODATA_ID
        for _, window in src.block_windows(1):
            block = src.read(1, window=window)
            if packed_nodata:  # a packed raster's nodata (7 in 3 bits) is NODATA_ID in memory
                block[block == int(nodata)] = NODATA_ID
            tally.add(block, window.row_off, window.col_off)
        return tally.class_areas(scheme)


def format_area(value: float, unit: str) -> str:
    """An area for people: ``850 m2``, ``12.35 ha``, ``4.21 km2``; ``12,345 px``."""
    if unit == "m2":
        if value < 10_000:
            return f"{value:,.0f} m2" if value >= 10 or value == 0 else f"{value:.2f} m2"
        if value < 1_000_000:
            return f"{value / 10_000:,.2f} ha"
        return f"{value / 1_000_000:,.2f} km2"
    if unit == "px":
        return f"{value:,.0f} px"
    if unit == "deg2":
        return f"{value:.3g} deg2"
    return f"{value:,.1f} {unit}"


def format_class_areas(classes: Sequence[ClassArea], unit: str, indent: str = "  ") -> list[str]:
    """One aligned line per class: id, name, area, share of the valid pixels, pixels."""
    if not classes:
        return []
    width = max(len(c.name) for c in classes)
    areas = [format_area(c.area, unit) for c in classes]
    area_width = max(len(a) for a in areas)
    pixel_width = max(len(f"{c.pixels:,}") for c in classes)
    return [
        f"{indent}{c.id:>3} {c.name:<{width}}  {area:>{area_width}}  {100 * c.fraction:6.2f} %"
        + ("" if unit == "px" else f"  {c.pixels:>{pixel_width},} px")
        for c, area in zip(classes, areas)
    ]
