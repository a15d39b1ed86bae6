"""Random state dicts shaped like the released checkpoints: the keys and shapes of the list,
reproducible per seed, numerically tame."""

from __future__ import annotations

import json

import torch

from glgeo.models.testing import random_released_state


def test_released_keys_and_shapes_with_the_classes_asked_for(glnet_keys_file):
    keys = json.loads(glnet_keys_file.read_text())["state_dict"]
    state = random_released_state(glnet_keys_file, seed=1, n_class=2)
    assert list(state) == list(keys)
    for key, shape in keys.items():
        if key.endswith(("classify.weight", "classify.bias")) or "ensemble_conv" in key:
            assert state[key].shape[0] == 2 and list(state[key].shape[1:]) == list(shape[1:])
        else:
            assert list(state[key].shape) == list(shape), key


def test_values_are_reproducible_and_tame(glnet_keys_file):
    first, again = random_released_state(glnet_keys_file, 3), random_released_state(glnet_keys_file, 3)
    other = random_released_state(glnet_keys_file, 4)
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first if k.endswith(".weight"))
    assert all((v > 0).all() for k, v in first.items() if k.endswith("running_var"))
