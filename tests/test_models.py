"""GLNet network: shapes, sharing geometry, losses, stages, coarse-to-fine, checkpoints."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from glgeo.errors import CheckpointError, InputError, UnknownNameError
from glgeo.models import (
    MODES,
    FocalLoss,
    GLNet,
    GLNetConfig,
    L2GCanvas,
    PatchBoxes,
    build_model,
    coverage_map,
    crop_global,
    glnet_loss,
    import_released,
    list_backbones,
    load_checkpoint,
    patches_in_box,
    relaxed_foreground_box,
    save_checkpoint,
)
from glgeo.models.coarse_to_fine import scale_box
from glgeo.models.testing import random_released_state
from glgeo.models.heads import BranchFeatures
from glgeo.schemes import DEEPGLOBE, INRIA

torch.manual_seed(0)


def grid_boxes(scene: int = 96, patch: int = 64) -> PatchBoxes:
    tops = [0, scene - patch]
    return PatchBoxes.from_pixels(
        [t for t in tops for _ in tops], [l for _ in tops for l in tops], patch, patch, scene, scene
    )


@pytest.fixture(scope="module")
def tiny_inputs():
    boxes = grid_boxes()
    return torch.rand(1, 3, 64, 64), torch.rand(len(boxes), 3, 64, 64), boxes


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


def test_unknown_backbone_lists_valid_names():
    with pytest.raises(UnknownNameError, match="resnet18, resnet34, resnet50"):
        build_model("vgg16")


def _position_map(h: int, w: int) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    return torch.stack([ys, xs])[None]  # (1, 2, h, w): channel 0 = row, 1 = column


def test_g2l_crop_lines_up_with_patch_position():
    feature = _position_map(40, 60)
    # Scene 400 x 600: the feature grid has one cell per 10 x 10 scene pixels.
    boxes = PatchBoxes.from_pixels([0, 150, 270], [0, 200, 420], 130, 180, 400, 600)
    crops = crop_global(feature, boxes)
    assert crops.shape == (3, 2, 13, 18)
    for i, (top, left) in enumerate([(0, 0), (15, 20), (27, 42)]):
        assert crops[i, 0, 0, 0] == top and crops[i, 1, 0, 0] == left
        assert crops[i, 0, -1, 0] == top + 12 and crops[i, 1, 0, -1] == left + 17


def test_g2l_crop_of_last_patch_stays_inside_the_grid():
    feature = _position_map(16, 16)
    # round(0.7333 * 16) = 12 and round(0.2667 * 16) = 4 would end at row 16: inside.
    # round(0.7 * 15)=10 + round(0.3*15)=5 is fine; use a size where rounding overflows.
    boxes = PatchBoxes.from_pixels([99], [99], 101, 101, 200, 200)
    crop = crop_global(_position_map(15, 15), boxes)
    assert crop.shape[-2:] == (8, 8)
    assert crop[0, 0, -1, 0] == 14  # flush with the far edge, not past it


def _features(values: list[torch.Tensor]) -> BranchFeatures:
    return BranchFeatures(c=values[0:4], ps0=values[4:8], ps1=values[8:12], ps2=values[12:16], ps3=values[0], logits=values[0])


def test_l2g_canvas_puts_patch_features_in_their_footprint():
    sizes = [(20, 30)] * 16
    ctx = _features([torch.zeros(1, 3, *s) for s in sizes])
    canvas = L2GCanvas.like(ctx)
    # Scene 200 x 300, two non-overlapping patches with constant features 1 and 2.
    boxes = PatchBoxes.from_pixels([0, 100], [0, 150], 100, 150, 200, 300)
    local = _features([torch.stack([torch.full((3, 8, 8), 1.0), torch.full((3, 8, 8), 2.0)])] * 16)
    canvas.add(local, boxes)
    merged = canvas.normalized("footprint")[0][0, 0]
    assert torch.allclose(merged[:10, :15], torch.tensor(1.0))
    assert torch.allclose(merged[10:, 15:], torch.tensor(2.0))
    assert torch.all(merged[:10, 15:] == 0.0) and torch.all(merged[10:, :15] == 0.0)


def test_l2g_coverage_normalisation_is_exact_for_overlapping_patches():
    ctx = _features([torch.zeros(1, 2, 25, 25) for _ in range(16)])
    canvas = L2GCanvas.like(ctx)
    boxes = grid_boxes(scene=100, patch=60)  # 2 x 2 patches overlapping by 20 px
    values = torch.tensor([1.0, 2.0, 4.0, 8.0])
    local = _features([values[:, None, None, None].expand(4, 2, 15, 15).clone()] * 16)
    canvas.add(local, boxes)
    merged = canvas.normalized("footprint")[0][0, 0]
    # Corners see one patch; the centre (rows/cols 10-14) sees all four: their mean.
    corners = torch.stack([merged[0, 0], merged[0, -1], merged[-1, 0], merged[-1, -1]])
    assert torch.allclose(corners, values)
    assert torch.allclose(merged[12, 12], values.mean())
    assert torch.allclose(merged[0, 12], torch.tensor(1.5))


def test_released_coverage_equals_resized_full_resolution_template():
    boxes = PatchBoxes.from_pixels([0, 0, 37, 37], [0, 41, 0, 41], 64, 60, 101, 101)
    template = torch.zeros(1, 1, 101, 101)
    for t, l, h, w in boxes.pixels.tolist():
        template[..., t : t + h, l : l + w] += 1
    for size in [(26, 26), (13, 13), (7, 9), (101, 101), (150, 120)]:
        expected = F.interpolate(template, size=size, mode="bilinear", align_corners=False)[0, 0]
        assert torch.allclose(coverage_map(boxes, 101, 101, size), expected, atol=1e-5)


def test_fmreg_gradients_reach_only_the_local_branch(tiny_inputs):
    model = build_model("resnet18", 3, "g2l")
    out = model(*tiny_inputs)
    out.fmreg.backward()
    assert all(p.grad is None or not p.grad.any() for p in model.global_branch.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.local_branch.parameters())


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
    loss, parts = glnet_loss(out, torch.randint(0, 3, (4, 64, 64)), torch.randint(0, 3, (1, 64, 64)), stage)
    loss.backward()
    opt.step()
    after = model.state_dict()
    trained = {1: ("global_branch",), 2: ("local_branch", "aggregation"), 3: ("global_l2g", "aggregation")}[stage]
    changed = {k.split(".")[0] for k in before if not torch.equal(before[k], after[k])}
    assert changed == set(trained), (changed, parts)


def test_stage_rejects_models_without_its_parts():
    with pytest.raises(InputError, match="stage 3"):
        build_model("resnet18", 2, "g2l").set_stage(3)


def test_relaxed_box_reaches_requested_ratio_and_is_clipped():
    mask = np.zeros((100, 100), bool)
    mask[40:60, 45:55] = True  # 200 fg px, tight box is all foreground
    top, left, bottom, right = relaxed_foreground_box(mask, ratio=1.0)
    area = (bottom - top) * (right - left)
    fg = mask[top:bottom, left:right].sum()
    assert fg == 200 and fg <= area - fg  # ratio reached
    smaller = (bottom - top - 2) * (right - left - 2)
    assert fg > smaller - fg  # and not relaxed further than needed
    # Foreground at the corner: the box is clipped to the mask.
    corner = np.zeros((50, 80), bool)
    corner[:10, :30] = True
    box = relaxed_foreground_box(corner, ratio=1.0)
    assert box[0] == 0 and box[1] == 0 and box[2] <= 50 and box[3] <= 80
    assert relaxed_foreground_box(np.zeros((5, 5), bool)) is None
    # Foreground everywhere: the whole mask.
    assert relaxed_foreground_box(np.ones((7, 9), bool)) == (0, 0, 7, 9)


def test_patches_touching_the_box():
    patches = [(0, 0, 64, 64), (0, 50, 64, 64), (50, 0, 64, 64), (50, 50, 64, 64)]
    assert patches_in_box(patches, (0, 0, 10, 10)) == [0]
    assert patches_in_box(patches, (55, 55, 60, 60)) == [0, 1, 2, 3]
    assert patches_in_box(patches, None) == []
    assert scale_box((1, 2, 3, 4), (10, 10), (100, 50)) == (10, 10, 30, 20)


def _backward_through_every_mode(model: GLNet, image, patches, boxes) -> None:
    """Backpropagate the sum of every output of every mode the model can run, so each
    tensor a forward pass uses receives a gradient."""
    total = 0
    for mode in model.supported_modes():
        out = model(image, patches, boxes, mode=mode)
        total = total + sum(t.sum() for t in (out.aggregated, out.local, out.global_) if t is not None)
    total.backward()


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


@pytest.mark.parametrize("backbone", list_backbones())
def test_every_backbone_runs_forward_and_backward(backbone):
    model = build_model(backbone, 2, "bidirectional", pyramid_channels=32, segmentation_channels=16)
    boxes = PatchBoxes.from_pixels([0, 32], [0, 32], 64, 64, 96, 96)
    _backward_through_every_mode(model, torch.rand(1, 3, 64, 64), torch.rand(2, 3, 64, 64), boxes)
    assert [n for n, p in model.named_parameters() if p.grad is None] == []


@pytest.mark.parametrize("backbone", ["resnet18", "resnet50"])
def test_backbones_load_torchvision_weights_and_compute_the_same_features(backbone, tmp_path):
    torchvision = pytest.importorskip("torchvision", reason="torchvision is the reference here")
    from glgeo.models.backbones import Backbone

    reference = getattr(torchvision.models, backbone)(weights=None).eval()
    for m in reference.modules():  # non-trivial statistics, so BN layers matter
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    path = tmp_path / f"{backbone}.pth"
    torch.save(reference.state_dict(), path)
    ours = Backbone(backbone).eval()
    ours.load_torchvision_weights(path)
    assert list(ours.state_dict()) == [k for k in reference.state_dict() if not k.startswith("fc.")]
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        expected, y = [], reference.maxpool(reference.relu(reference.bn1(reference.conv1(x))))
        for layer in (reference.layer1, reference.layer2, reference.layer3, reference.layer4):
            y = layer(y)
            expected.append(y)
        for got, want, channels in zip(ours(x), expected, ours.out_channels):
            assert got.shape[1] == channels
            torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_backbone_rejects_a_file_of_another_architecture(tmp_path):
    from glgeo.models.backbones import Backbone

    path = tmp_path / "r18.pth"
    torch.save(Backbone("resnet18").state_dict(), path)
    with pytest.raises(CheckpointError, match="not a torchvision resnet50"):
        Backbone("resnet50").load_torchvision_weights(path)


def test_checkpoint_round_trip(tmp_path):
    model = build_model("resnet18", 2, "g2l", 32, 16).eval()
    path = save_checkpoint(tmp_path / "m.pt", model, INRIA, global_size=128, patch_size=96, focal_gamma=6.0, metadata={"note": "x"})
    ck = load_checkpoint(path)
    assert ck.model.config == model.config and ck.scheme == INRIA
    assert (ck.global_size, ck.patch_size, ck.focal_gamma, ck.metadata["note"]) == (128, 96, 6.0, "x")
    for k, v in model.state_dict().items():
        assert torch.equal(v, ck.model.state_dict()[k])
    half = load_checkpoint(save_checkpoint(tmp_path / "h.pt", model, INRIA, half=True))
    w = "local_branch.head.classifier.weight"
    assert torch.allclose(half.model.state_dict()[w], model.state_dict()[w], atol=1e-3)
    assert (tmp_path / "h.pt").stat().st_size < 0.6 * (tmp_path / "m.pt").stat().st_size


def test_checkpoint_errors(tmp_path):
    with pytest.raises(CheckpointError, match="zoo models"):
        load_checkpoint(tmp_path / "missing.pt")
    torch.save({"module.resnet_global.conv1.weight": torch.zeros(1)}, tmp_path / "released.pth")
    with pytest.raises(CheckpointError, match="import-glnet"):
        load_checkpoint(tmp_path / "released.pth")
    with pytest.raises(CheckpointError, match="2 classes"):
        save_checkpoint(tmp_path / "x.pt", build_model("resnet18", 7, "global", 8, 8), INRIA)


# ----------------------------------------------------------- released checkpoints
def released_state(keys_file, seed: int, n_class: int = 7) -> dict[str, torch.Tensor]:
    """A state dict shaped like the authors' files (see glgeo.models.testing)."""
    return random_released_state(keys_file, seed, n_class)


@pytest.fixture(scope="module")
def released_files(glnet_keys_file, tmp_path_factory):
    folder = tmp_path_factory.mktemp("released")
    paths = {}
    for seed, role in enumerate(("global", "g2l", "l2g")):
        paths[role] = folder / f"{role}.pth"
        torch.save(released_state(glnet_keys_file, seed), paths[role])
    return paths


@pytest.mark.parametrize("with_l2g", [False, True])
def test_released_checkpoints_convert_load_and_use_every_tensor(released_files, with_l2g, tmp_path):
    model = import_released(released_files["global"], released_files["g2l"], released_files["l2g"] if with_l2g else None, DEEPGLOBE)
    assert model.config.mode == ("bidirectional" if with_l2g else "g2l")
    # Saved and reloaded as a glgeo checkpoint: no missing or unexpected keys.
    ck = load_checkpoint(save_checkpoint(tmp_path / "imported.pt", model, DEEPGLOBE))
    missing, unexpected = ck.model.load_state_dict(model.state_dict(), strict=True)
    assert not missing and not unexpected
    # The forward pass uses every parameter.
    model.train()
    boxes = PatchBoxes.from_pixels([0, 0], [0, 32], 64, 64, 64, 96)
    _backward_through_every_mode(model, torch.rand(1, 3, 64, 64), torch.rand(2, 3, 64, 64), boxes)
    unused = [n for n, p in model.named_parameters() if p.grad is None]
    assert unused == []


@pytest.mark.parametrize("bidirectional", [False, True])
def test_imported_model_reproduces_the_released_computation(released_files, bidirectional):
    from released_reference import infer

    states = {
        role: {k.removeprefix("module."): v for k, v in torch.load(p, weights_only=True).items()}
        for role, p in released_files.items()
    }
    main = states["l2g"] if bidirectional else states["g2l"]
    model = import_released(released_files["global"], released_files["g2l"], released_files["l2g"] if bidirectional else None, DEEPGLOBE)
    scene = torch.rand(1, 3, 160, 160)
    tops = [0, 48, 96]
    with torch.no_grad():
        expected = infer(states["global"], main, scene, 64, 64, tops, tops, bidirectional)
        boxes = PatchBoxes.from_pixels([t for t in tops for _ in tops], [l for _ in tops for l in tops], 64, 64, 160, 160)
        patches = torch.cat([scene[:, :, t : t + 64, l : l + 64] for t, l in boxes.pixels[:, :2].tolist()])
        out = model(F.interpolate(scene, size=(64, 64), mode="bilinear", align_corners=False), patches, boxes)
    assert torch.allclose(out.aggregated, expected, rtol=1e-4, atol=1e-4 * expected.abs().max())


def test_released_import_errors_name_what_is_missing(released_files, glnet_keys_file, tmp_path):
    state = torch.load(released_files["g2l"], weights_only=True)
    del state["module.fpn_local.smooth.weight"]
    torch.save(state, tmp_path / "broken.pth")
    with pytest.raises(CheckpointError, match="fpn_local.smooth.weight"):
        import_released(released_files["global"], tmp_path / "broken.pth", None, DEEPGLOBE)
    with pytest.raises(CheckpointError, match="predicts 7 classes but scheme 'inria' has 2"):
        import_released(released_files["global"], released_files["g2l"], None, INRIA)


def test_the_stage_objective_is_defined_once(tiny_inputs):
    """glnet_loss and the trainer (GLNetTask) both sum GLNetObjective's terms; fmreg is the
    one feature_map_regularisation of the forward pass."""
    from glgeo.models import GLNetObjective
    from glgeo.models.losses import STAGE_TERMS, FocalLoss
    from glgeo.models.sharing import feature_map_regularisation
    from glgeo.training import GLNetTask

    image, patches, boxes = tiny_inputs
    model = build_model("resnet18", 3, "bidirectional").eval()
    torch.manual_seed(0)
    tp, tg = torch.randint(0, 3, (4, 64, 64)), torch.randint(0, 3, (1, 64, 64))
    with torch.no_grad():
        out = model(image, patches, boxes, mode="g2l")
        context = model.encode_global(image)
        local = model.encode_local(patches, boxes, context)
        assert torch.allclose(out.fmreg, feature_map_regularisation(local.ps3, context.ps3, boxes))
        focal = FocalLoss(2.0)
        total, parts = glnet_loss(out, tp, tg, 2, focal=focal, fmreg_weight=0.3)
        objective = GLNetObjective(2, focal, 0.3)
        by_terms = [objective.term("local", out.local, tp), objective.term("aggregated", out.aggregated, tp),
                    objective.term("fmreg", out.fmreg)]
        assert torch.allclose(total, sum(by_terms)) and parts["fmreg"] == pytest.approx(0.3 * float(out.fmreg))
    with pytest.raises(InputError, match="stage 1's objective has no 'local' term"):
        GLNetObjective(1).term("local", out.local, tp)
    for stage in (1, 2, 3):
        task = GLNetTask(build_model("resnet18", 2, "bidirectional"), stage, INRIA, lr=1e-3, focal_gamma=2.0, fmreg_weight=0.3)
        assert task.objective.terms == STAGE_TERMS[stage] and task.objective.focal.gamma == 2.0
        assert task.objective.fmreg_weight == 0.3 and not hasattr(task, "focal")
