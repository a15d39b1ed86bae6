"""Splits: Inria's official validation tiles, leave-cities-out, DeepGlobe's seeded split, files."""

from __future__ import annotations

import json
import logging

import pytest

from glgeo.errors import DatasetError, InputError
from glgeo.splits import (
    inria_official_split,
    leave_cities_out,
    make_split,
    read_split_file,
    scene_name,
    seeded_split,
    split_from_file,
)

INRIA_CITIES = ("austin", "chicago", "kitsap", "tyrol-w", "vienna")
INRIA_NAMES = [f"{c}{n}" for c in INRIA_CITIES for n in range(1, 37)]


def test_inria_official_validation_is_tiles_1_to_5_of_each_city():
    split = inria_official_split(INRIA_NAMES)
    assert len(split.val) == 25 and len(split.train) == 155
    assert set(split.val) == {f"{c}{n}" for c in INRIA_CITIES for n in range(1, 6)}
    assert "austin6" in split.train and "tyrol-w36" in split.train and "austin10" not in split.val
    assert make_split("inria", INRIA_NAMES) == split


def test_leave_cities_out():
    split = leave_cities_out(INRIA_NAMES, ["tyrol-w", "Vienna"])
    assert len(split.val) == 72 and all(n.startswith(("tyrol-w", "vienna")) for n in split.val)
    assert len(split.train) == 108 and not any(n.startswith(("tyrol-w", "vienna")) for n in split.train)
    with pytest.raises(InputError, match="no tiles of city paris.*cities present: austin, chicago"):
        leave_cities_out(INRIA_NAMES, ["paris"])
    with pytest.raises(InputError, match="nothing to train on"):
        leave_cities_out(INRIA_NAMES, list(INRIA_CITIES))
    with pytest.raises(InputError, match="Inria dataset only"):
        make_split("deepglobe", ["1", "2"], val_cities=["austin"])


def test_deepglobe_seeded_split_sizes_and_stability():
    names = [str(100000 + 37 * i) for i in range(803)]
    split = seeded_split(names, seed=0)
    assert (len(split.train), len(split.val), len(split.test)) == (454, 207, 142)
    assert set(split.train) | set(split.val) | set(split.test) == set(names)
    # Stable: independent of input order, and pinned to the same scenes on every machine.
    assert seeded_split(list(reversed(names)), seed=0) == split
    assert split.val[:3] == ("100222", "100555", "100777")
    assert split.test[:3] == ("100111", "100185", "100444")
    assert seeded_split(names, seed=1) != split
    # Small datasets still get a validation scene and keep at least one to train on.
    small = seeded_split(["a", "b", "c"], seed=0)
    assert len(small.val) == 1 and len(small.train) >= 1
    assert seeded_split(["a", "b"], seed=0).train != ()


def test_split_folder_with_paper_lists(tmp_path):
    (tmp_path / "train.txt").write_text("1_sat.jpg\n2_sat.jpg\n99_sat.jpg\n")
    (tmp_path / "crossvali.txt").write_text("3_sat.jpg\n")
    (tmp_path / "test.txt").write_text("4_sat.jpg\n")
    split = split_from_file(tmp_path, ["1", "2", "3", "4", "5"])
    assert split.train == ("1", "2") and split.val == ("3",) and split.test == ("4",)  # 99 absent, 5 unused


def test_named_held_out_scenes_leave_validation_without_a_share(tmp_path):
    """--holdout-scenes alone (no --holdout-share) moves those scenes to the test part."""
    lists = tmp_path / "s.json"
    names = [f"v{i}" for i in range(6)] + ["t0", "t1"]
    lists.write_text(json.dumps({"train": ["t0", "t1"], "val": [f"v{i}" for i in range(6)]}))
    split = make_split("folder", names, split_file=lists, holdout_scenes=["v5"])
    assert split.test == ("v5",) and "v5" not in split.val and len(split.val) == 5


def test_split_json_and_csv_files(tmp_path):
    js = tmp_path / "s.json"
    js.write_text(json.dumps({"train": ["austin6.tif", "austin7"], "val": ["austin1"]}))
    assert make_split("inria", ["austin1", "austin6", "austin7"], split_file=js).val == ("austin1",)
    csv = tmp_path / "s.csv"
    csv.write_text("# name,split\na.tif,train\nb,val\nc,test\n")
    assert read_split_file(csv) == {"train": ["a"], "val": ["b"], "test": ["c"]}
    csv.write_text("a.tif,holdout\n")
    with pytest.raises(InputError, match="line 1: expected 'name,split'"):
        read_split_file(csv)
    with pytest.raises(InputError, match="does not exist"):
        read_split_file(tmp_path / "missing.json")
    with pytest.raises(DatasetError, match="no scene of split file"):
        split_from_file(js, ["x", "y"])
    js.write_text(json.dumps({"train": ["a"], "val": ["a"]}))
    with pytest.raises(DatasetError, match="both the train and the val split"):
        split_from_file(js, ["a"])


def test_split_entries_without_scene_and_scenes_in_no_list_are_warnings_naming_them(tmp_path, caplog):
    js = tmp_path / "s.json"
    js.write_text(json.dumps({"train": ["t0", "t9_typo"], "val": ["t1"] + [f"gone{i}" for i in range(7)]}))
    with caplog.at_level(logging.WARNING, logger="glgeo.splits"):
        split = split_from_file(js, ["t0", "t1", "t2", "t3"])
    assert split.train == ("t0",) and split.val == ("t1",)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 3, warned
    assert "1 of 2 train entries match no scene of the dataset and are left out: t9_typo;" in warned[0]
    assert "7 of 8 val entries" in warned[1] and "gone0, gone1, gone2, gone3, gone4 and 2 more" in warned[1]
    assert "2 of the dataset's 4 scenes are in no list" in warned[2] and "not used: t2, t3;" in warned[2]
    caplog.clear()
    js.write_text(json.dumps({"train": ["t0", "t1"], "val": ["t2"], "test": ["t3"]}))
    with caplog.at_level(logging.WARNING, logger="glgeo.splits"):
        split_from_file(js, ["t0", "t1", "t2", "t3"])
    assert not caplog.records


def test_scene_names_from_file_names():
    assert scene_name("855_sat.jpg") == "855" and scene_name("dir/austin1.tif") == "austin1"
    assert scene_name("855_mask.png") == "855"


def test_shared_paper_lists_place_the_samples(sample_file):
    splits = sample_file("deepglobe", "splits")
    ids = ["104113", "172307", "3484", "482365", "6399", "855", "180902", "19627", "2774", "794214"]
    split = split_from_file(splits, ids)
    assert set(split.train) == {"104113", "172307", "3484", "482365", "6399", "855"}
    assert set(split.val) == {"180902", "19627", "2774", "794214"} and split.test == ()
    lists = read_split_file(splits)
    assert (len(lists["train"]), len(lists["val"]), len(lists["test"])) == (454, 207, 142)
