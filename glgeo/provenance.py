"""Where an output came from: the model, its file's hash, and how the scene was read.

Every class raster and GeoPackage glgeo writes carries a :class:`Provenance`, so that a
file found on a share months later still says which model made it and how:

* GeoTIFFs (and PNG / Erdas Imagine outputs, in their ``.aux.xml``) hold it as metadata
  items of the default domain, named ``GLGEO_*`` (``gdalinfo``, QGIS's layer properties >
  Information, ``rasterio``'s ``src.tags()``), plus GDAL's standard ``TIFFTAG_SOFTWARE``
  and ``TIFFTAG_DATETIME``;
* GeoPackages hold the same items as layer metadata (``gpkg_metadata``, which
  ``ogrinfo`` and ``pyogrio.read_info`` show), copied from the class raster they were
  made from, with the raster's file name and the date of the vectorization.

Example:
    >>> import rasterio
    >>> from glgeo.provenance import Provenance
    >>> with rasterio.open("landcover.tif") as src:  # doctest: +SKIP
    ...     Provenance.from_tags(src.tags()).model_sha256
    '3f5a...'
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

#: Prefix of glgeo's metadata items.
PREFIX = "GLGEO_"

#: Field -> metadata item.
_ITEMS = {
    "model": "GLGEO_MODEL",
    "model_sha256": "GLGEO_MODEL_SHA256",
    "glgeo_version": "GLGEO_VERSION",
    "mode": "GLGEO_MODE",
    "precision": "GLGEO_PRECISION",
    "scale": "GLGEO_READING_SCALE",
    "gsd_m": "GLGEO_READING_GSD_M",
    "blend": "GLGEO_BLEND",
    "nodata_fill": "GLGEO_NODATA_FILL",
    "context": "GLGEO_CONTEXT",
    "options": "GLGEO_OPTIONS",
    "created": "GLGEO_CREATED_UTC",
    "scene": "GLGEO_SCENE",
    "stretch": "GLGEO_STRETCH",
}


@dataclass(frozen=True)
class Provenance:
    """How an output was made.

    Attributes:
        model: the model's zoo name, or its checkpoint file's name.
        model_sha256: SHA-256 of the checkpoint file (empty for a model never saved).
        glgeo_version: the glgeo that wrote the output.
        mode: the GLNet mode run (``global``, ``g2l``...).
        precision: the arithmetic the network ran in (``fp32``, ``bf16``, ``fp16``).
        scale: the fraction of its resolution the scene was read at (1: full), or
            ``(rows, cols)`` where each axis was read at its own so that the model saw
            square pixels on the ground (``GLGEO_READING_SCALE`` ``rows,cols``).
        gsd_m: metres per pixel of the image the model saw (the scene's ground sample
            distance divided by ``scale``, by the geometric mean of a pair); ``None`` for
            scenes without georeferencing.
        blend: how overlapping patches' logits are combined (see :mod:`glgeo.blend`).
        context: how each context window's global view and patch contexts were made and
            where the grids start (:func:`context_rule`: ``global view fixed, margin 32 px,
            context crop exact, grid anchor world``).
        nodata_fill: what the network saw where the scene has no data (``mirror``, ``mean`` or ``zero``,
            see :class:`glgeo.inference.InferenceSettings`).
        options: the options asked for that can change the map, as given (:func:`options_rule`:
            ``defaults``, or ``scale=0.5, blend=sum``); a batch rerun keeps an output as
            finished only when they are its own. Empty in outputs glgeo wrote before 6
            December 2026.
        created: when the output was written, UTC, ISO 8601 (``2026-12-04T15:52:16Z``).
        scene: the file it was made from (:func:`scene_stamp`: its path, size and time
            stamp, as JSON), so that a batch rerun tells it from another file of the same
            name; empty in outputs glgeo wrote before 7 December 2026.
        stretch: how a 16-bit or float scene's values were mapped onto the model's input
            (:func:`glgeo.io.choose_stretch`: ``uint16 stretched per band from percentiles
            1-99: ...``; ``checkpoint scaling`` for bytes); empty in outputs glgeo wrote
            before 8 December 2026 and where every block of a split scene was kept.
    """

    model: str
    model_sha256: str
    glgeo_version: str
    mode: str
    precision: str
    scale: float | tuple[float, float]
    gsd_m: float | None
    blend: str
    created: str
    nodata_fill: str = "mean"
    context: str = ""
    options: str = ""
    scene: str = ""
    stretch: str = ""

    def tags(self) -> dict[str, str]:
        """The metadata items (``GLGEO_*``, ``TIFFTAG_SOFTWARE``, ``TIFFTAG_DATETIME``)."""
        items = {
            name: "" if getattr(self, field) is None else _text(getattr(self, field)) for field, name in _ITEMS.items()
        }
        created = _parse_utc(self.created)
        items["TIFFTAG_SOFTWARE"] = f"glgeo {self.glgeo_version}"
        if created is not None:
            items["TIFFTAG_DATETIME"] = created.strftime("%Y:%m:%d %H:%M:%S")
        return items

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict of the fields."""
        return asdict(self)

    @classmethod
    def from_tags(cls, tags: Mapping[str, str]) -> "Provenance | None":
        """The provenance a raster's metadata holds, or ``None`` when it holds none."""
        if _ITEMS["model"] not in tags:
            return None
        values: dict[str, Any] = {field: tags.get(name, "") for field, name in _ITEMS.items()}
        try:
            parts = tuple(float(v) for v in (values["scale"] or "1").split(","))
            values["scale"] = parts[0] if len(parts) == 1 else (parts[0], parts[1]) if len(parts) == 2 else 1.0
        except ValueError:
            values["scale"] = 1.0
        try:
            values["gsd_m"] = float(values["gsd_m"]) if values["gsd_m"] else None
        except ValueError:
            values["gsd_m"] = None
        return cls(**values)


def glgeo_items(tags: Mapping[str, str]) -> dict[str, str]:
    """The ``GLGEO_*`` provenance items of a metadata mapping (the scheme left out)."""
    names = set(_ITEMS.values())
    return {k: v for k, v in tags.items() if k in names}


def utc_now() -> str:
    """The current UTC time, ISO 8601 to the second (``2026-12-04T15:52:16Z``)."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_utc(text: str) -> datetime.datetime | None:
    try:
        return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ")
    except (TypeError, ValueError):
        return None


def _text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, tuple):
        return ",".join(_text(v) for v in value)
    return str(value)


_HASHES: dict[tuple[str, int, int], str] = {}
_HASH_LOCK = threading.Lock()


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file, hex; remembered per (path, modification time, size), so a batch
    hashes its model once per process."""
    target = Path(path)
    stat = target.stat()
    key = (str(target.resolve()), stat.st_mtime_ns, stat.st_size)
    with _HASH_LOCK:
        known = _HASHES.get(key)
    if known is not None:
        return known
    digest = hashlib.sha256()
    with open(target, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    value = digest.hexdigest()
    with _HASH_LOCK:
        _HASHES[key] = value
    return value


def blend_rule(settings: Any) -> str:
    """The name of the rule combining overlapping patches and context windows
    (:attr:`InferenceSettings.blend <glgeo.inference.InferenceSettings.blend>`)."""
    return str(settings.blend)


def context_rule(settings: Any, engine: Any = None, anchored: bool = True) -> str:
    """How the global views and G->L contexts were made
    (:attr:`InferenceSettings.global_view <glgeo.inference.InferenceSettings.global_view>`,
    ``global_margin``, ``context_crop``, ``grid_anchor``).

    With the run's ``engine`` (a :class:`~glgeo.inference.StreamingSegmenter`), what it
    resolved the settings to: ``global view fixed, margin 32 px, context crop exact, grid
    anchor world`` (``world, patches only`` where only the patch grids are on the map's
    lattice, :attr:`~glgeo.inference.StreamingSegmenter.global_step`; ``scene`` where the
    run's windows were too small for the lattice, ``anchored=False``: less than a patch
    and a lattice step across); without one, the settings as given, ``auto`` for the
    engine's choice."""
    if engine is not None:
        anchor = engine.grid_anchor if anchored else "scene"
        if anchor == "world" and not engine.global_step:
            anchor = "world, patches only"
        return (f"global view {engine.global_view}, margin {engine.global_margin} px, "
                f"context crop {settings.context_crop}, grid anchor {anchor}")
    margin = "auto" if settings.global_margin is None else f"{settings.global_margin} px"
    anchor = settings.grid_anchor or "auto"
    return f"global view {settings.global_view}, margin {margin}, context crop {settings.context_crop}, grid anchor {anchor}"


#: The :class:`~glgeo.inference.InferenceSettings` fields that can change a map (device,
#: threads, batching, reading ahead, memory layout and caches cannot, beyond rounding).
MAP_SETTINGS = (
    "patch_size", "min_overlap", "global_size", "scale", "gsd", "stretch", "precision", "mode",
    "coarse_to_fine", "c2f_ratio", "logit_upsampling", "blend", "footprint", "window_overlap",
    "global_view", "global_margin", "context_crop", "grid_anchor", "edge_margin", "nodata_fill",
    "global_resampling",
)  # fmt: skip


def options_rule(settings: Any, *, bands: Any = None, tta: bool = False, aoi: Any = None,
                 bounds: Any = None) -> str:
    """The options asked for that can change the map, those not left at their defaults:
    ``defaults``, or ``scale=0.5, blend=sum, bands=3,2,1`` (:data:`MAP_SETTINGS` of the
    :class:`~glgeo.inference.InferenceSettings`, then bands, test-time augmentation, an area
    of interest and bounds). As asked, not as resolved: ``precision=auto`` runs bf16 on one
    machine and fp32 on another (``GLGEO_PRECISION`` says which)."""
    defaults = type(settings)()
    parts = [f"{name}={_text(getattr(settings, name))}" for name in MAP_SETTINGS
             if getattr(settings, name) != getattr(defaults, name)]
    if bands:
        parts.append(f"bands={_text(tuple(bands))}")
    if tta:
        parts.append("tta")
    if aoi is not None:
        parts.append(f"aoi={Path(aoi).name}" if isinstance(aoi, (str, os.PathLike)) else "aoi=geometry")
    if bounds is not None:
        parts.append(f"bounds={_text(tuple(float(v) for v in bounds))}")
    return ", ".join(parts) or "defaults"


def scene_stamp(scene: str | os.PathLike, title: str | None = None) -> str:
    """What an output records of the file it was made from (``GLGEO_SCENE``): a local
    file's absolute path, size and time stamp, a URL as it is, as JSON; for a scene glgeo
    made for the run (a mosaic's VRT, removed after it: ``title`` says what it is), what it
    is (``{"scene": "a mosaic of 3 tiles (...)"}``)."""
    if title is not None:
        return json.dumps({"scene": title})
    from .batch.inputs import is_remote

    name = os.fspath(scene)
    if is_remote(name):
        return json.dumps({"path": name})
    path = Path(name).resolve()
    try:
        stat = path.stat()
    except OSError:
        return json.dumps({"path": str(path)})
    return json.dumps({"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns})


def made_from_another_file(stamp: str, scene: str | os.PathLike) -> bool:
    """Whether an output whose ``GLGEO_SCENE`` is ``stamp`` was made from another file than
    ``scene`` as it is now: another URL, or a local file of another size or time stamp (a
    file of the same name from another folder, another date of one tile, or this file
    replaced since). Its path alone is not compared, so a folder moved with its outputs is
    the same. ``False`` where the stamp says too little to tell."""
    try:
        was, now = json.loads(stamp), json.loads(scene_stamp(scene))
    except (ValueError, TypeError):
        return False
    if not isinstance(was, dict):
        return False
    if "size" in was and "size" in now:
        return (was["size"], was.get("mtime_ns")) != (now["size"], now.get("mtime_ns"))
    return "size" not in was and "size" not in now and was.get("path") != now.get("path")
