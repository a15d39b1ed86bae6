"""The command group: lazy sub-commands, global flags, one-line errors."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
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


def test_an_inconsistent_checkpoint_is_one_line_in_every_command_that_loads_one(tmp_path, tiny_checkpoint):
    """segment --model, models FILE and train --init printed load_checkpoint's traceback
    (here torch's size mismatch) for a glgeo checkpoint whose parts do not fit together."""
    import torch

    from fixtures.layouts import make_folder

    payload = torch.load(tiny_checkpoint, weights_only=True)
    payload["config"]["n_classes"] = 5
    bad = tmp_path / "bad.pt"
    torch.save(payload, bad)
    root = make_folder(tmp_path / "ds", names=("a", "b", "c"), size=64, n_classes=2, values=(0, 255))
    commands = {
        "segment": ["segment", str(_scene(tmp_path / "scene.tif")), "-o", str(tmp_path / "o.tif"), "--model", str(bad)],
        "models": ["models", str(bad)],
        "train": ["train", "--dataset", "folder", "--scheme", "inria", "--root", str(root), "--mode", "global",
                  "--accelerator", "cpu", "--loader-workers", "0", "--out", str(tmp_path / "run"), "--init", str(bad)],
    }
    for name, args in commands.items():
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 1 and "Traceback" not in result.output, (name, result.output)
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"Error: checkpoint {str(bad)!r} is inconsistent: its weights"
                                                       " do not fit its architecture (resnet18, 5 classes"), (name, lines)
        assert "size mismatch for " in lines[0] and lines[0].endswith("write it again with glgeo train or glgeo import-glnet")
    assert not (tmp_path / "o.tif").exists() and not (tmp_path / "run" / "model.pt").exists()
    # what the file holds is named in words, never as a flag the command does not have
    payload = torch.load(tiny_checkpoint, weights_only=True)
    payload["focal_gamma"] = -1.0
    torch.save(payload, bad)
    for name in ("segment", "models"):
        lines = CliRunner().invoke(cli, commands[name]).output.strip().splitlines()
        assert lines == [f"Error: checkpoint {str(bad)!r} is inconsistent: its focal gamma is -1.0, not a number, 0 or"
                         " more; the file is damaged or from another glgeo version: copy it again, or write it again"
                         " with glgeo train or glgeo import-glnet"], (name, lines)


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
    # every argument the training's refusals name (val_bbox was left as it is)
    assert cli_message("split by area (val_images, val_bbox, val_fraction)", "train") == (
        "split by area (--val-images, --val-bbox, --val-fraction)")
    assert cli_message("holdout_share and holdout_scenes hold out", "train") == "--holdout-share and --holdout-scenes hold out"
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


def test_every_option_a_library_message_names_is_said_as_its_flag():
    """A message names an argument (``got color_jitter=2.0``) and the command line says it as
    the flag that sets it; a name left out of the list stayed a Python name on the terminal."""
    import re

    import click

    from glgeo.cli.main import _ARGUMENTS, cli_message

    ctx = click.Context(cli)
    params = [p for n in cli.list_commands(ctx) for p in cli.get_command(ctx, n).params]
    # a parameter's name and its flags' (--truth is the parameter truths)
    names = {p.name for p in params} | {o.lstrip("-").replace("-", "_") for p in params for o in p.opts if o.startswith("--")}
    root = Path(__file__).resolve().parents[1]
    source = "\n".join(p.read_text() for d in ("glgeo", "models") for p in (root / d).rglob("*.py"))
    named = {n for n in names if re.search(r"\b" + re.escape(n) + r"=(\{|\.\.\.|%|[A-Z]{2})", source)}
    assert {"truth", "images", "model"} <= named
    assert named and not named - set(_ARGUMENTS), sorted(named - set(_ARGUMENTS))
    assert cli_message("got color_jitter=2.0") == "got --color-jitter 2.0"


def _scene(path: Path) -> Path:
    import numpy as np

    return write_geotiff(path, np.random.default_rng(0).integers(0, 256, (3, 40, 30), dtype=np.uint8))


def test_sigterm_cleans_up_as_ctrl_c_does_and_exits_143(tmp_path, tiny_checkpoint, monkeypatch):
    """``kill PID`` (a job scheduler's time limit) while rows are written: the stage files
    go, the command says so and exits with 128 + SIGTERM."""
    import os
    import signal
    import threading

    import glgeo.writer

    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers can only be set in the main thread")
    scene = _scene(tmp_path / "scene.tif")
    real_write = glgeo.writer.ClassRasterWriter.write

    def write_then_terminated(self, band):
        real_write(self, band)
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(glgeo.writer.ClassRasterWriter, "write", write_then_terminated)
    unhandled = []
    previous = signal.signal(signal.SIGTERM, lambda *_: unhandled.append(True))  # where glgeo would not handle it
    try:
        result = CliRunner().invoke(cli, ["segment", str(scene), "-o", str(tmp_path / "a.tif"), "--probabilities",
                                          str(tmp_path / "p.tif"), "--model", str(tiny_checkpoint), "--device", "cpu"])
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert not unhandled
    assert result.exit_code == 143, result.output
    assert result.stderr.strip().splitlines()[-1] == "Interrupted; no partial output was left behind."
    assert "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.tif"]
    assert signal.getsignal(signal.SIGTERM) is previous  # the command's handler is gone with it


@pytest.mark.parametrize("gap_s,survives", [(0.0, True), (1.3, False)])
def test_a_sigterm_sent_twice_at_once_is_one_stop(gap_s, survives):
    """GNU ``timeout`` signals the command and its process group: two SIGTERMs at once. The
    second ended the command with no word while the first's cleanup ran (a split left its
    temporary blocks, half the time); now only a second SIGTERM a second or more later
    ends it at once."""
    import subprocess

    script = (
        "import os, signal, time\n"
        "from glgeo.cli.main import Terminated, _sigterm_interrupts\n"
        "with _sigterm_interrupts():\n"
        "    try:\n"
        "        os.kill(os.getpid(), signal.SIGTERM)\n"
        "        time.sleep(1)\n"
        "    except Terminated:\n"
        f"        time.sleep({gap_s})\n"
        "        os.kill(os.getpid(), signal.SIGTERM)  # while the first one's cleanup runs\n"
        "        time.sleep(0.2)\n"
        "        print('cleaned up')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    if survives:
        assert done.returncode == 0 and done.stdout.strip() == "cleaned up", done.stderr
    else:
        assert done.returncode == -15 and "cleaned up" not in done.stdout


def test_quiet_silences_warnings_here_and_in_the_processes_dask_starts(monkeypatch):
    """-q is "only errors": no Python warning in this process, and a process started from
    this one's environment (a local Dask cluster's worker) prints no glgeo warning either,
    but still keeps the warnings a scene's manifest row lists."""
    import subprocess
    import sys
    import warnings

    from glgeo.batch.worker import WORKER_LOG_LEVEL
    from glgeo.cli.main import WORKER_LOG_LEVEL as named_here

    assert named_here == WORKER_LOG_LEVEL
    seen: dict = {}

    def list_models():
        with warnings.catch_warnings(record=True) as caught:
            warnings.warn("a library warning", UserWarning)
        seen["warnings"] = [str(w.message) for w in caught]
        # what a worker does: import distributed (which reads Dask's configuration), set up
        # its printing, then log, outside a scene and inside one
        code = ("import distributed, logging; from glgeo.batch.worker import log_like_the_cli, scene_warnings\n"
                "log_like_the_cli(); log = logging.getLogger('glgeo.vectorization'); log.warning('square degrees')\n"
                "with scene_warnings() as kept: log.warning('no georeferencing')\n"
                "print(kept)")
        run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        seen["worker"], seen["kept"] = run.stderr, run.stdout.strip()
        return []

    monkeypatch.setattr("glgeo.models.zoo.list_models", list_models)
    monkeypatch.delenv(WORKER_LOG_LEVEL, raising=False)
    result = CliRunner().invoke(cli, ["-q", "models"])
    assert result.exit_code == 0, result.output
    assert seen["warnings"] == [] and "square degrees" not in seen["worker"], seen
    assert seen["kept"] == "['no georeferencing']", seen
    assert WORKER_LOG_LEVEL not in os.environ  # restored after the command
    result = CliRunner().invoke(cli, ["models"])  # without -q, both still show
    assert seen["warnings"] == ["a library warning"] and "square degrees" in seen["worker"], seen
    assert seen["kept"] == "['no georeferencing']", seen


@pytest.mark.parametrize("workers", [1, 2])
def test_a_quiet_batch_prints_no_warning_and_its_manifest_keeps_them(tmp_path, checkpoint, workers):
    """-q printed nothing and the manifest's rows listed no warnings: glgeo made none (and
    with --workers, importing Dask set glgeo's logger to errors only in the command's own
    process). A fresh process: the command configures logging itself there."""
    import subprocess
    import sys

    plain = [write_geotiff(tmp_path / f"plain_{i}.png", np.full((3, 64, 64), 90 + i, np.uint8), driver="PNG")
             for i in range(2)]
    out = tmp_path / "out"
    args = ["-q", "segment", *map(str, plain), "--out-dir", str(out), "--model", str(checkpoint), "--device", "cpu"]
    if workers > 1:
        args += ["--workers", str(workers)]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DASK_", "GLGEO_"))}
    done = subprocess.run([sys.executable, "-c", "from glgeo.cli.main import cli; cli()", *args],
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr.strip() == "" and done.stdout.strip() == "", (done.stdout, done.stderr)
    rows = json.loads((out / "manifest.json").read_text())["scenes"]
    assert [[w for w in row["warnings"] if "has no georeferencing" in w] for row in rows] == [
        [f"{p} has no georeferencing: the output has none either and areas are in pixels"] for p in plain], rows


def test_workers_print_glgeo_warnings_as_the_command_line_does():
    """A Dask worker's process has no logging configured: its glgeo warnings read
    "WARNING: ..." as the command's own, not as bare messages; a configured process keeps its own."""
    import subprocess
    import sys

    code = ("import distributed, logging; from glgeo.batch.worker import log_like_the_cli; log_like_the_cli();"
            " log_like_the_cli(); import warnings; warnings.warn('Dataset has no geotransform, gcps, or rpcs.');"
            " logging.getLogger('glgeo.vectorization').warning('a worker warning')")
    stderr = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stderr
    assert stderr.strip().splitlines()[-1] == "WARNING: a worker warning" and stderr.count("a worker warning") == 1
    assert "geotransform" not in stderr  # glgeo's own log says it, as on the command line
    configured = "import logging; logging.basicConfig(format='%(name)s| %(message)s'); " + code.split("; ", 1)[1]
    stderr = subprocess.run([sys.executable, "-c", configured], capture_output=True, text=True, timeout=120).stderr
    assert stderr.strip().splitlines()[-1] == "glgeo.vectorization| a worker warning"


@pytest.mark.parametrize("flags", [[], ["-q"]])
def test_help_loads_no_torch(flags):
    """Sub-commands are imported only when used, so help is instant; -q once imported
    glgeo.batch for an environment variable's name, and with it torch (1.6 s per command)."""
    import subprocess
    import sys

    code = ("import sys\nfrom glgeo.cli.main import cli\ntry:\n    cli([*sys.argv[1:], 'vectorize', '--help'])\n"
            "except SystemExit:\n    pass\nprint('torch loaded' if 'torch' in sys.modules else 'no torch')")
    done = subprocess.run([sys.executable, "-c", code, *flags], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip().splitlines()[-1] == "no torch", done.stdout[-500:] + done.stderr[-500:]
