"""glgeo.pil_resize: PIL's bilinear resize of 8-bit images, bit for bit, read by bands of rows."""

import numpy as np
import pytest
from PIL import Image

from glgeo.pil_resize import coefficients, resize_rows


def pil_two_passes(image: np.ndarray, size: tuple[int, int], box=None) -> np.ndarray:
    """Pillow's resize as it ran before Pillow 13 (and as the released GLNet code ran it):
    the horizontal pass, rounded to 8 bits, then the vertical one. Pillow 13 runs the
    vertical pass first where the height shrinks much more than the width; each pass alone
    is unchanged, so two one-axis resizes give the older result on any Pillow."""
    bands, height, width = image.shape
    left, top, right, bottom = box if box is not None else (0, 0, width, height)
    pil = Image.fromarray(image[0] if bands == 1 else np.moveaxis(image, 0, -1))
    out = pil.resize((size[1], height), Image.BILINEAR, box=(left, 0, right, height))
    out = np.asarray(out.resize((size[1], size[0]), Image.BILINEAR, box=(0, top, size[1], bottom)))
    return out[None] if bands == 1 else np.moveaxis(out, -1, 0)


def test_a_deepglobe_sized_global_image_equals_pils_resize():
    """2448 px to 508 px (the released DeepGlobe global image): equal to Pillow's own call,
    which runs the horizontal pass first for a square reduction on every version."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (3, 2448, 2448), dtype=np.uint8)
    expected = np.moveaxis(np.asarray(Image.fromarray(np.moveaxis(image, 0, -1)).resize((508, 508), Image.BILINEAR)), -1, 0)
    got = resize_rows(lambda rows, cols: image[:, rows, cols], (2448, 2448), (508, 508), max_pixels=300_000)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("seed", range(40))
def test_any_size_box_and_band_of_rows_equals_pil_bit_for_bit(seed):
    rng = np.random.default_rng(seed)
    height, width = (int(v) for v in rng.integers(1, 400, 2))
    size = tuple(int(v) for v in rng.integers(1, 200, 2))
    bands = 3 if seed % 2 else 1
    if seed % 3:
        image = rng.integers(0, 256, (bands, height, width), dtype=np.uint8)
    else:  # smooth, where a rounding slip would show as a level off
        yy, xx = np.mgrid[0:height, 0:width]
        image = np.stack([((np.sin(xx / 2.3 + b) + np.sin(yy / 3.1)) * 60 + 128).astype(np.uint8) for b in range(bands)])
    box = None
    if seed % 4 == 1 and min(height, width) > 4:  # a fractional box, as a context window at a reading scale
        box = tuple(float(np.float32(v)) for v in (rng.uniform(0, width / 3), rng.uniform(0, height / 3),
                                                    rng.uniform(2 * width / 3, width), rng.uniform(2 * height / 3, height)))
    got = resize_rows(lambda rows, cols: image[:, rows, cols], (height, width), size, box=box,
                      max_pixels=int(rng.integers(1, 20_000)))
    np.testing.assert_array_equal(got, pil_two_passes(image, size, box))


def test_reads_only_bands_of_rows_and_the_columns_it_needs():
    """Memory stays a band of rows: no read is taller than ``max_pixels`` allows, and a box
    reads only the columns its taps reach."""
    image = np.random.default_rng(1).integers(0, 256, (3, 3000, 400), dtype=np.uint8)
    reads = []

    def read(rows, cols):
        reads.append((rows, cols))
        return image[:, rows, cols]

    got = resize_rows(read, (3000, 400), (100, 50), box=(100, 0, 300, 3000), max_pixels=20_000)
    np.testing.assert_array_equal(got, pil_two_passes(image, (100, 50), (100, 0, 300, 3000)))
    assert all(r.stop - r.start <= 20_000 // (c.stop - c.start) for r, c in reads) and len(reads) > 10
    assert min(c.start for _, c in reads) >= 100 - 5 and max(c.stop for _, c in reads) <= 300 + 5


def test_coefficients_are_pillows_fixed_point_and_sum_to_one():
    first, count, fixed = coefficients(2448, 0, 2448, 508)
    assert first[0] == 0 and (first + count).max() == 2448
    sums = fixed.sum(axis=1)
    assert np.all(np.abs(sums - (1 << 22)) <= count)  # each weight rounded on its own


@pytest.mark.parametrize("shape,size,box", [
    ((40, 30), (40, 55), None),  # rows kept: the horizontal pass alone
    ((40, 30), (17, 30), None),  # columns kept: the vertical pass alone
    ((40, 30), (40, 30), (3, 0, 27, 40)),  # same size, a box: the horizontal pass over it
    ((40, 30), (40, 30), (0, 2.5, 30, 38)),  # the vertical pass over a fractional box
    ((1, 1), (5, 7), None),
])
def test_a_pass_pillow_skips_is_skipped_alike(shape, size, box):
    image = np.random.default_rng(7).integers(0, 256, (3, *shape), dtype=np.uint8)
    got = resize_rows(lambda rows, cols: image[:, rows, cols], shape, size, box=box, max_pixels=100)
    np.testing.assert_array_equal(got, pil_two_passes(image, size, box))


def test_a_narrow_scene_widened_keeps_its_bands_of_rows_small():
    """A strip narrower than the global image, stretched to it (the released code's square
    view): a band's horizontal pass is as wide as the output, and is bounded too (it took
    7 GB for 200,000 x 20 px to 508 x 508)."""
    image = np.random.default_rng(8).integers(0, 256, (3, 5000, 20), dtype=np.uint8)
    heights = []

    def read(rows, cols):
        heights.append(rows.stop - rows.start)
        return image[:, rows, cols]

    got = resize_rows(read, (5000, 20), (100, 508), max_pixels=50_000)
    np.testing.assert_array_equal(got, pil_two_passes(image, (100, 508)))
    assert max(heights) * 508 <= 50_000
