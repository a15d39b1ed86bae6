"""Open glgeo's outputs in a real QGIS and report what QGIS sees, as JSON on stdout.

Run with the system python that has Debian's ``python3-qgis``, headless::

    QT_QPA_PLATFORM=offscreen /usr/bin/python3 tests/qgis_check.py \
        --raster classes.tif --gpkg classes.gpkg --layer classes --png render.png \
        --probe 500010.25 4399990.75

It loads the class raster (QGIS applies ``<name>.qml`` beside it) and the GeoPackage layer
(QGIS applies the default style from ``layer_styles``), reports validity, CRS, extent,
renderers and layer metadata (``<name>.qmd``, ``gpkg_metadata``), renders both side by side (raster left, polygons right; the raster alone without ``--gpkg``) into ``--png``, and
reports the rendered colour of each ``--probe`` map point in each half. ``tests/test_qgis.py``
runs it and checks the report; it needs nothing from glgeo's own environment.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from qgis.core import (  # noqa: E402
    Qgis,
    QgsApplication,
    QgsMapRendererCustomPainterJob,
    QgsMapSettings,
    QgsPointXY,
    QgsRasterLayer,
    QgsRectangle,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import QSize  # noqa: E402
from qgis.PyQt.QtGui import QColor, QImage, QPainter  # noqa: E402


def _extent(rect: QgsRectangle) -> list[float]:
    return [rect.xMinimum(), rect.yMinimum(), rect.xMaximum(), rect.yMaximum()]


def _rgb(color: QColor) -> list[int]:
    return [color.red(), color.green(), color.blue(), color.alpha()]


def _render(layer, extent: QgsRectangle, size: QSize) -> QImage:
    settings = QgsMapSettings()
    settings.setLayers([layer])
    settings.setDestinationCrs(layer.crs())
    settings.setExtent(extent)
    settings.setOutputSize(size)
    settings.setBackgroundColor(QColor(255, 255, 255))
    image = QImage(size, QImage.Format_ARGB32)
    image.fill(QColor(255, 255, 255))
    painter = QPainter(image)
    job = QgsMapRendererCustomPainterJob(settings, painter)
    job.start()
    job.waitForFinished()
    painter.end()
    return image, settings


def _layer_report(layer) -> dict:
    """What every layer's report holds: validity, CRS, extent, renderer type and the layer
    metadata QGIS shows (loaded as QGIS does for a layer added to a project)."""
    renderer = layer.renderer()
    layer.loadDefaultMetadata()  # QGIS desktop calls it on every raster and vector layer it adds
    metadata = layer.metadata()
    return {
        "valid": layer.isValid(),
        "crs": layer.crs().authid(),
        "extent": _extent(layer.extent()),
        "renderer": renderer.type() if renderer else None,
        "metadata": {
            "title": metadata.title(),
            "abstract": metadata.abstract(),
            "keywords": metadata.keywords(),
            "history": metadata.history(),
        },
    }


def raster_report(layer: QgsRasterLayer) -> dict:
    renderer = layer.renderer()
    report = {**_layer_report(layer), "width": layer.width(), "height": layer.height(), "classes": []}
    if renderer is not None and renderer.type() == "paletted":
        report["classes"] = [
            {"value": int(c.value), "label": c.label, "color": _rgb(c.color)} for c in renderer.classes()
        ]
    report["band_names"] = [layer.bandName(b) for b in range(1, layer.bandCount() + 1)]
    if renderer is not None and renderer.type() == "singlebandpseudocolor":
        report["band"] = renderer.band()
        report["alpha_band"] = renderer.alphaBand()
        report["ramp"] = [
            {"value": item.value, "label": item.label, "color": _rgb(item.color)}
            for item in renderer.shader().rasterShaderFunction().colorRampItemList()
        ]
    return report


def vector_report(layer: QgsVectorLayer) -> dict:
    renderer = layer.renderer()
    report = {
        **_layer_report(layer),
        "feature_count": layer.featureCount(),
        "fields": [f.name() for f in layer.fields()],
        "attribute": None,
        "categories": [],
    }
    if renderer is not None and renderer.type() == "categorizedSymbol":
        report["attribute"] = renderer.classAttribute()
        report["categories"] = [
            {"value": str(c.value()), "label": c.label(), "color": _rgb(c.symbol().color()), "render": c.renderState()}
            for c in renderer.categories()
        ]
    return report


def _probes(points, settings: QgsMapSettings, size: QSize, left: QImage, right: QImage | None) -> list[dict]:
    """The rendered colour at each map point, in the raster's render and the polygons'."""
    probes = []
    transform = settings.mapToPixel()
    for x, y in points:
        pixel = transform.transform(QgsPointXY(x, y))
        col, row = int(pixel.x()), int(pixel.y())
        inside = 0 <= col < size.width() and 0 <= row < size.height()
        probes.append(
            {
                "point": [x, y],
                "pixel": [col, row],
                "raster": _rgb(left.pixelColor(col, row)) if inside else None,
                "vector": _rgb(right.pixelColor(col, row)) if inside and right is not None else None,
            }
        )
    return probes


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raster", required=True)
    parser.add_argument("--gpkg", default=None, help="omit to open the raster alone")
    parser.add_argument("--layer", default=None)
    parser.add_argument("--png", default=None, help="where to save the render (with --gpkg: side by side)")
    parser.add_argument("--probe", nargs=2, type=float, action="append", default=[], metavar=("X", "Y"))
    parser.add_argument("--size", type=int, default=400, help="pixels per side of each half")
    args = parser.parse_args(argv)

    QgsApplication.setPrefixPath("/usr", True)
    app = QgsApplication([], False)
    app.initQgis()
    raster = vector = None
    try:
        raster = QgsRasterLayer(args.raster, "classes", "gdal")
        report = {"qgis_version": Qgis.version(), "raster": raster_report(raster), "vector": None}
        if args.png is None:
            json.dump(report, sys.stdout)
            sys.stdout.flush()
            return 0
        extent = raster.extent()
        aspect = extent.height() / extent.width() if extent.width() else 1.0
        size = QSize(args.size, max(1, round(args.size * aspect)))
        left, settings = _render(raster, extent, size)
        if args.gpkg is None:  # the raster alone
            report["png_saved"] = bool(left.save(args.png, "PNG"))
            report["probes"] = _probes(args.probe, settings, size, left, None)
            json.dump(report, sys.stdout)
            sys.stdout.flush()
            return 0
        vector = QgsVectorLayer(f"{args.gpkg}|layername={args.layer}", args.layer, "ogr")
        report["vector"] = vector_report(vector)
        right, _ = _render(vector, extent, size)
        combined = QImage(QSize(size.width() * 2 + 10, size.height()), QImage.Format_ARGB32)
        combined.fill(QColor(128, 128, 128))
        painter = QPainter(combined)
        painter.drawImage(0, 0, left)
        painter.drawImage(size.width() + 10, 0, right)
        painter.end()
        report["png_saved"] = bool(combined.save(args.png, "PNG"))

        report["probes"] = _probes(args.probe, settings, size, left, right)
        json.dump(report, sys.stdout)
        sys.stdout.flush()
    finally:
        # Layers must go before the application, or exitQgis() crashes.
        raster = vector = None
        app.exitQgis()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
