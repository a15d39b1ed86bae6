"""glgeo evaluate: rasters against truth (window by window), and a model against a split."""

from __future__ import annotations

import numpy as np
import pytest

import glgeo.evaluate as ev
from glgeo.datasets import open_dataset
from glgeo.errors import CheckpointError, InputError
from glgeo.evaluate import compare_rasters, evaluate_model, evaluate_rasters
from glgeo.schemes import DEEPGLOBE, INRIA, NODATA_ID
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


def test_copies_coarser_than_the_model_are_said_once_without_advice_about_a_scale_nobody_chose(tmp_path, caplog):
    """scale=0.25 of 0.5 m scenes for a 1 m model: evaluate says its copies are coarser; the
    scale of 1 it then reads them at is its own, so no "drop scale=1" (naming its temporary
    copy) follows."""
    import logging

    from glgeo.inference import InferenceSettings

    make_folder(tmp_path / "ds", names=("a",), size=80, n_classes=2, values=(0, 255))  # 0.5 m, EPSG:32618
    ds = open_dataset("folder", tmp_path / "ds", INRIA)
    ckpt = save_tiny_checkpoint(tmp_path / "m.pt", INRIA, widths=(32, 16),
                                metadata={"training": {"scene_scale": 0.5, "gsd_m": 1.0}})
    with caplog.at_level(logging.WARNING, logger="glgeo"):
        evaluate_model(ckpt, ds, ["a"], InferenceSettings(device="cpu", precision="fp32"), scale=0.25)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == [
        "the model reads this scene at 0.5 of its resolution; the 0.25 copy is coarser and is fed as it is"
    ]


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


def test_a_mask_whose_nodata_is_a_class_value_is_reported(tmp_path, caplog):
    """An Inria 0/255 mask declaring nodata 0 (its background value) loses every background
    pixel from the scores (mIoU 100 on building alone): say which class, how many, what to do."""
    import logging

    import rasterio

    truth = np.zeros((10, 20), dtype=np.uint8)
    truth[:, 15:] = 255
    truth_path = write_geotiff(tmp_path / "truth.tif", truth, nodata=0)
    pred_path = write_geotiff(tmp_path / "pred.tif", (truth == 255).astype(np.uint8), nodata=NODATA_ID)
    with caplog.at_level(logging.WARNING, logger="glgeo.evaluate"):
        report = evaluate_rasters([(pred_path, truth_path)], INRIA, "mask")
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.startswith(f"truth {truth_path} declares nodata 0, which is the mask value of class 0 background"
                              " of scheme 'inria': its 150 pixels of that value are left out of the scores;"), warning
    assert "if they are background, remove or change the file's nodata" in warning
    assert report.scores.n_pixels == 50 and report.excluded_truth_pixels == 150
    # a nodata value that is no class value of the scheme says nothing
    caplog.clear()
    other = write_geotiff(tmp_path / "other.tif", truth, nodata=7)
    with caplog.at_level(logging.WARNING, logger="glgeo.evaluate"):
        evaluate_rasters([(pred_path, other)], INRIA, "mask")
    assert not caplog.records
    # a model scored on such masks, on them or on copies at a lower scale: the same warning, of the user's mask
    from glgeo.inference import InferenceSettings

    make_folder(tmp_path / "ds", names=("a",), size=48, n_classes=2, values=(0, 255))
    mask = tmp_path / "ds" / "masks" / "a.tif"
    with rasterio.open(mask) as src:
        values = src.read(1)
    write_geotiff(mask, values, nodata=0)
    ds = open_dataset("folder", tmp_path / "ds", INRIA)
    ckpt = save_tiny_checkpoint(tmp_path / "m.pt", INRIA, widths=(32, 16))
    for scale, count in ((1.0, int((values == 0).sum())), (0.5, int((values[::2, ::2] == 0).sum()))):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="glgeo.evaluate"):
            report = evaluate_model(ckpt, ds, ["a"], InferenceSettings(device="cpu", precision="fp32"), scale=scale)
        [warning] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("truth")]
        assert warning.startswith(f"truth {mask} declares nodata 0, which is the mask value of class 0 background"
                                  f" of scheme 'inria': its {count:,} pixels"), warning
        assert report.excluded_truth_pixels == count


def test_truth_pixels_left_out_of_the_scores_are_counted(tmp_path):
    """Declared-nodata truth pixels are not scored; the report says how many, so its numbers
    add up to the images' pixels (table line, JSON field, per image)."""
    truth = np.zeros((40, 50), dtype=np.uint8)
    truth[:, 30:] = 255
    truth[:16, :] = 7  # 800 of the 2,000 pixels are nodata
    truth_path = write_geotiff(tmp_path / "truth.tif", truth, nodata=7)
    pred_path = write_geotiff(tmp_path / "pred.tif", (truth == 255).astype(np.uint8), nodata=NODATA_ID)
    full = write_geotiff(tmp_path / "full.tif", np.where(truth == 7, 0, truth).astype(np.uint8))
    report = evaluate_rasters([(pred_path, truth_path), (pred_path, full)], INRIA, "mask")
    assert report.scores.n_pixels == 1200 + 2000 and report.excluded_truth_pixels == 800
    assert report.scores.n_pixels + report.excluded_truth_pixels == 2 * 40 * 50
    data = report.to_dict()
    assert data["excluded_truth_pixels"] == 800
    assert [(i["pixels"], i["excluded_truth_pixels"]) for i in data["images"]] == [(1200, 800), (2000, 0)]
    assert ("not scored: 800 of the 4,000 truth pixels (20.0 %) have no truth class (nodata or masked in the truth, or"
            " no label there): left out of the scores") in report.table()
    assert "not scored" not in evaluate_rasters([(pred_path, full)], INRIA, "mask").table()


@pytest.mark.parametrize("how", ["mask", "alpha"])
def test_truth_and_prediction_pixels_their_files_mask_are_no_data(tmp_path, how):
    """A truth raster whose pixels without data are marked by an internal mask or an alpha
    band (no nodata value), as GDAL's tools and QGIS honour it: those pixels are not scored
    and counted as such; a prediction's masked pixels are scored as no prediction."""
    truth = np.zeros((40, 50), dtype=np.uint8)
    truth[:, 30:] = 1
    valid = np.ones((40, 50), bool)
    valid[:, :20] = False  # 800 of the 2,000 truth pixels have no data (their value says background)
    extra = {"mask": valid} if how == "mask" else {"alpha": np.where(valid, 255, 0).astype(np.uint8), "ALPHA": "YES"}
    truth_path = write_geotiff(tmp_path / "truth.tif", truth, **extra)
    pred = np.ones((40, 50), dtype=np.uint8)  # all building: right only where the truth is
    pred_path = write_geotiff(tmp_path / "pred.tif", pred, nodata=NODATA_ID)
    report = evaluate_rasters([(pred_path, truth_path)], INRIA, "ids")
    assert report.scores.n_pixels == 1200 and report.excluded_truth_pixels == 800
    assert report.scores.iou[1] == pytest.approx(800 / 1200)  # 400 masked "background" pixels not counted as misses
    masked_pred = write_geotiff(tmp_path / "masked_pred.tif", pred, **extra)
    plain_truth = write_geotiff(tmp_path / "plain_truth.tif", truth)
    report = evaluate_rasters([(masked_pred, plain_truth)], INRIA, "ids")
    assert report.scores.n_pixels == 2000 and int(report.scores.confusion[:, -1].sum()) == 800


def test_the_report_gives_the_majority_class_baseline(tmp_path):
    """Every report says what answering the truth's most common class everywhere scores, on
    the same pixels (table line and JSON): the constant answer a model must beat."""
    truth = np.zeros((40, 50), dtype=np.uint8)
    truth[:10, :] = 1  # 500 of 2,000 pixels building: background is the majority
    pred = np.zeros_like(truth)
    pred[:5, :] = 1  # finds half the buildings, nothing else
    report = evaluate_rasters([(write_geotiff(tmp_path / "p.tif", pred), write_geotiff(tmp_path / "t.tif", truth))],
                              INRIA, "ids")
    base = report.to_dict()["majority_baseline"]
    assert base["class"] == "background" and base["pixel_accuracy"] == pytest.approx(0.75)
    assert base["miou"] == pytest.approx(0.375) and base["building_iou"] == 0.0
    assert report.scores.pixel_accuracy == pytest.approx(0.875)
    assert ("majority class (background, the truth's most common scored class, everywhere): mIoU 37.50, pixel acc. 75.00, "
            "building IoU 0.00") in report.table()


def test_model_evaluation_counts_truth_nodata(tmp_path):
    from glgeo.inference import InferenceSettings

    make_folder(tmp_path / "ds", names=("a",), size=48, n_classes=2, values=(0, 255))
    mask = tmp_path / "ds" / "masks" / "a.tif"
    import rasterio

    with rasterio.open(mask) as src:
        values = src.read(1)
    values[:12] = 9
    write_geotiff(mask, values, nodata=9)
    ds = open_dataset("folder", tmp_path / "ds", INRIA)
    ckpt = save_tiny_checkpoint(tmp_path / "m.pt", INRIA, widths=(32, 16))
    settings = InferenceSettings(device="cpu", precision="fp32")
    report = evaluate_model(ckpt, ds, ["a"], settings)
    assert report.excluded_truth_pixels == 12 * 48 and report.scores.n_pixels == 36 * 48
    half = evaluate_model(ckpt, ds, ["a"], settings, scale=0.5)
    assert half.excluded_truth_pixels == 6 * 24 and half.scores.n_pixels == 18 * 24


def test_a_mask_off_its_image_grid_is_refused_before_segmenting(tmp_path, monkeypatch):
    """A mask georeferenced 30 m away from its image is found before any scene is segmented,
    at any scale, and the error names the user's files, not a temporary prediction."""
    import rasterio

    import glgeo.segmentation as seg
    from glgeo.errors import DatasetError

    make_folder(tmp_path / "ds", names=("a", "b"), size=48, n_classes=2, values=(0, 255))
    mask = tmp_path / "ds" / "masks" / "b.tif"
    with rasterio.open(mask) as src:
        values = src.read(1)
    write_geotiff(mask, values, origin=(500030.0, 4500000.0))
    ds = open_dataset("folder", tmp_path / "ds", INRIA)
    ckpt = save_tiny_checkpoint(tmp_path / "m.pt", INRIA, widths=(32, 16))
    monkeypatch.setattr(seg, "segment", lambda *a, **kw: pytest.fail("segmented before checking the grids"))
    for scale in (1.0, 0.5):
        with pytest.raises(DatasetError) as info:
            evaluate_model(ckpt, ds, ["a", "b"], scale=scale)
        message = str(info.value)
        assert message.startswith(f"scene 'b': mask {mask} ") and f"its image {ds.scene('b').image}" in message
        assert "grid" in message and "glgeo-evaluate" not in message and "_pred" not in message
    # a drift too small for training to mind still fails the window-by-window comparison: also found first
    write_geotiff(mask, values, origin=(500000.001, 4500000.0))
    with pytest.raises(DatasetError, match=r"^scene 'b': mask .* is not on the grid of its image .*\(500000.001,"
                                           r" 4500000.0\) vs \(500000.0, 4500000.0\).* gdalwarp -r near"
                                           r" -t_srs EPSG:32631 -te 500000 4499976 500024 4500000 -ts 48 48 "):
        evaluate_model(ckpt, ds, ["a", "b"])


def test_the_same_pair_twice_is_refused(inria_pair, tmp_path):
    pred, truth = inria_pair
    with pytest.raises(InputError, match="given twice .*would count its pixels twice"):
        evaluate_rasters([(pred, truth), (tmp_path / "." / "pred.tif", truth)], INRIA)
    # the same truth against two different predictions is two pairs
    other = write_geotiff(tmp_path / "other.tif", np.zeros((40, 30), np.uint8))
    assert evaluate_rasters([(pred, truth), (other, truth)], INRIA).scores.n_pixels == 2 * 1200


def test_scenes_the_model_was_trained_or_chosen_on_are_flagged(tmp_path, caplog):
    """A checkpoint records its split by scene name: scores on its train part (trained on) or
    its val part (chose the checkpoint) are not a validation; a warning per scene, and the report says so."""
    import logging

    from glgeo.inference import InferenceSettings

    make_folder(tmp_path / "ds", names=("a", "b", "c"), size=32, n_classes=2, values=(0, 255))
    ds = open_dataset("folder", tmp_path / "ds", INRIA)
    split = {"kind": "folder", "train": ["a", "x"], "val": ["b"], "test": ["c"]}
    ckpt = save_tiny_checkpoint(tmp_path / "m.pt", INRIA, widths=(32, 16), metadata={"training": {"split": split}})
    settings = InferenceSettings(device="cpu", precision="fp32")
    with caplog.at_level(logging.WARNING, logger="glgeo.evaluate"):
        report = evaluate_model(ckpt, ds, ["a", "b", "c"], settings)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name == "glgeo.evaluate"]
    assert len(warnings) == 2, warnings
    assert warnings[0].startswith("scene 'a' is in the train part of the model's split: the model was trained on it;"
                                  " its scores are not a validation")
    assert warnings[1].startswith("scene 'b' is in the val part of the model's split: it chose the checkpoint;"
                                  " its scores are not a validation")
    assert report.to_dict()["not_validation"] == {"a": ["train"], "b": ["val"]}
    assert "not a validation: 2 of the 3 images: a (trained on), b (chose the checkpoint)" in report.table()
    # a split of another dataset kind names other scenes
    other = save_tiny_checkpoint(tmp_path / "o.pt", INRIA, widths=(32, 16),
                                 metadata={"training": {"split": {**split, "kind": "inria"}}})
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="glgeo.evaluate"):
        report = evaluate_model(other, ds, ["a"], settings)
    assert not [r for r in caplog.records if r.name == "glgeo.evaluate"] and "not a validation" not in report.table()


def test_another_folder_dataset_with_the_same_names_is_not_flagged(tmp_path, caplog):
    """A folder dataset's scene names are the user's own: "a" of another dataset is another
    scene where the model's recorded folder is here to compare with; a copy of the model's
    own dataset elsewhere is flagged, and so is a name when the recorded folder is gone."""
    import logging
    import shutil

    from glgeo.inference import InferenceSettings

    make_folder(tmp_path / "ds", names=("a", "b"), size=32, n_classes=2, values=(0, 255))
    make_folder(tmp_path / "other", names=("a", "b"), size=32, n_classes=2, values=(0, 255), seed=5)
    shutil.copytree(tmp_path / "ds", tmp_path / "copy")
    split = {"kind": "folder", "root": str(tmp_path / "ds"), "train": ["a"], "val": ["b"], "test": []}
    ckpt = save_tiny_checkpoint(tmp_path / "m.pt", INRIA, widths=(32, 16), metadata={"training": {"split": split}})
    settings = InferenceSettings(device="cpu", precision="fp32")

    def flagged(root: str) -> dict:
        return evaluate_model(ckpt, open_dataset("folder", tmp_path / root, INRIA), ["a", "b"], settings).to_dict()[
            "not_validation"]

    with caplog.at_level(logging.INFO, logger="glgeo.evaluate"):
        assert flagged("other") == {}
    assert "scene 'a' has the name of a scene of the model's split, but not its image" in caplog.text
    assert flagged("copy") == {"a": ["train"], "b": ["val"]}
    shutil.rmtree(tmp_path / "ds")
    assert flagged("other") == {"a": ["train"], "b": ["val"]}  # nothing to compare with: by name


def test_images_on_the_models_training_or_validation_areas_are_flagged(tmp_path, caplog):
    """Geo training records its areas: an image overlapping its validation scenes (they chose
    the checkpoint) is flagged as one overlapping its training rectangles is."""
    import logging

    from glgeo.evaluate import evaluate_imagery
    from glgeo.inference import InferenceSettings

    rng = np.random.default_rng(0)
    # three 64 m tiles side by side (1 m pixels), and a 0/255 label raster over all of them
    files = [write_geotiff(tmp_path / f"{n}.tif", rng.integers(0, 255, (3, 64, 64), dtype=np.uint8),
                           origin=(500000.0 + 64 * i, 4500000.0), res=1.0) for i, n in enumerate("abc")]
    labels = np.zeros((64, 192), np.uint8)
    labels[4:12, 4:180] = 255
    labels_path = write_geotiff(tmp_path / "labels" / "gt.tif", labels, origin=(500000.0, 4500000.0), res=1.0)
    # the validation scene reaches b's right edge, which c touches up to rounding (c was flagged)
    split = {"kind": "geo", "crs": "EPSG:32631", "res": [1.0, 1.0], "train": [f"{files[0]}: 500000,4499940,500060,4500000"],
             "val": [f"{files[1]}: 500080,4499950,500128.00000000006,4499990"]}
    ckpt = save_tiny_checkpoint(tmp_path / "m.pt", INRIA, widths=(32, 16), metadata={"training": {"split": split}})
    with caplog.at_level(logging.WARNING, logger="glgeo.evaluate"):
        report = evaluate_imagery(ckpt, [str(f) for f in files], labels_path,
                                  settings=InferenceSettings(device="cpu", precision="fp32"))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name == "glgeo.evaluate"]
    assert len(warnings) == 2, warnings
    assert warnings[0].startswith(f"{files[0]} overlaps the area the model was trained on: its scores are not a"
                                  " validation")
    assert warnings[1].startswith(f"{files[1]} overlaps the validation scenes that chose the checkpoint: its scores are"
                                  " not a validation")
    assert report.to_dict()["not_validation"] == {"a": ["train"], "b": ["val"]}


def test_image_nodata_is_unpredicted_at_any_scale(tmp_path):
    """Pixels the image marks as no data get no prediction, scored as such, whether the scene
    is segmented as it is or from a copy at scale 0.5 (the copy lost the image's nodata, so
    they were predicted there and scored as hits)."""
    import rasterio

    from glgeo.inference import InferenceSettings

    make_folder(tmp_path / "ds", names=("a",), size=48, n_classes=2, values=(0, 255))
    image = tmp_path / "ds" / "images" / "a.tif"
    with rasterio.open(image) as src:
        pixels = src.read()
    pixels[:, :, :16] = 0
    write_geotiff(image, pixels, nodata=0)
    ds = open_dataset("folder", tmp_path / "ds", INRIA)
    ckpt = save_tiny_checkpoint(tmp_path / "m.pt", INRIA, widths=(32, 16))
    settings = InferenceSettings(device="cpu", precision="fp32")
    for scale, rows, cols in ((1.0, 48, 16), (0.5, 24, 8)):
        report = evaluate_model(ckpt, ds, ["a"], settings, scale=scale)
        assert int(report.scores.confusion[:, -1].sum()) == rows * cols, scale


def test_an_images_no_data_is_not_scored_against_polygon_labels(tmp_path):
    """Polygons make every pixel outside them background, a warp's nodata collar too: scored
    there, a model lost pixel accuracy it could not have had (2.6 M px on a warped mosaic).
    Those pixels are left out, as training leaves them out."""
    import geopandas as gpd
    import shapely

    from glgeo.evaluate import evaluate_imagery
    from glgeo.inference import InferenceSettings

    rng = np.random.default_rng(1)
    pixels = rng.integers(1, 255, (3, 64, 64), dtype=np.uint8)
    pixels[:, :, 40:] = 0  # a collar of no data
    image = write_geotiff(tmp_path / "a.tif", pixels, origin=(500000.0, 4500000.0), res=1.0, nodata=0)
    labels = tmp_path / "houses.gpkg"
    # a house, and sheds in two far corners: the labels' extent is the image
    houses = [shapely.box(500004, 4499950, 500020, 4499990), shapely.box(500000, 4499998, 500001, 4500000),
              shapely.box(500063, 4499936, 500064, 4499937)]
    gpd.GeoDataFrame(geometry=houses, crs="EPSG:32631").to_file(labels)
    ckpt = save_tiny_checkpoint(tmp_path / "m.pt", INRIA, widths=(32, 16))
    report = evaluate_imagery(ckpt, [str(image)], labels, settings=InferenceSettings(device="cpu", precision="fp32"))
    assert report.scores.n_pixels == 64 * 40
    assert report.to_dict()["excluded_truth_pixels"] == 64 * 24


def test_ground_outside_the_polygons_extent_is_not_scored_as_background(tmp_path, caplog):
    """Footprints of the west half of a tile scored every building of the east half as a
    miss (the Joplin tile: building IoU 39.2 -> 23.9 %, no word). Ground outside the box
    around the polygons is left out, as training leaves it out, and counted."""
    import logging

    import geopandas as gpd
    import shapely

    from glgeo.evaluate import evaluate_imagery
    from glgeo.inference import InferenceSettings

    rng = np.random.default_rng(2)
    image = write_geotiff(tmp_path / "a.tif", rng.integers(1, 255, (3, 64, 64), dtype=np.uint8),
                          origin=(500000.0, 4500000.0), res=1.0)
    labels = tmp_path / "west.gpkg"
    # houses in the west 24 columns only, reaching the top and bottom rows
    houses = [shapely.box(500002, 4499990, 500010, 4500000), shapely.box(500012, 4499936, 500024, 4499950)]
    gpd.GeoDataFrame(geometry=houses, crs="EPSG:32631").to_file(labels)
    ckpt = save_tiny_checkpoint(tmp_path / "m.pt", INRIA, widths=(32, 16))
    with caplog.at_level(logging.WARNING, logger="glgeo.geodata"):
        report = evaluate_imagery(ckpt, [str(image)], labels, settings=InferenceSettings(device="cpu", precision="fp32"))
    assert report.scores.n_pixels == 64 * 22  # columns 2-23
    assert report.to_dict()["excluded_truth_pixels"] == 64 * 42
    assert (f"{image}: 2,688 of its 4,096 px (65.6 %) lie outside the extent of the labels {labels} (the box around"
            " their polygons): not scored") in caplog.text
