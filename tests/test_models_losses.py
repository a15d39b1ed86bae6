"""The focal loss and each stage's objective."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from glgeo.errors import InputError
from glgeo.models import (
    FocalLoss,
    GLNetObjective,
    build_model,
)
from glgeo.schemes import INRIA


def test_focal_loss_matches_cross_entropy_at_gamma_zero_and_down_weights_easy_pixels():
    logits = torch.randn(2, 4, 5, 5)
    target = torch.randint(0, 4, (2, 5, 5))
    assert torch.allclose(FocalLoss(0.0)(logits, target), F.cross_entropy(logits, target), atol=1e-5)
    assert FocalLoss(3.0)(logits, target) < FocalLoss(0.0)(logits, target)
    ignored = target.clone()
    ignored[0] = 255
    assert torch.allclose(
        FocalLoss(0.0, ignore_index=255)(logits, ignored), F.cross_entropy(logits[1:], target[1:]), atol=1e-5
    )


def test_class_weights_multiply_each_class_pixels_loss():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 6, 6)
    target = torch.randint(0, 3, (2, 6, 6))
    target[0, 0] = 255
    weights = torch.tensor([0.5, 2.0, 1.0])
    got = FocalLoss(0.0, ignore_index=255, class_weights=weights.tolist())(logits, target)
    valid = target != 255
    per_pixel = F.cross_entropy(logits, torch.where(valid, target, 0), reduction="none")
    expected = (per_pixel * weights[torch.where(valid, target, 0)])[valid].sum() / valid.sum()
    assert torch.allclose(got, expected, atol=1e-5)
    assert torch.allclose(FocalLoss(2.0, class_weights=[1.0, 1.0, 1.0])(logits, target.clamp(max=2)),
                          FocalLoss(2.0)(logits, target.clamp(max=2)))
    with pytest.raises(InputError, match="finite numbers >= 0"):
        FocalLoss(class_weights=[1.0, -1.0])
    with pytest.raises(ValueError, match="2 class weights for logits of 3 classes"):
        FocalLoss(class_weights=[1.0, 1.0])(logits, target.clamp(max=2))


def test_class_loss_weights_from_pixel_shares():
    from glgeo.models.losses import CLASS_WEIGHT_CAP, class_loss_weights

    shares = [0.6, 0.3, 0.1, 0.0]
    assert class_loss_weights(shares, 0.0) == pytest.approx([1.0, 1.0, 1.0, 1.0])
    half = class_loss_weights(shares, 0.5)
    full = class_loss_weights(shares, 1.0)
    # a pixel's mean weight stays 1, rarer classes weigh more, a class without pixels gets 1
    for w in (half, full):
        assert sum(s * v for s, v in zip(shares, w)) == pytest.approx(1.0)
        assert w[0] < w[1] < w[2] and w[3] == 1.0
    # power 1: every class the same total weight
    assert 0.6 * full[0] == pytest.approx(0.3 * full[1]) == pytest.approx(0.1 * full[2])
    # a class of a handful of pixels is capped
    capped = class_loss_weights([0.999, 0.001], 1.0)
    assert capped[1] / capped[0] == pytest.approx(CLASS_WEIGHT_CAP)
    with pytest.raises(InputError, match=">= 0"):
        class_loss_weights(shares, -0.5)
    with pytest.raises(InputError, match="labelled pixels"):
        class_loss_weights([0.0, 0.0], 1.0)


def test_the_stage_objective_is_defined_once(tiny_inputs):
    """The trainer (GLNetTask) sums GLNetObjective's terms; fmreg is the one
    feature_map_regularisation of the forward pass."""
    from glgeo.models.losses import STAGE_TERMS, FocalLoss
    from glgeo.models.sharing import feature_map_regularisation
    from glgeo.training import GLNetTask

    image, patches, boxes = tiny_inputs
    model = build_model("resnet18", 3, "bidirectional").eval()
    torch.manual_seed(0)
    tp = torch.randint(0, 3, (4, 64, 64))
    with torch.no_grad():
        out = model(image, patches, boxes, mode="g2l")
        context = model.encode_global(image)
        local = model.encode_local(patches, boxes, context)
        assert torch.allclose(out.fmreg, feature_map_regularisation(local.ps3, context.ps3, boxes))
        focal = FocalLoss(2.0)
        objective = GLNetObjective(2, focal, 0.3)
        assert float(objective.term("fmreg", out.fmreg)) == pytest.approx(0.3 * float(out.fmreg))
        assert torch.equal(objective.term("local", out.local, tp), focal(out.local, tp))
    with pytest.raises(InputError, match="stage 1's objective has no 'local' term"):
        GLNetObjective(1).term("local", out.local, tp)
    for stage in (1, 2, 3):
        task = GLNetTask(build_model("resnet18", 2, "bidirectional"), stage, INRIA, lr=1e-3, focal_gamma=2.0, fmreg_weight=0.3)
        assert task.objective.terms == STAGE_TERMS[stage] and task.objective.focal.gamma == 2.0
        assert task.objective.fmreg_weight == 0.3 and not hasattr(task, "focal")
