"""Atomic outputs: write to a temporary file beside the target, rename when complete.

An interrupted or failed run leaves no half-written file under the final name, so "the
output exists" always means "the output is complete" (batch runs rely on that to resume).
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

from .errors import OutputError

log = logging.getLogger(__name__)


def _folder(path: Path) -> Path:
    return path.parent if str(path.parent) else Path(".")


def unwritable_folder_error(
    folder: str | os.PathLike, exc: OSError | None = None, what: str = "the output folder",
    advice: str = "choose a writable folder",
) -> OutputError:
    """The error for an output folder glgeo cannot create files in (read-only, no permission).

    Args:
        folder: the folder.
        exc: the error creating or renaming a file there raised, for its reason.
        what: the folder in words (``the manifest's folder``).
        advice: what to do.
    """
    reason = f" ({exc.strerror})" if exc is not None and exc.strerror else ""
    return OutputError(f"cannot write in {what} {os.fspath(folder)!r}{reason}; {advice}")


def check_folder_writable(
    folder: str | os.PathLike, what: str = "the output folder", advice: str = "choose a writable folder"
) -> None:
    """Refuse, before any work, a folder this process cannot create files in.

    ``access()`` says no for a read-only file system, an immutable folder and an ACL too,
    root included.

    Raises:
        OutputError: the folder does not exist, or cannot be written in (``what`` and
            ``advice`` word it).
    """
    if not os.path.isdir(folder):
        raise OutputError(f"{what} {os.fspath(folder)!r} does not exist; create it first")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise unwritable_folder_error(folder, what=what, advice=advice)


def remove_quietly(paths: Iterable[str | os.PathLike]) -> None:
    """Remove files if they are there; a file that cannot be removed is logged, never raised
    (cleanup runs while another error is on its way and must not replace it)."""
    for path in paths:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.debug("cannot remove %s: %s", path, exc)


def check_output_path(path: str | os.PathLike, *, overwrite: bool, inputs: tuple = ()) -> Path:
    """Validate an output path before any work is done.

    Raises:
        OutputError: the folder is missing or not writable, the file exists without
            ``overwrite``, or the output would replace one of ``inputs``.
    """
    out = Path(path)
    parent = _folder(out)
    if parent.exists() and not parent.is_dir():
        raise OutputError(f"output folder {str(parent)!r} is a file, not a folder; choose an output path in a folder")
    if not parent.is_dir():
        raise OutputError(f"output folder {str(parent)!r} does not exist; create it first")
    for item in inputs:
        try:
            same = out.resolve() == Path(item).resolve()
        except OSError:  # an input that is a URL or /vsi path cannot be the output
            continue
        if same:
            raise OutputError(f"output {str(out)!r} is the same file as the input; choose another name")
    if out.exists() and not overwrite:
        raise OutputError(f"output {str(out)!r} already exists; pass overwrite=True to replace it")
    check_folder_writable(parent)
    return out


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it to ``path`` on success.

    On any exception (Ctrl-C included) the temporary file is removed and the target is left
    untouched.

    Raises:
        OutputError: the temporary file cannot be created in the target's folder, or cannot
            be renamed to the target (a folder that is read-only or not the user's).
    """
    target = Path(path)
    folder = _folder(target)
    suffix = suffix if suffix is not None else "".join(target.suffixes) or ".tmp"
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=f".part{suffix}", dir=folder)
    except FileNotFoundError:
        raise OutputError(f"output folder {str(folder)!r} does not exist; create it first") from None
    except OSError as exc:
        raise unwritable_folder_error(folder, exc) from None
    tmp = Path(tmp_name)
    try:
        os.close(fd)
        tmp.unlink()  # drivers want to create the file themselves
        try:
            yield tmp
        except Exception as exc:  # noqa: BLE001 - re-raised as it came unless the disk is full
            full = disk_full_error(exc, target)
            if full is None:
                raise
            raise full from None
        try:
            os.replace(tmp, target)
        except OSError as exc:
            raise OutputError(f"cannot rename the finished {str(target)!r} into place ({exc.strerror or exc}); "
                              "check the output folder's permissions") from None
    finally:
        remove_quietly([tmp])


#: Below this much free space, an output that GDAL could not write completely is blamed on a
#: full disk in the error (above it, the error gives the free space and GDAL's file).
FULL_DISK_BYTES = 16 * 2**20


def disk_space(folder: str | os.PathLike, full_below: int = FULL_DISK_BYTES) -> tuple[str, bool]:
    """``(note, full)``: whether the disk holding ``folder`` has less than ``full_below``
    bytes left, and in words: ``the disk holding 'out' is full (12.0 KiB free)``, or the
    free space where it is not full; ``("", False)`` where it cannot be told (a URL, a
    folder that went, a file system that reports no size)."""
    import shutil

    try:
        usage = shutil.disk_usage(folder)
    except OSError:
        return "", False
    if usage.total <= 0:  # a file system that reports no size (some network mounts)
        return "", False
    free = usage.free
    size = float(free)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            break
        size /= 1024
    amount = f"{free} bytes" if unit == "bytes" else f"{size:.1f} {unit}"
    if free < full_below:
        return f"the disk holding {os.fspath(folder)!r} is full ({amount} free)", True
    return f"{amount} free in {os.fspath(folder)!r}", False


def disk_full_error(exc: BaseException, path: str | os.PathLike) -> OutputError | None:
    """The error to raise where writing ``path`` failed with ``exc`` because its disk is
    full, or ``None`` where it failed for another reason.

    The operating system says so (``ENOSPC``, ``EDQUOT``), but libraries do not always pass
    that on (SQLite: ``database or disk is full``; torch: ``PytorchStreamWriter failed
    writing file``), so a library's error while the disk holding ``path`` has almost no
    space left counts too; an ``OSError`` counts only by its errno (a read error of a
    damaged input while the disk is nearly full keeps its own words).
    """
    import errno

    from .errors import GlgeoError

    writers = ("sqlite3", "fiona", "pyogrio", "rasterio", "torch")  # whose errors may mean a write failed
    if isinstance(exc, GlgeoError) or not (
        isinstance(exc, (OSError, RuntimeError)) or type(exc).__module__.split(".")[0] in writers
    ):
        return None  # says what to do already, or is no write's failure
    folder = _folder(Path(path))
    said_full = isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)
    note, full = disk_space(folder)
    if not said_full and (isinstance(exc, OSError) or not full):
        return None
    if not full:  # a quota: the disk itself has room
        note = str(exc.strerror or exc).rstrip(".").lower() if isinstance(exc, OSError) else str(exc)
    return OutputError(f"cannot write {os.fspath(path)!r}: {note}; free some space or choose another folder, "
                       "then run again")


def check_raster_complete(path: str | os.PathLike, name: str | os.PathLike | None = None, *,
                          sparse_ok: bool = False) -> None:
    """Raise unless every block of the raster GDAL wrote at ``path`` is in the file.

    GDAL does not raise when writing a block it had cached fails (a full disk, a quota):
    its GTiff and COG drivers print ``_tiffWriteProc: No space left on device`` and leave
    a file that lacks those blocks, or is cut short; a block never written reads back as
    no data without an error. So every raster glgeo writes is checked before it is renamed
    into place. A GeoTIFF is checked image by image (full resolution, overviews, masks):
    each block must have an offset, and end within the file. Other formats are read in full.

    Args:
        path: the file written (a temporary name).
        name: the output's name for the error (default ``path``).
        sparse_ok: blocks without an offset are allowed (GDAL's ``SPARSE_OK=TRUE``
            creation option leaves out blocks of no data); those present must be whole.

    Raises:
        OutputError: the file cannot be opened, or blocks are missing or cut off; the
            error says so, and that the disk is full where it is.
    """
    import warnings

    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioError

    path = Path(path)
    name = os.fspath(name if name is not None else path)
    try:
        size = path.stat().st_size
        with warnings.catch_warnings():  # a plain image's output has no georeferencing either
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            src = rasterio.open(path)
        with src:
            driver = src.driver
            if driver in ("GTiff", "COG"):
                missing = _tiff_blocks_missing(path, size, sparse_ok)
            else:
                for _, window in src.block_windows(1):
                    src.read(window=window, masked=False)
                missing = 0
    except (OSError, RasterioError) as exc:
        reason = f"GDAL cannot read back what it wrote ({str(exc).split(': ')[-1]})"
    else:
        if not missing:
            return
        reason = f"{missing} of its blocks are missing from the file GDAL wrote"
    note, full = disk_space(_folder(Path(name)))
    advice = "free some space or choose another folder, then run again" if full else (
        "check the disk and the folder, then run again")
    raise OutputError(f"writing {name!r} failed: {reason}{'; ' + note if note else ''}; {advice}")


def _tiff_blocks_missing(path: Path, size: int, sparse_ok: bool = False) -> int:
    """Blocks of the GeoTIFF at ``path`` (``size`` bytes) that are not in the file: without
    an offset (never written; unless ``sparse_ok``) or running past its end, over every
    image in it."""
    import warnings

    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioError

    missing = 0
    directory = 0
    while True:
        try:  # GDAL opens the n-th image of a TIFF (overviews and masks too) as GTIFF_DIR:n:path
            with warnings.catch_warnings():  # an overview or a mask has no georeferencing of its own
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                src = rasterio.open(f"GTIFF_DIR:{directory + 1}:{path}")
        except RasterioError:
            if directory == 0:
                raise
            return missing
        directory += 1
        with src:
            rows, cols = src.block_shapes[0]
            bands = range(1, src.count + 1) if src.interleaving is not None and src.interleaving.name == "band" else [1]
            for band in bands:
                for y in range(-(-src.height // rows)):
                    for x in range(-(-src.width // cols)):
                        offset = src.get_tag_item(f"BLOCK_OFFSET_{x}_{y}", "TIFF", bidx=band)
                        length = src.get_tag_item(f"BLOCK_SIZE_{x}_{y}", "TIFF", bidx=band)
                        if not offset or not length:
                            missing += not sparse_ok
                        elif int(offset) + int(length) > size:
                            missing += 1
