"""glgeo segment SCENE -o OUT --workers N (cli/split.py): one scene split over a cluster."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from glgeo.cli.main import cli

from fixtures.split import read, reference


def test_cli_splits_one_scene_over_an_existing_cluster(tmp_path, scene, checkpoint, client):
    ref_classes, ref_scores = reference(scene, checkpoint, tmp_path)
    args = ["-q", "segment", str(scene), "-o", str(tmp_path / "cli.tif"), "--model", str(checkpoint), "--device", "cpu",
            "--overlap", "8", "--batch-size", "8", "--footprint", "64", "--window-overlap", "8",
            "--probabilities", str(tmp_path / "cli-p.tif"), "--vector", str(tmp_path / "cli.gpkg"),
            "--scheduler", client.scheduler.address, "--block-windows", "2x2", "--json"]  # fmt: skip
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert len(report["blocks"]) == 4 and report["workers"] == client.scheduler.address
    classes, scores = read(tmp_path / "cli.tif", tmp_path / "cli-p.tif")
    np.testing.assert_array_equal(classes, ref_classes)
    np.testing.assert_array_equal(scores, ref_scores)
    assert (tmp_path / "cli.gpkg").is_file()
    # the one-line summary names the model and the precision, as one process's does
    result = CliRunner().invoke(cli, args[1:-1] + ["--overwrite"], catch_exceptions=False)  # without -q and --json
    assert result.exit_code == 0, result.output
    assert f"computed, model {checkpoint.name}, mode " in result.output and " on cpu" in result.output


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--block-windows", "0"], "give window rows per block"),
        (["--block-windows", "2by2"], "give window rows per block"),
        (["--block-windows", "2"], "--block-windows splits one scene"),  # without workers
    ],
)
def test_cli_split_options_are_checked(tmp_path, scene, checkpoint, extra, message):
    args = ["segment", str(scene), "-o", str(tmp_path / "x.tif"), "--model", str(checkpoint), *extra]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2 and message in result.output
    assert list(tmp_path.iterdir()) == []


def test_a_scene_of_one_block_is_said_in_flag_terms(tmp_path, scene, checkpoint, caplog):
    import logging

    args = ["segment", str(scene), "-o", str(tmp_path / "one.tif"), "--model", str(checkpoint), "--device", "cpu",
            "--overlap", "8", "--batch-size", "8", "--footprint", "64", "--window-overlap", "8", "--workers", "3"]
    with caplog.at_level(logging.WARNING, logger="glgeo"):
        result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "make 1 block for 3 workers: segmenting it in this process; --block-windows 1 makes 4 blocks" in caplog.text
    assert "12 context windows in 1 block in this process (1 computed" in result.output
    from glgeo.cli.main import cli_message

    said = cli_message("rows_per_block=1, cols_per_block=4 makes 9 blocks", "segment")
    assert said == "--block-windows 1x4 makes 9 blocks"


def test_a_local_cluster_split_is_as_quiet_as_a_batch(tmp_path, scene, checkpoint):
    """Without -v, Dask's INFO lines (Nanny, scheduler, closing comms) stay hidden on the split
    path too. A fresh process: the bug was in when distributed is first imported."""
    import os
    import subprocess
    import sys

    out = tmp_path / "map.tif"
    args = ["segment", str(scene), "-o", str(out), "--model", str(checkpoint), "--device", "cpu", "--overlap", "8",
            "--footprint", "64", "--window-overlap", "8", "--block-windows", "2x2", "--workers", "2"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASK_")}
    done = subprocess.run([sys.executable, "-c", "from glgeo.cli.main import cli; cli()", *args],
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    noise = [line for line in done.stderr.replace("\r", "\n").splitlines()
             if any(word in line for word in ("distributed", "Nanny", "Scheduler", "scheduler", "INFO", "Traceback"))]
    assert not noise, "\n".join(noise[:20])
    assert "blocks on a local cluster of 2 workers" in done.stdout
    classes, _ = read(out)
    assert classes.shape == (192, 160)


def test_an_interrupted_split_says_where_its_finished_blocks_are(tmp_path, scene, checkpoint, monkeypatch):
    import glgeo.batch

    out = tmp_path / "map.tif"
    folder = glgeo.batch.blocks_folder(out)

    def run_split(*args, **kwargs):
        folder.mkdir()
        raise KeyboardInterrupt

    monkeypatch.setattr(glgeo.batch, "run_split", run_split)
    args = ["segment", str(scene), "-o", str(out), "--model", str(checkpoint), "--workers", "2"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 130 and "no partial output" not in result.output
    # no block finished: nothing to resume (it said "the finished blocks are kept")
    assert result.stderr.strip().splitlines()[-1] == (
        f"Interrupted: {out} was not written; no block was finished ({folder} holds only the plan): run the same"
        " command again (or delete that folder)"
    )
    import shutil

    shutil.rmtree(folder)

    def run_split_with_a_block(*args, **kwargs):
        folder.mkdir()
        (folder / "block-000-000.tif").write_bytes(b"x")
        raise KeyboardInterrupt

    monkeypatch.setattr(glgeo.batch, "run_split", run_split_with_a_block)
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 130
    assert result.stderr.strip().splitlines()[-1] == (
        f"Interrupted: {out} was not written; 1 finished block is kept in {folder}: run the same command again to"
        " resume (or delete that folder)"
    )


def test_an_interrupted_split_run_says_what_the_library_kept_and_writes_the_manifest(tmp_path, scene, checkpoint,
                                                                                   monkeypatch):
    """The split's own words and its manifest (an interrupted split wrote none)."""
    import glgeo.batch

    real = glgeo.batch.run_split

    def in_this_process(*args, **kwargs):  # the blocks one after the other, interrupted after the first
        def progress(done, total):
            if done == 1:
                raise KeyboardInterrupt

        return real(*args, **{**kwargs, "workers": 1, "progress": progress})

    monkeypatch.setattr(glgeo.batch, "run_split", in_this_process)
    out, manifest = tmp_path / "map.tif", tmp_path / "m.json"
    args = ["segment", str(scene), "-o", str(out), "--model", str(checkpoint), "--device", "cpu", "--overlap", "8",
            "--batch-size", "8", "--footprint", "64", "--window-overlap", "8", "--block-windows", "1x1",
            "--workers", "2", "--manifest", str(manifest)]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    folder = glgeo.batch.blocks_folder(out)
    assert result.exit_code == 130, result.output
    assert result.stderr.strip().splitlines()[-1] == (
        f"Interrupted: {out} was not written; 1 of 12 blocks are finished, kept in {folder} (each block's row is in"
        f" {manifest}): run the same command again to resume (or delete that folder)"
    )
    blocks = json.loads(manifest.read_text())["blocks"]
    assert [b["status"] for b in blocks] == ["done"] + ["failed"] * 11


def test_a_split_s_manifest_names_the_geopackage_vectorized_after_it(tmp_path, scene, checkpoint, monkeypatch):
    """The command line vectorizes after the library wrote the manifest: its row said
    ``"vector": null`` beside the GeoPackage written."""
    import glgeo.batch
    import glgeo.vectorization

    real = glgeo.batch.run_split
    monkeypatch.setattr(glgeo.batch, "run_split", lambda *a, **k: real(*a, **{**k, "workers": 1}))  # in this process
    out, vector, manifest = tmp_path / "map.tif", tmp_path / "map.gpkg", tmp_path / "m.json"
    args = ["-q", "segment", str(scene), "-o", str(out), "--model", str(checkpoint), "--device", "cpu", "--overlap", "8",
            "--batch-size", "8", "--footprint", "64", "--window-overlap", "8", "--block-windows", "2x2",
            "--workers", "2", "--manifest", str(manifest), "--vector", str(vector)]  # fmt: skip
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    (row,) = json.loads(manifest.read_text())["scenes"]
    assert vector.is_file() and row["vector"] == str(vector) and row["status"] == "done"
    assert len(json.loads(manifest.read_text())["blocks"]) == 4

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(glgeo.vectorization, "vectorize", interrupted)
    result = CliRunner().invoke(cli, args + ["--overwrite"])
    assert result.exit_code == 130, result.output
    (row,) = json.loads(manifest.read_text())["scenes"]
    assert row["status"] == "failed" and row["vector"] is None and row["class_areas"]
    assert row["error"].startswith(f"Interrupted while vectorizing: {out} is complete; {vector} was not written")
