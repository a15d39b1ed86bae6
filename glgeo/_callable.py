"""Let ``glgeo.segment(...)`` and ``glgeo.vectorize(...)`` work however glgeo was imported.

``glgeo.segment`` is both a submodule and the function the package re-exports. Once the
submodule is imported (``from glgeo.segment import ...``, or by glgeo itself), Python binds
the name ``glgeo.segment`` to the module, which would shadow the function. Making the
module callable keeps the documented API working in every import order.
"""

from __future__ import annotations

import sys
import types
from typing import Any, Callable


def make_module_callable(module_name: str, func: Callable[..., Any]) -> None:
    """Make ``sys.modules[module_name](...)`` call ``func``."""

    class _CallableModule(types.ModuleType):
        __doc__ = sys.modules[module_name].__doc__

        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            return func(*args, **kwargs)

    sys.modules[module_name].__class__ = _CallableModule
