"""Confusion matrices and scores, checked against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from glgeo.errors import InputError
from glgeo.metrics import ConfusionAccumulator, SegmentationScores, confusion_matrix, confusion_tensor
from glgeo.schemes import DEEPGLOBE, INRIA, NODATA_ID, ClassInfo, ClassScheme

THREE = ClassScheme(name="three", classes=tuple(ClassInfo(i, f"c{i}", (i, i, i), i) for i in range(3)), ignore_in_miou=(2,))

TRUTH = np.array([[0, 0, 1], [1, 2, NODATA_ID]], dtype=np.uint8)
PRED = np.array([[0, 1, 1], [1, 0, 2]], dtype=np.uint8)


def test_confusion_matrix_by_hand():
    cm = confusion_matrix(TRUTH, PRED, 3)
    # rows = truth, columns = prediction, last column = "no class predicted"; nodata truth ignored
    assert cm.tolist() == [[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 0, 0]]


def test_tensor_counts_match_the_array_counts():
    import torch

    rng = np.random.default_rng(0)
    truth = rng.choice([0, 1, 2, NODATA_ID], size=(40, 50)).astype(np.uint8)
    pred = rng.choice([0, 1, 2, 7, NODATA_ID], size=(40, 50)).astype(np.uint8)  # 7, 255: not classes
    counted = confusion_tensor(torch.from_numpy(truth), torch.from_numpy(pred), 3)
    assert counted.tolist() == confusion_matrix(truth, pred, 3).tolist()
    assert confusion_tensor(torch.from_numpy(TRUTH), torch.from_numpy(PRED), 3).tolist() == [[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 0, 0]]


def test_scores_by_hand():
    scores = SegmentationScores(confusion_matrix(TRUTH, PRED, 3), THREE)
    # IoU0 = 1 / (2 + 2 - 1); IoU1 = 2 / (2 + 3 - 2); IoU2 = 0 / (1 + 0 - 0)
    np.testing.assert_allclose(scores.iou, [1 / 3, 2 / 3, 0.0])
    assert scores.miou == pytest.approx(0.5)  # class 2 is not scored
    assert scores.pixel_accuracy == pytest.approx(3 / 5)
    assert scores.n_pixels == 5
    d = scores.to_dict()
    assert d["scored_classes"] == ["c0", "c1"] and d["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    assert "c0" in scores.table() and "50.00" in scores.table()


def test_unpredicted_pixels_count_as_misses():
    cm = confusion_matrix(np.array([1, 1, 0]), np.array([1, NODATA_ID, 0]), 2)
    assert cm.tolist() == [[1, 0, 0], [0, 1, 1]]
    scores = SegmentationScores(cm, INRIA)
    assert scores.iou[1] == pytest.approx(1 / 2) and scores.building_iou == pytest.approx(0.5)
    assert scores.pixel_accuracy == pytest.approx(2 / 3)


def test_deepglobe_miou_skips_unknown_and_absent_classes():
    truth = np.array([0, 0, 1, 1, 2, 2])
    pred = np.array([0, 1, 1, 1, 2, 0])
    scores = SegmentationScores(confusion_matrix(truth, pred, 7), DEEPGLOBE)
    # urban: 2 / (2 + 3 - 2); agriculture: 1 / (2 + 1 - 1); classes 3-6 absent (NaN); unknown not scored
    assert math.isnan(scores.iou[4])
    assert scores.miou == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert scores.building_iou is None
    # the table and the JSON say which classes the mean is over (the table said "scored yes"
    # of absent classes with nothing telling them out of the mean)
    assert ("over 2 of the 6 scored classes (rangeland, forest, water, barren: in neither truth nor prediction)"
            in scores.table())
    assert scores.to_dict()["miou_classes"] == ["urban", "agriculture"]


def test_accumulating_windows_equals_the_whole():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 3, size=(50, 40))
    pred = rng.integers(0, 3, size=(50, 40))
    acc = ConfusionAccumulator(THREE)
    for r in range(0, 50, 7):
        acc.update(truth[r : r + 7], pred[r : r + 7])
    np.testing.assert_array_equal(acc.scores().confusion, confusion_matrix(truth, pred, 3))


def test_bad_inputs():
    with pytest.raises(InputError, match="differ in shape"):
        confusion_matrix(np.zeros((2, 2)), np.zeros((2, 3)), 2)
    with pytest.raises(InputError, match=r"truth holds ids \[5\]"):
        confusion_matrix(np.array([5]), np.array([0]), 2)
    with pytest.raises(InputError, match="needs"):
        SegmentationScores(np.zeros((2, 2)), INRIA)


def test_majority_baseline_predicts_one_class_on_the_same_pixels():
    confusion = np.array([[80, 5, 0], [10, 5, 0]])  # truth rows: 85 background, 15 building
    base = SegmentationScores(confusion, INRIA).majority_baseline(0)
    assert base.n_pixels == 100
    assert base.pixel_accuracy == pytest.approx(0.85)
    assert base.building_iou == 0.0
    assert base.miou == pytest.approx((0.85 + 0.0) / 2)
