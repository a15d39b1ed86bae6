"""Exceptions raised by glgeo.

Every error derives from :class:`GlgeoError`; each subclass also inherits the builtin
exception that matches it (as ``rasterio.errors.RasterioIOError`` is an ``OSError``), so
callers can catch either. Messages say what was wrong and what to do about it: the command
line prints them as one line and exits with a non-zero status.
"""

from __future__ import annotations


class GlgeoError(Exception):
    """Root of every error glgeo raises on purpose."""


class InputError(GlgeoError, ValueError):
    """An argument or an input file is not what the operation needs."""


class SceneError(GlgeoError, OSError):
    """A scene (raster) is missing, unreadable or not a raster."""


class OutputError(GlgeoError, OSError):
    """An output cannot be written (exists, folder missing, same as input...)."""


class CheckpointError(GlgeoError, ValueError):
    """A checkpoint file is missing keys, has the wrong shapes or an unknown format."""


class UnknownNameError(GlgeoError, KeyError):
    """A name (backbone, class scheme, zoo model, class) is not registered.

    ``KeyError`` quotes its message with ``repr``; this one prints it as written.
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class DatasetError(GlgeoError, ValueError):
    """A dataset folder has the wrong layout, or its masks hold unknown values."""


class MissingDependencyError(GlgeoError, ImportError):
    """An optional dependency is not installed."""


class Interruption(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) after some outputs were finished: the message says what is there
    and how to go on.

    Args:
        message: what was finished, what was not, and how to finish it.
        cause: the interruption itself.
    """

    def __init__(self, message: str, cause: BaseException | None = None) -> None:
        super().__init__(message)
        self.cause = cause


class InternalError(GlgeoError, RuntimeError):
    """glgeo broke one of its own invariants: a bug in glgeo, not a problem with the input.

    The message says what went wrong; please report it with the command that raised it.
    """
