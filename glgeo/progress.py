"""How long-running library functions report progress.

The library never prints: :func:`glgeo.segment`, :func:`glgeo.vectorize`, the evaluation
functions and :func:`glgeo.run_batch` take a ``progress`` callback that the command line
turns into a progress bar. Each function says in its docstring what it counts (patch
steps, raster blocks, images, scenes).
"""

from __future__ import annotations

from typing import Callable

#: ``progress(done, total)``: units of work done so far and in all; called after each unit.
ProgressCallback = Callable[[int, int], None]
