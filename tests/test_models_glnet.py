"""GLNet: every mode's outputs, the stages' parameters, and a generic test over every registered backbone."""

from __future__ import annotations

import pytest
import torch
from glgeo.errors import InputError
from glgeo.models import (
    MODES,
    GLNet,
    GLNetObjective,
    PatchBoxes,
    build_model,
    list_backbones,
)

from fixtures.networks import backward_through_every_mode, grid_boxes


@pytest.mark.parametrize("mode", MODES)
def test_output_shapes_every_mode(mode, tiny_inputs):
    image, patches, boxes = tiny_inputs
    model = build_model("resnet18", n_classes=5, mode=mode).eval()
    with torch.no_grad():
        out = model(image, patches, boxes)
    if mode in ("g2l", "bidirectional"):
        assert out.aggregated.shape == (4, 5, 16, 16)
        assert out.fmreg.ndim == 0
    else:
        assert out.aggregated is None and out.fmreg is None
    assert (out.local is None) == (mode == "global")
    assert (out.global_ is None) == (mode == "local")
    if out.global_ is not None:
        assert out.global_.shape == (1, 5, 16, 16)
    assert model.supported_modes()[-1] == mode


def test_runtime_mode_must_be_supported(tiny_inputs):
    model = build_model("resnet18", 2, "g2l")
    with pytest.raises(InputError, match="cannot run mode 'bidirectional'"):
        model(*tiny_inputs, mode="bidirectional")


def test_fmreg_gradients_reach_only_the_local_branch(tiny_inputs):
    model = build_model("resnet18", 3, "g2l")
    out = model(*tiny_inputs)
    out.fmreg.backward()
    assert all(p.grad is None or not p.grad.any() for p in model.global_branch.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.local_branch.parameters())


def _snapshot(model: GLNet) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_training_step_changes_only_that_stages_parameters(stage, tiny_inputs):
    image, patches, boxes = tiny_inputs
    model = build_model("resnet18", 3, "bidirectional")
    if stage == 3:
        model.start_stage3()
    model.train()
    model.set_stage(stage)
    before = _snapshot(model)
    opt = torch.optim.Adam(model.stage_parameters(stage), lr=1e-2)
    out = model(image, patches, boxes, mode={1: "global", 2: "g2l", 3: "bidirectional"}[stage])
    objective = GLNetObjective(stage)
    patch_labels, global_labels = torch.randint(0, 3, (4, 64, 64)), torch.randint(0, 3, (1, 64, 64))
    outputs = {"global": (out.global_, global_labels), "local": (out.local, patch_labels),
               "aggregated": (out.aggregated, patch_labels), "fmreg": (out.fmreg, None)}
    loss = sum(objective.term(name, *outputs[name]) for name in objective.terms)
    loss.backward()
    opt.step()
    after = model.state_dict()
    trained = {1: ("global_branch",), 2: ("local_branch", "aggregation"), 3: ("global_l2g", "aggregation")}[stage]
    changed = {k.split(".")[0] for k in before if not torch.equal(before[k], after[k])}
    assert changed == set(trained), changed


def test_stage_rejects_models_without_its_parts():
    with pytest.raises(InputError, match="stage 3"):
        build_model("resnet18", 2, "g2l").set_stage(3)


def test_aggregation_splits_into_local_and_global_shares():
    model = build_model("resnet18", 7, "bidirectional", pyramid_channels=32, segmentation_channels=16).eval()
    torch.nn.init.normal_(model.aggregation.bias)
    boxes = grid_boxes()
    local_ps3, global_ps3 = torch.randn(len(boxes), 64, 16, 16), torch.randn(1, 64, 24, 24)
    with torch.no_grad():
        whole = model.aggregate(local_ps3, global_ps3, boxes)
        parts = model.aggregate_local(local_ps3) + model.aggregate_global(global_ps3, boxes, (16, 16))
    torch.testing.assert_close(parts, whole, rtol=1e-5, atol=1e-5)
    with pytest.raises(InputError, match="no aggregation"):
        build_model("resnet18", 7, "global").aggregate_local(local_ps3)


@pytest.mark.parametrize("backbone", list_backbones())
def test_every_backbone_runs_forward_and_backward(backbone):
    model = build_model(backbone, 2, "bidirectional", pyramid_channels=32, segmentation_channels=16)
    boxes = PatchBoxes.from_pixels([0, 32], [0, 32], 64, 64, 96, 96)
    backward_through_every_mode(model, torch.rand(1, 3, 64, 64), torch.rand(2, 3, 64, 64), boxes)
    assert [n for n, p in model.named_parameters() if p.grad is None] == []
