"""glgeo evaluate: rasters against truth (window by window), and a model against a split."""

from __future__ import annotations

import numpy as np
import pytest

import glgeo.evaluate as ev
from glgeo.datasets import open_dataset
from glgeo.errors import CheckpointError, InputError
from glgeo.evaluate import compare_rasters, evaluate_model, evaluate_rasters
from glgeo.schemes import DEEPGLOBE, INRIA
from fixtures.checkpoints import save_tiny_checkpoint
from fixtures.layouts import make_folder, make_inria
from fixtures.rasters import write_geotiff


def test_windows_give_the_same_counts(inria_pair, monkeypatch):
    pred, truth = inria_pair
    whole = compare_rasters(pred, truth, INRIA)
    monkeypatch.setattr(ev, "WINDOW_PIXELS", 30 * 3)  # strips of 3 rows
    assert ev._strips(40, 30)[1].row_off == 3
    np.testing.assert_array_equal(compare_rasters(pred, truth, INRIA), whole)


def test_deepglobe_rgb_truth_and_id_truth(tmp_path):
    colours = np.array([c.mask_value for c in DEEPGLOBE.classes], dtype=np.uint8)
    ids = np.array([[1, 1, 2], [4, 5, 0]], dtype=np.uint8)
    pred = write_geotiff(tmp_path / "p.tif", np.array([[1, 2, 2], [4, 5, 1]], dtype=np.uint8))
    rgb = write_geotiff(tmp_path / "t_rgb.tif", colours[ids].transpose(2, 0, 1))
    plain = write_geotiff(tmp_path / "t_ids.tif", ids)
    a = evaluate_rasters([(pred, rgb)], DEEPGLOBE, "mask", rgb_threshold=128)
    b = evaluate_rasters([(pred, plain)], DEEPGLOBE, "ids")
    np.testing.assert_array_equal(a.scores.confusion, b.scores.confusion)
    # urban 1 / (2 + 2 - 1) (one urban guess falls on "unknown"), agriculture 1 / (1 + 2 - 1),
    # forest 1, water 1; unknown is not scored
    assert a.scores.miou == pytest.approx((1 / 3 + 1 / 2 + 1 + 1) / 4)


def test_model_evaluation_matches_segment_then_compare(tmp_path):
    from glgeo.inference import InferenceSettings
    from glgeo.segmentation import segment

    make_folder(tmp_path / "ds", names=("a", "b"), size=80, n_classes=2, values=(0, 255))
    ds = open_dataset("folder", tmp_path / "ds", INRIA)
    ckpt = save_tiny_checkpoint(tmp_path / "m.pt", INRIA, widths=(32, 16))
    settings = InferenceSettings(device="cpu", precision="fp32")
    report = evaluate_model(ckpt, ds, ["a", "b"], settings)
    expected = np.zeros_like(report.scores.confusion)
    for name in ("a", "b"):
        out = tmp_path / f"{name}_pred.tif"
        segment(ds.scene(name).image, out, model=ckpt, settings=settings)
        expected += compare_rasters(out, ds.scene(name).mask, INRIA)
    np.testing.assert_array_equal(report.scores.confusion, expected)
    assert report.scores.n_pixels == 2 * 80 * 80
    assert len(report.images) == 2 and report.seconds_per_image > 0 and report.peak_memory_mb > 0
    assert report.memory_kind == "resident"


def test_a_model_trained_at_half_scale_is_scored_on_the_full_grid_or_on_copies(tmp_path, monkeypatch):
    import glgeo.segmentation as seg
    from glgeo.inference import InferenceSettings
    from glgeo.models.checkpoint import load_checkpoint

    make_folder(tmp_path / "ds", names=("a", "b"), size=80, n_classes=2, values=(0, 255))
    ds = open_dataset("folder", tmp_path / "ds", INRIA)
    ckpt = save_tiny_checkpoint(tmp_path / "m.pt", INRIA, widths=(32, 16), metadata={"training": {"scene_scale": 0.5}})
    assert load_checkpoint(ckpt).scene_scale == 0.5
    runs = []
    real_segment = seg.segment
    monkeypatch.setattr(seg, "segment", lambda *a, **kw: runs.append(real_segment(*a, **kw)) or runs[-1])
    settings = InferenceSettings(device="cpu", precision="fp32")
    full = evaluate_model(ckpt, ds, ["a", "b"], settings)
    assert full.scores.n_pixels == 2 * 80 * 80  # the masks' own grid
    assert [(r.scale, r.stats.patches, r.height) for r in runs] == [(0.5, 1, 80)] * 2  # 40 x 40 working grid
    runs.clear()
    copies = evaluate_model(ckpt, ds, ["a", "b"], settings, scale=0.5)
    assert copies.scores.n_pixels == 2 * 40 * 40
    assert [(r.scale, r.height) for r in runs] == [(1.0, 40)] * 2  # the copies are already at the model's scale


def test_gsd_says_how_fine_plain_images_are(tmp_path, monkeypatch):
    """Plain images read at the model's resolution from --gsd, not at its training scale."""
    import glgeo.segmentation as seg
    from glgeo.inference import InferenceSettings

    make_folder(tmp_path / "ds", names=("a",), size=80, n_classes=2, values=(0, 255))
    ds = open_dataset("folder", tmp_path / "ds", INRIA)
    ckpt = save_tiny_checkpoint(tmp_path / "m.pt", INRIA, widths=(32, 16),
                                metadata={"training": {"scene_scale": 0.25, "gsd_m": 2.0}})
    runs = []
    real_segment = seg.segment
    monkeypatch.setattr(seg, "segment", lambda *a, **kw: runs.append(real_segment(*a, **kw)) or runs[-1])
    settings = InferenceSettings(device="cpu", precision="fp32")
    evaluate_model(ckpt, ds, ["a"], settings)
    evaluate_model(ckpt, ds, ["a"], settings, gsd=1.0)  # 1 m images: read at 2 m
    evaluate_model(ckpt, ds, ["a"], settings, gsd=4.78125)  # coarser than the model's: as they are
    assert [r.scale for r in runs] == [0.25, 0.5, 1.0]
    with pytest.raises(InputError, match="positive"):
        evaluate_model(ckpt, ds, ["a"], settings, gsd=0)
    bare = save_tiny_checkpoint(tmp_path / "bare.pt", INRIA, widths=(32, 16))
    with pytest.raises(InputError, match="does not record the resolution"):
        evaluate_model(bare, ds, ["a"], settings, gsd=1.0)


def test_class_count_that_does_not_fit(tmp_path):
    make_inria(tmp_path / "inria", cities=("austin",), tiles=1, size=64)
    ckpt = save_tiny_checkpoint(tmp_path / "m.pt", DEEPGLOBE, widths=(32, 16))
    ds = open_dataset("inria", tmp_path / "inria")
    with pytest.raises(CheckpointError, match="predicts 7 classes .* scheme 'inria' has 2"):
        evaluate_model(ckpt, ds, ["austin1"])


def test_a_warning_about_every_image_of_a_dataset_is_shown_once():
    import logging

    from glgeo.evaluate import _each_warning_once

    log = logging.getLogger("glgeo.segmentation")
    seen = []
    handler = logging.Handler()
    handler.emit = seen.append
    log.addHandler(handler)
    level = log.level
    log.setLevel(logging.INFO)
    try:
        with _each_warning_once("glgeo.segmentation"):
            for scene in ("a.tif", "b.tif", "c.tif"):
                log.warning("%s is coarser than the model's imagery", scene)
                log.info("segmenting %s", scene)
        log.warning("%s is coarser than the model's imagery", "d.tif")  # the filter is gone afterwards
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
    assert [r.getMessage() for r in seen] == [
        "a.tif is coarser than the model's imagery", "segmenting a.tif", "segmenting b.tif", "segmenting c.tif",
        "d.tif is coarser than the model's imagery",
    ]


def test_plain_images_are_not_warned_about_outputs_the_user_never_sees(tmp_path, caplog):
    """Published datasets' JPEGs carry no georeferencing, so segment warns that its output has
    none either: evaluate's outputs are temporary, so it says nothing of them."""
    import logging

    from glgeo.inference import InferenceSettings
    from fixtures.layouts import make_deepglobe

    root = make_deepglobe(tmp_path / "dg", ids=("1", "2", "3"), size=64)
    ds = open_dataset("deepglobe", root)
    ckpt = save_tiny_checkpoint(tmp_path / "m.pt", DEEPGLOBE, widths=(32, 16))
    with caplog.at_level(logging.WARNING):
        evaluate_model(ckpt, ds, ["1", "2", "3"], InferenceSettings(device="cpu", precision="fp32"))
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    # the filter is gone afterwards: segment warns of each scene it is given
    from glgeo.segmentation import segment

    caplog.clear()
    with caplog.at_level(logging.WARNING):
        for name in ("2", "3"):
            segment(ds.scene(name).image, tmp_path / f"{name}.tif", model=ckpt, settings=InferenceSettings(device="cpu"))
    assert sum("has no georeferencing" in r.getMessage() for r in caplog.records) == 2


def test_undeclared_nodata_in_id_truth_is_reported(inria_pair, tmp_path, caplog):
    """Inria's 0/255 truth read as class ids: 255 is glgeo's nodata id, so every building pixel
    drops out and building IoU reads 0. The file does not declare 255 as nodata: say so."""
    import logging

    import rasterio

    pred, truth = inria_pair
    with caplog.at_level(logging.WARNING, logger="glgeo.evaluate"):
        report = evaluate_rasters([(pred, truth)], INRIA, "ids")
    assert report.left_out_truth_pixels == 200 and report.scores.n_pixels == 1000
    assert report.to_dict()["left_out_truth_pixels"] == 200
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "gt.tif: 200 of its 1,200 pixels (16.7 %) hold 255, no class id of scheme 'inria' (0-1)" in warning
    assert "if 255 is building (inria's 0/255 masks), use truth_encoding='mask'" in warning
    assert "left out: 200 truth pixels (16.7 % of those not declared nodata) hold 255" in report.table()
    # read as the published mask, the building pixels count, and nothing is said
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="glgeo.evaluate"):
        mask = evaluate_rasters([(pred, truth)], INRIA, "mask")
    assert mask.left_out_truth_pixels == 0 and mask.scores.building_iou == pytest.approx(100 / 300)
    assert not caplog.records and "left out" not in mask.table()
    # a truth that declares 255 as its nodata means it: no warning
    with rasterio.open(truth) as src:
        declared = write_geotiff(tmp_path / "declared.tif", src.read(1), nodata=255)
    with caplog.at_level(logging.WARNING, logger="glgeo.evaluate"):
        assert evaluate_rasters([(pred, declared)], INRIA, "ids").left_out_truth_pixels == 0
    assert not caplog.records
    # a scheme whose masks have no 255: the advice is to declare it
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="glgeo.evaluate"):
        evaluate_rasters([(pred, truth)], DEEPGLOBE, "ids")
    assert "if 255 marks no data, declare it as the file's nodata, else check the class scheme" in caplog.text


def test_table_says_how_many_truth_pixels_had_no_prediction(tmp_path):
    """A prediction that is mostly nodata scores as misses; the table says how many."""
    truth = np.zeros((10, 100), dtype=np.uint8)
    truth[:, :50] = 1
    pred = truth.copy()
    pred[:, 37:] = 255  # 63 % nodata
    p = write_geotiff(tmp_path / "p.tif", pred, nodata=255)
    t = write_geotiff(tmp_path / "t.tif", truth)
    report = evaluate_rasters([(p, t)], INRIA, "ids")
    assert report.scores.confusion[:, -1].sum() == 630
    assert ("no prediction: 630 of the 1,000 truth pixels (63.0 %) are nodata (or no class id) in the prediction,"
            " scored as misses") in report.table()
    full = write_geotiff(tmp_path / "full.tif", truth, nodata=255)
    assert "no prediction" not in evaluate_rasters([(full, t)], INRIA, "ids").table()


def test_a_declared_nodata_that_is_a_class_id_is_reported(tmp_path, caplog):
    """A truth or prediction declaring nodata 0 (Inria's background) silently loses that
    class from the scores: say which class and how many pixels."""
    import logging

    truth = np.zeros((10, 20), dtype=np.uint8)
    truth[:, 15:] = 1
    truth_path = write_geotiff(tmp_path / "truth.tif", truth, nodata=0)
    pred_path = write_geotiff(tmp_path / "pred.tif", truth, nodata=0)
    with caplog.at_level(logging.WARNING, logger="glgeo.evaluate"):
        report = evaluate_rasters([(pred_path, truth_path)], INRIA, "ids")
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(m.startswith(f"truth {truth_path} declares nodata 0, which is class 0 background of scheme 'inria':"
                            " its 150 pixels of that value are left out of the scores") for m in messages), messages
    assert any(f"prediction {pred_path} declares nodata 0" in m and "150 pixels of that value are scored as no"
               " prediction" in m for m in messages), messages
    assert report.scores.n_pixels == 50  # what is left: the building columns
    # glgeo's own outputs declare a nodata beyond the classes: nothing to say
    caplog.clear()
    own = write_geotiff(tmp_path / "own.tif", truth, nodata=3)
    with caplog.at_level(logging.WARNING, logger="glgeo.evaluate"):
        evaluate_rasters([(own, own)], INRIA, "ids")
    assert not caplog.records
