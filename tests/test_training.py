"""glgeo train: every stage for a step on CPU (resnet18, small sizes), resume, errors.

The stage tests check that each stage trains exactly its parts: stage 2 moves the local
branch and the aggregation conv but not the global branch; stage 3 moves the L->G branch
and the aggregation conv but neither the local nor the stage-1 global branch.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from glgeo.cli.main import cli
from glgeo.models import load_checkpoint
from glgeo.training import merge_patch_logits, poly_lr
from fixtures.layouts import make_deepglobe, make_folder, make_inria

SMALL = ["--backbone", "resnet18", "--pyramid-channels", "32", "--segmentation-channels", "16", "--global-size", "64",
         "--patch-size", "96", "--batch-size", "2", "--sub-batch", "3", "--loader-workers", "0", "--limit-train-batches", "1",
         "--limit-val-batches", "1", "--epochs", "1", "--lr", "1e-3"]


def run_cli(*args: str) -> str:
    result = CliRunner().invoke(cli, ["-q", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def _changed(a: dict, b: dict, prefix: str) -> bool:
    keys = [k for k in a if k.startswith(prefix) and a[k].is_floating_point() and "running" not in k]
    assert keys, prefix
    return any(not torch.equal(a[k], b[k]) for k in keys)


@pytest.fixture(scope="module")
def inria_run(tmp_path_factory):
    root = make_inria(tmp_path_factory.mktemp("inria"), cities=("austin", "vienna"), tiles=6, size=128)
    out = tmp_path_factory.mktemp("runs") / "run"
    output = run_cli("train", "--dataset", "inria", "--root", str(root), "--out", str(out), *SMALL)
    return root, out, output


def test_all_three_stages_write_glgeo_checkpoints_and_logs(inria_run):
    root, out, output = inria_run
    assert "stage 3: 1 epoch in" in output and "model:" in output
    for stage in (1, 2, 3):
        folder = out / f"stage{stage}"
        ck = load_checkpoint(folder / "best.pt")
        assert ck.metadata["training"]["stage"] == stage and ck.scheme.name == "inria"
        assert ck.global_size == 64 and ck.patch_size == 96 and ck.model.config.mode == "bidirectional"
        # an earlier stage's later parts are untrained: it runs the mode it was trained up to
        assert ck.mode == {1: "global", 2: "g2l", 3: "bidirectional"}[stage]
        assert ck.scene_scale == 1.0 and ck.gsd == pytest.approx(0.5)  # the fixtures' 50 cm UTM tiles
        assert (folder / "last.pt").is_file() and (folder / "lightning" / "last.ckpt").is_file()
        rows = list(csv.DictReader(open(folder / "logs" / "csv" / "metrics.csv")))
        assert any(r.get("train/loss_step") for r in rows) and any(r.get("val/miou") for r in rows)
        assert list((folder / "logs" / "tensorboard").glob("events.out.tfevents.*"))
    final = load_checkpoint(out / "model.pt")
    assert final.metadata["training"]["stage"] == 3 and "glgeo" in final.metadata["command"]
    from glgeo.inference import InferenceSettings
    from glgeo.segmentation import segment

    scene = next(p for p in root.rglob("*.tif") if "images" in p.parts)
    for stage, mode in ((1, "global"), (2, "g2l")):
        summary = segment(scene, out / f"stage{stage}_pred.tif", model=out / f"stage{stage}" / "best.pt",
                          settings=InferenceSettings(device="cpu"))
        assert summary.stats.mode == mode
    assert (out / "split.json").is_file()


def test_each_stage_records_its_start_and_optimisation(inria_run):
    """What a checkpoint's training record says beside the command line: the weights each
    stage started from, the optimiser's decay and seed, the stage's fmreg weight."""
    _, out, _ = inria_run
    records = {s: load_checkpoint(out / f"stage{s}" / "best.pt").metadata["training"] for s in (1, 2, 3)}
    assert records[1]["init"] is None and records[1]["backbone_weights"] is None  # random
    for stage in (2, 3):
        assert records[stage]["init"] == str(out / f"stage{stage - 1}" / "best.pt")
    assert [records[s]["fmreg"] for s in (1, 2, 3)] == [0.0, 0.15, 0.0]  # stage 2's L2 only
    assert all(r["weight_decay"] == 5e-4 and r["seed"] == 0 and r["poly_power"] == 0.9 for r in records.values())


def test_each_stage_trains_only_its_parts(inria_run):
    _, out, _ = inria_run
    s1, s2, s3 = (load_checkpoint(out / f"stage{s}" / "best.pt").model.state_dict() for s in (1, 2, 3))
    assert not _changed(s1, s2, "global_branch.")
    assert _changed(s1, s2, "local_branch.") and _changed(s1, s2, "aggregation.")
    assert not _changed(s2, s3, "global_branch.") and not _changed(s2, s3, "local_branch.")
    assert _changed(s2, s3, "global_l2g.") and _changed(s2, s3, "aggregation.")
    # stage 3 started from the stage-1 global backbone (start_stage3), then trained it
    fresh = load_checkpoint(out / "stage2" / "best.pt").model
    fresh.start_stage3()
    assert _changed(fresh.state_dict(), s3, "global_l2g.backbone.")


def test_segment_uses_the_trained_model(inria_run, tmp_path):
    import rasterio

    root, out, _ = inria_run
    scene = root / "AerialImageDataset" / "train" / "images" / "austin1.tif"
    pred = tmp_path / "pred.tif"
    run_cli("segment", str(scene), "-o", str(pred), "--model", str(out / "model.pt"), "--device", "cpu")
    with rasterio.open(pred) as dst, rasterio.open(scene) as src:
        assert dst.crs == src.crs and dst.transform == src.transform
        assert set(dst.read(1).ravel().tolist()) <= {0, 1}


def _saved_seconds(lightning_checkpoint: Path) -> float:
    return float(torch.load(lightning_checkpoint, map_location="cpu", weights_only=False)["glgeo_train_seconds"])


def test_resume_continues_a_stage_and_skips_finished_ones(tmp_path):
    root = make_folder(tmp_path / "ds", names=("a", "b", "c"), size=96, n_classes=2, values=(0, 255))
    out = tmp_path / "run"
    base = ["train", "--dataset", "folder", "--scheme", "inria", "--root", str(root), "--out", str(out), "--mode", "global",
            *SMALL]
    run_cli(*base)
    assert load_checkpoint(out / "stage1" / "last.pt").metadata["epoch"] == 0
    # Same run again without --resume: refused, nothing overwritten.
    result = CliRunner().invoke(cli, base)
    assert result.exit_code == 1 and "pass --resume" in result.output
    # Resume with more epochs: Lightning restores epoch 0 and continues with epoch 1.
    done = json.loads((out / "stage1" / "done.json").read_text())
    s0 = _saved_seconds(out / "stage1" / "lightning" / "last.ckpt")  # the first epoch's training time
    (out / "stage1" / "done.json").unlink()  # as if interrupted after its first epoch
    run_cli(*base[:-6], "--epochs", "2", "--lr", "1e-3", "--resume")
    last = load_checkpoint(out / "stage1" / "last.pt")
    assert last.metadata["epoch"] == 1
    first, resumed = (list(csv.DictReader(open(out / "stage1" / "logs" / v / "metrics.csv"))) for v in ("csv", "csv-1"))
    assert {r["epoch"] for r in first if r.get("train/loss_epoch")} == {"0"}
    assert {r["epoch"] for r in resumed if r.get("train/loss_epoch")} == {"1"}
    # the stage's summary covers both processes: its first epoch's loss, and both's seconds
    after = json.loads((out / "stage1" / "done.json").read_text())
    epoch1 = next(float(r["train/loss_epoch"]) for r in resumed if r.get("train/loss_epoch"))
    assert after["first_loss"] == pytest.approx(done["first_loss"]) and after["last_loss"] == pytest.approx(epoch1)
    # the time: the first process's (saved with its epoch) plus the resumed one's
    s1 = _saved_seconds(out / "stage1" / "lightning" / "last.ckpt")
    assert after["epochs"] == 2 and s1 > s0 > 0 and after["seconds"] >= s1
    # A finished stage is skipped on --resume.
    before = (out / "stage1" / "last.pt").stat().st_mtime_ns
    output = run_cli(*base, "--resume")
    assert (out / "stage1" / "last.pt").stat().st_mtime_ns == before and "stage 1" in output


def test_stage_without_its_predecessor_and_class_count_errors(tmp_path):
    root = make_deepglobe(tmp_path / "dg", ids=("1", "2", "3"), size=96)
    result = CliRunner().invoke(cli, ["train", "--dataset", "deepglobe", "--root", str(root), "--out", str(tmp_path / "r"),
                                      "--stage", "2", *SMALL])
    assert result.exit_code == 1 and "train stage 1 first or pass --init" in result.output
    # a 2-class (Inria) checkpoint cannot start a 7-class DeepGlobe run
    inria = make_folder(tmp_path / "inria", names=("a", "b"), size=96, n_classes=2, values=(0, 255))
    run_cli("train", "--dataset", "folder", "--scheme", "inria", "--root", str(inria), "--out", str(tmp_path / "i"),
            "--mode", "global", *SMALL)
    result = CliRunner().invoke(cli, ["train", "--dataset", "deepglobe", "--root", str(root), "--out", str(tmp_path / "r2"),
                                      "--init", str(tmp_path / "i" / "model.pt"), *SMALL])
    assert result.exit_code == 1 and "predicts 2 classes but the dataset's scheme 'deepglobe' has 7" in result.output
    result = CliRunner().invoke(cli, ["train", "--dataset", "deepglobe", "--root", str(tmp_path), "--out", str(tmp_path / "r3")])
    assert result.exit_code == 1 and "not a DeepGlobe land-cover folder" in result.output
    result = CliRunner().invoke(cli, ["train", "--dataset", "inria", "--root", str(root), "--out", str(tmp_path / "r4"),
                                      "--mode", "g2l", "--stage", "3"])
    assert result.exit_code == 1 and "no stage 3" in result.output


def test_deepglobe_layout_stage_1_and_2(tmp_path):
    root = make_deepglobe(tmp_path / "dg", ids=("1", "2", "3", "4"), size=96)
    out = tmp_path / "run"
    run_cli("train", "--dataset", "deepglobe", "--root", str(root), "--out", str(out), "--mode", "g2l", *SMALL,
            "--blur-jitter", "1")  # blurred global images and patches
    ck = load_checkpoint(out / "model.pt")
    assert ck.scheme.name == "deepglobe" and ck.mode == "g2l" and ck.metadata["training"]["stage"] == 2
    assert ck.metadata["training"]["augmentation"]["blur_jitter"] == 1.0
    # the seeded DeepGlobe split of 4 scenes: 2 train, 1 val, 1 test
    assert (ck.metadata["training"]["train_scenes"], ck.metadata["training"]["val_scenes"]) == (2, 1)


def test_backbones_start_from_a_model_of_another_scheme(tmp_path):
    """--backbone-weights with a glgeo checkpoint of other classes: a fresh 2-class run
    starts with its backbones, branch by branch, and its own fresh heads."""
    root = make_deepglobe(tmp_path / "dg", ids=("1", "2", "3"), size=96)
    run_cli("train", "--dataset", "deepglobe", "--root", str(root), "--out", str(tmp_path / "lc"), "--mode", "g2l", *SMALL)
    source = load_checkpoint(tmp_path / "lc" / "model.pt").model
    inria = make_folder(tmp_path / "inria", names=("a", "b"), size=96, n_classes=2, values=(0, 255))
    out = tmp_path / "b"
    run_cli("train", "--dataset", "folder", "--scheme", "inria", "--root", str(inria), "--out", str(out), "--mode", "g2l",
            "--stage", "1", "--backbone-weights", str(tmp_path / "lc" / "model.pt"), *SMALL, "--lr", "1e-12")
    ck = load_checkpoint(out / "model.pt")
    model = ck.model
    assert model.config.n_classes == 2
    assert ck.metadata["training"]["init"] is None
    assert ck.metadata["training"]["backbone_weights"] == str(tmp_path / "lc" / "model.pt")
    # a step at rate 1e-12 leaves the weights where they started (its BatchNorm statistics move)
    for branch in ("global_branch", "local_branch"):
        got, want = dict(getattr(model, branch).backbone.named_parameters()), dict(getattr(source, branch).backbone.named_parameters())
        assert got.keys() == want.keys()
        for k in want:
            torch.testing.assert_close(got[k], want[k], rtol=0, atol=1e-9)
    assert not torch.allclose(model.local_branch.backbone.conv1.weight, source.global_branch.backbone.conv1.weight)
    # another backbone: one line that says what to pass
    result = CliRunner().invoke(cli, ["train", "--dataset", "folder", "--scheme", "inria", "--root", str(inria),
                                      "--out", str(tmp_path / "c"), "--backbone-weights", str(tmp_path / "lc" / "model.pt"),
                                      *SMALL, "--backbone", "resnet34"])
    assert result.exit_code == 1 and "build a resnet18 model" in result.output


def test_poly_lr_and_patch_merge():
    assert poly_lr(1.0, 0.0) == 1.0 and poly_lr(1.0, 1.0) == 0.0
    assert poly_lr(2e-5, 0.5, 0.9) == pytest.approx(2e-5 * 0.5**0.9)
    logits = torch.zeros((2, 2, 4, 4))
    logits[0, 0] = 1.0
    logits[1, 1] = 3.0
    boxes = torch.tensor([[0, 0, 16, 16], [0, 8, 16, 16]])
    merged = merge_patch_logits(logits, boxes, (16, 24), (4, 6))
    assert merged.shape == (2, 4, 6)
    assert merged[0, :, :2].eq(1).all() and merged[1, :, 2:].eq(3).all() and merged[0, :, 2:4].eq(1).all()
    assert merged[:, :, 4:].sum(0).eq(3).all()


@pytest.mark.slow
def test_lightning_ddp_with_two_cpu_processes(tmp_path):
    """Multi-process training (DDP, gloo) of every stage, through the command line."""
    root = make_inria(tmp_path / "inria", cities=("austin",), tiles=8, size=128)
    out = tmp_path / "run"
    exe = shutil.which("glgeo", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    if exe is None:
        pytest.skip("the glgeo command is not installed (DDP re-runs the command line in each process)")
    # -v: Lightning's INFO lines ("Initializing distributed ...") show at the CLI's level
    cmd = [exe, "-v", "train", "--dataset", "inria", "--root", str(root), "--out", str(out), "--accelerator", "cpu",
           "--devices", "2", "--strategy", "ddp", *SMALL[:-6], "--epochs", "1", "--lr", "1e-3"]
    env = {**os.environ, "PL_DISABLE_FORK": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in proc.stderr + proc.stdout
    for stage in (1, 2, 3):
        assert load_checkpoint(out / f"stage{stage}" / "best.pt").metadata["training"]["stage"] == stage


def test_epochs_and_rates_per_stage_of_the_mode():
    from glgeo.cli.train import _per_stage

    assert _per_stage(int, "20", "--epochs", "bidirectional") == (20, 20, 20)
    assert _per_stage(int, "100,80", "--epochs", "g2l") == (100, 80, 80)  # stage 3 unused by g2l
    assert _per_stage(float, "1e-3", "--lr", "global") == (1e-3, 1e-3, 1e-3)
    assert _per_stage(int, "1,2,3", "--epochs", "g2l") == (1, 2, 3)
    result = CliRunner().invoke(cli, ["train", "--dataset", "inria", "--root", ".", "--out", "x", "--epochs", "100,80"])
    assert result.exit_code == 2 and "one per stage of --mode bidirectional (3), got '100,80'" in result.output
    result = CliRunner().invoke(cli, ["train", "--dataset", "inria", "--root", ".", "--out", "x", "--lr", "fast"])
    assert result.exit_code == 2 and "expected numbers separated by commas, got 'fast'" in result.output


def test_a_batch_of_every_training_scene_is_warned_about(tmp_path, caplog):
    """With as many training scenes as --batch-size (or fewer), each epoch is one optimizer
    step: the run says so and names the remedy; a smaller batch is not warned about."""
    import json
    import logging

    root = make_folder(tmp_path / "ds", names=("a", "b", "c"), size=96, n_classes=2, values=(0, 255))
    (tmp_path / "split.json").write_text(json.dumps({"train": ["a", "b"], "val": ["c"]}))
    base = ["train", "--dataset", "folder", "--scheme", "inria", "--root", str(root), "--split-file",
            str(tmp_path / "split.json"), "--mode", "global", *SMALL]
    with caplog.at_level(logging.WARNING, logger="glgeo"):
        run_cli(*base, "--out", str(tmp_path / "r2"))  # SMALL: --batch-size 2
    warned = [r.getMessage() for r in caplog.records if "optimizer step" in r.getMessage()]
    assert warned == ["2 training scene(s) at a batch size of 2: one optimizer step per epoch; a smaller batch size "
                      "(--batch-size) takes more steps in the same time (docs/train.md)"]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="glgeo"):
        run_cli(*base, "--out", str(tmp_path / "r1"), "--batch-size", "1")
    assert not [r for r in caplog.records if "optimizer step" in r.getMessage()]


@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGTERM"])
def test_an_interrupted_run_says_what_it_finished_and_how_to_go_on(tmp_path, monkeypatch, signal_name):
    """Ctrl-C (or SIGTERM) in stage 2's third epoch: Lightning catches it and exits 1 without
    a word; glgeo says that stage 1 finished, where stage 2's last finished epoch is saved
    (every epoch, with or without validation: Lightning saved its last.ckpt only with its
    best epoch), and to resume; it exits 130 (143). Resuming goes on from epoch 2."""
    from glgeo.cli.main import Terminated
    from glgeo.training import GLNetTask

    root = make_folder(tmp_path / "ds", names=("a", "b", "c"), size=96, n_classes=2, values=(0, 255))
    split = tmp_path / "all-train.json"
    split.write_text(json.dumps({"train": ["a", "b", "c"], "val": [], "test": []}))  # no validation
    out = tmp_path / "run"
    base = ["train", "--dataset", "folder", "--scheme", "inria", "--root", str(root), "--out", str(out), "--mode", "g2l",
            "--split-file", str(split), *SMALL[:-4], "--epochs", "1,3", "--lr", "1e-3"]
    step = GLNetTask.training_step

    def interrupted(self, batch, batch_idx):
        if self.stage == 2 and self.current_epoch == 2:
            raise Terminated() if signal_name == "SIGTERM" else KeyboardInterrupt()
        return step(self, batch, batch_idx)

    monkeypatch.setattr(GLNetTask, "training_step", interrupted)
    result = CliRunner().invoke(cli, ["-q", *base])
    assert result.exit_code == (143 if signal_name == "SIGTERM" else 130), result.output
    message = result.output.strip().splitlines()[-1]
    last = out / "stage2" / "lightning" / "last.ckpt"
    assert message == (
        f"Interrupted in stage 2: stage 1 finished ({out / 'stage1' / 'best.pt'}); its last finished epoch is saved in"
        f" {last}. Run the same command with --resume to go on from there"
        " (model.pt is written when the last stage finishes)."
    )
    assert torch.load(last, map_location="cpu", weights_only=False)["epoch"] == 1  # epochs 0 and 1 finished
    assert not (out / "model.pt").exists() and (out / "stage1" / "done.json").is_file()
    monkeypatch.setattr(GLNetTask, "training_step", step)
    run_cli(*base, "--resume")
    assert load_checkpoint(out / "stage2" / "last.pt").metadata["epoch"] == 2 and (out / "model.pt").is_file()
    rows = list(csv.DictReader(open(out / "stage2" / "logs" / "csv-1" / "metrics.csv")))
    assert {r["epoch"] for r in rows if r.get("train/loss_epoch")} == {"2"}  # resumed after epoch 1, not from 0


def test_a_run_folder_that_cannot_be_is_refused_before_the_dataset_is_read(tmp_path):
    """--out naming a file, or a folder under a file: one line at once (they were tracebacks
    after the whole dataset check)."""
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    missing_dataset = tmp_path / "no-such-dataset"
    for out, message in ((a_file, "is a file, not a folder; choose another out folder"),
                         (a_file / "run", "cannot create the run folder")):
        result = CliRunner().invoke(cli, ["train", "--dataset", "folder", "--root", str(missing_dataset), "--out", str(out)])
        assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output, result.output


def test_resume_without_a_run_folder_is_refused_before_anything_is_made(tmp_path):
    """--resume with a mistyped --out started the whole run afresh without a word; a folder
    that exists resumes what it holds (here nothing: the dataset is read next)."""
    missing_dataset = tmp_path / "no-such-dataset"
    out = tmp_path / "runs" / "nosuchrun"
    args = ["train", "--dataset", "folder", "--root", str(missing_dataset), "--resume"]
    result = CliRunner().invoke(cli, [*args, "--out", str(out)])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert result.output.strip() == (
        f"Error: --resume found no run to resume: the run folder {str(out)!r} does not exist; check the out folder's"
        " name, or drop --resume to start a new run there"
    )
    assert not (tmp_path / "runs").exists()
    out.mkdir(parents=True)
    result = CliRunner().invoke(cli, [*args, "--out", str(out)])
    assert result.exit_code == 1 and "no run to resume" not in result.output and "no-such-dataset" in result.output


def test_the_split_is_recorded_and_a_resume_with_another_is_refused(tmp_path):
    """The checkpoint records the scenes trained and validated on (for evaluate to flag them);
    resuming a run with another split would train on scenes it held out: refused."""
    root = make_folder(tmp_path / "ds", names=("a", "b", "c", "d"), size=96, n_classes=2, values=(0, 255))
    out = tmp_path / "run"
    limit = SMALL.index("--limit-train-batches")
    whole_epochs = SMALL[:limit] + SMALL[limit + 2 : -4]
    base = ["train", "--dataset", "folder", "--scheme", "inria", "--root", str(root), "--out", str(out), "--mode", "global",
            *whole_epochs, "--epochs", "2", "--lr", "1e-3"]
    output = run_cli(*base)
    # the summary's losses are the first and last epochs' means, as the CSV log has them
    rows = list(csv.DictReader(open(out / "stage1" / "logs" / "csv" / "metrics.csv")))
    means = [float(r["train/loss_epoch"]) for r in rows if r.get("train/loss_epoch")]
    assert f"loss (epoch mean) {means[0]:.4f} -> {means[-1]:.4f}" in output, output
    recorded = load_checkpoint(out / "model.pt").metadata["training"]["split"]
    split = json.loads((out / "split.json").read_text())
    assert recorded == {"kind": "folder", "root": str(root), **split} and split["train"] and split["val"]
    # no --bands: each image's bands labelled red, green and blue were fed, as glgeo segment chooses them
    assert load_checkpoint(out / "model.pt").bands is None
    result = CliRunner().invoke(cli, [*base, "--resume", "--split-seed", "7"])
    assert result.exit_code == 1 and "was started with another split" in result.output, result.output
    assert json.loads((out / "split.json").read_text()) == split


def test_lightnings_warnings_about_itself_are_not_shown(tmp_path):
    """A run and its resume print none of Lightning's warnings about its own code (a torch
    deprecation inside Lightning, "Checkpoint directory ... exists" when a stage resumes)."""
    root = make_folder(tmp_path / "ds", names=("a", "b", "c"), size=96, n_classes=2, values=(0, 255))
    out = tmp_path / "run"
    base = ["train", "--dataset", "folder", "--scheme", "inria", "--root", str(root), "--out", str(out), "--mode", "global",
            *SMALL[:-4], "--lr", "1e-3"]

    def stderr(*args: str) -> str:
        run = subprocess.run([sys.executable, "-c", "from glgeo.cli.main import cli; cli()", *args],
                             capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert run.returncode == 0, run.stderr
        return run.stderr

    run_cli(*base, "--epochs", "1")
    (out / "stage1" / "done.json").unlink()  # as if interrupted after its first epoch
    resumed = stderr(*base, "--epochs", "2", "--resume")  # a process of its own: Python shows a warning once
    assert "LeafSpec" not in resumed and "Checkpoint directory" not in resumed, resumed


def test_ema_checkpoints_hold_the_weights_average_and_a_resume_continues_it(tmp_path):
    """--ema: validation, best.pt and last.pt use the moving average of the weights; Lightning's
    last.ckpt keeps the live weights and the average, so --resume continues both."""
    root = make_folder(tmp_path / "ds", names=("a", "b", "c"), size=96, n_classes=2, values=(0, 255))
    out = tmp_path / "run"
    base = ["train", "--dataset", "folder", "--scheme", "inria", "--root", str(root), "--out", str(out), "--mode", "global",
            *SMALL[:-4], "--lr", "1e-2"]
    run_cli(*base, "--epochs", "1", "--ema", "0.5")
    state = torch.load(out / "stage1" / "lightning" / "last.ckpt", map_location="cpu", weights_only=False)
    average = state["glgeo_weight_average"]
    assert average["updates"] == 1 and average["decay"] == 0.5
    live = {k.removeprefix("model."): v for k, v in state["state_dict"].items()}
    saved = load_checkpoint(out / "stage1" / "last.pt")
    assert saved.metadata["training"]["ema"] == 0.5
    weights = saved.model.state_dict()
    moved = [k for k, v in average["average"].items() if not torch.equal(v, live[k].float())]
    assert moved  # one step at decay 0.1 (warm-up): the average is not the weights
    for k in moved:
        assert torch.allclose(weights[k].float(), average["average"][k], atol=1e-3), k
    # resumed for a second epoch: the average goes on from its first update
    (out / "stage1" / "done.json").unlink()
    run_cli(*base, "--epochs", "2", "--ema", "0.5", "--resume")
    state = torch.load(out / "stage1" / "lightning" / "last.ckpt", map_location="cpu", weights_only=False)
    assert state["glgeo_weight_average"]["updates"] == 2
    # a run without an average cannot be resumed with one
    plain = tmp_path / "plain"
    run_cli(*[str(plain) if a == str(out) else a for a in base], "--epochs", "1")
    (plain / "stage1" / "done.json").unlink()
    result = CliRunner().invoke(cli, [*[str(plain) if a == str(out) else a for a in base], "--epochs", "2", "--ema",
                                      "0.5", "--resume"])
    assert result.exit_code == 1 and "kept no weight average: resume it with --ema 0" in result.output, result.output


def test_lovasz_adds_its_term_to_the_loss_and_is_recorded(tmp_path):
    """--lovasz W: every output's loss is the focal loss plus W times the Lovász-softmax
    loss; the same first batch (same seed, same data) then costs more, and the checkpoint
    records the weight."""
    root = make_folder(tmp_path / "ds", names=("a", "b", "c"), size=96, n_classes=2, values=(0, 255))
    losses = {}
    for weight in ("0", "2"):
        out = tmp_path / f"run{weight}"
        run_cli("train", "--dataset", "folder", "--scheme", "inria", "--root", str(root), "--out", str(out), "--mode",
                "global", *SMALL, "--lovasz", weight)
        rows = list(csv.DictReader(open(out / "stage1" / "logs" / "csv" / "metrics.csv")))
        losses[weight] = [float(r["train/loss_step"]) for r in rows if r.get("train/loss_step")][0]
        assert load_checkpoint(out / "model.pt").metadata["training"]["lovasz"] == float(weight)
    assert losses["2"] > losses["0"] + 0.1, losses


def test_a_later_stage_with_another_split_is_refused(tmp_path):
    """Stage 2 run into a folder whose stage 1 trained on another split replaced split.json
    without a word: scenes that trained the global branch landed in the test part."""
    root = make_folder(tmp_path / "ds", names=("a", "b", "c", "d", "e"), size=96, n_classes=2, values=(0, 255))
    out = tmp_path / "run"
    base = ["train", "--dataset", "folder", "--scheme", "inria", "--root", str(root), "--out", str(out), "--mode", "g2l",
            *SMALL]
    run_cli(*base, "--stage", "1")
    split = (out / "split.json").read_text()
    result = CliRunner().invoke(cli, [*base, "--stage", "2", "--split-seed", "7"])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert "was started with another split" in result.output and "stage 2 with this one would train on scenes it" \
        " held out" in result.output
    assert (out / "split.json").read_text() == split and not (out / "stage2").exists()
    run_cli(*base, "--stage", "2")  # the same split: stage 2 goes on from stage 1


def test_a_run_refused_late_leaves_its_out_folder_usable(tmp_path, monkeypatch):
    """An accelerator that is not here, GPU ids on the CPU, or a stage that fails before
    saving an epoch left stage1/logs behind, and the corrected rerun was told the folder
    already holds a training stage."""
    import glgeo.training as training

    root = make_folder(tmp_path / "ds", names=("a", "b", "c"), size=96, n_classes=2, values=(0, 255))
    out = tmp_path / "run"
    base = ["train", "--dataset", "folder", "--scheme", "inria", "--root", str(root), "--out", str(out), "--mode",
            "global", *SMALL]
    runner = CliRunner()
    if not torch.cuda.is_available():
        result = runner.invoke(cli, [*base, "--accelerator", "gpu"])
        assert result.exit_code == 1 and "--accelerator gpu asked for but no CUDA GPU is usable here" in result.output
        result = runner.invoke(cli, [*base, "--accelerator", "cpu", "--devices", "0,1"])
        assert result.exit_code == 1 and "--devices 0,1 names GPU ids, but the run is on the CPU" in result.output
    real = training._run_stage

    def failing(stage, *args, **kwargs):
        (out / f"stage{stage}" / "logs").mkdir(parents=True)
        raise RuntimeError("a failure inside Lightning")

    monkeypatch.setattr(training, "_run_stage", failing)
    with pytest.raises(RuntimeError):
        runner.invoke(cli, ["-q", *base], catch_exceptions=False)
    assert not out.exists()  # it made the folder and saved nothing there
    monkeypatch.setattr(training, "_run_stage", real)
    run_cli(*base)
    assert (out / "model.pt").is_file()


def test_a_run_that_saved_no_epoch_removes_the_run_folder_it_made(tmp_path, monkeypatch):
    """A run that failed (or was interrupted) before saving an epoch left OUT/split.json in a
    folder it had made, and the interrupted one said to --resume it; a folder that was
    there before is kept with what it held."""
    import glgeo.training as training

    root = make_folder(tmp_path / "ds", names=("a", "b", "c"), size=96, n_classes=2, values=(0, 255))
    out = tmp_path / "new" / "run"
    base = ["train", "--dataset", "folder", "--scheme", "inria", "--root", str(root), "--mode", "global", *SMALL]

    def failing(error, run=out):
        def run_stage(stage, *args, **kwargs):
            (run / f"stage{stage}" / "logs").mkdir(parents=True)
            raise error
        return run_stage

    monkeypatch.setattr(training, "_run_stage", failing(RuntimeError("a failure inside Lightning")))
    with pytest.raises(RuntimeError):
        CliRunner().invoke(cli, ["-q", *base, "--out", str(out)], catch_exceptions=False)
    assert not (tmp_path / "new").exists()
    monkeypatch.setattr(training, "_run_stage", failing(KeyboardInterrupt()))
    result = CliRunner().invoke(cli, ["-q", *base, "--out", str(out)])
    assert result.exit_code == 130 and result.output.strip().splitlines()[-1] == (
        f"Interrupted before any epoch was saved; the run folder {out} it had made was removed. Run the same command"
        " to start again."
    ), result.output
    assert not (tmp_path / "new").exists()
    out.mkdir(parents=True)
    (out / "notes.txt").write_text("kept")
    monkeypatch.setattr(training, "_run_stage", failing(RuntimeError("a failure inside Lightning")))
    with pytest.raises(RuntimeError):
        CliRunner().invoke(cli, ["-q", *base, "--out", str(out)], catch_exceptions=False)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "split.json"]
    # interrupted there before an epoch was saved: the stage folder goes too (it said to
    # --resume, and a plain rerun was refused for the stage folder it left)
    monkeypatch.setattr(training, "_run_stage", failing(KeyboardInterrupt()))
    result = CliRunner().invoke(cli, ["-q", *base, "--out", str(out)])
    assert result.exit_code == 130 and result.output.strip().splitlines()[-1] == (
        "Interrupted in stage 1: no epoch of it was saved, and no stage finished. Run the same command to start again."
    ), result.output
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "split.json"]
    # through a folder it makes and back up ('fresh/..') into one that was there: that one stays
    existing = tmp_path / "existing"
    existing.mkdir()
    dotted = tmp_path / "fresh" / ".." / "existing" / "run"
    monkeypatch.setattr(training, "_run_stage", failing(RuntimeError("a failure inside Lightning"), dotted))
    with pytest.raises(RuntimeError):
        CliRunner().invoke(cli, ["-q", *base, "--out", str(dotted)], catch_exceptions=False)
    assert existing.is_dir() and list(existing.iterdir()) == [] and not (tmp_path / "fresh").exists()


def test_init_from_a_model_of_other_class_names_says_what_becomes_what(tmp_path, caplog):
    """--init with a checkpoint of as many classes but other names trained on without a word
    ("building" became "water")."""
    import json as json_module

    from glgeo.schemes import ClassInfo, ClassScheme

    water = ClassScheme(name="water2", classes=(ClassInfo(0, "land", (0, 0, 0), 0), ClassInfo(1, "water", (0, 0, 255), 255)))
    scheme_file = tmp_path / "water.json"
    scheme_file.write_text(json_module.dumps(water.to_dict()))
    root = make_folder(tmp_path / "ds", names=("a", "b", "c"), size=96, n_classes=2, values=(0, 255))
    first = tmp_path / "first"
    base = ["train", "--dataset", "folder", "--root", str(root), "--mode", "global", *SMALL]
    run_cli(*base, "--scheme", "inria", "--out", str(first))
    with caplog.at_level(logging.WARNING, logger="glgeo.training"):
        run_cli(*base, "--scheme", str(scheme_file), "--out", str(tmp_path / "second"), "--init", str(first / "model.pt"))
    assert ("predicts background, building (scheme 'inria'), the dataset's scheme 'water2' has land, water: each of"
            " its classes continues as the dataset's class of the same id (background -> land, building -> water)"
            in caplog.text), caplog.text
    assert f"--backbone-weights {first / 'model.pt'} instead of --init" in caplog.text


def test_a_finished_run_moved_elsewhere_resumes(tmp_path, monkeypatch):
    """done.json kept the stage's files as paths from where the run started: a resume of a
    moved run folder (or from another directory) failed with a traceback."""
    root = make_folder(tmp_path / "ds", names=("a", "b", "c"), size=96, n_classes=2, values=(0, 255))
    monkeypatch.chdir(tmp_path)
    base = ["train", "--dataset", "folder", "--scheme", "inria", "--root", str(root), "--mode", "global", *SMALL]
    run_cli(*base, "--out", "run")
    shutil.move(tmp_path / "run", tmp_path / "moved")
    output = run_cli(*base, "--out", str(tmp_path / "moved"), "--resume")
    assert (tmp_path / "moved" / "model.pt").is_file(), output


def test_a_class_no_training_scene_holds_is_said(caplog):
    """--balance / --loss-balance read every training mask's class shares: a scored class
    none of them holds was left untrained without a word (its loss weight set to 1)."""
    from glgeo.training import _warn_absent_classes
    from fixtures.layouts import INT3

    with caplog.at_level(logging.WARNING, logger="glgeo.training"):
        _warn_absent_classes(np.array([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]]), INT3)
    assert "no training scene shows c2 in its mask (read at 64 x 64 px for balancing): the model cannot learn it" \
        in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="glgeo.training"):
        _warn_absent_classes(np.array([[0.5, 0.4, 0.1]]), INT3)
    assert caplog.text == ""


def test_a_resume_with_another_architecture_or_scale_is_refused(tmp_path):
    """A resume checked only the split: another backbone died in a traceback loading the
    weights, another --scale was accepted and recorded as if every epoch had read it."""
    root = make_folder(tmp_path / "ds", names=("a", "b", "c"), size=96, n_classes=2, values=(0, 255))
    out = tmp_path / "run"
    base = ["train", "--dataset", "folder", "--scheme", "inria", "--root", str(root), "--out", str(out), "--mode",
            "global", *SMALL]
    run_cli(*base)
    (out / "stage1" / "done.json").unlink()  # as if interrupted
    for extra, said in ((["--backbone", "resnet34"], "--backbone resnet34 (the run's: resnet18)"),
                        (["--scale", "0.5"], "--scale 0.5 (the run's: 1.0)")):
        result = CliRunner().invoke(cli, [*base, *extra, "--resume"])
        assert result.exit_code == 1 and "Traceback" not in result.output, result.output
        assert f"stage 1 of the run in {out} was trained with other settings: {said}" in result.output, result.output
    run_cli(*base, "--resume", "--epochs", "2")
