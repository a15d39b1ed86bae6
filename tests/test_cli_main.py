"""The command group: lazy sub-commands, global flags, one-line errors."""

from __future__ import annotations

from click.testing import CliRunner

from glgeo.cli.main import cli


def test_quiet_and_verbose_flags_work_after_the_sub_command():
    result = CliRunner().invoke(cli, ["models", "-q"])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(cli, ["models", "-v", "--json"])
    assert result.exit_code == 0, result.output


def test_unknown_command_and_library_errors_are_one_line(tmp_path):
    result = CliRunner().invoke(cli, ["segment", str(tmp_path / "missing.tif"), "--out", str(tmp_path / "o.tif")])
    assert result.exit_code != 0
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
