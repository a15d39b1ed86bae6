"""Datasets as published: layouts, mask decoding, patch grid, consistent augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import torch

from glgeo.datasets import (
    FlipRotate,
    GLNetSceneDataset,
    SampleSpec,
    collate_scenes,
    decode_mask,
    logits_size,
    nearest_resize,
    open_dataset,
    patch_grid,
)
from glgeo.errors import DatasetError, InputError
from glgeo.schemes import DEEPGLOBE, INRIA, NODATA_ID, ClassInfo, ClassScheme
from fixtures.layouts import INT3, folder_scene, make_deepglobe, make_folder, make_inria
from fixtures.rasters import blocky_classes, write_geotiff


RGB3 = ClassScheme(
    name="rgb3",
    mask_encoding="rgb",
    classes=(ClassInfo(0, "road", (10, 10, 10), (255, 0, 0)), ClassInfo(1, "tree", (0, 200, 0), (0, 128, 0)),
             ClassInfo(2, "roof", (90, 90, 90), (20, 30, 40))),
)


def test_inria_layout_found_with_cities(tmp_path):
    make_inria(tmp_path, cities=("austin", "tyrol-w"), tiles=2, size=64)
    ds = open_dataset("inria", tmp_path)
    assert ds.names == ["austin1", "austin2", "tyrol-w1", "tyrol-w2"]
    assert [s.group for s in ds.scenes] == ["austin", "austin", "tyrol-w", "tyrol-w"]
    assert ds.scheme is INRIA
    # The AerialImageDataset folder itself is accepted too.
    assert open_dataset("inria", tmp_path / "AerialImageDataset").names == ds.names


def test_wrong_layout_says_what_was_expected(tmp_path):
    (tmp_path / "stuff").mkdir()
    with pytest.raises(DatasetError, match="AerialImageDataset/train/images"):
        open_dataset("inria", tmp_path)
    with pytest.raises(DatasetError, match="training_data/images/<id>_sat.jpg"):
        open_dataset("deepglobe", tmp_path)
    with pytest.raises(DatasetError, match="ROOT/images/<name>.tif"):
        open_dataset("folder", tmp_path, INT3)
    with pytest.raises(DatasetError, match="does not exist"):
        open_dataset("deepglobe", tmp_path / "nope")
    with pytest.raises(InputError, match="needs a class scheme"):
        open_dataset("folder", tmp_path)


def test_missing_mask_is_named(tmp_path):
    make_inria(tmp_path, cities=("austin",), tiles=2, size=64)
    (tmp_path / "AerialImageDataset" / "train" / "gt" / "austin2.tif").unlink()
    with pytest.raises(DatasetError, match=r"austin2.tif has no mask"):
        open_dataset("inria", tmp_path)


def test_deepglobe_rgb_masks_decode_to_paper_ids(tmp_path):
    make_deepglobe(tmp_path, ids=("7",), size=64, seed=3)
    ds = open_dataset("deepglobe", tmp_path)
    pair = ds.scene("7")
    with rasterio.open(pair.mask) as src:
        raw = src.read()
    ids = decode_mask(raw, DEEPGLOBE, pair.mask, rgb_threshold=128)
    expected = blocky_classes(np.random.default_rng(3), 64, 64, 7)
    np.testing.assert_array_equal(ids, expected)
    # DeepGlobe's rule: channels are binarised at 128 (near-pure colours still decode).
    noisy = np.clip(raw.astype(int) + np.where(raw > 127, -20, 20), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(decode_mask(noisy, DEEPGLOBE, "m", rgb_threshold=128), expected)


def test_deepglobe_challenge_and_sample_layouts(tmp_path):
    make_deepglobe(tmp_path / "a", ids=("1", "2"), size=64)
    flat = tmp_path / "b" / "train"
    flat.mkdir(parents=True)
    for f in (tmp_path / "a" / "data" / "training_data").rglob("*.*"):
        (flat / f.name).write_bytes(f.read_bytes())
    assert open_dataset("deepglobe", tmp_path / "b").names == ["1", "2"]


def test_unknown_colour_names_file_and_value(tmp_path):
    mask = np.zeros((3, 4, 4), dtype=np.uint8)
    mask[:, 0, 0] = (255, 0, 0)  # red is not a DeepGlobe class
    with pytest.raises(DatasetError, match=r"x_mask.png: colour \(255, 0, 0\) in 1 px is not a class of scheme 'deepglobe'"):
        decode_mask(mask, DEEPGLOBE, "x_mask.png", rgb_threshold=128)


def test_inria_values_and_unknown_value(tmp_path):
    mask = np.array([[0, 255], [255, 0]], dtype=np.uint8)
    np.testing.assert_array_equal(decode_mask(mask, INRIA, "gt.tif"), [[0, 1], [1, 0]])
    with pytest.raises(DatasetError, match=r"gt.tif: value 128 in 1 px is not a class of scheme 'inria'"):
        decode_mask(np.array([[0, 128]], dtype=np.uint8), INRIA, "gt.tif")
    with pytest.raises(DatasetError, match="has 3 bands"):
        decode_mask(np.zeros((3, 2, 2), np.uint8), INRIA, "gt.tif")


def test_folder_integer_masks_with_values_and_nodata(tmp_path):
    make_folder(tmp_path, names=("a",), size=64, values=(3, 7, 100), seed=5)
    ds = open_dataset("folder", tmp_path, INT3)
    with rasterio.open(ds.scene("a").mask) as src:
        ids = decode_mask(src.read(), INT3, "m")
    np.testing.assert_array_equal(ids, blocky_classes(np.random.default_rng(5), 64, 64, 3))
    with_nodata = np.array([[3, 0, 100]], dtype=np.uint8)
    np.testing.assert_array_equal(decode_mask(with_nodata, INT3, "m", nodata=0), [[0, NODATA_ID, 2]])
    with pytest.raises(DatasetError, match="value 0 in 1 px"):
        decode_mask(with_nodata, INT3, "m")


def test_folder_rgb_and_palette_masks(tmp_path):
    colours = [c.mask_value for c in RGB3.classes]
    make_folder(tmp_path / "rgb", names=("a",), size=64, encoding="rgb", values=colours, seed=1)
    make_folder(tmp_path / "pal", names=("a",), size=64, encoding="palette", values=colours, seed=1)
    expected = blocky_classes(np.random.default_rng(1), 64, 64, 3)
    for sub in ("rgb", "pal"):
        ds = open_dataset("folder", tmp_path / sub, RGB3)
        sample = GLNetSceneDataset(ds, SampleSpec(global_size=64, patch_size=64, with_patches=True))[0]
        np.testing.assert_array_equal(sample["patch_labels"][0].numpy(), nearest_resize(expected, 16, 16))


def test_size_and_crs_mismatch(tmp_path):
    make_folder(tmp_path, names=("a", "b"), size=64)
    write_geotiff(tmp_path / "masks" / "a.tif", np.zeros((60, 64), np.uint8))
    ds = open_dataset("folder", tmp_path, INT3)
    with pytest.raises(DatasetError, match=r"scene 'a': image .*a.tif is 64 x 64 px but its mask .* is 64 x 60 px"):
        ds.check()
    write_geotiff(tmp_path / "masks" / "a.tif", np.zeros((64, 64), np.uint8), crs="EPSG:4326")
    with pytest.raises(DatasetError, match=r"scene 'a': .* is in EPSG:32631 but its mask .* is in EPSG:4326"):
        ds.check()


def test_patch_grid_is_the_released_grid():
    grid = patch_grid(2448, 2448, 508)
    assert grid.shape == (36, 4)
    assert sorted(set(grid[:, 0].tolist())) == [0, 388, 776, 1164, 1552, 1940]
    assert (grid[:, 2:] == 508).all()
    assert patch_grid(100, 200, 64).shape == (4 * 11, 4)  # stride <= 64 - 50
    assert patch_grid(48, 40, 64).tolist() == [[0, 0, 48, 40]]  # clipped to a small scene
    assert logits_size(508) == 127 and logits_size(64) == 16 and logits_size(10) == 3


@pytest.mark.parametrize("hflip", [False, True])
@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_flip_rotate_keeps_patches_and_boxes_consistent(hflip, k):
    h, w = 30, 50
    scene = np.arange(h * w).reshape(h, w)
    boxes = np.array([[0, 0, 10, 20], [5, 30, 25, 20], [12, 7, 3, 9]])
    tf = FlipRotate(hflip, k)
    new_scene = tf.apply(scene)
    new_boxes, nh, nw = tf.apply_boxes(boxes, h, w)
    assert new_scene.shape == (nh, nw)
    for (t, l, bh, bw), (nt, nl, nbh, nbw) in zip(boxes, new_boxes):
        patch = tf.apply(scene[t : t + bh, l : l + bw])
        np.testing.assert_array_equal(new_scene[nt : nt + nbh, nl : nl + nbw], patch)


def test_samples_are_windows_of_the_scene_with_consistent_augmentation(tmp_path):
    ds, scene, ids = folder_scene(tmp_path, 150, 120)
    spec = SampleSpec(global_size=64, patch_size=64, with_patches=True, augment=True)
    data = GLNetSceneDataset(ds, spec)
    torch.manual_seed(1)
    seen = set()
    for _ in range(8):
        s = data[0]
        tf = FlipRotate(bool(s["transform"][0]), int(s["transform"][1]))
        seen.add((tf.hflip, tf.k))
        full, full_ids = tf.apply(scene), tf.apply(ids)
        assert tuple(s["scene_size"].tolist()) == full.shape[1:]
        assert s["patches"].shape == (5 * 8, 3, 64, 64) and s["image"].shape == (3, 64, 64)
        for patch, label, (t, l, bh, bw) in zip(s["patches"], s["patch_labels"], s["boxes"].tolist()):
            np.testing.assert_array_equal(patch.numpy(), full[:, t : t + bh, l : l + bw])
            np.testing.assert_array_equal(label.numpy(), nearest_resize(full_ids[t : t + bh, l : l + bw], 16, 16))
        # The global label is the (transformed) scene's label at logits size.
        assert s["label"].shape == (16, 16)
    assert len(seen) > 2


def test_scene_smaller_than_patch_gets_one_clipped_patch(tmp_path):
    make_folder(tmp_path, names=("a",), size=40, height=48, values=(3, 7, 100))
    ds = open_dataset("folder", tmp_path, INT3)
    s = GLNetSceneDataset(ds, SampleSpec(global_size=64, patch_size=64, with_patches=True, with_scene_label=True))[0]
    assert s["patches"].shape == (1, 3, 48, 40) and s["patch_labels"].shape == (1, 12, 10)
    assert s["boxes"].tolist() == [[0, 0, 48, 40]] and s["scene_size"].tolist() == [48, 40]
    np.testing.assert_array_equal(s["scene_label"].numpy(), s["patch_labels"][0].numpy())
    batch = collate_scenes([s, s])
    assert batch["image"].shape == (2, 3, 64, 64) and len(batch["patches"]) == 2


def test_shared_deepglobe_sample_reads_as_published(sample_file):
    root = sample_file("deepglobe")
    ds = open_dataset("deepglobe", root)
    assert len(ds) == 11 and "855" in ds.names and "266" in ds.names
    s = GLNetSceneDataset(ds.subset(["855"]), SampleSpec(global_size=128, patch_size=508))[0]
    assert s["image"].shape == (3, 128, 128) and s["image"].dtype.is_floating_point is False
    counts = np.bincount(s["label"].numpy().ravel(), minlength=7)
    assert counts.sum() == 32 * 32 and counts[0] < counts.sum()  # mostly real classes, not "unknown"


def test_collection_resolution_is_the_median_of_its_scenes(tmp_path, caplog):
    """A finer held-out scene listed first does not set the resolution a model records."""
    root = make_folder(tmp_path / "ds", names=("a_test", "b", "c"), size=64, n_classes=2)
    with rasterio.open(root / "images" / "a_test.tif") as src:
        pixels = src.read()
    write_geotiff(root / "images" / "a_test.tif", pixels, res=0.25)
    collection = open_dataset("folder", root, INRIA)
    assert collection.subset(["b", "c"]).gsd == pytest.approx(0.5) and not caplog.records
    assert collection.gsd == pytest.approx(0.5)  # median of 0.25, 0.5, 0.5
    assert "pixels range from 0.25 to 0.5 m" in caplog.text
    assert collection.subset(["a_test"]).gsd == pytest.approx(0.25)


def test_scenes_in_degrees_are_trained_on_as_segment_reads_them(tmp_path):
    """A folder dataset in EPSG:4326 at 60 N (pixels 0.558 m wide, 1.11 m tall on the
    ground): training reads each scene with square ground pixels and records their side as
    the imagery's GSD, so ``glgeo segment`` reads such a scene on the same working grid."""
    from types import SimpleNamespace

    from affine import Affine

    from glgeo.datasets import _FileScene, context_footprint
    from glgeo.io import inspect_scene, working_grid
    from glgeo.resolution import reading_scale

    at_60n = Affine(1e-5, 0, 10.0, 0, -1e-5, 60.005)
    root = tmp_path / "ds"
    rng = np.random.default_rng(0)
    write_geotiff(root / "images" / "a.tif", rng.integers(0, 255, (3, 200, 300), dtype=np.uint8), crs="EPSG:4326",
                  transform=at_60n)
    write_geotiff(root / "masks" / "a.tif", rng.integers(0, 3, (200, 300), dtype=np.uint8), crs="EPSG:4326",
                  transform=at_60n)
    collection = open_dataset("folder", root, INT3)
    assert collection.gsd == pytest.approx(1.114, rel=1e-3)  # the longer side: square pixels of that side
    spec = SampleSpec(global_size=64, patch_size=64, scale=0.5)
    with _FileScene(collection, collection.scene("a"), spec) as scene:
        assert (scene.height, scene.width) == (100, 75)  # 0.5 down, 0.25 across: 2.23 m square
    assert context_footprint(collection, ["a"], 0.5) == 100
    model = SimpleNamespace(gsd=collection.gsd / 0.5, scene_scale=0.5)
    info = inspect_scene(root / "images" / "a.tif")
    grid = working_grid(info, reading_scale(model, info))
    assert (grid.height, grid.width) == (100, 75)
