"""Vectorize class rasters into GeoPackage polygons that open styled in QGIS.

A class raster (one band of class ids, as written by ``glgeo segment``) becomes one polygon
per 4-connected region of one class, in the raster's CRS, with attributes
``class_id``, ``class_name`` and ``area_m2``, written to a GeoPackage layer whose default
QGIS style (in the ``layer_styles`` table) colours and names the classes as the scheme does.

Memory stays bounded on rasters of any size: the raster is read and polygonized block by
block (``rasterio.features.shapes``), and the pieces of a region cut by block seams are
merged when the blocks on both sides are done, so every region comes out whole. At any time
glgeo holds one block of pixels (plus a halo for ``min_area``), the polygons of that block,
and the still-open pieces along the seam front (one block row). Polygons are written in
batches as soon as they are complete.

Geometry is built in global pixel coordinates, where every vertex is an integer and seams
match exactly, and moved to the CRS only when a polygon is complete: re-rasterizing the
output onto the input grid reproduces the raster exactly (without ``min_area`` and
``simplify``).

Only the raster's declared nodata value (or the one the caller names) and its mask (an
internal mask band or an alpha band, as GDAL's tools and QGIS take them) mark pixels
without data; any other value that is not a class id of the scheme is an error naming it,
so no class is ever dropped silently. A raster without georeferencing (a plain image) gets
polygons in the pixel coordinates QGIS shows it at (y negative downwards).

Options:

* ``min_area`` removes specks first, on the raster, with GDAL's sieve (each small region
  joins its largest neighbour; growing thresholds merge noise made only of specks too),
  so no holes are left where the specks were.
* ``simplify`` simplifies each block's polygons as one coverage (``shapely.coverage_simplify``)
  with the block edges fixed, so neighbouring polygons keep sharing their borders: no gaps,
  no overlaps, also across seams.
* ``classes`` keeps only some classes (after simplification, so their borders still match).
"""

from __future__ import annotations

import logging
import math
import os
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import geopandas as gpd
import numpy as np
import rasterio
import shapely
from affine import Affine
from rasterio.enums import ColorInterp
from rasterio.features import shapes, sieve
from rasterio.windows import Window

from .areas import PixelAreas, ground_areas
from .resolution import ground_sample_distance
from .atomic import atomic_path, check_output_path
from .errors import InputError, InternalError, SceneError
from .gpkg import write_polygons
from .io import masked_beyond_nodata, read_failed_error
from .progress import ProgressCallback
from .provenance import glgeo_items, utc_now
from .schemes import NODATA_ID, ClassScheme, get_scheme, list_schemes
from .styles import (
    provenance_metadata,
    scheme_from_tags,
    vector_qml,
    write_gpkg_layer_metadata,
    write_gpkg_layer_style,
)

log = logging.getLogger(__name__)

#: ``progress(done, total)``, called after each block.

#: Pixels per side of the blocks read and polygonized at once.
DEFAULT_BLOCK_SIZE = 2048

#: Smallest GDAL block cache (bytes) used while reading the class raster.
_MIN_GDAL_CACHE = 16 * 2**20

#: A batch of polygons is written to the GeoPackage when it reaches either many polygons
#: or many vertices (a batch is copied a few times on its way to GDAL: keep it small).
_WRITE_BATCH_POLYGONS = 20_000
_WRITE_BATCH_VERTICES = 200_000

_RESERVED_LAYER_PREFIXES = ("gpkg_", "rtree_", "sqlite_")


@dataclass(frozen=True)
class VectorizeResult:
    """What :func:`vectorize` wrote.

    Args:
        path: the GeoPackage.
        layer: the layer holding the polygons.
        crs: the polygons' CRS as ``EPSG:n`` or WKT, or None when the raster has none.
        area_units: units of the ``area_m2`` attribute: ``"m2"`` with a CRS (areas on the
            ellipsoid where the CRS's own m² are not the ground's: geographic CRSs, Mercator;
            see :class:`glgeo.areas.PixelAreas`), else ``"px"`` (a plain image) or
            ``"map unit2"`` (no CRS but a transform), with a warning.
        n_polygons: number of polygons written.
        polygons_per_class: class name -> number of polygons (kept classes only).
        area_per_class: class name -> total ``area_m2``.
        n_blocks: blocks processed.
        seconds: wall time.
        raster_pixels_per_class: class name -> pixels of that class in the raster (the
            classes vectorized, nodata excluded; classes without pixels left out).
        written_pixels_per_class: class name -> pixels the written polygons cover (after
            ``min_area``, before ``simplify``); a class with pixels in the raster but none
            here got no polygon.
        nodata_pixels: pixels holding the nodata value (never vectorized).
        merged_regions: regions smaller than ``min_area`` merged into a neighbour.
        merged_pixels: pixels of those regions (they now belong to the neighbour's class).
        classes_without_polygons: classes with pixels in the raster that got no polygon
            (all their regions were smaller than ``min_area``).
    """

    path: Path
    layer: str
    crs: str | None
    area_units: str
    n_polygons: int
    polygons_per_class: dict[str, int] = field(default_factory=dict)
    area_per_class: dict[str, float] = field(default_factory=dict)
    n_blocks: int = 0
    seconds: float = 0.0
    raster_pixels_per_class: dict[str, int] = field(default_factory=dict)
    written_pixels_per_class: dict[str, int] = field(default_factory=dict)
    nodata_pixels: int = 0
    merged_regions: int = 0
    merged_pixels: int = 0
    classes_without_polygons: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        """A JSON-able summary (``glgeo vectorize --json``)."""
        return {
            "path": str(self.path),
            "layer": self.layer,
            "crs": self.crs,
            "area_units": self.area_units,
            "polygons": self.n_polygons,
            "polygons_per_class": dict(self.polygons_per_class),
            "area_per_class": {k: round(v, 6) for k, v in self.area_per_class.items()},
            "raster_pixels_per_class": dict(self.raster_pixels_per_class),
            "written_pixels_per_class": dict(self.written_pixels_per_class),
            "nodata_pixels": self.nodata_pixels,
            "merged_regions": self.merged_regions,
            "merged_pixels": self.merged_pixels,
            "classes_without_polygons": list(self.classes_without_polygons),
            "blocks": self.n_blocks,
            "seconds": round(self.seconds, 3),
        }


# --------------------------------------------------------------------------------------
# Input checks


def _open_class_raster(raster: str | os.PathLike) -> rasterio.io.DatasetReader:
    path = Path(raster)
    if not path.exists():
        raise SceneError(f"class raster {str(path)!r} does not exist; check the path")
    try:
        src = rasterio.open(path)
    except rasterio.errors.RasterioIOError as exc:
        raise SceneError(f"cannot open {str(path)!r} as a raster: {exc}") from None
    if not (src.count == 1 or (src.count == 2 and src.colorinterp[1] == ColorInterp.alpha)):
        src.close()
        raise InputError(
            f"{str(path)!r} has {src.count} bands; vectorize needs a class raster, one band of class ids"
            " (the output of `glgeo segment`; an alpha band may follow it), not an image"
        )
    if not np.issubdtype(np.dtype(src.dtypes[0]), np.integer):
        src.close()
        raise InputError(
            f"{str(path)!r} holds {src.dtypes[0]} values; a class raster holds integer class ids"
            " (the output of `glgeo segment`): convert probabilities to ids (argmax) first"
        )
    return src


def _scheme_for(src: rasterio.io.DatasetReader, scheme: ClassScheme | str | None) -> ClassScheme:
    """The classes of ``src``: ``scheme``, which must name the classes the raster carries
    if it carries a scheme; else the carried scheme, else the one its colour table matches."""
    if isinstance(scheme, str):
        scheme = get_scheme(scheme)
    if scheme is not None and not isinstance(scheme, ClassScheme):
        raise InputError(f"scheme must be a ClassScheme, a scheme name or None, got {type(scheme).__name__}")
    tagged = scheme_from_tags(src.tags())
    if scheme is not None:
        if tagged is not None and tuple(tagged.names) != tuple(scheme.names):
            raise InputError(
                f"{src.name!r} carries class scheme {tagged.name!r} ({', '.join(tagged.names)}), not {scheme.name!r}"
                f" ({', '.join(scheme.names)}): its ids mean its own classes; drop scheme={scheme.name!r} to use its own"
            )
        return scheme
    if tagged is not None:
        return tagged
    try:
        colormap = src.colormap(1)
    except ValueError:
        colormap = None
    if colormap:
        matches = [
            get_scheme(name)
            for name in list_schemes()
            if all(tuple(colormap.get(c.id, (-1, -1, -1))[:3]) == c.color for c in get_scheme(name).classes)
        ]
        if len(matches) == 1:
            log.info("class scheme %r recognised from the raster's colour table", matches[0].name)
            return matches[0]
    raise InputError(
        f"cannot tell which classes {src.name!r} holds: it carries no glgeo class scheme;"
        f" pass scheme=NAME ({', '.join(list_schemes())})"
    )


def _layer_name(layer: str | None, raster: Path) -> str:
    name = layer if layer is not None else raster.stem
    if not name or not name.strip():
        raise InputError("the layer name is empty; pass layer=NAME")
    if name == "layer_styles" or name.lower().startswith(_RESERVED_LAYER_PREFIXES):
        raise InputError(f"layer name {name!r} is reserved in GeoPackages; pass another layer=NAME")
    return name


#: What ``area_m2`` holds where it cannot hold m² (:attr:`glgeo.areas.PixelAreas.unit`), and why.
_AREA_WORDS = {"px": "pixels", "map unit2": "squared units of the raster's coordinates", "deg2": "square degrees"}
_PLACED_BY = {"gcps": "ground control points", "rpcs": "rational polynomial coefficients (RPCs)"}
_AREA_WHY = {"px": "no georeferencing", "map unit2": "no CRS with a known unit",
             "deg2": "pixels where its CRS is undefined"}


def _area_units(
    crs: rasterio.crs.CRS | None, transform: Affine, width: int, height: int, source: str, placed_by: str = ""
) -> tuple[PixelAreas, float]:
    """How ``area_m2`` is measured (see :class:`glgeo.areas.PixelAreas`), and the factor
    from squared CRS units to it where polygons are measured in the CRS's own units; warns
    when not in m² (``placed_by``: what places a raster without a geotransform, ``gcps``
    or ``rpcs``)."""
    pixel_areas = PixelAreas(crs, transform, width, height)
    pixel_areas.report(log, f"{source} (area_m2)")
    if placed_by:  # assigning a CRS, as said below of other rasters without one, would misplace it
        log.warning(
            "%s is placed by %s only: its polygons are in pixel coordinates (x the column, y the row), not on the map, "
            "and area_m2 holds pixels; warp it onto a map grid first and vectorize that (gdalwarp -r near%s %s %s)",
            source, _PLACED_BY[placed_by], " -rpc" if placed_by == "rpcs" else "", shlex.quote(source),
            shlex.quote(os.path.splitext(os.path.basename(source))[0] + "-warped.tif"),
        )
    elif crs is None:
        log.warning(
            "%s has no CRS: area_m2 will hold areas in %s, not m²;"
            " assign the raster's CRS (e.g. `rio edit-info --crs EPSG:32618`) for areas in m²",
            source,
            "pixels" if pixel_areas.unit == "px" else "squared units of its transform",
        )
    elif pixel_areas.unit == "map unit2":
        log.warning(
            "%s is in a CRS without a known linear unit (%s): area_m2 will hold squared units of the CRS, not m²;"
            " reproject the raster to a projected CRS in metres for areas in m²",
            source, crs.to_string(),
        )
    return pixel_areas, pixel_areas.own_factor


def _nodata_for(src: rasterio.io.DatasetReader, nodata: int | None) -> int | None:
    """The value that marks nodata: ``nodata`` if given, else the raster's declared one."""
    if nodata is not None:
        if isinstance(nodata, bool) or not isinstance(nodata, (int, np.integer)):
            raise InputError(f"nodata must be an integer pixel value, got {nodata!r}")
        return int(nodata)
    if src.nodata is None or not math.isfinite(src.nodata) or src.nodata != int(src.nodata):
        return None
    return int(src.nodata)


def vector_transform(src: rasterio.io.DatasetReader) -> Affine:
    """The transform from pixel to map coordinates that puts polygons on their raster.

    A georeferenced raster's own transform; for a raster with neither a geotransform nor
    a CRS (a JPEG, a PNG), the one GDAL-based viewers use: QGIS shows such a raster at
    ``0,-height : width,0`` (one unit per pixel, y negative downwards, as a north-up
    image), so its polygons get y negated to lie on it.
    """
    if src.crs is None and src.transform == Affine.identity() and not src.gcps[0] and not src.rpcs:
        return Affine(1.0, 0.0, 0.0, 0.0, -1.0, 0.0)
    return src.transform


def vector_provenance(raster_tags: dict[str, str], raster: Path) -> dict[str, str]:
    """The layer metadata of polygons made from a raster: the raster's provenance
    (``GLGEO_*`` items, see :mod:`glgeo.provenance`), its file name and when it was vectorized."""
    from glgeo import __version__

    items = glgeo_items(raster_tags)
    items.setdefault("GLGEO_VERSION", __version__)
    items["GLGEO_SOURCE_RASTER"] = raster.name
    items["GLGEO_VECTORIZED_UTC"] = utc_now()
    return items


def _check_positive(name: str, value: float | None) -> None:
    if value is not None and (not math.isfinite(value) or value <= 0):
        raise InputError(f"{name} must be a positive number, got {value}")


def _check_min_pixels(
    src: rasterio.io.DatasetReader, min_area: float, min_pixels: int, pixel_area: float, unit: str, block_size: int
) -> None:
    """Refuse a ``min_area`` no region can reach or no block can sieve; warn when the
    sieve's margin is too small to be exact."""
    n_pixels = src.width * src.height
    if min_pixels >= n_pixels:
        raise InputError(
            f"min_area {min_area:g} {unit} covers {min_pixels:,} pixels, at least the raster's whole area"
            f" ({src.width} x {src.height} = {n_pixels:,} pixels, {n_pixels * pixel_area:g} {unit}): no region"
            f" could be kept; pass a min_area of at most {(n_pixels - 1) * pixel_area:g} {unit}"
        )
    window = _smallest_window(src.height, src.width, block_size, _sieve_halo(min_pixels, block_size))
    if min_pixels > window:
        # GDAL's sieve takes no threshold above the pixel count of what it sieves.
        raise InputError(
            f"min_area {min_area:g} {unit} covers {min_pixels:,} pixels, more than the blocks of block_size"
            f" {block_size} hold with their margin (the smallest, at the raster's edges: {window:,} pixels);"
            f" pass block_size={_block_size_to_sieve(src.height, src.width, min_pixels)} or more,"
            " or a smaller min_area"
        )
    if 2 * min_pixels > block_size and max(src.height, src.width) > block_size:  # one block has no seams
        log.warning(
            "min_area covers %d pixels, more than half of block_size (%d): near block seams, a thin region"
            " may be judged by its part within %d pixels of the block; pass block_size=%d or more for"
            " exact results",
            min_pixels, block_size, block_size, 2 * min_pixels,
        )


def _warn_nodata_is_a_class(
    src: rasterio.io.DatasetReader, given: int | None, value: int, n_pixels: int, scheme: ClassScheme
) -> None:
    """The nodata value is also a class id: its pixels get no polygon, say so and how to keep them."""
    name = scheme.classes[value].name
    log.warning(
        "the nodata value %d (%s) is the class id of %s in the %r scheme: its %s pixels are left out as nodata and"
        " get no polygon; if they are %s, pass nodata=%d (a value that is not a class id) to vectorize them",
        value, "passed" if given is not None else f"declared by {src.name!r}", name, scheme.name, f"{n_pixels:,}",
        name, NODATA_ID,
    )


def _warn_of_an_empty_layer(name: str, scheme: ClassScheme, keep_ids: set[int], counts: np.ndarray) -> None:
    """No pixel of the classes asked for: the layer holds no polygon, and why."""
    others = [f"{c.name} ({int(counts[c.id]):,} px)" for c in scheme.classes if c.id not in keep_ids and counts[c.id]]
    asked = "any class" if len(keep_ids) == scheme.n_classes else ", ".join(scheme.classes[i].name for i in sorted(keep_ids))
    why = f"its pixels are {', '.join(others)}" if others else "every pixel is nodata"
    log.warning("%s has no pixel of %s (%s): the layer holds no polygon", name, asked, why)


def _warn_classes_without_polygons(
    names: Sequence[str], raster_pixels: dict[str, int], min_area: float, unit: str
) -> None:
    """Some classes lost every region to ``min_area``: name them with their pixels."""
    listed = ", ".join(f"{name} ({raster_pixels[name]:,} px)" for name in names)
    log.warning(
        "%s no region of at least %s and %s no polygon: %s; their pixels were merged into neighbouring"
        " regions (pass a smaller min_area to keep them)",
        "1 class has" if len(names) == 1 else f"{len(names)} classes have",
        f"{min_area:g} {unit}", "gets" if len(names) == 1 else "get", listed,
    )


# --------------------------------------------------------------------------------------
# Block-by-block polygonization with seam merging


@dataclass(frozen=True)
class _Block:
    row: int
    col: int
    window: Window


def _blocks(height: int, width: int, size: int) -> list[_Block]:
    return [
        _Block(r, c, Window(c * size, r * size, min(size, width - c * size), min(size, height - r * size)))
        for r in range(math.ceil(height / size))
        for c in range(math.ceil(width / size))
    ]


class _SeamMerger:
    """Union-find over polygon pieces cut by block seams (blocks come in row-major order).

    A piece is *open* while it touches the right or bottom seam of its block and the block
    beyond has not been processed; a component (pieces joined across seams) is complete
    when none of its pieces is open. Pieces are kept in pixel coordinates (integers), so
    pieces on both sides of a seam share exact vertices and their union is exact.
    """

    def __init__(self, n_block_cols: int) -> None:
        self._parent: dict[int, int] = {}
        self._open: dict[int, int] = {}  # root -> unresolved seam touches of its pieces
        self._members: dict[int, list[int]] = {}  # root -> piece ids
        self._geometry: dict[int, shapely.Polygon] = {}  # piece -> output geometry
        self._class: dict[int, int] = {}
        self._next_id = 0
        # Pieces waiting for the block to the right / below: (ids, exact geometries).
        self._right: tuple[list[int], list[shapely.Polygon]] = ([], [])
        self._below: list[tuple[list[int], list[shapely.Polygon]]] = [([], []) for _ in range(n_block_cols)]

    def _find(self, piece: int) -> int:
        root = piece
        while self._parent[root] != root:
            root = self._parent[root]
        while self._parent[piece] != root:
            self._parent[piece], piece = root, self._parent[piece]
        return root

    def _union(self, a: int, b: int) -> None:
        ra, rb = self._find(a), self._find(b)
        if ra == rb:
            return
        if len(self._members[ra]) < len(self._members[rb]):
            ra, rb = rb, ra
        self._parent[rb] = ra
        self._members[ra].extend(self._members.pop(rb))
        self._open[ra] += self._open.pop(rb)

    def _add(self, geometry: shapely.Polygon, class_id: int, open_seams: int) -> int:
        piece = self._next_id
        self._next_id += 1
        self._parent[piece] = piece
        self._members[piece] = [piece]
        self._open[piece] = open_seams
        self._geometry[piece] = geometry
        self._class[piece] = class_id
        return piece

    @staticmethod
    def _pairs(
        left: tuple[list[int], list[shapely.Polygon]],
        right: tuple[list[int], list[shapely.Polygon]],
        left_points: np.ndarray,
        right_points: np.ndarray,
    ) -> set[tuple[int, int]]:
        """Pieces that hold the pixel centres on each side of a seam, paired."""
        if len(left_points) == 0 or not left[0] or not right[0]:
            return set()
        found = []
        for (ids, geoms), points in ((left, left_points), (right, right_points)):
            tree = shapely.STRtree(geoms)
            point_index, geom_index = tree.query(shapely.points(points), predicate="intersects")
            owner = np.full(len(points), -1, dtype=np.int64)
            owner[point_index] = np.asarray(ids, dtype=np.int64)[geom_index]
            found.append(owner)
        both = (found[0] >= 0) & (found[1] >= 0)
        return set(zip(found[0][both].tolist(), found[1][both].tolist()))

    def add_block(
        self,
        block: _Block,
        n_rows: int,
        n_cols: int,
        exact: Sequence[shapely.Polygon],
        output: Sequence[shapely.Polygon],
        class_ids: Sequence[int],
        left_pairs_points: tuple[np.ndarray, np.ndarray],
        top_pairs_points: tuple[np.ndarray, np.ndarray],
    ) -> Iterator[tuple[shapely.Geometry, int]]:
        """Add a block's polygons; yield (pixel-space geometry, class id) of each completed one.

        Args:
            block: the block.
            n_rows: number of block rows.
            n_cols: number of block columns.
            exact: the block's polygons as polygonized (used to find neighbours).
            output: the same polygons as they will be written (maybe simplified).
            class_ids: their classes.
            left_pairs_points: pixel centres left and right of the left seam where both
                sides hold the same kept class.
            top_pairs_points: the same above and below the top seam.
        """
        window = block.window
        x0, y0 = window.col_off, window.row_off
        x1, y1 = x0 + window.width, y0 + window.height
        has_left, has_top = block.col > 0, block.row > 0
        has_right, has_bottom = block.col < n_cols - 1, block.row < n_rows - 1
        bounds = shapely.bounds(np.asarray(exact, dtype=object)) if len(exact) else np.zeros((0, 4))
        touches_left = has_left & (bounds[:, 0] == x0)
        touches_top = has_top & (bounds[:, 1] == y0)
        touches_right = has_right & (bounds[:, 2] == x1)
        touches_bottom = has_bottom & (bounds[:, 3] == y1)

        left_new: tuple[list[int], list[shapely.Polygon]] = ([], [])
        top_new: tuple[list[int], list[shapely.Polygon]] = ([], [])
        right_next: tuple[list[int], list[shapely.Polygon]] = ([], [])
        below_next: tuple[list[int], list[shapely.Polygon]] = ([], [])
        new_pieces = []
        for i, (geometry, out_geometry, class_id) in enumerate(zip(exact, output, class_ids)):
            if not (touches_left[i] or touches_top[i] or touches_right[i] or touches_bottom[i]):
                yield out_geometry, class_id
                continue
            piece = self._add(out_geometry, class_id, int(touches_right[i]) + int(touches_bottom[i]))
            new_pieces.append(piece)
            for flag, store in ((touches_left[i], left_new), (touches_top[i], top_new),
                                (touches_right[i], right_next), (touches_bottom[i], below_next)):
                if flag:
                    store[0].append(piece)
                    store[1].append(geometry)

        waiting_left = self._right if has_left else ([], [])
        waiting_top = self._below[block.col] if has_top else ([], [])
        for a, b in self._pairs(waiting_left, left_new, *left_pairs_points):
            self._union(a, b)
        for a, b in self._pairs(waiting_top, top_new, *top_pairs_points):
            self._union(a, b)

        touched = set(new_pieces)
        for piece in (*waiting_left[0], *waiting_top[0]):
            self._open[self._find(piece)] -= 1
            touched.add(piece)
        for root in {self._find(p) for p in touched}:
            if self._open[root] == 0:
                yield self._close(root)

        self._right = right_next
        self._below[block.col] = below_next

    def _close(self, root: int) -> tuple[shapely.Geometry, int]:
        pieces = self._members.pop(root)
        del self._open[root]
        class_id = self._class[root]
        geoms = [self._geometry.pop(p) for p in pieces]
        for p in pieces:
            del self._parent[p]
            del self._class[p]
        merged = geoms[0] if len(geoms) == 1 else shapely.union_all(geoms)
        return merged, class_id

    @property
    def n_open(self) -> int:
        """Components still waiting for blocks (0 once every block is added)."""
        return len(self._members)


def _seam_points(
    before: np.ndarray | None, after: np.ndarray, keep: np.ndarray, offset: int, along_start: int, vertical: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Pixel centres on both sides of a seam where both pixels hold the same kept class.

    ``before``/``after`` are the pixel lines on each side, ``offset`` the seam's coordinate
    and ``along_start`` the coordinate where the lines start.
    """
    if before is None:
        empty = np.zeros((0, 2))
        return empty, empty
    same = (before == after) & keep[after]
    along = np.nonzero(same)[0] + along_start + 0.5
    # Only the first pixel of each run matters: a run is inside one piece on each side.
    if len(along) > 1:
        starts = np.concatenate(([True], np.diff(along) != 1))
        starts |= np.concatenate(([True], np.diff(after[same]) != 0))
        along = along[starts]
    across_before = np.full_like(along, offset - 0.5)
    across_after = np.full_like(along, offset + 0.5)
    if vertical:
        return np.column_stack([across_before, along]), np.column_stack([across_after, along])
    return np.column_stack([along, across_before]), np.column_stack([along, across_after])


def _polygonize(
    classes: np.ndarray, valid: np.ndarray, x0: int, y0: int
) -> tuple[list[shapely.Polygon], list[int]]:
    geoms, ids = [], []
    for geojson, value in shapes(classes, mask=valid, connectivity=4, transform=Affine.translation(x0, y0)):
        rings = geojson["coordinates"]
        geoms.append(shapely.Polygon(rings[0], rings[1:]))
        ids.append(int(value))
    return geoms, ids


#: Passes at the full threshold at most. GDAL merges a region only into a neighbour at
#: least as large as the threshold, so a cluster of specks is peeled one layer per pass.
_MAX_SIEVE_PASSES = 8

#: Growth factor of the sieve thresholds before the full one.
_SIEVE_STEP = 8


#: Rounds of finishing passes (:func:`_sieve`) at most, and thresholds per round.
_FINISHING_ROUNDS = 4
_FINISHING_THRESHOLDS = 64


def _sieve(classes: np.ndarray, valid: np.ndarray, min_pixels: int) -> np.ndarray:
    """Merge regions under ``min_pixels`` pixels into their largest neighbour.

    GDAL's sieve merges a region smaller than its threshold only into a neighbour at least
    as large as the threshold, so it leaves a small region alone when all its neighbours
    are small too (in noise, every region is small): growing thresholds (2, 16, 128...
    pixels) let specks first merge into each other, then into the large regions around
    them. Regions under ``min_pixels`` whose neighbours are all under it too (an island
    of 300 and 400 pixels in nodata, with ``min_pixels`` 500: the first joins the second)
    are then merged smallest first, with a pass at each such region's size plus one. A
    region stays only where no neighbour can take it (an island in nodata alone, two
    touching regions of the same size with no other neighbour, a checkerboard of single
    pixels). Nodata (``valid`` false) is never filled.
    """
    threshold = 2
    while threshold < min_pixels:
        classes = sieve(classes, size=threshold, mask=valid, connectivity=4)
        threshold *= _SIEVE_STEP
    classes = _sieve_at(classes, valid, min_pixels)
    for _ in range(_FINISHING_ROUNDS):
        sizes = _small_region_sizes(classes, valid, min_pixels)
        before = classes
        for size in sizes[:_FINISHING_THRESHOLDS]:
            classes = sieve(classes, size=size + 1, mask=valid, connectivity=4)
        if np.array_equal(before, classes):
            break
        classes = _sieve_at(classes, valid, min_pixels)
    return classes


def _sieve_at(classes: np.ndarray, valid: np.ndarray, min_pixels: int) -> np.ndarray:
    """GDAL's sieve at ``min_pixels`` until nothing changes (a cluster of specks is peeled
    one layer per pass; :data:`_MAX_SIEVE_PASSES` at most)."""
    for _ in range(_MAX_SIEVE_PASSES):
        sieved = sieve(classes, size=min_pixels, mask=valid, connectivity=4)
        if np.array_equal(sieved, classes):
            break
        classes = sieved
    return classes


def _small_region_sizes(classes: np.ndarray, valid: np.ndarray, min_pixels: int) -> list[int]:
    """The distinct pixel counts under ``min_pixels`` of the regions left, smallest first."""
    sizes = {
        round(shapely.Polygon(g["coordinates"][0], g["coordinates"][1:]).area)
        for g, _ in shapes(classes, mask=valid, connectivity=4)
    }
    return sorted(size for size in sizes if size < min_pixels)


def _smallest_window(height: int, width: int, block_size: int, halo: int) -> int:
    """Pixels of the smallest window a block is sieved in (the block, its margin ``halo``,
    clipped to the raster): the first or the last block along each axis."""

    def extent(length: int) -> int:
        n_blocks = math.ceil(length / block_size)
        if n_blocks == 1:
            return length
        first = min(length, block_size + halo)
        last = length - max(0, (n_blocks - 1) * block_size - halo)
        return min(first, last)

    return extent(height) * extent(width)


def _block_size_to_sieve(height: int, width: int, min_pixels: int) -> int:
    """The smallest block size whose every sieving window holds more than ``min_pixels``
    pixels (``min_pixels`` must be under the raster's pixel count).

    A window spans at least ``min(side, block_size)`` pixels along each side of the raster
    (its margin is the block size, or twice ``min_pixels`` when that is smaller, which is
    then enough on its own), so the smallest block size with
    ``min(height, b) * min(width, b) > min_pixels`` is enough.
    """
    low, high = 1, max(height, width)
    while low < high:
        middle = (low + high) // 2
        if min(height, middle) * min(width, middle) > min_pixels:
            high = middle
        else:
            low = middle + 1
    return low


def _sieve_halo(min_pixels: int | None, block_size: int) -> int:
    """Margin read around each block for sieving.

    A region under ``min_pixels`` that touches the block spans fewer than ``min_pixels``
    pixels in any direction, and its neighbours must be seen for at least ``min_pixels``
    more to be told large: twice the threshold makes the sieve exact. Capped at the block
    size to bound memory (with a warning).
    """
    return min(2 * min_pixels, block_size) if min_pixels else 0


#: Rows of a block counted at once: np.bincount copies its input to 8-byte integers.
_COUNT_ROWS = 256


def _value_counts(classes: np.ndarray) -> np.ndarray:
    """Pixels of each value 0-255 of a uint8 array (``NODATA_ID``: nodata), counted a few
    rows at a time so the counting copies stay small."""
    counts = np.zeros(256, dtype=np.int64)
    for row in range(0, classes.shape[0], _COUNT_ROWS):
        counts += np.bincount(classes[row : row + _COUNT_ROWS].ravel(), minlength=256)
    return counts


@dataclass
class _PixelTally:
    """What happened to the pixels, counted block by block (each pixel once, in its block).

    ``raster`` and ``written`` count the pixels of each class id before and after
    ``min_area`` (index ``NODATA_ID``: nodata); ``merged_regions`` and ``merged_pixels``
    count what ``min_area`` merged into neighbours.
    """

    raster: np.ndarray = field(default_factory=lambda: np.zeros(256, dtype=np.int64))
    written: np.ndarray = field(default_factory=lambda: np.zeros(256, dtype=np.int64))
    merged_regions: int = 0
    merged_pixels: int = 0


def _count_merged_regions(raw: np.ndarray, changed: np.ndarray, core: tuple[int, int, int, int]) -> int:
    """Regions of ``raw`` whose pixels the sieve gave another class (``changed``), counted
    in the block whose core (``x0, y0, x1, y1`` in window pixels) holds their first pixel in
    raster order, so a region seen by several windows is counted once.

    The regions are labelled among the changed pixels only (a small fraction of the window)
    by propagating the smallest pixel index along 4-connected same-class neighbours, with
    pointer jumping: a few vectorized passes, where polygonizing them cost as much as the sieve.
    """
    x0, y0, x1, y1 = core
    width = raw.shape[1]
    pixels = np.flatnonzero(changed)  # in raster order
    right = np.flatnonzero(changed[:, :-1] & changed[:, 1:] & (raw[:, :-1] == raw[:, 1:]))
    right += right // (width - 1)  # index in the window of the pixel left of each pair
    below = np.flatnonzero(changed[:-1] & changed[1:] & (raw[:-1] == raw[1:]))
    first = np.searchsorted(pixels, np.concatenate([right, below]))
    second = np.searchsorted(pixels, np.concatenate([right + 1, below + width]))
    label = np.arange(len(pixels))
    while True:
        lowest = np.minimum(label[first], label[second])
        new = label.copy()
        for ends in (first, second, label[first], label[second]):
            np.minimum.at(new, ends, lowest)
        new = new[new]
        if np.array_equal(new, label):
            break
        label = new
    # Each region keeps the label of its first pixel, the only pixel labelled with itself.
    starts = pixels[label == np.arange(len(pixels))]
    rows, cols = np.divmod(starts, width)
    return int(np.count_nonzero((rows >= y0) & (rows < y1) & (cols >= x0) & (cols < x1)))


def _read_block(
    src: rasterio.io.DatasetReader,
    window: Window,
    halo: int,
    nodata: int | None,
    scheme: ClassScheme,
) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """Class ids (uint8) and validity of a window grown by ``halo`` (clipped to the raster)."""
    col0 = max(0, window.col_off - halo)
    row0 = max(0, window.row_off - halo)
    col1 = min(src.width, window.col_off + window.width + halo)
    row1 = min(src.height, window.row_off + window.height + halo)
    try:
        data = src.read(1, window=Window(col0, row0, col1 - col0, row1 - row0))
    except rasterio.errors.RasterioIOError as exc:
        raise read_failed_error(src.name, exc) from None
    valid = np.ones(data.shape, dtype=bool) if nodata is None else data != nodata
    if masked_beyond_nodata(src):  # an internal mask or alpha band: its pixels without data are nodata too
        try:
            valid &= src.read_masks(1, window=Window(col0, row0, col1 - col0, row1 - row0)) > 0
        except rasterio.errors.RasterioIOError as exc:
            raise read_failed_error(src.name, exc) from None
    if valid.any():
        values = data[valid]
        if values.min() < 0 or values.max() >= scheme.n_classes:
            _refuse_values(src, values, nodata, scheme)
    classes = np.where(valid, data, NODATA_ID).astype(np.uint8)
    return classes, valid, (window.row_off - row0, window.col_off - col0)


def _refuse_values(src: rasterio.io.DatasetReader, values: np.ndarray, nodata: int | None, scheme: ClassScheme) -> None:
    """Raise an error naming the values of ``values`` that are not class ids of ``scheme``."""
    bad = np.unique(values[(values < 0) | (values >= scheme.n_classes)])
    shown = ", ".join(str(int(v)) for v in bad[:8]) + (", ..." if len(bad) > 8 else "")
    noun = "value" if len(bad) == 1 else "values"
    hints = []
    mask_values = {c.mask_value: c for c in scheme.classes if isinstance(c.mask_value, int) and c.mask_value != c.id}
    masked = [mask_values[int(v)] for v in bad if int(v) in mask_values]
    if masked and len(masked) == len(bad):
        hints.append(
            "it looks like a dataset mask (the " + scheme.name + " scheme's masks store "
            + ", ".join(f"{c.name} as {c.mask_value}" for c in masked)
            + "): convert it to class ids first"
        )
    if len(bad) == 1:
        hints.append(f"if {int(bad[0])} marks pixels without data, pass nodata={int(bad[0])}")
    else:
        hints.append("pass the right scheme, or nodata=N for the value that marks pixels without data")
    declared = "no nodata value" if nodata is None else f"nodata {nodata}"
    raise InputError(
        f"{src.name!r} holds the {noun} {shown}, not class ids of the {scheme.name!r} scheme"
        f" (0-{scheme.n_classes - 1}: {', '.join(scheme.names)}) and not its nodata ({declared});"
        f" no polygon is written rather than some classes lost: " + "; ".join(hints)
    )


def _pixel_geometries(
    src: rasterio.io.DatasetReader,
    scheme: ClassScheme,
    keep_ids: set[int],
    nodata: int | None,
    min_pixels: int | None,
    tolerance_px: float | None,
    block_size: int,
    progress: ProgressCallback | None,
    tally: _PixelTally,
) -> Iterator[tuple[shapely.Geometry, int]]:
    """Every complete polygon of the raster, in pixel coordinates, with its class id;
    counts the pixels into ``tally`` on the way."""
    blocks = _blocks(src.height, src.width, block_size)
    n_rows = math.ceil(src.height / block_size)
    n_cols = math.ceil(src.width / block_size)
    merger = _SeamMerger(n_cols)
    keep = np.zeros(256, dtype=bool)
    keep[list(keep_ids)] = True
    halo = _sieve_halo(min_pixels, block_size)
    bottom_row = np.full(src.width, NODATA_ID, dtype=np.uint8)  # last row of the block row above
    right_col: np.ndarray | None = None  # last column of the block to the left
    for done, block in enumerate(blocks, start=1):
        window = block.window
        classes, valid, (dy, dx) = _read_block(src, window, halo, nodata, scheme)
        in_core = (slice(dy, dy + window.height), slice(dx, dx + window.width))
        counts = _value_counts(classes[in_core])
        tally.raster += counts
        if min_pixels:
            sieved = _sieve(classes, valid, min_pixels)
            changed = (sieved != classes) & valid
            n_changed = int(np.count_nonzero(changed[in_core]))
            if n_changed:
                tally.merged_pixels += n_changed
                tally.merged_regions += _count_merged_regions(
                    classes, changed, (dx, dy, dx + window.width, dy + window.height)
                )
                counts = _value_counts(sieved[in_core])
            classes = sieved
            del sieved, changed
        tally.written += counts
        core = classes[in_core]
        core_valid = valid[in_core]
        del classes, valid

        exact, ids = _polygonize(core, core_valid, window.col_off, window.row_off)
        output = exact
        if tolerance_px and exact:
            # The block's polygons form a coverage once every shared edge carries the same
            # vertices: GDAL leaves T-junctions, a vertex at each pixel corner removes them.
            dense = shapely.segmentize(np.asarray(exact, dtype=object), 1.0)
            output = list(shapely.coverage_simplify(dense, tolerance_px, simplify_boundary=False))
        kept = [i for i, class_id in enumerate(ids) if keep[class_id]]
        if len(kept) < len(ids):
            exact = [exact[i] for i in kept]
            output = [output[i] for i in kept]
            ids = [ids[i] for i in kept]

        left_points = _seam_points(
            right_col if block.col > 0 else None, core[:, 0], keep, window.col_off, window.row_off, vertical=True
        )
        top_line = bottom_row[window.col_off : window.col_off + window.width] if block.row > 0 else None
        top_points = _seam_points(top_line, core[0, :], keep, window.row_off, window.col_off, vertical=False)
        yield from merger.add_block(block, n_rows, n_cols, exact, output, ids, left_points, top_points)

        right_col = core[:, -1].copy()
        bottom_row[window.col_off : window.col_off + window.width] = core[-1, :]
        if progress is not None:
            progress(done, len(blocks))
    if merger.n_open:
        raise InternalError(f"{merger.n_open} polygons were left open after the last block")


# --------------------------------------------------------------------------------------
# Writing


class _LayerWriter:
    """Writes polygons to a GeoPackage layer in batches (pyogrio)."""

    def __init__(self, path: Path, layer: str, crs: str | None, scheme: ClassScheme, transform: Affine,
                 area_factor: float, metadata: dict[str, str] | None = None, ground: bool = False,
                 max_segment: float | None = None, target: Path | None = None) -> None:
        self.path = path
        self.target = target  # the output's name, for errors (path: its temporary file)
        self.metadata = metadata or {}
        self.layer = layer
        self.crs = crs
        self.scheme = scheme
        self.transform = transform
        self.area_factor = area_factor
        self.ground = ground  # measure polygons on the CRS's ellipsoid
        self.max_segment = max_segment  # ... following their edges in pieces this long (CRS units)
        self.n_written = 0
        self.counts: dict[str, int] = {}
        self.areas: dict[str, float] = {}
        self._geoms: list[shapely.Geometry] = []
        self._ids: list[int] = []
        self._vertices = 0
        self._created = False

    def add(self, geometry: shapely.Geometry, class_id: int) -> None:
        self._geoms.append(geometry)
        self._ids.append(class_id)
        self._vertices += shapely.get_num_coordinates(geometry)
        if len(self._geoms) >= _WRITE_BATCH_POLYGONS or self._vertices >= _WRITE_BATCH_VERTICES:
            self.flush()

    def _to_crs(self, geoms: np.ndarray) -> np.ndarray:
        t = self.transform

        def apply(coords: np.ndarray) -> np.ndarray:
            x, y = coords[:, 0], coords[:, 1]
            return np.column_stack([t.a * x + t.b * y + t.c, t.d * x + t.e * y + t.f])

        return shapely.transform(geoms, apply)

    def flush(self) -> None:
        geoms = np.asarray(self._geoms, dtype=object)
        ids = np.asarray(self._ids, dtype=np.int64)
        self._geoms, self._ids, self._vertices = [], [], 0
        if len(geoms):
            # A union across seams never yields several parts, but be safe: one row per part.
            parts, index = shapely.get_parts(geoms, return_index=True)
            geoms, ids = parts, ids[index]
            # Drop the collinear vertices left where pieces were joined (tolerance 0:
            # the shape does not change).
            geoms = shapely.simplify(geoms, 0.0)
            geoms = self._to_crs(geoms)
        if not len(geoms):
            areas = np.zeros(0)
        elif self.ground:
            areas = ground_areas(geoms, self.crs, self.max_segment)
        else:
            areas = shapely.area(geoms) * self.area_factor
        if not len(geoms) and self._created:
            return
        names = np.asarray(self.scheme.names, dtype=object)[ids] if len(ids) else np.zeros(0, dtype=object)
        frame = gpd.GeoDataFrame(
            {
                "class_id": ids.astype(np.int32),
                "class_name": names.astype(str) if len(ids) else np.zeros(0, dtype=str),
                "area_m2": areas.astype(np.float64),
            },
            geometry=gpd.GeoSeries(geoms, crs=self.crs),
        )
        write_polygons(frame, self.path, self.layer, append=self._created, metadata=self.metadata, target=self.target)
        self._created = True
        for class_id, area in zip(ids.tolist(), areas.tolist()):
            name = self.scheme.classes[class_id].name
            self.counts[name] = self.counts.get(name, 0) + 1
            self.areas[name] = self.areas.get(name, 0.0) + area
        self.n_written += len(ids)


# --------------------------------------------------------------------------------------
# Public API


def _warn_of_a_shared_qmd(out_path: Path) -> None:
    """QGIS loads ``<stem>.qmd`` beside a file as its layer metadata, over the metadata a
    GeoPackage holds: a class raster ``X.tif`` and its polygons ``X.gpkg`` share ``X.qmd``,
    and the polygons would show the raster's title and abstract."""
    qmd = out_path.with_suffix(".qmd")
    if qmd.exists():
        log.warning(
            "QGIS shows %s (another file's metadata, such as the class raster's) for any %s.* beside it, this"
            " GeoPackage too: give the GeoPackage another name (%s-polygons.gpkg) to keep its own", qmd, out_path.stem,
            out_path.stem,
        )


def check_gpkg_output(path: str | os.PathLike, *, overwrite: bool, inputs: tuple = ()) -> Path:
    """A GeoPackage output's path, checked before any work: ``.gpkg``, then as
    :func:`glgeo.atomic.check_output_path` checks any output.

    Raises:
        InputError: it is not a ``.gpkg``.
        OutputError: as :func:`glgeo.atomic.check_output_path`.
    """
    out = Path(path)
    if out.suffix.lower() != ".gpkg":
        raise InputError(f"output {str(out)!r} must be a GeoPackage (.gpkg)")
    return check_output_path(out, overwrite=overwrite, inputs=inputs)


def vectorize(
    raster: str | os.PathLike,
    out: str | os.PathLike,
    *,
    scheme: ClassScheme | str | None = None,
    min_area: float | None = None,
    simplify: float | None = None,
    classes: Sequence[str] | None = None,
    layer: str | None = None,
    overwrite: bool = False,
    block_size: int = DEFAULT_BLOCK_SIZE,
    progress: ProgressCallback | None = None,
    nodata: int | None = None,
) -> VectorizeResult:
    """Turn a class raster into styled polygons in a GeoPackage.

    One polygon per 4-connected region of one class (holes kept, nodata never vectorized),
    in the raster's CRS (a raster without georeferencing: in the pixel coordinates GDAL
    and QGIS place it at, x to the right and y negative downwards), with attributes ``class_id``, ``class_name`` and ``area_m2``. The
    layer's default QGIS style (categorized by class, the scheme's colours and names) is
    stored in the GeoPackage's ``layer_styles`` table. The file is written atomically.

    Args:
        raster: a one-band integer class raster. Every pixel must hold a class id of the
            scheme or the nodata value: any other value is an error (no class is ever
            dropped silently).
        out: the GeoPackage to write (``.gpkg``).
        scheme: the class scheme (object or registered name). Default: the scheme the
            raster carries (``glgeo segment`` writes it), else the registered scheme whose
            colours match the raster's colour table.
        min_area: remove regions smaller than this (m² on the ground, converted to pixels
            with the raster's largest pixel; see :class:`glgeo.areas.PixelAreas`) before
            vectorizing, by merging them into their largest neighbour, so no holes remain;
            a smaller region stays only where no neighbour can take it (an island in
            nodata). Exact when it covers at most ``block_size / 2`` pixels. What it merged
            is counted in the result, and a warning names every class it leaves without
            a polygon.
        simplify: simplification tolerance in metres on the ground (CRS units for a
            raster without a CRS): a vertex goes when the triangle it makes with its
            neighbours covers less than ``simplify`` squared on the ground
            (Visvalingam-Whyatt, an area rule; the pixel's ground area at the raster's
            centre converts it, so it holds on pixels that are not square on the ground,
            such as degrees away from the equator); neighbouring polygons keep shared
            borders.
        classes: names (or ids) of the classes to keep, as a list or a comma-separated
            string; default all.
        layer: layer name; default the raster's file stem.
        overwrite: replace ``out`` if it exists.
        block_size: pixels per side of the blocks processed at once; memory grows with its
            square, not with the raster's size.
        progress: called as ``progress(done, total)`` after each block.
        nodata: the value marking pixels without data (never vectorized). Default: the
            nodata value the raster declares; a raster that declares none has no nodata.
            Pixels the raster's mask (an internal mask band or an alpha band) says have
            no data are nodata too, whatever this says.
            A nodata value that is also a class id of the scheme leaves that class's
            pixels out, with a warning that counts them.

    Returns:
        What was written: path, layer, CRS, counts and areas per class, and the pixels
        of each class in the raster and in the polygons.

    Raises:
        SceneError: the raster is missing or unreadable.
        InputError: it is not a class raster (several bands, float values, values outside
            the scheme), or an option is invalid (also a ``min_area`` of at least the
            raster's area, or more pixels than a block and its margin hold).
        UnknownNameError: a name in ``classes`` or ``scheme`` is unknown.
        OutputError: ``out`` exists without ``overwrite``, or cannot be written.
    """
    started = time.perf_counter()
    raster_path = Path(raster)
    out_path = Path(out)
    check_gpkg_output(out_path, overwrite=overwrite, inputs=(raster_path,))
    _check_positive("min_area", min_area)
    _check_positive("simplify", simplify)
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise InputError(f"block_size must be a positive number of pixels, got {block_size!r}")
    _warn_of_a_shared_qmd(out_path)

    with _open_class_raster(raster_path) as src:
        class_scheme = _scheme_for(src, scheme)
        if isinstance(classes, str):
            classes = [part for part in classes.split(",") if part.strip()]
        keep_ids = set(class_scheme.ids_for(list(classes))) if classes else set(range(class_scheme.n_classes))
        layer_name = _layer_name(layer, raster_path)
        nodata_value = _nodata_for(src, nodata)
        transform = vector_transform(src)
        unplaced = src.crs is None and src.transform == Affine.identity()
        placed_by = "gcps" if unplaced and src.gcps[0] else "rpcs" if unplaced and src.rpcs else ""
        pixel_areas, area_factor = _area_units(src.crs if src.crs else None, transform, src.width, src.height,
                                               str(raster_path), placed_by)
        area_units = pixel_areas.unit
        # the largest pixel's area: no region of min_area or more is merged away
        pixel_area = pixel_areas.largest
        min_pixels = math.ceil(min_area / pixel_area - 1e-9) if min_area else None
        if min_pixels:
            _check_min_pixels(src, min_area, min_pixels, pixel_area, area_units, block_size)
        pixel_size = max(math.hypot(transform.a, transform.d), math.hypot(transform.b, transform.e))
        # the tolerance in metres on the ground, as min_area is in ground m² (CRS units without one)
        ground_pixel = ground_sample_distance(src.crs, transform, src.height, src.width) if src.crs else None
        tolerance_px = simplify / (ground_pixel or pixel_size) if simplify else None
        crs = src.crs.to_string() if src.crs else None
        log.info(
            "vectorizing %s (%d x %d px, %s) in blocks of %d px: classes %s",
            raster_path, src.width, src.height, crs, block_size,
            ", ".join(class_scheme.classes[i].name for i in sorted(keep_ids)),
        )
        with atomic_path(out_path, suffix=".gpkg") as tmp:
            writer = _LayerWriter(tmp, layer_name, crs, class_scheme, transform, area_factor,
                                  vector_provenance(src.tags(), raster_path), ground=pixel_areas.ground,
                                  max_segment=64 * pixel_size, target=Path(out_path))
            # Each pixel is read once (twice near seams with a halo): GDAL's block cache,
            # 5 % of RAM by default, would only grow with the raster. Cap it at a window.
            halo = _sieve_halo(min_pixels, block_size)
            window_bytes = (block_size + 2 * halo) ** 2 * np.dtype(src.dtypes[0]).itemsize
            tally = _PixelTally()
            with rasterio.Env(GDAL_CACHEMAX=max(_MIN_GDAL_CACHE, window_bytes)):
                for geometry, class_id in _pixel_geometries(
                    src, class_scheme, keep_ids, nodata_value, min_pixels, tolerance_px, block_size, progress, tally
                ):
                    writer.add(geometry, class_id)
            writer.flush()
            write_gpkg_layer_style(
                tmp,
                layer_name,
                vector_qml(class_scheme),
                description=f"glgeo classes ({class_scheme.name})",
            )
            items = writer.metadata
            what = f"Polygons of the classes of {raster_path.name}, vectorized {items['GLGEO_VECTORIZED_UTC']}"
            if pixel_areas.unit != "m2":  # the field's name says m²: the abstract says what it holds
                held = _AREA_WORDS.get(pixel_areas.unit, pixel_areas.unit)
                why = (f"is placed by {_PLACED_BY[placed_by]} only" if placed_by else
                       f"has {_AREA_WHY.get(pixel_areas.unit, 'no metric CRS')}")
                what += f"; area_m2 holds {held}, not m², as the raster {why}"
            write_gpkg_layer_metadata(tmp, layer_name, provenance_metadata(class_scheme, items, layer_name, what))
        n_blocks = math.ceil(src.height / block_size) * math.ceil(src.width / block_size)
        raster_pixels, written_pixels = (
            {class_scheme.classes[i].name: int(counts[i]) for i in sorted(keep_ids) if counts[i]}
            for counts in (tally.raster, tally.written)
        )
        nodata_pixels = int(tally.raster[NODATA_ID])
        if nodata_value in keep_ids and nodata_pixels:
            _warn_nodata_is_a_class(src, nodata, nodata_value, nodata_pixels, class_scheme)
        without_polygons = tuple(name for name in raster_pixels if name not in written_pixels)
        if without_polygons:
            _warn_classes_without_polygons(without_polygons, raster_pixels, min_area, area_units)
        if not raster_pixels:
            _warn_of_an_empty_layer(src.name, class_scheme, keep_ids, tally.raster)

    seconds = time.perf_counter() - started
    if min_pixels:
        log.info(
            "min_area merged %d regions (%d pixels) into neighbouring regions",
            tally.merged_regions, tally.merged_pixels,
        )
    log.info("wrote %d polygons to %s (layer %s) in %.1f s", writer.n_written, out_path, layer_name, seconds)
    return VectorizeResult(
        path=out_path,
        layer=layer_name,
        crs=crs,
        area_units=area_units,
        n_polygons=writer.n_written,
        polygons_per_class=dict(sorted(writer.counts.items(), key=lambda kv: class_scheme.by_name(kv[0]).id)),
        area_per_class=dict(sorted(writer.areas.items(), key=lambda kv: class_scheme.by_name(kv[0]).id)),
        n_blocks=n_blocks,
        seconds=seconds,
        raster_pixels_per_class=raster_pixels,
        written_pixels_per_class=written_pixels,
        nodata_pixels=nodata_pixels,
        merged_regions=tally.merged_regions,
        merged_pixels=tally.merged_pixels,
        classes_without_polygons=without_polygons,
    )
