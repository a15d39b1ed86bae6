"""The command group: lazy sub-commands, global flags, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from glgeo.cli.main import cli

from fixtures.rasters import write_geotiff


def test_quiet_and_verbose_flags_work_after_the_sub_command():
    from glgeo.models.zoo import list_models

    before = CliRunner().invoke(cli, ["-q", "models"])
    after = CliRunner().invoke(cli, ["models", "-q"])
    assert before.exit_code == after.exit_code == 0, after.output
    assert after.output == before.output
    assert [line for line in after.output.splitlines() if not line.startswith(" ")] == list_models()
    result = CliRunner().invoke(cli, ["models", "-v", "--json"])
    assert result.exit_code == 0, result.output
    cards = json.loads(result.output)
    assert list(cards) == list_models() and cards["deepglobe-landcover"]["backbone"] == "resnet18"


def test_unknown_command_and_library_errors_are_one_line(tmp_path):
    result = CliRunner().invoke(cli, ["segmnet", "scene.tif"])
    assert result.exit_code == 2 and "No such command 'segmnet'" in result.output
    missing = tmp_path / "missing.tif"
    result = CliRunner().invoke(cli, ["segment", str(missing), "--out", str(tmp_path / "o.tif")])
    assert result.exit_code == 1
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    assert result.output.startswith("Error: ") and "missing.tif" in result.output
    assert not (tmp_path / "o.tif").exists()


def test_library_errors_name_arguments_and_the_cli_names_flags(tmp_path):
    """One message serves both: the library says ``nodata=255``, the command line ``--nodata 255``."""
    import numpy as np

    from glgeo.cli.main import cli_message
    from glgeo.errors import InputError, OutputError
    from glgeo.vectorization import vectorize

    raster = write_geotiff(tmp_path / "mask.tif", np.where(np.eye(8, dtype=bool), 255, 0).astype("uint8"))
    with pytest.raises(InputError, match="pass nodata=255") as library:
        vectorize(raster, tmp_path / "a.gpkg", scheme="inria")
    assert "--" not in str(library.value)
    result = CliRunner().invoke(cli, ["vectorize", str(raster), "-o", str(tmp_path / "a.gpkg"), "--scheme", "inria"])
    assert result.exit_code == 1 and "pass --nodata 255" in result.output and "nodata=" not in result.output
    (tmp_path / "b.gpkg").write_bytes(b"")
    with pytest.raises(OutputError, match="pass overwrite=True"):
        vectorize(raster, tmp_path / "b.gpkg", scheme="inria", nodata=255)
    result = CliRunner().invoke(cli, ["vectorize", str(raster), "-o", str(tmp_path / "b.gpkg"), "--scheme", "inria",
                                      "--nodata", "255"])
    assert result.exit_code == 1 and "pass --overwrite to replace it" in result.output
    assert cli_message("pass bands=(1, 1, 1) to choose them") == "pass --bands 1,1,1 to choose them"
    assert cli_message("choose another out_dir") == "choose another --out-dir"
    assert cli_message("run with workers=1", "train") == "run with --loader-workers 1"
    assert cli_message("use device='cpu'") == "use --device cpu"
    assert cli_message("creation_options names an empty or malformed option") == "--co names an empty or malformed option"


def test_library_messages_advise_no_flags():
    """No library module tells a Python caller to pass a command-line flag."""
    import re

    root = Path(__file__).resolve().parents[1]
    offenders = []
    for path in [*(root / "glgeo").rglob("*.py"), *(root / "models").rglob("*.py")]:
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            code = line.split("#")[0]
            if re.search(r"(Error|Exception)\(", code) or re.search(r'^\s*f?"', code):
                if re.search(r"\b(pass|use|with|choose another|give) --[a-z]", code):
                    offenders.append(f"{path.relative_to(root)}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
