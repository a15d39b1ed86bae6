"""The inference copy: BatchNorms folded exactly, weights in the run's dtype, the original untouched."""

from __future__ import annotations

import pytest
import torch
from glgeo.models import (
    build_model,
)


@pytest.mark.parametrize("backbone", ["resnet18", "resnet50"])
def test_inference_copy_folds_batchnorm_exactly_and_leaves_the_model_alone(backbone, tiny_inputs):
    from glgeo.models.deploy import inference_copy

    model = build_model(backbone, 7, "bidirectional", pyramid_channels=32, segmentation_channels=16).eval()
    for m in model.modules():  # non-trivial statistics, so folding has something to do
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    copy = inference_copy(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in copy.modules())
    assert not any(p.requires_grad for p in copy.parameters())
    global_image, patches, boxes = tiny_inputs
    with torch.no_grad():
        want, got = model(global_image, patches, boxes), copy(global_image, patches, boxes)
    torch.testing.assert_close(got.aggregated, want.aggregated, rtol=1e-4, atol=1e-4)
    assert model.state_dict().keys() == before.keys()
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # untouched
    half = inference_copy(model, torch.bfloat16, channels_last=True)
    assert {p.dtype for p in half.parameters()} == {torch.bfloat16}
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in half.parameters() if p.dim() == 4)
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    with pytest.raises(RuntimeError, match="inference copy"):
        copy.train()
    model.train()  # the original still trains
