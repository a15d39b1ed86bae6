"""Atomic outputs: write to a temporary file beside the target, rename when complete.

An interrupted or failed run leaves no half-written file under the final name, so "the
output exists" always means "the output is complete" (batch runs rely on that to resume).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

from .errors import OutputError


def check_output_path(path: str | os.PathLike, *, overwrite: bool, inputs: tuple = ()) -> Path:
    """Validate an output path before any work is done.

    Raises:
        OutputError: the folder is missing, the file exists without ``overwrite``, or the
            output would replace one of ``inputs``.
    """
    out = Path(path)
    parent = out.parent if str(out.parent) else Path(".")
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
    return out


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it to ``path`` on success.

    On any exception the temporary file is removed and the target is left untouched.
    """
    target = Path(path)
    suffix = suffix if suffix is not None else "".join(target.suffixes) or ".tmp"
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=f".part{suffix}", dir=target.parent or ".")
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.unlink()  # drivers want to create the file themselves
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
