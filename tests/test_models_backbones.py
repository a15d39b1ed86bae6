"""The backbone registry and the encoder contract every registered backbone meets."""

from __future__ import annotations

import pytest
import torch
from glgeo.errors import CheckpointError, InputError, UnknownNameError
from glgeo.models import (
    STRIDES,
    Backbone,
    build_backbone,
    build_model,
    list_backbones,
    register_backbone,
)

from fixtures.networks import backward_through_every_mode


def test_unknown_backbone_lists_valid_names():
    with pytest.raises(UnknownNameError, match="resnet18, resnet34, resnet50"):
        build_model("vgg16")


@pytest.mark.parametrize("backbone", ["resnet18", "resnet50"])
def test_backbones_load_torchvision_weights_and_compute_the_same_features(backbone, tmp_path):
    torchvision = pytest.importorskip("torchvision", reason="torchvision is the reference here")
    reference = getattr(torchvision.models, backbone)(weights=None).eval()
    for m in reference.modules():  # non-trivial statistics, so BN layers matter
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    path = tmp_path / f"{backbone}.pth"
    torch.save(reference.state_dict(), path)
    ours = build_backbone(backbone).eval()
    ours.load_pretrained(path)
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
    path = tmp_path / "r18.pth"
    torch.save(build_backbone("resnet18").state_dict(), path)
    with pytest.raises(CheckpointError, match="not a torchvision resnet50"):
        build_backbone("resnet50").load_pretrained(path)
    # a torch file of something else, and a file that is no torch file: one error each, not AttributeError
    torch.save([1, 2], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="holds a list, not a state dict of resnet18 weights"):
        build_backbone("resnet18").load_pretrained(tmp_path / "list.pth")
    (tmp_path / "junk.pth").write_text("junk")
    with pytest.raises(CheckpointError, match="cannot read .*junk.pth as torch weights"):
        build_backbone("resnet18").load_pretrained(tmp_path / "junk.pth")


@pytest.mark.parametrize("backbone", list_backbones())
def test_every_backbone_meets_the_encoder_contract(backbone):
    """Out channels and strides as declared, and every (conv, norm) pair it names folds
    exactly: what the heads, the sharing code and deploy rely on."""
    from glgeo.models.deploy import inference_copy

    encoder = build_backbone(backbone).eval()
    assert isinstance(encoder, Backbone) and encoder.name == backbone and encoder.strides == STRIDES
    pairs = list(encoder.conv_norm_pairs())
    for parent, conv, norm in pairs:
        conv, norm = getattr(parent, conv), getattr(parent, norm)
        assert isinstance(conv, torch.nn.Conv2d) and isinstance(norm, torch.nn.BatchNorm2d)
        assert conv.out_channels == norm.num_features
        norm.running_mean.uniform_(-0.2, 0.2)
        norm.running_var.uniform_(0.5, 2.0)
    x = torch.rand(1, 3, 64, 64)
    folded = inference_copy(encoder)
    n_norms = sum(isinstance(m, torch.nn.BatchNorm2d) for m in encoder.modules())
    assert len(pairs) == n_norms and not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    with torch.no_grad():
        features, folded_features = encoder(x), folded(x)
    assert [f.shape[1] for f in features] == list(encoder.out_channels)
    assert [64 // f.shape[-1] for f in features] == list(STRIDES)
    for got, want in zip(folded_features, features):  # float32 rounding grows with depth
        torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-4 * float(want.abs().max()))


class TinyEncoder(Backbone):
    """The smallest encoder that meets the contract: one strided conv + BatchNorm per level."""

    def __init__(self) -> None:
        super().__init__()
        self.name, self.out_channels = "tiny", (4, 8, 8, 8)
        self.stem = torch.nn.Conv2d(3, 4, 3, stride=4, padding=1, bias=False)
        self.stem_bn = torch.nn.BatchNorm2d(4)
        self.down = torch.nn.ModuleList(torch.nn.Conv2d(c, 8, 3, stride=2, padding=1) for c in (4, 8, 8))

    def forward(self, x):
        features = [self.stem_bn(self.stem(x))]
        for conv in self.down:
            features.append(conv(features[-1]))
        return features

    def conv_norm_pairs(self):
        yield self, "stem", "stem_bn"


def test_a_registered_encoder_builds_a_glnet_that_trains_and_folds(monkeypatch, tiny_inputs):
    from glgeo.models import backbones
    from glgeo.models.deploy import inference_copy

    monkeypatch.setattr(backbones, "_BACKBONES", dict(backbones._BACKBONES))
    register_backbone("tiny")(TinyEncoder)
    assert "tiny" in list_backbones()
    with pytest.raises(InputError, match="'tiny' is already registered"):
        register_backbone("tiny")(TinyEncoder)
    model = build_model("tiny", 3, "bidirectional", pyramid_channels=8, segmentation_channels=4)
    backward_through_every_mode(model, *tiny_inputs)
    assert [n for n, p in model.named_parameters() if p.grad is None] == []
    model.eval()
    folded = inference_copy(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    with torch.no_grad():
        torch.testing.assert_close(folded(*tiny_inputs).aggregated, model(*tiny_inputs).aggregated, rtol=1e-4, atol=1e-4)
    with pytest.raises(InputError, match="'tiny' cannot load pretrained weights"):
        build_backbone("tiny").load_pretrained("weights.pth")


def test_a_registered_function_that_breaks_the_contract_is_refused(monkeypatch):
    from glgeo.errors import InternalError
    from glgeo.models import backbones

    monkeypatch.setattr(backbones, "_BACKBONES", dict(backbones._BACKBONES))
    register_backbone("not_a_backbone")(lambda: torch.nn.Conv2d(3, 8, 3))
    with pytest.raises(InternalError, match="'not_a_backbone' must be a Backbone"):
        build_backbone("not_a_backbone")
