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
