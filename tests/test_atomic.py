"""Outputs are checked before any work and written atomically."""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

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


def _refuse(code: int):
    def refuse(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    return refuse


def test_an_unwritable_folder_is_refused_before_any_work(tmp_path, monkeypatch):
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: Path(path) != tmp_path and real_access(path, mode, **kw))
    with pytest.raises(OutputError, match=r"cannot write in the output folder '.*'; choose a writable folder"):
        check_output_path(tmp_path / "o.tif", overwrite=False)


@pytest.mark.parametrize("code,reason", [(errno.EROFS, "Read-only file system"), (errno.EACCES, "Permission denied")])
def test_a_temporary_file_that_cannot_be_created_is_an_output_error(tmp_path, monkeypatch, code, reason):
    monkeypatch.setattr(tempfile, "mkstemp", _refuse(code))
    with pytest.raises(OutputError, match=rf"cannot write in the output folder '{tmp_path}' \({reason}\)"):
        with atomic_path(tmp_path / "map.gpkg"):
            raise AssertionError("the block must not run")


def test_a_rename_that_fails_is_an_output_error_and_leaves_nothing(tmp_path, monkeypatch):
    target = tmp_path / "map.tif"
    monkeypatch.setattr(os, "replace", _refuse(errno.EACCES))
    with pytest.raises(OutputError, match=r"cannot rename the finished .*map\.tif' into place \(Permission denied\)"):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"new")
    assert list(tmp_path.iterdir()) == []


def test_cleanup_that_fails_does_not_hide_the_real_error(tmp_path, monkeypatch):
    target = tmp_path / "map.tif"
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            monkeypatch.setattr(os, "unlink", _refuse(errno.EROFS))
            raise KeyboardInterrupt
    monkeypatch.undo()
    assert not target.exists()


def test_an_output_folder_that_is_a_file_is_named_so(tmp_path):
    (tmp_path / "scene.tif").write_bytes(b"x")
    with pytest.raises(OutputError, match="'.*scene.tif' is a file, not a folder"):
        check_output_path(tmp_path / "scene.tif" / "out.tif", overwrite=False)
