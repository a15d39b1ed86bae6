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
        yield tmp
        try:
            os.replace(tmp, target)
        except OSError as exc:
            raise OutputError(f"cannot rename the finished {str(target)!r} into place ({exc.strerror or exc}); "
                              "check the output folder's permissions") from None
    finally:
        remove_quietly([tmp])
