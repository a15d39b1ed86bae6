"""Options shared by several commands (like rasterio's ``rio/options.py``)."""

from __future__ import annotations

import click

overwrite_opt = click.option(
    "--overwrite", is_flag=True, help="Replace outputs that already exist."
)

device_opt = click.option(
    "--device",
    default="auto",
    show_default=True,
    help="auto, cpu, cuda or cuda:N.",
)

model_opt = click.option(
    "--model",
    "model",
    default="deepglobe-landcover",
    show_default=True,
    help="A zoo model name (see `glgeo models`) or a checkpoint file.",
)


def progress_enabled(ctx: click.Context) -> bool:
    """Whether the command should draw progress bars (not with -q, not when piped)."""
    obj = ctx.find_root().obj or {}
    return not obj.get("quiet", False)
