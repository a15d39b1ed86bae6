"""benchmarks/edge_rim.py: the bands it measures a rim in."""

from __future__ import annotations


from fixtures.benchmarks import load_benchmark


def test_edge_bands_are_rings_of_the_stated_width_that_cover_the_scene_once():
    edge_rim = load_benchmark("edge_rim")
    outer, near, inner = edge_rim.bands((100, 120), 0.5)
    assert (outer.astype(int) + near + inner == 1).all()
    # 0.5 m pixels: the outer 4 m is 8 px, 4-20 m the next 32 px
    assert outer[7, 60] and not outer[8, 60] and outer[50, 112] and not outer[50, 111]
    assert near[8, 60] and near[39, 60] and not near[40, 60]
    assert inner[50, 60] and inner.sum() == (100 - 80) * (120 - 80)
