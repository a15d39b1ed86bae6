"""glgeo checkpoints, and the authors' released checkpoints converted and checked against an
independent re-statement of their computation."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F
from glgeo.errors import CheckpointError
from glgeo.models import (
    PatchBoxes,
    build_model,
    import_released,
    load_checkpoint,
    save_checkpoint,
)
from glgeo.models.testing import random_released_state
from glgeo.schemes import DEEPGLOBE, INRIA

from fixtures.networks import backward_through_every_mode


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


def test_a_checkpoint_keeps_the_input_scaling_it_was_trained_with(tmp_path):
    """A 12-bit model read back with the default 0-255 scaling would see its inputs 16 times
    too bright: the scaling travels in the file."""
    from glgeo.models import InputScaling

    model = build_model("resnet18", 2, "global", 32, 16).eval()
    twelve_bit = InputScaling(0.0, 4095.0)
    ck = load_checkpoint(save_checkpoint(tmp_path / "m.pt", model, INRIA, twelve_bit))
    assert ck.input_scaling == twelve_bit and ck.input_scaling != InputScaling()


def test_checkpoint_errors(tmp_path):
    with pytest.raises(CheckpointError, match="zoo models"):
        load_checkpoint(tmp_path / "missing.pt")
    torch.save({"module.resnet_global.conv1.weight": torch.zeros(1)}, tmp_path / "released.pth")
    with pytest.raises(CheckpointError, match="import-glnet"):
        load_checkpoint(tmp_path / "released.pth")
    torch.save({"state_dict": {"module.resnet_global.conv1.weight": torch.zeros(1)}}, tmp_path / "wrapped.pth")
    with pytest.raises(CheckpointError, match="import-glnet"):  # wrapped as import-glnet accepts it
        load_checkpoint(tmp_path / "wrapped.pth")
    with pytest.raises(CheckpointError, match="2 classes"):
        save_checkpoint(tmp_path / "x.pt", build_model("resnet18", 7, "global", 8, 8), INRIA)
    # sizes a model cannot run with (import-glnet --global-size 0 wrote such a file)
    with pytest.raises(CheckpointError, match="global_size must be a whole number of pixels, 8 or more, got 0"):
        save_checkpoint(tmp_path / "x.pt", build_model("resnet18", 2, "global", 8, 8), INRIA, global_size=0)
    assert not (tmp_path / "x.pt").exists()


def _break_config(c):
    c["config"]["n_classes"] = 5


def _reshape_first_conv(c):
    c["state_dict"]["global_branch.backbone.conv1.weight"] = torch.zeros(3, 3, 3, 3)


def _integer_first_conv(c):
    c["state_dict"]["global_branch.backbone.conv1.weight"] = torch.zeros(64, 3, 7, 7, dtype=torch.int64)


def _more_classes_in_scheme(c):
    c["scheme"] = DEEPGLOBE.to_dict()


#: A glgeo checkpoint's contents made inconsistent, and what the error says of each.
DAMAGE = {
    "classes": (_break_config, r"its weights do not fit its architecture \(resnet18, 5 classes, mode global, heads"
                               r" 8/8\): size mismatch for global_branch\.head\.classifier\.weight: \(2, 32, 3, 3\) in"
                               r" the file, \(5, 32, 3, 3\) in the model \(and 1 more tensors\)"),
    "no config": (lambda c: c.pop("config"), r"it has no architecture \('config'\)"),
    "no scheme": (lambda c: c.pop("scheme"), r"it has no class scheme \('scheme'\)"),
    "no weights": (lambda c: c.pop("state_dict"), r"it has no weights \('state_dict'\)"),
    "unknown field": (lambda c: c["config"].update(extra=1), "its architecture has fields this glgeo does not know: 'extra'"),
    "global size": (lambda c: c.update(global_size="abc"),
                    "its global image size is 'abc', not a whole number of pixels, 8 or more"),
    "shape": (_reshape_first_conv, r"size mismatch for global_branch\.backbone\.conv1\.weight: \(3, 3, 3, 3\) in the"
                                   r" file, \(64, 3, 7, 7\) in the model;"),
    "class count type": (lambda c: c["config"].update(n_classes="two"), "its architecture's class count is 'two', not a whole"),
    "backbone": (lambda c: c["config"].update(backbone="nosuch"), "its architecture is refused: unknown backbone 'nosuch'"),
    "config type": (lambda c: c.update(config=[1]), r"its architecture \('config'\) is a list, not a dict"),
    "weights type": (lambda c: c.update(state_dict=[1]), r"its weights \('state_dict'\) is a list, not a dict"),
    "weight type": (lambda c: c["state_dict"].update(extra=[1]), "hold 1 entries that are no named tensors, e.g. extra"),
    "weight dtype": (_integer_first_conv, "its weights do not load into its architecture's model: While copying the"
                                          ' parameter named "global_branch.backbone.conv1.weight"'),
    "missing weight": (lambda c: c["state_dict"].pop("global_branch.backbone.conv1.weight"),
                       "1 weights missing, e.g. global_branch.backbone.conv1.weight"),
    "scaling": (lambda c: c.update(input_scaling={"min": 5, "max": 1}), "its input scaling is refused: input scaling needs max > min"),
    "scheme": (lambda c: c.update(scheme={"name": "x"}), "its class scheme is refused: class scheme description is incomplete"),
    "scheme classes": (_more_classes_in_scheme, "its class scheme 'deepglobe' has 7 classes but its model predicts 2"),
    "gamma": (lambda c: c.update(focal_gamma=None), r"its focal gamma is None, not a number"),
    "metadata": (lambda c: c.update(metadata=[1]), r"its metadata \('metadata'\) is a list, not a dict"),
    "version": (lambda c: c.update(format_version="x"), "its format version .* is 'x', not a whole number"),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_an_inconsistent_checkpoint_is_one_error_naming_the_file_and_what_is_wrong(tmp_path, damage):
    """A file with glgeo's format whose contents do not fit together raised KeyError,
    TypeError, ValueError or torch's many-line RuntimeError from inside load_checkpoint."""
    change, expected = DAMAGE[damage]
    good = save_checkpoint(tmp_path / "good.pt", build_model("resnet18", 2, "global", 8, 8), INRIA)
    payload = torch.load(good, weights_only=True)
    change(payload)
    bad = tmp_path / "bad.pt"
    torch.save(payload, bad)
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(bad)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"checkpoint {str(bad)!r} is inconsistent: ")
    assert re.search(expected, message), message
    assert message.endswith("; the file is damaged or from another glgeo version: copy it again, or write it again"
                            " with glgeo train or glgeo import-glnet")


@pytest.fixture(scope="module")
def released_files(glnet_keys_file, tmp_path_factory):
    folder = tmp_path_factory.mktemp("released")
    paths = {}
    for seed, role in enumerate(("global", "g2l", "l2g")):
        paths[role] = folder / f"{role}.pth"
        torch.save(random_released_state(glnet_keys_file, seed), paths[role])
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
    backward_through_every_mode(model, torch.rand(1, 3, 64, 64), torch.rand(2, 3, 64, 64), boxes)
    unused = [n for n, p in model.named_parameters() if p.grad is None]
    assert unused == []


@pytest.mark.parametrize("bidirectional", [False, True])
def test_imported_model_reproduces_the_released_computation(released_files, bidirectional):
    from fixtures.released_reference import infer

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


def test_files_that_are_no_checkpoint_say_so_in_words(tmp_path):
    """torch's own messages for a text or an empty file are about mmap and zip archives."""
    from glgeo.models.checkpoint import _read_released

    text, empty = tmp_path / "notes.tif", tmp_path / "empty.pth"
    text.write_text("hello")
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"notes.tif': it is not a PyTorch file \(torch.save\); give a glgeo"):
        load_checkpoint(text)
    with pytest.raises(CheckpointError, match="empty.pth': the file is empty; give the .pth files of the released"):
        _read_released(empty)
    # a copy cut short: torch's message is about a zip archive's central directory and miniz
    whole = tmp_path / "whole.pt"
    torch.save({"weights": torch.zeros(1000)}, whole)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(whole.read_bytes()[:2000])
    with pytest.raises(CheckpointError, match=r"cut.pt': it is incomplete or damaged \(2,000 bytes, the end of its"
                                              r" archive missing\): copy or download it again"):
        load_checkpoint(cut)
