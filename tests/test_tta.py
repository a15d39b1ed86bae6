"""Test-time augmentation (flips and quarter turns of the global image)."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import torch

from glgeo.errors import InputError
from glgeo.inference import InferenceSettings
from glgeo.models import build_model
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


def test_tta_in_segment_global_mode_and_refused_with_a_local_branch(tmp_path):
    rng = np.random.default_rng(0)
    scene = write_geotiff(tmp_path / "s.tif", rng.integers(0, 255, (3, 96, 128)).astype(np.uint8))
    ck = Checkpoint(_model(), DEEPGLOBE, InputScaling(), 64, 64, 3.0)
    settings = InferenceSettings(device="cpu", precision="fp32")
    segment(scene, tmp_path / "a.tif", model=ck, settings=settings, probabilities=tmp_path / "pa.tif")
    segment(scene, tmp_path / "b.tif", model=ck, settings=settings, probabilities=tmp_path / "pb.tif", tta=True)
    with rasterio.open(tmp_path / "pa.tif") as a, rasterio.open(tmp_path / "pb.tif") as b:
        pa, pb = a.read(), b.read()
    assert pa.shape == pb.shape and not np.array_equal(pa, pb)
    g2l = Checkpoint(_model("g2l"), DEEPGLOBE, InputScaling(), 64, 64, 3.0)
    with pytest.raises(InputError, match="global mode only"):
        segment(scene, tmp_path / "c.tif", model=g2l, settings=settings, tta=True)
