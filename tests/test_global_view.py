"""A context window's global view: one ground resolution (``fixed``), a mirrored margin, and
G->L contexts cut at the patches' exact places."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import rasterio
import torch
import torch.nn.functional as F
from rasterio.windows import Window

from glgeo.errors import InputError
from glgeo.inference import GLOBAL_ZOOM, InferenceSettings, StreamingSegmenter, default_global_margin
from glgeo.models import PatchBoxes, crop_global
from glgeo.models.heads import crop_margin
from glgeo.resolution import coarseness


class _Net(torch.nn.Module):
    """The least a model needs for the engine's constructor (g2l, two classes)."""

    def __init__(self, mode: str = "g2l") -> None:
        super().__init__()
        self.register_buffer("scale", torch.tensor(1.0))
        self.config = SimpleNamespace(n_classes=2, mode=mode, backbone="none")
        self.mode = mode

    def check_mode(self, mode):
        return mode or self.mode


def _ramp(height: int, width: int) -> torch.Tensor:
    """A (1, 2, H, W) map linear in rows (channel 0) and columns (channel 1): bilinear
    sampling reads it exactly anywhere between cell centres."""
    rows, cols = torch.meshgrid(torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32), indexing="ij")
    return torch.stack([rows, cols])[None]


def test_exact_crops_follow_the_ground_not_the_patch_grid():
    feature = _ramp(64, 64)  # a 256 px scene at 1/4
    for top, left in [(40, 88), (41, 89), (43, 90), (61, 120)]:
        exact = crop_global(feature, PatchBoxes.from_pixels([top], [left], 64, 64, 256, 256, exact=True))[0]
        # cell centres spanning the box exactly: scene px top + (i + 0.5) * 64 / 16 on the 1/4 grid
        expected_rows = (top + (torch.arange(16) + 0.5) * 4) / 4 - 0.5
        expected_cols = (left + (torch.arange(16) + 0.5) * 4) / 4 - 0.5
        torch.testing.assert_close(exact[0, :, 0], expected_rows)
        torch.testing.assert_close(exact[1, 0], expected_cols)
        cells = crop_global(feature, PatchBoxes.from_pixels([top], [left], 64, 64, 256, 256))[0]
        assert cells.shape == exact.shape
        if top % 4 == 0 and left % 4 == 0:  # a box on whole cells: both crops are the same
            torch.testing.assert_close(cells, exact)
        else:  # the released crop snaps to whole cells
            assert not torch.allclose(cells, exact)


def test_exact_crops_beyond_the_scene_read_the_map_mirrored():
    feature = torch.randn(1, 3, 16, 16)
    inside = PatchBoxes.from_pixels([8], [8], 32, 32, 64, 64, beyond=True, exact=True)
    torch.testing.assert_close(crop_global(feature, inside), crop_global(feature, PatchBoxes.from_pixels([8], [8], 32, 32, 64, 64, exact=True)))
    beyond = crop_global(feature, PatchBoxes.from_pixels([-8], [0], 32, 32, 64, 64, beyond=True, exact=True))[0]
    # rows -8..-1 of the scene are rows 7..0 mirrored: cells -2, -1 are cells 1, 0
    torch.testing.assert_close(beyond[:, :2], feature[0, :, :2, :8].flip(1))


def test_crop_margin_gives_the_features_of_the_image_without_its_margin():
    image = torch.randn(1, 3, 96, 160)
    margin = 32
    padded = F.pad(image, (margin,) * 4, mode="reflect")

    def net(x):  # strided maps at 1/4 .. 1/32, as a backbone and its pyramid
        maps = [F.avg_pool2d(x, s) for s in (4, 8, 16, 32)]
        return SimpleNamespace(c=maps, ps3=maps[0], logits=maps[0][:, :2], note="kept")

    cropped = crop_margin(net(padded), margin, tuple(padded.shape[-2:]))
    plain = net(image)
    for got, want in zip(cropped.c, plain.c):
        torch.testing.assert_close(got, want)
    torch.testing.assert_close(cropped.logits, plain.logits)
    assert cropped.note == "kept"


def test_the_fixed_view_keeps_one_ground_resolution_for_every_window():
    engine = StreamingSegmenter(_Net(), InferenceSettings(device="cpu"), 256, 256, footprint=612)
    assert engine.global_size == round(256 * GLOBAL_ZOOM) == 307
    assert engine.global_margin == default_global_margin(307) == 32
    assert engine.global_shape(612, 612) == (307, 307)
    assert engine.global_shape(529, 483) == (265, 242)  # the image cut by 333 x 517 px at 0.5 m
    assert engine.global_shape(612, 100) == (307, 50)  # a strip's window
    assert engine.global_shape(2, 3) == (32, 32)  # never below one output stride
    # a scene 2.39 times coarser than the model's imagery (the 256 px DeepGlobe copies at 4.78 m)
    coarse = StreamingSegmenter(_Net(), InferenceSettings(device="cpu"), 256, 256, footprint=612, coarseness=2.39)
    assert coarse.global_shape(256, 256) == (307, 307) and coarse.global_shape(612, 612) == (307, 307)


def test_the_global_branch_sees_the_view_with_its_margin_and_returns_it_without():
    seen = []

    class Pooling(_Net):
        def encode_global(self, image):
            seen.append(tuple(image.shape[-2:]))
            return SimpleNamespace(logits=F.avg_pool2d(image, 4), c=[F.avg_pool2d(image, 32)])

    engine = StreamingSegmenter(Pooling(), InferenceSettings(device="cpu", channels_last=False), 256, 256, footprint=612)
    image = torch.randn(1, 3, *engine.global_shape(529, 483))
    out = engine._encode_global(image)
    assert seen == [(265 + 64, 242 + 64)]  # 32 px of mirror image on every side
    torch.testing.assert_close(out.logits, F.avg_pool2d(image, 4))
    torch.testing.assert_close(out.c[0], F.avg_pool2d(F.pad(image, (32,) * 4, mode="reflect"), 32)[..., 1:-1, 1:-1])
    # a wider margin, and an image too small to mirror it, which gets the largest whole margin it can
    wide = StreamingSegmenter(Pooling(), InferenceSettings(device="cpu", channels_last=False, global_margin=64), 256, 256,
                              footprint=612)
    seen.clear()
    out = wide._encode_global(image)
    assert seen == [(265 + 128, 242 + 128)]
    torch.testing.assert_close(out.c[0], F.avg_pool2d(F.pad(image, (64,) * 4, mode="reflect"), 32)[..., 2:-2, 2:-2])
    seen.clear()
    wide._encode_global(torch.randn(1, 3, 40, 200))
    assert seen == [(40 + 64, 200 + 64)]


def test_the_released_view_squeezes_without_margin():
    for settings in (InferenceSettings(device="cpu", global_view="squeeze", global_margin=0),
                     InferenceSettings(device="cpu", footprint=0)):
        engine = StreamingSegmenter(_Net(), settings, 256, 256, footprint=612)
        assert (engine.global_view, engine.global_size, engine.global_margin) == ("squeeze", 256, 0)
        assert engine.global_shape(529, 483) == (256, 256)
    # no margin where the global features meet the local branch's canvas (L->G)
    assert StreamingSegmenter(_Net("bidirectional"), InferenceSettings(device="cpu"), 256, 256, footprint=612).global_margin == 0


@pytest.mark.parametrize("settings, message", [
    (dict(global_margin=48), "multiple of 32"),
    (dict(global_view="stretch"), "global_view must be"),
    (dict(context_crop="round"), "context_crop must be"),
    (dict(gsd=0.0), "must be positive"),
])
def test_bad_global_view_settings_say_what_to_do(settings, message):
    with pytest.raises(InputError, match=message):
        InferenceSettings(**settings)


def test_a_margin_where_it_does_not_apply_is_refused():
    with pytest.raises(InputError, match="drop --global-margin"):
        StreamingSegmenter(_Net(), InferenceSettings(device="cpu", global_view="squeeze", global_margin=32), 256, 256, footprint=612)
    with pytest.raises(InputError, match="drop --global-margin"):
        StreamingSegmenter(_Net("bidirectional"), InferenceSettings(device="cpu", global_margin=32), 256, 256, footprint=612)


def test_coarseness_is_the_working_grid_over_the_model_imagery():
    model = SimpleNamespace(gsd=2.0)
    assert coarseness(model, 4.78125, 1.0) == pytest.approx(2.390625)
    assert coarseness(model, 0.5, 0.25) == 1.0  # read at the model's resolution
    assert coarseness(model, None, 1.0) == 1.0 and coarseness(SimpleNamespace(gsd=None), 4.0, 1.0) == 1.0


def test_a_cut_scene_keeps_its_classes_with_the_default_view(sample_data, tmp_path):
    """The default model on a real DeepGlobe image and on the same image with its first
    333 rows and 517 columns cut off: the default global view (fixed, margin, exact crops)
    keeps more of the shared pixels' classes than the released one (squeeze, cells)."""
    import glgeo

    image = sample_data / "deepglobe" / "images" / "2774_sat.jpg"
    with rasterio.open(image) as src:
        data = src.read(window=Window(517, 333, src.width - 517, src.height - 333))
    cut = tmp_path / "cut.tif"
    with rasterio.open(cut, "w", driver="GTiff", width=data.shape[2], height=data.shape[1], count=3, dtype="uint8") as dst:
        dst.write(data)
    agreement = {}
    for name, settings in {"default": InferenceSettings(device="cpu"),
                           "released": InferenceSettings(device="cpu", global_view="squeeze", context_crop="cells")}.items():
        maps = []
        for scene in (image, cut):
            out = tmp_path / f"{name}-{scene.stem}.tif"
            glgeo.segment(scene, out, settings=settings)
            with rasterio.open(out) as src:
                maps.append(src.read(1))
        agreement[name] = (maps[1] == maps[0][333:, 517:]).mean()
    assert agreement["default"] > agreement["released"] + 0.02, agreement
