"""A full disk: no output under its final name unless complete, and an error that says so.

GDAL does not raise when writing a block it had cached fails: on a full disk a class map
was left cut short under its final name and the run said it was written. The simulated
cases run everywhere; the last test fills a real (tiny) disk where one can be mounted.
"""

from __future__ import annotations

import collections
import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

import glgeo.atomic
from glgeo.atomic import atomic_path, check_raster_complete, disk_full_error
from glgeo.errors import InputError, OutputError
from glgeo.schemes import DEEPGLOBE
from glgeo.writer import ClassRasterWriter, OutputOptions

from test_writer import _classes, _info, _write

_Usage = collections.namedtuple("_Usage", "total used free")


def _disk_full(monkeypatch, free: int = 4096) -> None:
    monkeypatch.setattr(shutil, "disk_usage", lambda path: _Usage(10**9, 10**9 - free, free))


def _tiled(path: Path, sparse: bool = False) -> Path:
    profile = dict(driver="GTiff", width=64, height=64, count=1, dtype="uint8", tiled=True, blockxsize=16,
                   blockysize=16, compress="DEFLATE", sparse_ok=sparse)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.arange(64 * 32, dtype=np.uint8).reshape(1, 32, 64) % 7, window=Window(0, 0, 64, 32))
        if not sparse:
            dst.write(np.ones((1, 32, 64), np.uint8), window=Window(0, 32, 64, 32))
    return path


def test_a_complete_raster_passes_and_a_cut_or_holed_one_does_not(tmp_path):
    whole = _tiled(tmp_path / "whole.tif")
    check_raster_complete(whole)
    cut = tmp_path / "cut.tif"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size * 2 // 3])
    with pytest.raises(OutputError, match=r"writing 'map\.tif' failed: .*; check the disk and the folder"):
        check_raster_complete(cut, "map.tif")
    # blocks never written (what a failed block write leaves): GDAL reads them as no data, silently
    holed = _tiled(tmp_path / "holed.tif", sparse=True)
    with rasterio.open(holed) as src:
        assert src.read(1)[40:, :].max() == 0  # read without an error
    with pytest.raises(OutputError, match=r"8 of its blocks are missing from the file GDAL wrote"):
        check_raster_complete(holed)
    check_raster_complete(holed, sparse_ok=True)  # what SPARSE_OK=TRUE asks for
    with pytest.raises(OutputError, match=r"blocks are missing"):
        (tmp_path / "holed_cut.tif").write_bytes(whole.read_bytes()[:-1])
        check_raster_complete(tmp_path / "holed_cut.tif", sparse_ok=True)


def test_sparse_ok_outputs_are_written(tmp_path):
    out = tmp_path / "sparse.tif"
    classes = _classes(256, 256)
    classes[128:] = 255  # no data: blocks SPARSE_OK=TRUE may leave out
    # whole bytes: GDAL leaves out the blocks of no data (packed in 3 bits it writes them all)
    options = OutputOptions(block_size=128, creation_options=(("SPARSE_OK", "TRUE"), ("NBITS", "8")))
    with ClassRasterWriter(out, _info(256, 256), DEEPGLOBE, options=options) as writer:
        _write(writer, classes)
        writer.commit()
    with rasterio.open(out) as src:
        assert src.get_tag_item("BLOCK_OFFSET_0_1", "TIFF", bidx=1) is None  # left out, as asked
        assert (src.read(1)[128:] == src.nodata).all()


def test_overviews_and_masks_are_checked_too(tmp_path):
    out = tmp_path / "scores.tif"
    with ClassRasterWriter(tmp_path / "c.tif", _info(300, 300), DEEPGLOBE, out,
                           options=OutputOptions(block_size=128)) as writer:
        _write(writer, _classes(300, 300), scores=True)
        writer.commit()
    check_raster_complete(out)
    data = out.read_bytes()
    firsts = []  # each image's first block: the full resolution, its mask, the overviews and theirs
    for n in range(1, 10):
        try:
            with rasterio.open(f"GTIFF_DIR:{n}:{out}") as src:
                firsts.append(int(src.get_tag_item("BLOCK_OFFSET_0_0", "TIFF", bidx=1)))
        except rasterio.errors.RasterioIOError:
            break
    assert len(firsts) == 6  # 300 px in 128 px tiles: two overviews
    for offset in firsts:  # the file cut in that block
        cut = tmp_path / "cut.tif"
        cut.write_bytes(data[: offset + 1])
        with pytest.raises(OutputError, match="blocks are missing"):
            check_raster_complete(cut)


def test_a_class_map_gdal_could_not_finish_is_refused_not_renamed(tmp_path, monkeypatch):
    """As on a full disk: the COG copy comes out short and GDAL raises nothing."""
    import rasterio.shutil

    real_copy = rasterio.shutil.copy

    def short_copy(src, dst, **kwargs):
        real_copy(src, dst, **kwargs)
        Path(dst).write_bytes(Path(dst).read_bytes()[:600])

    monkeypatch.setattr(rasterio.shutil, "copy", short_copy)
    out = tmp_path / "landcover.tif"
    with ClassRasterWriter(out, _info(200, 200), DEEPGLOBE, options=OutputOptions(block_size=64)) as writer:
        _write(writer, _classes(200, 200))
        _disk_full(monkeypatch)  # as the copy fills it
        with pytest.raises(OutputError, match=r"writing '.*landcover\.tif' failed: .*the disk holding '.*' is full "
                                              r"\(4\.0 KiB free\); free some space or choose another folder"):
            writer.commit()
    assert list(tmp_path.iterdir()) == []


def test_a_disk_that_fills_while_a_map_is_written_stops_it_at_the_next_row_of_tiles(tmp_path, monkeypatch):
    """Not after the whole scene is computed: GDAL says nothing when a block does not fit."""
    out = tmp_path / "landcover.tif"
    free = iter([10**9, 10**9, 1000])  # full from the third row of tiles on
    monkeypatch.setattr(shutil, "disk_usage", lambda path: _Usage(10**10, 0, next(free, 1000)))
    with ClassRasterWriter(out, _info(700, 100), DEEPGLOBE, options=OutputOptions(block_size=128)) as writer:
        with pytest.raises(OutputError, match=r"writing '.*landcover\.tif' stopped at row 384 of 700: the disk holding "
                                              r"'.*' is full \(1000 bytes free\); free some space"):
            _write(writer, _classes(700, 100), band_rows=64)
    assert list(tmp_path.iterdir()) == []


def test_atomic_writes_say_the_disk_is_full(tmp_path, monkeypatch):
    target = tmp_path / "manifest.json"
    with pytest.raises(OutputError, match=r"cannot write '.*manifest\.json': no space left on device; free some space"):
        with atomic_path(target) as tmp:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    # a library that does not say why (SQLite, torch), while the disk is full
    _disk_full(monkeypatch, free=0)
    with pytest.raises(OutputError, match=r"is full \(0 bytes free\)"):
        with atomic_path(target) as tmp:
            raise RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed")
    # errors that are no write's failure pass as they are
    for error in (InputError("bad input"), KeyError("x"), ValueError("no")):
        assert disk_full_error(error, target) is None
    assert list(tmp_path.iterdir()) == []


def test_an_error_is_not_blamed_on_a_disk_with_room(tmp_path, monkeypatch):
    assert disk_full_error(RuntimeError("file write failed"), tmp_path / "x.pt") is None
    quota = disk_full_error(OSError(errno.EDQUOT, os.strerror(errno.EDQUOT)), tmp_path / "x.pt")
    assert quota is not None and "x.pt': disk quota exceeded; free some space" in str(quota)
    # a folder named so is no full disk (the words were once matched in the note)
    named = tmp_path / "this disk is full"
    named.mkdir()
    assert disk_full_error(RuntimeError("unrelated"), named / "out.gpkg") is None
    # a file system that reports no size is not full
    monkeypatch.setattr(shutil, "disk_usage", lambda path: _Usage(0, 0, 0))
    assert disk_full_error(RuntimeError("unrelated"), tmp_path / "x.pt") is None
    # an input's read error while the disk is nearly full keeps its own words
    _disk_full(monkeypatch)
    from rasterio.errors import RasterioIOError

    assert disk_full_error(RasterioIOError("Read failed: the input is damaged"), tmp_path / "x.gpkg") is None
    assert disk_full_error(RuntimeError("Failed to commit transaction"), tmp_path / "x.gpkg") is not None


def test_a_checkpoint_on_a_full_disk_is_an_output_error(tmp_path, monkeypatch):
    import torch

    from glgeo.models import save_checkpoint

    from fixtures.checkpoints import tiny_glnet

    def no_room(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 4416 vs 4310")

    monkeypatch.setattr(torch, "save", no_room)
    _disk_full(monkeypatch)
    model = tiny_glnet()
    with pytest.raises(OutputError, match=r"cannot write '.*m\.pt': the disk holding"):
        save_checkpoint(tmp_path / "m.pt", model, DEEPGLOBE)
    assert list(tmp_path.iterdir()) == []


def test_a_manifest_that_cannot_be_written_still_says_what_the_scenes_did(tmp_path, monkeypatch):
    from glgeo.batch import BatchOptions, run_batch, scheduling

    def full(*args, **kwargs):
        raise OutputError("cannot write 'm.json': the disk holding 'x' is full (0 bytes free)")

    scene = tmp_path / "scene.tif"
    profile = dict(driver="GTiff", width=40, height=40, count=3, dtype="uint8", crs="EPSG:32615",
                   transform=rasterio.Affine(2.0, 0, 500000, 0, -2.0, 4100000))
    with rasterio.open(scene, "w", **profile) as dst:
        dst.write(np.random.default_rng(0).integers(0, 255, (3, 40, 40), dtype=np.uint8))
    monkeypatch.setattr(scheduling, "write_manifest", full)
    from fixtures.checkpoints import save_tiny_checkpoint

    model = save_tiny_checkpoint(tmp_path / "tiny.pt")
    with pytest.raises(OutputError, match=r"is full \(0 bytes free\)\. The scenes were run all the same: 1 done, "
                                          r"0 skipped, 0 failed \(outputs in .*out\); a rerun skips the finished ones"):
        run_batch([str(scene)], tmp_path / "out", model=str(model), options=BatchOptions(manifest=tmp_path / "m.json"))
    assert (tmp_path / "out" / "scene.tif").exists()


def _mount_tiny_disk(folder: Path, kib: int) -> bool:
    folder.mkdir()
    if sys.platform != "linux" or os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kib}k", "tmpfs", str(folder)], capture_output=True)
    return done.returncode == 0


def test_segment_on_a_real_full_disk_fails_and_leaves_nothing(tmp_path):
    from glgeo.segmentation import segment

    from fixtures.checkpoints import save_tiny_checkpoint

    disk = tmp_path / "disk"
    if not _mount_tiny_disk(disk, 400):
        pytest.skip("a tiny disk can be mounted only by root on Linux")
    try:
        (disk / "fill").write_bytes(bytes(396 * 1024))  # 4 KiB left
        scene = tmp_path / "scene.tif"
        profile = dict(driver="GTiff", width=200, height=200, count=3, dtype="uint8", crs="EPSG:32615",
                       transform=rasterio.Affine(2.0, 0, 500000, 0, -2.0, 4100000))
        with rasterio.open(scene, "w", **profile) as dst:
            dst.write(np.random.default_rng(0).integers(0, 255, (3, 200, 200), dtype=np.uint8))
        model = save_tiny_checkpoint(tmp_path / "tiny.pt")
        with pytest.raises(OutputError, match=r"the disk holding .* is full"):
            segment(scene, disk / "map.tif", model=str(model))
        assert sorted(p.name for p in disk.iterdir()) == ["fill"]
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)
