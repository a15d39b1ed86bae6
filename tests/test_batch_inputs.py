"""glgeo.batch.inputs: scenes from paths, globs, URLs and list files."""

from __future__ import annotations

import pytest

from glgeo.batch import (
    expand_inputs,
)
from glgeo.errors import InputError


def test_expand_inputs_globs_lists_urls_and_duplicates(tmp_path):
    for name in ("b.tif", "a.tif", "c.jpg"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "d.tif").write_bytes(b"x")
    listing = tmp_path / "list.txt"
    listing.write_text("# scenes\n\nsub/d.tif\nhttps://example.org/tiles/e.tif?sig=1\n" + str(tmp_path / "a.tif") + "\n")
    scenes = expand_inputs([str(tmp_path / "*.tif"), f"@{listing}", "/vsis3/bucket/f.tif"])
    assert scenes == [
        str(tmp_path / "a.tif"),
        str(tmp_path / "b.tif"),
        str(tmp_path / "sub" / "d.tif"),  # relative to the list's folder
        "https://example.org/tiles/e.tif?sig=1",
        "/vsis3/bucket/f.tif",
    ]  # a.tif named twice, kept once
    assert expand_inputs([], input_lists=[listing])[0] == str(tmp_path / "sub" / "d.tif")
    assert expand_inputs([str(tmp_path / "**" / "*.tif")]) == [
        str(tmp_path / "a.tif"), str(tmp_path / "b.tif"), str(tmp_path / "sub" / "d.tif")
    ]
    with pytest.raises(InputError, match="no file matches"):
        expand_inputs([str(tmp_path / "*.png")])
    with pytest.raises(InputError, match="cannot read the list"):
        expand_inputs([f"@{tmp_path / 'missing.txt'}"])
    with pytest.raises(InputError, match="no scenes given"):
        expand_inputs([])


def test_a_glob_of_everything_leaves_out_sidecars_and_manifests(tmp_path, caplog):
    """``'folder/**/*'`` matched each scene's .aux.xml, .ovr and world file and the batch's
    manifest.json, which then failed as scenes: left out, with one line; named alone, kept."""
    import logging

    for name in ("a.tif", "a.tif.aux.xml", "a.tif.ovr", "a.tfw", "b.jpg", "b.jgw", "manifest.json", "run.csv", "c.vrt"):
        (tmp_path / name).write_bytes(b"x")
    with caplog.at_level(logging.INFO, logger="glgeo.batch"):
        scenes = expand_inputs([str(tmp_path / "*")])
    assert [p.rsplit("/", 1)[1] for p in scenes] == ["a.tif", "b.jpg", "c.vrt"]
    assert "also matches 6 sidecar, world or manifest files" in caplog.text
    assert expand_inputs([str(tmp_path / "*.json")]) == [str(tmp_path / "manifest.json")]  # what was asked for


def test_a_list_that_is_no_utf8_text_is_one_error_and_a_bom_is_no_path(tmp_path):
    """A list in another encoding (or a raster named with @ by mistake) was a
    UnicodeDecodeError traceback; a list saved with a BOM made its first path unfindable."""
    (tmp_path / "a.tif").write_bytes(b"x")
    latin = tmp_path / "latin.txt"
    latin.write_bytes(b"caf\xe9.tif\n")
    with pytest.raises(InputError, match=rf"^the list of scenes '{latin}' is no UTF-8 text .*saved as UTF-8$"):
        expand_inputs([f"@{latin}"])
    bom = tmp_path / "bom.txt"
    bom.write_bytes(b"\xef\xbb\xbfa.tif\n")
    assert expand_inputs([f"@{bom}"]) == [str(tmp_path / "a.tif")]


def test_one_file_named_two_ways_is_one_scene_with_one_warning(tmp_path, monkeypatch, caplog):
    """``in/a/t.tif``, ``$PWD/in/a/t.tif`` and a path through a symbolic link were three
    scenes writing one output name: the batch was refused."""
    import logging
    import os

    from glgeo.batch import plan_jobs

    (tmp_path / "in" / "a").mkdir(parents=True)
    (tmp_path / "in" / "a" / "t.tif").write_bytes(b"x")
    (tmp_path / "in" / "a" / "u.tif").write_bytes(b"x")
    os.symlink(tmp_path / "in" / "a", tmp_path / "linked")
    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.WARNING, logger="glgeo.batch"):
        scenes = expand_inputs(["in/a/t.tif", str(tmp_path / "in" / "a" / "t.tif"), "linked/*.tif"])
    assert scenes == ["in/a/t.tif", "linked/u.tif"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        f"1 file was named more than once (e.g. 'in/a/t.tif' given again as '{tmp_path / 'in' / 'a' / 't.tif'}'):"
        " each file runs once, under the name it was first given"
    ]
    assert [job.output.name for job in plan_jobs(scenes, tmp_path / "out")] == ["t.tif", "u.tif"]
