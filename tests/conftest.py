"""Shared fixtures: where the real sample data lives, small generated scenes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def sample_data_dir() -> Path:
    """``$GLGEO_SAMPLE_DATA``, default ``../shared/data`` beside the repository."""
    return Path(os.environ.get("GLGEO_SAMPLE_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def sample_data() -> Path:
    """The real sample data folder; skips the test when it is absent."""
    root = sample_data_dir()
    if not (root / "README.md").is_file():
        pytest.skip(f"real sample data not found at {root} (set GLGEO_SAMPLE_DATA)")
    return root


@pytest.fixture(scope="session")
def glnet_keys_file() -> Path:
    """The released checkpoints' key list (``../shared/glnet``); skips when absent."""
    path = Path(os.environ.get("GLGEO_GLNET_KEYS", REPO.parent / "shared" / "glnet" / "original_checkpoint_keys.json"))
    if not path.is_file():
        pytest.skip(f"{path} not found (set GLGEO_GLNET_KEYS)")
    return path


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A random-weight resnet18 GLNet (DeepGlobe classes) with tiny patch and global sizes."""
    import torch

    from glgeo.models import build_model
    from glgeo.models.checkpoint import save_checkpoint
    from glgeo.schemes import DEEPGLOBE

    torch.manual_seed(0)
    model = build_model("resnet18", DEEPGLOBE.n_classes, "g2l", pyramid_channels=16, segmentation_channels=8).eval()
    return save_checkpoint(tmp_path_factory.mktemp("model") / "tiny.pt", model, DEEPGLOBE, global_size=64, patch_size=64)
