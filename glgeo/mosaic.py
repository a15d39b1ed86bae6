"""Tiles of one area as one scene: a VRT of tiles on one pixel grid.

Orthophotos are delivered as tiles. Segmented one by one, each tile's map is made without
what lies beyond its edges, and the maps disagree where the tiles meet: a straight seam
along every border (``benchmarks/tiles.py``: on the shared Joplin tiles, 7-24 % of the
pixel pairs across a border change class in maps made tile by tile; in the map of the
tiles as one scene 0.0-0.6 %, as on the lines beside the borders). :func:`write_tiles_vrt`
puts tiles on one grid into one virtual scene, as ``gdalbuildvrt`` does (a later tile wins
where tiles overlap with data), without needing GDAL's command-line tools: ``glgeo segment
TILES... --mosaic -o MAP.tif`` segments it as one scene, and :func:`cut_tile_maps` cuts
that map back into one map per tile (``--mosaic --out-dir DIR``): each on its tile's grid,
and tiles' maps agree where the tiles meet or overlap.

The VRT's pixels are the tiles' own full-resolution pixels (no resampling, never their
overviews): tiles must share the CRS, the pixel size and the pixel grid (offsets of whole
pixels), and their colour bands (count, data type and colour meaning; an alpha band is
the tile's mask, whether or not the others have one). Where no tile has data (none lies
there, or those that do say nodata in every band by their nodata value, alpha band or
mask), the VRT's mask says nodata: a pixel is data where any of its bands is, as for one
scene.

Example::

    >>> from glgeo.mosaic import write_tiles_vrt
    >>> write_tiles_vrt(["tiles/a.tif", "tiles/b.tif"], "area.vrt")  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping, Sequence
from xml.sax.saxutils import escape, quoteattr

import rasterio

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from .writer import OutputOptions
from rasterio.enums import ColorInterp, MaskFlags
from rasterio.errors import RasterioIOError

from .atomic import check_output_path, unwritable_folder_error
from .errors import InputError
from .io import SceneInfo, open_raster
from .progress import ProgressCallback
from .provenance import scene_stamp
from .resolution import FULL_RESOLUTION_READS

#: Grid offsets within this many pixels of a whole number are on the grid (coordinates
#: written with a few decimals are off by far less); pixel sizes within this share.
GRID_TOLERANCE = 0.01
#: The VRT's metadata item listing its tiles' file names (JSON), for the outputs' metadata.
TILES_TAG = "GLGEO_TILES"
#: The VRT's metadata item that changes when a tile's file does (its size and time stamp),
#: so that what is fingerprinted by the VRT's content sees it.
STAMP_TAG = "GLGEO_TILES_STAMP"
#: Tiles named in :func:`mosaic_title`; more are counted.
TITLE_TILES = 5
#: Scenes overlapping by more than this share of the smaller one cover the same place (two
#: dates, two sensors) rather than meeting as tiles do.
TILE_OVERLAP_SHARE = 0.25
#: What :func:`write_tiles_vrt` needs of GDAL: a complex source's ``UseMaskBand`` (3.5) and
#: the ``OVERVIEW_LEVEL=NONE`` open option (3.6).
MIN_GDAL = (3, 6)


def mosaic_title(tags: Mapping[str, str]) -> str | None:
    """What outputs call a scene made by :func:`write_tiles_vrt` (its metadata ``tags``):
    ``a mosaic of 3 tiles (a.tif, b.tif, c.tif)``; ``None`` for any other scene."""
    try:
        names = json.loads(tags[TILES_TAG])
    except (KeyError, ValueError):
        return None
    if not isinstance(names, list) or not names:
        return None
    shown = ", ".join(map(str, names[:TITLE_TILES]))
    if len(names) > TITLE_TILES:
        shown += f" and {len(names) - TITLE_TILES} more"
    return f"a mosaic of {len(names)} tiles ({shown})"


@dataclass(frozen=True)
class TileLayout:
    """Where the tiles lie in their mosaic.

    Attributes:
        width, height: the mosaic's size in pixels.
        transform: its affine transform (the tiles' pixel size, the union's top-left corner).
        offsets: each tile's (column, row) offset in the mosaic, in the tiles' order.
        sizes: each tile's (width, height) in pixels.
        bands: each tile's colour bands (1-based) in the first tile's colour order (a tile
            labelled blue, green, red beside red, green, blue ones gives ``(3, 2, 1)``).
        alphas: each tile's alpha band, if it has one (its mask, wherever it lies).
        masks: how each tile says where it has data: ``none`` (everywhere), ``dataset``
            (one mask for all bands: internal, or an alpha band GDAL takes as the mask),
            ``bands`` (a nodata value: each band its own), ``alpha`` (an alpha band GDAL
            does not take as the mask).
        coverage: the share of the mosaic's pixels that some tile covers.
        overlapping: whether any two tiles overlap (rather than only meet).
        apart: the tiles (their indices) that neither meet nor overlap another tile:
            nothing is gained by segmenting them in the mosaic, and the area between them is
            nodata.
    """

    width: int
    height: int
    transform: "rasterio.Affine"
    offsets: tuple[tuple[int, int], ...]
    sizes: tuple[tuple[int, int], ...]
    bands: tuple[tuple[int, ...], ...]
    alphas: tuple[int | None, ...]
    masks: tuple[str, ...]
    coverage: float
    overlapping: bool
    apart: tuple[int, ...] = ()


@dataclass(frozen=True)
class _Tile:
    name: str
    crs: object
    res: tuple[float, float]
    origin: tuple[float, float]
    size: tuple[int, int]
    bands: tuple[int, ...]  # the colour bands (all but an alpha band), in the file's order
    dtypes: tuple[str, ...]
    colours: tuple[str, ...]
    alpha: int | None
    mask: str  # "none", "dataset" (one mask for all bands), "bands" (a nodata value: each band's own), "alpha" (unused by GDAL)


#: URL schemes a mosaic's VRT reads tiles over, as GDAL's virtual file systems.
_VSI = {"http": "/vsicurl/", "https": "/vsicurl/", "ftp": "/vsicurl/", "s3": "/vsis3/", "gs": "/vsigs/",
        "az": "/vsiaz/", "oss": "/vsioss/"}


def gdal_name(path: str | os.PathLike) -> str:
    """How a VRT names a tile: a local file by its absolute path, a URL through GDAL's
    virtual file systems (``https://h/t.tif`` -> ``/vsicurl/https://h/t.tif``,
    ``s3://b/t.tif`` -> ``/vsis3/b/t.tif``), a ``/vsi...`` path as it is.

    Raises:
        InputError: a URL scheme GDAL reads no files over.
    """
    name = os.fspath(path)
    if name.startswith("/vsi"):
        return name
    scheme, sep, rest = name.partition("://")
    if not sep:
        return str(Path(name).resolve())
    prefix = _VSI.get(scheme.lower())
    if prefix is None:
        raise InputError(f"{name!r}: a mosaic reads tiles from files or {', '.join(f'{k}://' for k in _VSI)} URLs")
    return prefix + (name if prefix == "/vsicurl/" else rest)


def _read_tile(path: str | os.PathLike) -> _Tile:
    name = os.fspath(path)
    gdal_name(name)  # a scheme the VRT cannot name is refused before any tile is read
    with open_raster(name, "GeoTIFF or VRT tiles") as src:
        return _tile_of(src, name)


def _tile_of(src, name: str) -> _Tile:
    t = src.transform
    if src.crs is None or t.is_identity:
        raise InputError(f"{name!r} has no place on a map (no CRS or transform): a mosaic needs georeferenced "
                         "tiles; segment plain images one by one")
    if t.b != 0 or t.d != 0:
        raise InputError(f"{name!r} is rotated (its transform has rotation terms): warp the tiles to a north-up "
                         "grid first (gdalwarp)")
    alphas = [b for b in src.indexes if src.colorinterp[b - 1] == ColorInterp.alpha]
    bands = tuple(b for b in src.indexes if b not in alphas[:1])
    flags = [src.mask_flag_enums[b - 1] for b in bands]
    if alphas and not any(MaskFlags.alpha in f for f in flags):
        mask = "alpha"  # an alpha band GDAL does not take as the mask (not last, or after more than 3 bands)
    elif any(MaskFlags.nodata in f for f in flags):
        mask = "bands"
    elif all(MaskFlags.all_valid in f for f in flags):
        mask = "none"
    else:
        mask = "dataset"
    return _Tile(name, src.crs, (t.a, t.e), (t.c, t.f), (src.width, src.height), bands,
                 tuple(src.dtypes[b - 1] for b in bands), tuple(src.colorinterp[b - 1].name for b in bands),
                 alphas[0] if alphas else None, mask)


#: Colour labels that say nothing of a band's colour: bands so labelled are matched by place.
_UNSAID = {"undefined", "gray"}


def _colour_order(first: _Tile, tile: _Tile) -> tuple[int, ...] | None:
    """``tile``'s colour bands in ``first``'s colour order: as they are where the labels are
    the same, by their labels where the same colours come in another order (BGR beside RGB);
    ``None`` where the labels do not say the same colours."""
    if tile.colours == first.colours:
        return tile.bands
    named = [c for c in first.colours if c not in _UNSAID]
    if sorted(tile.colours) == sorted(first.colours) and len(set(named)) == len(first.colours):
        return tuple(tile.bands[tile.colours.index(c)] for c in first.colours)
    return None


def tile_layout(paths: Sequence[str | os.PathLike]) -> TileLayout:
    """Check that the tiles share one pixel grid, and lay them out on it.

    Raises:
        SceneError: a tile is missing or not a raster.
        InputError: fewer than two tiles, a tile without georeferencing or rotated, or tiles
            on different grids (CRS, pixel size, a fraction of a pixel apart) or with other
            colour bands (count, data type, colours): the message names the two tiles and
            says what to do.
    """
    if len(paths) < 2:
        raise InputError("a mosaic needs two or more tiles; segment one scene with -o alone")
    tiles = [_read_tile(p) for p in paths]
    first = tiles[0]
    orders = [first.bands] + [_check_same_grid(first, tile) for tile in tiles[1:]]
    (res_x, res_y), (x0, y0) = first.res, first.origin
    cells = []
    for tile in tiles:
        col, row = (tile.origin[0] - x0) / res_x, (tile.origin[1] - y0) / res_y
        if abs(col - round(col)) > GRID_TOLERANCE or abs(row - round(row)) > GRID_TOLERANCE:
            raise InputError(
                f"{tile.name!r} is not on the pixel grid of {first.name!r} (offset by {abs(col - round(col)):.3f} x "
                f"{abs(row - round(row)):.3f} px): resample the tiles onto one grid first (gdalwarp -tap -tr ...)"
            )
        cells.append((round(col), round(row), *tile.size))
    left, top = min(c for c, _, _, _ in cells), min(r for _, r, _, _ in cells)
    right, bottom = max(c + w for c, _, w, _ in cells), max(r + h for _, r, _, h in cells)
    width, height = right - left, bottom - top
    rects = [(c - left, r - top, w, h) for c, r, w, h in cells]
    covered = _covered_pixels(rects)
    met = {i for pair in _meeting(rects, overlap_share=None) for i in pair}
    transform = rasterio.Affine(res_x, 0, x0 + left * res_x, 0, res_y, y0 + top * res_y)
    return TileLayout(
        width, height, transform, tuple((c, r) for c, r, _, _ in rects), tuple((w, h) for _, _, w, h in rects),
        tuple(orders), tuple(t.alpha for t in tiles), tuple(t.mask for t in tiles), covered / (width * height),
        covered < sum(w * h for _, _, w, h in rects), tuple(i for i in range(len(rects)) if i not in met),
    )


def _check_same_grid(first: _Tile, tile: _Tile) -> tuple[int, ...]:
    """Refuse a tile that cannot join ``first``'s mosaic; its colour bands in ``first``'s order."""
    a, b = tile.name, first.name
    if tile.crs != first.crs:
        raise InputError(f"{a!r} is in {tile.crs.to_string()} and {b!r} in {first.crs.to_string()}: a mosaic's tiles "
                         "share one CRS; warp them to one first (gdalwarp -t_srs ...)")
    if not all(math.isclose(p, q, rel_tol=1e-6) for p, q in zip(tile.res, first.res)):
        raise InputError(
            f"{a!r} has pixels of {tile.res[0]:g} x {tile.res[1]:g} map units (x, y steps) and {b!r} of "
            f"{first.res[0]:g} x {first.res[1]:g}: a mosaic's tiles share one pixel size and orientation; "
            "resample them onto one grid first (gdalwarp -tr ...)"
        )
    if (len(tile.bands), set(tile.dtypes)) != (len(first.bands), set(first.dtypes)):
        raise InputError(
            f"{a!r} has {len(tile.bands)} colour bands ({', '.join(tile.dtypes)}) and {b!r} {len(first.bands)} "
            f"({', '.join(first.dtypes)}): a mosaic's tiles have the same colour bands (an alpha band may differ); "
            "give tiles of one product, or make them alike (gdal_translate -b ... -ot ...)"
        )
    order = _colour_order(first, tile)
    if order is None:
        labels = " ".join(f"-colorinterp_{k + 1} {c}" for k, c in enumerate(first.colours))
        raise InputError(
            f"the colour bands of {a!r} are {', '.join(tile.colours)}, those of {b!r} "
            f"{', '.join(first.colours)}: a mosaic's tiles have the same colours; if the bands are in the same "
            f"order, label them alike (gdal_edit.py {labels} FILE)"
        )
    return order


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


def _meeting(
    boxes: Sequence[tuple[float, float, float, float]], tolerance: float = 0.0,
    overlap_share: float | None = TILE_OVERLAP_SHARE,
) -> list[tuple[int, int]]:
    """Pairs of boxes (left, top, width, height) that share a border (more than a corner)
    or overlap, within ``tolerance``; by at most ``overlap_share`` of the smaller (``None``:
    any overlap): a sweep along the left edges."""
    order = sorted(range(len(boxes)), key=lambda i: boxes[i][0])
    pairs = []
    for k, i in enumerate(order):
        l1, t1, w1, h1 = boxes[i]
        for j in order[k + 1:]:
            l2, t2, w2, h2 = boxes[j]
            if l2 > l1 + w1 + tolerance:
                break  # sorted by left edge: no later box reaches back to this one
            across = min(l1 + w1, l2 + w2) - max(l1, l2)
            down = min(t1 + h1, t2 + h2) - max(t1, t2)
            if across < -tolerance or down < -tolerance or max(across, down) <= tolerance:
                continue  # apart, or only corners touch
            shared = max(across, 0) * max(down, 0)
            if overlap_share is None or shared <= overlap_share * min(w1 * h1, w2 * h2):
                pairs.append((min(i, j), max(i, j)))
    return pairs


def check_gdal() -> None:
    """Refuse a GDAL older than :data:`MIN_GDAL`, whose VRT would read a tile's nodata collar
    as black pixels over its neighbour's (it ignores ``UseMaskBand``) and use overviews."""
    have = tuple(int(p) for p in rasterio.__gdal_version__.split(".")[:2])
    if have < MIN_GDAL:
        raise InputError(
            f"a mosaic needs GDAL {'.'.join(map(str, MIN_GDAL))} or newer; this rasterio has GDAL "
            f"{rasterio.__gdal_version__}: install a newer rasterio (pip install -U rasterio), or build a VRT of the "
            "tiles yourself (gdalbuildvrt) and segment it"
        )


def write_tiles_vrt(paths: Sequence[str | os.PathLike], vrt: str | os.PathLike) -> TileLayout:
    """Write a VRT of tiles on one pixel grid (:func:`tile_layout` checks them), as
    ``gdalbuildvrt`` does: the tiles' full-resolution pixels unresampled, a later tile over
    an earlier one where it has data (its nodata, alpha band or mask leaves the pixels
    beneath it), nodata where no tile has data. As for one scene, a tile's pixel is data
    where any of its colour bands is, and then every band keeps its value (a red that
    equals the nodata value included); an alpha band is the tile's mask wherever it lies.

    Every tile's colour bands are read in the first tile's colour order, from its
    full-resolution pixels; where tiles overlap, a tile whose bands have masks of their own
    (a nodata value) or whose alpha band GDAL does not use enters as a small VRT of its own
    (inline) with one mask for all its bands.

    Returns:
        The layout the VRT has.

    Raises:
        InputError: tiles that do not make one mosaic (:func:`tile_layout`), or a GDAL
            older than :data:`MIN_GDAL`.
        OutputError: the VRT cannot be written.
    """
    check_gdal()
    layout = tile_layout(paths)
    with rasterio.open(os.fspath(paths[0])) as src:
        crs_wkt = src.crs.to_wkt()
        dtype = src.dtypes[layout.bands[0][0] - 1]
        colours = [_GDAL_COLOURS.get(src.colorinterp[b - 1].name, src.colorinterp[b - 1].name.capitalize())
                   for b in layout.bands[0]]
    gdal_type = _GDAL_TYPES.get(dtype)
    if gdal_type is None:
        raise InputError(f"{os.fspath(paths[0])!r} holds {dtype} pixels, which a mosaic does not take; convert the tiles")
    files = [gdal_name(p) for p in paths]
    # a local tile's size and time stamp; a remote one's name only (a change there is not seen)
    stamp = hashlib.sha256(json.dumps([scene_stamp(p) for p in paths]).encode()).hexdigest()
    t = layout.transform
    lines = [
        f'<VRTDataset rasterXSize="{layout.width}" rasterYSize="{layout.height}">',
        f"  <SRS>{escape(crs_wkt)}</SRS>",
        f"  <GeoTransform>{t.c!r}, {t.a!r}, 0.0, {t.f!r}, 0.0, {t.e!r}</GeoTransform>",
        "  <Metadata>",
        f'    <MDI key="{TILES_TAG}">{escape(json.dumps([_tile_name(p) for p in paths]))}</MDI>',
        f'    <MDI key="{STAMP_TAG}">{stamp}</MDI>',
        "  </Metadata>",
    ]
    # Where tiles overlap, a tile's no-data pixels must leave what lies beneath: complex
    # sources that see through the tile's mask. That mask is one for all bands only where
    # the tile has one mask (or none); a tile whose bands have their own (a nodata value) or
    # whose alpha band GDAL does not use enters there as an inline VRT of its own with one
    # mask. Tiles that only meet are simple sources (half the time to read, or less).
    nested = {i: _tile_vrt(files[i], i, layout, gdal_type) for i in range(len(paths))
              if layout.overlapping and layout.masks[i] in ("bands", "alpha")}

    def source(tile: int, band: str, file: str | None = None, transparent: str = "") -> list[str]:
        """One tile as a source of a VRT band, at its place; ``transparent``: how its no-data
        pixels leave what lies beneath."""
        (col, row), (width, height) = layout.offsets[tile], layout.sizes[tile]
        kind = "ComplexSource" if transparent else "SimpleSource"
        return [
            f"      <{kind}>",
            f'        <SourceFilename relativeToVRT="0">{escape(file or files[tile])}</SourceFilename>',
            *([] if file else [f"        {_FULL_RESOLUTION_OPEN}"]),
            f"        <SourceBand>{band}</SourceBand>",
            f'        <SrcRect xOff="0" yOff="0" xSize="{width}" ySize="{height}" />',
            f'        <DstRect xOff="{col}" yOff="{row}" xSize="{width}" ySize="{height}" />',
            *([f"        {transparent}"] if transparent else []),
            f"      </{kind}>",
        ]

    see_through = "<UseMaskBand>true</UseMaskBand>" if layout.overlapping else ""
    for k, colour in enumerate(colours):
        lines += [f"  <VRTRasterBand dataType={quoteattr(gdal_type)} band=\"{k + 1}\">",
                  f"    <ColorInterp>{colour}</ColorInterp>"]
        for i in range(len(paths)):
            if i in nested:
                lines += source(i, str(k + 1), nested[i], see_through)
            else:
                lines += source(i, str(layout.bands[i][k]), transparent=see_through)
        lines.append("  </VRTRasterBand>")
    # one mask for all bands: > 0 where any tile has data in any band, 0 (the initial value) elsewhere
    lines += ["  <MaskBand>", '    <VRTRasterBand dataType="Byte">']
    for i in range(len(paths)):
        kind, bands = layout.masks[i], layout.bands[i]
        if kind == "bands":  # data where any band is: every band's mask, none covering another's data
            for band in bands:
                lines += source(i, f"mask,{band}", transparent="<NODATA>0</NODATA>")
        else:
            band = str(layout.alphas[i]) if kind == "alpha" else f"mask,{bands[0]}"
            lines += source(i, band, transparent="<NODATA>0</NODATA>" if layout.overlapping else "")
    lines += ["    </VRTRasterBand>", "  </MaskBand>", "</VRTDataset>"]
    try:
        Path(vrt).write_text("\n".join(lines) + "\n", encoding="utf-8")
    except UnicodeEncodeError:
        raise InputError("a tile's file name is not valid UTF-8, which a VRT needs: rename the tiles") from None
    except OSError as exc:
        raise unwritable_folder_error(Path(vrt).absolute().parent, exc, "the folder of the mosaic's VRT") from None
    return layout


def _tile_vrt(path: str, tile: int, layout: TileLayout, gdal_type: str) -> str:
    """One tile as a VRT of its own, inline (GDAL opens VRT XML given as a file name): its
    colour bands in the mosaic's order, read from its full-resolution pixels (never its
    overviews), with one mask for all of them: its alpha band where it has one, else where
    any colour band's own mask (nodata value, internal mask) says data."""
    (width, height) = layout.sizes[tile]
    filename = f'<SourceFilename relativeToVRT="0">{escape(path)}</SourceFilename>{_FULL_RESOLUTION_OPEN}'
    xml = [f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">']
    for k, band in enumerate(layout.bands[tile]):
        xml.append(f'<VRTRasterBand dataType="{gdal_type}" band="{k + 1}"><SimpleSource>{filename}'
                   f"<SourceBand>{band}</SourceBand></SimpleSource></VRTRasterBand>")
    alpha = layout.alphas[tile]
    masks = ([f"<SimpleSource>{filename}<SourceBand>{alpha}</SourceBand></SimpleSource>"] if alpha else
             [f"<ComplexSource>{filename}<SourceBand>mask,{band}</SourceBand><NODATA>0</NODATA></ComplexSource>"
              for band in layout.bands[tile]])
    xml.append('<MaskBand><VRTRasterBand dataType="Byte">' + "".join(masks) + "</VRTRasterBand></MaskBand>")
    xml.append("</VRTDataset>")
    return "".join(xml)


#: A VRT source's open options: the file's full-resolution pixels, never its overviews'.
_FULL_RESOLUTION_OPEN = ("<OpenOptions>" + "".join(f'<OOI key="{k}">{v}</OOI>' for k, v in FULL_RESOLUTION_READS.items())
                         + "</OpenOptions>")
#: GDAL's names of the colours rasterio names otherwise.
_GDAL_COLOURS = {"Y": "YCbCr_Y", "Cb": "YCbCr_Cb", "Cr": "YCbCr_Cr", "undefined": "Undefined"}

_GDAL_TYPES = {"uint8": "Byte", "int8": "Int8", "uint16": "UInt16", "int16": "Int16", "uint32": "UInt32",
               "int32": "Int32", "float32": "Float32", "float64": "Float64"}


def meeting_tiles(paths: Sequence[str | os.PathLike], max_scenes: int = 5000) -> list[tuple[str, str]]:
    """Pairs of scenes that meet on the map as tiles of one area do, and that
    :func:`write_tiles_vrt` takes together: in one CRS, with one pixel size and grid and
    the same colour bands, sharing a border or overlapping by a strip (at most
    :data:`TILE_OVERLAP_SHARE` of the smaller). Maps made of them one by one disagree where
    they meet. Only local, georeferenced, north-up files are looked at, and none where there
    are more than ``max_scenes`` (opening each costs a moment)."""
    from .batch.inputs import is_remote

    local = [os.fspath(p) for p in paths if not is_remote(os.fspath(p))]
    if len(local) < 2 or len(local) > max_scenes:
        return []
    kinds: dict[tuple, list[_Tile]] = {}
    for name in local:
        try:
            with rasterio.open(name) as src:
                tile = _tile_of(src, name)
        except (RasterioIOError, InputError):
            continue  # said when the scene is segmented
        key = (tile.crs.to_string(), round(tile.res[0], 9), round(tile.res[1], 9), len(tile.bands),
               frozenset(tile.dtypes))
        kinds.setdefault(key, []).append(tile)
    pairs = []
    for members in kinds.values():
        grids: list[list[_Tile]] = []  # tiles on one pixel grid with the same colours, as tile_layout takes them
        for tile in members:
            for grid in grids:
                reference = grid[0]
                steps = [(o - r) / s for o, r, s in zip(tile.origin, reference.origin, reference.res)]
                if all(abs(v - round(v)) <= GRID_TOLERANCE for v in steps) and _colour_order(reference, tile):
                    grid.append(tile)
                    break
            else:
                grids.append([tile])
        for grid in grids:
            boxes = [((t.origin[0] - grid[0].origin[0]) / t.res[0], (t.origin[1] - grid[0].origin[1]) / t.res[1],
                      *t.size) for t in grid]
            pairs += [(grid[i].name, grid[j].name) for i, j in _meeting(boxes, tolerance=0.5)]
    return pairs


@dataclass(frozen=True)
class TileMap:
    """One tile's map, cut from the map of its mosaic by :func:`cut_tile_maps`.

    Attributes:
        tile: the tile (as given).
        output: its class raster, on the tile's grid.
        classes: area per class (by id, every class of the scheme), in ``area_unit``.
        area_unit: ``"m2"`` on the ground (see :class:`glgeo.areas.PixelAreas`).
        nodata_pixels: the tile's pixels without a class: where the tile has no data, or
            where the mosaic's map has none (outside ``--aoi``).
    """

    tile: str
    output: Path
    classes: tuple
    area_unit: str
    nodata_pixels: int

    def to_dict(self) -> dict:
        """A JSON-able summary."""
        return {"tile": self.tile, "output": str(self.output), "area_unit": self.area_unit,
                "classes": [c.__dict__ for c in self.classes], "nodata_pixels": self.nodata_pixels}


def cut_tile_maps(
    class_map: str | os.PathLike,
    tiles: Sequence[str | os.PathLike],
    outputs: Sequence[str | os.PathLike],
    *,
    layout: TileLayout | None = None,
    options: "OutputOptions | None" = None,
    overwrite: bool = False,
    rows: int = 512,
    progress: ProgressCallback | None = None,
    on_tile: Callable[[TileMap], None] | None = None,
) -> list[TileMap]:
    """Cut the map of a mosaic of ``tiles`` (made from :func:`write_tiles_vrt`'s VRT) into
    one class raster per tile, ``outputs[i]`` for ``tiles[i]``.

    Each is on its tile's own grid (CRS, transform and size: it lies exactly over the tile)
    and holds the mosaic map's classes where the tile has data (its nodata value, alpha band
    or mask; the pixels a later tile covers too, with the class the one map gives the
    place), nodata elsewhere; with the map's colours, class names, QGIS style and
    provenance, as ``glgeo segment`` writes them, and each written atomically. Maps of
    neighbouring tiles agree where the tiles meet, as the mosaic's map does.

    Args:
        class_map: the class raster ``glgeo segment`` wrote of the mosaic's VRT.
        tiles: the tiles, in the VRT's order.
        outputs: one ``.tif`` per tile.
        layout: the tiles' layout (:func:`tile_layout`, looked up when not given).
        options: the outputs' format (:class:`glgeo.writer.OutputOptions`).
        overwrite: replace outputs that exist (else they are refused, before any is written).
        rows: rows read and written at once (memory: a few bytes per pixel of ``rows`` rows
            of a tile).
        progress: called as ``progress(done, total)`` after each band of ``rows`` rows.
        on_tile: called with each tile's :class:`TileMap` as soon as its map is in place
            (an interruption leaves those written before it).

    Raises:
        InputError: the map is not a mosaic's map of these tiles (its size, grid or class
            scheme), or an output exists and ``overwrite`` is false.
        OutputError: an output cannot be written.
    """
    from rasterio.windows import Window

    from .areas import AreaTally, PixelAreas
    from .blend import NODATA_ID, RowBand
    from .provenance import glgeo_items
    from .styles import scheme_from_tags
    from .writer import ClassRasterWriter, OutputOptions

    names, targets = [os.fspath(t) for t in tiles], [Path(o) for o in outputs]
    if len(names) != len(targets):
        raise InputError(f"{len(names)} tiles and {len(targets)} outputs: give one output per tile")
    for target in targets:
        check_output_path(target, overwrite=overwrite, inputs=(*names, os.fspath(class_map)))
    layout = layout or tile_layout(names)
    options = options or OutputOptions()
    with rasterio.open(class_map) as src:
        tags = src.tags()
        scheme = scheme_from_tags(tags)
        if scheme is None:
            raise InputError(f"{os.fspath(class_map)!r} carries no class scheme: give a class raster glgeo segment wrote")
        on_grid = all(math.isclose(p, q, rel_tol=1e-9, abs_tol=1e-9 * abs(q) + 1e-12)
                      for p, q in zip(src.transform[:6], layout.transform[:6]))
        if (src.width, src.height) != (layout.width, layout.height) or not on_grid:
            raise InputError(f"{os.fspath(class_map)!r} is not the map of these tiles' mosaic ({src.width} x "
                             f"{src.height} px, where the mosaic is {layout.width} x {layout.height} px)")
        file_nodata = src.nodata
        title = mosaic_title({TILES_TAG: json.dumps([_tile_name(n) for n in names])})
        done, total = 0, sum(-(-h // rows) for _, h in layout.sizes)
        maps = []
        for i, (name, target) in enumerate(zip(names, targets)):
            (col, row), (width, height) = layout.offsets[i], layout.sizes[i]
            with rasterio.open(name) as tile:
                info = SceneInfo(
                    path=name, height=height, width=width, count=tile.count, bands=layout.bands[i],
                    dtype=tile.dtypes[0], crs=tile.crs, transform=tile.transform, nodata=tile.nodata,
                    has_mask=layout.masks[i] != "none", block_shape=(min(rows, height), width),
                    title=f"{_tile_name(name)}, cut from the map of {title} segmented as one scene",
                )
                tally = AreaTally(PixelAreas(info.crs, info.transform, width, height))
                with ClassRasterWriter(target, info, scheme, options=options) as writer:
                    for top in range(0, height, rows):
                        n = min(rows, height - top)
                        classes = src.read(1, window=Window(col, row + top, width, n))
                        if file_nodata is not None and int(file_nodata) != NODATA_ID:
                            classes[classes == int(file_nodata)] = NODATA_ID
                        classes[~_tile_valid(tile, layout, i, Window(0, top, width, n))] = NODATA_ID
                        tally.add(classes, top)
                        writer.write(RowBand(top, classes))
                        done += 1
                        if progress is not None:
                            progress(done, total)
                    writer.set_tags(glgeo_items(tags))
                    writer.commit()
            classes_, unit = tally.class_areas(scheme)
            maps.append(TileMap(name, target, classes_, unit, int(tally.counts[NODATA_ID])))
            if on_tile is not None:
                on_tile(maps[-1])
    return maps


def _tile_name(path: str | os.PathLike) -> str:
    """A tile's file name (of a URL too, without its query)."""
    from urllib.parse import urlparse

    name = os.fspath(path)
    return os.path.basename((urlparse(name).path if "://" in name else name).rstrip("/"))


def _tile_valid(tile, layout: TileLayout, i: int, window) -> "np.ndarray":
    """Where tile ``i`` has data in ``window``, as its mosaic's VRT takes it: any colour
    band's, or its alpha band's, or its one mask."""
    import numpy as np

    kind, bands = layout.masks[i], layout.bands[i]
    if kind == "none":
        return np.ones((int(window.height), int(window.width)), dtype=bool)
    if kind == "alpha":
        return tile.read(layout.alphas[i], window=window) > 0
    if kind == "bands":
        return np.any(tile.read_masks(list(bands), window=window) > 0, axis=0)
    return tile.read_masks(bands[0], window=window) > 0
