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


def test_models_shows_each_report_by_what_it_scored_and_one_model_by_name():
    """The figures are the cards' reports (held-out scenes), named so, not "validation"; a
    report whose scenes' most common class is not the training majority shows both."""
    result = CliRunner().invoke(cli, ["models", "deepglobe-landcover"])
    assert result.exit_code == 0 and "inria-buildings" not in result.output and "validation:" not in result.output
    card = model_card("deepglobe-landcover")
    for report in card["reports"]:
        m = report["metrics"]
        assert f"  {report['label']}: mIoU {100 * m['miou']:.1f}, pixel accuracy {100 * m['pixel_accuracy']:.1f}" in result.output
    full = card["reports"][1]  # the 4 full-resolution scenes: agriculture in training, water there
    own = full["scenes_majority_baseline"]
    assert own["class"] != full["majority_baseline"]["class"]
    assert f"these scenes' most common, {own['class']}: {100 * own['miou']:.1f})" in result.output
    assert "MiB; card: " in result.output
    unknown = CliRunner().invoke(cli, ["models", "nope"])
    assert unknown.exit_code == 1 and unknown.output.strip().splitlines() == [
        "Error: no zoo model or checkpoint file named nope; the zoo has deepglobe-landcover, inria-buildings"]


def test_models_describes_a_checkpoint_file(tmp_path):
    """A file (glgeo train's, import-glnet's) is described from what it records."""
    from glgeo.schemes import INRIA

    from fixtures.checkpoints import save_tiny_checkpoint

    path = save_tiny_checkpoint(tmp_path / "mine.pt", INRIA, widths=(32, 16))
    result = CliRunner().invoke(cli, ["models", str(path)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"{path}\n") and "classes (inria): background, building" in result.output
    assert "heads 32/16" in result.output and "deepglobe-landcover" not in result.output
    assert CliRunner().invoke(cli, ["models", str(path), "--json"]).exit_code == 2
