"""Test-time augmentation (flips and quarter turns of the scene: global image and patches)."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import torch

from glgeo.errors import InputError
from glgeo.inference import InferenceSettings
from glgeo.models import build_model
from glgeo.models import PatchBoxes
from glgeo.models.checkpoint import Checkpoint, InputScaling
from glgeo.schemes import DEEPGLOBE
from glgeo.segmentation import segment
from glgeo.tta import TRANSFORMS, FlipRotateTTA, apply_transform, invert_transform
from fixtures.rasters import write_geotiff


def _model(mode="global"):
    torch.manual_seed(0)
    model = build_model("resnet18", 7, mode, 16, 8).eval()
    for module in model.modules():  # untrained statistics give near-uniform scores: sharpen them
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_var.fill_(0.05)
    return model


def test_transforms_are_the_eight_symmetries_and_invert():
    x = torch.arange(12.0).reshape(1, 1, 3, 4)
    seen = set()
    for hflip, k in TRANSFORMS:
        y = apply_transform(x, hflip, k)
        seen.add(tuple(y.flatten().tolist()))
        torch.testing.assert_close(invert_transform(y, hflip, k), x)
    assert len(TRANSFORMS) == 8 and len(seen) == 8


def test_tta_prediction_is_the_mean_probability_and_turns_with_the_image():
    model = _model()
    tta = FlipRotateTTA(model)
    image = torch.rand((1, 3, 64, 64))
    with torch.no_grad():
        out = tta.encode_global(image)
        plain = model.encode_global(image)
        expected = torch.stack([
            invert_transform(model.encode_global(apply_transform(image, h, k)).logits.softmax(1), h, k)
            for h, k in TRANSFORMS
        ]).mean(0)
        torch.testing.assert_close(out.logits.softmax(1), expected, atol=1e-4, rtol=1e-3)
        assert out.logits.shape == plain.logits.shape and torch.equal(out.ps3, plain.ps3)
        # averaged over every symmetry, the prediction of a turned image is the turned prediction
        turned = tta.encode_global(apply_transform(image, True, 1)).logits.softmax(1)
        torch.testing.assert_close(turned, apply_transform(expected, True, 1), atol=1e-4, rtol=1e-3)
    assert (plain.logits.softmax(1) - expected).abs().max() > 0.05  # an untrained net is not symmetric
    # G -> L needs every view's features; checked for global mode, only the mean logits are kept
    assert len(out.views) == 8
    assert tta.check_mode("global") == "global"
    with torch.no_grad():
        assert tta.encode_global(image).views == []


def _turned_boxes(tops, lefts, size, height, width, hflip, k) -> PatchBoxes:
    """The boxes of square patches as they lie in the scene flipped by ``hflip`` then turned
    ``k`` quarter turns (``torch.rot90``: pixel ``(r, c)`` goes to ``(W - 1 - c, r)``)."""
    turned = []
    for top, left in zip(tops, lefts):
        t, l, h, w = top, (width - left - size if hflip else left), height, width
        for _ in range(k):
            t, l, h, w = w - l - size, t, w, h
        turned.append((t, l))
    h, w = (height, width) if k % 2 == 0 else (width, height)
    return PatchBoxes.from_pixels([t for t, _ in turned], [l for _, l in turned], size, size, h, w, exact=True)


def test_g2l_tta_is_the_mean_over_the_turned_scenes():
    """In g2l mode each patch's eight predictions are those of the patch in the flipped and
    turned scene (turned patch, its box in the turned scene, the turned global image), turned
    back: the wrapper, which cuts each view's turned-back features at the untouched box, gives
    their mean probability."""
    model = _model("g2l")
    tta = FlipRotateTTA(model)
    image = torch.rand((1, 3, 64, 96))  # the global image of a 256 x 384 px scene: not square, so turns matter
    tops, lefts = [0, 37, 192], [0, 101, 320]
    patches = torch.rand((3, 3, 64, 64))
    boxes = PatchBoxes.from_pixels(tops, lefts, 64, 64, 256, 384, exact=True)
    with torch.no_grad():
        out = tta.g2l_logits(patches, boxes, tta.encode_global(image))
        expected = torch.stack([
            invert_transform(model.g2l_logits(
                apply_transform(patches, h, k), _turned_boxes(tops, lefts, 64, 256, 384, h, k),
                model.encode_global(apply_transform(image, h, k)),
            ).softmax(1), h, k)
            for h, k in TRANSFORMS
        ]).mean(0)
        plain = model.g2l_logits(patches, boxes, model.encode_global(image)).softmax(1)
    assert out.shape == plain.shape == (3, 7, 16, 16)
    # the same sums in another order (a turned crop's rows are the crop's columns), through
    # an untrained net whose sharpened BatchNorms amplify rounding: a few 1e-3 at most
    difference = (out.softmax(1) - expected).abs()
    assert difference.max() < 5e-3 and difference.mean() < 1e-5, (difference.max(), difference.mean())
    assert (plain - expected).abs().max() > 0.05  # an untrained net is not symmetric


def test_tta_in_segment_and_refused_for_bidirectional(tmp_path):
    rng = np.random.default_rng(0)
    scene = write_geotiff(tmp_path / "s.tif", rng.integers(0, 255, (3, 96, 128)).astype(np.uint8))
    settings = InferenceSettings(device="cpu", precision="fp32")
    for mode in ("global", "g2l"):
        ck = Checkpoint(_model(mode), DEEPGLOBE, InputScaling(), 64, 64, 3.0)
        segment(scene, tmp_path / "a.tif", model=ck, settings=settings, probabilities=tmp_path / "pa.tif", overwrite=True)
        segment(scene, tmp_path / "b.tif", model=ck, settings=settings, probabilities=tmp_path / "pb.tif", tta=True,
                overwrite=True)
        with rasterio.open(tmp_path / "pa.tif") as a, rasterio.open(tmp_path / "pb.tif") as b:
            pa, pb = a.read(), b.read()
        assert pa.shape == pb.shape and not np.array_equal(pa, pb), mode
    bidirectional = Checkpoint(_model("bidirectional"), DEEPGLOBE, InputScaling(), 64, 64, 3.0)
    with pytest.raises(InputError, match="global or g2l mode"):
        segment(scene, tmp_path / "c.tif", model=bidirectional, settings=settings, tta=True)
