"""GLNet's modes: one list, used by the network, inference, training and the CLI."""

from __future__ import annotations

import typing

import click
import pytest

from glgeo.cli.main import cli
from glgeo.errors import InputError
from glgeo.modes import MODE_STAGES, MODES, TRAIN_MODES


def test_trainable_modes_are_modes_and_each_ends_its_stages():
    assert MODES == ("global", "local", "g2l", "bidirectional")
    assert tuple(MODE_STAGES) == TRAIN_MODES and set(TRAIN_MODES) < set(MODES)
    assert [MODE_STAGES[m][-1] for m in TRAIN_MODES] == [1, 2, 3]


def _choices(command: str, option: str) -> tuple[str, ...]:
    params = {p.name: p for p in cli.get_command(click.Context(cli), command).params}
    assert isinstance(params[option].type, click.Choice)
    return tuple(params[option].type.choices)


def test_the_network_inference_training_and_cli_share_the_list():
    from glgeo.inference import InferenceSettings
    from glgeo.models import MODES as model_modes
    from glgeo.models.glnet import GLNetConfig
    from glgeo.training import TrainSettings

    assert model_modes is MODES
    inference_mode = typing.get_type_hints(InferenceSettings)["mode"]
    assert set(typing.get_args(typing.get_args(inference_mode)[0])) == set(MODES)
    assert set(typing.get_args(typing.get_type_hints(TrainSettings)["mode"])) == set(TRAIN_MODES)
    assert _choices("segment", "mode") == MODES and _choices("evaluate", "mode") == MODES
    assert _choices("train", "mode") == TRAIN_MODES
    with pytest.raises(InputError, match="choose from: global, local, g2l, bidirectional"):
        GLNetConfig("resnet18", mode="g2L")
