"""One scene split into blocks of context windows (glgeo.split, glgeo.batch.split): the plan,
bitwise identity with the in-process segment(), a real two-process LocalCluster, a worker
killed mid-block, resuming an interrupted run, the CLI, and the real model on real data."""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from click.testing import CliRunner
from rasterio.windows import Window

from glgeo.batch import BatchOptions, blocks_folder, read_manifest, run_split
from glgeo.cli.main import cli
from glgeo.errors import InputError, OutputError
from glgeo.inference import InferenceSettings, context_windows
from glgeo.segmentation import segment
from glgeo.split import plan_split
from glgeo.tiling import sub_grid

from fixtures.rasters import blocky_scene as write_scene

#: 64 px context windows overlapping by 8 px: a 192 x 160 scene has 4 x 3 windows.
SETTINGS = InferenceSettings(device="cpu", min_overlap=8, batch_size=8, footprint=64, window_overlap=8)


@pytest.fixture(scope="module")
def checkpoint(tiny_checkpoint) -> Path:
    return tiny_checkpoint


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    return write_scene(tmp_path_factory.mktemp("scene") / "scene.tif", seed=5, height=192, width=160)


def reference(scene: Path, checkpoint: Path, folder: Path, settings: InferenceSettings = SETTINGS) -> tuple[np.ndarray, np.ndarray]:
    """Classes and scores of the scene segmented in this process by glgeo.segment."""
    summary = segment(scene, folder / "ref.tif", model=str(checkpoint), settings=settings, probabilities=folder / "ref-p.tif")
    assert summary.stats.windows > 1
    return read(folder / "ref.tif", folder / "ref-p.tif")


def read(classes: Path, scores: Path | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    with rasterio.open(classes) as src:
        out = src.read(1)
    if scores is None:
        return out, None
    with rasterio.open(scores) as src:
        return out, src.read()


def hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# ------------------------------------------------------------------------------ plan


@pytest.mark.parametrize("working,scene_shape", [((192, 160), (192, 160)), ((300, 250), (1200, 1000)), ((97, 61), (130, 81))])
@pytest.mark.parametrize("rows,cols", [(1, 1), (2, None), (3, 2)])
def test_blocks_tile_the_scene_and_compute_every_window_touching_them(working, scene_shape, rows, cols):
    windows = context_windows(*working, 48, 8)
    plan = plan_split(windows, scene_shape, rows, cols)
    covered = np.zeros(scene_shape, dtype=np.int64)
    for block in plan.blocks:
        top, left, bottom, right = block.box
        covered[top:bottom, left:right] += 1
        r0, r1 = block.window_rows
        c0, c1 = block.window_cols
        rtop, rleft, rbottom, rright = block.reads
        for w in windows:  # every window touching the pixels it reads, and only those
            inside = r0 <= w.row < r1 and c0 <= w.col < c1
            assert inside == w.intersects(rtop, rleft, rbottom, rright)
    assert (covered == 1).all()
    assert plan.windows_computed >= len(windows)
    if len(plan.blocks) == 1:
        assert plan.overhead == 1


def test_strips_compute_one_window_row_twice_per_boundary():
    windows = context_windows(1000, 500, 100, 12)  # 12 window rows
    plan = plan_split(windows, (1000, 500), 4)
    assert (plan.block_rows, plan.block_cols) == (3, 1)
    assert plan.windows_computed == (12 + 2) * windows.n_cols
    assert plan.overhead == pytest.approx(14 / 12)


def test_sub_grid_keeps_the_spacing_and_refuses_outside_selections():
    windows = context_windows(300, 300, 64, 8)
    sub = sub_grid(windows, range(1, 3), range(2, 4))
    assert sub.row_starts == tuple(s - windows.row_starts[1] for s in windows.row_starts[1:3])
    assert sub.col_starts[0] == 0 and sub.scene_width == windows.col_starts[3] + 64 - windows.col_starts[2]
    with pytest.raises(InputError, match="not within"):
        sub_grid(windows, range(0, windows.n_rows + 1), range(0, 1))
    with pytest.raises(InputError, match="at least one window"):
        plan_split(windows, (300, 300), 0)


# ------------------------------------------------------------------ identity in-process


@pytest.mark.parametrize(
    "settings,rows,cols",
    [
        (SETTINGS, 1, 1),  # every window its own block
        (InferenceSettings(device="cpu", min_overlap=8, batch_size=8, footprint=48, scale=0.5), 1, 2),  # coarser grid
        (InferenceSettings(device="cpu", min_overlap=8, batch_size=8, footprint=64, blend="sum", logit_upsampling="nearest",
                           scale=0.75), 1, None),
    ],
    ids=["scale1-1x1", "scale0.5-1x2", "sum-nearest-scale0.75-strips"],
)
def test_split_in_process_equals_segment_bitwise(tmp_path, scene, checkpoint, settings, rows, cols):
    ref_classes, ref_scores = reference(scene, checkpoint, tmp_path, settings)
    result = run_split(scene, tmp_path / "split.tif", model=checkpoint, options=BatchOptions(settings=settings),
                       probabilities=tmp_path / "split-p.tif", rows_per_block=rows, cols_per_block=cols)
    assert len(result.plan.blocks) >= 3 and result.counts == {"done": len(result.plan.blocks), "skipped": 0, "failed": 0}
    classes, scores = read(tmp_path / "split.tif", tmp_path / "split-p.tif")
    np.testing.assert_array_equal(classes, ref_classes)
    np.testing.assert_array_equal(scores, ref_scores)
    assert result.summary.class_areas == segment_areas(tmp_path / "ref.tif")
    assert hidden(tmp_path) == [] and not blocks_folder(tmp_path / "split.tif").exists()


def test_split_of_an_area_of_interest_equals_segment(tmp_path, scene, checkpoint):
    settings = InferenceSettings(device="cpu", min_overlap=8, batch_size=8, footprint=48, scale=0.5)
    bounds = (500_010.0, 3_999_920.0, 500_070.0, 3_999_990.0)  # inside the scene's 80 x 96 m
    segment(scene, tmp_path / "ref.tif", model=str(checkpoint), settings=settings, bounds=bounds)
    result = run_split(scene, tmp_path / "split.tif", model=checkpoint, options=BatchOptions(settings=settings),
                       bounds=bounds, rows_per_block=1, cols_per_block=1)
    assert len(result.plan.blocks) >= 4
    ref = read(tmp_path / "ref.tif")[0]
    assert (ref == 255).any() and (ref != 255).any()  # nodata outside the box
    np.testing.assert_array_equal(read(tmp_path / "split.tif")[0], ref)


def segment_areas(path: Path) -> dict[str, float]:
    from glgeo.batch import class_areas_of

    return class_areas_of(path)[0]


def test_split_refuses_existing_outputs_and_bad_workers(tmp_path, scene, checkpoint):
    (tmp_path / "x.tif").write_bytes(b"")
    with pytest.raises(OutputError, match="already exists"):
        run_split(scene, tmp_path / "x.tif", model=checkpoint, options=BatchOptions(settings=SETTINGS))
    with pytest.raises(InputError, match="workers must be 1 or more"):
        run_split(scene, tmp_path / "y.tif", model=checkpoint, workers=0)
    assert hidden(tmp_path) == []


# ------------------------------------------------------------------ a real LocalCluster


def test_split_on_two_worker_processes_equals_segment(tmp_path, scene, checkpoint, client):
    ref_classes, ref_scores = reference(scene, checkpoint, tmp_path)
    manifest = tmp_path / "manifest.json"
    result = run_split(
        scene, tmp_path / "split.tif", model=checkpoint, probabilities=tmp_path / "split-p.tif",
        options=BatchOptions(settings=SETTINGS, manifest=manifest), rows_per_block=2, cols_per_block=2, scheduler=client,
    )  # fmt: skip
    assert len(result.plan.blocks) == 4
    classes, scores = read(tmp_path / "split.tif", tmp_path / "split-p.tif")
    np.testing.assert_array_equal(classes, ref_classes)
    np.testing.assert_array_equal(scores, ref_scores)
    with rasterio.open(scene) as src, rasterio.open(tmp_path / "split.tif") as out, rasterio.open(tmp_path / "ref.tif") as ref:
        assert (out.crs, out.transform, out.shape) == (src.crs, src.transform, src.shape)
        assert out.colormap(1) == ref.colormap(1) and out.profile == ref.profile
    workers = {b.worker for b in result.blocks}
    assert len(workers) == 2 and all(w.startswith("tcp://") for w in workers)  # both processes worked
    data = json.loads(manifest.read_text())
    assert [s["status"] for s in data["scenes"]] == ["done"]
    assert [b["block"] for b in data["blocks"]] == ["block-000-000", "block-000-001", "block-001-000", "block-001-001"]
    assert all(b["status"] == "done" and b["peak_rss_mb"] > 0 and b["windows"] >= 4 for b in data["blocks"])
    assert hidden(tmp_path) == []


def _block_worker(dask_scheduler, prefix: str) -> str | None:
    for key, task in dask_scheduler.tasks.items():
        if str(key).startswith(prefix) and task.processing_on is not None:
            return task.processing_on.address
    return None


def test_killed_worker_block_is_redone_and_output_identical(tmp_path, scene, checkpoint):
    """SIGKILL the worker computing a block while its file is half-written."""
    distributed = pytest.importorskip("distributed")
    ref_classes, ref_scores = reference(scene, checkpoint, tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    folder = blocks_folder(out / "split.tif")
    results = {}
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0", silence_logs=logging.CRITICAL
    ) as cluster, distributed.Client(cluster) as c:
        pids = c.run(os.getpid)
        runner = threading.Thread(target=lambda: results.update(result=run_split(
            scene, out / "split.tif", model=checkpoint, probabilities=out / "split-p.tif",
            options=BatchOptions(settings=SETTINGS, retries=2), rows_per_block=2, cols_per_block=2, scheduler=c,
        )))  # fmt: skip
        runner.start()
        deadline, victim, block = time.monotonic() + 120, None, None
        while victim is None and time.monotonic() < deadline and runner.is_alive():
            partial = [p.name for p in folder.iterdir() if p.name.endswith(".part.tif")] if folder.is_dir() else []
            if partial:  # ".block-RRR-CCC.<token>.part.tif": being written
                block = partial[0].split(".")[1]
                victim = c.run_on_scheduler(_block_worker, prefix=f"glgeo-block-{block}-")
            time.sleep(0.01)
        assert victim is not None, "the blocks finished before one could be interrupted; make the scene bigger"
        os.kill(pids[victim], signal.SIGKILL)
        runner.join(timeout=180)
        assert not runner.is_alive()
    result = results["result"]
    row = next(b for b in result.blocks if b.block == block)
    assert row.status == "done" and row.worker != victim and row.partials_removed == 1
    classes, scores = read(out / "split.tif", out / "split-p.tif")
    np.testing.assert_array_equal(classes, ref_classes)
    np.testing.assert_array_equal(scores, ref_scores)
    assert hidden(out) == [] and sorted(p.name for p in out.iterdir()) == [
        "split-p.tif", "split.qml", "split.tif", "split.tif.aux.xml",
    ]  # fmt: skip


class Stop(Exception):
    pass


def test_rerun_after_an_interrupted_run_computes_only_the_missing_blocks(tmp_path, scene, checkpoint, client, caplog):
    ref_classes, _ = reference(scene, checkpoint, tmp_path)
    out = tmp_path / "split.tif"
    options = BatchOptions(settings=SETTINGS, manifest=tmp_path / "manifest.csv")

    def stop_after_two(done: int, total: int) -> None:
        if done == 2:
            raise Stop

    with pytest.raises(Stop):  # interrupted after two blocks (its local cluster is shut down)
        run_split(scene, out, model=checkpoint, options=options, rows_per_block=1, cols_per_block=1, workers=2,
                  progress=stop_after_two)
    folder = blocks_folder(out)
    kept = sorted(p.name for p in folder.glob("block-*.tif"))
    assert 2 <= len(kept) < 12 and not out.exists()
    # a stray temporary file of a killed attempt, and the rerun on another cluster
    (folder / ".block-000-000.0123abcd.part.tif").write_bytes(b"half")
    with caplog.at_level(logging.INFO, logger="glgeo.batch"):
        result = run_split(scene, out, model=checkpoint, options=options, rows_per_block=1, cols_per_block=1, scheduler=client)
    assert "resuming" in caplog.text
    assert result.counts == {"done": 12 - len(kept), "skipped": len(kept), "failed": 0}
    assert sorted(b.block + ".tif" for b in result.blocks if b.status == "skipped") == kept
    np.testing.assert_array_equal(read(out)[0], ref_classes)
    assert hidden(tmp_path) == []
    rows = read_manifest(tmp_path / "manifest.csv")
    assert [r["status"] for r in rows].count("skipped") == len(kept) and rows[0]["block"] == ""


def test_blocks_of_other_settings_are_not_reused(tmp_path, scene, checkpoint, caplog):
    out = tmp_path / "split.tif"
    folder = blocks_folder(out)
    folder.mkdir()
    (folder / "plan.json").write_text('{"fingerprint": "another scene"}')
    (folder / "block-000-000.tif").write_bytes(b"not this run's")
    with caplog.at_level(logging.WARNING, logger="glgeo.batch"):
        result = run_split(scene, out, model=checkpoint, options=BatchOptions(settings=SETTINGS), rows_per_block=2)
    assert "starting afresh" in caplog.text and result.counts["skipped"] == 0
    np.testing.assert_array_equal(read(out)[0], reference(scene, checkpoint, tmp_path)[0])


# ---------------------------------------------------------------------------------- CLI


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


# ------------------------------------------------------------------------- real data


def test_real_model_on_real_imagery_split_equals_segment(sample_data, tmp_path, client):
    """The zoo model on a georeferenced DeepGlobe crop (0.5 m, read at the model's 2 m),
    cut into 3 x 3 context windows of 64 working px and 4 blocks on two worker processes."""
    with rasterio.open(sample_data / "deepglobe" / "images" / "104113_sat.jpg") as src:
        pixels = src.read(window=Window(0, 0, 612, 612))
    scene = tmp_path / "deepglobe.tif"
    with rasterio.open(scene, "w", driver="GTiff", width=612, height=612, count=3, dtype="uint8", crs="EPSG:32633",
                       transform=Affine(0.5, 0, 400_000, 0, -0.5, 5_000_000), tiled=True, blockxsize=256,
                       blockysize=256) as dst:  # fmt: skip
        dst.write(pixels)
    settings = InferenceSettings(device="cpu", footprint=64)
    summary = segment(scene, tmp_path / "ref.tif", settings=settings)
    assert summary.scale == 0.25 and summary.stats.windows == 9
    result = run_split(scene, tmp_path / "split.tif", options=BatchOptions(settings=settings), rows_per_block=2,
                       cols_per_block=2, scheduler=client)
    assert len(result.plan.blocks) == 4
    ref, split = read(tmp_path / "ref.tif")[0], read(tmp_path / "split.tif")[0]
    assert len(np.unique(ref)) >= 3  # a real map, several classes
    np.testing.assert_array_equal(split, ref)
    assert result.summary.class_areas == pytest.approx(summary.class_areas)
