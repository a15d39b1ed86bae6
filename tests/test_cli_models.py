"""``glgeo models``: the shipped zoo, listed for people and as JSON."""

from __future__ import annotations

import json

from click.testing import CliRunner

from glgeo.cli.main import cli
from glgeo.models import list_models, model_card


def test_models_command_lists_the_zoo():
    result = CliRunner().invoke(cli, ["models"])
    assert result.exit_code == 0, result.output
    for name in list_models():
        assert name in result.output
    assert "urban" in result.output and "building" in result.output
    listed = json.loads(CliRunner().invoke(cli, ["models", "--json"]).output)
    assert list(listed) == list_models() and listed["inria-buildings"] == model_card("inria-buildings")
