"""G -> L crops and L -> G canvases: the sharing geometry."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from glgeo.models import (
    L2GCanvas,
    PatchBoxes,
    coverage_map,
    crop_global,
    sample_global,
)
from glgeo.models.heads import BranchFeatures

from fixtures.networks import grid_boxes


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


@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
def test_sample_global_reads_each_patch_pixel_where_one_whole_upsampling_would(mode):
    feature = torch.randn(2, 3, 16, 12)
    height, width = 150, 170  # neither a multiple of the grid: cell edges fall inside pixels
    boxes = PatchBoxes.from_pixels([0, 30, 86], [0, 77, 106], 64, 64, height, width, [0, 1, 1])
    sampled = sample_global(feature, boxes, mode)
    exact = "bilinear" if mode == "bilinear" else "nearest-exact"
    whole = F.interpolate(feature, size=(height, width), mode=exact, **({"align_corners": False} if mode == "bilinear" else {}))
    for i, (top, left) in enumerate([(0, 0), (30, 77), (86, 106)]):
        torch.testing.assert_close(sampled[i], whole[int(boxes.scene_index[i]), :, top : top + 64, left : left + 64])
    # crop_global's whole cells do not: neighbouring patches would disagree where they overlap
    cropped = F.interpolate(crop_global(feature, boxes[1:2]), size=(64, 64), mode="bilinear", align_corners=False)
    assert (cropped[0] - whole[1, :, 30:94, 77:141]).abs().max() > 0.1


def test_exact_crops_share_their_weights_between_maps_of_one_size():
    """crop_global_features samples the 16 maps with one set of weights per map size: a
    second map of the same size through the same cache gets its own exact crops."""
    first, second = torch.randn(2, 8, 40, 52), torch.randn(2, 8, 40, 52).contiguous(memory_format=torch.channels_last)
    boxes = PatchBoxes.from_pixels([0, 100, 37], [5, 200, 91], 120, 120, 320, 416, scene_index=[0, 1, 1], exact=True)
    cache: dict = {}
    crop_global(first, boxes, cache)
    shared = crop_global(second, boxes, cache)
    assert len(cache) == 1
    torch.testing.assert_close(shared, crop_global(second, boxes))
    assert shared.is_contiguous(memory_format=torch.channels_last)
    other = torch.randn(2, 8, 20, 26)  # another size: its own weights
    torch.testing.assert_close(crop_global(other, boxes, cache), crop_global(other, boxes))
    assert len(cache) == 2


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_exact_crops_are_the_same_in_either_memory_layout(dtype):
    """Exact crops of a channels-last map (products over all channels at once) equal those of
    the same map in NCHW (per channel) and bilinear sampling at the boxes' cell centres, and
    keep the map's layout and dtype."""
    feature = torch.randn(2, 16, 40, 52).to(dtype)
    boxes = PatchBoxes.from_pixels([0, 100, 37], [5, 200, 91], 120, 136, 320, 416, scene_index=[0, 1, 1], exact=True)
    plain = crop_global(feature, boxes)
    last = crop_global(feature.contiguous(memory_format=torch.channels_last), boxes)
    assert last.dtype == dtype and last.is_contiguous(memory_format=torch.channels_last)
    assert plain.shape == last.shape == (3, 16, 15, 17)
    torch.testing.assert_close(last, plain, rtol=0, atol=0)
    rel = boxes.rel
    ys = (rel[:, 0:1] + (torch.arange(15, dtype=torch.float64) + 0.5)[None] / 15 * rel[:, 2:3]) * 2 - 1
    xs = (rel[:, 1:2] + (torch.arange(17, dtype=torch.float64) + 0.5)[None] / 17 * rel[:, 3:4]) * 2 - 1
    grid = torch.stack(torch.broadcast_tensors(xs[:, None, :], ys[:, :, None]), dim=-1).float()
    reference = F.grid_sample(feature.float()[[0, 1, 1]], grid, mode="bilinear", padding_mode="border", align_corners=False)
    torch.testing.assert_close(last.float(), reference, **({} if dtype == torch.float32 else {"rtol": 0.02, "atol": 0.05}))
