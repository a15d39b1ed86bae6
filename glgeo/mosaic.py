"""Tiles of one area as one scene: a VRT of tiles on one pixel grid.

Orthophotos are delivered as tiles. Segmented one by one, each tile's map is made without
what lies beyond its edges, and the maps disagree where the tiles meet: a straight seam
along every border (``benchmarks/tiles.py``: on the shared Joplin tiles, 7-24 % of the
pixel pairs across a border change class in maps made tile by tile, 0.1-0.7 % in the map of
the tiles as one scene, as beside the borders). :func:`write_tiles_vrt` puts tiles on one
grid into one virtual scene, as ``gdalbuildvrt`` does (a later tile wins where tiles
overlap with data), without needing GDAL's command-line tools: ``glgeo segment TILES... --mosaic -o
MAP.tif`` segments it as one scene.

The VRT's pixels are the tiles' own (no resampling): tiles must share the CRS, the pixel
size and the pixel grid (offsets of whole pixels), the band count, the data type and the
bands' colour meaning. Where no tile has data (none lies there, or those that do say
nodata by their nodata value, alpha band or mask), the VRT's mask says nodata.

Example::

    >>> from glgeo.mosaic import write_tiles_vrt
    >>> write_tiles_vrt(["tiles/a.tif", "tiles/b.tif"], "area.vrt")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence
from xml.sax.saxutils import escape, quoteattr

import rasterio
from rasterio.errors import RasterioIOError

from .atomic import unwritable_folder_error
from .errors import InputError, SceneError

#: Pixel sizes and grid offsets within this share of a pixel are the same grid.
GRID_TOLERANCE = 1e-6
#: The VRT's metadata item listing its tiles' file names (JSON), for the outputs' metadata.
TILES_TAG = "GLGEO_TILES"
#: Tiles named in :func:`mosaic_title`; more are counted.
TITLE_TILES = 5


def mosaic_title(tags: Mapping[str, str]) -> str | None:
    """What outputs call a scene made by :func:`write_tiles_vrt` (its metadata ``tags``):
    ``a mosaic of 3 tiles (a.tif, b.tif, c.tif)``; ``None`` for any other scene."""
    try:
        names = json.loads(tags[TILES_TAG])
    except (KeyError, ValueError):
        return None
    if not isinstance(names, list) or not names:
        return None
    shown = ", ".join(map(str, names[:TITLE_TILES])) + (f" and {len(names) - TITLE_TILES} more" if len(names) > TITLE_TILES else "")
    return f"a mosaic of {len(names)} tiles ({shown})"


@dataclass(frozen=True)
class TileLayout:
    """Where the tiles lie in their mosaic.

    Attributes:
        width, height: the mosaic's size in pixels.
        transform: its affine transform (the tiles' pixel size, the union's top-left corner).
        offsets: each tile's (column, row) offset in the mosaic, in the tiles' order.
        sizes: each tile's (width, height) in pixels.
        coverage: the share of the mosaic's pixels that some tile covers.
        overlapping: whether any two tiles overlap (rather than only meet).
    """

    width: int
    height: int
    transform: "rasterio.Affine"
    offsets: tuple[tuple[int, int], ...]
    sizes: tuple[tuple[int, int], ...]
    coverage: float
    overlapping: bool


def _open(path: str):
    name = os.fspath(path)
    if "://" in name or name.startswith("/vsi"):
        raise InputError(f"{name!r}: a mosaic is made of local files; download the tiles first")
    if not Path(name).exists():
        raise SceneError(f"scene {name!r} does not exist; check the path")
    try:
        return rasterio.open(name)
    except RasterioIOError as exc:
        raise SceneError(f"cannot open {name!r} as a raster ({exc}); give GeoTIFF or VRT tiles") from None


def tile_layout(paths: Sequence[str | os.PathLike]) -> TileLayout:
    """Check that the tiles share one pixel grid, and lay them out on it.

    Raises:
        SceneError: a tile is missing or not a raster.
        InputError: fewer than two tiles, a tile without georeferencing or rotated, or tiles
            on different grids (CRS, pixel size, a fraction of a pixel apart), with different
            band counts, data types or band meanings: the message names the two tiles and
            says what to do.
    """
    if len(paths) < 2:
        raise InputError("a mosaic needs two or more tiles; segment one scene with -o alone")
    first = None
    boxes = []
    for path in paths:
        with _open(path) as src:
            name = os.fspath(path)
            if src.crs is None or src.transform.is_identity:
                raise InputError(f"{name!r} has no place on a map (no CRS or transform): a mosaic needs "
                                 "georeferenced tiles; segment plain images one by one")
            t = src.transform
            if t.b != 0 or t.d != 0:
                raise InputError(f"{name!r} is rotated (its transform has rotation terms): warp the tiles to a "
                                 "north-up grid first (gdalwarp)")
            this = (name, src.crs, t.a, t.e, src.count, src.dtypes[0], tuple(src.colorinterp))
            if first is None:
                first = this
            else:
                _check_same_grid(first, this)
            boxes.append((t.c, t.f, src.width, src.height))
    assert first is not None
    res_x, res_y = first[2], first[3]
    x0, y0 = boxes[0][0], boxes[0][1]
    cells = []
    for (name, (x, y, w, h)) in zip(map(os.fspath, paths), boxes):
        col, row = (x - x0) / res_x, (y - y0) / res_y
        if abs(col - round(col)) > GRID_TOLERANCE * max(1.0, abs(col)) or \
                abs(row - round(row)) > GRID_TOLERANCE * max(1.0, abs(row)):
            raise InputError(
                f"{name!r} is not on the pixel grid of {os.fspath(paths[0])!r} (offset by a fraction of a pixel): "
                "resample the tiles onto one grid first (gdalwarp -tap -tr ...)"
            )
        cells.append((round(col), round(row), w, h))
    left, top = min(c for c, _, _, _ in cells), min(r for _, r, _, _ in cells)
    right, bottom = max(c + w for c, _, w, _ in cells), max(r + h for _, r, _, h in cells)
    width, height = right - left, bottom - top
    covered = _covered_pixels([(c - left, r - top, w, h) for c, r, w, h in cells])
    transform = rasterio.Affine(res_x, 0, x0 + left * res_x, 0, res_y, y0 + top * res_y)
    return TileLayout(width, height, transform, tuple((c - left, r - top) for c, r, _, _ in cells),
                      tuple((w, h) for _, _, w, h in cells), covered / (width * height),
                      covered < sum(w * h for _, _, w, h in cells))


def _check_same_grid(first: tuple, this: tuple) -> None:
    (name0, crs0, ax0, ey0, count0, dtype0, interp0), (name, crs, ax, ey, count, dtype, interp) = first, this
    if crs != crs0:
        raise InputError(f"{name!r} is in {crs.to_string()} and {name0!r} in {crs0.to_string()}: a mosaic's tiles "
                         "share one CRS; warp them to one first (gdalwarp -t_srs ...)")
    if not (math.isclose(ax, ax0, rel_tol=GRID_TOLERANCE) and math.isclose(ey, ey0, rel_tol=GRID_TOLERANCE)):
        raise InputError(f"{name!r} has {abs(ax):g} x {abs(ey):g} pixels and {name0!r} {abs(ax0):g} x {abs(ey0):g}: "
                         "a mosaic's tiles share one pixel size; resample them onto one grid first (gdalwarp -tr ...)")
    if (count, dtype) != (count0, dtype0):
        raise InputError(f"{name!r} has {count} {dtype} bands and {name0!r} {count0} {dtype0}: a mosaic's tiles "
                         "have the same bands")
    if interp != interp0:
        raise InputError(
            f"{name!r}'s bands are {', '.join(i.name for i in interp)} and {name0!r}'s "
            f"{', '.join(i.name for i in interp0)}: a mosaic's tiles have their bands in one order"
        )


def _covered_pixels(rects: Sequence[tuple[int, int, int, int]]) -> int:
    """Pixels covered by the union of rectangles (column, row, width, height): a sweep over
    the distinct column edges, so any number of tiles is counted exactly and quickly."""
    xs = sorted({c for c, _, w, _ in rects} | {c + w for c, _, w, _ in rects})
    total = 0
    for a, b in zip(xs[:-1], xs[1:]):
        spans = sorted((r, r + h) for c, r, w, h in rects if c <= a and c + w >= b)
        covered, end = 0, None
        for lo, hi in spans:
            if end is None or lo > end:
                covered += hi - lo
                end = hi
            elif hi > end:
                covered += hi - end
                end = hi
        total += covered * (b - a)
    return total


def write_tiles_vrt(paths: Sequence[str | os.PathLike], vrt: str | os.PathLike) -> TileLayout:
    """Write a VRT of tiles on one pixel grid (:func:`tile_layout` checks them), as
    ``gdalbuildvrt`` does: the tiles' pixels unresampled, a later tile over an earlier one
    where both have data (a tile's nodata, alpha or mask leaves the pixels beneath it), and a
    mask that is nodata where no tile has data.

    Returns:
        The layout the VRT has.
    """
    layout = tile_layout(paths)
    with rasterio.open(os.fspath(paths[0])) as src:
        crs_wkt, count, dtype = src.crs.to_wkt(), src.count, src.dtypes[0]
        interp = [i.name.capitalize() if i.name != "undefined" else "Undefined" for i in src.colorinterp]
    gdal_type = _GDAL_TYPES.get(dtype)
    if gdal_type is None:
        raise InputError(f"{os.fspath(paths[0])!r} holds {dtype} pixels, which a mosaic does not take; convert the tiles")
    t = layout.transform
    lines = [
        f'<VRTDataset rasterXSize="{layout.width}" rasterYSize="{layout.height}">',
        f"  <SRS>{escape(crs_wkt)}</SRS>",
        f"  <GeoTransform>{t.c!r}, {t.a!r}, 0.0, {t.f!r}, 0.0, {t.e!r}</GeoTransform>",
        f'  <Metadata><MDI key="{TILES_TAG}">{escape(json.dumps([Path(p).name for p in paths]))}</MDI></Metadata>',
    ]

    def sources(band: str, transparent: str) -> list[str]:
        """The tiles as sources of one band, later over earlier; ``transparent``: how a
        tile's own no-data pixels leave what lies beneath (a tile's nodata collar must not
        hide its neighbour's pixels)."""
        out = []
        for path, (col, row), (width, height) in zip(paths, layout.offsets, layout.sizes):
            filename = escape(str(Path(path).resolve()))
            out += [
                "      <ComplexSource>",
                f'        <SourceFilename relativeToVRT="0">{filename}</SourceFilename>',
                f"        <SourceBand>{band}</SourceBand>",
                f'        <SrcRect xOff="0" yOff="0" xSize="{width}" ySize="{height}" />',
                f'        <DstRect xOff="{col}" yOff="{row}" xSize="{width}" ySize="{height}" />',
                f"        {transparent}",
                "      </ComplexSource>",
            ]
        return out

    for band in range(1, count + 1):  # a tile's pixels where its mask says data (GDAL 3.5+)
        lines += [f"  <VRTRasterBand dataType={quoteattr(gdal_type)} band=\"{band}\">",
                  f"    <ColorInterp>{interp[band - 1]}</ColorInterp>",
                  *sources(str(band), "<UseMaskBand>true</UseMaskBand>"), "  </VRTRasterBand>"]
    # one mask for all bands: 255 where any tile has data, 0 (the VRT's initial value) elsewhere
    lines += ["  <MaskBand>", '    <VRTRasterBand dataType="Byte">', *sources("mask,1", "<NODATA>0</NODATA>"),
              "    </VRTRasterBand>", "  </MaskBand>", "</VRTDataset>"]
    try:
        Path(vrt).write_text("\n".join(lines) + "\n", encoding="utf-8")
    except OSError as exc:
        raise unwritable_folder_error(Path(vrt).absolute().parent, exc, "the folder of the mosaic's VRT") from None
    return layout


_GDAL_TYPES = {"uint8": "Byte", "int8": "Int8", "uint16": "UInt16", "int16": "Int16", "uint32": "UInt32",
               "int32": "Int32", "float32": "Float32", "float64": "Float64"}


#: Scenes overlapping by more than this share of the smaller one cover the same place (two
#: dates, two sensors) rather than meeting as tiles do.
TILE_OVERLAP_SHARE = 0.25


def meeting_tiles(paths: Sequence[str | os.PathLike], max_scenes: int = 5000) -> list[tuple[str, str]]:
    """Pairs of scenes that meet on the map as tiles of one area do: in one CRS, sharing a
    border or overlapping by a strip (at most :data:`TILE_OVERLAP_SHARE` of the smaller),
    within half a pixel. Maps made of them one by one disagree where they meet (what
    :func:`write_tiles_vrt` is for). Only local, georeferenced, north-up files are looked
    at, and none where there are more than ``max_scenes`` (opening each costs a moment)."""
    local = [os.fspath(p) for p in paths if "://" not in os.fspath(p) and not os.fspath(p).startswith("/vsi")]
    if len(local) < 2 or len(local) > max_scenes:
        return []
    boxes: dict[str, list[tuple[float, float, float, float, float, str]]] = {}
    for name in local:
        try:
            with rasterio.open(name) as src:
                t = src.transform
                if src.crs is None or t.is_identity or t.b != 0 or t.d != 0:
                    continue
                left, bottom, right, top = src.bounds
                boxes.setdefault(src.crs.to_string(), []).append(
                    (left, bottom, right, top, min(abs(t.a), abs(t.e)) / 2, name))
        except RasterioIOError:
            continue  # said when the scene is segmented
    pairs = []
    for group in boxes.values():
        group.sort()
        for i, (l1, b1, r1, t1, tol1, n1) in enumerate(group):
            for l2, b2, r2, t2, tol2, n2 in group[i + 1:]:
                tol = max(tol1, tol2)
                if l2 > r1 + tol:
                    break  # sorted by left edge: no later box reaches back to this one
                width, height = min(r1, r2) - max(l1, l2), min(t1, t2) - max(b1, b2)
                if width < -tol or height < -tol:
                    continue
                shared = max(width, 0) * max(height, 0)
                smaller = min((r1 - l1) * (t1 - b1), (r2 - l2) * (t2 - b2))
                along = max(width, height) > tol  # a border, not a corner
                if along and shared <= TILE_OVERLAP_SHARE * smaller:
                    pairs.append((n1, n2))
    return pairs
