"""Training data from your own imagery and labels, read through torchgeo.

Imagery is any set of georeferenced rasters (``tiles/*.tif``), in any CRS; labels are
polygons in a vector file (GeoPackage, shapefile, GeoJSON, any CRS: a field value per class,
or every polygon one foreground class) or a raster label layer (any CRS and resolution,
decoded through the class scheme). torchgeo does the GIS work:

* the imagery is a :class:`torchgeo.datasets.RasterDataset`, warped on the fly to one
  working CRS and resolution (by default those most of the image files use, or
  ``crs`` / ``res``); the labels a :class:`torchgeo.datasets.VectorDataset` (rasterized on
  the fly at the resolution asked) or a label ``RasterDataset``; both are intersected
  (:class:`torchgeo.datasets.IntersectionDataset`);
* training scenes are drawn by :class:`torchgeo.samplers.RandomGeoSampler`, validation
  scenes laid out by :class:`torchgeo.samplers.GridGeoSampler`.

Each image file gets its own slot on torchgeo's time axis, so a scene is always read from
one file: overlapping acquisitions (before and after a storm) are never mosaicked into one
scene, and a training scene is what ``glgeo segment`` sees of a file. A scene is
``scene_size`` pixels square at the working resolution; it becomes GLNet's sample exactly as
a published dataset's scene does (:class:`glgeo.datasets.GLNetSceneDataset`: the global
image read at the global size, the label at the logits' size, the patch grid, the same
augmentation), so every stage, checkpoint and ``glgeo segment`` work unchanged.

Pixels under no polygon are class 0 (Inria's ``background``, DeepGlobe's ``unknown``);
pixels outside the scene's image file, where the image has no data (its nodata value, alpha
band or internal mask), outside a label raster, or (for validation scenes) outside the
validation area are :data:`~glgeo.schemes.NODATA_ID` and ignored. A label raster is read
whole at full resolution before training (values outside the scheme are an error, a nodata
that is a class value a warning); an image file too small to hold a scene is left out with
a warning.

The validation area never overlaps the training area: it is the footprint of held-out image
files (``val_images``), a box (``val_bbox``, in the working CRS) or the last
``val_fraction`` of the labelled extent along its longer side (east or south). Training
scenes are drawn from what is left of each file's footprint once the validation area is
cut out; validation scenes lie inside the validation area. The split is recorded in every
checkpoint (``metadata["training"]["split"]``).

Vector files are opened with pyogrio (GDAL's vector I/O, which geopandas and torchgeo use):
it checks up front that the labels have a CRS, that the label field exists and that its
values belong to the class scheme.
"""

from __future__ import annotations

import contextlib
import copy
import fnmatch
import glob
import io
import logging
import math
import os
import shutil
import tempfile
import weakref
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pandas as pd
import rasterio
import shapely
import torch
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import MaskFlags, Resampling
from rasterio.errors import RasterioIOError, WindowError
from rasterio.features import geometry_mask
from rasterio.vrt import WarpedVRT
from rasterio.warp import reproject, transform_bounds, transform_geom
from rasterio.windows import Window, from_bounds

from .datasets import GLNetSceneDataset, MaskScanCache, SampleSpec, decode_mask, nearest_resize
from .errors import DatasetError, InputError, MissingDependencyError
from .io import labelled_bands
from .schemes import INRIA, NODATA_ID, ClassScheme

log = logging.getLogger(__name__)

try:
    from torchgeo.datasets import IntersectionDataset, RasterDataset, VectorDataset
    from torchgeo.samplers import GridGeoSampler, RandomGeoSampler
except ImportError as exc:  # pragma: no cover - torchgeo is an install requirement
    raise MissingDependencyError(f"training on imagery and labels needs torchgeo: pip install 'torchgeo>=0.8,<0.9' ({exc})") from None

#: Suffixes read as raster label layers; every other label file is read as vectors.
RASTER_LABEL_SUFFIXES = (".tif", ".tiff", ".vrt", ".img", ".jp2", ".png")

Box = tuple[float, float, float, float]  # xmin, ymin, xmax, ymax in the working CRS

#: Origin of the per-file time slots (see the module doc).
_SLOT_ORIGIN = pd.Timestamp("2000-01-01")


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class GeoInputs:
    """Imagery and labels to train or evaluate on, and how scenes are drawn from them.

    Args:
        images: image files or glob patterns (``tiles/*.tif``).
        labels: a vector file of polygons, or a raster label layer.
        scheme: the class scheme (default Inria's background / building).
        label_field: the vector field holding each polygon's class (a class name or id);
            ``None``: every polygon is class 1 (a two-class scheme's foreground).
        layer: the vector layer (default the file's first).
        crs: working CRS (``EPSG:32615``, WKT...); default the CRS most image files use.
        res: working resolution in units of the CRS; default that of the first image
            file in the working CRS.
        scene_size: side of a training or validation scene, in pixels at the working
            resolution (what ``glgeo segment`` will see of a file).
        scenes_per_epoch: training scenes drawn per epoch (default torchgeo's: about as
            many as fit side by side in the training area).
        val_images: image files (names, paths or glob patterns) whose footprints
            validate; an entry that matches none of the images is an error.
        val_bbox: a validation box ``(xmin, ymin, xmax, ymax)`` in the working CRS.
        val_fraction: validate on this fraction of the labelled extent (its east or
            south end, along the longer side).
    """

    images: tuple[str, ...]
    labels: Path
    scheme: ClassScheme = INRIA
    label_field: str | None = None
    layer: str | None = None
    crs: str | None = None
    res: float | None = None
    scene_size: int = 1024
    scenes_per_epoch: int | None = None
    val_images: tuple[str, ...] = ()
    val_bbox: tuple[float, float, float, float] | None = None
    val_fraction: float | None = None

    def __post_init__(self) -> None:
        if not self.images:
            raise InputError("give at least one image file or pattern in images")
        if self.scene_size < 64:
            raise InputError(f"scene_size must be at least 64 px, got {self.scene_size}")
        if self.res is not None and not self.res > 0:
            raise InputError(f"res must be positive, got {self.res}")
        if self.scenes_per_epoch is not None and self.scenes_per_epoch < 1:
            raise InputError(f"scenes_per_epoch must be >= 1, got {self.scenes_per_epoch}")
        given = [n for n, v in (("val_images", self.val_images), ("val_bbox", self.val_bbox),
                                ("val_fraction", self.val_fraction)) if v]
        if len(given) > 1:
            raise InputError(f"give one validation rule, not {' and '.join(given)}")
        if self.val_fraction is not None and not 0 < self.val_fraction < 1:
            raise InputError(f"val_fraction must be between 0 and 1, got {self.val_fraction}")
        if self.val_bbox is not None:
            xmin, ymin, xmax, ymax = self.val_bbox
            if not (xmax > xmin and ymax > ymin):
                raise InputError(f"val_bbox must be xmin, ymin, xmax, ymax with max > min, got {self.val_bbox}")


@dataclass(frozen=True)
class GeoSplit:
    """Where training and validation scenes come from (disjoint areas of the working CRS).

    Attributes:
        train: the training rectangles ``"file: xmin,ymin,xmax,ymax"``.
        val: the validation scenes ``"file: xmin,ymin,xmax,ymax"``.
        crs: the working CRS (WKT or EPSG code).
        res: the working resolution.
        rule: how the validation area was chosen.
        val_area: the validation boxes.
    """

    train: tuple[str, ...]
    val: tuple[str, ...]
    crs: str
    res: tuple[float, float]
    rule: str
    val_area: tuple[Box, ...] = ()

    def part(self, name: str) -> tuple[str, ...]:
        """The entries of part ``train`` or ``val``."""
        if name not in ("train", "val"):
            raise InputError(f"unknown split part {name!r}; an imagery split has train and val")
        return getattr(self, name)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able description (recorded in checkpoints and the run's split.json)."""
        return {"kind": "geo", "rule": self.rule, "crs": self.crs, "res": list(self.res),
                "val_area": [list(b) for b in self.val_area], "train": list(self.train), "val": list(self.val)}


# --------------------------------------------------------------------------- torchgeo datasets


class _Imagery(RasterDataset):
    """The image files, bands by 1-based number, one time slot per file."""

    all_bands = tuple(str(i) for i in range(1, 1025))
    filename_glob = "*"


class _RasterLabels(RasterDataset):
    """A raster label layer (read with nearest resampling, decoded by the scheme).

    A floating-point raster is read as float32, not torchgeo's ``long`` for masks: a cast
    turned its NaN (nodata) into -2**63, which no scheme knows."""

    is_image = False
    filename_glob = "*"
    floating = False

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32 if self.floating else torch.long

    @property
    def resampling(self) -> Resampling:
        return Resampling.nearest  # class values, never interpolated (torchgeo: bilinear for floats)


class _PolygonLabels(VectorDataset):
    """Polygons burnt as class ids: a field's value per class, or class 1."""

    filename_glob = "*"

    def __init__(self, path: Path, crs: CRS, res: tuple[float, float], layer: str | None,
                 field_name: str | None, value_ids: dict[Any, int]) -> None:
        self.value_ids = value_ids
        super().__init__(paths=[str(path)], crs=crs, res=res, label_name=field_name, layer=layer)

    def get_label(self, feature: pd.Series) -> int:
        if self.label_name is None:
            return 1
        return self.value_ids[_value_key(feature[self.label_name])]


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    # torchgeo prints when it converts a dataset's CRS or resolution; the library never prints.
    with contextlib.redirect_stdout(io.StringIO()) as out:
        yield
    for line in out.getvalue().splitlines():
        log.debug("torchgeo: %s", line)


# --------------------------------------------------------------------------- inputs


def expand_images(patterns: Sequence[str]) -> list[str]:
    """Image files from paths and glob patterns, in order, duplicates dropped.

    Raises:
        InputError: a pattern matches no file, or a path does not exist.
    """
    files: list[str] = []
    for pattern in patterns:
        text = os.path.expanduser(str(pattern))
        if any(c in text for c in "*?["):
            matches = sorted(p for p in glob.glob(text, recursive=True) if os.path.isfile(p))
            if not matches:
                raise InputError(f"no image file matches {pattern!r}; check the pattern (quote it so the shell does not expand it)")
            files.extend(matches)
        elif not os.path.isfile(text):
            raise InputError(f"image file {str(pattern)!r} does not exist")
        else:
            files.append(text)
    return list(dict.fromkeys(os.path.abspath(f) for f in files))


@dataclass(frozen=True)
class _ImageInfo:
    path: str
    crs: CRS
    res: tuple[float, float]
    count: int
    bounds: Box
    masked: bool = False  # some pixels are marked as no data (nodata, alpha, internal mask)
    size: tuple[int, int] = (0, 0)  # width, height in the file's pixels
    labelled: tuple[int, ...] | None = None  # the bands it labels red, green, blue, else its 3 non-alpha ones
    unreadable: str = ""  # why no three bands can be chosen, where ``labelled`` is None (glgeo.io.labelled_bands)


def _inspect_images(files: Sequence[str], bands: Sequence[int] | None) -> tuple[list[_ImageInfo], tuple[int, ...]]:
    """Each image's CRS, resolution, bounds and bands, and the bands to read: ``bands``, or
    where ``None`` those every image labels red, green and blue (else its three non-alpha
    bands), as ``glgeo segment`` reads scenes; torchgeo reads one band list for all."""
    infos = []
    for path in files:
        try:
            with rasterio.open(path) as src:
                if src.crs is None:
                    raise DatasetError(f"image {path} has no CRS; georeference it (e.g. gdal_edit.py -a_srs EPSG:...)")
                masked = not all(MaskFlags.all_valid in flags for flags in src.mask_flag_enums)
                unreadable = ""
                try:
                    labelled: tuple[int, ...] | None = labelled_bands(src, 3)[0]
                except InputError as exc:
                    labelled, unreadable = None, str(exc)
                infos.append(_ImageInfo(path, src.crs, src.res, src.count, tuple(src.bounds), masked,
                                        (src.width, src.height), labelled, unreadable))
        except RasterioIOError as exc:
            raise DatasetError(f"cannot read image {path}: {exc}") from None
    counts = Counter(i.count for i in infos)
    if len(counts) > 1:
        detail = ", ".join(f"{Path(i.path).name} {i.count}" for i in infos[:6])
        raise DatasetError(
            f"the images have different band counts ({detail}); train on imagery of one kind, one band layout"
        )
    count = infos[0].count
    if bands is None:
        return infos, _labelled_bands(infos)
    if max(bands) > count:
        raise DatasetError(
            f"image {infos[0].path} has {count} band(s) but bands {tuple(bands)} were asked for; "
            "GLNet reads three (red, green, blue): choose bands that exist (1-based)"
        )
    return infos, tuple(bands)


def _labelled_bands(infos: Sequence[_ImageInfo]) -> tuple[int, ...]:
    """The bands all ``infos`` label red, green and blue (:func:`_inspect_images`)."""
    unlabelled = [i for i in infos if i.labelled is None]
    if unlabelled:  # the reason, with advice that can be followed, as glgeo segment gives it
        first = unlabelled[0]
        raise DatasetError(f"image {first.path}: {first.unreadable.replace('scene has', 'it has', 1)}")
    chosen = Counter(i.labelled for i in infos)
    if len(chosen) > 1:
        detail = "; ".join(f"{Path(i.path).name}: {','.join(map(str, i.labelled or ()))}" for i in
                           list({i.labelled: i for i in infos}.values())[:4])
        raise DatasetError(
            f"the images label different bands red, green and blue ({detail}); torchgeo reads one band list for"
            " all: give images of one band layout, or pass bands=(R, G, B) to read the same bands of each"
        )
    bands = next(iter(chosen))
    if bands != (1, 2, 3):
        log.warning(
            "the images label bands %s red, green and blue (%s, of %d bands): training reads those, as glgeo segment"
            " reads scenes; pass bands=(1, 2, 3) to read the first three", ",".join(map(str, bands)),
            Path(infos[0].path).name, infos[0].count,
        )
    return bands


def _working_grid(infos: Sequence[_ImageInfo], crs: str | None, res: float | None) -> tuple[CRS, tuple[float, float]]:
    if crs is not None:
        try:
            with rasterio.Env():  # GDAL's own error line goes to the log, not the terminal
                target = CRS.from_user_input(crs)
        except Exception as exc:  # rasterio raises CRSError, a ValueError subclass, on bad input
            raise InputError(f"crs={crs!r} is not a CRS rasterio understands: {exc}") from None
    else:
        target = Counter(i.crs for i in infos).most_common(1)[0][0]
    if res is not None:
        _warn_if_not_square(target, (float(res), float(res)), infos)
        return target, (float(res), float(res))
    first = infos[0]
    same = [i for i in infos if i.crs == target]
    if same:
        return target, _square_on_the_ground(target, (float(same[0].res[0]), float(same[0].res[1])), same[0].bounds)
    with rasterio.open(first.path) as src, WarpedVRT(src, crs=target) as vrt:
        return target, _square_on_the_ground(target, (float(vrt.res[0]), float(vrt.res[1])), tuple(vrt.bounds))


def _ground_sides(crs: CRS, res: tuple[float, float], bounds: Sequence[float]) -> tuple[float, float] | None:
    """``(across, down)`` metres on the ground of a ``res`` pixel at the centre of ``bounds``."""
    from .resolution import ground_pixel_sides

    x, y = (bounds[0] + bounds[2]) / 2, (bounds[1] + bounds[3]) / 2
    return ground_pixel_sides(crs, Affine(res[0], 0, x, 0, -res[1], y))


def _square_on_the_ground(crs: CRS, res: tuple[float, float], bounds: Sequence[float]) -> tuple[float, float]:
    """``res`` with its finer side made as coarse as the other on the ground, where the two
    differ by more than :data:`glgeo.resolution.SCALE_TOLERANCE` (degrees away from the
    equator): the model learns from square pixels, as ``glgeo segment`` reads such scenes
    (:func:`glgeo.resolution.reading_scale`)."""
    from .resolution import axis_scales, square_scale

    sides = _ground_sides(crs, res, bounds)
    rows, cols = axis_scales(square_scale(1.0, sides, None, None))
    if (rows, cols) == (1.0, 1.0):
        return res
    across, down = sides
    square = (res[0] / cols, res[1] / rows)  # the finer side read coarser, as segment reads it
    log.info(
        "the images' pixels are %.3g x %.3g m on the ground in %s: training reads them at %.6g x %.6g %s per pixel,"
        " square %.3g m pixels", across, down, crs.to_string(), square[0], square[1],
        "degrees" if crs.is_geographic else "units", max(across, down),
    )
    return square


def _warn_if_not_square(crs: CRS, res: tuple[float, float], infos: Sequence[_ImageInfo]) -> None:
    """Warn when the resolution asked for gives pixels far from square on the ground."""
    from .resolution import STRETCH_TOLERANCE, stretch

    try:
        bounds = transform_bounds(infos[0].crs, crs, *infos[0].bounds)
    except Exception:  # noqa: BLE001 - a CRS PROJ cannot transform into: nothing to measure
        return
    sides = _ground_sides(crs, res, bounds)
    if sides is not None and stretch(sides) > STRETCH_TOLERANCE:
        log.warning(
            "res=%g in %s gives pixels of %.3g x %.3g m on the ground: the model learns the ground squeezed %.2f"
            " times, and glgeo segment reads scenes with square pixels; drop res=%g (glgeo makes them square)"
            " or train in a projected CRS", res[0], crs.to_string(), sides[0], sides[1], stretch(sides), res[0],
        )


def _value_key(value: Any) -> Any:
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return int(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def _class_of(value: Any, scheme: ClassScheme) -> int | None:
    value = _value_key(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value if 0 <= value < scheme.n_classes else None
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return int(text) if int(text) < scheme.n_classes else None
        by_name = {n.lower(): i for i, n in enumerate(scheme.names)}
        return by_name.get(text.lower())
    return None


def _vector_value_ids(
    path: Path, layer: str | None, field_name: str | None, scheme: ClassScheme
) -> tuple[dict[Any, int], Any, str | None]:
    """Check the vector labels up front; returns the value -> class id map, their CRS and
    the layer read (the first where there are several and none is named)."""
    import pyogrio
    from pyogrio.errors import DataLayerError, DataSourceError

    try:
        layers = [str(name) for name, _ in pyogrio.list_layers(path)]
    except DataSourceError as exc:
        raise DatasetError(f"cannot read labels {path}: {exc}") from None
    if layer is not None and layer not in layers:
        raise DatasetError(f"labels {path} have no layer {layer!r}; layers: {', '.join(layers)}")
    if layer is None and len(layers) > 1:
        log.warning("labels %s hold %d layers (%s); reading the first, %r: choose another with layer=NAME",
                    path, len(layers), ", ".join(layers[:5]) + (", ..." if len(layers) > 5 else ""), layers[0])
        layer = layers[0]  # named from here on: the readers below would each warn in their own words
    try:
        info = pyogrio.read_info(path, layer=layer)
    except (DataLayerError, DataSourceError) as exc:
        raise DatasetError(f"cannot read labels {path}: {exc}") from None
    if not info.get("crs"):
        raise DatasetError(
            f"labels {path} have no CRS, so they cannot be placed on the imagery; "
            "assign theirs (e.g. ogr2ogr -a_srs EPSG:4326 fixed.gpkg labels.gpkg)"
        )
    if info.get("features", 0) == 0:
        raise DatasetError(f"labels {path} hold no features")
    if field_name is None:
        if scheme.n_classes != 2:
            raise InputError(
                f"scheme {scheme.name!r} has {scheme.n_classes} classes: name the field that holds each polygon's "
                "class with label_field (without one, every polygon is class 1 of a two-class scheme)"
            )
        return {}, info["crs"], layer
    fields = [str(f) for f in info["fields"]]
    if field_name not in fields:
        raise DatasetError(
            f"labels {path} have no field {field_name!r}; fields: {', '.join(fields) if fields else 'none'}"
        )
    table = pyogrio.read_dataframe(path, layer=layer, columns=[field_name], read_geometry=False)
    values = pd.unique(table[field_name])
    value_ids: dict[Any, int] = {}
    unknown = []
    for value in values:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            unknown.append("<empty>")
            continue
        cid = _class_of(value, scheme)
        if cid is None:
            unknown.append(repr(_value_key(value)))
        else:
            value_ids[_value_key(value)] = cid
    if unknown:
        classes = ", ".join(f"{i} {n}" for i, n in enumerate(scheme.names))
        raise DatasetError(
            f"labels {path}: field {field_name!r} holds {', '.join(sorted(unknown)[:8])}, not classes of scheme "
            f"{scheme.name!r} ({classes}); give each polygon a class name or id of the scheme"
        )
    # class 0 is every pixel outside the polygons; a scored class no polygon holds is never learnt
    absent = [scheme.names[i] for i in scheme.scored_ids if i != 0 and i not in set(value_ids.values())]
    if absent:
        log.warning(
            "labels %s: no polygon is %s (%d of the %r scheme's %d classes): a model trained on them learns none "
            "of those, and scores against them say nothing of those; pixels outside every polygon are class 0 (%s)",
            path, ", ".join(absent), len(absent),
            scheme.name, scheme.n_classes, scheme.names[0],
        )
    return value_ids, info["crs"], layer


#: Geometry types labels are burnt from.
POLYGON_TYPES = ("Polygon", "MultiPolygon")


def _not_polygons(path: Path, layer: str | None) -> int:
    """How many features of a label layer are not polygons (points, lines: they cover no
    area, and torchgeo burnt them as pixels of their class); warns when some are, and
    refuses a layer of none."""
    import pyogrio

    declared = str(pyogrio.read_info(path, layer=layer).get("geometry_type") or "")
    if declared.removeprefix("3D ").removesuffix(" Z") in POLYGON_TYPES:
        return 0
    geometries = pyogrio.read_dataframe(path, layer=layer, columns=[]).geometry
    geometries = geometries[geometries.notna() & ~geometries.is_empty]
    kinds = geometries.geom_type
    others = kinds[~kinds.isin(POLYGON_TYPES)]
    if len(others) and len(others) == len(kinds):
        raise DatasetError(f"labels {path} hold no polygon ({', '.join(sorted(set(others)))}); give polygons")
    if len(others):
        log.warning("labels %s: %d features that are not polygons (%s) are left out: a point or a line covers no area",
                    path, len(others), ", ".join(sorted(set(others))))
    return len(others)


def file_footprint(path: str, src_crs: CRS, bounds: Box, dst_crs: CRS) -> shapely.Geometry:
    """A file's footprint in ``dst_crs``, densified so it follows curved edges."""
    box = shapely.box(*bounds)
    if src_crs == dst_crs:
        return box
    side = max(bounds[2] - bounds[0], bounds[3] - bounds[1])
    dense = shapely.segmentize(box, side / 32)
    return shapely.geometry.shape(transform_geom(src_crs, dst_crs, shapely.geometry.mapping(dense)))


# --------------------------------------------------------------------------- labels


class GeoLabels:
    """The labels as a torchgeo dataset on a working grid, read as class ids.

    Args:
        path: a vector file or a raster label layer.
        scheme: the class scheme.
        crs: the working CRS.
        res: the working resolution.
        field_name: vectors: the field holding each polygon's class.
        layer: vectors: the layer.

    Raises:
        DatasetError: unreadable labels, labels with no CRS, a missing field, values
            outside the scheme.
    """

    def __init__(self, path: Path, scheme: ClassScheme, crs: CRS, res: tuple[float, float],
                 field_name: str | None = None, layer: str | None = None) -> None:
        self.path = Path(path)
        self.scheme = scheme
        if not self.path.is_file():
            raise DatasetError(f"labels file {str(path)!r} does not exist")
        self.is_raster = self.path.suffix.lower() in RASTER_LABEL_SUFFIXES
        self.footprint: shapely.Geometry | None = None
        self.nodata: float | None = None
        with _quiet():
            if self.is_raster:
                if field_name is not None or layer is not None:
                    raise InputError(f"labels {path} are a raster: label_field and layer apply to vector labels only")
                try:
                    with rasterio.open(self.path) as src:
                        if src.crs is None:
                            raise DatasetError(f"label raster {path} has no CRS; georeference it (e.g. gdal_edit.py -a_srs EPSG:...)")
                        self.nodata = src.nodata
                        self.footprint = file_footprint(str(path), src.crs, tuple(src.bounds), crs)
                        floating = np.issubdtype(np.dtype(src.dtypes[0]), np.floating)
                except RasterioIOError as exc:
                    raise DatasetError(f"cannot read labels {path}: {exc}") from None
                self.dataset: Any = _RasterLabels(paths=[str(self.path)], crs=crs, res=res)
                self.dataset.floating = floating
            else:
                value_ids, label_crs, layer = _vector_value_ids(self.path, layer, field_name, scheme)
                others = _not_polygons(self.path, layer)
                source, source_layer = self.path, layer
                if CRS.from_user_input(label_crs) != crs or others:
                    source, source_layer = self._reprojected(crs, layer, field_name), "labels"
                self.dataset = _PolygonLabels(source, crs, res, source_layer, field_name, value_ids)

    def _reprojected(self, crs: CRS, layer: str | None, field_name: str | None) -> Path:
        """The polygons in the working CRS, in a temporary GeoPackage.

        torchgeo 0.8's VectorDataset selects a query's features by the source-CRS box of
        the query's lower-left and upper-right corners only; where the two CRSs' axes are
        not parallel (UTM against degrees, away from the central meridian) polygons near
        the other two corners would be dropped. In the working CRS the box is exact.
        """
        import geopandas as gpd

        folder = tempfile.mkdtemp(prefix="glgeo-labels-")
        weakref.finalize(self, shutil.rmtree, folder, True)
        frame = gpd.read_file(self.path, layer=layer, columns=[field_name] if field_name else [])
        frame = frame[frame.geometry.geom_type.isin(POLYGON_TYPES)]  # points and lines cover no area
        out = Path(folder) / "labels.gpkg"
        frame.to_crs(crs).to_file(out, layer="labels", driver="GPKG")
        return out

    def ids(self, sample_mask: torch.Tensor, bounds: Box, shape: tuple[int, int]) -> np.ndarray:
        """Class ids (uint8) of a queried mask, NODATA outside a label raster."""
        mask = sample_mask.numpy()
        if self.is_raster:
            ids = decode_mask(mask, self.scheme, self.path, nodata=self.nodata)
            if self.footprint is not None:
                ids = np.where(coverage(self.footprint, bounds, shape), ids, NODATA_ID).astype(np.uint8)
        else:
            ids = mask.astype(np.uint8)
        return fit_shape(ids, shape, NODATA_ID)


def image_valid_on_grid(path: str, crs: CRS, bounds: Box, shape: tuple[int, int]) -> np.ndarray:
    """Which pixels of a ``shape`` grid over ``bounds`` (in ``crs``) an image file holds
    data for: its GDAL dataset mask (nodata value, alpha band, internal mask) brought onto
    the grid by nearest neighbour; outside the file, ``False``."""
    height, width = shape
    out = np.zeros(shape, dtype=np.uint8)
    with rasterio.open(path) as src:
        box = bounds if src.crs == crs else transform_bounds(crs, src.crs, *bounds, densify_pts=21)
        window = from_bounds(*box, transform=src.transform)
        # whole pixels around the area, plus one: nearest resampling reads at the edges
        col0, row0 = math.floor(window.col_off) - 1, math.floor(window.row_off) - 1
        col1, row1 = math.ceil(window.col_off + window.width) + 1, math.ceil(window.row_off + window.height) + 1
        try:
            window = Window(col0, row0, col1 - col0, row1 - row0).intersection(Window(0, 0, src.width, src.height))
        except WindowError:
            return out.astype(bool)
        mask = src.dataset_mask(window=window)
        reproject(mask, out, src_transform=src.window_transform(window), src_crs=src.crs,
                  dst_transform=rasterio.transform.from_bounds(*bounds, width, height), dst_crs=crs,
                  resampling=Resampling.nearest)
    return out > 0


def coverage(geometry: shapely.Geometry, bounds: Box, shape: tuple[int, int]) -> np.ndarray:
    """Which pixels of a ``shape`` grid over ``bounds`` lie inside ``geometry``."""
    transform = rasterio.transform.from_bounds(*bounds, shape[1], shape[0])
    return geometry_mask([geometry], out_shape=shape, transform=transform, invert=True)


def fit_shape(array: np.ndarray, shape: tuple[int, int], fill: float) -> np.ndarray:
    """Crop or pad the last two axes to ``shape`` (torchgeo rounds a query's size)."""
    h, w = shape
    array = array[..., :h, :w]
    ph, pw = h - array.shape[-2], w - array.shape[-1]
    if ph or pw:
        pad = [(0, 0)] * (array.ndim - 2) + [(0, ph), (0, pw)]
        array = np.pad(array, pad, constant_values=fill)
    return array


# --------------------------------------------------------------------------- scenes


def _subtract(rect: Box, cut: Box) -> list[Box]:
    """``rect`` minus ``cut`` as up to four rectangles."""
    xmin, ymin, xmax, ymax = rect
    cx0, cy0, cx1, cy1 = cut
    if cx0 >= xmax or cx1 <= xmin or cy0 >= ymax or cy1 <= ymin:
        return [rect]
    pieces = []
    if cx0 > xmin:
        pieces.append((xmin, ymin, cx0, ymax))
    if cx1 < xmax:
        pieces.append((cx1, ymin, xmax, ymax))
    ix0, ix1 = max(xmin, cx0), min(xmax, cx1)
    if cy0 > ymin:
        pieces.append((ix0, ymin, ix1, cy0))
    if cy1 < ymax:
        pieces.append((ix0, cy1, ix1, ymax))
    return pieces


def _intersect(a: Box, b: Box) -> Box | None:
    box = (max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3]))
    return box if box[2] > box[0] and box[3] > box[1] else None


class GeoScenes:
    """Imagery and labels intersected in torchgeo, split into training and validation areas.

    Used like a :class:`~glgeo.datasets.SceneCollection` by the training code (``kind``,
    ``scheme``, ``gsd``), with :meth:`loader_parts` giving the datasets and samplers.

    Args:
        inputs: what to read.
        bands: the images' red, green and blue bands (1-based); ``None``: those the
            images label so (one layout for all), else their three non-alpha bands.
        scale: read at this fraction of the working resolution (as ``--scale`` does for
            the published datasets).

    Raises:
        DatasetError: unreadable or unlabelled inputs, no overlap, band counts.
        InputError: a scene larger than every training or validation area.
    """

    kind = "geo"

    def __init__(self, inputs: GeoInputs, bands: Sequence[int] | None = None, scale: float = 1.0) -> None:
        if not 0 < scale <= 1:
            raise InputError(f"scene scale must be in (0, 1], got {scale}")
        self.inputs = inputs
        self.scheme = inputs.scheme
        self.root = Path(inputs.labels)
        files = expand_images(inputs.images)
        infos, self.bands = _inspect_images(files, bands)
        crs, base_res = _working_grid(infos, inputs.crs, inputs.res)
        self.crs = crs
        self.base_res = base_res
        self.res = (base_res[0] / scale, base_res[1] / scale)
        self.scale = scale
        with _quiet():
            self.images = _Imagery(paths=files, crs=crs, res=self.res, bands=[str(b) for b in self.bands])
        # One time slot per file: a query (and so a scene) reads exactly one file.
        order = list(self.images.index["filepath"])
        starts = [_SLOT_ORIGIN + pd.Timedelta(days=i) for i in range(len(order))]
        self.images.index.index = pd.IntervalIndex.from_arrays(
            starts, [s + pd.Timedelta(hours=1) for s in starts], closed="both", name="datetime"
        )
        by_path = {i.path: i for i in infos}
        self.masked = {p: by_path[p].masked for p in order}
        self._sizes = {p: by_path[p].size for p in order}
        self.files = order
        self.footprints = {p: file_footprint(p, by_path[p].crs, by_path[p].bounds, crs) for p in order}
        self.labels = GeoLabels(Path(inputs.labels), self.scheme, crs, self.res, inputs.label_field, inputs.layer)
        if self.labels.is_raster:
            self._scan_label_raster()
        try:
            with _quiet():
                self.dataset = IntersectionDataset(self.images, self.labels.dataset)
        except RuntimeError:
            raise DatasetError(self._no_overlap(infos)) from None
        self._rows = self._row_boxes()
        self.split, self._train_rows, self._val_scenes = self._make_split()

    def _scan_label_raster(self) -> None:
        """Read a label raster whole at full resolution (:func:`glgeo.datasets.scan_mask`):
        a value outside the scheme is an error now, not mid-epoch at a decimated read; a
        nodata that is a class value is a warning."""
        scan_label_raster(self.labels.path, self.scheme, "ignored in training")

    # ------------------------------------------------------------------ facts
    @property
    def gsd(self) -> float | None:
        """Metres per pixel of the working grid before ``scale`` (as a published dataset's
        :attr:`~glgeo.datasets.SceneCollection.gsd`)."""
        from .io import ground_sample_distance

        xmin, ymin, xmax, ymax = self.dataset.index.total_bounds
        transform = Affine(self.base_res[0], 0, xmin, 0, -self.base_res[1], (ymin + ymax) / 2)
        return ground_sample_distance(self.crs, transform, 0)

    @property
    def names(self) -> list[str]:
        """The image files' names."""
        return [Path(p).name for p in self.files]

    def _crs_text(self) -> str:
        epsg = self.crs.to_epsg()
        return f"EPSG:{epsg}" if epsg else self.crs.to_wkt()

    def _no_overlap(self, infos: Sequence[_ImageInfo]) -> str:
        def bounds(values) -> str:  # left, bottom, right, top, as plain numbers
            return ", ".join(f"{float(v):.3f}".rstrip("0").rstrip(".") for v in values)

        with _quiet():
            lb = bounds(self.labels.dataset.index.total_bounds)
        ib = bounds(self.images.index.total_bounds)
        return (
            f"the labels {self.inputs.labels} do not overlap the imagery: in {self._crs_text()} the images cover "
            f"({ib}) and the labels ({lb}); check that both are of the same place and that the labels' CRS is right"
        )

    def _row_boxes(self) -> list[tuple[str, pd.Interval, Box]]:
        rows = []
        index = self.dataset.index
        for position in range(len(index)):
            interval = index.index[position]
            path = self._file_at(interval)
            rows.append((path, interval, tuple(index.geometry.iloc[position].bounds)))
        return rows

    def _file_at(self, interval: pd.Interval) -> str:
        for path, slot in zip(self.files, self.images.index.index):
            if slot.overlaps(interval):
                return path
        raise DatasetError("a torchgeo index row matches no image file")  # pragma: no cover

    # ------------------------------------------------------------------ split
    def _scene_extent(self) -> tuple[float, float]:
        return self.inputs.scene_size * self.res[0], self.inputs.scene_size * self.res[1]

    def _fits(self, box: Box) -> bool:
        w, h = self._scene_extent()
        eps = 1e-6 * max(w, h)
        return box[2] - box[0] >= w - eps and box[3] - box[1] >= h - eps

    def _val_area(self) -> tuple[tuple[Box, ...], str]:
        inputs = self.inputs
        if inputs.val_images:
            def matches(path: str, pattern: str) -> bool:
                return fnmatch.fnmatch(path, os.path.abspath(pattern)) or fnmatch.fnmatch(Path(path).name, pattern)

            # every entry, not only one of them: a mistyped name beside a right one would
            # leave its image training instead of validating, without a word
            unmatched = [pat for pat in inputs.val_images if not any(matches(p, pat) for p in self.files)]
            if unmatched:
                names = sorted(self.names)
                listed = ", ".join(names[:6]) + (f", ... ({len(names)} in all)" if len(names) > 6 else "")
                raise InputError(
                    f"val_images entries that match none of the images: {', '.join(unmatched)} (the images: {listed});"
                    " give each as an image's file name, path or glob"
                )
            chosen = [p for p in self.files if any(matches(p, pat) for pat in inputs.val_images)]
            if len(chosen) == len(self.files):
                raise InputError("val_images hold back every image: keep at least one for training")
            boxes = tuple(tuple(self.footprints[p].bounds) for p in chosen)
            return boxes, "images " + ", ".join(Path(p).name for p in chosen)
        if inputs.val_bbox is not None:
            return (tuple(float(v) for v in inputs.val_bbox),), f"bbox {tuple(inputs.val_bbox)}"
        if inputs.val_fraction is not None:
            xmin, ymin, xmax, ymax = self.dataset.index.total_bounds
            f = inputs.val_fraction
            if xmax - xmin >= ymax - ymin:
                box = (xmax - f * (xmax - xmin), ymin, xmax, ymax)
                where = "east"
            else:
                box = (xmin, ymin, xmax, ymin + f * (ymax - ymin))
                where = "south"
            return (tuple(float(v) for v in box),), f"the {where} {f:g} of the labelled extent"
        return (), "none"

    def _make_split(self) -> tuple[GeoSplit, list[tuple[str, pd.Interval, Box]], list[tuple[str, tuple]]]:
        val_area, rule = self._val_area()
        train_rows, val_rects = [], []
        for path, interval, box in self._rows:
            pieces = [box]
            for cut in val_area:
                pieces = [p for piece in pieces for p in _subtract(piece, cut)]
            train_rows += [(path, interval, p) for p in pieces if self._fits(p)]
            for cut in val_area:
                inside = _intersect(box, cut)
                if inside is not None and self._fits(inside):
                    val_rects.append((path, interval, inside))
        size = self.inputs.scene_size
        if not train_rows:
            raise InputError(
                f"no training area holds a {size} px scene at {self.res[0]:g} {self._units()} per pixel: "
                f"lower scene_size or the resolution (scale={self.scale:g}), or validate on less"
            )
        self._warn_unused(train_rows, val_rects, rule)
        val_scenes, seen = [], set()
        for path, interval, rect in val_rects:
            view = self._view([(path, interval, rect)])
            for query in GridGeoSampler(view, size=size):
                query = _clamp(query, rect)
                key = (path, round(query[0].start / self.res[0]), round(query[1].start / self.res[1]))
                if key not in seen:  # clamping can bring the grid's overhanging last scene onto its neighbour
                    seen.add(key)
                    val_scenes.append((path, query))
        if self.inputs.val_images and not val_rects:
            boxes = set(val_area)
            held_back = [p for p in self.files if tuple(self.footprints[p].bounds) in boxes]
            if not {path for path, _, _ in self._rows} & set(held_back):  # nothing to validate on: not a size matter
                raise InputError(
                    f"the validation {rule} hold no labels ({self.inputs.labels} does not overlap them): give "
                    "val_images that the labels cover, or labels that cover them"
                )
        if val_area and not val_scenes:
            raise InputError(
                f"the validation area ({rule}) holds no whole {size} px scene at {self.res[0]:g} {self._units()} per "
                "pixel inside the labelled imagery: lower scene_size, or validate on a larger area"
            )
        fmt = lambda path, b: f"{Path(path).name}: " + ",".join(f"{v:.12g}" for v in b)  # noqa: E731
        split = GeoSplit(
            train=tuple(fmt(p, b) for p, _, b in train_rows),
            val=tuple(fmt(p, (q[0].start, q[1].start, q[0].stop, q[1].stop)) for p, q in val_scenes),
            crs=self._crs_text(),
            res=self.res,
            rule=rule,
            val_area=val_area,
        )
        log.info("imagery split (%s): %d training rectangles, %d validation scenes", rule, len(train_rows), len(val_scenes))
        return split, train_rows, val_scenes

    def _units(self) -> str:
        return "degree(s)" if self.crs.is_geographic else "CRS unit(s)"

    def _warn_unused(self, train_rows: Sequence[tuple], val_rects: Sequence[tuple], rule: str) -> None:
        """Warn about each image file that gives neither a training area nor a validation
        scene: outside the labels, or too small (or cut too small by the validation area)
        to hold a scene."""
        size = self.inputs.scene_size
        used = {row[0] for row in train_rows} | {rect[0] for rect in val_rects}
        labelled = {path: box for path, _, box in self._rows}
        fix = "lower scene_size" + (" or raise scale (up to 1)" if self.scale < 1 else "") + " to use it"
        for path in self.files:
            if path in used:
                continue
            if path not in labelled:
                log.warning("image %s does not overlap the labels %s: it is left out; give labels that cover it, or "
                            "leave it out of images", path, self.inputs.labels)
                continue
            box = labelled[path]
            w, h = round((box[2] - box[0]) / self.res[0]), round((box[3] - box[1]) / self.res[1])
            width, height = self._sizes.get(path, (0, 0))
            what = (f"its labelled part is {w} x {h} px at the working {self.res[0]:g} {self._units()} per pixel "
                    f"(the file: {width} x {height} px)")
            if self._fits(box):
                log.warning("image %s is left out of training and validation: %s, and the validation area (%s) cuts it "
                            "into pieces smaller than a %d x %d px scene; %s, or validate elsewhere",
                            path, what, rule, size, size, fix)
            else:
                log.warning("image %s is left out of training and validation: %s, smaller than a %d x %d px scene; %s",
                            path, what, size, size, fix)

    def _view(self, rows: Sequence[tuple[str, pd.Interval, Box]]) -> IntersectionDataset:
        """The intersection dataset with its index restricted to ``rows`` (what samplers see)."""
        view = copy.copy(self.dataset)
        view.index = self.dataset.index.iloc[:0].copy() if not rows else type(self.dataset.index)(
            {"filepath": [p for p, _, _ in rows]},
            index=pd.IntervalIndex([i for _, i, _ in rows], closed="both", name="datetime"),
            geometry=[shapely.box(*b) for _, _, b in rows],
            crs=self.dataset.index.crs,
        )
        return view

    # ------------------------------------------------------------------ loaders
    def train_sampler(self) -> RandomGeoSampler:
        """Random training scenes (torchgeo's sampler over the training rectangles)."""
        return RandomGeoSampler(self._view(self._train_rows), size=self.inputs.scene_size, length=self.inputs.scenes_per_epoch)

    def val_queries(self) -> list[tuple[slice, slice, slice]]:
        """The validation scenes (a grid over the validation area)."""
        return [q for _, q in self._val_scenes]

    def loader_parts(self, train: bool, spec: SampleSpec) -> tuple["GeoSceneDataset", Any]:
        """The dataset and sampler of the training (``train``) or validation loader."""
        sampler = self.train_sampler() if train else self.val_queries()
        return GeoSceneDataset(self, spec, len(sampler)), sampler


def _clamp(query: tuple[slice, slice, slice], rect: Box) -> tuple[slice, slice, slice]:
    """Shift a grid query back inside ``rect`` (torchgeo's grid lets the last one overhang)."""
    x, y, t = query
    w, h = x.stop - x.start, y.stop - y.start
    x0 = min(max(x.start, rect[0]), rect[2] - w)
    y0 = min(max(y.start, rect[1]), rect[3] - h)
    return slice(x0, x0 + w), slice(y0, y0 + h), t


# --------------------------------------------------------------------------- samples


class _GeoScene:
    """One scene read through torchgeo, offering what :class:`GLNetSceneDataset` reads."""

    def __init__(self, scenes: GeoScenes, query: tuple[slice, slice, slice]) -> None:
        x, y, t = query
        self.scenes = scenes
        self.bounds: Box = (x.start, y.start, x.stop, y.stop)
        self.time = slice(t.start, t.stop)
        self.height = max(1, round((y.stop - y.start) / scenes.res[1]))
        self.width = max(1, round((x.stop - x.start) / scenes.res[0]))
        path = scenes._file_at(pd.Interval(t.start, t.stop, closed="both"))
        self.path = path
        self.footprint = scenes.footprints[path]
        self._full: tuple[np.ndarray, np.ndarray] | None = None

    def _query(self, shape: tuple[int, int]) -> tuple[slice, slice, slice]:
        x0, y0, x1, y1 = self.bounds
        return slice(x0, x1, (x1 - x0) / shape[1]), slice(y0, y1, (y1 - y0) / shape[0]), self.time

    def _image(self, shape: tuple[int, int]) -> np.ndarray:
        with _quiet():
            image = self.scenes.images[self._query(shape)]["image"].numpy()
        return fit_shape(image, shape, 0)

    def _ids(self, shape: tuple[int, int]) -> np.ndarray:
        with _quiet():
            mask = self.scenes.labels.dataset[self._query(shape)]["mask"]
        ids = self.scenes.labels.ids(mask, self.bounds, shape)
        inside = coverage(self.footprint, self.bounds, shape)
        if self.scenes.masked.get(self.path):
            inside &= image_valid_on_grid(self.path, self.scenes.crs, self.bounds, shape)
        return np.where(inside, ids, NODATA_ID).astype(np.uint8)

    def _scene(self) -> tuple[np.ndarray, np.ndarray]:
        if self._full is None:
            shape = (self.height, self.width)
            self._full = (self._image(shape), self._ids(shape))
        return self._full

    # the reader interface of glgeo.datasets.GLNetSceneDataset
    def global_image(self, size: int) -> np.ndarray:
        return self._image((size, size))

    def global_label(self, size: int) -> np.ndarray:
        return self._ids((size, size))

    def patch(self, top: int, left: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        image, ids = self._scene()
        return image[:, top : top + height, left : left + width], ids[top : top + height, left : left + width]

    def scene_label(self, height: int, width: int) -> np.ndarray:
        return nearest_resize(self._scene()[1], height, width)

    def close(self) -> None:
        self._full = None


class GeoSceneDataset(GLNetSceneDataset):
    """GLNet samples of scenes drawn from imagery and labels; indexed by torchgeo queries.

    Args:
        scenes: the intersected imagery and labels.
        spec: what each sample holds (``spec.scale`` is already in the working resolution).
        length: scenes per pass (the sampler's length).
    """

    def __init__(self, scenes: GeoScenes, spec: SampleSpec, length: int) -> None:
        self.scenes = scenes
        self.spec = spec
        self.length = length

    def __len__(self) -> int:
        return self.length

    @contextlib.contextmanager
    def open_scene(self, index: Any) -> Iterator[_GeoScene]:
        scene = _GeoScene(self.scenes, index)
        try:
            yield scene
        finally:
            scene.close()


# --------------------------------------------------------------------------- evaluation


def scan_label_raster(path: Path, scheme: ClassScheme, fate: str) -> None:
    """Read a label raster whole (:func:`glgeo.datasets.scan_mask`, remembered in the
    :class:`~glgeo.datasets.MaskScanCache`): a value outside the scheme is an error; a
    declared nodata that is a class's value a warning saying its pixels are ``fate``.

    Raises:
        DatasetError: a value no class of the scheme has.
    """
    cache = MaskScanCache.open()
    scan = cache.scan(path, scheme)
    cache.save()
    if scan.error is not None:
        raise scan.error
    if scan.hidden_class is not None and scan.hidden_pixels:
        info = scan.hidden_class
        log.warning(
            "label raster %s declares nodata %s, the mask value of class %d %r of scheme %r: its %s px of that "
            "value are %s; if they are %s, remove the nodata value from the raster (or set it to a value no class "
            "uses)", path, f"{scan.nodata:g}", info.id, info.name, scheme.name, f"{scan.hidden_pixels:,}", fate,
            info.name,
        )


def truth_on_grid(labels: Path, scheme: ClassScheme, crs: CRS, transform: Affine, shape: tuple[int, int],
                  field_name: str | None = None, layer: str | None = None, image: str | Path | None = None) -> np.ndarray:
    """The labels as class ids on a raster's own grid (north-up), via torchgeo.

    ``image``: the raster's file, named in errors.

    Raises:
        DatasetError: labels that cannot be read or do not cover the grid.
    """
    if transform.b != 0 or transform.d != 0:
        raise InputError("imagery with a rotated geotransform cannot be scored against labels; warp it north-up first")
    res = (abs(transform.a), abs(transform.e))
    source = GeoLabels(labels, scheme, crs, res, field_name, layer)
    if source.is_raster:
        scan_label_raster(source.path, scheme, "left out of the scores")
    height, width = shape
    x0, y1 = transform.c, transform.f
    x1, y0 = x0 + width * res[0], y1 - height * res[1]
    bounds = (x0, y0, x1, y1)
    try:
        with _quiet():
            mask = source.dataset[slice(x0, x1, res[0]), slice(y0, y1, res[1])]["mask"]
    except IndexError:
        def extent(values) -> str:
            return ", ".join(f"{float(v):.3f}".rstrip("0").rstrip(".") for v in values)

        with _quiet():
            covered = extent(source.dataset.index.total_bounds)
        raise DatasetError(
            f"the labels {labels} do not overlap {f'image {image}' if image else 'the image'}: in {crs} the image "
            f"covers ({extent(bounds)}) and the labels ({covered}); score only images the labels cover, or give "
            "labels of that image's area"
        ) from None
    ids = source.ids(mask, bounds, shape)
    if not source.is_raster:
        _outside_the_labels(ids, source, bounds, labels, image)
    return ids


def _outside_the_labels(ids: np.ndarray, source: "GeoLabels", bounds: Box, labels: Path, image: str | Path | None) -> None:
    """Mark as nodata, in place, the pixels of ``ids`` (over ``bounds``) outside the
    polygons' extent (the box around them all, as training draws its scenes inside it):
    no polygon there says nothing of the ground, which was scored as background before
    (footprints of half a tile scored the other half's buildings as misses). Says how many."""
    with _quiet():
        extent = shapely.box(*(float(v) for v in source.dataset.index.total_bounds))
    inside = coverage(extent, bounds, ids.shape)
    outside = int(ids.size - np.count_nonzero(inside))
    if outside:
        ids[~inside] = NODATA_ID
        log.warning(
            "%s: %s of its %s px (%.1f %%) lie outside the extent of the labels %s (the box around their polygons): "
            "not scored, since no polygon there says whether the ground is class 0 or unlabelled; give labels that "
            "cover the whole image to score it all", image or "the image", f"{outside:,}", f"{ids.size:,}",
            100 * outside / ids.size, labels,
        )
