"""``glgeo evaluate``: score rasters or a model; a JSON report and one line per error."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner

from glgeo.cli.main import cli
from glgeo.datasets import open_dataset
from glgeo.errors import InputError
from glgeo.evaluate import compare_rasters, evaluate_model, evaluate_rasters
from glgeo.schemes import INRIA

from fixtures.checkpoints import save_tiny_checkpoint
from fixtures.layouts import make_folder, make_inria
from fixtures.rasters import write_geotiff


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


def test_grid_mismatch_is_one_clear_line(tmp_path):
    pred = write_geotiff(tmp_path / "p.tif", np.zeros((10, 10), np.uint8))
    truth = write_geotiff(tmp_path / "t.tif", np.zeros((10, 12), np.uint8))
    result = CliRunner().invoke(cli, ["evaluate", "--pred", str(pred), "--truth", str(truth), "--scheme", "inria"])
    assert result.exit_code == 1 and "is 10 x 10 px but truth" in result.output
    shifted = write_geotiff(tmp_path / "s.tif", np.zeros((10, 10), np.uint8), origin=(500100.0, 4500000.0))
    with pytest.raises(InputError, match="not on the same grid"):
        compare_rasters(pred, shifted, INRIA)


def test_polygons_given_as_truth_say_how_to_score_against_polygons(tmp_path):
    pred = write_geotiff(tmp_path / "p.tif", np.zeros((10, 10), np.uint8))
    polygons = tmp_path / "footprints.geojson"
    polygons.write_text('{"type": "FeatureCollection", "features": []}')
    result = CliRunner().invoke(cli, ["evaluate", "--pred", str(pred), "--truth", str(polygons), "--scheme", "inria"])
    assert result.exit_code == 1 and result.output.count("\n") == 1
    assert ("footprints.geojson is a file of polygons, not a raster on the prediction's grid: score a model against "
            "polygons with --model ..., --images IMAGE, --labels POLYGONS") in result.output


def test_truth_without_a_crs_is_placed_on_the_prediction_with_a_warning(tmp_path, caplog):
    pred = write_geotiff(tmp_path / "p.tif", np.zeros((10, 10), np.uint8))
    plain = write_geotiff(tmp_path / "t.tif", np.zeros((10, 10), np.uint8), crs=None)
    with caplog.at_level("WARNING", logger="glgeo"):
        compare_rasters(pred, plain, INRIA, truth_encoding="ids")
    assert f"{plain} has no CRS: its pixels are taken as those of {pred}" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="glgeo"):  # both plain (DeepGlobe's PNG masks): nothing to say
        compare_rasters(write_geotiff(tmp_path / "q.tif", np.zeros((10, 10), np.uint8), crs=None), plain, INRIA,
                        truth_encoding="ids")
    assert "no CRS" not in caplog.text


def test_model_evaluation_through_the_cli(tmp_path):
    make_inria(tmp_path / "inria", cities=("austin",), tiles=6, size=80)
    ckpt = save_tiny_checkpoint(tmp_path / "m.pt", INRIA, widths=(32, 16))
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


def test_gsd_goes_with_a_model(tmp_path):
    mask = write_geotiff(tmp_path / "m.tif", np.zeros((8, 8), np.uint8))
    result = CliRunner().invoke(cli, ["evaluate", "--pred", str(mask), "--truth", str(mask), "--scheme", "inria",
                                      "--gsd", "1"])
    assert result.exit_code == 2 and "--gsd goes with --model" in result.output


def test_a_0_255_truth_read_as_ids_says_what_to_do(inria_pair, tmp_path, caplog):
    """`--truth-encoding ids` on Inria's 0/255 masks: the building pixels are left out; the
    warning and the table (even with -q) say how many and name the encoding that reads them."""
    import logging

    pred, truth = inria_pair
    report = tmp_path / "report.json"
    with caplog.at_level(logging.WARNING, logger="glgeo.evaluate"):
        result = CliRunner().invoke(cli, ["-q", "evaluate", "--pred", str(pred), "--truth", str(truth), "--scheme",
                                          "inria", "--truth-encoding", "ids", "-o", str(report)])
    assert result.exit_code == 0, result.output
    assert ("left out: 200 truth pixels (16.7 % of those not declared nodata) hold 255, no class id; if 255 is building"
            " (inria's 0/255 masks), use --truth-encoding mask;") in result.stdout
    assert "no prediction: 30 of the 1,000 truth pixels (3.0 %)" in result.stdout
    assert json.loads(report.read_text())["left_out_truth_pixels"] == 200
    [warning] = [r.getMessage() for r in caplog.records if r.name == "glgeo.evaluate"]
    assert "200 of its 1,200 pixels (16.7 %) hold 255" in warning
    assert "use --truth-encoding mask" in warning and "truth_encoding" not in warning


def test_out_may_not_name_an_input(inria_pair, tmp_path):
    """-o naming a --truth, --pred, --model, --labels or --images file would replace it with
    the JSON report: one line before any work, and the file is left as it was."""
    pred, truth = inria_pair
    ckpt = save_tiny_checkpoint(tmp_path / "m.pt", INRIA, widths=(32, 16))
    labels = write_geotiff(tmp_path / "labels.tif", np.zeros((8, 8), np.uint8))
    image = write_geotiff(tmp_path / "images" / "a.tif", np.zeros((3, 8, 8), np.uint8))
    raster = ["evaluate", "--pred", str(pred), "--truth", str(truth), "--scheme", "inria"]
    model = ["evaluate", "--model", str(ckpt), "--dataset", "inria", "--root", str(tmp_path / "nowhere")]
    imagery = ["evaluate", "--model", str(ckpt), "--images", str(tmp_path / "images" / "*.tif"), "--labels", str(labels)]
    for args, victim in ((raster, truth), (raster, pred), (model, ckpt), (imagery, labels), (imagery, image),
                         (imagery, ckpt)):
        before = victim.read_bytes()
        result = CliRunner().invoke(cli, [*args, "-o", str(victim)])
        assert result.exit_code == 1, (victim, result.output)
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and "is the same file as the input" in lines[0] and "Traceback" not in result.output
        assert victim.read_bytes() == before


def test_the_same_pair_twice_is_one_clear_line(inria_pair):
    pred, truth = inria_pair
    result = CliRunner().invoke(cli, ["evaluate", "--pred", str(pred), "--truth", str(truth), "--pred", str(pred),
                                      "--truth", str(truth), "--scheme", "inria"])
    assert result.exit_code == 1
    [line] = result.output.strip().splitlines()
    assert f"prediction {pred} and truth {truth} are given twice" in line and "give each pair once" in line


def test_a_misaligned_mask_names_the_users_files(tmp_path):
    """Found before segmenting; the error names the scene's image and mask, not a temporary prediction."""
    import rasterio

    make_inria(tmp_path / "inria", cities=("austin",), tiles=2, size=48)
    ds = open_dataset("inria", tmp_path / "inria")
    mask = ds.scene("austin1").mask
    with rasterio.open(mask) as src:
        values, profile = src.read(1), src.profile
    profile["transform"] = profile["transform"] * rasterio.Affine.translation(60, 0)
    with rasterio.open(mask, "w", **profile) as dst:
        dst.write(values[None])
    ckpt = save_tiny_checkpoint(tmp_path / "m.pt", INRIA, widths=(32, 16))
    result = CliRunner().invoke(cli, ["-q", "evaluate", "--model", str(ckpt), "--dataset", "inria", "--root",
                                      str(tmp_path / "inria"), "--device", "cpu"])
    assert result.exit_code == 1
    [line] = result.output.strip().splitlines()
    assert f"scene 'austin1': mask {mask} " in line and f"its image {ds.scene('austin1').image}" in line
    assert "glgeo-evaluate" not in line and "resample one onto the other" not in line


def test_bands_reach_the_model_and_o_may_not_name_a_dataset_file(tmp_path):
    """--bands feeds a four-band dataset's scenes to the model (evaluate had no way to say
    them); -o naming one of the dataset's own masks is refused (the report replaced it)."""
    import rasterio

    from fixtures.checkpoints import save_tiny_checkpoint
    from fixtures.layouts import make_folder

    from glgeo.schemes import INRIA

    root = make_folder(tmp_path / "ds", names=("a",), size=48, n_classes=2, values=(0, 255))
    image = root / "images" / "a.tif"
    with rasterio.open(image) as src:
        pixels, profile = src.read(), src.profile
    with rasterio.open(image, "w", **{**profile, "count": 4, "photometric": "MINISBLACK"}) as dst:
        dst.write(np.concatenate([pixels, pixels[:1]]))
    model = save_tiny_checkpoint(tmp_path / "m.pt", INRIA, widths=(32, 16))
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"train": [], "val": ["a"], "test": []}))
    args = ["evaluate", "--model", str(model), "--dataset", "folder", "--root", str(root), "--scheme", "inria",
            "--device", "cpu", "--split-file", str(split)]
    refused = CliRunner().invoke(cli, args)
    assert refused.exit_code == 1 and "pass --bands 1,2,3 to choose them" in refused.output, refused.output
    result = CliRunner().invoke(cli, [*args, "--bands", "4,2,3"])
    assert result.exit_code == 0, result.output
    mask = root / "masks" / "a.tif"
    before = mask.read_bytes()
    result = CliRunner().invoke(cli, [*args, "--bands", "4,2,3", "-o", str(mask)])
    assert result.exit_code == 1 and "is the same file as the input" in result.output and mask.read_bytes() == before


def test_every_glgeo_warning_names_the_commands_flags(tmp_path, caplog):
    """evaluate --images printed segment's warnings in Python terms ('pass bands=(1, 2, 3)'):
    only evaluate's own logger was translated."""
    import rasterio
    from rasterio.enums import ColorInterp

    ckpt = save_tiny_checkpoint(tmp_path / "m.pt", INRIA, widths=(32, 16))
    image = write_geotiff(tmp_path / "bgr.tif", np.full((3, 64, 64), 90, np.uint8), photometric="MINISBLACK")
    with rasterio.open(image, "r+") as dst:
        dst.colorinterp = [ColorInterp.blue, ColorInterp.green, ColorInterp.red]
    labels = write_geotiff(tmp_path / "labels.tif", np.zeros((64, 64), np.uint8))
    with caplog.at_level("WARNING", logger="glgeo"):
        result = CliRunner().invoke(cli, ["evaluate", "--model", str(ckpt), "--images", str(image), "--labels",
                                          str(labels), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    said = [r.getMessage() for r in caplog.records if "which the file labels red, green and blue" in r.getMessage()]
    assert said and all("pass --bands 1,2,3 to read others" in m for m in said), said


def test_class_id_truth_that_is_not_whole_ids_is_refused_naming_the_file(tmp_path):
    """Float class-id truth was cut to whole numbers: 0.6 (a building after a bilinear
    resampling) scored as background, building IoU 0 and no word. NaN is nodata; an id the
    scheme lacks names the file and what to do."""
    pred = write_geotiff(tmp_path / "p.tif", np.ones((8, 8), np.uint8))
    truth = np.ones((8, 8), np.float32)
    truth[:2] = 0.6
    write_geotiff(tmp_path / "t.tif", truth)
    base = ["evaluate", "--pred", str(pred), "--scheme", "inria", "--truth-encoding", "ids", "--truth"]
    result = CliRunner().invoke(cli, [*base, str(tmp_path / "t.tif")])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert (f"truth {tmp_path / 't.tif'} holds values that are not whole class ids (0.6): class-id truth holds"
            " integers 0-1; if it was resampled, resample it with nearest") in result.output
    truth[:2] = np.nan
    write_geotiff(tmp_path / "nan.tif", truth)
    result = CliRunner().invoke(cli, [*base, str(tmp_path / "nan.tif"), "--json"])
    assert result.exit_code == 0 and "RuntimeWarning" not in result.output, result.output
    assert json.loads(result.stdout)["excluded_truth_pixels"] == 16
    write_geotiff(tmp_path / "seven.tif", np.full((8, 8), 7, np.uint8))
    result = CliRunner().invoke(cli, [*base, str(tmp_path / "seven.tif")])
    assert result.exit_code == 1 and f"truth {tmp_path / 'seven.tif'} holds ids 7, no class of scheme 'inria'" in result.output


def test_a_scheme_that_contradicts_the_predictions_own_is_refused(tmp_path, inria_pair):
    """--scheme deepglobe on a prediction that carries inria scored its ids as DeepGlobe's
    classes (a 7-class table, mIoU 0) without a word."""
    import rasterio

    from glgeo.schemes import DEEPGLOBE
    from glgeo.styles import SCHEME_TAG

    pred, truth = inria_pair
    with rasterio.open(pred, "r+") as dst:
        dst.update_tags(**{SCHEME_TAG: json.dumps(INRIA.to_dict())})
    result = CliRunner().invoke(cli, ["evaluate", "--pred", str(pred), "--truth", str(truth), "--scheme", "deepglobe"])
    assert result.exit_code == 1, result.output
    assert (f"prediction {str(pred)!r} carries class scheme 'inria' (background, building), not 'deepglobe'"
            " (unknown, urban") in result.output and "drop --scheme deepglobe to score it with its own" in result.output
    with pytest.raises(InputError, match="carries class scheme 'inria'"):
        evaluate_rasters([(pred, truth)], scheme=DEEPGLOBE)
    assert evaluate_rasters([(pred, truth)], scheme=INRIA).scores.miou == evaluate_rasters([(pred, truth)]).scores.miou


def test_a_gpu_that_is_not_there_is_one_line(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    make_inria(tmp_path / "inria", size=64)
    ckpt = save_tiny_checkpoint(tmp_path / "m.pt", INRIA, widths=(32, 16))
    result = CliRunner().invoke(cli, ["evaluate", "--model", str(ckpt), "--dataset", "inria", "--root",
                                      str(tmp_path / "inria"), "--device", "cuda"])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert "no CUDA GPU is usable here; use --device cpu" in result.output


def test_model_options_with_rasters_are_refused_and_the_report_records_its_options(tmp_path, inria_pair):
    """--mode global (or --device, --dataset...) with --pred/--truth was ignored, while a
    reader of the output took the scores for that mode's; the JSON report did not say which
    options made it (a --tta report looked like a plain one)."""
    pred, truth = inria_pair
    base = ["evaluate", "--pred", str(pred), "--truth", str(truth), "--scheme", "inria"]
    result = CliRunner().invoke(cli, [*base, "--mode", "global", "--dataset", "inria"])
    assert result.exit_code == 2, result.output
    assert "--dataset, --mode do not apply to --pred/--truth, which compare rasters already made" in result.output
    result = CliRunner().invoke(cli, [*base, "--json"])
    assert json.loads(result.stdout)["options"] == {"--pred": [str(pred)], "--truth": [str(truth)], "--scheme": "inria"}
    result = CliRunner().invoke(cli, ["evaluate", "--model", "m.pt", "--dataset", "inria", "--root", str(tmp_path),
                                      "--scale", "0"])
    assert result.exit_code == 2 and "Invalid value for '--scale': 0.0 is not in the range 0<x<=1" in result.output


def test_rasters_of_another_pixel_size_say_so(tmp_path):
    a = write_geotiff(tmp_path / "a.tif", np.zeros((8, 8), np.uint8), origin=(500000.0, 4500000.0), res=1.0,
                      crs="EPSG:32631")
    b = write_geotiff(tmp_path / "b.tif", np.zeros((8, 8), np.uint8), origin=(500000.0, 4500000.0), res=2.0,
                      crs="EPSG:32631")
    result = CliRunner().invoke(cli, ["evaluate", "--pred", str(a), "--truth", str(b), "--scheme", "inria"])
    assert result.exit_code == 1 and "pixel size 1 x 1 vs 2 x 2" in result.output, result.output


def test_a_model_scored_on_masks_without_a_crs_says_nothing_of_its_temporary_maps(tmp_path, caplog):
    """A dataset's masks without a CRS beside georeferenced images (the pair check accepts
    them): the model's maps are on the images' grid, and no warning per scene names a
    temporary prediction."""
    import logging

    root = make_folder(tmp_path / "ds", names=("a", "b"), size=80, n_classes=2, values=(0, 255))
    for name in ("a", "b"):
        mask = root / "masks" / f"{name}.tif"
        with rasterio.open(mask) as src:
            ids = src.read(1)
        write_geotiff(mask, ids, crs=None)
    ckpt = save_tiny_checkpoint(tmp_path / "m.pt", INRIA, widths=(32, 16))
    with caplog.at_level(logging.WARNING, logger="glgeo"):
        result = CliRunner().invoke(cli, ["-q", "evaluate", "--model", str(ckpt), "--dataset", "folder", "--scheme",
                                          "inria", "--root", str(root), "--split-file", str(_all_test(root)),
                                          "--part", "test", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "no CRS" not in caplog.text


def _all_test(root):
    split = root / "split.json"
    split.write_text(json.dumps({"train": [], "val": [], "test": ["a", "b"]}))
    return split


def _report_runs(tmp_path, inria_pair) -> dict[str, list[str]]:
    """evaluate's three ways, each refused or done before its work."""
    pred, truth = inria_pair
    ckpt = save_tiny_checkpoint(tmp_path / "m.pt", INRIA, widths=(32, 16))
    make_inria(tmp_path / "inria", cities=("austin",), tiles=2, size=48)
    image = write_geotiff(tmp_path / "images" / "a.tif", np.zeros((3, 8, 8), np.uint8))
    labels = write_geotiff(tmp_path / "labels.tif", np.zeros((8, 8), np.uint8))
    return {
        "rasters": ["evaluate", "--pred", str(pred), "--truth", str(truth), "--scheme", "inria"],
        "dataset": ["evaluate", "--model", str(ckpt), "--dataset", "inria", "--root", str(tmp_path / "inria"),
                    "--device", "cpu"],
        "imagery": ["evaluate", "--model", str(ckpt), "--images", str(image), "--labels", str(labels), "--device", "cpu"],
    }


def test_an_existing_report_is_kept_without_overwrite(tmp_path, inria_pair):
    """-o replaced any existing file without a word (evaluate had no --overwrite), while the
    README says an output that exists is kept unless --overwrite is given."""
    report = tmp_path / "report.json"
    report.write_text("an earlier report")
    runs = _report_runs(tmp_path, inria_pair)
    for way, args in runs.items():
        result = CliRunner().invoke(cli, [*args, "-o", str(report)])
        assert result.exit_code == 1, (way, result.output)
        [line] = result.output.strip().splitlines()
        assert line == f"Error: output {str(report)!r} already exists; pass --overwrite to replace it", way
        assert report.read_text() == "an earlier report"
    result = CliRunner().invoke(cli, [*runs["rasters"], "-o", str(report), "--overwrite"])
    assert result.exit_code == 0, result.output
    data = json.loads(report.read_text())
    assert data["confusion_matrix"] == [[870, 100], [100, 100]]
    assert "--overwrite" not in data["options"] and "--pred" in data["options"]  # it changes no score


def test_a_report_name_other_than_json_is_refused(tmp_path, inria_pair):
    """-o rep.csv wrote JSON under a .csv name: the report is JSON only (docs/train.md)."""
    runs = _report_runs(tmp_path, inria_pair)
    for way, args in runs.items():
        for name in ("rep.csv", "rep.tif"):
            out = tmp_path / name
            result = CliRunner().invoke(cli, [*args, "-o", str(out), "--overwrite"])
            assert result.exit_code == 1, (way, result.output)
            [line] = result.output.strip().splitlines()
            assert line == (f"Error: -o {out}: the report is written as JSON only; give a .json name"
                            f" (e.g. -o {out.with_suffix('.json')})"), way
            assert not out.exists()
    result = CliRunner().invoke(cli, [*runs["rasters"], "-o", str(tmp_path / "R.JSON")])
    assert result.exit_code == 0 and json.loads((tmp_path / "R.JSON").read_text())["miou"] > 0, result.output


def _truncated(path):
    """Cut a raster to half its bytes (an interrupted copy): it still opens, its pixels fail to read."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with rasterio.open(path) as src:  # the header is whole: the failure comes on reading
        assert src.width > 0
    return path


def _one_read_failure(result, path) -> None:
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    [line] = result.output.strip().splitlines()
    assert line == (f"Error: reading {str(path)!r} failed (Read failed): the file may be truncated or corrupt; check it"
                    f" with `gdalinfo -checksum {path}` and copy it again"), line


def test_a_truncated_prediction_or_truth_is_one_line_naming_it(tmp_path):
    """A raster cut short (an interrupted copy) gave a traceback from rasterio's read in
    evaluate, where segment says in one line that the file is truncated."""
    from glgeo.errors import SceneError

    rng = np.random.default_rng(0)
    pred = write_geotiff(tmp_path / "pred.tif", rng.integers(0, 2, (200, 200), dtype=np.uint8))
    truth = write_geotiff(tmp_path / "gt.tif", 255 * rng.integers(0, 2, (200, 200), dtype=np.uint8))
    ids = write_geotiff(tmp_path / "ids.tif", rng.integers(0, 2, (200, 200), dtype=np.uint8))
    cut_pred = _truncated(write_geotiff(tmp_path / "cut_pred.tif", rng.integers(0, 2, (200, 200), dtype=np.uint8)))
    cut_truth = _truncated(write_geotiff(tmp_path / "cut_gt.tif", 255 * rng.integers(0, 2, (200, 200), dtype=np.uint8)))
    cut_ids = _truncated(write_geotiff(tmp_path / "cut_ids.tif", rng.integers(0, 2, (200, 200), dtype=np.uint8)))
    for p, t, encoding, cut in ((cut_pred, truth, "mask", cut_pred), (pred, cut_truth, "mask", cut_truth),
                                (pred, cut_ids, "ids", cut_ids), (cut_pred, ids, "ids", cut_pred)):
        result = CliRunner().invoke(cli, ["evaluate", "--pred", str(p), "--truth", str(t), "--scheme", "inria",
                                          "--truth-encoding", encoding])
        _one_read_failure(result, cut)
    with pytest.raises(SceneError, match="cut_gt.tif' failed"):
        compare_rasters(pred, cut_truth, INRIA)


def test_a_truncated_scene_mask_image_or_label_raster_is_one_line_naming_it(tmp_path):
    """The model's ways read the dataset's masks (whole, or resampled with --scale), an
    image's nodata mask and a label raster: each cut short is one line naming the file."""
    ckpt = save_tiny_checkpoint(tmp_path / "m.pt", INRIA, widths=(32, 16))
    make_inria(tmp_path / "inria", cities=("austin",), tiles=2, size=80)
    _truncated(tmp_path / "inria" / "AerialImageDataset" / "train" / "gt" / "austin1.tif")
    dataset = ["-q", "evaluate", "--model", str(ckpt), "--dataset", "inria", "--device", "cpu", "--root"]
    for extra in ([], ["--scale", "0.5"]):
        result = CliRunner().invoke(cli, [*dataset, str(tmp_path / "inria"), *extra])
        _one_read_failure(result, tmp_path / "inria" / "AerialImageDataset" / "train" / "gt" / "austin1.tif")
    make_inria(tmp_path / "inria2", cities=("austin",), tiles=2, size=80)
    image = _truncated(tmp_path / "inria2" / "AerialImageDataset" / "train" / "images" / "austin1.tif")
    result = CliRunner().invoke(cli, [*dataset, str(tmp_path / "inria2"), "--scale", "0.5"])  # read to resample it
    _one_read_failure(result, image)

    rng = np.random.default_rng(0)
    scene = write_geotiff(tmp_path / "scene.tif", rng.integers(1, 255, (3, 80, 80), dtype=np.uint8), nodata=0)
    labels = write_geotiff(tmp_path / "labels.tif", 255 * rng.integers(0, 2, (80, 80), dtype=np.uint8))
    imagery = ["-q", "evaluate", "--model", str(ckpt), "--images", str(scene), "--labels", str(labels), "--device", "cpu"]
    assert CliRunner().invoke(cli, imagery).exit_code == 0
    _truncated(labels)
    _one_read_failure(CliRunner().invoke(cli, imagery), labels)
    write_geotiff(labels, 255 * rng.integers(0, 2, (80, 80), dtype=np.uint8))
    _truncated(scene)  # its nodata mask is read before segment reads it
    _one_read_failure(CliRunner().invoke(cli, imagery), scene)


def test_an_image_of_nodata_alone_is_an_error_naming_it_not_a_temporary_map(tmp_path, caplog):
    """An image that is all nodata, with labels over it: exit 0, "pixels: 0" and every score
    "-", and a warning that named evaluate's temporary prediction, not the image."""
    import logging

    ckpt = save_tiny_checkpoint(tmp_path / "m.pt", INRIA, widths=(32, 16))
    empty = write_geotiff(tmp_path / "images" / "empty.tif", np.zeros((3, 64, 64), np.uint8), nodata=0)
    rng = np.random.default_rng(0)
    full = write_geotiff(tmp_path / "images" / "full.tif", rng.integers(1, 255, (3, 64, 64), dtype=np.uint8), nodata=0)
    labels = write_geotiff(tmp_path / "labels.tif", np.full((64, 64), 255, np.uint8))
    args = ["-q", "evaluate", "--model", str(ckpt), "--labels", str(labels), "--device", "cpu", "--images"]
    with caplog.at_level(logging.WARNING, logger="glgeo"):
        result = CliRunner().invoke(cli, [*args, str(empty)])
    assert result.exit_code == 1, result.output
    [line] = result.output.strip().splitlines()
    assert line == (f"Error: nothing was scored: every pixel of {empty} is nodata; score images that hold data where"
                    " the labels give classes")
    said = [r.getMessage() for r in caplog.records]
    assert f"every pixel of {empty} is nodata: the model predicted no class on it" in said
    assert not any("glgeo-evaluate" in m or "_pred.tif" in m for m in said), said
    # beside an image with data, it is scored (nothing of it) with the same warning
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="glgeo"):
        result = CliRunner().invoke(cli, [*args, str(tmp_path / "images" / "*.tif"), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert {i["name"]: i["pixels"] for i in data["images"]} == {"empty": 0, "full": 64 * 64}
    said = [r.getMessage() for r in caplog.records]
    assert f"every pixel of {empty} is nodata: the model predicted no class on it" in said
    assert not any("glgeo-evaluate" in m for m in said), said
    # labels that give no class where the image holds data: nothing to score either
    write_geotiff(labels, np.full((64, 64), 7, np.uint8), nodata=7)
    result = CliRunner().invoke(cli, [*args, str(full)])
    assert result.exit_code == 1, result.output
    [line] = result.output.strip().splitlines()
    assert line == (f"Error: nothing was scored: the labels {labels} give no class where {full} holds data (it lies"
                    " outside their extent, or on their nodata); score images that hold data where the labels give"
                    " classes")


def test_truth_or_masks_without_a_class_are_an_error(tmp_path, inria_pair, caplog):
    """Rasters or a dataset whose truth holds no class anywhere scored nothing, and said
    "pixels: 0" with exit 0; a scene of nodata scored on its mask is named, not its
    temporary copy (--scale)."""
    import logging

    pred, _ = inria_pair
    nothing = write_geotiff(tmp_path / "nothing.tif", np.full((40, 30), 255, np.uint8), nodata=255)
    result = CliRunner().invoke(cli, ["-q", "evaluate", "--pred", str(pred), "--truth", str(nothing), "--scheme",
                                      "inria", "--truth-encoding", "ids"])
    assert result.exit_code == 1, result.output
    [line] = result.output.strip().splitlines()
    assert line == (f"Error: nothing was scored: truth {nothing} holds no class on any pixel (nodata or no class id"
                    " everywhere); give truth rasters that hold classes where the predictions are (check their"
                    " declared nodata)")
    with pytest.raises(InputError, match="nothing was scored"):
        evaluate_rasters([(pred, nothing)], INRIA, "ids")

    root = make_folder(tmp_path / "ds", names=("a", "b"), size=48, n_classes=2, values=(0, 255))
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"train": [], "val": ["a", "b"], "test": []}))
    ckpt = save_tiny_checkpoint(tmp_path / "m.pt", INRIA, widths=(32, 16))
    args = ["-q", "evaluate", "--model", str(ckpt), "--dataset", "folder", "--root", str(root), "--scheme", "inria",
            "--split-file", str(split), "--device", "cpu", "--scale", "0.5"]
    for name in ("a", "b"):
        write_geotiff(root / "images" / f"{name}.tif", np.zeros((3, 48, 48), np.uint8), nodata=0)
    with caplog.at_level(logging.WARNING, logger="glgeo"):
        result = CliRunner().invoke(cli, [*args, "--json"])
    assert result.exit_code == 0, result.output  # their masks' classes are scored as misses
    assert sum(json.loads(result.stdout)["unpredicted_pixels"]) == 2 * 24 * 24
    said = [r.getMessage() for r in caplog.records]
    for name in ("a", "b"):  # each scene, not the first alone
        assert f"every pixel of {root / 'images' / f'{name}.tif'} is nodata: the model predicted no class on it" in said
    assert not any("glgeo-evaluate" in m for m in said), said
    for name in ("a", "b"):
        write_geotiff(root / "masks" / f"{name}.tif", np.full((48, 48), 7, np.uint8), nodata=7)
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1, result.output
    [line] = result.output.strip().splitlines()
    assert line == (f"Error: nothing was scored: the mask {root / 'masks' / 'a.tif'} of scene 'a' holds no class on"
                    f" any pixel (nodata everywhere); the mask {root / 'masks' / 'b.tif'} of scene 'b' holds no class"
                    " on any pixel (nodata everywhere); check the masks and the nodata they declare")


def test_released_scores_the_released_computation(tmp_path, inria_pair, monkeypatch):
    """--released scores what segment --released computes (the paper's figures with an
    imported checkpoint); evaluate had no way to, and its default engine is not the released one."""
    import glgeo.segmentation
    from glgeo.inference import RELEASED_SETTINGS, InferenceSettings

    used = []
    segment = glgeo.segmentation.segment

    def spy(*args, settings, **kwargs):
        used.append(settings)
        return segment(*args, settings=settings, **kwargs)

    monkeypatch.setattr(glgeo.segmentation, "segment", spy)

    make_inria(tmp_path / "inria", cities=("austin",), tiles=6, size=80)
    ckpt = save_tiny_checkpoint(tmp_path / "m.pt", INRIA, widths=(32, 16))
    base = ["-q", "evaluate", "--model", str(ckpt), "--dataset", "inria", "--root", str(tmp_path / "inria"),
            "--device", "cpu", "--json"]
    result = CliRunner().invoke(cli, [*base, "--released"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["options"]["--released"] is True
    assert len(used) == 5 and all(
        getattr(settings, name) == value for settings in used for name, value in RELEASED_SETTINGS.items()
    )
    names = [f"austin{n}" for n in range(1, 6)]
    ds = open_dataset("inria", tmp_path / "inria")
    direct = evaluate_model(ckpt, ds, names, InferenceSettings.released(device="cpu"))
    assert data["confusion_matrix"] == direct.scores.confusion[:, :2].tolist()
    settings = InferenceSettings.released(device="cpu", mode="g2l")
    assert all(getattr(settings, name) == value for name, value in RELEASED_SETTINGS.items())
    assert settings.global_resampling == "pil" and settings.blend == "sum" and settings.precision == "fp32"
    # an option the released computation sets, given otherwise, is refused, not overridden
    clash = CliRunner().invoke(cli, [*base, "--released", "--precision", "bf16"])
    assert clash.exit_code == 2 and "--released computes as the released code does, which --precision bf16 would" \
        " change; drop it or --released" in clash.output
    with pytest.raises(InputError, match=r"the released computation sets blend='sum', not 'taper': drop it"):
        InferenceSettings.released(blend="taper")
    # and it goes with --model only
    pred, truth = inria_pair
    alone = CliRunner().invoke(cli, ["evaluate", "--pred", str(pred), "--truth", str(truth), "--released"])
    assert alone.exit_code == 2 and "--released does not apply to --pred/--truth" in alone.output
