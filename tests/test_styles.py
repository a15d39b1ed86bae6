"""Tests for glgeo.styles: QML documents, raster sidecars read back by GDAL, layer_styles."""

from __future__ import annotations

import json
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pyogrio
import pytest
import rasterio
import shapely
import geopandas as gpd

from glgeo.errors import InputError
from glgeo.schemes import DEEPGLOBE, INRIA, NODATA_ID
from glgeo.styles import (
    SCHEME_TAG,
    provenance_metadata,
    raster_pam_xml,
    raster_qml,
    read_gpkg_layer_styles,
    scheme_from_tags,
    vector_qml,
    write_gpkg_layer_metadata,
    write_gpkg_layer_style,
    write_raster_metadata,
    write_raster_sidecars,
)

from fixtures.rasters import write_geotiff


def parse_qml(text: str) -> ET.Element:
    assert text.startswith("<!DOCTYPE qgis")
    return ET.fromstring(text.split("\n", 1)[1])


@pytest.fixture
def class_tif(tmp_path: Path) -> Path:
    data = np.arange(7, dtype=np.uint8).repeat(4).reshape(4, 7)
    return write_geotiff(tmp_path / "classes.tif", data, nodata=NODATA_ID, crs="EPSG:32618", origin=(500000, 4400000), res=1)


def _renderer(qml: str, path: str, kind: str):
    """The renderer element at ``path`` of a QML style, checked to be of type ``kind``."""
    renderer = parse_qml(qml).find(path)
    assert renderer is not None and renderer.get("type") == kind
    return renderer


@pytest.mark.parametrize("scheme", [DEEPGLOBE, INRIA])
def test_raster_qml_is_a_paletted_renderer_named_by_class(scheme):
    renderer = _renderer(raster_qml(scheme), "pipe/rasterrenderer", "paletted")
    assert renderer.get("band") == "1"
    entries = renderer.findall("colorPalette/paletteEntry")
    assert [int(e.get("value")) for e in entries] == [c.id for c in scheme.classes]
    assert [e.get("label") for e in entries] == scheme.names
    assert [e.get("color") for e in entries] == [c.hex_color for c in scheme.classes]
    transparent = renderer.find("rasterTransparency/singleValuePixelList/pixelListEntry")
    assert (transparent.get("min"), transparent.get("max"), transparent.get("percentTransparent")) == ("255", "255", "100")


@pytest.mark.parametrize("scheme", [DEEPGLOBE, INRIA])
def test_vector_qml_is_categorized_by_class_with_scheme_colours(scheme):
    renderer = _renderer(vector_qml(scheme), "renderer-v2", "categorizedSymbol")
    assert renderer.get("attr") == "class_id"
    categories = renderer.findall("categories/category")
    assert [(c.get("value"), c.get("label")) for c in categories] == [(str(c.id), c.name) for c in scheme.classes]
    for category, info in zip(categories, scheme.classes):
        symbol = renderer.find(f"symbols/symbol[@name='{category.get('symbol')}']")
        options = {o.get("name"): o.get("value") for o in symbol.findall("layer/Option/Option")}
        assert options["color"] == "{},{},{},128".format(*info.color)  # half transparent: the imagery shows
        assert options["outline_color"].endswith(",255")
        assert options["style"] == "solid"
    assert 'attr="cls"' in vector_qml(scheme, field="cls")
    with pytest.raises(InputError):
        vector_qml(scheme, field="")


def test_sidecars_are_read_back_by_rasterio(class_tif):
    qml, aux = write_raster_sidecars(class_tif, DEEPGLOBE)
    assert qml == class_tif.with_suffix(".qml") and aux.name == "classes.tif.aux.xml"
    assert qml.read_text() == raster_qml(DEEPGLOBE)
    with rasterio.open(class_tif) as src:
        tags = src.tags()
    assert scheme_from_tags(tags) == DEEPGLOBE
    assert not list(class_tif.parent.glob(".*part*")), "temporary files left behind"


def test_the_style_makes_the_rasters_own_nodata_transparent(tmp_path):
    """A 3-bit class raster's nodata is 7, not 255; a raster that declares none has none."""
    data = np.arange(8, dtype=np.uint8).repeat(4).reshape(4, 8)
    packed = write_geotiff(tmp_path / "packed.tif", data, nodata=7, crs="EPSG:32618", nbits=3)
    qml, _ = write_raster_sidecars(packed, DEEPGLOBE)
    entries = parse_qml(qml.read_text()).findall(".//rasterTransparency/singleValuePixelList/pixelListEntry")
    assert [(e.get("min"), e.get("max")) for e in entries] == [("7", "7")]
    assert qml.read_text() == raster_qml(DEEPGLOBE, nodata=7)
    bare = write_geotiff(tmp_path / "none.tif", data, crs="EPSG:32618")
    qml, _ = write_raster_sidecars(bare, DEEPGLOBE)
    assert parse_qml(qml.read_text()).findall(".//pixelListEntry") == []
    qml, _ = write_raster_sidecars(bare, DEEPGLOBE, nodata=3)  # told: the raster is not read
    assert [e.get("min") for e in parse_qml(qml.read_text()).findall(".//pixelListEntry")] == ["3"]


def test_sidecars_keep_what_the_aux_xml_already_holds(class_tif):
    aux = class_tif.with_name("classes.tif.aux.xml")
    aux.write_text('<PAMDataset><Metadata><MDI key="SOURCE">glnet run 7</MDI></Metadata>'
                   '<PAMRasterBand band="1"><Description>classes</Description></PAMRasterBand></PAMDataset>')
    write_raster_sidecars(class_tif, INRIA)
    write_raster_sidecars(class_tif, DEEPGLOBE)  # twice: replaces, never duplicates
    with rasterio.open(class_tif) as src:
        assert src.tags()["SOURCE"] == "glnet run 7"
        assert scheme_from_tags(src.tags()) == DEEPGLOBE
        assert src.descriptions == ("classes",)
    root = ET.parse(aux).getroot()
    assert len(root.findall("PAMRasterBand/CategoryNames")) == 1
    assert len(root.findall("PAMRasterBand/GDALRasterAttributeTable")) == 1


@pytest.mark.skipif(shutil.which("gdalinfo") is None, reason="gdalinfo (GDAL command line tools) is not installed")
def test_gdal_reads_category_names_and_attribute_table(class_tif):
    write_raster_sidecars(class_tif, DEEPGLOBE)
    info = json.loads(subprocess.run(["gdalinfo", "-json", str(class_tif)], check=True, capture_output=True,
                                     text=True).stdout)
    assert info["bands"][0]["categories"] == DEEPGLOBE.names
    rat = info["rat"]
    assert rat["tableType"] == "thematic"
    assert [f["name"] for f in rat["fieldDefn"]] == ["Value", "Class", "Red", "Green", "Blue", "Alpha"]
    assert [row["f"][1] for row in rat["row"]] == DEEPGLOBE.names
    assert [row["f"][2:5] for row in rat["row"]] == [list(c.color) for c in DEEPGLOBE.classes]


def test_pam_xml_rejects_foreign_files():
    with pytest.raises(InputError, match="not valid XML"):
        raster_pam_xml(DEEPGLOBE, "<PAMDataset>")
    with pytest.raises(InputError, match="PAMDataset"):
        raster_pam_xml(DEEPGLOBE, "<VRTDataset/>")


def test_sidecars_need_the_raster(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        write_raster_sidecars(tmp_path / "nothing.tif", DEEPGLOBE)


def test_scheme_from_tags():
    assert scheme_from_tags({}) is None
    assert scheme_from_tags({SCHEME_TAG: json.dumps(INRIA.to_dict())}) == INRIA
    with pytest.raises(InputError, match="not valid JSON"):
        scheme_from_tags({SCHEME_TAG: "{deepglobe"})


@pytest.fixture
def gpkg(tmp_path: Path) -> Path:
    path = tmp_path / "polys.gpkg"
    frame = gpd.GeoDataFrame({"class_id": [0, 1]}, geometry=[shapely.box(0, 0, 1, 1), shapely.box(1, 0, 2, 1)],
                             crs="EPSG:32618")
    pyogrio.write_dataframe(frame, path, layer="polys", driver="GPKG")
    pyogrio.write_dataframe(frame, path, layer="other", driver="GPKG", append=False)
    return path


def test_layer_style_is_the_single_default_and_gdal_still_reads_the_file(gpkg):
    write_gpkg_layer_style(gpkg, "polys", vector_qml(INRIA), style_name="first")
    write_gpkg_layer_style(gpkg, "polys", vector_qml(DEEPGLOBE))
    write_gpkg_layer_style(gpkg, "other", vector_qml(INRIA))
    rows = read_gpkg_layer_styles(gpkg)
    assert [(r["f_table_name"], r["styleName"], r["useAsDefault"]) for r in rows] == [
        ("polys", "first", 0), ("polys", "polys", 1), ("other", "other", 1)]
    assert rows[1]["styleQML"] == vector_qml(DEEPGLOBE)
    assert rows[1]["f_geometry_column"] == "geom"
    layers = dict(pyogrio.list_layers(gpkg))
    assert layers == {"polys": "Polygon", "other": "Polygon", "layer_styles": None}
    styles = pyogrio.read_dataframe(gpkg, layer="layer_styles")
    assert len(styles) == 3
    assert len(pyogrio.read_dataframe(gpkg, layer="polys")) == 2


def test_layer_style_errors(gpkg, tmp_path):
    with pytest.raises(InputError, match="no feature layer 'missing'"):
        write_gpkg_layer_style(gpkg, "missing", vector_qml(INRIA))
    not_gpkg = tmp_path / "x.gpkg"
    not_gpkg.write_text("hello")
    with pytest.raises(InputError, match="is not a GeoPackage"):
        write_gpkg_layer_style(not_gpkg, "polys", vector_qml(INRIA))
    with pytest.raises(InputError, match="does not exist"):
        write_gpkg_layer_style(tmp_path / "none.gpkg", "polys", vector_qml(INRIA))
    assert read_gpkg_layer_styles(gpkg) == []


def test_vector_style_leaves_background_classes_undrawn():
    """Inria's background and DeepGlobe's unknown would cover the imagery: unticked by default."""
    from glgeo.styles import background_ids

    for scheme, hidden in ((INRIA, ["background"]), (DEEPGLOBE, ["unknown"])):
        categories = parse_qml(vector_qml(scheme)).findall("renderer-v2/categories/category")
        assert [c.get("label") for c in categories if c.get("render") == "false"] == hidden
        assert [scheme.classes[i].name for i in background_ids(scheme)] == hidden
    everything = parse_qml(vector_qml(INRIA, hidden=())).findall("renderer-v2/categories/category")
    assert all(c.get("render") == "true" for c in everything)


# ------------------------------------------------------------------ QGIS layer metadata

ITEMS = {"GLGEO_MODEL": "deepglobe-landcover", "GLGEO_VERSION": "0.1.0", "GLGEO_MODE": "g2l",
         "GLGEO_PRECISION": "fp32", "GLGEO_READING_GSD_M": "2", "GLGEO_BLEND": "", "OTHER": "x"}


def test_provenance_metadata_names_the_model_the_classes_and_every_item():
    root = parse_qml(provenance_metadata(DEEPGLOBE, ITEMS, "landcover", "The class of each pixel of s.tif", 7))
    assert root.findtext("title") == "landcover" and root.findtext("type") == "dataset"
    assert root.findtext("abstract") == (
        "The class of each pixel of s.tif. Predicted by glgeo 0.1.0 with the model deepglobe-landcover (GLNet g2l,"
        " fp32) from the scene read at 2 m per pixel. Classes (deepglobe): 0 unknown, 1 urban, 2 agriculture,"
        " 3 rangeland, 4 forest, 5 water, 6 barren; 7: no data."
    )
    assert root.find("keywords").get("vocabulary") == "glgeo"
    assert [k.text for k in root.findall("keywords/keyword")] == ["deepglobe", "deepglobe-landcover", *DEEPGLOBE.names]
    # the GLGEO_ items that have a value, in their order; nothing else
    assert [h.text for h in root.findall("history")] == [
        "GLGEO_MODEL: deepglobe-landcover", "GLGEO_VERSION: 0.1.0", "GLGEO_MODE: g2l", "GLGEO_PRECISION: fp32",
        "GLGEO_READING_GSD_M: 2"]
    # no model, no scheme (a merge of other files): what it is, and the items
    bare = parse_qml(provenance_metadata(None, {}, "all", "Polygons of 2 scenes."))
    assert bare.findtext("abstract") == "Polygons of 2 scenes." and bare.find("keywords") is None
    assert bare.findall("history") == []


def _qgis_rows(gpkg: Path) -> list[tuple[str, str]]:
    import sqlite3

    with sqlite3.connect(gpkg) as db:
        return db.execute(
            "SELECT r.table_name, m.metadata FROM gpkg_metadata m JOIN gpkg_metadata_reference r ON r.md_file_id = m.id"
            " WHERE m.md_standard_uri = 'http://mrcc.com/qgis.dtd' ORDER BY m.id"
        ).fetchall()


def test_gpkg_layer_metadata_is_one_row_per_layer_beside_gdals(gpkg):
    frame = gpd.GeoDataFrame({"class_id": [1]}, geometry=[shapely.box(0, 0, 1, 1)], crs="EPSG:32618")
    pyogrio.write_dataframe(frame, gpkg, layer="items", driver="GPKG", layer_metadata={"GLGEO_MODEL": "m"})
    first = provenance_metadata(INRIA, ITEMS, "polys", "Polygons of a.tif")
    second = provenance_metadata(INRIA, ITEMS, "polys", "Polygons of b.tif")
    write_gpkg_layer_metadata(gpkg, "polys", first)
    write_gpkg_layer_metadata(gpkg, "items", first)
    write_gpkg_layer_metadata(gpkg, "polys", second)  # replaces the layer's row
    assert _qgis_rows(gpkg) == [("items", first), ("polys", second)]
    # GDAL still opens every layer and keeps its own metadata items; it lists QGIS's document too
    info = pyogrio.read_info(gpkg, layer="items")
    assert info["layer_metadata"]["GLGEO_MODEL"] == "m" and info["features"] == 1
    assert len(pyogrio.read_dataframe(gpkg, layer="polys")) == 2
    with pytest.raises(InputError, match="has no layer 'missing'"):
        write_gpkg_layer_metadata(gpkg, "missing", first)
    with pytest.raises(InputError, match="does not exist"):
        write_gpkg_layer_metadata(gpkg.with_name("none.gpkg"), "polys", first)


def test_raster_metadata_is_a_qmd_beside_the_raster(class_tif):
    path = write_raster_metadata(class_tif, provenance_metadata(DEEPGLOBE, ITEMS, "classes", "Classes"))
    assert path == class_tif.with_suffix(".qmd")
    assert parse_qml(path.read_text(encoding="utf-8")).findtext("title") == "classes"
