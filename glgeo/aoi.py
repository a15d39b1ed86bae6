"""Areas of interest: segment only the pixels inside polygons, or inside a bounding box.

``glgeo segment --aoi FILE`` (``aoi=`` in :func:`glgeo.segment`) takes polygons in
any vector format GDAL reads and in any CRS (they are reprojected to the scene's);
``--bounds`` (``bounds=``) a box in the scene's CRS. Both become one geometry in the
scene's pixel coordinates (:func:`region_in_pixels`), which the scene reader turns into a
validity mask window by window (:meth:`glgeo.io.SceneReader._read_valid`): pixels outside
are nodata in the output, and patches with no pixel inside are never computed, so a
small area of a large scene costs little. The network still sees the real pixels around
the area: the global branch the whole scene and each patch its whole window, so the
classes inside are those a run on the whole scene gives there (up to the bilinear blend
across the area's edge when the scene is read at a coarser scale).

A pixel is inside when its centre is (GDAL's rasterization rule). Scenes without
georeferencing (plain JPEG/PNG images) take areas in the pixel coordinates QGIS shows them
in: x = column, y = minus the row (see :func:`glgeo.vectorization.vector_transform`).
"""

from __future__ import annotations

import logging
import os
from typing import Any, Sequence

import numpy as np
import shapely
from affine import Affine

from .errors import InputError

log = logging.getLogger(__name__)

#: The transform QGIS gives a raster with neither CRS nor geotransform.
PLAIN_IMAGE_TRANSFORM = Affine(1.0, 0.0, 0.0, 0.0, -1.0, 0.0)


def read_aoi(path: str | os.PathLike, crs: Any) -> shapely.Geometry:
    """The polygons of a vector file as one geometry in ``crs`` (``None``: the file's own).

    A file of several layers of geometry (a GeoPackage) names the one to read as QGIS
    does, ``areas.gpkg|layername=fields``; tables without geometry (the ``layer_styles``
    of a styled GeoPackage) do not count.

    Raises:
        InputError: the file cannot be read, holds no polygon, holds several layers of
            geometry and none is named, or has a CRS while the scene has none (or the
            reverse is ambiguous: a file without CRS is taken to be in the scene's).
    """
    import pyogrio

    name = os.fspath(path)
    source, layer = _file_and_layer(name)
    if "://" not in source and not source.startswith("/vsi") and not os.path.exists(source):
        raise InputError(f"area of interest {source!r} does not exist; check the path")
    try:
        layers = [(str(n), g) for n, g in pyogrio.list_layers(source)]
        spatial = [n for n, g in layers if g is not None]
        if layer is not None and layer not in spatial:
            raise InputError(f"area of interest {source!r} has no layer of geometry {layer!r}; layers of geometry: "
                             f"{', '.join(spatial) or 'none'}")
        if layer is None and len(spatial) > 1:
            raise InputError(
                f"area of interest {source!r} holds {len(spatial)} layers of geometry ({', '.join(spatial)}): name "
                f"the one to use as {source + '|layername=' + spatial[0]!r}, as QGIS names a layer of a file"
            )
        if layer is None and spatial:
            layer = spatial[0]
        frame = pyogrio.read_dataframe(source, layer=layer)
    except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError, OSError) as exc:
        raise InputError(f"cannot read the area of interest {name!r} as vector data: {exc}") from None
    return frame_region(frame, name, crs)


def aoi_files(aoi: Any) -> tuple[str, ...]:
    """The file an area of interest is read from (``()`` for ``None``, a geometry or a
    GeoDataFrame): an input, which no output of the run may replace."""
    if not isinstance(aoi, (str, os.PathLike)):
        return ()
    return (_file_and_layer(os.fspath(aoi))[0],)


def _file_and_layer(name: str) -> tuple[str, str | None]:
    """``(file, layer)`` from ``file`` or ``file|layername=LAYER`` (QGIS's layer source)."""
    source, bar, rest = name.partition("|")
    if not bar:
        return name, None
    key, equals, layer = rest.partition("=")
    if key.strip().lower() != "layername" or not equals or not layer:
        raise InputError(f"area of interest {name!r}: after '|' give layername=NAME, as in 'areas.gpkg|layername=fields'")
    return source, layer


def frame_region(frame: Any, name: str, crs: Any) -> shapely.Geometry:
    """The polygons of a GeoDataFrame (or GeoSeries) as one geometry in ``crs`` (``None``:
    its own). Polygons inside geometry collections count; other geometries (points, lines)
    are left out with a warning.

    Raises:
        InputError: no polygon; a CRS on one side only (a frame without CRS is taken to be
            in the scene's).
    """
    geometries = frame.geometry if hasattr(frame, "geometry") else frame
    geoms = [g for g in geometries if g is not None and not g.is_empty]
    parts = shapely.get_parts(np.asarray(geoms, dtype=object)) if geoms else np.empty(0, dtype=object)
    while any(p.geom_type == "GeometryCollection" for p in parts):
        parts = shapely.get_parts(parts)
    polygons = [g for g in parts if g.geom_type in ("Polygon", "MultiPolygon")]
    if not polygons:
        kinds = ", ".join(sorted({g.geom_type for g in geoms})) or "nothing"
        raise InputError(f"area of interest {name!r} holds no polygon ({kinds}); give polygons")
    others = sorted({g.geom_type for g in parts if g.geom_type not in ("Polygon", "MultiPolygon")})
    if others:
        log.warning("area of interest %s: %d %s left out (only polygons bound an area)",
                    name, len(parts) - len(polygons), " and ".join(others))
    region = shapely.union_all(shapely.make_valid(np.asarray(polygons, dtype=object)))
    if frame.crs is None:
        if crs is not None:
            log.warning("%s has no CRS: its polygons are taken to be in the scene's CRS (%s)", name, crs)
        return region
    if crs is None:
        raise InputError(
            f"area of interest {name!r} is in {frame.crs.to_string()} but the scene has no georeferencing;"
            " give polygons without CRS, in the pixel coordinates QGIS shows the scene at (x = column, y = -row)"
        )
    from pyproj import Transformer

    transformer = Transformer.from_crs(frame.crs, crs.to_wkt(), always_xy=True)
    # densified first, so that long straight edges follow the reprojection's curvature
    dense = shapely.segmentize(region, _max_segment(region))
    xy = shapely.get_coordinates(dense)
    with np.errstate(invalid="ignore", over="ignore"):
        x, y = transformer.transform(xy[:, 0], xy[:, 1])
    projected = np.column_stack([x, y])
    if not np.isfinite(projected).all():
        # a projection is defined over part of the globe only (a UTM zone: its own longitudes
        # and their neighbours): points beyond it have no place in the scene's CRS
        raise InputError(
            f"area of interest {name!r} cannot be projected into the scene's CRS ({crs.to_string()}): some of its"
            " points lie where that projection is undefined, far from the scene; give polygons near the scene"
        )
    return shapely.set_coordinates(dense, projected)


def _max_segment(region: shapely.Geometry) -> float:
    minx, miny, maxx, maxy = region.bounds
    return max(maxx - minx, maxy - miny, 1e-9) / 100


def bounds_box(bounds: Sequence[float]) -> shapely.Geometry:
    """A box from ``(left, bottom, right, top)`` in the scene's CRS.

    Raises:
        InputError: not four numbers, or left >= right or bottom >= top.
    """
    try:
        left, bottom, right, top = (float(v) for v in bounds)
    except (TypeError, ValueError):
        raise InputError(f"bounds must be four numbers (left, bottom, right, top), got {bounds!r}") from None
    if not (left < right and bottom < top):
        raise InputError(
            f"bounds=({left:.10g}, {bottom:.10g}, {right:.10g}, {top:.10g}) is empty: give left < right and bottom < top"
        )
    return shapely.box(left, bottom, right, top)


def region_in_pixels(
    info: Any, aoi: str | os.PathLike | shapely.Geometry | None = None, bounds: Sequence[float] | None = None
) -> shapely.Geometry | None:
    """The area to segment in the scene's pixel coordinates (column, row), or ``None`` for all.

    Args:
        info: the scene (:class:`glgeo.io.SceneInfo`).
        aoi: a vector file, or a shapely geometry in the scene's CRS.
        bounds: ``(left, bottom, right, top)`` in the scene's CRS.

    Raises:
        InputError: the area cannot be read or does not overlap the scene.
    """
    if aoi is None and bounds is None:
        return None
    crs = info.crs
    transform = info.transform if crs is not None or info.transform != Affine.identity() else PLAIN_IMAGE_TRANSFORM
    parts = []
    if aoi is not None:
        parts.append(_aoi_region(aoi, crs))
    if bounds is not None:
        parts.append(bounds_box(bounds))
    region = parts[0] if len(parts) == 1 else shapely.intersection(parts[0], parts[1])
    if region.is_empty:  # an area of interest and bounds that do not meet
        box = ", ".join(f"{v:.10g}" for v in bounds_box(bounds).bounds)
        raise InputError(f"the area of interest and bounds=({box}) do not overlap each other; check both")
    inverse = ~transform
    pixels = shapely.transform(
        region,
        lambda xy: np.column_stack([inverse.a * xy[:, 0] + inverse.b * xy[:, 1] + inverse.c,
                                    inverse.d * xy[:, 0] + inverse.e * xy[:, 1] + inverse.f]),
    )
    inside = shapely.intersection(pixels, shapely.box(0, 0, info.width, info.height))
    if inside.is_empty or inside.area == 0:
        left, bottom, right, top = region.bounds
        box = f"({left:.10g}, {bottom:.10g}, {right:.10g}, {top:.10g})"
        what = f"the area of interest {box}" if bounds is None else f"bounds={box}" if aoi is None else (
            f"the area of interest within bounds, {box},"
        )
        scene_box = ", ".join(f"{v:.10g}" for v in _scene_bounds(info, transform))
        raise InputError(
            f"{what} does not overlap {info.path}, which covers ({scene_box}) in its CRS; check the coordinates and CRS"
        )
    if inside.area < SMALL_REGION_PX and not _holds_a_pixel_centre(inside):
        left, bottom, right, top = region.bounds
        raise InputError(
            f"the area ({left:.10g}, {bottom:.10g}, {right:.10g}, {top:.10g}) holds no pixel's centre of {info.path}, "
            "so the map would hold no class; give a larger area"
        )
    return inside


#: Regions smaller than this many pixels are checked for a pixel centre inside (a larger
#: one holds one but for slivers thinner than a pixel, which no area of interest is).
SMALL_REGION_PX = 4096
#: ... where their bounding box is no larger than this many pixels (the check rasterizes
#: it: small plots far apart are left to the map's own "no class" warning).
SMALL_BOX_PX = 1 << 20


def _holds_a_pixel_centre(region: shapely.Geometry) -> bool:
    """Whether a region (in pixel coordinates) holds the centre of a pixel, as only pixels
    whose centre lies inside are segmented: the same rule (:func:`region_mask` at full
    resolution, GDAL's) over the region's bounding box; a box larger than
    :data:`SMALL_BOX_PX` is taken to hold one."""
    left, top, right, bottom = region.bounds
    col0, row0 = int(np.floor(left)), int(np.floor(top))
    width, height = int(np.ceil(right)) - col0, int(np.ceil(bottom)) - row0
    if width < 1 or height < 1:
        return False
    if width * height > SMALL_BOX_PX:
        return True
    return bool(region_mask(region, col0, row0, width, height, (height, width)).any())


def _aoi_region(aoi: Any, crs: Any) -> shapely.Geometry:
    """An area of interest given as a file, a shapely geometry (in the scene's CRS) or a
    GeoDataFrame / GeoSeries (in its own CRS)."""
    if isinstance(aoi, shapely.Geometry):
        if aoi.is_empty:
            raise InputError("the area of interest is an empty geometry; give polygons")
        return frame_region(_Frame([aoi]), "(geometry)", None)
    if hasattr(aoi, "geometry") or hasattr(aoi, "geom_type"):  # geopandas
        return frame_region(aoi, "(GeoDataFrame)" if hasattr(aoi, "geometry") else "(GeoSeries)", crs)
    if isinstance(aoi, (str, os.PathLike)):
        return read_aoi(aoi, crs)
    raise InputError(f"aoi must be a vector file, a shapely geometry or a GeoDataFrame, not {type(aoi).__name__}")


class _Frame:
    """Geometries without a CRS, read as :func:`frame_region` reads a frame."""

    crs = None

    def __init__(self, geometries: list[shapely.Geometry]) -> None:
        self.geometry = geometries


def _scene_bounds(info: Any, transform: Affine) -> tuple[float, float, float, float]:
    xs, ys = zip(*(transform * (c, r) for c, r in ((0, 0), (info.width, 0), (0, info.height), (info.width, info.height))))
    return min(xs), min(ys), max(xs), max(ys)


def region_mask(region: shapely.Geometry, col_off: float, row_off: float, width: float, height: float,
                shape: tuple[int, int]) -> np.ndarray:
    """Which cells of a ``shape`` grid over a scene window are in ``region``: whose centre is
    in it at full resolution, which touch it on a coarser grid (a decimated read).

    ``region`` is in scene pixels; the window may be fractional.
    """
    from rasterio.features import geometry_mask

    transform = Affine.translation(col_off, row_off) @ Affine.scale(width / shape[1], height / shape[0])
    # full resolution: pixel centres; a decimated grid: every cell the region touches, so no
    # scene pixel inside is left out of the patches computed
    decimated = (shape[0], shape[1]) != (round(height), round(width))
    return geometry_mask([region], out_shape=shape, transform=transform, invert=True, all_touched=decimated)
