"""The scenes a user names: paths, URLs, globs and ``@list.txt`` files."""

from __future__ import annotations

import glob
import logging
import os
import re
from pathlib import Path
from typing import Iterable, Sequence
from urllib.parse import urlparse

from ..errors import InputError

log = logging.getLogger("glgeo.batch")

_GLOB_CHARS = re.compile(r"[*?\[]")
_REMOTE = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*://|/vsi)")


def is_remote(name: str) -> bool:
    """Whether ``name`` is a URL or a GDAL virtual path rather than a local file."""
    return bool(_REMOTE.match(name))


def read_input_list(path: str | os.PathLike) -> list[str]:
    """The scenes listed in a text file, one path or URL per line.

    Blank lines and lines starting with ``#`` are ignored; relative paths are relative to
    the list file's folder; globs are expanded.

    Raises:
        InputError: the file cannot be read, or a glob in it matches nothing.
    """
    list_path = Path(path)
    try:
        lines = list_path.read_text(encoding="utf-8-sig").splitlines()  # -sig: a BOM as Windows editors save it
    except OSError as exc:
        raise InputError(f"cannot read the list of scenes {str(list_path)!r}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise InputError(
            f"the list of scenes {str(list_path)!r} is no UTF-8 text (a raster named with @ by mistake, or a list saved"
            " in another encoding); give a text file of paths or URLs, one per line, saved as UTF-8"
        ) from None
    items = []
    for line in lines:
        item = line.strip()
        if not item or item.startswith("#"):
            continue
        if not is_remote(item) and not os.path.isabs(item):
            item = str(list_path.parent / item)
        items.append(item)
    return _expand(items, origin=f" (listed in {str(list_path)!r})")


#: Files a glob such as ``tiles/**/*`` matches beside the scenes that are never scenes: GDAL's
#: and QGIS's sidecars, world files, and the batch's own manifests.
SIDECAR_SUFFIXES = (".aux.xml", ".ovr", ".msk", ".qml", ".qmd", ".prj", ".tfw", ".tifw", ".jgw", ".pgw", ".wld",
                    ".json", ".csv")


def _expand(items: Iterable[str], origin: str = "") -> list[str]:
    scenes: list[str] = []
    for item in items:
        if not is_remote(item) and _GLOB_CHARS.search(item):
            matches = sorted(p for p in glob.glob(os.path.expanduser(item), recursive=True) if os.path.isfile(p))
            sidecars = [p for p in matches if p.lower().endswith(SIDECAR_SUFFIXES)]
            if sidecars and len(sidecars) < len(matches):
                log.info("%s also matches %d sidecar, world or manifest files (e.g. %s): not scenes, left out",
                         item, len(sidecars), os.path.basename(sidecars[0]))
                left_out = set(sidecars)
                matches = [p for p in matches if p not in left_out]
            if not matches:
                raise InputError(f"no file matches {item!r}{origin}; check the pattern (quote it so the shell does not expand it)")
            scenes.extend(matches)
        else:
            scenes.append(os.path.expanduser(item) if not is_remote(item) else item)
    return scenes


def expand_inputs(items: Sequence[str | os.PathLike], input_lists: Sequence[str | os.PathLike] = ()) -> list[str]:
    """The scenes a user named: paths, URLs, globs and ``@list.txt`` files, in order.

    Args:
        items: scene paths, URLs (``https://``, ``s3://``, ``/vsicurl/``...), glob patterns
            (``tiles/**/*.tif``) or ``@file``: a text file of paths/URLs, one per line.
        input_lists: more text files of paths/URLs.

    Returns:
        The scenes, each file once (as first named; a local file named twice, by another
        relative or absolute path or through a symbolic link, is one scene, with a warning).

    Raises:
        InputError: nothing was given, a glob matches nothing, or a list cannot be read.
    """
    scenes: list[str] = []
    for item in items:
        text = os.fspath(item)
        if text.startswith("@"):
            scenes.extend(read_input_list(text[1:]))
        else:
            scenes.extend(_expand([text]))
    for list_file in input_lists:
        scenes.extend(read_input_list(list_file))
    unique = _once_each(scenes)
    if not unique:
        raise InputError("no scenes given: name scene files, globs, URLs or a list file (@list.txt)")
    return unique


def _once_each(scenes: Sequence[str]) -> list[str]:
    """``scenes`` with each file once, as first named: a local file is the same scene under
    any name (``in/a/t.tif``, ``$PWD/in/a/t.tif``, a path through a symbolic link); one
    warning says how many were given twice, with an example."""
    first: dict[str, str] = {}
    repeats: list[tuple[str, str]] = []
    for scene in scenes:
        key = scene if is_remote(scene) else os.path.realpath(scene)
        if key in first:
            repeats.append((first[key], scene))
        else:
            first[key] = scene
    if repeats:
        kept, again = repeats[0]
        example = f"{kept!r} given again" if again == kept else f"{kept!r} given again as {again!r}"
        files = len({first_name for first_name, _ in repeats})
        log.warning(
            "%d file%s named more than once (e.g. %s): each file runs once, under the name it was first given",
            files, "s were" if files > 1 else " was", example,
        )
    return list(first.values())


def scene_stem(scene: str) -> str:
    """The name a scene's outputs get: its file name without the extension.

    ``https://host/a/b/tile_12.tif?sig=...`` -> ``tile_12``.
    """
    path = urlparse(scene).path if "://" in scene else scene
    name = os.path.basename(path.rstrip("/"))
    return os.path.splitext(name)[0] or name
