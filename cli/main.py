"""The ``glgeo`` command group.

Sub-commands live one per module in this package and are imported only when used, so
``glgeo --help`` stays fast. Logging is configured once here; every library error
(:class:`glgeo.errors.GlgeoError`) becomes one line on stderr and exit status 1. Ctrl-C
(exit status 130) and SIGTERM (143) stop a command the same way: the library removes its
temporary files and the command says what was left.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import re
import signal
import sys
import threading
import time
import warnings
from typing import Iterator

import click

from glgeo import __version__
from glgeo.errors import GlgeoError, Interruption

#: command name -> "module:function" inside glgeo.cli
COMMANDS: dict[str, str] = {
    "segment": "glgeo.cli.segment:segment",
    "vectorize": "glgeo.cli.vectorize:vectorize",
    "train": "glgeo.cli.train:train",
    "evaluate": "glgeo.cli.evaluate:evaluate",
    "import-glnet": "glgeo.cli.import_glnet:import_glnet",
    "models": "glgeo.cli.models:models",
}


#: Python argument -> command-line flag, where the library's messages name an argument.
#: Most flags are the argument's name with dashes; these are the exceptions.
_FLAGS: dict[str, str] = {"creation_options": "--co", "rows_per_block": "--block-windows", "min_overlap": "--overlap"}
#: Per command, where one argument has another flag there.
_COMMAND_FLAGS: dict[str, dict[str, str]] = {
    "train": {"workers": "--loader-workers"},
}
#: Arguments the library's messages may name (``name=value``, or a bare name with an underscore).
_ARGUMENTS = (
    "bands", "batch_size", "block_size", "classes", "device", "format", "init", "input_lists", "layer",
    "min_area", "mode", "nodata", "out_dir", "overwrite", "precision", "probabilities", "resume", "scale",
    "scheme", "simplify", "split_file", "truth_encoding", "val_cities", "vector_merge", "workers", "aoi",
    "bounds", "creation_options", "grid_anchor", "ema", "gsd", "stretch", "res", "scene_size", "val_images",
    "val_fraction", "label_field", "scenes_per_epoch", "crop_jitter", "balance", "mosaic", "accelerator", "devices",
    "backbone_weights", "backbone", "pyramid_channels", "segmentation_channels", "val_bbox", "holdout_share",
    "holdout_scenes", "loss_balance", "global_size", "patch_size", "rows_per_block", "focal_gamma", "crs",
    "global_resampling", "epochs", "labels", "blend", "min_overlap", "footprint", "logit_upsampling", "nodata_fill",
    "global_view", "global_margin", "context_crop", "window_overlap", "edge_margin", "truth", "model", "images",
    "blur_jitter", "color_jitter", "cut_consistency", "lovasz",
)
#: Two arguments one flag sets together: ``rows_per_block=1, cols_per_block=9`` -> ``--block-windows 1x9``.
_BLOCK_SHAPE = re.compile(r"\brows_per_block=(\d+), cols_per_block=(\d+)")
#: Flags that take several values as separate words (the others take them comma-separated).
_SEPARATORS = {"bounds": " "}
_VALUE = r"(\([^)]*\)|\[[^\]]*\]|'[^']*'|\"[^\"]*\"|[^\s;,)]+)"
_ASSIGNMENT = re.compile(r"\b(" + "|".join(_ARGUMENTS) + r")=" + _VALUE)
_BARE = re.compile(r"\b(" + "|".join(a for a in _ARGUMENTS if "_" in a) + r")\b(?!=)")


def cli_message(message: str, command: str | None = None) -> str:
    """A library error's message in command-line terms: ``nodata=255`` -> ``--nodata 255``.

    Library errors name Python arguments (a Python caller has no flags); the command line
    shows the flag that sets each one: ``overwrite=True`` -> ``--overwrite``,
    ``bands=(1, 2, 3)`` -> ``--bands 1,2,3``, ``out_dir`` -> ``--out-dir``.
    """
    flags = {**_FLAGS, **_COMMAND_FLAGS.get(command or "", {})}

    def flag(name: str) -> str:
        return flags.get(name, "--" + name.replace("_", "-"))

    def assignment(match: re.Match) -> str:
        name, value = match.group(1), match.group(2)
        if value == "True":
            return flag(name)
        if value[:1] in "([":
            separator = _SEPARATORS.get(name, ",")
            value = separator.join(v.strip().strip("'\"") for v in value[1:-1].split(",") if v.strip())
        elif value[:1] in "'\"":
            value = value[1:-1]
        return f"{flag(name)} {value}"

    message = _BLOCK_SHAPE.sub(r"--block-windows \1x\2", message)
    return _BARE.sub(lambda m: flag(m.group(1)), _ASSIGNMENT.sub(assignment, message))


class _FlagTerms(logging.Filter):
    """Says a library logger's messages in command-line terms (``bands=(1, 2, 3)`` ->
    ``--bands 1,2,3``), as the group does for its errors."""

    def __init__(self, logger: str, command: str) -> None:
        super().__init__()
        self.logger = logger
        self.command = command

    def filter(self, record: logging.LogRecord) -> bool:
        ours = record.name == self.logger or record.name.startswith(self.logger + ".")
        if ours and not getattr(record, "glgeo_flag_terms", False):  # each handler asks: translate once
            record.msg, record.args = cli_message(record.getMessage(), self.command), ()
            record.glgeo_flag_terms = True
        return True


@contextlib.contextmanager
def on_the_handlers(record_filter: logging.Filter) -> Iterator[None]:
    """While the block runs, ``record_filter`` sees every record the root logger's handlers
    print (the handlers there are on entering: enter it inside
    :func:`~glgeo.cli.options.progress_bar`, whose handler prints above the bar)."""
    handlers = list(logging.getLogger().handlers)
    for handler in handlers:
        handler.addFilter(record_filter)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(record_filter)


def logs_in_flag_terms(logger: str, command: str) -> contextlib.AbstractContextManager:
    """While the block runs, the records of ``logger`` and the loggers below it name
    ``command``'s flags (:func:`cli_message`)."""
    return on_the_handlers(_FlagTerms(logger, command))


NOT_LEFT_BEHIND = "Interrupted; no partial output was left behind."


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread as Ctrl-C is, so that the same cleanup runs."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM after some outputs were finished: the message says what is there.

    Args:
        message: what was finished, what was not, and how to finish it.
        cause: the interruption (a :class:`Terminated` exits with status 143, else 130).
    """

    def __init__(self, message: str, cause: BaseException | None = None) -> None:
        super().__init__(message)
        self.status = interrupted_status(cause) if cause is not None else 130


def interrupted_status(exc: BaseException) -> int:
    """The exit status of an interruption: 143 (128 + SIGTERM) or 130 (128 + SIGINT)."""
    if isinstance(exc, Interrupted):
        return exc.status
    return 128 + signal.SIGTERM if isinstance(exc, Terminated) else 128 + signal.SIGINT


def refuse_released_conflicts() -> None:
    """--released with an option given on the command line that it would override (each
    command has some of :data:`glgeo.inference.RELEASED_SETTINGS` as options)."""
    from glgeo.inference import RELEASED_SETTINGS

    ctx = click.get_current_context()
    clashes = [
        f"--{name.replace('_', '-')} {ctx.params[name]}" for name, value in RELEASED_SETTINGS.items()
        if name in ctx.params and ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE
        and ctx.params[name] != value
    ]
    if clashes:
        raise click.UsageError(
            f"--released computes as the released code does, which {', '.join(clashes)} would change; drop "
            f"{'it' if len(clashes) == 1 else 'them'} or --released"
        )


#: A SIGTERM this soon after the first is the same stop sent twice, not a second one.
_SECOND_SIGTERM_S = 1.0


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """While a command runs, SIGTERM raises :class:`Terminated` in the main thread (as Ctrl-C
    raises KeyboardInterrupt), so outputs are cleaned up before the exit; a second SIGTERM
    ends the process at once, unless it comes within a second of the first: GNU
    ``timeout`` sends its signal to the command and to its process group, so the command
    gets it twice at once, and the second ended it before the first's cleanup had said
    anything (half the time, on a split)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set in the main thread
        return
    first: list[float] = []

    def terminate(signum: int, frame: object) -> None:
        if not first:
            first.append(time.monotonic())
            raise Terminated()
        if time.monotonic() - first[0] < _SECOND_SIGTERM_S:
            return  # the same stop, sent twice
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


#: Group options also accepted after the sub-command (``glgeo segment a.tif -o b.tif -q``).
_GLOBAL_FLAGS = {"-q", "--quiet", "-v", "-vv", "-vvv", "--verbose"}


class GlgeoGroup(click.Group):
    """A group that loads its commands lazily and turns library errors into one line."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # Users type -q / -v after the sub-command as often as before it; no sub-command
        # uses these flags, so move them in front where the group parses them.
        if "--" in args:
            head, tail = args[: args.index("--")], args[args.index("--") :]
        else:
            head, tail = args, []
        flags = [a for a in head if a in _GLOBAL_FLAGS]
        rest = [a for a in head if a not in _GLOBAL_FLAGS]
        return super().parse_args(ctx, flags + rest + tail)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        return getattr(importlib.import_module(module_name), attr)

    def invoke(self, ctx: click.Context):
        try:
            with _sigterm_interrupts():
                return super().invoke(ctx)
        except GlgeoError as exc:
            raise click.ClickException(cli_message(str(exc), ctx.invoked_subcommand)) from None
        except Interruption as exc:  # the library says what it finished
            click.echo(cli_message(str(exc), ctx.invoked_subcommand), err=True)
            sys.exit(interrupted_status(exc.cause or exc))
        except KeyboardInterrupt as exc:
            click.echo(str(exc) if isinstance(exc, Interrupted) else NOT_LEFT_BEHIND, err=True)
            sys.exit(interrupted_status(exc))


@click.group(cls=GlgeoGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="glgeo")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors; no progress bars.")
@click.pass_context
def cli(ctx: click.Context, verbose: int, quiet: bool) -> None:
    """Segment ultra-high resolution aerial and satellite scenes with GLNet.

    Predictions are georeferenced rasters and GeoPackages that open styled in QGIS.
    """
    shown = logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    # -q prints errors only, but warnings are still made: a manifest's rows keep them
    terminal = logging.StreamHandler(sys.stderr)
    terminal.setLevel(shown)
    logging.basicConfig(level=min(shown, logging.WARNING), format="%(levelname)s: %(message)s", handlers=[terminal])
    if verbose < 2:  # GDAL's "Created N records" per GeoPackage write: glgeo says what it wrote
        logging.getLogger("pyogrio").setLevel(max(shown, logging.WARNING))
    # JPEG/PNG scenes (DeepGlobe) have no georeferencing; glgeo handles that and says so in
    # its own log, so rasterio's per-open warning is noise on a terminal.
    warnings.filterwarnings("ignore", message="Dataset has no geotransform")
    if quiet:  # only errors: Python's warnings neither, until the command ends
        ctx.with_resource(warnings.catch_warnings())
        warnings.simplefilter("ignore")
        _quiet_local_workers(ctx)
    ctx.ensure_object(dict)
    ctx.obj["quiet"] = quiet
    ctx.obj["verbosity"] = verbose


#: :data:`glgeo.batch.worker.WORKER_LOG_LEVEL`, named here too: importing ``glgeo.batch``
#: loads torch, which every ``-q`` command would then wait for.
WORKER_LOG_LEVEL = "GLGEO_WORKER_LOG_LEVEL"


def _quiet_local_workers(ctx: click.Context) -> None:
    """-q also in the worker processes of a local Dask cluster (``--workers N``), which
    print glgeo's records with their own handler (:func:`glgeo.batch.worker.log_like_the_cli`):
    they start from this process's environment, so the level travels there (unless set).
    (Not Dask's ``DASK_LOGGING__GLGEO``: importing Dask here would apply it to this process's
    glgeo logger too, whose warnings the manifest's rows keep.)"""
    if WORKER_LOG_LEVEL in os.environ:
        return
    os.environ[WORKER_LOG_LEVEL] = "error"
    ctx.call_on_close(lambda: os.environ.pop(WORKER_LOG_LEVEL, None))
