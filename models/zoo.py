"""The model zoo: trained glgeo checkpoints shipped inside the package.

Each entry is ``zoo/<name>.pt`` (a glgeo checkpoint, weights in float16) with a model card
``zoo/<name>.json`` beside it (classes, backbone, mode, sizes, training data, metrics...)
and a human-readable ``zoo/<name>.md``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from glgeo.errors import UnknownNameError

ZOO_DIR = Path(__file__).parent / "zoo"


def list_models() -> list[str]:
    """Names of the zoo entries present in this installation."""
    return sorted(p.stem for p in ZOO_DIR.glob("*.pt") if (ZOO_DIR / f"{p.stem}.json").is_file())


def zoo_path(name: str) -> Path:
    """The checkpoint file of zoo entry ``name``."""
    if name not in list_models():
        raise UnknownNameError(f"unknown zoo model {name!r}; choose from: {', '.join(list_models()) or 'none'}")
    return ZOO_DIR / f"{name}.pt"


def model_card(name: str) -> dict[str, Any]:
    """The model card (JSON) of zoo entry ``name``."""
    zoo_path(name)
    return json.loads((ZOO_DIR / f"{name}.json").read_text())
