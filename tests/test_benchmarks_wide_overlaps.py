"""benchmarks/wide_overlaps.py: its ``whole`` engine really keeps every patch of every window."""

from __future__ import annotations

from dataclasses import replace

from glgeo.inference import InferenceSettings
from glgeo.segmentation import segment

from fixtures.benchmarks import load_benchmark
from test_inference import offset_checkpoint, smooth_scene


def test_whole_windows_switch_off_the_shared_overlaps_and_restore_them(tmp_path):
    """Two windows a side sharing 200 rows and 80 columns: the engine as it is leaves part
    of those overlaps to the neighbour (fewer patches); inside ``whole_windows`` every
    window computes all its patches, as with the plain sum; afterwards the rule is back."""
    wide_overlaps = load_benchmark("wide_overlaps")
    scene = smooth_scene(tmp_path / "smooth.tif", 300, 420)
    settings = InferenceSettings(device="cpu", precision="fp32", footprint=250)

    def patches(name: str, **changes) -> int:
        summary = segment(scene, tmp_path / f"{name}.tif", model=offset_checkpoint(footprint=250),
                          settings=replace(settings, **changes))
        return summary.stats.patches

    shared = patches("shared")
    with wide_overlaps.whole_windows(True):
        whole = patches("whole")
    assert whole == patches("sum", blend="sum") and shared < 0.7 * whole
    assert patches("after") == shared
