"""The training recipe's options: held-out validation scenes, scale (crop) jitter, mosaics,
colour jitter, class-balanced sampling and the images' ground sample distance."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from click.testing import CliRunner

from glgeo.cli.main import cli
from glgeo.datasets import (
    FlipRotate,
    GLNetSceneDataset,
    SampleSpec,
    balanced_weights,
    class_shares,
    decode_mask,
    nearest_resize,
    open_dataset,
    patch_grid,
)
from glgeo.errors import InputError
from glgeo.models import load_checkpoint
from glgeo.splits import Split, hold_out, make_split
from glgeo.models.losses import resize_labels
from glgeo.training import DataSettings, blur, color_jitter, jitter_factors
from fixtures.layouts import INT3, folder_scene, make_deepglobe, make_folder


# --------------------------------------------------------------------------- held-out scenes


def test_hold_out_moves_a_seeded_share_and_named_scenes_to_test():
    split = Split(("t1", "t2"), tuple(f"v{i}" for i in range(10)), ("x",))
    held = hold_out(split, 0.5, scenes=("v3",), seed=1)
    assert held.train == split.train
    assert len(held.val) == 5 and len(held.test) == 1 + 5
    assert "v3" in held.test and "v3" not in held.val and held.test[0] == "x"
    assert set(held.val) | set(held.test[1:]) == set(split.val)
    # deterministic, and another seed holds out other scenes
    assert hold_out(split, 0.5, scenes=("v3",), seed=1) == held
    assert {hold_out(split, 0.5, seed=s).val for s in range(4)} != {held.val}
    # named scenes alone
    only = hold_out(split, 0.0, scenes=("v0", "v9"))
    assert only.val == tuple(f"v{i}" for i in range(1, 9)) and only.test == ("x", "v0", "v9")


def test_hold_out_errors_are_clear():
    split = Split(("t1",), ("v1", "v2"))
    with pytest.raises(InputError, match="t1 are not validation scenes"):
        hold_out(split, 0.0, scenes=("t1",))
    with pytest.raises(InputError, match=r"\[0, 1\)"):
        hold_out(split, 1.0)
    with pytest.raises(InputError, match="leaves none to choose checkpoints on"):
        hold_out(split, 0.0, scenes=("v1", "v2"))


def test_make_split_applies_the_hold_out(tmp_path):
    lists = tmp_path / "splits"
    lists.mkdir()
    (lists / "train.txt").write_text("a_sat.jpg\nb_sat.jpg\n")
    (lists / "crossvali.txt").write_text("".join(f"v{i}_sat.jpg\n" for i in range(6)))
    names = ["a", "b", *(f"v{i}" for i in range(6))]
    split = make_split("deepglobe", names, split_file=lists, holdout_share=0.5, holdout_scenes=["v5"])
    assert split.train == ("a", "b") and len(split.val) == 3 and len(split.test) == 3 and "v5" in split.test


# --------------------------------------------------------------------------- scale jitter


def test_crop_jitter_samples_are_windows_of_the_scene(tmp_path):
    ds, scene, ids = folder_scene(tmp_path, 160, 128)
    spec = SampleSpec(global_size=64, patch_size=64, with_patches=True, augment=True, crop_jitter=0.5)
    data = GLNetSceneDataset(ds, spec)
    torch.manual_seed(3)
    sizes = set()
    for _ in range(6):
        area = data.draw_window(128, 160)
        side = area.height / 128
        assert 0.5 <= side <= 1 and area.width / 160 == pytest.approx(side, abs=0.01)  # same aspect
        assert area.row_off + area.height <= 128 and area.col_off + area.width <= 160
    torch.manual_seed(4)
    for _ in range(6):
        s = data[0]
        tf = FlipRotate(bool(s["transform"][0]), int(s["transform"][1]))
        h, w = s["scene_size"].tolist()
        sizes.add((h, w))
        # the patches tile a window of the scene at full resolution: find it from the first patch
        win_h, win_w = (h, w) if tf.k % 2 == 0 else (w, h)
        found = False
        for top in range(128 - win_h + 1):
            for left in range(160 - win_w + 1):
                crop = tf.apply(scene[:, top : top + win_h, left : left + win_w])
                t, l, bh, bw = s["boxes"][0].tolist()
                if np.array_equal(crop[:, t : t + bh, l : l + bw], s["patches"][0].numpy()):
                    found = True
                    crop_ids = tf.apply(ids[top : top + win_h, left : left + win_w])
                    for patch, label, (t, l, bh, bw) in zip(s["patches"], s["patch_labels"], s["boxes"].tolist()):
                        np.testing.assert_array_equal(patch.numpy(), crop[:, t : t + bh, l : l + bw])
                        np.testing.assert_array_equal(label.numpy(), nearest_resize(crop_ids[t : t + bh, l : l + bw], 16, 16))
                    break
            if found:
                break
        assert found
    assert len(sizes) > 1 and all(h * w < 128 * 160 and max(h, w) <= 160 for h, w in sizes)


def test_no_crop_jitter_reads_the_whole_scene(tmp_path):
    make_folder(tmp_path, names=("a",), size=96, values=(3, 7, 100))
    data = GLNetSceneDataset(open_dataset("folder", tmp_path, INT3), SampleSpec(global_size=64, patch_size=64))
    assert data.draw_window(96, 80) == rasterio.windows.Window(0, 0, 80, 96)
    with pytest.raises(InputError, match="crop"):
        SampleSpec(crop_jitter=1.0)


# --------------------------------------------------------------------------- colour jitter


# --------------------------------------------------------------------------- mosaics


def _four_scenes(tmp_path):
    make_folder(tmp_path, names=("a", "b", "c", "d"), size=96, height=80, values=(3, 7, 100))
    collection = open_dataset("folder", tmp_path, INT3)
    pixels, ids = [], []
    for name in "abcd":
        with rasterio.open(collection.scene(name).image) as src:
            pixels.append(src.read())
        ids.append(decode_mask(np.asarray(rasterio.open(collection.scene(name).mask).read(1)), INT3))
    top = np.concatenate(pixels[:2], axis=2), np.concatenate(ids[:2], axis=1)
    bottom = np.concatenate(pixels[2:], axis=2), np.concatenate(ids[2:], axis=1)
    return collection, np.concatenate([top[0], bottom[0]], axis=1), np.concatenate([top[1], bottom[1]], axis=0)


@pytest.mark.parametrize("area", [(0, 0), (37, 51), (80, 96), (13, 96)])
def test_mosaic_window_reads_the_four_scenes_where_they_lie(tmp_path, area):
    """A window of the 2 x 2 mosaic, read part by part from the four files, holds exactly
    the mosaic's pixels and class ids, also where it straddles two or four scenes."""
    from rasterio.windows import Window

    from glgeo.datasets import _MosaicScene

    collection, mosaic, mosaic_ids = _four_scenes(tmp_path)
    spec = SampleSpec(global_size=64, patch_size=64, with_patches=True)
    top, left = area
    pairs = [collection.scene(n) for n in "abcd"]
    drawn = []

    def draw(height, width, within):
        drawn.append((height, width, within))
        return Window(left, top, width, height)

    with _MosaicScene.open(collection, pairs, spec, draw) as scene:
        assert drawn == [(80, 96, (160, 192))] and (scene.height, scene.width) == (80, 96)
        for t, l, h, w in patch_grid(80, 96, 64):
            image, ids = scene.patch(int(t), int(l), int(h), int(w))
            np.testing.assert_array_equal(image, mosaic[:, top + t : top + t + h, left + l : left + l + w])
            np.testing.assert_array_equal(ids, mosaic_ids[top + t : top + t + h, left + l : left + l + w])
        np.testing.assert_array_equal(scene.scene_label(80, 96), mosaic_ids[top : top + 80, left : left + 96])
        assert scene.global_image(64).shape == (3, 64, 64) and scene.global_label(16).shape == (16, 16)


@pytest.mark.parametrize("jitter", [0.0, 0.3])
def test_mosaic_windows_are_centred_on_the_drawn_scene(tmp_path, jitter):
    """A mosaic window lies in the mosaic with its centre on the scene the sampler drew
    (the top-left one), so a quarter or more of it is that scene, and it still reaches
    into the other three."""
    collection, _, _ = _four_scenes(tmp_path)
    dataset = GLNetSceneDataset(collection, SampleSpec(global_size=64, patch_size=64, crop_jitter=jitter, mosaic=1.0))
    torch.manual_seed(0)
    beyond = 0
    for _ in range(300):
        win = dataset.draw_window(80, 96, (160, 192))
        top, left, h, w = win.row_off, win.col_off, win.height, win.width
        assert 0 <= top and top + h <= 160 and 0 <= left and left + w <= 192
        assert top + h / 2 < 80 and left + w / 2 < 96
        assert min(h, 80 - top) * min(w, 96 - left) >= h * w / 4
        beyond += top + h > 80 and left + w > 96
    assert beyond > 100  # most windows straddle all four scenes


def test_mosaic_share_of_samples(tmp_path):
    """``mosaic=1``: every training sample is a mosaic window of one scene's size; ``0``:
    none is; scenes of different sizes are never put together."""
    from glgeo.datasets import _MosaicScene

    collection, _, _ = _four_scenes(tmp_path)
    torch.manual_seed(0)
    always = GLNetSceneDataset(collection, SampleSpec(global_size=64, patch_size=64, with_patches=True, mosaic=1.0))
    never = GLNetSceneDataset(collection, SampleSpec(global_size=64, patch_size=64, with_patches=True))
    for i in range(4):
        with always.open_scene(i) as scene:
            assert isinstance(scene, _MosaicScene) and (scene.height, scene.width) == (80, 96)
        with never.open_scene(i) as scene:
            assert not isinstance(scene, _MosaicScene)
    sample = always[0]
    assert sample["patches"].shape == (len(patch_grid(80, 96, 64)), 3, 64, 64) and tuple(sample["scene_size"].tolist()) == (80, 96)
    make_folder(tmp_path, names=("e",), size=64, values=(3, 7, 100), seed=5)  # another size
    mixed = GLNetSceneDataset(open_dataset("folder", tmp_path, INT3), SampleSpec(global_size=64, patch_size=64, mosaic=1.0))
    opened = []
    for _ in range(20):
        with mixed.open_scene(4) as scene:  # "e" with three drawn at random
            opened.append(isinstance(scene, _MosaicScene))
    assert not any(opened)
    with pytest.raises(InputError, match="mosaic share"):
        SampleSpec(mosaic=1.5)


def test_color_jitter_factors_and_effects():
    torch.manual_seed(0)
    f = jitter_factors(1000, 0.2)
    assert f.shape == (1000, 3) and f.min() >= 0.8 and f.max() <= 1.2 and f.std() > 0.05
    x = torch.rand((2, 3, 8, 8)) * 0.5 + 0.25
    mean = torch.full((2,), 0.5)
    same = color_jitter(x.clone(), torch.ones((2, 3)), mean)
    torch.testing.assert_close(same, x)
    brighter = color_jitter(x.clone(), torch.tensor([[1.2, 1.0, 1.0]] * 2), mean)
    torch.testing.assert_close(brighter, x * 1.2)
    grey = color_jitter(x.clone(), torch.tensor([[1.0, 1.0, 0.0]] * 2), mean)
    assert torch.allclose(grey[:, 0], grey[:, 1]) and torch.allclose(grey[:, 1], grey[:, 2])
    flat = color_jitter(x.clone(), torch.tensor([[1.0, 0.0, 1.0]] * 2), mean)
    assert torch.allclose(flat, torch.full_like(flat, 0.5))
    assert color_jitter(x.clone(), torch.tensor([[3.0, 3.0, 3.0]] * 2), mean).max() <= 1.0


def test_blur_is_a_gaussian_of_each_images_own_width():
    """Blur jitter (a resampled image's softness): each image by its own standard deviation,
    none where it is 0, flat images unchanged, and a Gaussian's spread where it is not."""
    x = torch.zeros((3, 2, 33, 33))
    x[:, :, 16, 16] = 1.0  # a point
    out = blur(x, torch.tensor([0.0, 1.0, 2.0]))
    torch.testing.assert_close(out[0], x[0])
    for i, sigma in ((1, 1.0), (2, 2.0)):
        profile = out[i, 0].sum(dim=0)  # the point spread along one axis
        assert float(profile.sum()) == pytest.approx(1.0, abs=1e-5)
        offsets = torch.arange(33) - 16.0
        assert float((profile * offsets**2).sum()) == pytest.approx(sigma**2, rel=0.02)
    flat = torch.full((2, 3, 16, 16), 0.3)
    torch.testing.assert_close(blur(flat, torch.tensor([0.5, 3.0])), flat)
    with pytest.raises(InputError, match="blur_jitter"):
        DataSettings(kind="deepglobe", root=Path("."), blur_jitter=4.0)


# --------------------------------------------------------------------------- class balance


def test_balanced_weights_favour_scenes_of_rare_classes(tmp_path):
    shares = np.array([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.5, 0.5, 0.0]])
    uniform = balanced_weights(shares, 0.0)
    np.testing.assert_allclose(uniform, 0.25)
    half, full = balanced_weights(shares, 0.5), balanced_weights(shares, 1.0)
    assert full[3] > half[3] > 0.25 and half.sum() == pytest.approx(1.0)
    with pytest.raises(InputError, match=">= 0"):
        balanced_weights(shares, -1)
    make_folder(tmp_path, names=("a", "b"), size=64, values=(3, 7, 100))
    got = class_shares(open_dataset("folder", tmp_path, INT3), size=32)
    assert got.shape == (2, 3) and np.allclose(got.sum(axis=1), 1.0)


def test_data_settings_check_the_recipe_values(tmp_path):
    for bad in ({"gsd": 0.0}, {"color_jitter": 1.0}, {"crop_jitter": -0.1}, {"balance": -1.0}, {"mosaic": 1.5},
                {"global_size": 0}, {"patch_size": 100.5}):
        with pytest.raises(InputError, match=next(iter(bad))):
            DataSettings(kind="deepglobe", root=tmp_path, **bad)
    # numpy's integers are sizes too (they failed at the first checkpoint save, an epoch in)
    assert type(DataSettings(kind="deepglobe", root=tmp_path, global_size=np.int64(128)).global_size) is int
    with pytest.raises(InputError, match="mosaic=0.5 is for dataset inputs"):
        DataSettings(kind="geo", geo=object(), mosaic=0.5)
    # torchgeo draws imagery inputs' scenes: crop jitter and balanced sampling were recorded in
    # the checkpoint but never applied, and --gsd recorded a resolution the scenes were not read at
    with pytest.raises(InputError, match=r"crop_jitter=0.3 and balance=0.5 are for dataset inputs") as refused:
        DataSettings(kind="geo", geo=object(), crop_jitter=0.3, balance=0.5)
    assert str(refused.value).endswith("leave them at 0")  # the message's last words were code, not an f-string
    with pytest.raises(InputError, match=r"crop_jitter=0.3 is for dataset inputs.*leave it at 0$"):
        DataSettings(kind="geo", geo=object(), crop_jitter=0.3)
    # imagery is split by area: a held-out share of its validation scenes was accepted and never applied
    for held in ({"holdout_share": 0.5}, {"holdout_scenes": ("a",)}):
        with pytest.raises(InputError, match="imagery and labels are split by area"):
            DataSettings(kind="geo", geo=object(), **held)
    with pytest.raises(InputError, match=r"gsd=0.6 is for images whose files do not say their resolution"):
        DataSettings(kind="geo", geo=object(), gsd=0.6)
    from glgeo.training import TrainSettings

    with pytest.raises(InputError, match="loss_balance"):
        TrainSettings(out=tmp_path, loss_balance=-1.0)
    with pytest.raises(InputError, match="cut_consistency"):
        TrainSettings(out=tmp_path, cut_consistency=-1.0)
    from glgeo.training import _class_weights

    with pytest.raises(InputError, match="needs dataset inputs"):
        _class_weights(None, INT3, DataSettings(kind="geo", geo=object()), TrainSettings(out=tmp_path, loss_balance=1.0))


# --------------------------------------------------------------------------- cut consistency


def test_random_cuts_cut_images_and_labels_along_the_same_lines():
    from glgeo.training import random_cuts

    torch.manual_seed(0)
    # every label cell (4 x 4 px) holds its own value, so a cut's box can be read back from both
    labels = torch.arange(16 * 20).reshape(1, 16, 20).repeat(6, 1, 1) % 250
    images = labels.float().repeat_interleave(4, 1).repeat_interleave(4, 2)[:, None].repeat(1, 3, 1, 1)
    cut_images, cut_labels, boxes, sources = random_cuts(images, labels, max_cut=0.25)
    assert cut_images.shape == images.shape and cut_labels.shape == labels.shape
    assert sources == [(i,) for i in range(6)]
    assert len({b for b in boxes}) > 1  # drawn per view
    for i, (t, l, h, w) in enumerate(boxes):
        assert 0 <= t <= 4 and 0 <= l <= 5 and 8 <= h <= 16 - t and 10 <= w <= 20 - l
        # the cut's corners are the box's corner cells
        assert cut_labels[i, 0, 0] == labels[i, t, l] and cut_labels[i, -1, -1] == labels[i, t + h - 1, l + w - 1]
        assert cut_images[i, 0, 0, 0] == pytest.approx(float(labels[i, t, l]), abs=1.0)
    # no cut at all: the views themselves
    same_images, same_labels, same, _ = random_cuts(images, labels, max_cut=0.0)
    assert same == [(0, 0, 16, 20)] * 6 and torch.equal(same_labels, labels)
    torch.testing.assert_close(same_images, images)


def test_mosaic_cuts_straddle_the_batch_views_around_their_own():
    from glgeo.models.losses import mosaic_of
    from glgeo.training import random_cuts

    torch.manual_seed(1)
    labels = torch.arange(6)[:, None, None].repeat(1, 16, 16)  # view i is all class i
    images = labels.float().repeat_interleave(4, 1).repeat_interleave(4, 2)[:, None].repeat(1, 3, 1, 1)
    cut_images, cut_labels, boxes, sources = random_cuts(images, labels, max_cut=0.25, mosaic=1.0)
    for i, ((t, l, h, w), source) in enumerate(zip(boxes, sources)):
        assert len(source) == 9 and source[4] == i and len(set(source)) == 6  # the view at the centre
        # the cut's centre lies on its own view (the mosaic's middle tile), its box inside the mosaic
        assert 16 <= t + h // 2 < 32 and 16 <= l + w // 2 < 32 and t >= 0 and l >= 0 and t + h <= 48 and l + w <= 48
        torch.testing.assert_close(cut_labels[i], resize_labels(mosaic_of(labels, source)[None, t:t + h, l:l + w], (16, 16))[0])
        assert (cut_labels[i] == i).float().mean() >= 0.25  # at least a quarter is its own view
    assert any(len(torch.unique(c)) > 1 for c in cut_labels)  # and some hold the neighbours


# --------------------------------------------------------------------------- end to end


def test_train_with_the_recipe_options_records_them(tmp_path, caplog, monkeypatch):
    import glgeo.training

    reads = []  # the masks are read once per run, for the sampler and the loss's weights alike
    monkeypatch.setattr(glgeo.training, "class_shares", lambda c: reads.append(len(c)) or class_shares(c))
    root = make_deepglobe(tmp_path / "dg", ids=tuple(str(i) for i in range(1, 9)), size=64)
    lists = tmp_path / "split.json"
    lists.write_text(json.dumps({"train": ["1", "2", "3", "4"], "val": ["5", "6", "7", "8"]}))
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, [
        "-q", "train", "--dataset", "deepglobe", "--root", str(root), "--out", str(out), "--mode", "global",
        "--split-file", str(lists), "--holdout-share", "0.5", "--holdout-scenes", "8", "--gsd", "4.78",
        "--color-jitter", "0.2", "--crop-jitter", "0.4", "--blur-jitter", "0.8", "--balance", "0.5", "--mosaic", "0.5",
        "--loss-balance", "1", "--cut-consistency", "2", "--backbone", "resnet18", "--pyramid-channels", "16",
        "--segmentation-channels", "8", "--global-size", "64",
        "--batch-size", "2", "--loader-workers", "0", "--epochs", "2", "--lr", "1e-3",
    ], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "validated on 2, 2 held out" in result.output
    assert reads == [4]
    split = json.loads((out / "split.json").read_text())
    assert len(split["val"]) == 2 and "8" in split["test"] and not set(split["val"]) & set(split["test"])
    ck = load_checkpoint(out / "model.pt")
    training = ck.metadata["training"]
    assert ck.gsd == pytest.approx(4.78) and ck.scene_scale == 1.0
    assert training["global_gsd_m"] == pytest.approx(4.78)  # 64 px scenes, 64 px global image
    assert training["held_out_scenes"] == 2 and training["val_scenes"] == 2
    assert training["augmentation"] == {
        "flips_rotations": True, "color_jitter": 0.2, "crop_jitter": 0.4, "blur_jitter": 0.8, "mosaic": 0.5,
        "balance": 0.5,
    }
    # the class-weighted loss: the weights of the four training scenes' class shares
    from glgeo.models.losses import class_loss_weights

    shares = class_shares(open_dataset("deepglobe", root).subset(split["train"])).sum(axis=0)
    assert training["loss_balance"] == 1.0
    assert list(training["class_weights"].values()) == pytest.approx(class_loss_weights(shares, 1.0))
    assert list(training["class_weights"]) == [c.name for c in ck.scheme.classes]
    # the cut-consistency term was computed at every step (and logged) and is recorded
    assert training["cut_consistency"] == 2.0
    logged = [row for f in (out / "stage1").rglob("metrics.csv") for row in f.read_text().splitlines()]
    header = logged[0].split(",")
    values = [row.split(",")[header.index("train/consistency")] for row in logged[1:]]
    assert len([v for v in values if v and float(v) > 0]) == 2  # one per epoch
    # the held-out part is what evaluate reports on
    report = tmp_path / "report.json"
    result = CliRunner().invoke(cli, ["-q", "evaluate", "--model", str(out / "model.pt"), "--dataset", "deepglobe",
                                      "--root", str(root), "--split-file", str(out / "split.json"), "--part", "test",
                                      "--device", "cpu", "-o", str(report)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert len(json.loads(report.read_text())["images"]) == 2
    # a scene far larger than the training scenes is cut into context windows of their size;
    # seen whole (--footprint scene), glgeo segment says the global model sees it too coarsely
    from fixtures.rasters import write_geotiff

    assert ck.footprint == 64
    big = write_geotiff(tmp_path / "big.tif", np.full((3, 512, 512), 90, np.uint8), res=4.78)
    for footprint, warned in ((), False), (("--footprint", "scene"), True):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="glgeo.segmentation"):
            result = CliRunner().invoke(cli, ["segment", str(big), "-o", str(tmp_path / "big_classes.tif"), "--model",
                                              str(out / "model.pt"), "--device", "cpu", "--overwrite", *footprint])
        assert result.exit_code == 0, result.output
        assert ("trained on views of about 0.31 km" in caplog.text) is warned


# --------------------------------------------------------------------------- segment's warning


def _global_checkpoint(global_gsd, footprint=None):
    from types import SimpleNamespace

    return SimpleNamespace(metadata={"training": {"global_gsd_m": global_gsd, "gsd_m": 4.78}}, gsd=4.78,
                           footprint=footprint)


def _scene(tmp_path, size, res, crs="EPSG:32631"):
    from glgeo.io import inspect_scene
    from fixtures.rasters import write_geotiff

    path = write_geotiff(tmp_path / f"s{size}_{res}.tif", np.zeros((3, size, size), np.uint8), res=res, crs=crs)
    return inspect_scene(path)


def test_segment_warns_when_a_global_model_sees_a_scene_far_from_its_extent(tmp_path):
    from glgeo.segmentation import global_resolution_warning

    ck = _global_checkpoint(4.78)  # trained on 1.2 km scenes through a 256 px global image
    like_training = _scene(tmp_path, 256, 4.78)
    assert global_resolution_warning(ck, like_training, "global", 256) is None
    assert global_resolution_warning(ck, _scene(tmp_path, 2448, 0.5), "global", 256) is None  # 1.2 km at 50 cm
    huge = _scene(tmp_path, 1024, 20.0)  # 20 km: 80 m global pixels
    message = global_resolution_warning(ck, huge, "global", 256)
    assert "80 m per pixel" in message and "1.2 km" in message and "tiles" in message
    assert "m per pixel" in global_resolution_warning(ck, _scene(tmp_path, 64, 1.0), "global", 256)  # 64 m: too small
    # models with a local branch, checkpoints that do not say, scenes without a known GSD: no warning
    assert global_resolution_warning(ck, huge, "g2l", 256) is None
    assert global_resolution_warning(_global_checkpoint(None), huge, "global", 256) is None
    # a model with a context footprint cuts the huge scene into views of its training extent
    assert global_resolution_warning(_global_checkpoint(4.78, footprint=256), huge, "global", 256) is None
    assert global_resolution_warning(_global_checkpoint(4.78, footprint=256), huge, "global", 256, footprint=0)
    # the fixed view sees a small scene at a full window's resolution: nothing to warn about
    small = _scene(tmp_path, 64, 1.0)
    assert global_resolution_warning(_global_checkpoint(4.78, footprint=256), small, "global", 256)
    assert global_resolution_warning(_global_checkpoint(4.78, footprint=256), small, "global", 256,
                                     global_view="fixed") is None
    from rasterio.errors import NotGeoreferencedWarning

    with pytest.warns(NotGeoreferencedWarning):
        plain = tmp_path / "plain.png"
        with rasterio.open(plain, "w", driver="PNG", width=4096, height=4096, count=3, dtype="uint8") as dst:
            dst.write(np.zeros((3, 4096, 4096), np.uint8))
    from glgeo.io import inspect_scene

    assert global_resolution_warning(ck, inspect_scene(plain), "global", 256) is None
