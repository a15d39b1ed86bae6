"""The default land-cover model's validation scenes, as the benchmarks that compare settings
or models on them read them (``global_margin.py``, ``mosaic_validation.py``).

They are the scenes its checkpoints were chosen on, never the held-out ones its card reports
on: the full-resolution scene 855 and the 38 validation ids of the 256 px copies (the card's
``validation_scenes``), these upsampled to the full-resolution 2448 px as
``models/zoo/prepare_landcover.py`` writes them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SIDE = 2448  # full-resolution DeepGlobe side, px at 0.5 m


def validation_scenes(data: Path) -> list[tuple[str, Path]]:
    """``(id, folder)`` of each scene, 855 first; exits with a message without the data."""
    from glgeo.models.zoo import model_card

    full, small = data / "deepglobe", data / "deepglobe_256"
    if not (full / "images" / "855_sat.jpg").is_file() or not small.is_dir():
        raise SystemExit(f"no DeepGlobe images under {data}: pass --data (the shared sample data folder)")
    return [("855", full)] + [(i, small) for i in model_card("deepglobe-landcover")["validation_scenes"]]


def read_scene(name: str, root: Path) -> tuple[np.ndarray, np.ndarray]:
    """A scene's ``(SIDE, SIDE, 3)`` uint8 colours (bilinear where upsampled) and its
    ``(SIDE, SIDE)`` class ids (nearest)."""
    from PIL import Image

    from glgeo.datasets import DEEPGLOBE_RGB_THRESHOLD, decode_mask
    from glgeo.schemes import get_scheme

    def colours(path: Path, resample) -> np.ndarray:
        image = Image.open(path).convert("RGB")
        return np.asarray(image if image.size == (SIDE, SIDE) else image.resize((SIDE, SIDE), resample))

    pixels = colours(root / "images" / f"{name}_sat.jpg", Image.BILINEAR)
    mask = colours(root / "masks" / f"{name}_mask.png", Image.NEAREST).transpose(2, 0, 1)
    truth = decode_mask(mask, get_scheme("deepglobe"), name, rgb_threshold=DEEPGLOBE_RGB_THRESHOLD)
    return pixels, truth.astype(np.int64)
