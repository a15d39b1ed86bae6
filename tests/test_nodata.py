"""The mirror fill: each nodata pixel takes the valid pixel mirrored across the gap's edge."""

import numpy as np
import pytest

from glgeo.nodata import mirror_fill, mirror_sources, nearest_valid


def _nearest_by_brute_force(valid: np.ndarray) -> np.ndarray:
    """Squared distance from each pixel to the nearest valid pixel, every pair tried."""
    rows, cols = np.nonzero(valid)
    r, c = np.mgrid[: valid.shape[0], : valid.shape[1]]
    return ((r[..., None] - rows) ** 2 + (c[..., None] - cols) ** 2).min(axis=-1)


@pytest.mark.parametrize("seed", range(6))
def test_nearest_valid_is_the_exact_euclidean_nearest(seed):
    rng = np.random.default_rng(seed)
    shape = tuple(rng.integers(1, 30, 2))
    valid = rng.random(shape) < (0.02, 0.1, 0.3, 0.6, 0.9, 0.99)[seed]
    valid.flat[rng.integers(valid.size)] = True
    near_r, near_c = nearest_valid(valid)
    assert valid[near_r, near_c].all()
    r, c = np.mgrid[: shape[0], : shape[1]]
    np.testing.assert_array_equal((near_r - r) ** 2 + (near_c - c) ** 2, _nearest_by_brute_force(valid))
    assert (near_r[valid] == r[valid]).all() and (near_c[valid] == c[valid]).all()  # a valid pixel is its own


def test_nearest_valid_needs_a_valid_pixel():
    with pytest.raises(ValueError, match="at least one valid pixel"):
        nearest_valid(np.zeros((3, 4), bool))


def test_a_straight_edge_is_mirrored_like_numpy_reflect_padding():
    values = np.random.default_rng(1).random((2, 20, 30)).astype(np.float32)
    valid = np.zeros((20, 30), bool)
    valid[6:, 9:] = True  # nodata above and to the left: a corner of a scene's collar
    expected = np.pad(values[:, 6:, 9:], ((0, 0), (6, 0), (9, 0)), mode="reflect")
    np.testing.assert_array_equal(mirror_fill(values, valid), expected)


def test_a_gap_wider_than_the_ground_beside_it_takes_the_nearest_valid_pixel():
    valid = np.zeros((1, 10), bool)
    valid[0, 7:] = True  # 3 valid pixels, 7 missing: pixels 0..4 mirror off the array
    src_r, src_c = mirror_sources(valid)
    assert src_c.tolist() == [[7, 7, 7, 7, 7, 9, 8, 7, 8, 9]] and (src_r == 0).all()


def test_mirror_fill_leaves_valid_pixels_and_edge_cases_alone():
    values = np.random.default_rng(2).random((3, 8, 9)).astype(np.float32)
    valid = np.random.default_rng(3).random((8, 9)) < 0.5
    filled = mirror_fill(values, valid)
    np.testing.assert_array_equal(filled[:, valid], values[:, valid])
    for mask in (np.ones((8, 9), bool), np.zeros((8, 9), bool)):
        np.testing.assert_array_equal(mirror_fill(values, mask), values)
