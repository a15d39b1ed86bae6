"""Options shared by several commands: creation options, plurals, label options, progress bars."""

from __future__ import annotations

import logging
import sys

import click
from click.testing import CliRunner

from glgeo.cli.options import creation_options_opt, labels_options, plural, progress_bar


@click.command()
@creation_options_opt
def show_options(creation_options):
    click.echo(sorted(creation_options.items()))


@click.command()
@labels_options
def show_labels(images, labels, label_field, layer):
    click.echo(f"{images} {labels} {label_field} {layer}")


@click.command()
@click.option("-q", "--quiet", is_flag=True)
@click.pass_context
def count_to_three(ctx, quiet):
    ctx.obj = {"quiet": quiet}
    with progress_bar(ctx, "step", "counting") as progress:
        for done in range(1, 4):
            progress(done, 3)


def test_creation_options_are_key_value_pairs_with_upper_case_keys():
    result = CliRunner().invoke(show_options, ["--co", "compress=zstd", "--profile", " ZLEVEL = 9"])
    assert result.exit_code == 0 and result.output == "[('COMPRESS', 'zstd'), ('ZLEVEL', '9')]\n"
    result = CliRunner().invoke(show_options, ["--co", "COMPRESS"])
    assert result.exit_code == 2 and "give KEY=VALUE, e.g. --co COMPRESS=ZSTD" in result.output


def test_plurals():
    assert plural(1, "polygon") == "1 polygon" and plural(2, "polygon") == "2 polygons"
    assert plural(3, "patch") == "3 patches" and plural(12345, "pixel") == "12,345 pixels"
    assert plural(2, "window", "context windows") == "2 context windows"


def test_label_options_come_together(tmp_path):
    labels = tmp_path / "labels.gpkg"
    labels.write_bytes(b"")
    result = CliRunner().invoke(show_labels, ["--images", "a.tif", "--images", "b*.tif", "--labels", str(labels),
                                              "--label-field", "kind"])
    assert result.exit_code == 0 and result.output == f"('a.tif', 'b*.tif') {labels} kind None\n"
    assert CliRunner().invoke(show_labels, ["--labels", str(tmp_path / "none.gpkg")]).exit_code == 2


def test_the_progress_bar_draws_on_stderr_unless_quiet():
    drawn = CliRunner().invoke(count_to_three, [])
    assert drawn.exit_code == 0 and "counting:" in drawn.stderr and "/3 " in drawn.stderr and drawn.stdout == ""
    quiet = CliRunner().invoke(count_to_three, ["-q"])
    assert quiet.exit_code == 0 and quiet.stderr == ""


@click.command()
@click.pass_context
def warn_halfway(ctx):
    ctx.obj = {"quiet": False}
    handler = logging.StreamHandler(sys.stderr)  # as `glgeo`'s logging.basicConfig installs it
    logging.getLogger().addHandler(handler)
    try:
        with progress_bar(ctx, "step", "counting") as progress:
            progress(1, 3)
            logging.getLogger("glgeo.test").warning("careful")
            progress(3, 3)
    finally:
        logging.getLogger().removeHandler(handler)


def test_a_warning_during_the_work_prints_on_its_own_line_not_into_the_bar():
    drawn = CliRunner().invoke(warn_halfway, [])
    assert drawn.exit_code == 0, drawn.output
    lines = drawn.stderr.replace("\r", "\n").split("\n")
    assert "careful" in lines  # without the redirect: "counting:  33%|...| 1/3 [...]careful"
