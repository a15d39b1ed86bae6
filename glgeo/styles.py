"""QGIS styles for glgeo's outputs, built from a class scheme.

Every output opens styled in QGIS with no clicks, and the raster and the polygons look
the same (one colour and one name per class, taken from the scheme):

* class rasters get two sidecar files (:func:`write_raster_sidecars`): ``<name>.qml``,
  which QGIS loads as the layer's default style (a paletted renderer labelled with the
  class names, nodata transparent), and ``<name>.tif.aux.xml``, GDAL's PAM file, holding
  the category names, a thematic raster attribute table (value, class, red, green, blue,
  alpha) and the scheme itself as JSON under the metadata key :data:`SCHEME_TAG` (so that
  ``glgeo vectorize`` knows the class names without being told);
* GeoPackage layers get a row in the ``layer_styles`` table (:func:`write_gpkg_layer_style`),
  the table QGIS reads a layer's default style from, holding :func:`vector_qml`: a
  renderer categorized on ``class_id`` with the same colours and names;
* both get QGIS layer metadata (:func:`layer_metadata_qmd`: a title, an abstract naming the
  model and the classes, keywords, and the provenance items as history lines), which QGIS
  shows under Layer Properties > Metadata: a ``<name>.qmd`` sidecar for rasters
  (:func:`write_raster_metadata`; QGIS reads it when a layer is added), a row of the
  GeoPackage's ``gpkg_metadata`` table for polygon layers (:func:`write_gpkg_layer_metadata`).

The XML is written by hand (QGIS and GDAL are not needed to write it); the tests open the
results in GDAL and in a real QGIS.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sqlite3
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Iterator, Literal, Mapping, Sequence

from .atomic import atomic_path
from .errors import InputError, OutputError, SceneError
from .schemes import NODATA_ID, ClassScheme

#: Metadata key (GDAL default domain) under which a class raster carries its scheme as JSON.
SCHEME_TAG = "GLGEO_SCHEME"

#: QGIS version written in the QML headers; QGIS reads styles from older versions.
_QGIS_VERSION = "3.22.0"

# GDAL raster attribute table codes (gdal.h: GDALRATFieldType and GDALRATFieldUsage).
_GFT_INTEGER, _GFT_STRING = 0, 2
_GFU_NAME, _GFU_MINMAX, _GFU_RED, _GFU_GREEN, _GFU_BLUE, _GFU_ALPHA = 2, 5, 6, 7, 8, 9


def _qml_root() -> ET.Element:
    return ET.Element(
        "qgis",
        {"version": _QGIS_VERSION, "styleCategories": "AllStyleCategories", "hasScaleBasedVisibilityFlag": "0"},
    )


def _to_xml(root: ET.Element) -> str:
    ET.indent(root)
    return "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n" + ET.tostring(root, encoding="unicode") + "\n"


def _option(parent: ET.Element, name: str, value: str) -> None:
    ET.SubElement(parent, "Option", {"name": name, "type": "QString", "value": value})


def raster_qml(scheme: ClassScheme, nodata: int | None = NODATA_ID) -> str:
    """A QGIS style (QML) drawing a class raster with the scheme's colours and names.

    The renderer is QGIS's "Paletted/Unique values" renderer on band 1, one entry per
    class labelled with the class name; the nodata value is fully transparent.

    Args:
        scheme: the classes the raster holds.
        nodata: the raster's nodata value (255 in 8-bit class rasters, 7 in glgeo's 3-bit
            DeepGlobe GeoTIFFs: see :func:`glgeo.schemes.class_raster_bits`); ``None``: the
            raster has none.

    Returns:
        The QML document as a string (save it as ``<raster name>.qml``).
    """
    root = _qml_root()
    pipe = ET.SubElement(root, "pipe")
    renderer = ET.SubElement(
        pipe,
        "rasterrenderer",
        {"type": "paletted", "band": "1", "opacity": "1", "alphaBand": "-1", "nodataColor": ""},
    )
    transparency = ET.SubElement(renderer, "rasterTransparency")
    pixels = ET.SubElement(transparency, "singleValuePixelList")
    if nodata is not None:
        ET.SubElement(pixels, "pixelListEntry", {"min": str(nodata), "max": str(nodata), "percentTransparent": "100"})
    palette = ET.SubElement(renderer, "colorPalette")
    for info in scheme.classes:
        ET.SubElement(
            palette,
            "paletteEntry",
            {"value": str(info.id), "color": info.hex_color, "alpha": "255", "label": info.name},
        )
    ET.SubElement(pipe, "brightnesscontrast", {"brightness": "0", "contrast": "0", "gamma": "1"})
    ET.SubElement(pipe, "huesaturation", {"saturation": "0", "grayscaleMode": "0", "colorizeOn": "0"})
    # Nearest neighbour only: class ids must never be interpolated.
    ET.SubElement(pipe, "rasterresampler", {"maxOversampling": "2"})
    ET.SubElement(root, "blendMode").text = "0"
    return _to_xml(root)


#: Colour ramp of score rasters: viridis (perceptually uniform, readable in grey and by
#: colour-blind readers) at five stops, score 0 -> 1.
SCORE_RAMP = ("#440154", "#3b528b", "#21918c", "#5ec962", "#fde725")


def score_band(scheme: ClassScheme) -> int:
    """The band a score raster is first drawn with (1-based): the first class that is not a
    background (:func:`background_ids`), as that is usually what the map is for (building
    in Inria's scheme, urban in DeepGlobe's); band 1 where every class is background."""
    background = set(background_ids(scheme))
    return next((k + 1 for k, c in enumerate(scheme.classes) if c.id not in background), 1)


def scores_qml(scheme: ClassScheme, band: int | None = None) -> str:
    """A QGIS style (QML) drawing one band of a score raster (``--probabilities``: one band
    per class, softmax x 255, with a band scale of 1/255 that QGIS applies: scores of 0 to 1)
    with the :data:`SCORE_RAMP` from 0 to 1, labelled in percent.

    The raster's no-data is its internal mask, which QGIS exposes as one band after the
    scores and which is the style's alpha band: no-data is transparent. Another class is
    one click away (the band list names each band ``score <class>``).

    Args:
        scheme: the classes, one band each in the scheme's order.
        band: the band drawn (1-based); default :func:`score_band`.
    """
    band = score_band(scheme) if band is None else band
    if not 1 <= band <= scheme.n_classes:
        raise InputError(f"band {band} is not a band of a {scheme.n_classes}-class score raster")
    root = _qml_root()
    pipe = ET.SubElement(root, "pipe")
    renderer = ET.SubElement(
        pipe,
        "rasterrenderer",
        {"type": "singlebandpseudocolor", "band": str(band), "opacity": "1",
         "alphaBand": str(scheme.n_classes + 1), "nodataColor": "",
         "classificationMin": "0", "classificationMax": "1"},
    )  # fmt: skip
    ET.SubElement(renderer, "rasterTransparency")
    origin = ET.SubElement(renderer, "minMaxOrigin")
    for tag, text in (("limits", "None"), ("extent", "WholeRaster"), ("statAccuracy", "Estimated")):
        ET.SubElement(origin, tag).text = text
    shader = ET.SubElement(ET.SubElement(renderer, "rastershader"), "colorrampshader", {
        "colorRampType": "INTERPOLATED", "classificationMode": "2", "clip": "0",
        "minimumValue": "0", "maximumValue": "1", "labelPrecision": "2",
    })  # fmt: skip
    for k, color in enumerate(SCORE_RAMP):
        share = k / (len(SCORE_RAMP) - 1)
        ET.SubElement(shader, "item", {"value": f"{share:g}", "color": color, "alpha": "255",
                                       "label": f"{scheme.classes[band - 1].name} {100 * share:.0f} %"})
    ET.SubElement(pipe, "brightnesscontrast", {"brightness": "0", "contrast": "0", "gamma": "1"})
    ET.SubElement(pipe, "huesaturation", {"saturation": "0", "grayscaleMode": "0", "colorizeOn": "0"})
    ET.SubElement(pipe, "rasterresampler", {"maxOversampling": "2"})
    ET.SubElement(root, "blendMode").text = "0"
    return _to_xml(root)


def write_scores_style(tif_path: str | os.PathLike, scheme: ClassScheme) -> Path:
    """Write ``<stem>.qml`` (:func:`scores_qml`) beside a score raster, atomically.

    Raises:
        OutputError: the file cannot be written.
    """
    path = Path(tif_path).with_suffix(".qml")
    _write_text_atomic(path, scores_qml(scheme))
    return path


#: Opacity (0-255) of the class fills in vector styles: half transparent, so the imagery
#: shows through the polygons; outlines stay opaque.
FILL_ALPHA = 128

#: Class names drawn unfilled by default in vector styles: they would cover the imagery.
BACKGROUND_NAMES = ("background", "unknown", "nodata", "no data", "void", "clutter")


def background_ids(scheme: ClassScheme) -> tuple[int, ...]:
    """Classes that are "nothing in particular": named background, unknown... or left out of
    the mean IoU (DeepGlobe's unknown). Vector styles do not draw them by default."""
    return tuple(
        c.id for c in scheme.classes if c.name.lower() in BACKGROUND_NAMES or c.id in scheme.ignore_in_miou
    )


def vector_qml(scheme: ClassScheme, field: str = "class_id", hidden: tuple[int, ...] | None = None) -> str:
    """A QGIS style (QML) drawing polygons categorized by class with the scheme's colours,
    filled half transparent (:data:`FILL_ALPHA`) with an opaque outline, so the imagery
    under them shows through.

    Background classes (:func:`background_ids`) are listed in the legend but not drawn
    (their box unticked), so they do not hide the imagery under the polygons; tick them in
    QGIS's Layers panel to see them.

    Args:
        scheme: the classes the polygons hold.
        field: the integer attribute holding the class id.
        hidden: ids of the classes not drawn; default: :func:`background_ids`.

    Returns:
        The QML document as a string (stored in the GeoPackage's ``layer_styles`` table by
        :func:`write_gpkg_layer_style`, or saved as ``<layer>.qml``).
    """
    if not field:
        raise InputError("vector_qml needs the name of the class id field, got an empty string")
    root = _qml_root()
    renderer = ET.SubElement(
        root,
        "renderer-v2",
        {"type": "categorizedSymbol", "attr": field, "symbollevels": "0", "enableorderby": "0", "forceraster": "0"},
    )
    categories = ET.SubElement(renderer, "categories")
    symbols = ET.SubElement(renderer, "symbols")
    hidden_ids = set(background_ids(scheme) if hidden is None else hidden)
    for info in scheme.classes:
        render = "false" if info.id in hidden_ids else "true"
        ET.SubElement(
            categories, "category", {"render": render, "symbol": str(info.id), "value": str(info.id), "label": info.name}
        )
        symbol = ET.SubElement(
            symbols,
            "symbol",
            {"type": "fill", "name": str(info.id), "alpha": "1", "clip_to_extent": "1", "force_rhr": "0"},
        )
        layer = ET.SubElement(symbol, "layer", {"class": "SimpleFill", "enabled": "1", "locked": "0", "pass": "0"})
        options = ET.SubElement(layer, "Option", {"type": "Map"})
        red, green, blue = info.color
        # A slightly darker outline of the same hue keeps neighbouring polygons of one
        # class distinguishable without changing the class colour; the fill is half
        # transparent, so the imagery under a polygon shows through (does the roof fit?).
        outline = ",".join(str(int(c * 0.6)) for c in info.color)
        _option(options, "color", f"{red},{green},{blue},{FILL_ALPHA}")
        _option(options, "style", "solid")
        _option(options, "outline_color", f"{outline},255")
        _option(options, "outline_style", "solid")
        _option(options, "outline_width", "0.1")
        _option(options, "outline_width_unit", "MM")
        _option(options, "joinstyle", "miter")
    ET.SubElement(root, "blendMode").text = "0"
    ET.SubElement(root, "featureBlendMode").text = "0"
    ET.SubElement(root, "layerOpacity").text = "1"
    return _to_xml(root)


def scheme_from_tags(tags: Mapping[str, str]) -> ClassScheme | None:
    """The scheme a class raster carries in its metadata (``src.tags()``), if any.

    Args:
        tags: the raster's default-domain metadata, as returned by rasterio's ``tags()``.

    Returns:
        The scheme stored under :data:`SCHEME_TAG`, or None when the raster carries none.

    Raises:
        InputError: the tag is there but does not describe a scheme.
    """
    text = tags.get(SCHEME_TAG)
    if not text:
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"the raster's {SCHEME_TAG} metadata is not valid JSON ({exc}); pass the scheme explicitly") from None
    return ClassScheme.from_dict(data)


def _pam_band(root: ET.Element, band: int) -> ET.Element:
    for element in root.findall("PAMRasterBand"):
        if element.get("band") == str(band):
            return element
    return ET.SubElement(root, "PAMRasterBand", {"band": str(band)})


def _set_metadata_item(root: ET.Element, key: str, value: str) -> None:
    metadata = None
    for element in root.findall("Metadata"):
        if element.get("domain") in (None, ""):
            metadata = element
            break
    if metadata is None:
        metadata = ET.Element("Metadata")
        root.insert(0, metadata)
    for item in metadata.findall("MDI"):
        if item.get("key") == key:
            metadata.remove(item)
    ET.SubElement(metadata, "MDI", {"key": key}).text = value


def raster_pam_xml(scheme: ClassScheme, existing: str | None = None) -> str:
    """GDAL PAM XML (``.aux.xml``) naming the classes of a one-band class raster.

    Band 1 gets category names (one per id; GDAL's ``GetCategoryNames``) and a thematic
    raster attribute table with columns Value, Class, Red, Green, Blue, Alpha; the dataset
    gets the scheme as JSON under :data:`SCHEME_TAG`.

    Args:
        scheme: the classes the raster holds.
        existing: the current content of the ``.aux.xml``, if there is one; its other
            entries (statistics, other metadata) are kept.

    Returns:
        The XML document as a string.
    """
    if existing:
        try:
            root = ET.fromstring(existing)
        except ET.ParseError as exc:
            raise InputError(f"the existing .aux.xml is not valid XML ({exc}); delete it and retry") from None
        if root.tag != "PAMDataset":
            raise InputError(f"the existing .aux.xml holds <{root.tag}>, not <PAMDataset>; delete it and retry")
    else:
        root = ET.Element("PAMDataset")
    _set_metadata_item(root, SCHEME_TAG, json.dumps(scheme.to_dict(), separators=(",", ":")))
    band = _pam_band(root, 1)
    for tag in ("CategoryNames", "GDALRasterAttributeTable"):
        for element in band.findall(tag):
            band.remove(element)
    categories = ET.SubElement(band, "CategoryNames")
    for info in scheme.classes:
        ET.SubElement(categories, "Category").text = info.name
    rat = ET.SubElement(band, "GDALRasterAttributeTable", {"tableType": "thematic"})
    columns = [
        ("Value", _GFT_INTEGER, _GFU_MINMAX),
        ("Class", _GFT_STRING, _GFU_NAME),
        ("Red", _GFT_INTEGER, _GFU_RED),
        ("Green", _GFT_INTEGER, _GFU_GREEN),
        ("Blue", _GFT_INTEGER, _GFU_BLUE),
        ("Alpha", _GFT_INTEGER, _GFU_ALPHA),
    ]
    for index, (name, kind, usage) in enumerate(columns):
        definition = ET.SubElement(rat, "FieldDefn", {"index": str(index)})
        ET.SubElement(definition, "Name").text = name
        ET.SubElement(definition, "Type").text = str(kind)
        ET.SubElement(definition, "Usage").text = str(usage)
    for row_index, info in enumerate(scheme.classes):
        row = ET.SubElement(rat, "Row", {"index": str(row_index)})
        for value in (info.id, info.name, *info.color, 255):
            ET.SubElement(row, "F").text = str(value)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"


def _write_text_atomic(path: Path, text: str) -> None:
    try:
        with atomic_path(path) as tmp:
            tmp.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise OutputError(f"cannot write {str(path)!r}: {exc}; check the folder is writable") from None


def declared_nodata(raster: str | os.PathLike) -> int | None:
    """The nodata value a class raster declares (band 1), or ``None``.

    Raises:
        SceneError: the raster cannot be read.
    """
    import rasterio

    try:
        with rasterio.open(raster) as src:
            value = src.nodata
    except rasterio.errors.RasterioIOError as exc:
        raise SceneError(f"cannot read class raster {str(raster)!r}: {exc}") from None
    if value is None or not math.isfinite(value) or value != int(value):
        return None
    return int(value)


def write_raster_sidecars(
    tif_path: str | os.PathLike, scheme: ClassScheme, nodata: int | None | Literal["declared"] = "declared"
) -> tuple[Path, Path]:
    """Write the QGIS style and GDAL class names beside a class raster.

    Writes ``<stem>.qml`` (QGIS loads it as the raster's default style: see
    :func:`raster_qml`) and ``<file name>.aux.xml`` (GDAL reads it on open: see
    :func:`raster_pam_xml`; entries already there are kept). Both are written atomically.
    Call it after the raster is closed: GDAL may rewrite the ``.aux.xml`` of a dataset
    opened for update.

    Args:
        tif_path: the class raster (it must exist).
        scheme: the classes it holds.
        nodata: its nodata value, drawn transparent; ``"declared"``: the value the raster
            declares (none declared: no value is transparent).

    Returns:
        The paths of the ``.qml`` and ``.aux.xml`` files.

    Raises:
        InputError: the raster does not exist, or its existing ``.aux.xml`` is not PAM XML.
        SceneError: its nodata is asked for and it cannot be read.
        OutputError: a sidecar cannot be written.
    """
    raster = Path(tif_path)
    if not raster.is_file():
        raise InputError(f"class raster {str(raster)!r} does not exist; write it before its style")
    if nodata == "declared":
        nodata = declared_nodata(raster)
    qml_path = raster.with_suffix(".qml")
    aux_path = raster.with_name(raster.name + ".aux.xml")
    existing = aux_path.read_text(encoding="utf-8") if aux_path.is_file() else None
    _write_text_atomic(qml_path, raster_qml(scheme, nodata))
    _write_text_atomic(aux_path, raster_pam_xml(scheme, existing))
    return qml_path, aux_path


def layer_metadata_qmd(title: str, abstract: str, keywords: Sequence[str] = (), history: Sequence[str] = ()) -> str:
    """QGIS layer metadata (a QMD document), as QGIS writes it for ``Save as Default``.

    Args:
        title: the layer's title.
        abstract: what the layer holds.
        keywords: listed under the vocabulary ``glgeo``.
        history: one line each (glgeo puts its provenance items here, ``GLGEO_MODEL:
            deepglobe-landcover``...).
    """
    root = ET.Element("qgis", {"version": _QGIS_VERSION})
    ET.SubElement(root, "identifier")
    ET.SubElement(root, "parentidentifier")
    ET.SubElement(root, "language")
    ET.SubElement(root, "type").text = "dataset"
    ET.SubElement(root, "title").text = title
    ET.SubElement(root, "abstract").text = abstract
    if keywords:
        words = ET.SubElement(root, "keywords", {"vocabulary": "glgeo"})
        for word in keywords:
            ET.SubElement(words, "keyword").text = word
    ET.SubElement(root, "links")
    for line in history:
        ET.SubElement(root, "history").text = line
    return _to_xml(root)


def provenance_metadata(
    scheme: ClassScheme | None, items: Mapping[str, str], title: str, what: str, nodata: int | None = None
) -> str:
    """:func:`layer_metadata_qmd` for a glgeo output: ``what`` it is (a sentence), the
    model and the classes (``scheme``, where known) in the abstract, the scheme's and
    model's names as keywords, and every ``GLGEO_*`` provenance item
    (:mod:`glgeo.provenance`) as a history line."""
    model = items.get("GLGEO_MODEL", "")
    sentences = [what.rstrip(".") + "."]
    if model:
        run = ", ".join(v for v in (items.get("GLGEO_MODE", ""), items.get("GLGEO_PRECISION", "")) if v)
        gsd = items.get("GLGEO_READING_GSD_M", "")
        sentences.append(
            f"Predicted by glgeo {items.get('GLGEO_VERSION', '')} with the model {model}"
            + (f" (GLNet {run})" if run else "")
            + (f" from the scene read at {gsd} m per pixel" if gsd else "")
            + "."
        )
    keywords = [model] if model else []
    if scheme is not None:
        classes = ", ".join(f"{c.id} {c.name}" for c in scheme.classes)
        end = "." if nodata is None else f"; {nodata}: no data."
        sentences.append(f"Classes ({scheme.name}): {classes}{end}")
        keywords = [scheme.name, *keywords, *(c.name for c in scheme.classes)]
    history = [f"{key}: {value}" for key, value in items.items() if key.startswith("GLGEO_") and value]
    return layer_metadata_qmd(title, " ".join(sentences), keywords, history)


def write_raster_metadata(tif_path: str | os.PathLike, qmd: str) -> Path:
    """Write ``<stem>.qmd`` beside a raster (atomically): the layer metadata QGIS loads when
    the raster is added to a project (see :func:`layer_metadata_qmd`).

    Raises:
        OutputError: the file cannot be written.
    """
    path = Path(tif_path).with_suffix(".qmd")
    _write_text_atomic(path, qmd)
    return path


#: ``md_standard_uri`` of QGIS's own layer metadata in a GeoPackage's ``gpkg_metadata``.
QGIS_METADATA_URI = "http://mrcc.com/qgis.dtd"


def write_gpkg_layer_metadata(gpkg_path: str | os.PathLike, layer: str, qmd: str) -> None:
    """Store ``qmd`` as the QGIS layer metadata of ``layer`` in a GeoPackage: a row of
    ``gpkg_metadata`` (standard URI :data:`QGIS_METADATA_URI`) referenced to the layer's
    table, where QGIS reads and saves it (a previous QGIS row for the layer is replaced).
    GDAL's own metadata row (``ogrinfo``) is left as it is.

    Raises:
        InputError: the file is not a GeoPackage or has no layer called ``layer``.
        OutputError: the file cannot be written.
    """
    with _gpkg_transaction(gpkg_path, "metadata") as (path, connection):
        found = _select(connection, path, "SELECT 1 FROM gpkg_contents WHERE table_name = ?", (layer,))
        if found is None:
            raise InputError(f"GeoPackage {str(path)!r} has no layer {layer!r}")
        connection.executescript(_GPKG_METADATA_SQL)
        for extension in ("gpkg_metadata", "gpkg_metadata_reference"):
            connection.execute(
                "INSERT OR IGNORE INTO gpkg_extensions (table_name, column_name, extension_name, definition, scope)"
                " SELECT ?, NULL, 'gpkg_metadata', 'http://www.geopackage.org/spec120/#extension_metadata',"
                " 'read-write' WHERE NOT EXISTS (SELECT 1 FROM gpkg_extensions WHERE table_name = ?"
                " AND extension_name = 'gpkg_metadata')",
                (extension, extension),
            )
        old = [
            row[0]
            for row in connection.execute(
                "SELECT m.id FROM gpkg_metadata m JOIN gpkg_metadata_reference r ON r.md_file_id = m.id"
                " WHERE r.table_name = ? AND r.reference_scope = 'table' AND m.md_standard_uri = ?",
                (layer, QGIS_METADATA_URI),
            )
        ]
        for md_id in old:
            connection.execute("DELETE FROM gpkg_metadata_reference WHERE md_file_id = ?", (md_id,))
            connection.execute("DELETE FROM gpkg_metadata WHERE id = ?", (md_id,))
        cursor = connection.execute(
            "INSERT INTO gpkg_metadata (md_scope, md_standard_uri, mime_type, metadata)"
            " VALUES ('dataset', ?, 'text/xml', ?)",
            (QGIS_METADATA_URI, qmd),
        )
        connection.execute(
            "INSERT INTO gpkg_metadata_reference (reference_scope, table_name, column_name, row_id_value,"
            " timestamp, md_file_id, md_parent_id) VALUES ('table', ?, NULL, NULL,"
            " strftime('%Y-%m-%dT%H:%M:%fZ','now'), ?, NULL)",
            (layer, cursor.lastrowid),
        )


@contextlib.contextmanager
def _gpkg_transaction(gpkg_path: str | os.PathLike, what: str) -> Iterator[tuple[Path, sqlite3.Connection]]:
    """A transaction on an existing GeoPackage, to write a layer's ``what`` (style,
    metadata); SQLite's failures become :class:`OutputError`."""
    path = Path(gpkg_path)
    if not path.is_file():
        raise InputError(f"GeoPackage {str(path)!r} does not exist; write the layer before its {what}")
    try:
        connection = sqlite3.connect(path)
    except sqlite3.Error as exc:
        raise OutputError(f"cannot open {str(path)!r} as a GeoPackage: {exc}") from None
    try:
        with connection:
            yield path, connection
    except sqlite3.Error as exc:
        raise OutputError(f"cannot write the layer {what} into {str(path)!r}: {exc}") from None
    finally:
        connection.close()


def _select(connection: sqlite3.Connection, path: Path, sql: str, args: tuple) -> tuple | None:
    """The first row of a query on a GeoPackage's tables; a file that is not one is an InputError."""
    try:
        return connection.execute(sql, args).fetchone()
    except sqlite3.DatabaseError as exc:
        raise InputError(f"{str(path)!r} is not a GeoPackage ({exc})") from None


# The GeoPackage metadata extension's tables (GeoPackage 1.2, F.8), as GDAL creates them.
_GPKG_METADATA_SQL = """
CREATE TABLE IF NOT EXISTS gpkg_extensions (
    table_name TEXT, column_name TEXT, extension_name TEXT NOT NULL, definition TEXT NOT NULL,
    scope TEXT NOT NULL, CONSTRAINT ge_tce UNIQUE (table_name, column_name, extension_name)
);
CREATE TABLE IF NOT EXISTS gpkg_metadata (
    id INTEGER CONSTRAINT m_pk PRIMARY KEY ASC NOT NULL, md_scope TEXT NOT NULL DEFAULT 'dataset',
    md_standard_uri TEXT NOT NULL, mime_type TEXT NOT NULL DEFAULT 'text/xml', metadata TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS gpkg_metadata_reference (
    reference_scope TEXT NOT NULL, table_name TEXT, column_name TEXT, row_id_value INTEGER,
    timestamp DATETIME NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
    md_file_id INTEGER NOT NULL, md_parent_id INTEGER,
    CONSTRAINT crmr_mfi_fk FOREIGN KEY (md_file_id) REFERENCES gpkg_metadata(id),
    CONSTRAINT crmr_mpi_fk FOREIGN KEY (md_parent_id) REFERENCES gpkg_metadata(id)
);
"""


_LAYER_STYLES_SQL = """
CREATE TABLE IF NOT EXISTS layer_styles (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    f_table_catalog TEXT(256),
    f_table_schema TEXT(256),
    f_table_name TEXT(256),
    f_geometry_column TEXT(256),
    styleName TEXT(30),
    styleQML TEXT,
    styleSLD TEXT,
    useAsDefault BOOLEAN,
    description TEXT,
    owner TEXT(30),
    ui TEXT(30),
    update_time DATETIME DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
)
"""


def write_gpkg_layer_style(
    gpkg_path: str | os.PathLike,
    layer: str,
    qml: str,
    *,
    style_name: str | None = None,
    description: str = "",
) -> None:
    """Store ``qml`` as the default QGIS style of ``layer`` in a GeoPackage.

    Creates the ``layer_styles`` table QGIS uses (registered in ``gpkg_contents`` as an
    attributes table, as QGIS itself does) when missing, and replaces the layer's previous
    default style. QGIS applies it when the layer is opened.

    Args:
        gpkg_path: an existing GeoPackage holding ``layer``.
        layer: the feature table to style.
        qml: the style, e.g. from :func:`vector_qml`.
        style_name: the name QGIS shows for the style; defaults to the layer name.
        description: free text shown in QGIS's style manager.

    Raises:
        InputError: the file is not a GeoPackage or has no layer called ``layer``.
        OutputError: the file cannot be written.
    """
    with _gpkg_transaction(gpkg_path, "style") as (path, connection):
        row = _select(connection, path, "SELECT column_name FROM gpkg_geometry_columns WHERE table_name = ?", (layer,))
        if row is None:
            raise InputError(f"GeoPackage {str(path)!r} has no feature layer {layer!r}")
        geometry_column = row[0]
        connection.execute(_LAYER_STYLES_SQL)
        connection.execute(
            "INSERT OR IGNORE INTO gpkg_contents (table_name, data_type, identifier, description, last_change)"
            " VALUES ('layer_styles', 'attributes', 'layer_styles', 'QGIS layer styles',"
            " strftime('%Y-%m-%dT%H:%M:%fZ','now'))"
        )
        has_ogr_contents = connection.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'gpkg_ogr_contents'"
        ).fetchone()
        if has_ogr_contents:
            connection.execute(
                "INSERT OR IGNORE INTO gpkg_ogr_contents (table_name, feature_count) VALUES ('layer_styles', NULL)"
            )
        connection.execute("UPDATE layer_styles SET useAsDefault = 0 WHERE f_table_name = ?", (layer,))
        connection.execute(
            "INSERT INTO layer_styles (f_table_catalog, f_table_schema, f_table_name, f_geometry_column,"
            " styleName, styleQML, styleSLD, useAsDefault, description, owner, ui)"
            " VALUES ('', '', ?, ?, ?, ?, '', 1, ?, 'glgeo', NULL)",
            (layer, geometry_column, style_name or layer, qml, description),
        )
        if has_ogr_contents:
            # GDAL caches feature counts here; NULL makes it count again.
            connection.execute("UPDATE gpkg_ogr_contents SET feature_count = NULL WHERE table_name = 'layer_styles'")


def read_gpkg_layer_styles(gpkg_path: str | os.PathLike) -> list[dict[str, object]]:
    """The rows of a GeoPackage's ``layer_styles`` table (empty when it has none).

    Each row is a dict with ``f_table_name``, ``f_geometry_column``, ``styleName``,
    ``styleQML`` and ``useAsDefault``.
    """
    connection = sqlite3.connect(Path(gpkg_path))
    try:
        has_table = connection.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'layer_styles'"
        ).fetchone()
        if not has_table:
            return []
        cursor = connection.execute(
            "SELECT f_table_name, f_geometry_column, styleName, styleQML, useAsDefault FROM layer_styles ORDER BY id"
        )
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]
    finally:
        connection.close()
