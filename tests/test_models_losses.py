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


def test_cut_consistency_compares_each_view_with_its_cut_on_the_shared_ground():
    from glgeo.models.losses import cut_consistency

    torch.manual_seed(0)
    views = torch.randn(2, 4, 16, 16)
    boxes = [(2, 4, 8, 8), (0, 0, 16, 16)]
    # cuts that see exactly what their views saw on the box: no disagreement
    cuts = torch.cat([F.interpolate(views[i : i + 1, :, t : t + h, l : l + w], size=(16, 16), mode="bilinear",
                                    align_corners=False) for i, (t, l, h, w) in enumerate(boxes)])
    assert float(cut_consistency(views, cuts, boxes)) == pytest.approx(0.0, abs=1e-6)
    # the wrong box is a disagreement; the divergence is symmetric and > 0
    moved = [(0, 0, 8, 8), boxes[1]]
    wrong = cut_consistency(views, cuts, moved)
    assert float(wrong) > 0.01
    # symmetric: the second view and cut swapped give the same value
    a = cut_consistency(views[1:], cuts[1:] * 2, boxes[1:])
    b = cut_consistency(cuts[1:] * 2, views[1:], boxes[1:])
    torch.testing.assert_close(a, b)
    # only valid pixels count; gradients reach both outputs
    valid = torch.zeros(2, 16, 16, dtype=torch.bool)
    assert float(cut_consistency(views, cuts + torch.randn_like(cuts), boxes, valid)) == 0.0
    views.requires_grad_(True)
    cuts = cuts.clone().requires_grad_(True)
    cut_consistency(views, cuts + 1.0 * torch.randn_like(cuts), boxes).backward()
    assert views.grad.abs().sum() > 0 and cuts.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="boxes"):
        cut_consistency(views, cuts, boxes[:1])


def test_cut_consistency_reads_cuts_of_a_mosaic_of_views():
    from glgeo.models.losses import cut_consistency, mosaic_of

    torch.manual_seed(0)
    views = torch.randn(9, 3, 8, 8)
    source = tuple(range(9))
    mosaic = mosaic_of(views, source)
    assert mosaic.shape == (3, 24, 24) and torch.equal(mosaic[:, 8:16, 16:24], views[5])
    box = (4, 6, 8, 10)  # straddles four views
    cut = F.interpolate(mosaic[None, :, 4:12, 6:16], size=(8, 8), mode="bilinear", align_corners=False)
    assert float(cut_consistency(views, cut, [box], sources=[source])) == pytest.approx(0.0, abs=1e-6)
    assert float(cut_consistency(views, cut, [(0, 0, 8, 10)], sources=[source])) > 0.01
    with pytest.raises(ValueError, match="nine"):
        mosaic_of(views, (0, 1))


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


def test_lovasz_softmax_is_one_minus_the_mean_iou_of_present_classes_on_hard_predictions():
    """At probabilities of exactly 0 and 1 the Lovász extension is the Jaccard loss itself:
    the mean over the classes present in the target of 1 - IoU; ignored pixels do not count;
    a perfect answer costs nothing."""
    from glgeo.models.losses import lovasz_softmax

    torch.manual_seed(0)
    target = torch.randint(0, 3, (2, 8, 8))
    target[target == 2] = 1  # class 2 is absent from the target
    target[0, :2] = 255
    predicted = torch.randint(0, 3, (2, 8, 8))
    logits = F.one_hot(predicted, 3).permute(0, 3, 1, 2).float() * 1e4
    valid = target != 255
    ious = []
    for c in (0, 1):
        p, t = (predicted == c) & valid, (target == c) & valid
        ious.append((p & t).sum() / (p | t).sum())
    expected = 1 - torch.stack(ious).float().mean()
    assert torch.allclose(lovasz_softmax(logits, target, ignore_index=255), expected, atol=1e-5)
    perfect = F.one_hot(torch.where(valid, target, 0), 3).permute(0, 3, 1, 2).float() * 1e4
    assert float(lovasz_softmax(perfect, target, ignore_index=255)) == pytest.approx(0.0, abs=1e-6)
    assert float(lovasz_softmax(logits, torch.full_like(target, 255), ignore_index=255)) == 0.0


def test_the_lovasz_term_adds_to_the_focal_loss_and_reaches_the_logits():
    from glgeo.models.losses import SegmentationLoss, lovasz_softmax

    torch.manual_seed(1)
    logits = torch.randn(2, 2, 6, 6, requires_grad=True)
    target = torch.randint(0, 2, (2, 6, 6))
    focal = FocalLoss(3.0, ignore_index=255)
    loss = SegmentationLoss(focal, 0.5)(logits, target)
    assert torch.allclose(loss, focal(logits, target) + 0.5 * lovasz_softmax(logits, target, 255))
    assert torch.equal(SegmentationLoss(focal, 0.0)(logits, target), focal(logits, target))
    loss.backward()
    assert logits.grad is not None and bool(logits.grad.abs().sum() > 0)
    with pytest.raises(InputError, match="Lovász term's weight must be >= 0"):
        SegmentationLoss(focal, -1.0)
