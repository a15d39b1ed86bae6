"""``glgeo train``: the options reach the library; option mistakes are one line."""

from __future__ import annotations

import logging

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


def test_lightning_lines_print_once_at_the_applications_level():
    """Lightning's own console handler printed each of its lines a second time beside the
    root's (the CLI's), and at INFO whatever -q or -v asked for."""
    import logging

    import lightning.pytorch  # noqa: F401  (sets up Lightning's loggers)

    from glgeo.training import _lightning_logs_through_root

    records: list[str] = []

    class Count(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    root = logging.getLogger()
    counting, level = Count(), root.level
    root.addHandler(counting)
    saved = {name: (logging.getLogger(name).handlers[:], logging.getLogger(name).level, logging.getLogger(name).propagate)
             for name in ("lightning", "lightning.pytorch", "lightning.fabric")}
    try:
        root.setLevel(logging.WARNING)
        _lightning_logs_through_root()
        rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
        rank_zero.info("GPU available: False")
        rank_zero.warning("something to say")
        assert records == ["something to say"]
        assert not any(type(h) is logging.StreamHandler for h in logging.getLogger("lightning").handlers)
    finally:
        root.removeHandler(counting)
        root.setLevel(level)
        for name, (handlers, lvl, propagate) in saved.items():
            logger = logging.getLogger(name)
            logger.handlers[:] = handlers
            logger.setLevel(lvl)
            logger.propagate = propagate


def test_architecture_flags_with_init_are_refused_not_ignored(tiny_checkpoint):
    """--init trains the given model as it is: a --backbone other than its own was silently
    ignored. The same values (as a recipe repeats them for every stage) are fine."""
    from glgeo.models import load_checkpoint

    config = load_checkpoint(tiny_checkpoint).model.config
    args = ["train", "--dataset", "folder", "--root", "no-such-folder", "--out", "y", "--init", str(tiny_checkpoint)]
    result = CliRunner().invoke(cli, [*args, "--backbone", "resnet50", "--pyramid-channels", "999"])
    assert result.exit_code == 2
    assert (f"--init continues the model in {tiny_checkpoint} with its own architecture, so --backbone resnet50 (it has"
            f" {config.backbone}), --pyramid-channels 999 (it has {config.pyramid_channels}) cannot apply") in result.output
    result = CliRunner().invoke(cli, [*args, "--backbone", config.backbone])
    assert "--init continues" not in result.output and "no-such-folder" in result.output


def test_an_image_not_readable_as_rgb_is_one_line_before_training_naming_the_flag(tmp_path):
    """Four bands without colour labels: training refuses them as glgeo segment does, in
    the command's own terms, before the dataset's first epoch."""
    import numpy as np

    from fixtures.layouts import make_folder
    from fixtures.rasters import write_geotiff

    root = make_folder(tmp_path / "ds", names=("a", "b", "c"), size=64, n_classes=2, values=(0, 255))
    write_geotiff(root / "images" / "b.tif", np.zeros((4, 64, 64), np.uint8), photometric="MINISBLACK")
    base = ["train", "--dataset", "folder", "--scheme", "inria", "--root", str(root), "--mode", "global",
            "--accelerator", "cpu", "--loader-workers", "0"]
    result = CliRunner().invoke(cli, [*base, "--out", str(tmp_path / "run")])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert "b.tif: scene has 4 bands (alpha not counted)" in result.output and "pass --bands 1,2,3" in result.output
    assert not (tmp_path / "run" / "model.pt").exists()


def test_options_that_cannot_train_are_one_line_before_the_run_folder_is_made(tmp_path):
    """--focal-gamma -3, --backbone resnet7, --pyramid-channels 0, --precision fp16 on a CPU
    and --backbone-weights naming nothing were found only once the data had been read and
    split.json written: each left a run folder behind (here the dataset is missing too, so a
    late check would say that instead)."""
    import torch

    base = ["train", "--dataset", "folder", "--root", str(tmp_path / "no-such-dataset")]
    cases = [
        (["--focal-gamma", "-3"], "the focal loss's gamma must be >= 0 (0 is cross-entropy), got --focal-gamma -3.0"),
        (["--backbone", "resnet7"], "unknown backbone 'resnet7'; choose from: resnet18, resnet34, resnet50, resnet101"),
        (["--pyramid-channels", "0"], "--pyramid-channels 0 must be a whole number of channels, 1 or more (the paper's: 256)"),
        (["--segmentation-channels", "-1"],
         "--segmentation-channels -1 must be a whole number of channels, 1 or more (the paper's: 128)"),
        (["--backbone-weights", "garbage.tif"],
         "--backbone-weights garbage.tif: no checkpoint file or zoo model called 'garbage.tif'; zoo models: "),
        (["--init", "nosuch.pt"], "--init nosuch.pt: no checkpoint file or zoo model called 'nosuch.pt'"),
    ]
    if not torch.cuda.is_available():
        cases.append((["--precision", "fp16"], "fp16 needs a CUDA device; on a CPU use bf16 or fp32"))
    for i, (args, message) in enumerate(cases):
        out = tmp_path / f"run{i}"
        result = CliRunner().invoke(cli, [*base, "--out", str(out), *args])
        assert result.exit_code == 1 and "Traceback" not in result.output, (args, result.output)
        assert result.output.startswith(f"Error: {message}") and len(result.output.strip().splitlines()) == 1, result.output
        assert not out.exists(), args


def test_more_gpus_than_there_are_is_one_line_before_anything_is_made(tmp_path, monkeypatch, caplog):
    """A GPU count or id this machine does not have was Lightning's exception after the run
    folder was made (here the dataset is missing too, so a late check would say that);
    --devices 5 on a CPU-only machine started five training processes on two cores without
    a word: now with a warning."""
    import torch

    import glgeo.training as training

    base = ["train", "--dataset", "folder", "--root", str(tmp_path / "no-such-dataset"), "--out", str(tmp_path / "run")]
    monkeypatch.setattr(training, "_cpu_cores", lambda: 2, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cases = [
        (["--accelerator", "cpu", "--devices", "0"], "--devices 0: on the CPU (--accelerator cpu) give a count of training"
                                                     " processes, 1 or more, or leave --devices auto"),
        (["--devices", "two"], "--devices two is not a count or GPU ids: give --devices auto, a count (2) or ids (0,1)"),
        (["--devices", "0,x"], "--devices 0,x is not a count or GPU ids: give --devices auto, a count (2) or ids (0,1)"),
    ]
    gpu_cases = [
        (["--accelerator", "gpu", "--devices", "2"], "--devices 2 asks for 2 GPUs, but 1 CUDA GPU is usable here; give"
                                                     " --devices 1 or fewer, or leave --devices auto"),
        (["--devices", "0,3"], "--devices 0,3 names GPU 3, but 1 CUDA GPU is usable here (ids 0 to 0); give ids among"
                               " them, a count, or leave --devices auto"),
        (["--devices", "0"], "--devices 0: give a count of GPUs, 1 or more (-1: all of them), or leave --devices auto"),
    ]
    for gpu, (args, message) in [(False, c) for c in cases] + [(True, c) for c in gpu_cases]:
        if gpu:
            monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
            monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
        result = CliRunner().invoke(cli, [*base, *args])
        assert result.exit_code == 1 and "Traceback" not in result.output, (args, result.output)
        assert result.output.startswith(f"Error: {message}") and len(result.output.strip().splitlines()) == 1, result.output
        assert not (tmp_path / "run").exists(), args
    # more CPU processes than cores run (a test of several processes, say): said, not refused
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for args, where in ((["--devices", "5"], "no CUDA GPU is usable here"), (["--accelerator", "cpu", "--devices", "3"],
                                                                              "--accelerator cpu")):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="glgeo"):
            result = CliRunner().invoke(cli, [*base, *args])
        count = args[-1]
        assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
            f"--devices {count} runs {count} training processes on the CPU ({where}) with 2 CPU cores: each gets"
            " less than a core; give --devices 2 or fewer to train faster"
        ]
        assert result.exit_code == 1 and "no-such-dataset" in result.output.strip().splitlines()[-1]  # the dataset's error


def test_a_crs_proj_does_not_know_is_one_line_without_gdals_own(tmp_path):
    """GDAL printed its own 'ERROR 1: PROJ: ...' line before glgeo's (seen only in a real
    process: it writes to the terminal, not through Python)."""
    import subprocess
    import sys

    import numpy as np

    from fixtures.rasters import write_geotiff

    image = write_geotiff(tmp_path / "a.tif", np.zeros((3, 32, 32), np.uint8), crs="EPSG:32618")
    labels = tmp_path / "l.geojson"
    labels.write_text('{"type": "FeatureCollection", "features": []}')
    done = subprocess.run(
        [sys.executable, "-c", "from glgeo.cli.main import cli; cli()", "train", "--images", str(image), "--labels",
         str(labels), "--out", str(tmp_path / "run"), "--crs", "EPSG:99999"],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 1 and done.stderr.strip().splitlines() == [
        "Error: --crs EPSG:99999 is not a CRS rasterio understands: The EPSG code is unknown. PROJ:"
        " internal_proj_create_from_database: crs not found: EPSG:99999"
    ], done.stderr


def test_init_keeps_the_models_global_and_patch_sizes_unless_given(tmp_path, caplog):
    """Fine-tuned with --init, a model went on with the 508 px defaults whatever it had
    learned from (a 256 px buildings model saw 508 px patches): now it keeps its own sizes;
    sizes given otherwise are warned about."""
    from fixtures.checkpoints import save_tiny_checkpoint
    from fixtures.layouts import make_folder
    from glgeo.models import load_checkpoint
    from glgeo.schemes import INRIA

    root = make_folder(tmp_path / "ds", names=("a", "b", "c"), size=96, n_classes=2, values=(0, 255))
    init = save_tiny_checkpoint(tmp_path / "init.pt", INRIA, global_size=96, patch_size=64)
    base = ["train", "--dataset", "folder", "--scheme", "inria", "--root", str(root), "--mode", "global",
            "--accelerator", "cpu", "--loader-workers", "0", "--epochs", "1", "--batch-size", "2", "--init", str(init)]
    result = CliRunner().invoke(cli, [*base, "--out", str(tmp_path / "kept")])
    assert result.exit_code == 0, result.output
    # Lightning's bar is drawn on stderr, as glgeo's others: stdout holds the summary only
    assert "Epoch 0" in result.stderr and "Epoch" not in result.stdout and "stage 1: 1 epoch" in result.stdout
    model = load_checkpoint(tmp_path / "kept" / "model.pt")
    assert (model.global_size, model.patch_size) == (96, 64)
    assert "learned from global images of" not in caplog.text
    result = CliRunner().invoke(cli, [*base, "--out", str(tmp_path / "other"), "--global-size", "128"])
    assert result.exit_code == 0, result.output
    assert load_checkpoint(tmp_path / "other" / "model.pt").global_size == 128
    assert "learned from global images of 96 px, here 128" in caplog.text
