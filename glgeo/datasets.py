"""Training datasets: Inria, DeepGlobe and a user's folder, read as they are published.

Three layouts are found on disk, each as a :class:`SceneCollection` (a list of image/mask
pairs plus the :class:`~glgeo.schemes.ClassScheme` that decodes the masks):

* ``inria``: the layout torchgeo's ``InriaAerialImageLabeling`` expects,
  ``ROOT/AerialImageDataset/train/{images,gt}/<city><n>.tif`` (``ROOT`` may also be the
  ``AerialImageDataset`` or ``train`` folder itself). Masks store buildings as 255.
* ``deepglobe``: the layout torchgeo's ``DeepGlobeLandCover`` expects,
  ``ROOT/data/training_data/{images,masks}/<id>_sat.jpg|<id>_mask.png``; also the
  challenge's own ``ROOT/train/<id>_sat.jpg + <id>_mask.png`` and a plain
  ``ROOT/{images,masks}``. Masks are RGB colour codes, binarised at 128 as the challenge
  prescribes.
* ``folder``: ``ROOT/images/*.tif`` with masks of the same name in ``ROOT/masks`` (or
  ``labels`` / ``gt``), decoded through any scheme: integer values, RGB colours, or a
  single-band mask with a colour table (a palette) for RGB schemes.

Masks become class ids through the scheme. A colour or value the scheme does not know, or a
float mask value that is not a whole number, is a :class:`~glgeo.errors.DatasetError` naming
the file and the value, never a silent class 0; pixels equal to the mask's own nodata value
(and NaN in float masks) become :data:`~glgeo.schemes.NODATA_ID` and are ignored by the losses
and the metrics, as are the pixels the image itself marks as no data (its nodata value, alpha
band or internal mask: GDAL's dataset mask). :meth:`SceneCollection.check` checks every pair
(size, CRS, georeferencing) and reads every mask at full resolution before training.

:class:`GLNetSceneDataset` turns a collection into training samples for GLNet: the whole
scene downsampled to the global size, and (for stages 2 and 3) every patch of the scene's
patch grid, read by windows from the files, with the same random flip and rotation applied
to the global image, the patches, their boxes and the labels. Nothing is preloaded. It
reads a scene through a reader (:meth:`GLNetSceneDataset.open_scene`): windows of the
files here, torchgeo queries for imagery and polygon labels (:mod:`glgeo.geodata`), so both
kinds of input become the same samples.

Why not torchgeo's ``InriaAerialImageLabeling`` and ``DeepGlobeLandCover`` datasets (glgeo
reads the very layouts they expect, ``tests/test_torchgeo_layouts.py`` checks it): they are
``NonGeoDataset``\\ s that load a whole scene per sample as a float tensor (an Inria tile is
5000 x 5000 x 3, 300 MB) with no windowed reads, where GLNet needs one decimated read plus
full-resolution patch windows; their DeepGlobe masks are decoded by exact colour, not
binarised at 128 as the challenge prescribes; their Inria listing pairs images and masks by
sorted position and takes the tile number from the first letters-then-digits run of the
whole path. Nor are these scenes torchgeo ``GeoDataset``\\ s: DeepGlobe's JPEGs carry no
georeferencing at all. Georeferenced imagery with labels of its own goes through torchgeo
(:mod:`glgeo.geodata`).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import math
import os
import re
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterable, Sequence

import numpy as np
import rasterio
import torch
from affine import Affine
from rasterio.enums import MaskFlags, Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from rasterio.windows import Window

from .errors import DatasetError, InputError, InternalError
from .io import labelled_bands
from .resolution import Scale, open_pixels, scaled_size
from .schemes import DEEPGLOBE, INRIA, NODATA_ID, ClassInfo, ClassScheme
from .splits import DATASET_KINDS, DatasetKind
from .tiling import PatchGrid

log = logging.getLogger(__name__)


#: The DeepGlobe challenge's rule: mask channels are binarised at 128 before decoding.
DEEPGLOBE_RGB_THRESHOLD = 128

_RASTER_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".vrt", ".img", ".jp2")
_INRIA_NAME = re.compile(r"^(?P<city>[a-z][a-z_-]*?)(?P<number>\d+)$")

#: Pixels per read when masks are scanned at full resolution (:func:`scan_mask`).
_SCAN_PIXELS = 1 << 22

#: A mask's georeferencing may differ from its image's by this share of a pixel.
_GRID_TOLERANCE_PX = 0.01


# --------------------------------------------------------------------------- collections


@dataclass(frozen=True)
class ScenePair:
    """One labelled scene: an image file and its mask file.

    Args:
        name: the scene's id (``austin1``, ``855``, a file stem), unique in its collection.
        image: the image raster.
        mask: the mask raster, on the same pixel grid.
        group: the scene's group, used by leave-groups-out splits (Inria: the city).
    """

    name: str
    image: Path
    mask: Path
    group: str = ""


#: Ground sample distance of the published datasets' imagery, in metres (DeepGlobe 2018
#: land cover: 50 cm; Inria Aerial Image Labeling: 30 cm).
PUBLISHED_GSD = {"deepglobe": 0.5, "inria": 0.3}


@dataclass(frozen=True)
class SceneCollection:
    """The labelled scenes of a dataset and how to decode their masks.

    Args:
        kind: the layout it was read from (``inria``, ``deepglobe``, ``folder``).
        root: the folder it was read from.
        scheme: the class scheme that decodes the masks and names the classes.
        scenes: the scenes, sorted by name.
        rgb_threshold: for RGB masks, binarise each channel at this value before decoding
            (DeepGlobe's rule); ``None`` decodes exact colours.
    """

    kind: str
    root: Path
    scheme: ClassScheme
    scenes: tuple[ScenePair, ...]
    rgb_threshold: int | None = None
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = [s.name for s in self.scenes]
        if len(set(names)) != len(names):
            dupes = sorted({n for n in names if names.count(n) > 1})
            raise DatasetError(f"{self.root}: scene names must be unique, repeated: {', '.join(dupes[:5])}")
        object.__setattr__(self, "_index", {n: i for i, n in enumerate(names)})

    def __len__(self) -> int:
        return len(self.scenes)

    @property
    def names(self) -> list[str]:
        """Scene names in collection order."""
        return [s.name for s in self.scenes]

    def scene(self, name: str) -> ScenePair:
        """The scene called ``name``.

        Raises:
            DatasetError: no scene has that name.
        """
        try:
            return self.scenes[self._index[name]]
        except KeyError:
            raise DatasetError(f"scene {name!r} is not in the {self.kind} dataset at {self.root}") from None

    def subset(self, names: Iterable[str]) -> "SceneCollection":
        """The collection restricted to ``names`` (in that order)."""
        return SceneCollection(
            kind=self.kind,
            root=self.root,
            scheme=self.scheme,
            scenes=tuple(self.scene(n) for n in names),
            rgb_threshold=self.rgb_threshold,
        )

    @property
    def gsd(self) -> float | None:
        """Metres per pixel of the imagery: the median over the scenes' georeferencing (with
        a warning when the scenes differ by more than :data:`~glgeo.resolution.SCALE_TOLERANCE`),
        else the published figure of the layout (:data:`PUBLISHED_GSD`: DeepGlobe's JPEGs
        have none); ``None`` when neither says."""
        from .resolution import SCALE_TOLERANCE, square_side

        values = []
        for pair in self.scenes:
            with open_raster(pair.image) as src:
                # a scene in degrees is read with square ground pixels (_axis_scale): their side
                gsd = square_side(src.crs if src.crs else None, src.transform, src.height, src.width)
            if gsd is not None:
                values.append(gsd)
        if not values:
            return PUBLISHED_GSD.get(self.kind)
        median = float(np.median(values))
        if max(values) > min(values) * (1 + SCALE_TOLERANCE):
            log.warning(
                "the %d scenes' pixels range from %.3g to %.3g m; taking the median, %.3g m, as their resolution "
                "(resample them to one resolution to train one model)", len(values), min(values), max(values), median,
            )
        return median

    def check(self) -> None:
        """Check the scenes before training: every pair shares size, CRS and georeferencing
        (:func:`check_pair`), and every mask holds only the scheme's values, read at full
        resolution (:meth:`scan_masks`, which also warns where a mask's nodata is a class).

        Raises:
            DatasetError: a file is unreadable, a pair's sizes, CRSs or transforms differ, or
                a mask holds values outside the scheme.
        """
        for pair in self.scenes:
            check_pair(pair)
        self.scan_masks()

    def check_bands(self, bands: Sequence[int] | None = None) -> None:
        """Choose every scene's bands before training (:func:`scene_bands`), so an image that
        cannot be read as RGB stops the run at once, not when an epoch first draws it. With
        ``bands=None``, one warning names the images whose colour labels choose other bands
        than their first three (a BGR file: 3, 2, 1), which are read as labelled, as
        ``glgeo segment`` reads scenes.

        Raises:
            DatasetError: an image lacks ``bands``, or has neither labels nor three
                non-alpha bands.
        """
        relabelled: list[tuple[ScenePair, tuple[int, ...]]] = []
        for pair in self.scenes:
            with open_raster(pair.image) as src:
                chosen = scene_bands(src, bands, pair)
            if bands is None and chosen != (1, 2, 3):
                relabelled.append((pair, chosen))
        if relabelled:
            shown = "; ".join(f"{pair.image.name}: bands {','.join(map(str, chosen))}" for pair, chosen in relabelled[:3])
            more = f" and {len(relabelled) - 3} more" if len(relabelled) > 3 else ""
            log.warning(
                "%d of %d images label bands other than their first three as red, green and blue (%s%s): each is "
                "read as labelled, as glgeo segment reads scenes; pass bands=(1, 2, 3) to read the first three",
                len(relabelled), len(self.scenes), shown, more,
            )

    def scan_masks(self) -> None:
        """Read every mask at full resolution, block by block, and check its values against
        the scheme (:func:`scan_mask`); the first decimated read or the middle of an epoch is
        too late to find a stray value.

        A mask whose declared nodata is a class value loses that class's pixels (they are
        ignored by the losses): one warning per value names the class, the masks and the
        pixel count.

        A mask unchanged since an earlier scan for the same scheme is not read again
        (:class:`MaskScanCache`).

        Raises:
            DatasetError: a mask holds a value or colour the scheme does not know, or a
                float value that is not a whole number: the first such mask with its exact
                pixel counts, and how many more there are.
        """
        failures: list[tuple[ScenePair, DatasetError]] = []
        hidden: dict[tuple[float, int], list[tuple[Path, int]]] = {}
        empty: list[Path] = []
        cache = MaskScanCache.open()
        for pair in self.scenes:
            scan = cache.scan(pair.mask, self.scheme, self.rgb_threshold)
            if scan.error is not None:
                failures.append((pair, scan.error))
            elif scan.labelled == 0:
                empty.append(pair.mask)
            if scan.hidden_class is not None and scan.hidden_pixels:
                hidden.setdefault((scan.nodata, scan.hidden_class.id), []).append((pair.mask, scan.hidden_pixels))
        cache.save()
        for (nodata, cid), masks in hidden.items():
            info = self.scheme.classes[cid]
            what = (f"class {cid} {info.name!r} of scheme {self.scheme.name!r}: "
                    f"{sum(n for _, n in masks):,} px of that value are ignored in training")
            if len(masks) == 1:
                whose, which = f"mask {masks[0][0]} declares", "the mask"
            else:
                listed = ", ".join(f"{path} ({n:,} px)" for path, n in masks[:3])
                whose, which = f"{len(masks)} masks declare", "those masks"
                what += f" ({listed}{f' and {len(masks) - 3} more' if len(masks) > 3 else ''})"
            log.warning(
                "%s nodata %s, the mask value of %s; if they are %s, remove the nodata value from %s "
                "(or set it to a value no class uses)", whose, _number(nodata), what, info.name, which,
            )
        if empty:
            log.warning(
                "%d mask%s no labelled pixel (all nodata): %s; %s nothing to learn from or to score",
                len(empty), "s have" if len(empty) > 1 else " has", ", ".join(map(str, empty[:3]))
                + (f" and {len(empty) - 3} more" if len(empty) > 3 else ""), "their scenes give" if len(empty) > 1 else "its scene gives",
            )
        if failures:
            message = str(failures[0][1])
            others = [str(p.mask) for p, _ in failures[1:]]
            if len(others) == 1:
                message += f" (1 more mask also holds values outside the scheme: {others[0]})"
            elif others:
                listed = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
                message += f" ({len(others)} more masks also hold values outside the scheme: {listed})"
            raise DatasetError(message)


def open_dataset(
    kind: DatasetKind | str,
    root: str | Path,
    scheme: ClassScheme | None = None,
) -> SceneCollection:
    """Find the labelled scenes of a dataset folder.

    Args:
        kind: ``inria``, ``deepglobe`` or ``folder``.
        root: the dataset folder.
        scheme: the class scheme; required for ``folder``, defaults to the benchmark's own
            scheme for ``inria`` and ``deepglobe``.

    Raises:
        DatasetError: the folder is missing, has the wrong layout or holds no pairs; the
            message says which layout was expected.
        InputError: unknown kind, or ``folder`` without a scheme.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset folder {str(root)!r} does not exist; pass the folder that holds the {kind} data")
    if kind == "inria":
        return find_inria(root, scheme or INRIA)
    if kind == "deepglobe":
        return find_deepglobe(root, scheme or DEEPGLOBE)
    if kind == "folder":
        if scheme is None:
            raise InputError("a folder dataset needs a class scheme: pass scheme=NAME (a registered scheme or a ClassScheme)")
        return find_folder(root, scheme)
    raise InputError(f"unknown dataset kind {kind!r}; choose from: {', '.join(DATASET_KINDS)}")


def _rasters(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in _RASTER_SUFFIXES)


def find_inria(root: Path, scheme: ClassScheme = INRIA) -> SceneCollection:
    """Inria Aerial Image Labeling training tiles (the layout torchgeo expects).

    Raises:
        DatasetError: no ``images``/``gt`` folders, an image without its mask, or a tile
            name that is not ``<city><number>``.
    """
    candidates = [root / "AerialImageDataset" / "train", root / "train", root]
    base = next((c for c in candidates if (c / "images").is_dir() and (c / "gt").is_dir()), None)
    if base is None:
        raise DatasetError(
            f"{root} is not an Inria Aerial Image Labeling folder: expected "
            "ROOT/AerialImageDataset/train/images/<city><n>.tif with masks in "
            "ROOT/AerialImageDataset/train/gt/<city><n>.tif (as published; torchgeo's layout)"
        )
    scenes = []
    for image in _rasters(base / "images"):
        match = _INRIA_NAME.match(image.stem)
        if match is None:
            raise DatasetError(f"{image}: Inria tiles are named <city><number>.tif (e.g. austin1.tif)")
        mask = base / "gt" / image.name
        if not mask.is_file():
            raise DatasetError(f"{image} has no mask: expected {mask}")
        scenes.append(ScenePair(image.stem, image, mask, group=match["city"]))
    if not scenes:
        raise DatasetError(f"no .tif tiles in {base / 'images'}; expected <city><n>.tif")
    return SceneCollection("inria", root, scheme, tuple(scenes))


def find_deepglobe(root: Path, scheme: ClassScheme = DEEPGLOBE) -> SceneCollection:
    """DeepGlobe land-cover training images (torchgeo's layout, or the challenge's own).

    Raises:
        DatasetError: none of the known layouts, or an image without its mask.
    """
    layouts = [
        (root / "data" / "training_data" / "images", root / "data" / "training_data" / "masks"),
        (root / "training_data" / "images", root / "training_data" / "masks"),
        (root / "images", root / "masks"),
        (root / "train", root / "train"),
        (root, root),
    ]
    for image_dir, mask_dir in layouts:
        if image_dir.is_dir() and any(image_dir.glob("*_sat.jpg")):
            break
    else:
        raise DatasetError(
            f"{root} is not a DeepGlobe land-cover folder: expected "
            "ROOT/data/training_data/images/<id>_sat.jpg with masks in "
            "ROOT/data/training_data/masks/<id>_mask.png (torchgeo's layout), or the challenge's "
            "ROOT/train/<id>_sat.jpg beside <id>_mask.png"
        )
    scenes = []
    for image in sorted(image_dir.glob("*_sat.jpg")):
        scene_id = image.name[: -len("_sat.jpg")]
        mask = mask_dir / f"{scene_id}_mask.png"
        if not mask.is_file():
            raise DatasetError(f"{image} has no mask: expected {mask}")
        scenes.append(ScenePair(scene_id, image, mask))
    return SceneCollection("deepglobe", root, scheme, tuple(scenes), rgb_threshold=DEEPGLOBE_RGB_THRESHOLD)


def find_folder(root: Path, scheme: ClassScheme) -> SceneCollection:
    """A user's folder: ``ROOT/images/*`` with masks of the same name in ``ROOT/masks``.

    The mask folder may also be called ``labels`` or ``gt``; a mask may carry a ``_mask``
    suffix (``a.tif`` and ``a_mask.tif``).

    Raises:
        DatasetError: no ``images`` or mask folder, or an image without its mask.
    """
    image_dir = root / "images"
    mask_dir = next((root / n for n in ("masks", "labels", "gt") if (root / n).is_dir()), None)
    if not image_dir.is_dir() or mask_dir is None:
        raise DatasetError(
            f"{root} is not a glgeo training folder: expected ROOT/images/<name>.tif and "
            "ROOT/masks/<name>.tif (image/mask GeoTIFF pairs with the same name)"
        )
    scenes = []
    for image in _rasters(image_dir):
        options = [mask_dir / image.name, *(mask_dir / f"{image.stem}_mask{s}" for s in (image.suffix, ".tif", ".png"))]
        mask = next((m for m in options if m.is_file()), None)
        if mask is None:
            raise DatasetError(f"{image} has no mask: expected {mask_dir / image.name}")
        scenes.append(ScenePair(image.stem, image, mask))
    if not scenes:
        raise DatasetError(f"no rasters in {image_dir}; expected image GeoTIFFs")
    return SceneCollection("folder", root, scheme, tuple(scenes))


# --------------------------------------------------------------------------- raster access


def open_raster(path: Path) -> rasterio.io.DatasetReader:
    """Open a raster for reading, as a :class:`~glgeo.errors.DatasetError` when it fails.
    Decimated reads come from the full-resolution pixels, as the engine's
    (:func:`glgeo.resolution.open_pixels`)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return open_pixels(path)
    except RasterioIOError as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from None


def check_pair(pair: ScenePair) -> None:
    """Check that a scene's image and mask share their size, CRS and georeferencing (when
    both are georeferenced: a mask without a transform is taken as on the image's grid).

    Raises:
        DatasetError: unreadable file, different sizes, CRSs or transforms.
    """
    with open_raster(pair.image) as img, open_raster(pair.mask) as msk:
        if (img.height, img.width) != (msk.height, msk.width):
            raise DatasetError(
                f"scene {pair.name!r}: image {pair.image} is {img.width} x {img.height} px but its mask "
                f"{pair.mask} is {msk.width} x {msk.height} px; masks must be on the image's pixel grid"
            )
        if img.crs and msk.crs and img.crs != msk.crs:
            raise DatasetError(
                f"scene {pair.name!r}: image {pair.image} is in {img.crs} but its mask {pair.mask} is in "
                f"{msk.crs}; reproject the mask onto the image's grid"
            )
        offset = _grid_offset(img.transform, msk.transform, img.height, img.width, _crs_units(img.crs or msk.crs))
        if offset is not None:
            raise DatasetError(
                f"scene {pair.name!r}: mask {pair.mask} {offset} its image {pair.image}; masks must be on the "
                "image's pixel grid: fix the georeferencing of the wrong one, or resample the mask onto the image's grid"
            )
        if img.count < 3:
            raise DatasetError(f"scene {pair.name!r}: image {pair.image} has {img.count} band(s); GLNet needs 3 (RGB)")


def _number(value: float) -> str:
    """A value as written in a file's metadata (``0``, ``200.4``, ``nan``)."""
    value = float(value)
    return str(int(value)) if value.is_integer() else str(value)


def _grid_offset(image: Affine, mask: Affine, height: int, width: int, units: str) -> str | None:
    """How a mask's georeferencing differs from its image's (``"is georeferenced 15 m east
    and 0 m north (30 px, 0 px) of"``), or ``None`` when they agree within
    :data:`_GRID_TOLERANCE_PX` of a pixel at every corner, or either has none (GDAL's
    identity transform)."""
    if image.is_identity or mask.is_identity:
        return None
    corners = [(0, 0), (width, 0), (0, height), (width, height)]
    # the mask's corners in the image's pixels
    drift = max(math.hypot(*np.subtract(~image @ (mask @ corner), corner)) for corner in corners)
    if not drift > _GRID_TOLERANCE_PX:
        return None
    dx, dy = mask.c - image.c, mask.f - image.f
    col, row = ~image @ (mask.c, mask.f)
    text = ""
    if math.hypot(col, row) > _GRID_TOLERANCE_PX:
        text = (f"is georeferenced {_number(round(abs(dx), 6))}{units} {'east' if dx >= 0 else 'west'} and "
                f"{_number(round(abs(dy), 6))}{units} {'north' if dy >= 0 else 'south'} "
                f"({_number(round(col, 3))} px, {_number(round(row, 3))} px) of")
    # pixel sizes and rotation that differ by more than float noise (the same grid written
    # by two programs can differ in the 14th digit)
    scale = max(abs(image.a), abs(image.b), abs(image.d), abs(image.e))
    differs = [not math.isclose(m, i, rel_tol=1e-9, abs_tol=1e-12 * scale) for m, i in
               zip((mask.a, mask.b, mask.d, mask.e), (image.a, image.b, image.d, image.e))]
    if any(differs):
        if differs[1] or differs[2]:
            sizes = "is rotated or sheared against"
        else:
            sizes = (f"has pixels of {_number(round(abs(mask.a), 9))} x {_number(round(abs(mask.e), 9))}{units} "
                     f"where they are {_number(round(abs(image.a), 9))} x {_number(round(abs(image.e), 9))}{units} in")
        text = f"{text.replace(' of', ',', 1)} and {sizes}" if text else sizes
    return text


def _crs_units(crs: Any) -> str:
    """A CRS's unit as written after a number (`` m``, ``°``), or `` CRS units``."""
    if not crs:
        return " CRS units"
    if crs.is_geographic:
        return "°"
    units = (crs.linear_units or "").lower()
    return " m" if units in ("metre", "meter", "m", "metres", "meters") else f" {units or 'CRS units'}"


def mask_palette(src: rasterio.io.DatasetReader) -> np.ndarray | None:
    """A single-band mask's colour table as a (256, 3) array, or ``None`` if it has none."""
    if src.count != 1:
        return None
    try:
        cmap = src.colormap(1)
    except ValueError:
        return None
    lut = np.zeros((256, 3), dtype=np.uint8)
    for value, rgba in cmap.items():
        if 0 <= value < 256:
            lut[value] = rgba[:3]
    return lut


def decode_mask(
    mask: np.ndarray,
    scheme: ClassScheme,
    source: str | Path = "mask",
    *,
    rgb_threshold: int | None = None,
    nodata: float | None = None,
    palette: np.ndarray | None = None,
) -> np.ndarray:
    """Class ids (``uint8``, :data:`NODATA_ID` where no data) from a mask as published.

    Args:
        mask: ``(bands, H, W)`` or ``(H, W)`` array as read from the mask file.
        scheme: decodes RGB colours (``mask_encoding == "rgb"``) or integer values.
        source: the file's name, for error messages.
        rgb_threshold: binarise RGB channels at this value first (DeepGlobe's rule).
        nodata: mask value (single-band) that means "no data". NaN in a float mask is no
            data whether declared or not.
        palette: a single-band mask's colour table (256, 3), for RGB schemes.

    Raises:
        DatasetError: the mask holds a colour or value that the scheme does not know, a
            float value that is not a whole number (a mask resampled by interpolation), or
            has the wrong number of bands for the scheme.
    """
    ids, unknown, fractional = _decode(mask, scheme, source, rgb_threshold, nodata, palette)
    if fractional:
        raise _fractional_error(source, fractional, scheme)
    if unknown:
        raise _unknown_error(source, unknown, scheme)
    return ids


def _scheme_keys(scheme: ClassScheme) -> tuple[np.ndarray, Callable[[int], str], str]:
    """The scheme's mask values as integers (RGB colours packed), how to print one, and
    what they are called (``value`` or ``colour``)."""
    if scheme.mask_encoding == "rgb":
        keys = np.array([(v[0] << 16) | (v[1] << 8) | v[2] for v in (c.mask_value for c in scheme.classes)])  # type: ignore[index]
        return keys, lambda k: str(((k >> 16) & 255, (k >> 8) & 255, k & 255)), "colour"
    return np.array([int(c.mask_value) for c in scheme.classes]), str, "value"  # type: ignore[arg-type]


def _expected(scheme: ClassScheme) -> str:
    keys, describe, _ = _scheme_keys(scheme)
    return ", ".join(f"{c.name}={describe(int(k))}" for c, k in zip(scheme.classes, keys))


def _listing(counts: dict[Any, int], describe: Callable[[Any], str]) -> str:
    items = sorted(counts.items())
    text = ", ".join(f"{describe(v)} in {int(n)} px" for v, n in items[:5])
    return text + (f" and {len(items) - 5} more" if len(items) > 5 else "")


def _unknown_error(source: str | Path, unknown: dict[int, int], scheme: ClassScheme) -> DatasetError:
    _, describe, kind = _scheme_keys(scheme)
    return DatasetError(
        f"{source}: {kind} {_listing(unknown, lambda v: describe(int(v)))} is not a class of scheme {scheme.name!r} "
        f"({_expected(scheme)}); fix the mask, declare the value as the mask's nodata, or use a scheme that has it"
    )


def _fractional_error(source: str | Path, fractional: dict[Any, int], scheme: ClassScheme) -> DatasetError:
    return DatasetError(
        f"{source}: value {_listing(fractional, str)} is not a whole number, so no class value of scheme "
        f"{scheme.name!r} ({_expected(scheme)}); a mask resampled by interpolation mixes classes: resample it "
        "with nearest neighbour, or round it and declare the values that mean no data as its nodata"
    )


def _decode(
    mask: np.ndarray,
    scheme: ClassScheme,
    source: str | Path,
    rgb_threshold: int | None,
    nodata: float | None,
    palette: np.ndarray | None,
) -> tuple[np.ndarray, dict[int, int], dict[Any, int]]:
    """:func:`decode_mask` without raising on values: the ids (:data:`NODATA_ID` also where
    a value is unknown or not whole), the unknown keys (packed as :func:`_scheme_keys`) and
    the values that are not whole numbers, each with its pixel count."""
    if mask.ndim == 2:
        mask = mask[None]
    invalid: np.ndarray | None = None
    # the declared nodata of a one-band mask (an RGB mask's nodata is per band, no colour)
    if nodata is not None and not math.isnan(nodata) and (mask.shape[0] == 1 or scheme.mask_encoding != "rgb"):
        invalid = mask[0] == nodata
    fractional: dict[Any, int] = {}
    if np.issubdtype(mask.dtype, np.floating):
        # NaN is no data, declared or not; a value that is not a whole number is no class value
        nan = np.isnan(mask)
        odd = ~nan & ~(np.isfinite(mask) & (mask == np.round(mask)))
        if invalid is not None:
            odd &= ~invalid
        if odd.any():
            values, counts = np.unique(mask[odd], return_counts=True)
            fractional = {v: int(n) for v, n in zip(values, counts)}  # numpy scalars print as stored: 0.9, not 0.8999...
        if nan.any() or odd.any():
            mask = np.where(nan | odd, 0, mask)
            gone = (nan | odd).any(axis=0)
            invalid = gone if invalid is None else invalid | gone
    if scheme.mask_encoding == "rgb":
        if mask.shape[0] == 1 and palette is not None:
            mask = np.moveaxis(palette[mask[0].astype(np.intp) & 255], -1, 0)
        if mask.shape[0] < 3:
            raise DatasetError(
                f"{source}: has {mask.shape[0]} band(s), but scheme {scheme.name!r} codes classes as RGB "
                "colours; give a 3-band mask, a paletted mask, or a scheme with integer mask values"
            )
        rgb = mask[:3].astype(np.int64)
        if rgb_threshold is not None:
            rgb = np.where(rgb >= rgb_threshold, 255, 0)
        packed = (rgb[0] << 16) | (rgb[1] << 8) | rgb[2]
    else:
        if mask.shape[0] != 1:
            raise DatasetError(
                f"{source}: has {mask.shape[0]} bands, but scheme {scheme.name!r} codes classes as integer "
                "values in one band; give a 1-band mask or a scheme with RGB mask colours"
            )
        packed = mask[0].astype(np.int64)
    keys, _, _ = _scheme_keys(scheme)
    order = np.argsort(keys)
    sorted_keys = keys[order]
    pos = np.clip(np.searchsorted(sorted_keys, packed), 0, len(keys) - 1)
    known = sorted_keys[pos] == packed
    if invalid is not None:
        known |= invalid
    unknown: dict[int, int] = {}
    if not known.all():
        bad, counts = np.unique(packed[~known], return_counts=True)
        unknown = {int(b): int(n) for b, n in zip(bad, counts)}
    ids = order[pos].astype(np.uint8)
    if invalid is not None:
        ids[invalid] = NODATA_ID
    if unknown:
        ids[~known] = NODATA_ID
    return ids, unknown, fractional


def nodata_class(nodata: float | None, scheme: ClassScheme, palette: np.ndarray | None = None) -> ClassInfo | None:
    """The class whose mask value a mask's declared ``nodata`` is (for a paletted mask of an
    RGB scheme: whose colour the palette gives that index), or ``None``: a mask that
    declares a class value as nodata loses that class's pixels."""
    if nodata is None or math.isnan(nodata) or not float(nodata).is_integer():
        return None
    keys, _, _ = _scheme_keys(scheme)
    if scheme.mask_encoding == "rgb":
        if palette is None or not 0 <= nodata < 256:
            return None
        r, g, b = (int(v) for v in palette[int(nodata)])
        key = (r << 16) | (g << 8) | b
    else:
        key = int(nodata)
    hits = np.flatnonzero(keys == key)
    return scheme.classes[int(hits[0])] if hits.size else None


@dataclass(frozen=True)
class MaskScan:
    """What :func:`scan_mask` found in a mask read whole at full resolution.

    Attributes:
        path: the mask.
        pixels: its pixel count.
        unknown: values (RGB colours packed) the scheme does not know, with pixel counts.
        fractional: float values that are not whole numbers, with pixel counts.
        nodata: the declared nodata value.
        hidden_class: the class whose value the nodata is (its pixels are ignored), or ``None``.
        hidden_pixels: the pixels of that value.
        error: the :class:`~glgeo.errors.DatasetError` the values make (exact counts), or ``None``.
        labelled: pixels holding a class (not nodata, not unknown).
    """

    path: Path
    pixels: int
    unknown: dict[int, int]
    fractional: dict[Any, int]
    nodata: float | None
    hidden_class: ClassInfo | None
    hidden_pixels: int
    error: DatasetError | None
    labelled: int = 0


def _row_strips(src: Any, pixels: int) -> Iterable[Window]:
    """Windows of whole rows, about ``pixels`` each, aligned on the file's block rows."""
    block = max(1, int(src.block_shapes[0][0]) if src.block_shapes else 1)
    rows = max(block, pixels // max(1, src.width) // block * block)
    for top in range(0, src.height, rows):
        yield Window(0, top, src.width, min(rows, src.height - top))


def _key_counts(
    raw: np.ndarray, scheme: ClassScheme, rgb_threshold: int | None, nodata: float | None, palette: np.ndarray | None
) -> dict[int, int] | None:
    """Pixels per mask key (as :func:`_decode` packs them) of an integer mask, nodata left
    out, by histogram (a scan reads every pixel of a dataset: decoding them is too slow);
    ``None`` where :func:`_decode` must do it (float masks, band counts it refuses)."""
    if raw.dtype.kind not in "ui":
        return None
    rgb = scheme.mask_encoding == "rgb"
    if rgb and raw.shape[0] >= 3:
        if rgb_threshold is not None:
            code = ((raw[0] >= rgb_threshold).astype(np.uint8) << 2) | ((raw[1] >= rgb_threshold).astype(np.uint8) << 1)
            code |= (raw[2] >= rgb_threshold).astype(np.uint8)
            hist = np.bincount(code.ravel(), minlength=8)
            return {(0xFF0000 if c & 4 else 0) | (0xFF00 if c & 2 else 0) | (0xFF if c & 1 else 0): int(n)
                    for c, n in enumerate(hist) if n}
        packed = (raw[0].astype(np.int64) << 16) | (raw[1].astype(np.int64) << 8) | raw[2].astype(np.int64)
        values, counts = np.unique(packed, return_counts=True)
        return {int(v): int(n) for v, n in zip(values, counts)}
    if raw.shape[0] != 1 or (rgb and palette is None):
        return None
    band = raw[0].ravel()
    if band.dtype.itemsize <= 2 and band.dtype.kind == "u":
        hist = np.bincount(band)
        values = np.flatnonzero(hist)
        counts = hist[values]
    else:
        values, counts = np.unique(band, return_counts=True)
    found: dict[int, int] = {}
    for value, n in zip(values.tolist(), counts.tolist()):
        if nodata is not None and value == nodata:
            continue
        if rgb:
            r, g, b = (int(c) for c in palette[value & 255])  # type: ignore[index]
            value = (r << 16) | (g << 8) | b
        found[value] = found.get(value, 0) + n
    return found


class MaskScanCache:
    """Finished mask scans remembered between runs, so a mask is read whole once.

    :meth:`SceneCollection.scan_masks` reads every mask at full resolution before training
    (0.14-0.4 s a mask here: minutes for DeepGlobe's 803), and each ``glgeo train`` of a
    recipe's stages, each resume and each DDP process would read them all again. A scan
    that found nothing wrong is kept in ``mask-scans.json`` under ``GLGEO_CACHE_DIR``
    (default ``$XDG_CACHE_HOME/glgeo``, else ``~/.cache/glgeo``; ``off``: no cache), keyed
    by the mask's real path, inode, size and modification time, the scheme and the RGB threshold:
    a changed mask is scanned again. Scans that found an error are not kept. A cache that
    cannot be read or written is ignored (the masks are scanned).
    """

    #: Scans kept at most (the oldest go first).
    MAX_ENTRIES = 100_000

    def __init__(self, path: Path | None, entries: dict[str, dict[str, Any]]) -> None:
        self.path = path
        self.entries = entries
        self._added = False

    @classmethod
    def open(cls) -> "MaskScanCache":
        """The cache of this machine (``GLGEO_CACHE_DIR``), empty where there is none."""
        folder = os.environ.get("GLGEO_CACHE_DIR")
        if folder == "off":
            return cls(None, {})
        if not folder:
            folder = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache"), "glgeo")
        path = Path(folder) / "mask-scans.json"
        try:
            entries = json.loads(path.read_text())
            if not isinstance(entries, dict):
                entries = {}
        except (OSError, ValueError):
            entries = {}
        return cls(path, entries)

    @staticmethod
    def _key(path: Path, scheme: ClassScheme, rgb_threshold: int | None) -> str | None:
        try:
            st = os.stat(path)
        except OSError:
            return None
        scheme_id = hashlib.sha256(json.dumps(scheme.to_dict(), sort_keys=True).encode()).hexdigest()[:16]
        return f"{os.path.realpath(path)}|{st.st_ino}|{st.st_size}|{st.st_mtime_ns}|{scheme_id}|{rgb_threshold}"

    def scan(self, path: str | Path, scheme: ClassScheme, rgb_threshold: int | None = None) -> MaskScan:
        """:func:`scan_mask`, or its remembered result for an unchanged mask."""
        path = Path(path)
        key = self._key(path, scheme, rgb_threshold) if self.path is not None else None
        kept = self.entries.get(key) if key is not None else None
        if isinstance(kept, dict):
            try:
                hidden = None if kept["hidden"] is None else scheme.classes[int(kept["hidden"])]
                return MaskScan(path, int(kept["pixels"]), {}, {}, kept["nodata"], hidden, int(kept["hidden_pixels"]),
                                None, int(kept["labelled"]))
            except (KeyError, IndexError, TypeError, ValueError):
                pass  # an entry of another layout: scan again
        scan = scan_mask(path, scheme, rgb_threshold)
        if key is not None and scan.error is None:
            self.entries.pop(key, None)
            self.entries[key] = {
                "pixels": scan.pixels, "nodata": scan.nodata, "labelled": scan.labelled,
                "hidden": None if scan.hidden_class is None else scan.hidden_class.id, "hidden_pixels": scan.hidden_pixels,
            }
            self._added = True
        return scan

    def save(self) -> None:
        """Write the scans added (atomically; a failure is ignored: the next run scans again)."""
        if self.path is None or not self._added:
            return
        entries = self.entries
        if len(entries) > self.MAX_ENTRIES:
            entries = dict(list(entries.items())[-self.MAX_ENTRIES:])
        tmp = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".mask-scans.", suffix=".json", dir=self.path.parent)
            with os.fdopen(fd, "w") as out:
                json.dump(entries, out)
            os.replace(tmp, self.path)
        except OSError as exc:
            log.debug("mask scans not remembered (%s): they are read again next time", exc)
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
        self._added = False


def scan_mask(path: str | Path, scheme: ClassScheme, rgb_threshold: int | None = None) -> MaskScan:
    """Read a mask at full resolution, block by block, and count what it holds that the
    scheme cannot decode (:func:`decode_mask`'s rules), and the pixels a nodata that is a
    class value hides.

    Raises:
        DatasetError: an unreadable mask, or one with the wrong band count for the scheme.
    """
    path = Path(path)
    unknown: dict[int, int] = {}
    fractional: dict[Any, int] = {}
    hidden_pixels = labelled = 0
    with open_raster(path) as src:
        bands = list(range(1, min(src.count, 3) + 1))
        palette = mask_palette(src) if scheme.mask_encoding == "rgb" else None
        nodata = src.nodata
        hidden = nodata_class(nodata, scheme, palette) if (len(bands) == 1 or scheme.mask_encoding != "rgb") else None
        known = set(int(k) for k in _scheme_keys(scheme)[0])
        for window in _row_strips(src, _SCAN_PIXELS):
            raw = src.read(bands, window=window)
            counts = _key_counts(raw, scheme, rgb_threshold, nodata, palette)
            if counts is None:  # float masks, wrong band counts: decoded as training decodes them
                ids, bad, odd = _decode(raw, scheme, path, rgb_threshold, nodata, palette)
                labelled += int(np.count_nonzero(ids != NODATA_ID))
            else:
                bad, odd = {k: n for k, n in counts.items() if k not in known}, {}
                labelled += sum(n for k, n in counts.items() if k in known)
            for table, found in ((unknown, bad), (fractional, odd)):
                for value, n in found.items():
                    table[value] = table.get(value, 0) + n
            if hidden is not None:
                hidden_pixels += int(np.count_nonzero(raw[0] == nodata))
        pixels = src.width * src.height
    error = None
    if fractional:
        error = _fractional_error(path, fractional, scheme)
    elif unknown:
        error = _unknown_error(path, unknown, scheme)
    return MaskScan(path, pixels, unknown, fractional, nodata, hidden, hidden_pixels, error, labelled)


def read_mask_ids(
    src: rasterio.io.DatasetReader,
    scheme: ClassScheme,
    *,
    window: Window | None = None,
    out_shape: tuple[int, int] | None = None,
    rgb_threshold: int | None = None,
) -> np.ndarray:
    """Read (part of) a mask and decode it to class ids (nearest resampling when resized).

    Raises:
        DatasetError: the mask holds a colour or value the scheme does not know.
    """
    bands = list(range(1, min(src.count, 3) + 1))
    kwargs: dict[str, Any] = {"window": window, "resampling": Resampling.nearest}
    if out_shape is not None:
        kwargs["out_shape"] = (len(bands), *out_shape)
    raw = src.read(bands, **kwargs)
    palette = mask_palette(src) if scheme.mask_encoding == "rgb" else None
    return decode_mask(raw, scheme, src.name, rgb_threshold=rgb_threshold, nodata=src.nodata, palette=palette)


def image_valid(
    src: rasterio.io.DatasetReader, *, window: Window | None = None, out_shape: tuple[int, int] | None = None
) -> np.ndarray | None:
    """Where (part of) an image holds data: GDAL's dataset mask (its nodata value, alpha
    band or internal mask) read like :func:`read_mask_ids` (nearest), as booleans; ``None``
    when every pixel of the file is valid."""
    if all(MaskFlags.all_valid in flags for flags in src.mask_flag_enums):
        return None
    return src.dataset_mask(window=window, out_shape=out_shape, resampling=Resampling.nearest) > 0


# --------------------------------------------------------------------------- patch geometry


def patch_grid(height: int, width: int, patch: int) -> np.ndarray:
    """Boxes ``(top, left, height, width)`` of a scene's patches, row-major, as ``(N, 4)``.

    The released GLNet grid of :class:`glgeo.tiling.PatchGrid` (the one inference uses);
    along an axis shorter than ``patch`` the patch is clipped to the scene.
    """
    grid = PatchGrid.for_scene(height, width, patch)
    return np.array(
        [(t, l, grid.patch_height, grid.patch_width) for t in grid.row_starts for l in grid.col_starts], dtype=np.int64
    )


def logits_size(size: int) -> int:
    """Side of GLNet's logits for an input side ``size`` (stride 4: two ceil-halvings)."""
    return math.ceil(math.ceil(size / 2) / 2)


def nearest_resize(array: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of the last two axes (pixel centres), for label arrays."""
    in_h, in_w = array.shape[-2:]
    if (in_h, in_w) == (height, width):
        return array
    rows = np.minimum(((np.arange(height) + 0.5) * in_h / height).astype(np.intp), in_h - 1)
    cols = np.minimum(((np.arange(width) + 0.5) * in_w / width).astype(np.intp), in_w - 1)
    return array[..., rows[:, None], cols[None, :]]


@dataclass(frozen=True)
class FlipRotate:
    """A horizontal flip followed by ``k`` quarter turns (numpy's ``rot90`` direction).

    Applied to images (last two axes) and to patch boxes, so a patch cropped from the
    transformed scene at the transformed box equals the transformed patch.
    """

    hflip: bool = False
    k: int = 0

    def __post_init__(self) -> None:
        if self.k not in (0, 1, 2, 3):
            raise InputError(f"quarter turns must be 0-3, got {self.k}")

    @property
    def is_identity(self) -> bool:
        """Whether the transform leaves everything as it is."""
        return not self.hflip and self.k == 0

    def apply(self, array: np.ndarray) -> np.ndarray:
        """Transform an array's last two axes."""
        if self.hflip:
            array = array[..., ::-1]
        if self.k:
            array = np.rot90(array, self.k, axes=(-2, -1))
        return np.ascontiguousarray(array)

    def apply_boxes(self, boxes: np.ndarray, height: int, width: int) -> tuple[np.ndarray, int, int]:
        """Transform ``(N, 4)`` boxes ``(top, left, h, w)`` in a ``height x width`` scene.

        Returns:
            the boxes and the transformed scene's height and width.
        """
        t, l, h, w = (boxes[:, i].copy() for i in range(4))
        if self.hflip:
            l = width - l - w
        for _ in range(self.k):
            # rot90 maps pixel (r, c) of an H x W array to (W - 1 - c, r) of a W x H array.
            t, l, h, w = width - l - w, t, w, h
            height, width = width, height
        return np.stack([t, l, h, w], axis=1), height, width


# --------------------------------------------------------------------------- samples


@dataclass(frozen=True)
class SampleSpec:
    """What each training sample holds.

    Args:
        global_size: side of the downsampled whole scene (the global branch's input).
        patch_size: side of the full-resolution patches (the local branch's input).
        with_patches: read the patch grid (stages 2 and 3) or only the global image.
        with_scene_label: also give the whole mask at logits resolution (validation).
        augment: random horizontal flip and 0/90/180/270 degree rotation per scene.
        bands: the image's RGB band indexes (1-based); ``None``: each scene's bands labelled
            red, green and blue, else its three non-alpha bands, as ``glgeo segment`` reads
            scenes (:func:`glgeo.io.labelled_bands`).
        scale: read scenes at this fraction of their resolution (``0.25``: a 2448 px scene
            becomes 612 px; patches are cut from the resampled scene). ``1`` is the paper's
            setting; smaller values make short CPU runs possible.
        crop_jitter: scale jitter: each sample is a random window of the scene whose
            sides are a fraction drawn uniformly from ``[1 - crop_jitter, 1]`` of the
            scene's (same aspect), read as if it were the whole scene, so the global image
            (always ``global_size``) sees the ground up to ``1 / (1 - crop_jitter)`` times
            finer. ``0``: the whole scene.
        mosaic: share of samples cut from a 2 x 2 mosaic of four scenes of the collection
            (the drawn one and three at random) instead of one scene: a window of one
            scene's size (times the crop jitter's fraction) at a random place of the
            mosaic, so the views cut across scenes as a large scene's context windows cut
            across its land; the window's centre lies on the drawn scene, so at least a
            quarter of it is that scene (class-balanced sampling keeps its effect).
            ``0``: never. Scenes of different sizes are never mosaicked.
    """

    global_size: int = 508
    patch_size: int = 508
    with_patches: bool = False
    with_scene_label: bool = False
    augment: bool = False
    bands: tuple[int, int, int] | None = None
    scale: float = 1.0
    crop_jitter: float = 0.0
    mosaic: float = 0.0

    def __post_init__(self) -> None:
        if not 0 <= self.mosaic <= 1:
            raise InputError(f"the mosaic share must be in [0, 1], got {self.mosaic}")
        if not 0 < self.scale <= 1:
            raise InputError(f"scene scale must be in (0, 1], got {self.scale}")
        if not 0 <= self.crop_jitter < 1:
            raise InputError(f"crop (scale) jitter must be in [0, 1), got {self.crop_jitter}")
        if self.global_size < 32 or self.patch_size < 64:
            raise InputError(f"global size {self.global_size} / patch size {self.patch_size} too small; use >= 32 / >= 64")
        if self.bands is not None and len(self.bands) != 3:
            raise InputError(f"give three bands (red, green, blue), got {self.bands}")


class GLNetSceneDataset(torch.utils.data.Dataset):
    """GLNet training samples, one per scene, read by windows from the scene's files.

    Each sample is a dict of tensors: ``image`` (3, g, g) and ``label`` (g/4, g/4); with
    patches also ``patches`` (N, 3, p, p), ``patch_labels`` (N, p/4, p/4) and ``boxes``
    (N, 4) ``(top, left, h, w)`` in the (transformed) scene, ``scene_size`` (2,); with the
    scene label ``scene_label`` (H/4, W/4: the scene at logits resolution). Images keep the
    file's data type (scaled on the device); labels are ``uint8`` class ids with
    :data:`NODATA_ID` where there is no data; ``transform`` is the ``(hflip, k)`` drawn.

    Args:
        collection: the scenes.
        spec: what a sample holds.
    """

    def __init__(self, collection: SceneCollection, spec: SampleSpec) -> None:
        self.collection = collection
        self.spec = spec

    def __len__(self) -> int:
        return len(self.collection)

    def draw_transform(self) -> FlipRotate:
        """A random flip/rotation (identity without augmentation).

        Drawn from torch's random generator, which Lightning and the DataLoader seed per
        worker and per epoch, so every epoch sees new draws and a seeded run repeats.
        """
        if not self.spec.augment:
            return FlipRotate()
        return FlipRotate(hflip=bool(torch.randint(2, ()).item()), k=int(torch.randint(4, ()).item()))

    def draw_window(self, height: int, width: int, within: tuple[int, int] | None = None) -> Window:
        """The part a sample covers of a ``height x width`` scene (file pixels): the whole
        scene, or with ``crop_jitter`` a random window of the same aspect (torch's
        generator). With ``within`` (rows, columns: a mosaic whose top-left part is the
        scene), placed at random inside it with its centre on the scene, so at least a
        quarter of the window is the scene the sampler drew."""
        jitter = self.spec.crop_jitter
        rows, cols = within or (height, width)
        if jitter <= 0 and within is None:
            return Window(0, 0, width, height)
        side = 1.0 - jitter * float(torch.rand(()))
        h, w = max(1, round(height * side)), max(1, round(width * side))
        last_top, last_left = rows - h, cols - w
        if within is not None:  # centre (top + h / 2, left + w / 2) inside the scene
            last_top = min(last_top, math.ceil(height - h / 2) - 1)
            last_left = min(last_left, math.ceil(width - w / 2) - 1)
        top = int(torch.randint(max(0, last_top) + 1, ()))
        left = int(torch.randint(max(0, last_left) + 1, ()))
        return Window(left, top, w, h)

    def open_scene(self, index: Any) -> "ContextManager[Any]":
        """A reader of scene ``index``: ``height``/``width`` (at the spec's scale) and
        ``global_image``, ``global_label``, ``patch``, ``scene_label`` (see
        :class:`_FileScene`); with the spec's ``mosaic`` share, a window of a 2 x 2 mosaic
        of it and three other scenes (:class:`_MosaicScene`).
        :class:`glgeo.geodata.GeoSceneDataset` reads through torchgeo."""
        scenes = self.collection.scenes
        if self.spec.mosaic > 0 and len(scenes) > 1 and float(torch.rand(())) < self.spec.mosaic:
            others = [int(i) for i in torch.randint(len(scenes), (3,))]
            pairs = [scenes[index]] + [scenes[i] for i in others]
            mosaic = _MosaicScene.open(self.collection, pairs, self.spec, self.draw_window)
            if mosaic is not None:
                return mosaic
        return _FileScene(self.collection, scenes[index], self.spec, self.draw_window)

    def __getitem__(self, index: Any) -> dict[str, torch.Tensor]:
        spec = self.spec
        tf = self.draw_transform()
        g, gq = spec.global_size, logits_size(spec.global_size)
        number = index if isinstance(index, int) else -1
        sample: dict[str, torch.Tensor] = {"index": torch.tensor(number), "transform": torch.tensor([tf.hflip, tf.k])}
        with self.open_scene(index) as scene:
            height, width = scene.height, scene.width
            sample["image"] = torch.from_numpy(_as_tensor_dtype(tf.apply(scene.global_image(g))))
            sample["label"] = torch.from_numpy(tf.apply(scene.global_label(gq)))
            if spec.with_patches:
                self._add_patches(sample, scene, tf, height, width)
            else:  # the view's size on the working grid (what a pixel of the global image is)
                sample["scene_size"] = torch.tensor([height, width])
            if spec.with_scene_label:
                scene_label = scene.scene_label(logits_size(height), logits_size(width))
                sample["scene_label"] = torch.from_numpy(tf.apply(scene_label))
        return sample

    def _add_patches(self, sample: dict, scene: Any, tf: FlipRotate, height: int, width: int) -> None:
        boxes = patch_grid(height, width, self.spec.patch_size)
        patches, labels = [], []
        for top, left, h, w in boxes:
            patch, ids = scene.patch(int(top), int(left), int(h), int(w))
            ids = tf.apply(ids)
            patches.append(tf.apply(patch))
            labels.append(nearest_resize(ids, logits_size(ids.shape[0]), logits_size(ids.shape[1])))
        boxes, th, tw = tf.apply_boxes(boxes, height, width)
        sample["patches"] = torch.from_numpy(_as_tensor_dtype(np.stack(patches)))
        sample["patch_labels"] = torch.from_numpy(np.stack(labels))
        sample["boxes"] = torch.from_numpy(boxes)
        sample["scene_size"] = torch.tensor([th, tw])


def context_footprint(collection: SceneCollection, names: Sequence[str], scale: float) -> int:
    """The context footprint a model trained on these scenes gets: the median of their
    longer sides once read at ``scale`` (each training scene is one global view; see
    :attr:`glgeo.models.checkpoint.Checkpoint.footprint`; a scene in degrees with square
    ground pixels, as training reads it)."""
    sides = []
    for name in names:
        with rasterio.open(collection.scene(name).image) as src:
            sides.append(max(scaled_size(src.height, src.width, _axis_scale(src, scale))))
    if not sides:
        raise InputError("no training scenes to measure the context footprint on")
    return int(np.median(sides))


class _FileScene:
    """A scene of a collection read by windows from its image and mask files.

    Args:
        collection: the collection (scheme, RGB threshold).
        pair: the scene's files.
        spec: bands and scale.
        draw_area: ``draw_area(height, width)``: the window of the file (in its pixels) the
            sample covers (crop jitter); ``None``: the whole file.
    """

    def __init__(
        self,
        collection: SceneCollection,
        pair: ScenePair,
        spec: SampleSpec,
        draw_area: Callable[[int, int], Window] | None = None,
    ) -> None:
        self.collection = collection
        self.spec = spec
        self.img = open_raster(pair.image)
        try:
            self.msk = open_raster(pair.mask)
            self.bands = scene_bands(self.img, spec.bands, pair)
        except Exception:
            self.close()
            raise
        # pixels the image marks as no data (nodata, alpha, internal mask) are labelled nodata
        self._masked = not all(MaskFlags.all_valid in flags for flags in self.img.mask_flag_enums)
        whole = Window(0, 0, self.img.width, self.img.height)
        self.area = whole if draw_area is None else draw_area(self.img.height, self.img.width)
        self._region = None if self.area == whole else self.area
        self.scale = _axis_scale(self.img, spec.scale)
        self.height, self.width = scaled_size(int(self.area.height), int(self.area.width), self.scale)

    def __enter__(self) -> "_FileScene":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for name in ("img", "msk"):
            src = getattr(self, name, None)
            if src is not None:
                src.close()

    def _ids(self, **kwargs: Any) -> np.ndarray:
        """Class ids of (part of) the mask, :data:`NODATA_ID` where the image has no data."""
        ids = read_mask_ids(self.msk, self.collection.scheme, rgb_threshold=self.collection.rgb_threshold, **kwargs)
        if self._masked:
            valid = image_valid(self.img, **kwargs)
            if valid is not None:
                ids = np.where(valid, ids, NODATA_ID).astype(np.uint8)
        return ids

    def global_image(self, size: int) -> np.ndarray:
        """The scene decimated to ``size`` x ``size`` (bilinear), raw values."""
        return self.img.read(
            list(self.bands), window=self._region, out_shape=(3, size, size), resampling=Resampling.bilinear
        )

    def global_label(self, size: int) -> np.ndarray:
        """The scene's mask as class ids at ``size`` x ``size`` (nearest)."""
        return self._ids(window=self._region, out_shape=(size, size))

    def patch(self, top: int, left: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """The patch at ``(top, left)`` of the scene at the spec's scale: image and ids."""
        area = self.area
        sy, sx = area.height / self.height, area.width / self.width
        window = Window(area.col_off + left * sx, area.row_off + top * sy, width * sx, height * sy)
        image = self.img.read(list(self.bands), window=window, out_shape=(3, height, width), resampling=Resampling.bilinear)
        return image, self._ids(window=window, out_shape=(height, width))

    def scene_label(self, height: int, width: int) -> np.ndarray:
        """The scene's mask as class ids at ``height`` x ``width`` (nearest)."""
        return self._ids(window=self._region, out_shape=(height, width))


def _axis_scale(src: rasterio.io.DatasetReader, scale: float) -> Scale:
    """The scale a scene is read at in training: ``scale``, or where its pixels are not
    square on the ground (a scene in degrees) a scale of its own on each axis, so that they
    are (:func:`glgeo.resolution.square_scale`, as ``glgeo segment`` reads it)."""
    if src.crs is None:
        return scale
    return _square_scale_of(src.crs.to_wkt(), tuple(src.transform)[:6], src.height, src.width, scale)


@functools.lru_cache(maxsize=4096)
def _square_scale_of(wkt: str, transform: tuple[float, ...], height: int, width: int, scale: float) -> Scale:
    from .resolution import ground_pixel_sides, square_scale

    sides = ground_pixel_sides(rasterio.crs.CRS.from_wkt(wkt), Affine(*transform), height, width)
    return square_scale(scale, sides, None, None)


class _MosaicScene:
    """A window of a 2 x 2 mosaic of four scenes of the same size, read from their files.

    The mosaic is never built: each read (global image, patch, labels) is assembled from
    the parts of the four files it covers, each read at its own share of the output.
    Same interface as :class:`_FileScene`. Open with :meth:`open`.
    """

    def __init__(self, scenes: list[_FileScene], area: Window, spec: SampleSpec) -> None:
        self.scenes = scenes
        self.spec = spec
        first = scenes[0]
        self.file_height, self.file_width = first.img.height, first.img.width
        self.area = area  # in the mosaic's file pixels (2 x 2 scenes)
        self.height, self.width = scaled_size(int(area.height), int(area.width), first.scale)

    @classmethod
    def open(
        cls, collection: SceneCollection, pairs: list[ScenePair], spec: SampleSpec, draw_area: Callable[..., Window]
    ) -> "_MosaicScene | None":
        """The mosaic of ``pairs`` (row-major: top left, top right, bottom left, bottom
        right) and a window of one scene's size drawn by ``draw_area(height, width,
        within)``; ``None`` when the scenes differ in size."""
        scenes: list[_FileScene] = []
        try:
            for pair in pairs:
                scenes.append(_FileScene(collection, pair, spec))
            sizes = {(s.img.height, s.img.width) for s in scenes}
            if len(sizes) > 1:
                for s in scenes:
                    s.close()
                return None
            (height, width), = sizes
            return cls(scenes, draw_area(height, width, (2 * height, 2 * width)), spec)
        except Exception:
            for s in scenes:
                s.close()
            raise

    def __enter__(self) -> "_MosaicScene":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for scene in self.scenes:
            scene.close()

    def _read(self, window: Window, out_shape: tuple[int, int], labels: bool) -> np.ndarray:
        """``window`` of the mosaic (its file pixels) read at ``out_shape``: RGB (bilinear)
        or class ids (nearest), assembled from the scenes it covers."""
        oh, ow = out_shape
        top, left = float(window.row_off), float(window.col_off)
        sy, sx = oh / float(window.height), ow / float(window.width)
        fh, fw = self.file_height, self.file_width
        out: np.ndarray | None = None
        for k, scene in enumerate(self.scenes):
            qy, qx = (k // 2) * fh, (k % 2) * fw
            y0, y1 = max(top, qy), min(top + float(window.height), qy + fh)
            x0, x1 = max(left, qx), min(left + float(window.width), qx + fw)
            if y1 <= y0 or x1 <= x0:
                continue
            r0, r1 = round((y0 - top) * sy), round((y1 - top) * sy)
            c0, c1 = round((x0 - left) * sx), round((x1 - left) * sx)
            if r1 <= r0 or c1 <= c0:
                continue
            part = Window(x0 - qx, y0 - qy, x1 - x0, y1 - y0)
            if labels:
                data = scene._ids(window=part, out_shape=(r1 - r0, c1 - c0))
            else:
                data = scene.img.read(
                    list(scene.bands), window=part, out_shape=(3, r1 - r0, c1 - c0), resampling=Resampling.bilinear
                )
            if out is None:
                out = np.zeros(((oh, ow) if labels else (3, oh, ow)), dtype=data.dtype)
            out[..., r0:r1, c0:c1] = data
        if out is None:
            raise InternalError(f"mosaic window {window} covers none of its scenes")
        return out

    def global_image(self, size: int) -> np.ndarray:
        """The window decimated to ``size`` x ``size`` (bilinear), raw values."""
        return self._read(self.area, (size, size), labels=False)

    def global_label(self, size: int) -> np.ndarray:
        """The window's class ids at ``size`` x ``size`` (nearest)."""
        return self._read(self.area, (size, size), labels=True)

    def patch(self, top: int, left: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """The patch at ``(top, left)`` of the window at the spec's scale: image and ids."""
        area = self.area
        sy, sx = area.height / self.height, area.width / self.width
        window = Window(area.col_off + left * sx, area.row_off + top * sy, width * sx, height * sy)
        return self._read(window, (height, width), labels=False), self._read(window, (height, width), labels=True)

    def scene_label(self, height: int, width: int) -> np.ndarray:
        """The window's class ids at ``height`` x ``width`` (nearest)."""
        return self._read(self.area, (height, width), labels=True)


def scene_bands(src: Any, bands: Sequence[int] | None, pair: ScenePair) -> tuple[int, ...]:
    """The 1-based bands a training scene is read from: ``bands`` where given (checked
    against the image), else those its image labels red, green and blue, or its three
    non-alpha bands (:func:`glgeo.io.labelled_bands`), as ``glgeo segment`` reads scenes.

    Raises:
        DatasetError: bands the image lacks; no labels and not three non-alpha bands.
    """
    if bands is None:
        try:
            return labelled_bands(src, 3)[0]
        except InputError as exc:
            raise DatasetError(f"scene {pair.name!r}: {pair.image}: {exc}") from None
    if max(bands) > src.count:
        raise DatasetError(
            f"scene {pair.name!r}: {pair.image} has {src.count} band{'s' if src.count != 1 else ''}; bands "
            f"{', '.join(map(str, bands))} were asked for "
            "(pass bands=(R, G, B) with 1-based band numbers)"
        )
    return tuple(bands)


def _as_tensor_dtype(array: np.ndarray) -> np.ndarray:
    # torch has no uint16/uint32: widen them; uint8 stays compact for the transfer.
    if array.dtype == np.uint8 or array.dtype == np.float32:
        return np.ascontiguousarray(array)
    if array.dtype in (np.uint16, np.int16):
        return array.astype(np.int32)
    return array.astype(np.float32)


def collate_scenes(samples: list[dict[str, torch.Tensor]]) -> dict[str, Any]:
    """Batch scenes: global images and labels are stacked; per-scene patch data stay lists
    (scenes may differ in size and so in patch count)."""
    batch: dict[str, Any] = {}
    for key in samples[0]:
        values = [s[key] for s in samples]
        if key in ("image", "label", "index", "transform"):
            batch[key] = torch.stack(values)
        else:
            batch[key] = values
    return batch


# --------------------------------------------------------------------------- class balance


def class_shares(collection: SceneCollection, size: int = 64) -> np.ndarray:
    """Each scene's share of pixels per class, ``(scenes, classes)``, from its mask read at
    ``size x size`` (nearest; nodata pixels, the mask's or the image's, left out; a scene
    without data is all zeros)."""
    n = collection.scheme.n_classes
    shares = np.zeros((len(collection), n), dtype=np.float64)
    for i, pair in enumerate(collection.scenes):
        with open_raster(pair.mask) as msk, open_raster(pair.image) as img:
            ids = read_mask_ids(msk, collection.scheme, out_shape=(size, size), rgb_threshold=collection.rgb_threshold)
            valid = image_valid(img, out_shape=(size, size))
        if valid is not None:
            ids = np.where(valid, ids, NODATA_ID)
        counts = np.bincount(ids[ids < n].ravel(), minlength=n)[:n].astype(np.float64)
        if counts.sum() > 0:
            shares[i] = counts / counts.sum()
    return shares


def balanced_weights(shares: np.ndarray, power: float) -> np.ndarray:
    """Sampling weights of scenes that favour rare classes (class-balanced sampling).

    A scene's weight is ``sum_c share[c] * freq[c] ** -power``: ``freq`` is each class's
    share of all pixels (classes absent everywhere are left out). ``power`` 0 weighs every
    scene alike; 1 gives every class the same expected share of the sampled pixels when
    scenes hold one class each. Returned normalised to sum to 1.

    Raises:
        InputError: a negative power, or no labelled pixel in any scene.
    """
    if power < 0:
        raise InputError(f"the class-balance power must be >= 0, got {power}")
    freq = shares.sum(axis=0)
    if not freq.sum() > 0:
        raise InputError("class-balanced sampling needs labelled pixels; every training mask is nodata")
    freq = freq / freq.sum()
    factor = np.where(freq > 0, np.power(np.where(freq > 0, freq, 1.0), -power), 0.0)
    weights = shares @ factor
    if not weights.sum() > 0:
        weights = np.ones(len(shares))
    return weights / weights.sum()
