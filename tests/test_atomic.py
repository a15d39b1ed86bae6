"""Outputs are checked before any work and written atomically."""

from __future__ import annotations

import pytest

from glgeo.atomic import atomic_path, check_output_path
from glgeo.errors import OutputError


def test_output_equal_to_input_is_refused(tmp_path):
    scene = tmp_path / "scene.tif"
    scene.write_bytes(b"x")
    with pytest.raises(OutputError, match="same file as the input"):
        check_output_path(scene, overwrite=True, inputs=(scene,))
    with pytest.raises(OutputError, match="does not exist"):
        check_output_path(tmp_path / "missing" / "o.tif", overwrite=False)
    assert check_output_path(tmp_path / "o.tif", overwrite=False, inputs=("/vsicurl/https://x/y.tif",)).name == "o.tif"


def test_an_existing_output_needs_overwrite(tmp_path):
    out = tmp_path / "o.tif"
    out.write_bytes(b"old")
    with pytest.raises(OutputError, match="already exists; pass overwrite=True"):
        check_output_path(out, overwrite=False)
    assert check_output_path(out, overwrite=True) == out


def test_the_target_appears_only_when_the_block_succeeds(tmp_path):
    target = tmp_path / "map.tif"
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".map.") and tmp.name.endswith(".part.tif")
        assert not tmp.exists()  # drivers create the file themselves
        tmp.write_bytes(b"new")
        assert not target.exists()
    assert target.read_bytes() == b"new" and list(tmp_path.iterdir()) == [target]


def test_a_failure_leaves_the_old_target_and_no_temporary_file(tmp_path):
    target = tmp_path / "map.tif"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="boom"), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("boom")
    assert target.read_bytes() == b"old" and list(tmp_path.iterdir()) == [target]
