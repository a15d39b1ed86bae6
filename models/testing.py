"""State dicts shaped like the GLNet authors' released checkpoints, filled with random values.

For checking a conversion (``glgeo import-glnet``) and for tests and benchmarks without the
authors' files: the key names and shapes come from the list of the released keys
(``original_checkpoint_keys.json``), the values are random but numerically tame (fan-in
scaled convolutions, positive BatchNorm variances) so that the network's outputs are
decisive rather than all tied, as they would be with the released code's initialisation.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch


def random_released_state(keys: Mapping[str, Any] | str | Path, seed: int, n_class: int = 7) -> dict[str, torch.Tensor]:
    """A ``module.``-prefixed state dict with the released keys and shapes.

    Args:
        keys: the parsed ``original_checkpoint_keys.json`` or its path.
        seed: random seed (each released file of a set gets its own).
        n_class: classes of the classifier and aggregation convs.
    """
    if not isinstance(keys, Mapping):
        keys = json.loads(Path(keys).read_text())
    g = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    for key, shape in keys["state_dict"].items():
        shape = list(shape)
        if key.endswith(("classify.weight", "classify.bias")) or "ensemble_conv" in key:
            shape[0] = n_class
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(100)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=g) + 0.5
        elif key.endswith(("running_mean", ".bias")):
            state[key] = torch.randn(shape, generator=g) * 0.05
        elif ".bn" in key or "downsample.1" in key:
            state[key] = 1.0 + 0.1 * torch.randn(shape, generator=g)
        else:
            fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
            state[key] = torch.randn(shape, generator=g) * (1.0 / fan_in) ** 0.5
    return state
