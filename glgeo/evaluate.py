"""How good is a segmentation: prediction rasters against truth, or a model against a split.

* :func:`evaluate_rasters`: class rasters (as ``glgeo segment`` writes them: ids, and the
  nodata value the file declares) against truth rasters, read window by window, so rasters of any size fit in
  memory. The truth is either the dataset's published mask (``truth_encoding="mask"``:
  DeepGlobe colours, Inria 0/255, decoded by the scheme) or class ids (``"ids"``).
* :func:`evaluate_model`: runs ``glgeo.segment``'s streaming inference on each scene of a
  dataset split, then scores the output as above, and measures time per image and peak
  memory (GPU memory on CUDA, the process's peak resident memory otherwise).
* :func:`evaluate_imagery`: the same on your own imagery, scored against polygon (or
  raster) labels rasterized by torchgeo on each image's own grid (:mod:`glgeo.geodata`).

Scores (confusion matrix, per-class IoU, mIoU over the scheme's scored classes, Inria's
building IoU, pixel accuracy) are accumulated over all pixels of all images, as the
benchmarks do (see :mod:`glgeo.metrics`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import tempfile
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator, Literal, NamedTuple, Sequence

import numpy as np
import rasterio
from rasterio.enums import ColorInterp, Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from rasterio.windows import Window

from .atomic import check_raster_complete
from .datasets import SceneCollection, check_pair, image_valid, open_raster, read_mask_ids
from .device import peak_resident_mb
from .resolution import as_scale, axis_scales, describe_scale, reading_scale, scale_between, scaled_size, scaled_transform
from .errors import CheckpointError, DatasetError, InputError
from .io import masked_beyond_nodata, read_failed_error
from .progress import ProgressCallback
from .metrics import ConfusionAccumulator, SegmentationScores, confusion_matrix
from .schemes import NODATA_ID, ClassScheme

log = logging.getLogger(__name__)

TruthEncoding = Literal["mask", "ids"]

#: Pixels read per window (rows x width): bounds memory on rasters of any size.
WINDOW_PIXELS = 1 << 24


@dataclass(frozen=True)
class ImageResult:
    """One evaluated image.

    Attributes:
        name: the scene (or prediction file) name.
        pixels: truth pixels counted.
        miou: the image's own mIoU (the report's mIoU pools all images' pixels).
        seconds: inference time (model evaluation only).
        iou: the image's own IoU per class (NaN where the class is neither in its truth
            nor in its prediction), for the spread of a class's IoU across images.
        excluded: truth pixels left out of the scores (nodata in the truth, no class id,
            or no label there): ``pixels + excluded`` is the image's size.
    """

    name: str
    pixels: int
    miou: float
    seconds: float | None = None
    iou: tuple[float, ...] = ()
    excluded: int = 0


@dataclass(frozen=True)
class EvaluationReport:
    """Scores of an evaluation, plus its cost when a model ran.

    Attributes:
        scores: the pooled scores of every image.
        images: per-image results.
        seconds_per_image: mean inference time (``None`` for raster comparisons).
        peak_memory_mb: peak GPU memory on CUDA, else peak resident memory of the process.
        memory_kind: ``"gpu"``, ``"resident"`` or ``""``.
        model: the checkpoint evaluated, if any.
        left_out_truth_pixels: class-id truth pixels holding :data:`~glgeo.schemes.NODATA_ID`
            (no class id) in files that do not declare it as their nodata: left out of
            the scores like nodata, and reported (a 0/255 mask read as ids loses its
            class 255 this way).
        excluded_truth_pixels: every truth pixel left out of the scores (declared nodata,
            the pixels above, no label there): with the scored pixels, the images' size.
        not_validation: ``(image, parts)`` for each image the model's recorded split has
            seen: ``"train"`` (trained on it), ``"val"`` (it chose the checkpoint).
    """

    scores: SegmentationScores
    images: tuple[ImageResult, ...]
    seconds_per_image: float | None = None
    peak_memory_mb: float | None = None
    memory_kind: str = ""
    model: str | None = None
    left_out_truth_pixels: int = 0
    excluded_truth_pixels: int = 0
    not_validation: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @property
    def majority_class(self) -> int | None:
        """The truth's most common scored class (``None`` where no pixel was scored)."""
        scored = list(self.scores.scheme.scored_ids)
        counts = self.scores.confusion.sum(axis=1)[scored]
        return scored[int(np.argmax(counts))] if counts.sum() else None

    def majority_baseline(self) -> dict[str, Any] | None:
        """The scores of answering :attr:`majority_class` everywhere on the same truth pixels:
        the constant answer a model must beat (``class``, ``miou``, ``pixel_accuracy``, and
        ``building_iou`` for a buildings scheme)."""
        class_id = self.majority_class
        if class_id is None:
            return None
        base = self.scores.majority_baseline(class_id)
        out: dict[str, Any] = {"class": self.scores.scheme.names[class_id], "miou": base.miou,
                               "pixel_accuracy": base.pixel_accuracy}
        if base.building_iou is not None:
            out["building_iou"] = base.building_iou
        return out

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able report."""
        nan = lambda v: None if v is None or (isinstance(v, float) and math.isnan(v)) else v  # noqa: E731
        return {
            **self.scores.to_dict(),
            "majority_baseline": self.majority_baseline(),
            "model": self.model,
            "images": [
                {"name": i.name, "pixels": i.pixels, "excluded_truth_pixels": i.excluded, "miou": nan(i.miou),
                 "seconds": i.seconds, "iou": {c: nan(float(v)) for c, v in zip(self.scores.scheme.names, i.iou)}}
                for i in self.images
            ],
            "seconds_per_image": self.seconds_per_image,
            "peak_memory_mb": self.peak_memory_mb,
            "memory_kind": self.memory_kind,
            "left_out_truth_pixels": self.left_out_truth_pixels,
            "excluded_truth_pixels": self.excluded_truth_pixels,
            "not_validation": {name: list(parts) for name, parts in self.not_validation},
        }

    def table(self) -> str:
        """The terminal report: per-class IoU, pooled scores, then cost."""
        lines = [self.scores.table()]
        base = self.majority_baseline()
        if base is not None:
            building = f", building IoU {100 * base['building_iou']:.2f}" if "building_iou" in base else ""
            lines.append(
                f"majority class ({base['class']}, the truth's most common scored class, everywhere): mIoU"
                f" {100 * base['miou']:.2f}, pixel acc. {100 * base['pixel_accuracy']:.2f}{building}"
            )
        lines.append(f"images: {len(self.images)}, pixels: {self.scores.n_pixels}")
        if self.not_validation:
            seen = [f"{name} ({'; '.join(_SEEN[p] for p in parts)})" for name, parts in self.not_validation[:5]]
            more = len(self.not_validation) - len(seen)
            lines.append(
                f"not a validation: {len(self.not_validation)} of the {len(self.images)} images: {', '.join(seen)}"
                f"{f' and {more} more' if more else ''}"
            )
        scored = self.scores.n_pixels
        if self.excluded_truth_pixels:
            read = scored + self.excluded_truth_pixels
            lines.append(
                f"not scored: {self.excluded_truth_pixels:,} of the {read:,} truth pixels"
                f" ({_share(self.excluded_truth_pixels, read)}) have no truth class (nodata or masked in the truth, or"
                " no label there): left out of the scores"
            )
        unpredicted = int(self.scores.confusion[:, -1].sum())
        if unpredicted:
            lines.append(
                f"no prediction: {unpredicted:,} of the {scored:,} truth pixels ({_share(unpredicted, scored)}) are"
                " nodata (or no class id) in the prediction, scored as misses"
            )
        if self.left_out_truth_pixels:
            read = scored + self.left_out_truth_pixels
            lines.append(
                f"left out: {self.left_out_truth_pixels:,} truth pixels ({_share(self.left_out_truth_pixels, read)} of"
                f" those not declared nodata) hold {NODATA_ID}, no class id{_left_out_hint(self.scores.scheme)}"
            )
        if self.seconds_per_image is not None:
            lines.append(f"time per image: {self.seconds_per_image:.2f} s")
        if self.peak_memory_mb is not None:
            kind = "GPU memory" if self.memory_kind == "gpu" else "resident memory"
            lines.append(f"peak {kind}: {self.peak_memory_mb:.0f} MB")
        return "\n".join(lines)


#: What an image in each part of the model's recorded split did (report lines, warnings on
#: scenes by name, warnings on images by area).
_SEEN = {"train": "trained on", "val": "chose the checkpoint"}
_SEEN_SCENE = {"train": "the model was trained on it", "val": "it chose the checkpoint"}
_SEEN_AREA = {"train": "the area the model was trained on", "val": "the validation scenes that chose the checkpoint"}


def _share(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f} %" if whole else "-"


def _left_out_hint(scheme: ClassScheme) -> str:
    """What to do about truth pixels holding NODATA_ID, as the end of a sentence."""
    values = [c.mask_value for c in scheme.classes]
    if scheme.mask_encoding == "value" and NODATA_ID in values:
        named = scheme.classes[values.index(NODATA_ID)].name
        return (
            f"; if {NODATA_ID} is {named} ({scheme.name}'s {'/'.join(map(str, values))} masks), use truth_encoding='mask';"
            " if it marks no data, declare it as the file's nodata"
        )
    return f"; if {NODATA_ID} marks no data, declare it as the file's nodata, else check the class scheme"


@contextlib.contextmanager
def _reading(path: str | os.PathLike) -> Iterator[None]:
    """Reads of the raster ``path`` within the block: one that fails part-way (a truncated
    or damaged file) as a :class:`~glgeo.errors.SceneError` naming it, as segment says it."""
    try:
        yield
    except RasterioIOError as exc:
        raise read_failed_error(os.fspath(path), exc) from None


def _strips(height: int, width: int) -> list[Window]:
    rows = max(1, min(height, WINDOW_PIXELS // max(1, width)))
    return [Window(0, r, width, min(rows, height - r)) for r in range(0, height, rows)]


#: Extensions of vector files: labels as polygons, not truth rasters.
VECTOR_SUFFIXES = (".geojson", ".json", ".gpkg", ".shp", ".fgb", ".kml", ".gml", ".parquet")


def compare_rasters(
    pred: str | os.PathLike,
    truth: str | os.PathLike,
    scheme: ClassScheme,
    truth_encoding: TruthEncoding = "mask",
    rgb_threshold: int | None = None,
) -> np.ndarray:
    """Confusion counts ``(n, n + 1)`` of one prediction raster against its truth.

    Both are read in row strips of at most :data:`WINDOW_PIXELS` pixels. Class-id truth
    pixels holding :data:`~glgeo.schemes.NODATA_ID` are left out even where the file does
    not declare it as nodata, with a warning that says how many.

    Raises:
        InputError: different sizes, or different CRS / transform when both are
            georeferenced; a truth encoding that does not fit the file.
        DatasetError: a truth mask value the scheme does not know.
    """
    return _compare_counts(pred, truth, scheme, truth_encoding, rgb_threshold).confusion


class _Counts(NamedTuple):
    """One pair's confusion counts and the truth pixels they leave out."""

    confusion: np.ndarray
    #: class-id truth pixels holding NODATA_ID that the file does not declare as nodata
    left_out: int
    #: every truth pixel not scored (nodata, no class id): with the scored ones, the raster's size
    excluded: int


def _compare_counts(
    pred: str | os.PathLike,
    truth: str | os.PathLike,
    scheme: ClassScheme,
    truth_encoding: TruthEncoding = "mask",
    rgb_threshold: int | None = None,
    placed_by_size: bool = True,
) -> _Counts:
    """:func:`compare_rasters`, and the truth pixels left out (as undeclared nodata; in all).

    ``placed_by_size``: warn where one raster has no CRS (a model's prediction of a dataset
    scene is on its image's grid, which the scene's pair check saw: no warning there)."""
    if truth_encoding not in ("mask", "ids"):
        raise InputError(f"truth encoding must be 'mask' or 'ids', got {truth_encoding!r}")
    if Path(truth).suffix.lower() in VECTOR_SUFFIXES:
        raise InputError(
            f"truth={os.fspath(truth)!r} is a file of polygons, not a raster on the prediction's grid: score a model "
            "against polygons with model=..., images=IMAGE, labels=POLYGONS (rasterized on each image's grid)"
        )
    n = scheme.n_classes
    total = np.zeros((n, n + 1), dtype=np.int64)
    left_out = 0
    with open_raster(Path(pred)) as p, open_raster(Path(truth)) as t:
        if (p.height, p.width) != (t.height, t.width):
            raise InputError(
                f"prediction {pred} is {p.width} x {p.height} px but truth {truth} is {t.width} x {t.height} px; "
                "compare rasters on the same pixel grid"
            )
        if p.crs and t.crs and (p.crs != t.crs or not p.transform.almost_equals(t.transform)):
            raise InputError(
                f"prediction {pred} and truth {truth} are not on the same grid (CRS {p.crs} vs {t.crs}, "
                f"origin {p.transform.c, p.transform.f} vs {t.transform.c, t.transform.f}, "
                f"pixel size {_size(p.res)} vs {_size(t.res)}); "
                f"warp the truth onto the prediction's grid ({_warp_hint(p, truth)})"
            )
        if placed_by_size and bool(p.crs) != bool(t.crs):
            placed, plain = (pred, truth) if p.crs else (truth, pred)
            log.warning(
                "%s has no CRS: its pixels are taken as those of %s (the same %d x %d px); if it covers other"
                " ground, georeference it first", plain, placed, p.width, p.height,
            )
        ids_band = next((b for b in t.indexes if t.colorinterp[b - 1] != ColorInterp.alpha), 1)
        if truth_encoding == "ids" and t.count - (ColorInterp.alpha in t.colorinterp) != 1:
            raise InputError(f"truth {truth} has {t.count} bands; class-id truth has one, and may have an alpha band"
                             " (use truth_encoding='mask')")
        # a declared nodata that is also a class id (a class's mask value) hides that class's pixels
        if truth_encoding == "ids":
            truth_hides = _class_named_by(t.nodata, scheme)
        else:
            truth_hides = _class_valued_by(t.nodata, scheme, t.count)
        pred_hides = _class_named_by(p.nodata, scheme)
        hidden_truth = hidden_pred = 0
        truth_masked, pred_masked = masked_beyond_nodata(t, ids_band), masked_beyond_nodata(p)
        for window in _strips(p.height, p.width):
            with _reading(pred):
                predicted = p.read(1, window=window)
            if truth_encoding == "mask":
                with _reading(truth):
                    expected = read_mask_ids(t, scheme, window=window, rgb_threshold=rgb_threshold)
                if truth_hides is not None:  # a value mask is nodata there and nowhere else
                    hidden_truth += int(np.count_nonzero(expected == NODATA_ID))
            else:
                with _reading(truth):
                    raw = t.read(ids_band, window=window)
                expected = _class_ids(raw, truth, scheme, t.nodata)  # NaN: nodata
                if t.nodata is None or t.nodata != NODATA_ID:
                    # glgeo's nodata id, though the file does not say so: left out, but counted
                    left_out += int(np.count_nonzero(raw == NODATA_ID))
                if t.nodata is not None:
                    if truth_hides is not None:
                        hidden_truth += int(np.count_nonzero(expected == t.nodata))
                    expected = np.where(expected == t.nodata, NODATA_ID, expected)
            if p.nodata is not None and p.nodata != NODATA_ID:
                if pred_hides is not None:
                    hidden_pred += int(np.count_nonzero(predicted == p.nodata))
                predicted = np.where(predicted == p.nodata, NODATA_ID, predicted)
            # an internal mask or alpha band (GDAL's tools and QGIS honour it): no data there too
            if truth_masked:
                with _reading(truth):
                    expected = np.where(t.read_masks(ids_band, window=window) > 0, expected, NODATA_ID)
            if pred_masked:
                with _reading(pred):
                    predicted = np.where(p.read_masks(1, window=window) > 0, predicted, NODATA_ID)
            total += confusion_matrix(expected, predicted, n)
        truth_is = "class" if truth_encoding == "ids" else "the mask value of class"
        _warn_hidden_class("truth", truth, t.nodata, truth_is, truth_hides, scheme, hidden_truth,
                           "left out of the scores")
        _warn_hidden_class("prediction", pred, p.nodata, "class", pred_hides, scheme, hidden_pred,
                           "scored as no prediction")
        if left_out:
            read = left_out + int(total.sum())
            log.warning(
                "truth %s: %s of its %s pixels%s (%s) hold %d, no class id of scheme %r (0-%d): they are left out"
                " of the scores%s",
                truth, f"{left_out:,}", f"{read:,}", "" if t.nodata is None else " not declared nodata",
                _share(left_out, read), NODATA_ID, scheme.name, n - 1, _left_out_hint(scheme),
            )
        excluded = p.height * p.width - int(total.sum())
    return _Counts(total, left_out, excluded)


def _class_ids(values: np.ndarray, truth: str | os.PathLike, scheme: ClassScheme, nodata: float | None) -> np.ndarray:
    """Class-id truth values as integer ids: NaN (a float raster's usual nodata) becomes
    :data:`NODATA_ID`; a value that is no class id, and not the declared ``nodata`` or
    :data:`NODATA_ID`, is refused, naming the file (a float value was cut to a whole number
    before: 0.6 scored as class 0).

    Raises:
        InputError: values that are not whole numbers, or ids outside the scheme.
    """
    n = scheme.n_classes
    if values.dtype.kind == "f":
        values = np.where(np.isnan(values), NODATA_ID, values)
        fractional = values != np.round(values)
        if fractional.any():
            shown = ", ".join(f"{v:g}" for v in np.unique(values[fractional])[:5])
            raise InputError(
                f"truth {truth} holds values that are not whole class ids ({shown}): class-id truth holds integers"
                f" 0-{n - 1}; if it was resampled, resample it with nearest"
            )
    bad = (values < 0) | (values >= n)
    bad &= values != NODATA_ID
    if nodata is not None and not np.isnan(nodata):
        bad &= values != nodata
    if bad.any():
        shown = ", ".join(f"{v:g}" for v in np.unique(values[bad])[:5])
        raise InputError(
            f"truth {truth} holds ids {shown}, no class of scheme {scheme.name!r} (0-{n - 1}, nodata"
            f" {NODATA_ID}{'' if nodata is None else f' or its declared {nodata:g}'}): pass the scheme of its ids"
            " (scheme=NAME), or declare the value as nodata (gdal_edit.py -a_nodata VALUE)"
        )
    return values.astype(np.int64) if values.dtype.kind == "f" else values


def _size(res: tuple[float, float]) -> str:
    return f"{res[0]:g} x {res[1]:g}"


def _class_named_by(nodata: float | None, scheme: ClassScheme):
    """The class of ``scheme`` whose id a raster's declared ``nodata`` is, or ``None``."""
    if nodata is None or not float(nodata).is_integer() or not 0 <= nodata < scheme.n_classes:
        return None
    return scheme.classes[int(nodata)]


def _warn_hidden_class(role: str, path, nodata, what: str, hides, scheme: ClassScheme, count: int, effect: str) -> None:
    """Warn that ``count`` pixels of class ``hides`` are lost to the file's declared nodata."""
    if count:
        log.warning(
            "%s %s declares nodata %d, which is %s %d %s of scheme %r: its %s pixels of that value are %s;"
            " if they are %s, remove or change the file's nodata (gdal_edit.py -unsetnodata %s removes it)",
            role, path, nodata, what, hides.id, hides.name, scheme.name, f"{count:,}", effect, hides.name, path,
        )


def _class_valued_by(nodata: float | None, scheme: ClassScheme, bands: int):
    """The class of ``scheme`` whose mask value a one-band mask's declared ``nodata`` is, or ``None``."""
    if nodata is None or bands != 1 or scheme.mask_encoding != "value":
        return None
    return next((c for c in scheme.classes if float(c.mask_value) == float(nodata)), None)  # type: ignore[arg-type]


def _warp_hint(reference, source: str | os.PathLike) -> str:
    """A gdalwarp command line that puts raster ``source`` on the grid of the open raster ``reference``."""
    left, bottom, right, top = (f"{v:.12g}" for v in reference.bounds)
    srs = f" -t_srs {reference.crs.to_string()}" if reference.crs else ""
    out = Path(source).with_name(f"{Path(source).stem}_on_grid.tif")
    return (
        f"e.g. gdalwarp -r near{srs} -te {left} {bottom} {right} {top} -ts {reference.width} {reference.height}"
        f" {source} {out}"
    )


def _image_result(name: str, counts: _Counts, scheme: ClassScheme, seconds: float | None = None) -> ImageResult:
    scores = SegmentationScores(counts.confusion, scheme)
    return ImageResult(
        name, int(counts.confusion.sum()), scores.miou, seconds, tuple(float(v) for v in scores.iou), counts.excluded
    )


def prediction_scheme(pred: str | os.PathLike) -> ClassScheme | None:
    """The class scheme a prediction raster carries (``glgeo segment`` writes it), if any."""
    import rasterio

    from .styles import scheme_from_tags

    try:
        with rasterio.open(pred) as src:
            return scheme_from_tags(src.tags())
    except rasterio.errors.RasterioIOError as exc:
        raise InputError(f"cannot open prediction {str(pred)!r}: {exc}") from None


def evaluate_rasters(
    pairs: Sequence[tuple[str | os.PathLike, str | os.PathLike]],
    scheme: ClassScheme | None = None,
    truth_encoding: TruthEncoding = "mask",
    rgb_threshold: int | None = None,
    progress: ProgressCallback | None = None,
) -> EvaluationReport:
    """Score prediction rasters against truth rasters (pairs of ``(pred, truth)``).

    Args:
        pairs: ``(prediction, truth)`` rasters on the same grid.
        scheme: the classes; ``None``: the scheme the predictions carry (``glgeo segment``
            writes it into its rasters), the same in all of them.
        truth_encoding: ``"mask"`` (the dataset's published encoding) or ``"ids"``.
        rgb_threshold: tolerance of RGB mask colours (DeepGlobe's JPEG-like masks).
        progress: ``progress(done, total)`` after each pair.

    Raises:
        InputError: no pairs, a pair on different grids, a pair given twice, no
            ``scheme`` while a prediction carries none (or they carry different ones), a
            ``scheme`` whose classes are not those a prediction carries, or no truth pixel
            of any pair holding a class (nothing to score).
    """
    if not pairs:
        raise InputError("give at least one prediction/truth pair")
    _check_pairs_once(pairs)
    if scheme is None:
        carried = {str(pred): prediction_scheme(pred) for pred, _ in pairs}
        missing = [p for p, sch in carried.items() if sch is None]
        if missing:
            raise InputError(
                f"prediction {missing[0]!r} carries no class scheme (it was not written by glgeo segment);"
                " pass scheme=NAME (deepglobe, inria or a JSON file)"
            )
        names = sorted({sch.name for sch in carried.values()})
        if len(names) > 1:
            raise InputError(f"the predictions carry different class schemes ({', '.join(names)}); score them apart")
        scheme = next(iter(carried.values()))
    else:
        for pred, _ in pairs:
            carried_by = prediction_scheme(pred)
            if carried_by is not None and tuple(carried_by.names) != tuple(scheme.names):
                raise InputError(
                    f"prediction {str(pred)!r} carries class scheme {carried_by.name!r} ({', '.join(carried_by.names)}),"
                    f" not {scheme.name!r} ({', '.join(scheme.names)}): its ids mean its own classes; drop"
                    f" scheme={scheme.name!r} to score it with its own"
                )
    acc = ConfusionAccumulator(scheme)
    images = []
    left_out = 0
    unscored = []
    for i, (pred, truth) in enumerate(pairs):
        counts = _compare_counts(pred, truth, scheme, truth_encoding, rgb_threshold)
        acc.add(counts.confusion)
        left_out += counts.left_out
        images.append(_image_result(Path(pred).stem, counts, scheme))
        if not images[-1].pixels:
            unscored.append(f"truth {truth} holds no class on any pixel (nodata or no class id everywhere)")
        if progress is not None:
            progress(i + 1, len(pairs))
    _check_scored(acc, unscored, "give truth rasters that hold classes where the predictions are (check their"
                                 " declared nodata)")
    return EvaluationReport(
        acc.scores(), tuple(images), left_out_truth_pixels=left_out,
        excluded_truth_pixels=sum(i.excluded for i in images),
    )


def _check_scored(acc: ConfusionAccumulator, unscored: Sequence[str], remedy: str) -> None:
    """Raise when no pixel at all was scored: a report whose every score is "-" is no
    evaluation. ``unscored``: why each image without a scored pixel has none."""
    if acc.confusion.any():
        return
    shown = "; ".join(unscored[:3]) + (f"; and {len(unscored) - 3} more images" if len(unscored) > 3 else "")
    raise InputError(f"nothing was scored: {shown}; {remedy}")


def _check_pairs_once(pairs: Sequence[tuple[str | os.PathLike, str | os.PathLike]]) -> None:
    """Raise if one ``(prediction, truth)`` pair is given twice: its pixels would count twice."""
    first: dict[tuple[str, str], int] = {}
    for i, (pred, truth) in enumerate(pairs, start=1):
        key = (os.path.realpath(pred), os.path.realpath(truth))
        if key in first:
            raise InputError(
                f"prediction {pred} and truth {truth} are given twice (pairs {first[key]} and {i}): the scores would"
                " count its pixels twice; give each pair once"
            )
        first[key] = i


def _scaled_copies(collection: SceneCollection, name: str, scale: float, folder: Path) -> tuple[Path, Path]:
    """The scene and its class-id truth resampled to ``scale`` (GeoTIFFs in ``folder``): every
    band of the image (the model picks its own), and where it holds no data (its nodata,
    alpha or mask) as the copy's mask, so the copy is segmented as the scene would be."""
    pair = collection.scene(name)
    image_out, truth_out = folder / f"{name}.tif", folder / f"{name}_truth.tif"
    with open_raster(pair.image) as src, open_raster(pair.mask) as msk:
        h, w = scaled_size(src.height, src.width, scale)
        transform = scaled_transform(src.transform, (src.height, src.width), (h, w))
        data_bands = [b for b, ci in zip(src.indexes, src.colorinterp) if ci != rasterio.enums.ColorInterp.alpha]
        with _reading(pair.image):
            image = src.read(data_bands, out_shape=(len(data_bands), h, w), resampling=Resampling.bilinear)
            valid = image_valid(src, out_shape=(h, w))
        with _reading(pair.mask):
            ids = read_mask_ids(msk, collection.scheme, out_shape=(h, w), rgb_threshold=collection.rgb_threshold)
            if masked_beyond_nodata(msk):  # its internal mask or alpha band: no truth there
                ids = np.where(msk.read_masks(1, out_shape=(h, w)) > 0, ids, NODATA_ID).astype(ids.dtype)
        hides = _class_valued_by(msk.nodata, collection.scheme, msk.count)
        if hides is not None:  # as _compare_counts says of the original
            _warn_hidden_class(
                "truth", pair.mask, msk.nodata, "the mask value of class", hides, collection.scheme,
                int(np.count_nonzero(ids == NODATA_ID)), f"left out of the scores (counted at scale {scale:g})",
            )
        profile = dict(driver="GTiff", width=w, height=h, crs=src.crs, transform=transform, tiled=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)  # plain JPEG scenes stay plain
            with rasterio.open(image_out, "w", count=len(data_bands), dtype=image.dtype, **profile) as dst:
                dst.write(image)
                if valid is not None:
                    dst.write_mask(valid)
            with rasterio.open(truth_out, "w", count=1, dtype="uint8", nodata=NODATA_ID, **profile) as dst:
                dst.write(ids[None])
    for copy in (image_out, truth_out):  # a full disk: GDAL does not raise
        check_raster_complete(copy)
    return image_out, truth_out


def _settings_for_copy(checkpoint, original: Path | str, settings, scale: float):
    """Settings that read a copy made at ``scale`` of ``original`` as ``glgeo segment``
    would have read the original."""
    from .io import inspect_scene
    wanted = reading_scale(checkpoint, inspect_scene(original)) if settings.scale is None else settings.scale
    rows, cols = axis_scales(wanted)
    if max(rows, cols) > scale:
        log.warning(
            "the model reads this scene at %s of its resolution; the %g copy is coarser and is fed as it is",
            describe_scale(wanted), scale,
        )
    return replace(settings, scale=as_scale(min(1.0, rows / scale), min(1.0, cols / scale)))


def _scale_for_gsd(checkpoint, gsd: float) -> float:
    """The reading scale of scenes of ``gsd`` metres per pixel for ``checkpoint``."""
    if not gsd > 0:
        raise InputError(f"the scenes' ground sample distance must be positive, got gsd={gsd}")
    if checkpoint.gsd is None:
        raise InputError(
            "the model does not record the resolution it was trained at, so gsd cannot set its reading scale; "
            "set the inference settings' scale instead"
        )
    return scale_between(gsd, checkpoint.gsd)


def evaluate_model(
    model: Any,
    collection: SceneCollection,
    names: Sequence[str],
    settings: Any = None,
    scale: float = 1.0,
    progress: ProgressCallback | None = None,
    tta: bool = False,
    gsd: float | None = None,
    bands: Sequence[int] | None = None,
) -> EvaluationReport:
    """Segment each named scene with ``glgeo.segment`` and score it against its mask.

    Args:
        model: a checkpoint path, zoo name or loaded checkpoint.
        collection: the dataset.
        names: the scenes to evaluate (a split part).
        settings: :class:`glgeo.inference.InferenceSettings` (device, precision, batch...).
        scale: score at this fraction of the scenes' resolution: scenes and masks are
            resampled to it first (a quicker check). Either way the model reads the scenes
            at the scale it was trained at (``settings.scale`` overrides it, as in
            ``glgeo segment``): a model trained with ``--scale 0.25`` runs on the
            quarter-resolution copies as they are, and on full-resolution scenes through
            its working grid, scored on the masks' own grid.
        progress: ``progress(done, total)`` per scene.
        tta: test-time augmentation (``glgeo.segment``'s ``tta``; modes global and g2l).
        gsd: metres per pixel of the scenes when their files do not say (as training's
            ``gsd``, e.g. 4.78 for the 256 px DeepGlobe copies): the model reads them at its
            own resolution from it, never finer than they are. ``settings.scale`` wins.
        bands: 1-based bands fed to the model (``glgeo.segment``'s ``bands``; default the
            model's recorded bands, else the images' non-alpha bands).

    Every scene's mask is checked against its image's grid before any is segmented. A
    scene that the checkpoint's recorded split (of the same dataset kind) puts in its
    train part (trained on) or val part (it chose the checkpoint) is scored all the same,
    with a warning and a line in the report: its scores are not a validation.

    Raises:
        CheckpointError: the model's class count does not fit the dataset's scheme.
        DatasetError: a mask that is not on its image's grid (size, CRS, transform).
        InputError: no scenes; ``gsd`` not positive, or given for a model that does not
            record its imagery's resolution; no mask pixel of any scene holding a class
            (nothing to score).
    """
    from .inference import InferenceSettings
    from .segmentation import load_model

    if not names:
        raise InputError("no scenes to evaluate: the split part is empty")
    if not 0 < scale <= 1:
        raise InputError(f"scale={scale:g} is not in (0, 1]: give the fraction of the scenes' resolution to score at")
    settings = settings or InferenceSettings()
    checkpoint = load_model(model)
    if gsd is not None and settings.scale is None:
        settings = replace(settings, scale=_scale_for_gsd(checkpoint, gsd))
    if gsd is not None and settings.gsd is None:
        settings = replace(settings, gsd=gsd)
    scheme = collection.scheme
    if checkpoint.scheme.n_classes != scheme.n_classes:
        raise CheckpointError(
            f"the model predicts {checkpoint.scheme.n_classes} classes ({checkpoint.scheme.name}) but the "
            f"{collection.kind} dataset's scheme {scheme.name!r} has {scheme.n_classes}; evaluate it on data of its scheme"
        )
    for name in dict.fromkeys(names):
        _check_scene_grid(collection.scene(name))
    seen = _seen_in_split(checkpoint, collection, names)
    cuda = _start_peak_memory(settings)
    acc = ConfusionAccumulator(scheme)
    images = []
    unscored: list[str] = []
    with tempfile.TemporaryDirectory(prefix="glgeo-evaluate-") as tmp, _each_warning_once("glgeo.segmentation"):
        folder = Path(tmp)
        for i, name in enumerate(names):
            pair = collection.scene(name)
            run_settings = settings
            if scale != 1.0:
                scene, truth = _scaled_copies(collection, name, scale, folder)
                encoding: TruthEncoding = "ids"
                run_settings = _settings_for_copy(checkpoint, pair.image, settings, scale)
            else:
                scene, truth, encoding = pair.image, pair.mask, "mask"
            out = folder / f"{name}_pred.tif"
            images.append(_segment_and_score(
                name, scene, truth, encoding, out, checkpoint, run_settings, acc, collection.rgb_threshold, tta, bands,
                image=pair.image,
            ))
            if not images[-1].pixels:
                unscored.append(f"the mask {pair.mask} of scene {name!r} holds no class on any pixel (nodata everywhere)")
            for leftover in folder.glob(f"{name}*"):
                leftover.unlink()
            if progress is not None:
                progress(i + 1, len(names))
    _check_scored(acc, unscored, "check the masks and the nodata they declare")
    return _report(acc, images, cuda, checkpoint, model, seen)


def _check_scene_grid(pair) -> None:
    """Raise if a scene's mask is not on its image's pixel grid: size and CRS (as training
    checks them), and the transform when both are georeferenced.

    Raises:
        DatasetError: the mask is elsewhere, or of another size or CRS.
    """
    check_pair(pair)
    with open_raster(pair.image) as img, open_raster(pair.mask) as msk:
        if img.crs and msk.crs and not img.transform.almost_equals(msk.transform):
            raise DatasetError(
                f"scene {pair.name!r}: mask {pair.mask} is not on the grid of its image {pair.image} (origin"
                f" {msk.transform.c, msk.transform.f} vs {img.transform.c, img.transform.f}, pixel size {msk.res} vs"
                f" {img.res}); warp the mask onto the image's grid ({_warp_hint(img, pair.mask)})"
            )


def _recorded_split(checkpoint: Any) -> dict[str, Any]:
    """The split the checkpoint's training recorded (``metadata["training"]["split"]``), else
    the one its zoo card records (the shipped files predate the first), or ``{}``."""
    metadata = getattr(checkpoint, "metadata", None) or {}
    training = metadata.get("training") or {}
    split = training.get("split") if isinstance(training, dict) else None
    if isinstance(split, dict):
        return split
    zoo_name = metadata.get("zoo_name")
    if isinstance(zoo_name, str):
        from glgeo.models import list_models, model_card

        split = model_card(zoo_name).get("split") if zoo_name in list_models() else None
    return split if isinstance(split, dict) else {}


def _seen_in_split(checkpoint: Any, collection: SceneCollection, names: Sequence[str]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The scenes of ``names`` that the checkpoint's recorded split of the collection's
    dataset kind puts in its train or val part, with those parts; a warning for each.

    Scenes are matched by name. A ``folder`` dataset's names are the user's own, so where
    the split's recorded folder is here and holds a scene of that name whose image differs
    from this one (another dataset that happens to use the same names), it is not the same
    scene (said at INFO level)."""
    split = _recorded_split(checkpoint)
    if split.get("kind") != collection.kind:
        return ()
    parts = {part: set(split.get(part) or ()) for part in _SEEN}
    recorded = _recorded_collection(split, collection)
    seen = []
    for name in dict.fromkeys(names):
        found = tuple(part for part in _SEEN if name in parts[part])
        if not found:
            continue
        if recorded is not None and _another_image(recorded, collection, name):
            log.info(
                "scene %r has the name of a scene of the model's split, but not its image (the model's: %s):"
                " another scene", name, recorded.root,
            )
            continue
        log.warning(
            "scene %r is in the %s part%s of the model's split: %s; its scores are not a validation"
            " (for one, score scenes in neither its train nor its val part)",
            name, " and ".join(found), "s" if len(found) > 1 else "", " and ".join(_SEEN_SCENE[p] for p in found),
        )
        seen.append((name, found))
    return tuple(seen)


def _recorded_collection(split: dict[str, Any], collection: SceneCollection) -> SceneCollection | None:
    """The ``folder`` dataset the split was recorded on, where it is here and is not this one."""
    root = split.get("root")
    if collection.kind != "folder" or not root or not Path(root).is_dir():
        return None
    if os.path.realpath(root) == os.path.realpath(collection.root):
        return None
    try:
        from .datasets import open_dataset

        return open_dataset(collection.kind, root, collection.scheme)
    except Exception:  # noqa: BLE001 - not a dataset any more: match by name
        return None


def _another_image(recorded: SceneCollection, collection: SceneCollection, name: str) -> bool:
    """Whether the recorded dataset's scene ``name`` has an image other than this one's
    (different bytes); ``False`` where it has no such scene."""
    import filecmp

    try:
        theirs, ours = recorded.scene(name).image, collection.scene(name).image
    except DatasetError:
        return False
    try:
        return not filecmp.cmp(theirs, ours, shallow=False)
    except OSError:
        return False


class _OnceFilter(logging.Filter):
    """Passes each warning template once: what segment says of every image of a dataset
    (coarser than the model's imagery) is said of the first only. What it says of its output
    (a plain image's has no georeferencing either) is not said: the outputs are temporary."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        from .segmentation import (
            GCP_OUTPUT_WARNING, NO_CLASS_WARNING, NO_CRS_OUTPUT_WARNING, PLAIN_OUTPUT_GSD_WARNING, PLAIN_OUTPUT_WARNING,
            RPC_OUTPUT_WARNING,
        )

        if record.levelno < logging.WARNING:
            return True
        key = str(record.msg)
        if key == NO_CLASS_WARNING:  # said of each image, by evaluate (_no_class_noted)
            return True
        if key in (PLAIN_OUTPUT_WARNING, PLAIN_OUTPUT_GSD_WARNING, NO_CRS_OUTPUT_WARNING, GCP_OUTPUT_WARNING,
                   RPC_OUTPUT_WARNING):
            return False
        if key in self.seen:
            return False
        self.seen.add(key)
        return True


@contextlib.contextmanager
def _each_warning_once(logger: str) -> Iterator[None]:
    """Within the block, the logger's warnings of one template are shown once."""
    target = logging.getLogger(logger)
    once = _OnceFilter()
    target.addFilter(once)
    try:
        yield
    finally:
        target.removeFilter(once)


def _segment_and_score(
    name: str, scene, truth, encoding: "TruthEncoding", out: Path, checkpoint, settings, acc: ConfusionAccumulator,
    rgb_threshold: int | None = None, tta: bool = False, bands: Sequence[int] | None = None,
    image: str | os.PathLike | None = None,
) -> ImageResult:
    """Segment one scene into ``out``, score it against ``truth`` into ``acc``; the image's result.

    ``image``: the user's file ``scene`` stands for (a resampled copy's original), named in warnings."""
    from .segmentation import segment

    start = time.perf_counter()
    with _no_class_noted() as noted:
        segment(scene, out, model=checkpoint, settings=settings, overwrite=True, tta=tta, bands=bands)
    seconds = time.perf_counter() - start
    if noted.came:
        log.warning("every pixel of %s is nodata: the model predicted no class on it", image or scene)
    counts = _compare_counts(out, truth, acc.scheme, encoding, rgb_threshold, placed_by_size=False)
    acc.add(counts.confusion)
    result = _image_result(name, counts, acc.scheme, seconds)
    log.info("%s: mIoU %.4f in %.1f s", name, result.miou, seconds)
    return result


class _NoClassNoted(logging.Filter):
    """Drops segment's warning that its map holds no class, which names the temporary map,
    and notes that it came (the caller says it of the user's image)."""

    def __init__(self) -> None:
        super().__init__()
        self.came = False

    def filter(self, record: logging.LogRecord) -> bool:
        from .segmentation import NO_CLASS_WARNING

        if record.msg == NO_CLASS_WARNING:
            self.came = True
            return False
        return True


@contextlib.contextmanager
def _no_class_noted() -> Iterator[_NoClassNoted]:
    """Within the block, segment's warning that a map holds no class is not shown; the
    filter yielded says whether it came."""
    target = logging.getLogger("glgeo.segmentation")
    noted = _NoClassNoted()
    target.addFilter(noted)
    try:
        yield noted
    finally:
        target.removeFilter(noted)


def _start_peak_memory(settings) -> bool:
    """Whether the run is on CUDA; there, the peak memory counter starts again."""
    import torch

    from .device import resolve_device

    device = resolve_device(str(settings.device))  # a device that is not there: InputError, before any scene
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    return device.type == "cuda"


def _report(
    acc: ConfusionAccumulator, images: list[ImageResult], cuda: bool, checkpoint, model,
    not_validation: tuple[tuple[str, tuple[str, ...]], ...] = (),
) -> EvaluationReport:
    """The report of a model's run over images, with its peak memory."""
    if cuda:
        import torch

        peak, kind = torch.cuda.max_memory_allocated() / (1 << 20), "gpu"
    else:
        peak, kind = peak_resident_mb(), "resident"
    return EvaluationReport(
        acc.scores(),
        tuple(images),
        seconds_per_image=float(np.mean([i.seconds for i in images])),
        peak_memory_mb=peak,
        memory_kind=kind,
        model=str(getattr(checkpoint, "path", None) or model),
        excluded_truth_pixels=sum(i.excluded for i in images),
        not_validation=not_validation,
    )


def _training_area_overlap(checkpoint: Any, path: str) -> tuple[str, ...]:
    """The parts of the model's recorded geo split (``"train"``: the areas it was trained on,
    ``"val"``: the scenes that chose the checkpoint) that image ``path`` overlaps."""
    import shapely

    from .geodata import file_footprint

    split = _recorded_split(checkpoint)
    if split.get("kind") != "geo":
        return ()
    with open_raster(Path(path)) as src:
        if src.crs is None:
            return ()
        footprint = file_footprint(path, src.crs, tuple(src.bounds), rasterio.crs.CRS.from_user_input(split["crs"]))
    boxes = {
        part: [shapely.box(*(float(v) for v in entry.rsplit(":", 1)[1].split(","))) for entry in split.get(part) or ()]
        for part in _SEEN
    }
    # less than half a working pixel in common is two tiles that touch (their bounds differ
    # by rounding: 367257.00000000006 against 367257.0), not ground the model saw
    res = split.get("res") or (0.0, 0.0)
    least = 0.5 * abs(float(res[0]) * float(res[1]))
    return tuple(part for part in _SEEN if any(footprint.intersection(box).area > least for box in boxes[part]))


def evaluate_imagery(
    model: Any,
    images: Sequence[str],
    labels: str | os.PathLike,
    *,
    label_field: str | None = None,
    layer: str | None = None,
    settings: Any = None,
    progress: ProgressCallback | None = None,
    tta: bool = False,
    bands: Sequence[int] | None = None,
) -> EvaluationReport:
    """Segment each image with ``glgeo.segment`` and score it against the labels.

    The labels (polygons in any CRS, or a label raster) are rasterized by torchgeo onto
    each image's own grid (:func:`glgeo.geodata.truth_on_grid`), with the model's class
    scheme: a ``label_field`` value per class, or every polygon class 1. An image that
    overlaps the area the model was trained on, or the validation scenes that chose the
    checkpoint (both recorded in it), is scored all the same, with a warning and a line in
    the report: its scores are not a validation.

    Args:
        model: a checkpoint path, zoo name or loaded checkpoint.
        images: image files or glob patterns.
        labels: a vector file or a label raster.
        label_field: the vector field holding each polygon's class.
        layer: the vector layer.
        settings: :class:`glgeo.inference.InferenceSettings`.
        progress: ``progress(done, total)`` per image.
        bands: 1-based bands fed to the model (as :func:`evaluate_model`'s).
        tta: test-time augmentation (``glgeo.segment``'s ``tta``).

    Raises:
        DatasetError: labels with no CRS, a missing field, values outside the scheme,
            labels that miss an image.
        InputError: no images; no pixel of any image both holding data and labelled
            with a class (nothing to score).
    """
    from .geodata import expand_images, truth_on_grid
    from .inference import InferenceSettings
    from .segmentation import load_model

    files = expand_images(images)
    settings = settings or InferenceSettings()
    checkpoint = load_model(model)
    scheme = checkpoint.scheme
    cuda = _start_peak_memory(settings)
    acc = ConfusionAccumulator(scheme)
    results = []
    seen = []
    unscored = []
    for path in files:
        parts = _training_area_overlap(checkpoint, path)
        if parts:
            log.warning(
                "%s overlaps %s: its scores are not a validation (for one, score images outside the areas its split"
                " recorded)", path, " and ".join(_SEEN_AREA[p] for p in parts),
            )
            seen.append((Path(path).stem, parts))
    with tempfile.TemporaryDirectory(prefix="glgeo-evaluate-") as tmp:
        folder = Path(tmp)
        for i, path in enumerate(files):
            name = Path(path).stem
            with open_raster(Path(path)) as src:
                if src.crs is None:
                    raise InputError(f"image {path} has no CRS, so the labels cannot be placed on it")
                profile = dict(driver="GTiff", width=src.width, height=src.height, crs=src.crs,
                               transform=src.transform, count=1, dtype="uint8", nodata=NODATA_ID, tiled=True)
                with _reading(labels):  # a label raster (the image is read by segment)
                    ids = truth_on_grid(Path(labels), scheme, src.crs, src.transform, (src.height, src.width),
                                        label_field, layer, image=path)
                # where the image has no data (a warp's collar), the labels say nothing either
                # (polygons make it background by default): not scored, as training ignores it
                with _reading(path):
                    valid = image_valid(src)
                if valid is not None:
                    ids[~valid] = NODATA_ID
                no_data = valid is not None and not valid.any()
            truth = folder / f"{i}_truth.tif"
            with rasterio.open(truth, "w", **profile) as dst:
                dst.write(ids[None])
            check_raster_complete(truth)
            out = folder / f"{i}_pred.tif"
            results.append(_segment_and_score(name, path, truth, "ids", out, checkpoint, settings, acc, tta=tta,
                                              bands=bands))
            if not results[-1].pixels:
                unscored.append(f"every pixel of {path} is nodata" if no_data else
                                f"the labels {labels} give no class where {path} holds data (it lies outside their"
                                " extent, or on their nodata)")
            for leftover in folder.glob(f"{i}_*"):
                leftover.unlink()
            if progress is not None:
                progress(i + 1, len(files))
    _check_scored(acc, unscored, "score images that hold data where the labels give classes")
    return _report(acc, results, cuda, checkpoint, model, tuple(seen))
