"""``glgeo train``: the options reach the library; option mistakes are one line."""

from __future__ import annotations

from click.testing import CliRunner

from glgeo.cli.main import cli
from glgeo.modes import TRAIN_MODES


def test_train_data_loaders_are_not_dask_workers():
    result = CliRunner().invoke(cli, ["train", "--dataset", "folder", "--root", "x", "--out", "y", "--workers", "2"])
    assert result.exit_code == 2 and "--loader-workers" in result.output
    assert "--loader-workers" in CliRunner().invoke(cli, ["train", "--help"]).output


def test_train_help_lists_the_trainable_modes_and_an_unknown_mode_is_refused():
    help_text = CliRunner().invoke(cli, ["train", "--help"]).output
    assert "[global|g2l|bidirectional]" in help_text and len(TRAIN_MODES) == 3
    result = CliRunner().invoke(cli, ["train", "--dataset", "folder", "--root", "x", "--out", "y", "--mode", "local"])
    assert result.exit_code == 2 and "'local' is not one of 'global', 'g2l', 'bidirectional'" in result.output
