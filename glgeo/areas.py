"""Class areas: how much of a class raster each class covers, in one unit spelling.

``glgeo segment`` (while writing), a batch (for scenes already segmented) and
``glgeo vectorize`` (per polygon) all measure areas the same way:

* a projected CRS: square metres (``"m2"``), whatever the CRS's linear unit (feet are
  converted). Where the projection's own m² are more than 1 % off the ground's somewhere
  in the raster (a Mercator projection such as Web Mercator, whose m² overstate the
  ground's by 1 / cos²(latitude); a projection used far outside its zone), areas are
  measured on the ground instead: each pixel's own area on the CRS's ellipsoid
  (:class:`PixelAreas`), each polygon's geodesic area (:func:`geodesic_areas`);
* a geographic CRS: square metres on the ground too, measured so;
* no CRS: pixels (``"px"``) for a plain image (no transform either), else squared units of
  its transform (``"map unit2"``).

:func:`format_area` writes an area for people: ``850 m2``, ``12.35 ha``, ``4.21 km2``.
"""

from __future__ import annotations

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
        fraction: share of the valid (not nodata) pixels.
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
    CRS's ellipsoid: computed at a lattice of points (the projection's areal scale from
    PROJ, or the ellipsoid's area per square degree) and interpolated between them.

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
    """

    def __init__(self, crs, transform: Affine, width: int, height: int) -> None:
        unit, factor = area_unit(crs, transform)
        self.unit = "m2" if unit == "deg2" else unit
        self.ground = False
        self.note: str | None = None
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
            ratio = ground_per_unit2(crs, xs, ys) / factor  # ground m² per m² of the CRS (or square degree)
        except Exception:  # noqa: BLE001 - PROJ cannot measure in this CRS
            ratio = np.full(xs.shape, np.nan)
        if not (np.isfinite(ratio) & (ratio > 0)).all():
            self.note = (
                f"areas cannot be measured on the ground over this raster in {crs.to_string()} (it reaches where"
                f" the CRS is undefined): they are in its own {'square degrees' if unit == 'deg2' else 'm²'}"
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
            self.note = f"areas in m² measured on the ground ({crs.to_string()} is a geographic CRS, in degrees)"
        else:
            low, high = f"{1 / ratio.max():.3g}", f"{1 / ratio.min():.3g}"
            self.note = (
                f"areas in m² measured on the ground: {crs.to_string()}'s own m² are {1 / centre:.3g} times the ground's"
                f" at the raster's centre" + (f" ({low}-{high} over it)" if low != high else "")
            )

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


def ground_per_unit2(crs, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """The ground's area (m², on the CRS's ellipsoid) per squared unit of the CRS (square
    degrees of a geographic CRS, squared metres or feet of a projected one) at the points
    ``xs, ys``: the ellipsoid's area element times the Jacobian of the map coordinates'
    longitude and latitude (central differences of 1 unit; none for a geographic CRS)."""
    from pyproj import CRS as ProjCRS
    from pyproj import Transformer

    pcrs = ProjCRS.from_wkt(crs.to_wkt())
    geod = pcrs.get_geod()
    if geod is None:
        raise ValueError("it has no ellipsoid")
    if pcrs.is_geographic:
        lat, jacobian = ys, np.ones_like(ys)
    else:
        to_degrees = Transformer.from_crs(pcrs, pcrs.geodetic_crs, always_xy=True)
        lon_e, lat_e = to_degrees.transform(xs + 0.5, ys)
        lon_w, lat_w = to_degrees.transform(xs - 0.5, ys)
        lon_n, lat_n = to_degrees.transform(xs, ys + 0.5)
        lon_s, lat_s = to_degrees.transform(xs, ys - 0.5)
        lat = (lat_e + lat_w + lat_n + lat_s) / 4
        jacobian = np.abs((lon_e - lon_w) * (lat_n - lat_s) - (lon_n - lon_s) * (lat_e - lat_w))
    # the ellipsoid's area element, M N cos(phi) dphi dlambda, per square degree
    phi = np.radians(lat)
    e2 = geod.es
    per_radian2 = geod.a**2 * (1 - e2) * np.abs(np.cos(phi)) / (1 - e2 * np.sin(phi) ** 2) ** 2
    return per_radian2 * (np.pi / 180) ** 2 * jacobian


def geodesic_areas(geometries: np.ndarray, crs) -> np.ndarray:
    """Areas (m²) of polygons on the ellipsoid of their CRS (pyproj's geodesic areas).

    Args:
        geometries: shapely polygons, in ``crs``.
        crs: their CRS (rasterio or pyproj), projected or geographic.
    """
    import shapely
    from pyproj import CRS as ProjCRS
    from pyproj import Transformer

    pcrs = ProjCRS.from_user_input(crs.to_wkt() if hasattr(crs, "to_wkt") else crs)
    geod = pcrs.get_geod()
    if geod is None:
        raise InternalError(f"the CRS {pcrs.to_string()} has no ellipsoid to measure areas on")
    geoms = np.asarray(geometries, dtype=object)
    if not pcrs.is_geographic:
        to_degrees = Transformer.from_crs(pcrs, pcrs.geodetic_crs, always_xy=True)

        def project(coords: np.ndarray) -> np.ndarray:
            return np.column_stack(to_degrees.transform(coords[:, 0], coords[:, 1]))

        geoms = shapely.transform(geoms, project)
    # counter-clockwise shells and clockwise holes: pyproj adds the holes' signed areas
    oriented = shapely.orient_polygons(geoms, exterior_cw=False)
    return np.array([abs(geod.geometry_area_perimeter(g)[0]) for g in oriented], dtype=np.float64)


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
        areas = self.areas if self.pixel_areas.ground else self.counts * self.pixel_areas.block(0, 0, 1, 1)
        return _class_areas(self.counts, areas, scheme), self.pixel_areas.unit


def _class_areas(counts: np.ndarray, areas: np.ndarray, scheme: ClassScheme) -> tuple[ClassArea, ...]:
    valid = int(counts[:NODATA_ID].sum())
    return tuple(
        ClassArea(
            id=c.id,
            name=c.name,
            pixels=int(counts[c.id]),
            area=float(areas[c.id]),
            fraction=float(counts[c.id] / valid) if valid else 0.0,
        )
        for c in scheme.classes
    )


def class_areas(counts: np.ndarray, scheme: ClassScheme, crs, transform: Affine) -> tuple[tuple[ClassArea, ...], str]:
    """Area per class from pixel counts (indexed by class id, 256 long), every pixel taken
    to have the same area: the CRS's own (where :class:`PixelAreas` measures on the ground,
    count with an :class:`AreaTally` instead).

    Returns:
        The classes of ``scheme`` in id order, and the unit of their areas.
    """
    unit, factor = area_unit(crs, transform)
    return _class_areas(counts, counts * abs(transform.determinant) * factor, scheme), unit


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
