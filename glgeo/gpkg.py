"""Writing polygon layers to GeoPackages: the one pyogrio call glgeo makes.

``glgeo vectorize`` (in batches of polygons) and a batch's merged GeoPackage (in chunks
of scenes' polygons) both write through :func:`write_polygons`, so every GeoPackage glgeo
writes has the same layout: GeoPackage 1.2 (read without warnings by the GDAL of older
QGIS releases), single polygons (no multi-polygons), and glgeo's provenance as layer
metadata (see :mod:`glgeo.provenance`).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Mapping

from .atomic import disk_full_error
from .errors import OutputError


def write_polygons(
    frame: Any,
    path: str | Path,
    layer: str,
    *,
    append: bool,
    metadata: Mapping[str, str] | None = None,
    target: str | Path | None = None,
) -> None:
    """Write (or append) a GeoDataFrame of polygons to a GeoPackage layer.

    Args:
        frame: the polygons and their attributes.
        path: the GeoPackage (usually a temporary file renamed when complete).
        layer: the layer name.
        append: add to an existing layer (else create the file and the layer).
        metadata: layer metadata items, written when the layer is created.
        target: the file named in error messages (default ``path``).

    Raises:
        OutputError: the file cannot be written.
    """
    import pyogrio

    options: dict[str, Any] = {}
    if not append:
        options["dataset_options"] = {"VERSION": "1.2"}
        if metadata:
            options["layer_metadata"] = dict(metadata)
    try:
        with warnings.catch_warnings():
            # Polygons of a raster without CRS stay in its pixel coordinates; the caller
            # says so in its own words.
            warnings.filterwarnings("ignore", message="'crs' was not provided", category=UserWarning)
            pyogrio.write_dataframe(
                frame,
                path,
                layer=layer,
                driver="GPKG",
                append=append,
                geometry_type="Polygon",
                promote_to_multi=False,
                **options,
            )
    except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError, OSError) as exc:
        full = disk_full_error(exc, target or path)  # SQLite's words for it vary with what it was doing
        if full is not None:
            raise full from None
        raise OutputError(f"cannot write the GeoPackage {str(target or path)!r}: {exc}") from None
