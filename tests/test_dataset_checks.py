"""What the dataset checks find before training, and what training reads where data are
missing: masks georeferenced off their image, a mask nodata that is a class value, mask
values outside the scheme (scanned at full resolution), float masks, and image nodata /
alpha / mask pixels (their labels are nodata)."""

from __future__ import annotations

import json
import logging
import warnings

import numpy as np
import pytest
import rasterio
import torch

import glgeo.datasets
from glgeo.datasets import GLNetSceneDataset, SampleSpec, class_shares, decode_mask, open_dataset
from glgeo.errors import DatasetError
from glgeo.schemes import INRIA, NODATA_ID, ClassInfo, ClassScheme
from fixtures.layouts import INT3, make_folder
from fixtures.rasters import write_geotiff


def _mask(root, name="a"):
    with rasterio.open(root / "masks" / f"{name}.tif") as src:
        return src.read(1), src.transform


def _image(root, name="a"):
    with rasterio.open(root / "images" / f"{name}.tif") as src:
        return src.read()


# ------------------------------------------------------------------ pair geometry


def test_a_mask_georeferenced_elsewhere_is_refused_naming_both_files_and_the_offset(tmp_path):
    root = make_folder(tmp_path, names=("a", "b"), size=64, values=(3, 7, 100))
    values, transform = _mask(root)
    # same size and CRS, origin 15 m (30 px at 0.5 m) east of the image's
    write_geotiff(root / "masks" / "a.tif", values, origin=(transform.c + 15.0, transform.f))
    ds = open_dataset("folder", root, INT3)
    with pytest.raises(DatasetError) as refused:
        ds.check()
    message = str(refused.value)
    assert str(root / "images" / "a.tif") in message and str(root / "masks" / "a.tif") in message
    assert "15 m east" in message and "30 px" in message and "\n" not in message
    # a mask without georeferencing is taken as on the image's grid
    write_geotiff(root / "masks" / "a.tif", values, crs=None, transform=rasterio.Affine.identity())
    ds.check()


def test_a_mask_with_other_pixel_sizes_is_refused(tmp_path):
    root = make_folder(tmp_path, names=("a",), size=64, values=(3, 7, 100))
    values, transform = _mask(root)
    write_geotiff(root / "masks" / "a.tif", values, origin=(transform.c, transform.f), res=1.0)
    with pytest.raises(DatasetError, match=r"has pixels of 1 x 1 m where they are 0.5 x 0.5 m in its image"):
        open_dataset("folder", root, INT3).check()


def test_pixel_sizes_equal_but_for_float_noise_are_not_called_different(tmp_path):
    """The same grid written by two programs may differ in the 14th digit (the Inria crop's
    image and mask do): a shifted mask is named as shifted, not as of other pixel sizes too;
    unshifted, it passes."""
    root = make_folder(tmp_path, names=("a",), size=64, values=(3, 7, 100))
    values, transform = _mask(root)
    noisy = rasterio.Affine(transform.a * (1 + 3e-15), 0, transform.c, 0, transform.e * (1 - 3e-15), transform.f)
    write_geotiff(root / "masks" / "a.tif", values, transform=noisy)
    open_dataset("folder", root, INT3).check()
    shifted = rasterio.Affine(noisy.a, 0, noisy.c + 5.0, 0, noisy.e, noisy.f)
    write_geotiff(root / "masks" / "a.tif", values, transform=shifted)
    with pytest.raises(DatasetError) as refused:
        open_dataset("folder", root, INT3).check()
    assert "5 m east" in str(refused.value) and "has pixels of" not in str(refused.value)


# ------------------------------------------------------------------ full-resolution scan


def test_values_outside_the_scheme_are_counted_at_full_resolution_before_training(tmp_path, monkeypatch):
    root = make_folder(tmp_path, names=("a", "b", "c"), size=256, n_classes=2, values=(0, 255))
    values, _ = _mask(root)
    values[10:12, 20:22] = 128  # 4 px: invisible in any decimated read
    values[200:203, 100:103] = 128  # 9 px, in another block
    write_geotiff(root / "masks" / "a.tif", values)
    values, _ = _mask(root, "c")
    values[0, 0] = 77
    write_geotiff(root / "masks" / "c.tif", values)
    ds = open_dataset("folder", root, INRIA)
    # a decimated sample does not see them
    GLNetSceneDataset(ds.subset(["a"]), SampleSpec(global_size=64, patch_size=64))[0]
    monkeypatch.setattr(glgeo.datasets, "_SCAN_PIXELS", 256 * 16)  # blocks of 16 rows
    with pytest.raises(DatasetError) as refused:
        ds.check()
    message = str(refused.value)
    assert f"{root / 'masks' / 'a.tif'}: value 128 in 13 px is not a class of scheme 'inria'" in message
    assert "1 more mask" in message and "c.tif" in message and "\n" not in message
    with pytest.raises(DatasetError, match="value 128 in 13 px"):
        ds.subset(["a"]).scan_masks()
    ds.subset(["b"]).check()


def test_a_mask_nodata_that_is_a_class_value_warns_naming_class_file_and_count(tmp_path, caplog):
    root = make_folder(tmp_path, names=("a", "b"), size=64, n_classes=2, values=(0, 255))
    values, _ = _mask(root)
    write_geotiff(root / "masks" / "a.tif", values, nodata=0)  # Inria's 0/255 mask with nodata 0
    ds = open_dataset("folder", root, INRIA)
    with caplog.at_level(logging.WARNING, logger="glgeo.datasets"):
        ds.check()
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1, warned
    text = warned[0]
    background = int((values == 0).sum())
    assert "nodata 0" in text and "'background'" in text and str(root / "masks" / "a.tif") in text
    assert f"{background:,} px" in text and "remove" in text and "b.tif" not in text
    # a nodata value no class uses is no loss: no warning
    caplog.clear()
    values[:8] = 7
    write_geotiff(root / "masks" / "a.tif", values, nodata=7)
    with caplog.at_level(logging.WARNING, logger="glgeo.datasets"):
        ds.check()
    assert not caplog.records


# ------------------------------------------------------------------ float masks


def test_float_masks_name_non_integer_values_as_they_are():
    mask = np.array([[0.0, 1.0], [0.9, 1.0]], dtype=np.float32)
    binary = ClassScheme(name="b01", classes=(ClassInfo(0, "background", (0, 0, 0), 0), ClassInfo(1, "building", (255, 255, 255), 1)))
    with pytest.raises(DatasetError, match=r"m.tif: value 0.9 in 1 px is not a whole number"):
        decode_mask(mask, binary, "m.tif")
    mask = np.full((4, 4), 255.0, dtype=np.float32)
    mask[0, :2] = 200.4
    with pytest.raises(DatasetError, match=r"value 200.4 in 2 px is not a whole number"):
        decode_mask(mask, INRIA, "gt.tif")
    whole = np.array([[0.0, 255.0, -0.5]], dtype=np.float64)
    np.testing.assert_array_equal(decode_mask(whole, INRIA, "gt.tif", nodata=-0.5), [[0, 1, NODATA_ID]])


@pytest.mark.parametrize("nodata", [float("nan"), None])
def test_nan_in_a_float_mask_is_nodata(nodata):
    mask = np.array([[0.0, np.nan], [255.0, np.nan]], dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning from casting NaN
        ids = decode_mask(mask, INRIA, "gt.tif", nodata=nodata)
    np.testing.assert_array_equal(ids, [[0, NODATA_ID], [1, NODATA_ID]])


def test_a_nan_nodata_float_mask_trains_with_nodata_labels(tmp_path):
    root = make_folder(tmp_path, names=("a",), size=64, n_classes=2, values=(0, 255))
    values, _ = _mask(root)
    floats = values.astype(np.float32)
    floats[:16] = np.nan
    write_geotiff(root / "masks" / "a.tif", floats, nodata=float("nan"))
    ds = open_dataset("folder", root, INRIA)
    ds.check()
    sample = GLNetSceneDataset(ds, SampleSpec(global_size=64, patch_size=64, with_scene_label=True))[0]
    labels = sample["scene_label"].numpy()
    assert (labels[:4] == NODATA_ID).all() and (labels[4:] != NODATA_ID).all()


# ------------------------------------------------------------------ image nodata, alpha, mask


def _left_invalid(root, how, name="a"):
    """Rewrite image ``name`` with its left half marked as no data (``how``)."""
    pixels = _image(root, name)
    left = np.zeros(pixels.shape[1:], bool)
    left[:, : pixels.shape[2] // 2] = True
    pixels[:, left] = 0
    if how == "nodata":
        write_geotiff(root / "images" / f"{name}.tif", pixels, nodata=0)
    elif how == "alpha":
        write_geotiff(root / "images" / f"{name}.tif", pixels, alpha=np.where(left, 0, 255).astype(np.uint8))
    else:
        write_geotiff(root / "images" / f"{name}.tif", pixels, mask=~left)
    return left


@pytest.mark.parametrize("how", ["nodata", "alpha", "mask"])
def test_labels_are_nodata_where_the_image_has_no_data(tmp_path, how):
    root = make_folder(tmp_path, names=("a", "b"), size=128, values=(3, 7, 100))
    for name in ("a", "b"):
        _left_invalid(root, how, name)
    ds = open_dataset("folder", root, INT3)
    ds.check()
    spec = SampleSpec(global_size=64, patch_size=64, with_patches=True, with_scene_label=True)
    sample = GLNetSceneDataset(ds, spec)[0]
    label, scene = sample["label"].numpy(), sample["scene_label"].numpy()  # 16 x 16, 32 x 32
    assert (label[:, :8] == NODATA_ID).all() and (label[:, 8:] != NODATA_ID).all()
    assert (scene[:, :16] == NODATA_ID).all() and (scene[:, 16:] != NODATA_ID).all()
    for labels, (top, left, h, w) in zip(sample["patch_labels"].numpy(), sample["boxes"].tolist()):
        cols = left + (np.arange(16) + 0.5) * w / 16  # patch label columns in scene pixels
        assert ((labels == NODATA_ID) == (cols < 64)[None, :]).all()
    # a 2 x 2 mosaic reads through the same scene reader: any window covers a left half
    torch.manual_seed(0)
    mosaic = GLNetSceneDataset(ds, SampleSpec(global_size=64, patch_size=64, mosaic=1.0))
    for _ in range(4):
        assert (mosaic[0]["label"].numpy() == NODATA_ID).any()


def test_class_shares_leave_out_image_nodata(tmp_path):
    root = make_folder(tmp_path, names=("a",), size=64, values=(3, 7, 100))
    values, _ = _mask(root)
    values[:, :32] = 3
    values[:, 32:] = 7
    write_geotiff(root / "masks" / "a.tif", values)
    _left_invalid(root, "nodata")
    shares = class_shares(open_dataset("folder", root, INT3), size=64)
    np.testing.assert_allclose(shares, [[0.0, 1.0, 0.0]])


def test_a_mask_without_a_labelled_pixel_is_warned_about(tmp_path, caplog):
    """A mask that is nodata everywhere gives its scene nothing to learn (its loss was 0 and
    nothing said so)."""
    root = make_folder(tmp_path, names=("a", "b"), size=32, values=(3, 7, 100))
    values, transform = _mask(root, "b")
    write_geotiff(root / "masks" / "b.tif", np.full_like(values, 9), transform=transform, nodata=9)
    with caplog.at_level(logging.WARNING, logger="glgeo.datasets"):
        open_dataset("folder", root, INT3).check()
    assert [r.getMessage() for r in caplog.records] == [
        f"1 mask has no labelled pixel (all nodata): {root / 'masks' / 'b.tif'}; its scene gives nothing to learn"
        " from or to score"]


def test_mask_scans_are_remembered_until_a_mask_changes(tmp_path, caplog, monkeypatch):
    """Each train of a recipe's stages, each resume and each DDP process checks the masks: a
    mask unchanged since a scan that found nothing wrong is not read again, and its warnings
    are still given; a changed mask is read again, and a scan that found an error is not kept."""
    import os

    monkeypatch.setenv("GLGEO_CACHE_DIR", str(tmp_path / "cache"))
    root = make_folder(tmp_path / "ds", names=("a", "b"), size=32, values=(3, 7, 100))
    values, transform = _mask(root, "b")
    write_geotiff(root / "masks" / "b.tif", np.full_like(values, 9), transform=transform, nodata=9)
    scanned = []
    real = glgeo.datasets.scan_mask
    monkeypatch.setattr(glgeo.datasets, "scan_mask", lambda path, *a: scanned.append(path.name) or real(path, *a))
    for expected in (["a.tif", "b.tif"], []):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="glgeo.datasets"):
            open_dataset("folder", root, INT3).check()
        assert sorted(scanned) == expected and "1 mask has no labelled pixel" in caplog.text
        scanned.clear()
    assert len(json.loads((tmp_path / "cache" / "mask-scans.json").read_text())) == 2
    # a changed mask (another value, new time): read again, its error found
    values[0, 0] = 42
    write_geotiff(root / "masks" / "a.tif", values, transform=transform)
    os.utime(root / "masks" / "a.tif", ns=(1, 1))
    with pytest.raises(DatasetError, match="42"):
        open_dataset("folder", root, INT3).check()
    assert scanned == ["a.tif"]
    with pytest.raises(DatasetError, match="42"):  # and again: errors are not remembered
        open_dataset("folder", root, INT3).check()
    monkeypatch.setenv("GLGEO_CACHE_DIR", "off")
    scanned.clear()
    with pytest.raises(DatasetError):
        open_dataset("folder", root, INT3).check()
    assert scanned == ["a.tif", "b.tif"]


# ------------------------------------------------------------------ bands


def _label_bands(path, *interp):
    with rasterio.open(path, "r+") as dst:
        dst.colorinterp = list(interp)


def test_training_reads_the_bands_each_image_labels_red_green_blue_as_segment_does(tmp_path, caplog):
    """Training read bands 1, 2, 3 of every image whatever its labels, while glgeo segment
    reads the bands labelled red, green and blue: a model trained on BGR-labelled files
    learned blue as red and was then fed red as red. Now training reads what segment reads,
    says so once for the run, and reads given bands as given."""
    from rasterio.enums import ColorInterp as C

    root = make_folder(tmp_path, names=("a", "b"), size=64, n_classes=2, values=(0, 255))
    plain = _image(root, "a")
    write_geotiff(root / "images" / "a.tif", plain, photometric="MINISBLACK")
    _label_bands(root / "images" / "a.tif", C.blue, C.green, C.red)
    ds = open_dataset("folder", root, INRIA)
    with caplog.at_level(logging.WARNING, logger="glgeo.datasets"):
        ds.check_bands(None)
    assert caplog.text.count("WARNING") == 1, caplog.text
    assert ("1 of 2 images label bands other than their first three as red, green and blue (a.tif: bands 3,2,1): "
            "each is read as labelled, as glgeo segment reads scenes; pass bands=(1, 2, 3)") in caplog.text
    spec = SampleSpec(global_size=64, patch_size=64)
    as_labelled = GLNetSceneDataset(ds.subset(["a"]), spec)[0]["image"]
    as_given = GLNetSceneDataset(ds.subset(["a"]), SampleSpec(global_size=64, patch_size=64, bands=(1, 2, 3)))[0]["image"]
    assert torch.equal(as_labelled, as_given.flip(0)) and not torch.equal(as_labelled, as_given)
    # b carries no labels of its own (three bands): read in file order, no word
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="glgeo.datasets"):
        ds.subset(["b"]).check_bands(None)
        ds.check_bands((1, 2, 3))
    assert caplog.text == ""


def test_an_image_training_cannot_read_as_rgb_stops_the_run_before_the_first_epoch(tmp_path):
    """Four bands without colour labels: which three are red, green and blue is not known
    (glgeo segment refuses such a scene too); bands that an image lacks."""
    root = make_folder(tmp_path, names=("a", "b"), size=64, n_classes=2, values=(0, 255))
    four = np.concatenate([_image(root, "a"), _image(root, "a")[:1]])
    write_geotiff(root / "images" / "a.tif", four, photometric="MINISBLACK")
    ds = open_dataset("folder", root, INRIA)
    with pytest.raises(DatasetError, match=r"scene 'a': .*a.tif: scene has 4 bands \(alpha not counted\); .*pass "
                                           r"bands=\(1, 2, 3\)"):
        ds.check_bands(None)
    ds.check_bands((1, 2, 3))
    with pytest.raises(DatasetError, match=r"scene 'b': .*b.tif has 3 bands; bands 1, 2, 4 were asked for"):
        ds.check_bands((1, 2, 4))
