"""One GeoPackage of every scene's polygons, written at the end of a batch."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Sequence

from ..areas import area_unit
from ..atomic import atomic_path
from ..errors import InputError, OutputError
from ..gpkg import write_polygons
from ..provenance import utc_now
from ..styles import provenance_metadata, write_gpkg_layer_metadata
from .inputs import scene_stem
from .planning import VECTOR_SUFFIX

log = logging.getLogger("glgeo.batch")

_MERGE_CHUNK = 100_000


def merge_vectors(parts: Sequence[tuple[str, Path]], out: str | os.PathLike) -> Path:
    """Merge per-scene GeoPackages into one layer with a ``scene`` column, atomically.

    Polygons keep their attributes (``class_id``, ``class_name``, ``area_m2``); scenes in
    another CRS than the first are reprojected to it. ``area_m2`` holds square metres in
    every row: each scene keeps the areas of its own file, measured before any reprojection
    (on the ground where its CRS's own m² are not the ground's, as in a geographic CRS: see
    :class:`glgeo.areas.PixelAreas`). The layer gets
    the QGIS style of the first part, and QGIS layer metadata naming the model and the
    number of scenes. The file is replaced if it exists: it is derived from the per-scene
    files (:func:`check_merge_target` refuses, beforehand, a file that is no earlier merge).

    Args:
        parts: ``(scene, GeoPackage)`` pairs, in order.
        out: the merged GeoPackage.

    Raises:
        InputError: no parts, a part is not a GeoPackage written by glgeo, several parts
            have no CRS, or parts in different CRSs include one whose areas cannot be
            given in m² (a CRS without a known linear unit).
        OutputError: the merged file cannot be written.
    """
    import pyogrio

    out_path = Path(out)
    if not parts:
        raise InputError("no scene was vectorized, so there is nothing to merge; see the manifest for why")
    if not out_path.parent.is_dir():
        raise OutputError(f"output folder {str(out_path.parent)!r} does not exist; create it first")
    layer = out_path.stem
    infos = []
    for scene, part in parts:
        try:
            source = _feature_layer(part)
            infos.append((source, pyogrio.read_info(part, layer=source)))
        except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError, OSError) as exc:
            raise InputError(
                f"cannot read {str(part)!r} to merge it: {exc}; delete it and run the same command again: that scene is"
                " vectorized again"
            ) from None
    unplaced = [scene for (scene, _), (_, info) in zip(parts, infos) if not info["crs"]]
    if unplaced and len(parts) > 1:
        raise InputError(
            f"{len(unplaced)} of the {len(parts)} scenes to merge have no CRS ({', '.join(map(scene_stem, unplaced[:3]))}"
            f"{', ...' if len(unplaced) > 3 else ''}): their polygons are in pixel coordinates and would be stacked "
            "on one another; merge only georeferenced scenes, or keep the per-scene GeoPackages"
        )
    _check_area_units(parts, [info["crs"] for _, info in infos])
    metadata = merged_provenance([info.get("layer_metadata") or {} for _, info in infos])
    crs = None
    started = time.perf_counter()
    n_features = 0
    with atomic_path(out_path, suffix=VECTOR_SUFFIX) as tmp:
        for (scene, part), (source, info) in zip(parts, infos):
            if crs is None:
                crs = info["crs"]
            offset = 0
            while True:
                frame = pyogrio.read_dataframe(part, layer=source, skip_features=offset, max_features=_MERGE_CHUNK)
                if frame.crs is not None and crs is not None and frame.crs != crs:
                    frame = frame.to_crs(crs)
                frame.insert(0, "scene", scene_stem(scene))
                if len(frame) or not tmp.exists():  # an empty first part still creates the layer
                    write_polygons(frame, tmp, layer, append=tmp.exists(), metadata=metadata, target=out_path)
                n_features += len(frame)
                offset += _MERGE_CHUNK
                if offset >= info["features"]:
                    break
        _copy_style(parts[0][1], tmp, layer)
        what = (f"Polygons of {len(parts)} scenes (column scene), merged {utc_now()}; each scene's polygons end at its "
                "edges, so a region that spans two scenes is a polygon in each")
        write_gpkg_layer_metadata(tmp, layer, provenance_metadata(None, metadata, layer, what))
    log.info("merged %d polygons of %d scenes into %s in %.1f s", n_features, len(parts), out_path, time.perf_counter() - started)
    return out_path


def merged_provenance(items: Sequence[dict[str, str]]) -> dict[str, str]:
    """The provenance of a merged layer from its parts' (``GLGEO_*`` layer metadata): the
    items every part has alike (the model, its settings: one run), the reading resolution
    as a range where the scenes' differ (``0.6 to 0.666``), and how many scenes
    (``GLGEO_MERGED_SCENES``). What is each scene's own (its file, when it was made) is
    left out: the layer's ``scene`` column says which scene a polygon comes from, and
    each scene's GeoPackage keeps its own. GDAL lists a part's QGIS metadata document
    too, as ``GPKG_METADATA_ITEM_n``: not copied."""
    own = [{k: v for k, v in part.items() if k.startswith("GLGEO_") and k != "GLGEO_SOURCE_RASTER"} for part in items]
    merged = {k: v for k, v in own[0].items() if all(part.get(k) == v for part in own[1:])} if own else {}
    gsds = {part["GLGEO_READING_GSD_M"] for part in own if part.get("GLGEO_READING_GSD_M")}
    if len(gsds) > 1:
        try:
            values = sorted(gsds, key=float)
            merged["GLGEO_READING_GSD_M"] = f"{values[0]} to {values[-1]}"
        except ValueError:  # not numbers: left out
            pass
    merged["GLGEO_MERGED_SCENES"] = str(len(items))
    return merged


def _check_area_units(parts: Sequence[tuple[str, Path]], crss: Sequence[str | None]) -> None:
    """Refuse to merge scenes in several CRSs when some cannot have their areas in m².

    Raises:
        InputError: the merged ``area_m2`` column would mix units.
    """
    from affine import Affine
    from rasterio.crs import CRS
    from rasterio.errors import CRSError

    unconvertible: list[tuple[str, str]] = []
    for (scene, _), crs in zip(parts, crss):
        if not crs:
            unconvertible.append((scene, "no CRS"))
            continue
        try:
            unit, _ = area_unit(CRS.from_user_input(crs), Affine.identity())
        except CRSError:
            unit = "map unit2"
        if unit not in ("m2", "deg2"):  # a geographic scene's file holds m² measured on the ground
            unconvertible.append((scene, crs))
    if unconvertible and len(set(crss)) > 1:
        names = ", ".join(f"{scene_stem(scene)} ({crs})" for scene, crs in unconvertible[:3])
        raise InputError(
            f"cannot merge the polygons' areas in one unit: {len(unconvertible)} of the {len(parts)} scenes are in a CRS"
            f" without a known linear unit ({names}{', ...' if len(unconvertible) > 3 else ''}), so their area_m2 is"
            " not in m²; reproject those scenes to a projected CRS in metres, or keep the per-scene GeoPackages"
        )


def check_merge_target(path: Path, overwrite: bool) -> None:
    """Refuse, before any scene, to replace a GeoPackage that is no earlier merge of
    glgeo's (its layer named after the file, with the ``scene`` and ``class_id`` columns a
    merge writes) without ``overwrite``: a rerun replaces its own merge, not the user's file.

    Raises:
        OutputError: ``path`` exists, is no merge and ``overwrite`` is false.
    """
    import pyogrio

    if overwrite or not path.exists():
        return
    try:
        fields = set(pyogrio.read_info(path, layer=path.stem)["fields"])
    except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError, OSError):
        fields = set()
    if not {"scene", "class_id"} <= fields:
        raise OutputError(
            f"vector_merge={str(path)!r} already exists and is no merge glgeo wrote; pass overwrite=True to replace it,"
            " or give the merged GeoPackage another name"
        )


def _feature_layer(path: Path) -> str:
    """The polygon layer of a GeoPackage written by :func:`glgeo.vectorize`."""
    import pyogrio

    layers = [name for name, geometry in pyogrio.list_layers(path) if geometry and name != "layer_styles"]
    if not layers:
        raise InputError(f"{str(path)!r} holds no polygon layer; remove it so the scene is vectorized again")
    return str(layers[0])


def _copy_style(source: Path, target: Path, layer: str) -> None:
    """Give ``layer`` in ``target`` the default QGIS style of ``source``'s layer."""
    import sqlite3

    from ..styles import write_gpkg_layer_style

    try:
        with sqlite3.connect(f"file:{source}?mode=ro", uri=True) as db:
            row = db.execute("SELECT styleQML FROM layer_styles WHERE useAsDefault ORDER BY id DESC LIMIT 1").fetchone()
    except sqlite3.Error:
        row = None
    if row and row[0]:
        write_gpkg_layer_style(target, layer, row[0], description="glgeo classes (merged scenes)")
    else:
        log.warning("%s has no QGIS style to copy; the merged layer opens unstyled", source)
