"""glgeo evaluate: rasters against truth (window by window), and a model against a split."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

import glgeo.evaluate as ev
from glgeo.cli.main import cli
from glgeo.datasets import open_dataset
from glgeo.errors import CheckpointError, InputError
from glgeo.evaluate import compare_rasters, evaluate_model, evaluate_rasters
from glgeo.schemes import DEEPGLOBE, INRIA, NODATA_ID
from train_fixtures import make_folder, make_inria, write_tif


@pytest.fixture()
def inria_pair(tmp_path):
    truth = np.zeros((40, 30), dtype=np.uint8)
    truth[:20, :10] = 255  # 200 building pixels
    pred = np.zeros((40, 30), dtype=np.uint8)
    pred[10:30, :10] = 1  # 100 of them hit, 100 false alarms
    pred[39, :] = NODATA_ID  # 30 background pixels left unpredicted
    return write_tif(tmp_path / "pred.tif", pred, nodata=NODATA_ID), write_tif(tmp_path / "gt.tif", truth)


def test_raster_evaluation_through_the_cli(inria_pair, tmp_path):
    pred, truth = inria_pair
    report = tmp_path / "report.json"
    result = CliRunner().invoke(cli, ["evaluate", "--pred", str(pred), "--truth", str(truth), "--scheme", "inria",
                                      "-o", str(report)])
    assert result.exit_code == 0, result.output
    data = json.loads(report.read_text())
    # background: truth 1000 px; 870 predicted background, 100 building, 30 nodata
    assert data["confusion_matrix"] == [[870, 100], [100, 100]] and data["unpredicted_pixels"] == [30, 0]
    assert data["building_iou"] == pytest.approx(100 / 300)
    assert data["iou"]["background"] == pytest.approx(870 / (1000 + 970 - 870))
    assert data["pixel_accuracy"] == pytest.approx(970 / 1200)
    assert data["miou"] == pytest.approx((100 / 300 + 870 / 1100) / 2)
    assert "building IoU" in result.output and "33.33" in result.output


def test_windows_give_the_same_counts(inria_pair, monkeypatch):
    pred, truth = inria_pair
    whole = compare_rasters(pred, truth, INRIA)
    monkeypatch.setattr(ev, "WINDOW_PIXELS", 30 * 3)  # strips of 3 rows
    assert ev._strips(40, 30)[1].row_off == 3
    np.testing.assert_array_equal(compare_rasters(pred, truth, INRIA), whole)


def test_deepglobe_rgb_truth_and_id_truth(tmp_path):
    colours = np.array([c.mask_value for c in DEEPGLOBE.classes], dtype=np.uint8)
    ids = np.array([[1, 1, 2], [4, 5, 0]], dtype=np.uint8)
    pred = write_tif(tmp_path / "p.tif", np.array([[1, 2, 2], [4, 5, 1]], dtype=np.uint8))
    rgb = write_tif(tmp_path / "t_rgb.tif", colours[ids].transpose(2, 0, 1))
    plain = write_tif(tmp_path / "t_ids.tif", ids)
    a = evaluate_rasters([(pred, rgb)], DEEPGLOBE, "mask", rgb_threshold=128)
    b = evaluate_rasters([(pred, plain)], DEEPGLOBE, "ids")
    np.testing.assert_array_equal(a.scores.confusion, b.scores.confusion)
    # urban 1 / (2 + 2 - 1) (one urban guess falls on "unknown"), agriculture 1 / (1 + 2 - 1),
    # forest 1, water 1; unknown is not scored
    assert a.scores.miou == pytest.approx((1 / 3 + 1 / 2 + 1 + 1) / 4)


def test_grid_mismatch_is_one_clear_line(tmp_path):
    pred = write_tif(tmp_path / "p.tif", np.zeros((10, 10), np.uint8))
    truth = write_tif(tmp_path / "t.tif", np.zeros((10, 12), np.uint8))
    result = CliRunner().invoke(cli, ["evaluate", "--pred", str(pred), "--truth", str(truth), "--scheme", "inria"])
    assert result.exit_code == 1 and "is 10 x 10 px but truth" in result.output
    shifted = write_tif(tmp_path / "s.tif", np.zeros((10, 10), np.uint8), origin=(500100.0, 4500000.0))
    with pytest.raises(InputError, match="not on the same grid"):
        compare_rasters(pred, shifted, INRIA)


def _fresh_checkpoint(path, n_classes, scheme, metadata=None):
    from glgeo.models import build_model, save_checkpoint

    model = build_model("resnet18", n_classes, "g2l", 32, 16)
    save_checkpoint(path, model, scheme, global_size=64, patch_size=64, metadata=metadata)
    return path


def test_model_evaluation_matches_segment_then_compare(tmp_path):
    pytest.importorskip("glgeo.segment")
    from glgeo.inference import InferenceSettings
    from glgeo.segment import segment

    make_folder(tmp_path / "ds", names=("a", "b"), size=80, n_classes=2, values=(0, 255))
    ds = open_dataset("folder", tmp_path / "ds", INRIA)
    ckpt = _fresh_checkpoint(tmp_path / "m.pt", 2, INRIA)
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
    pytest.importorskip("glgeo.segment")
    import glgeo.segment as seg
    from glgeo.inference import InferenceSettings
    from glgeo.models.checkpoint import load_checkpoint

    make_folder(tmp_path / "ds", names=("a", "b"), size=80, n_classes=2, values=(0, 255))
    ds = open_dataset("folder", tmp_path / "ds", INRIA)
    ckpt = _fresh_checkpoint(tmp_path / "m.pt", 2, INRIA, metadata={"training": {"scene_scale": 0.5}})
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
    import glgeo.segment as seg
    from glgeo.inference import InferenceSettings

    make_folder(tmp_path / "ds", names=("a",), size=80, n_classes=2, values=(0, 255))
    ds = open_dataset("folder", tmp_path / "ds", INRIA)
    ckpt = _fresh_checkpoint(tmp_path / "m.pt", 2, INRIA, metadata={"training": {"scene_scale": 0.25, "gsd_m": 2.0}})
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
    bare = _fresh_checkpoint(tmp_path / "bare.pt", 2, INRIA)
    with pytest.raises(InputError, match="does not record the resolution"):
        evaluate_model(bare, ds, ["a"], settings, gsd=1.0)
    result = CliRunner().invoke(cli, ["evaluate", "--pred", str(ds.scene("a").mask), "--truth",
                                      str(ds.scene("a").mask), "--scheme", "inria", "--gsd", "1"])
    assert result.exit_code == 2 and "--gsd goes with --model" in result.output


def test_model_evaluation_through_the_cli(tmp_path):
    pytest.importorskip("glgeo.segment")
    make_inria(tmp_path / "inria", cities=("austin",), tiles=6, size=80)
    ckpt = _fresh_checkpoint(tmp_path / "m.pt", 2, INRIA)
    report = tmp_path / "r.json"
    result = CliRunner().invoke(cli, ["-q", "evaluate", "--model", str(ckpt), "--dataset", "inria", "--root",
                                      str(tmp_path / "inria"), "--device", "cpu", "-o", str(report)])
    assert result.exit_code == 0, result.output
    data = json.loads(report.read_text())
    assert [i["name"] for i in data["images"]] == [f"austin{n}" for n in range(1, 6)]  # official val tiles
    assert sum(sum(r) for r in data["confusion_matrix"]) + sum(data["unpredicted_pixels"]) == 5 * 80 * 80
    assert data["seconds_per_image"] > 0 and "time per image" in result.output
    # --mode scores another GLNet mode of the same model: the global branch alone here
    from glgeo.inference import InferenceSettings

    glob = tmp_path / "g.json"
    result = CliRunner().invoke(cli, ["-q", "evaluate", "--model", str(ckpt), "--dataset", "inria", "--root",
                                      str(tmp_path / "inria"), "--device", "cpu", "--mode", "global", "-o", str(glob)])
    assert result.exit_code == 0, result.output
    ds = open_dataset("inria", tmp_path / "inria")
    direct = evaluate_model(ckpt, ds, [f"austin{n}" for n in range(1, 6)], InferenceSettings(device="cpu", mode="global"))
    assert json.loads(glob.read_text())["confusion_matrix"] == direct.scores.confusion[:, :2].tolist()  # + unpredicted


def test_class_count_that_does_not_fit(tmp_path):
    pytest.importorskip("glgeo.segment")
    make_inria(tmp_path / "inria", cities=("austin",), tiles=1, size=64)
    ckpt = _fresh_checkpoint(tmp_path / "m.pt", 7, DEEPGLOBE)
    ds = open_dataset("inria", tmp_path / "inria")
    with pytest.raises(CheckpointError, match="predicts 7 classes .* scheme 'inria' has 2"):
        evaluate_model(ckpt, ds, ["austin1"])


def test_scheme_comes_from_the_prediction_and_json_prints(tmp_path, inria_pair):
    """A prediction written by glgeo carries its scheme: no --scheme; --json prints, -o writes."""
    import rasterio

    from glgeo.styles import SCHEME_TAG

    pred, truth = inria_pair
    result = CliRunner().invoke(cli, ["evaluate", "--pred", str(pred), "--truth", str(truth)])
    assert result.exit_code == 1 and "carries no class scheme" in result.output and "--scheme NAME" in result.output
    with rasterio.open(pred, "r+") as dst:
        dst.update_tags(**{SCHEME_TAG: json.dumps(INRIA.to_dict())})
    result = CliRunner().invoke(cli, ["evaluate", "--pred", str(pred), "--truth", str(truth), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["confusion_matrix"] == [[870, 100], [100, 100]]
    assert evaluate_rasters([(pred, truth)]).scores.miou == pytest.approx(data["miou"])
