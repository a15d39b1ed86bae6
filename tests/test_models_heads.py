"""FPN heads: the speed paths give the same results as the plain computation they replace."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import glgeo.models.heads as heads
from glgeo.models import PatchBoxes, build_model
from glgeo.models.heads import FPNHead, upsampled_conv


def _plain(exts, chains, weight, size):
    maps = []
    for e, chain in zip(exts, chains):
        for s in chain:
            e = F.interpolate(e, size=s, mode="bilinear", align_corners=False)
        maps.append(F.interpolate(e, size=size, mode="bilinear", align_corners=False))
    return F.conv2d(torch.cat(maps, dim=1), weight, padding=weight.shape[-1] // 2)


@pytest.mark.parametrize("k", [1, 3])
def test_upsampled_conv_equals_conv_of_resized_maps(k):
    torch.manual_seed(0)
    exts = [torch.randn(2, 4, 5, 7), torch.randn(2, 3, 3, 4)]
    chains = [[], [(9, 11)]]
    weight = torch.randn(6, 7, k, k)
    expected = _plain(exts, chains, weight, (23, 29))
    got = upsampled_conv(exts, chains, weight, (23, 29))
    assert got.shape == expected.shape
    assert torch.allclose(got, expected, atol=1e-4, rtol=1e-4)


def test_shared_head_low_res_path_matches_concatenation(monkeypatch):
    torch.manual_seed(0)
    head = FPNHead((8, 16, 32, 64), n_classes=3, pyramid_channels=8, segmentation_channels=4, shared=True).eval()
    for m in head.modules():
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight)
    sizes = [64, 32, 16, 8]
    c = [torch.randn(2, ch, s, s) for ch, s in zip((8, 16, 32, 64), sizes)]
    ext_sizes = [8, 4, 2, 1]  # crops 8x smaller per side: the low-res path is used
    e_c = [torch.randn(2, ch, s, s) for ch, s in zip((8, 16, 32, 64), ext_sizes)]
    e_p = [torch.randn(2, ch, s, s) for ch, s in zip((8, 8, 8, 8), reversed(ext_sizes))]
    e_s = [torch.randn(2, 4, s, s) for s in reversed(ext_sizes)]
    ext = [*e_c, *e_p, *e_p, *e_s]
    with torch.no_grad():
        fast = head(c, ext)
        assert heads._worth_low_res(ext[0], (64, 64))
        monkeypatch.setattr(heads, "_worth_low_res", lambda e, s: False)
        plain = head(c, ext)
    assert torch.allclose(fast.ps3, plain.ps3, atol=1e-4, rtol=1e-4)
    assert torch.allclose(fast.logits, plain.logits, atol=1e-4, rtol=1e-4)
    # the weight cache follows the weights: changing them changes the output
    with torch.no_grad():
        head.fuse.weight.mul_(2)
        monkeypatch.setattr(heads, "_worth_low_res", lambda e, s: 4 * e.shape[-2] * e.shape[-1] <= s[0] * s[1])
        doubled = head(c, ext)
    assert not torch.allclose(doubled.ps3, fast.ps3)


def test_low_res_path_keeps_gradients_for_training():
    torch.manual_seed(0)
    model = build_model("resnet18", n_classes=2, mode="g2l", pyramid_channels=8, segmentation_channels=4)
    boxes = PatchBoxes.from_pixels([0], [0], 64, 64, 256, 256)
    out = model(torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64), boxes)
    out.aggregated.sum().backward()
    assert model.local_branch.head.fuse.weight.grad is not None
    assert model.local_branch.head.fuse.weight.grad.abs().sum() > 0
