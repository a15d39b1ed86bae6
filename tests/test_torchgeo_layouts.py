"""glgeo reads the benchmarks in the layouts torchgeo's datasets expect, and splits Inria
the way torchgeo does: a folder prepared for torchgeo works with glgeo unchanged."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from glgeo.datasets import open_dataset
from glgeo.splits import make_split

from fixtures.layouts import make_deepglobe, make_inria

torchgeo_datasets = pytest.importorskip("torchgeo.datasets", reason="torchgeo is not installed")


@pytest.fixture
def plain_dir():
    """A folder whose path has no letters-then-digits run: torchgeo's Inria dataset takes
    the tile number from the first such run in the *whole* path (``pytest-12`` would do)."""
    folder = Path(tempfile.gettempdir()) / f"glgeo_torchgeo_layout_{os.getpid()}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_inria_layout_and_official_split_match_torchgeo(plain_dir):
    root = make_inria(plain_dir, cities=("austin", "vienna"), tiles=7, size=32)
    collection = open_dataset("inria", root)
    split = make_split("inria", collection.names)
    for part, names in (("train", split.train), ("val", split.val)):
        ours = sorted(str(collection.scene(n).image) for n in names)
        theirs = sorted(f["image"] for f in torchgeo_datasets.InriaAerialImageLabeling(str(root), split=part).files)
        assert ours == theirs, part
        masks = sorted(f["label"] for f in torchgeo_datasets.InriaAerialImageLabeling(str(root), split=part).files)
        assert sorted(str(collection.scene(n).mask) for n in names) == masks


def test_deepglobe_layout_matches_torchgeo(tmp_path):
    root = make_deepglobe(tmp_path, ids=("11", "22", "33"), size=32)
    collection = open_dataset("deepglobe", root)
    theirs = torchgeo_datasets.DeepGlobeLandCover(str(root), split="train")
    assert sorted(Path(p).name for p in theirs.image_fns) == sorted(collection.scene(n).image.name for n in collection.names)
    assert sorted(Path(p).name for p in theirs.mask_fns) == sorted(collection.scene(n).mask.name for n in collection.names)
