"""glgeo: segment ultra-high resolution aerial and satellite scenes with GLNet.

The library lives in ``glgeo`` (one concept per module), the network in ``glgeo.models``
and the command line in ``glgeo.cli``. The main entry points are re-exported here lazily,
so ``import glgeo`` stays cheap.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "segment", "vectorize"]


def __getattr__(name: str):
    # Lazy re-exports: importing torch and rasterio only when they are needed keeps
    # ``glgeo --help`` fast.
    if name == "segment":
        from .segment import segment

        return segment
    if name == "vectorize":
        from .vectorize import vectorize

        return vectorize
    raise AttributeError(f"module 'glgeo' has no attribute {name!r}")
