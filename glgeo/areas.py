"""Class areas: how much of a class raster each class covers, in one unit spelling.

``glgeo segment`` (while writing), a batch (for scenes already segmented) and
``glgeo vectorize`` (per polygon) all measure areas the same way:

* a projected CRS: square metres (``"m2"``), whatever the CRS's linear unit (feet are
  converted); a Mercator projection's m² overstate the ground's by 1 / cos²(latitude)
  (:func:`mercator_area_note`, which the callers log);
* a geographic CRS: square degrees (``"deg2"``), with a warning from the caller;
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

from .errors import InputError, SceneError
from .schemes import NODATA_ID, ClassScheme

#: The unit spellings :func:`area_unit` returns.
UNITS = ("m2", "deg2", "map unit2", "px")


@dataclass(frozen=True)
class ClassArea:
    """How much of a raster one class covers.

    Attributes:
        id: class id in the raster.
        name: class name.
        pixels: pixels of that class.
        area: area in the summary's unit (see :func:`area_unit`).
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
    """``(unit, factor)``: the unit areas are given in, and the factor from a pixel's area in
    squared CRS units (``abs(transform.determinant)``) to it.

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


#: Projection methods whose "metres" are stretched by 1 / cos(latitude) in both directions
#: (PROJ's names): their m² overstate the ground's area by 1 / cos²(latitude).
_MERCATOR_METHODS = ("Popular Visualisation Pseudo Mercator", "Mercator (variant A)", "Mercator (variant B)")


def mercator_area_note(crs, transform: Affine | None = None, width: int = 0, height: int = 0) -> str | None:
    """What areas in ``crs`` are worth, when it is a (Web) Mercator projection, whose m² are
    not the ground's; ``None`` for other CRSs. With the raster's ``transform`` and size, the
    note gives the factor at its centre's latitude."""
    if crs is None:
        return None
    try:
        from pyproj import CRS as ProjCRS

        operation = ProjCRS.from_wkt(crs.to_wkt()).coordinate_operation
    except Exception:  # noqa: BLE001 - a CRS pyproj cannot read is not a Mercator it knows
        return None
    if operation is None or operation.method_name not in _MERCATOR_METHODS:
        return None
    latitude = None
    if transform is not None:
        from rasterio.warp import transform as reproject_points

        x, y = transform * (width / 2, height / 2)
        latitude = float(reproject_points(crs, "EPSG:4326", [x], [y])[1][0])
    at = ""
    if latitude is not None and abs(latitude) < 89:
        factor = 1.0 / np.cos(np.radians(latitude)) ** 2
        at = f": {factor:.2f} times the ground's at latitude {latitude:.1f}"
    return (
        f"areas in {crs.to_string()} (a Mercator projection) are its own m², which overstate the ground's by"
        f" 1 / cos²(latitude){at}; reproject to an equal-area or local projected CRS (e.g. the UTM zone) for true areas"
    )


def class_areas(counts: np.ndarray, scheme: ClassScheme, crs, transform: Affine) -> tuple[tuple[ClassArea, ...], str]:
    """Area per class from pixel counts (indexed by class id, 256 long).

    Returns:
        The classes of ``scheme`` in id order, and the unit of their areas.
    """
    unit, factor = area_unit(crs, transform)
    pixel_area = abs(transform.determinant) * factor
    valid = int(counts[:NODATA_ID].sum())
    return tuple(
        ClassArea(
            id=c.id,
            name=c.name,
            pixels=int(counts[c.id]),
            area=float(counts[c.id] * pixel_area),
            fraction=float(counts[c.id] / valid) if valid else 0.0,
        )
        for c in scheme.classes
    ), unit


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
        counts = np.zeros(256, dtype=np.int64)
        for _, window in src.block_windows(1):
            counts += np.bincount(src.read(1, window=window).ravel(), minlength=256)[:256]
        nodata = src.nodata
        if nodata is not None and 0 <= nodata < 256 and nodata == int(nodata) and int(nodata) != NODATA_ID:
            # a packed raster's nodata (7 in 3 bits) is NODATA_ID in memory
            counts[NODATA_ID] += counts[int(nodata)]
            counts[int(nodata)] = 0
        return class_areas(counts, scheme, src.crs if src.crs else None, src.transform)


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
