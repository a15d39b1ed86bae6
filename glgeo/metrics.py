"""Segmentation metrics from a confusion matrix, accumulated window by window.

The confusion matrix has one row per true class and one column per predicted class.
Truth pixels equal to :data:`~glgeo.schemes.NODATA_ID` are ignored; a prediction that is
not a class (nodata where the truth has a class) counts as a miss for the true class.

Scores follow the benchmarks: per-class IoU = TP / (TP + FP + FN) over all pixels of all
images (not averaged per image); mIoU is the mean over the scheme's scored classes
(DeepGlobe: the six other than "unknown", as in the GLNet paper) that occur in the truth or
the prediction; pixel accuracy = correct / all truth pixels. For Inria the building IoU is
the building class's IoU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import InputError
from .schemes import NODATA_ID, ClassScheme

if TYPE_CHECKING:
    import torch


def confusion_matrix(truth: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Confusion counts ``(n_classes, n_classes + 1)`` for one pair of id arrays.

    The extra last column counts truth pixels whose prediction is not a class id.

    Raises:
        InputError: the arrays differ in shape.
    """
    if truth.shape != pred.shape:
        raise InputError(f"truth {truth.shape} and prediction {pred.shape} differ in shape")
    t = truth.reshape(-1).astype(np.int64)
    p = pred.reshape(-1).astype(np.int64)
    keep = (t >= 0) & (t < n_classes)
    if np.any((t != NODATA_ID) & ~keep):
        bad = np.unique(t[(t != NODATA_ID) & ~keep])[:5]
        raise InputError(f"truth holds ids {bad.tolist()} outside 0-{n_classes - 1} (and not nodata {NODATA_ID})")
    t, p = t[keep], p[keep]
    p = np.where((p >= 0) & (p < n_classes), p, n_classes)
    counts = np.bincount(t * (n_classes + 1) + p, minlength=n_classes * (n_classes + 1))
    return counts.reshape(n_classes, n_classes + 1)


def confusion_tensor(truth: torch.Tensor, pred: torch.Tensor, n_classes: int) -> torch.Tensor:
    """:func:`confusion_matrix` for torch tensors, counted on their device.

    Training validates on the GPU; counting there avoids copying every mask to the host.
    Truth ids that are not classes (nodata) are ignored without the check
    :func:`confusion_matrix` makes, which would synchronise with the device.
    """
    import torch

    t = truth.reshape(-1).long()
    p = pred.reshape(-1).long()
    keep = (t >= 0) & (t < n_classes)
    t, p = t[keep], p[keep]
    p = torch.where((p >= 0) & (p < n_classes), p, torch.full_like(p, n_classes))
    counts = torch.bincount(t * (n_classes + 1) + p, minlength=n_classes * (n_classes + 1))
    return counts.reshape(n_classes, n_classes + 1)


@dataclass(frozen=True)
class SegmentationScores:
    """Scores of one confusion matrix under a class scheme.

    Args:
        confusion: ``(n, n + 1)`` counts (rows truth, columns prediction, last column
            "no class predicted").
        scheme: names the classes and says which count in the mIoU.
    """

    confusion: np.ndarray
    scheme: ClassScheme

    def __post_init__(self) -> None:
        n = self.scheme.n_classes
        if self.confusion.shape != (n, n + 1):
            raise InputError(f"confusion matrix is {self.confusion.shape}; scheme {self.scheme.name!r} needs {(n, n + 1)}")

    @property
    def n_pixels(self) -> int:
        """Truth pixels counted."""
        return int(self.confusion.sum())

    @property
    def iou(self) -> np.ndarray:
        """Per-class IoU; NaN for a class absent from both truth and prediction."""
        n = self.scheme.n_classes
        cm = self.confusion.astype(np.float64)
        tp = np.diag(cm[:, :n])
        union = cm.sum(axis=1) + cm[:, :n].sum(axis=0) - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(union > 0, tp / union, np.nan)

    @property
    def miou(self) -> float:
        """Mean IoU over the scheme's scored classes present in truth or prediction."""
        values = self.iou[self.scheme.scored_ids]
        values = values[~np.isnan(values)]
        return float(values.mean()) if values.size else math.nan

    @property
    def pixel_accuracy(self) -> float:
        """Correct pixels / truth pixels."""
        n = self.scheme.n_classes
        total = self.confusion.sum()
        return float(np.trace(self.confusion[:, :n]) / total) if total else math.nan

    @property
    def building_iou(self) -> float | None:
        """Inria's score: the IoU of the ``building`` class (``None`` if the scheme has none)."""
        if "building" not in self.scheme.names:
            return None
        return float(self.iou[self.scheme.by_name("building").id])

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able summary (NaN written as ``None``)."""
        clean = lambda v: None if v is None or (isinstance(v, float) and math.isnan(v)) else v  # noqa: E731
        out: dict[str, Any] = {
            "scheme": self.scheme.name,
            "classes": self.scheme.names,
            "scored_classes": [self.scheme.names[i] for i in self.scheme.scored_ids],
            "miou": clean(self.miou),
            # the scored classes the mean is over (those in truth or prediction)
            "miou_classes": [self.scheme.names[i] for i in self.scheme.scored_ids if not math.isnan(self.iou[i])],
            "pixel_accuracy": clean(self.pixel_accuracy),
            "iou": {name: clean(float(v)) for name, v in zip(self.scheme.names, self.iou)},
            "pixels": self.n_pixels,
            "confusion_matrix": self.confusion[:, : self.scheme.n_classes].tolist(),
            "unpredicted_pixels": self.confusion[:, -1].tolist(),
        }
        if self.building_iou is not None:
            out["building_iou"] = clean(self.building_iou)
        return out

    def majority_baseline(self, class_id: int) -> "SegmentationScores":
        """The scores of predicting ``class_id`` everywhere, on the same truth pixels
        (the baseline a model must beat)."""
        n = self.scheme.n_classes
        if not 0 <= class_id < n:
            raise InputError(f"class id {class_id} is not in scheme {self.scheme.name!r} (0-{n - 1})")
        base = np.zeros_like(self.confusion)
        base[:, class_id] = self.confusion.sum(axis=1)
        return SegmentationScores(base, self.scheme)

    def table(self) -> str:
        """A plain-text table: per-class IoU, then mIoU and pixel accuracy."""
        width = max(len(n) for n in self.scheme.names) + 2
        lines = [f"{'class':<{width}}{'IoU':>8}  scored"]
        for cls, value in zip(self.scheme.classes, self.iou):
            text = "-" if math.isnan(value) else f"{100 * value:.2f}"
            lines.append(f"{cls.name:<{width}}{text:>8}  {'yes' if cls.id in self.scheme.scored_ids else 'no'}")
        scored = list(self.scheme.scored_ids)
        absent = [self.scheme.names[i] for i in scored if math.isnan(self.iou[i])]
        note = (f"  over {len(scored) - len(absent)} of the {len(scored)} scored classes ({', '.join(absent)}: in"
                " neither truth nor prediction)") if absent and len(absent) < len(scored) else ""
        lines.append(f"{'mIoU':<{width}}{_pct(self.miou):>8}{note}")
        if self.building_iou is not None:
            lines.append(f"{'building IoU':<{width}}{_pct(self.building_iou):>8}")
        lines.append(f"{'pixel acc.':<{width}}{_pct(self.pixel_accuracy):>8}")
        return "\n".join(lines)


def _pct(value: float) -> str:
    return "-" if math.isnan(value) else f"{100 * value:.2f}"


class ConfusionAccumulator:
    """Adds confusion matrices window by window, image by image.

    Args:
        scheme: the class scheme of truth and prediction.
    """

    def __init__(self, scheme: ClassScheme) -> None:
        self.scheme = scheme
        self.confusion = np.zeros((scheme.n_classes, scheme.n_classes + 1), dtype=np.int64)

    def update(self, truth: np.ndarray, pred: np.ndarray) -> None:
        """Count one pair of id arrays (same shape)."""
        self.confusion += confusion_matrix(truth, pred, self.scheme.n_classes)

    def add(self, confusion: np.ndarray) -> None:
        """Add counts computed elsewhere (another worker or process)."""
        self.confusion += confusion

    def scores(self) -> SegmentationScores:
        """The scores of everything counted so far."""
        return SegmentationScores(self.confusion.copy(), self.scheme)
