"""glgeo.batch.split: one scene's blocks as Dask tasks on a real two-process LocalCluster,
a killed worker's block redone, an interrupted run resumed, bad options refused."""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.windows import Window

from glgeo.batch import BatchOptions, blocks_folder, read_manifest, run_split
from glgeo.errors import GlgeoError, InputError, OutputError
from glgeo.inference import InferenceSettings
from glgeo.segmentation import segment

from fixtures.split import SETTINGS, Stop, _block_worker, hidden, read, reference


def test_split_refuses_existing_outputs_and_bad_workers(tmp_path, scene, checkpoint):
    (tmp_path / "x.tif").write_bytes(b"")
    with pytest.raises(OutputError, match="already exists"):
        run_split(scene, tmp_path / "x.tif", model=checkpoint, options=BatchOptions(settings=SETTINGS))
    with pytest.raises(InputError, match="workers must be 1 or more"):
        run_split(scene, tmp_path / "y.tif", model=checkpoint, workers=0)
    # the checks segment makes, in its order: an area of interest's file as the output, a format
    # glgeo does not write before an existing sidecar
    aoi = tmp_path / "area.tif"
    aoi.write_bytes(b"")
    with pytest.raises(OutputError, match="is the same file as the input"):
        run_split(scene, aoi, model=checkpoint, aoi=aoi, options=BatchOptions(settings=SETTINGS, overwrite=True))
    (tmp_path / "z.qml").write_text("a style")
    with pytest.raises(InputError, match="lossy"):
        run_split(scene, tmp_path / "z.jpg", model=checkpoint, options=BatchOptions(settings=SETTINGS))
    assert hidden(tmp_path) == []


def test_a_scene_of_one_block_runs_in_this_process_and_says_how_to_spread_it(tmp_path, scene, checkpoint, caplog):
    """A scene whose windows make one block (4 x 3 windows, 4 window rows per block) started
    a local cluster and computed on one of its workers: slower than one process (49 against
    18 s for a 7344 px scene with --workers 8). It runs here now, and the warning says which
    blocks would spread it over the workers."""
    ref_classes, _ = reference(scene, checkpoint, tmp_path)
    with caplog.at_level(logging.WARNING, logger="glgeo"):
        result = run_split(scene, tmp_path / "one.tif", model=checkpoint, options=BatchOptions(settings=SETTINGS), workers=3)
    assert result.workers == "in-process" and len(result.plan.blocks) == 1
    assert (f"{scene}: its 4 x 3 context windows make 1 block for 3 workers: segmenting it in this process; "
            "rows_per_block=1 makes 4 blocks, which compute 21 windows for the scene's 12 (windows at block edges are "
            "computed by each block they touch)") in caplog.text
    np.testing.assert_array_equal(read(tmp_path / "one.tif")[0], ref_classes)


@pytest.mark.parametrize(
    "size,blocks,workers,said",
    [
        ((1000, 300, 8, None), 3, 3, ""),  # 18 x 6 windows in strips of 8 rows
        ((1000, 300, 8, None), 3, 4, "3 blocks for 4 workers: 1 of the workers stay idle; rows_per_block=4 makes 5 blocks, "
                                     "which compute 132 windows for the scene's 108"),
        ((1000, 300, 8, None), 3, 40, "3 blocks for 40 workers: 37 of the workers stay idle; rows_per_block=1, "
                                      "cols_per_block=2 makes 54 blocks, which compute 280 windows for the scene's 108"),
        ((220, 2300, 2, 10), 10, 12, "10 blocks for 12 workers: 2 of the workers stay idle; rows_per_block=1, "
                                     "cols_per_block=13 makes 16 blocks, which compute 308 windows for the scene's 164"),
        ((64, 2000, 4, None), 1, 8, "1 block for 8 workers: segmenting it in this process; rows_per_block=1, "
                                    "cols_per_block=4 makes 9 blocks, which compute 44 windows for the scene's 36"),
        ((64, 64, 4, None), 1, 2, "1 block for 2 workers: segmenting it in this process"),  # one window: no advice
        ((1000, 300, 8, None), 3, 4, "3 blocks for 4 workers: segmenting the one left in this process; "
                                     "rows_per_block=4 makes 5 blocks, which compute 132 windows for the scene's 108"),
        # windows that nearly coincide: the blocks would compute most of them twice
        ((130, 130, 4, None), 1, 2, "1 block for 2 workers: segmenting it in this process; rows_per_block=1 makes 3 "
                                    "blocks, which compute 15 windows for the scene's 9"),
    ],
)
def test_fewer_blocks_than_workers_is_said_with_blocks_that_spread_them(size, blocks, workers, said, caplog):
    """The advice gives every worker a block where the windows allow it, and only where it
    gives more blocks than the run has (it once suggested fewer, or one strip of one row)."""
    from glgeo.batch.split import _warn_of_idle_workers
    from glgeo.split import plan_split
    from glgeo.tiling import window_grid

    height, width, rows, cols = size
    grid = window_grid(height, width, 64, 8)
    plan = plan_split(grid, (height, width), rows_per_block=rows, cols_per_block=cols)
    assert len(plan.blocks) == blocks
    pending = 1 if "the one left" in said else blocks
    with caplog.at_level(logging.WARNING, logger="glgeo"):
        _warn_of_idle_workers("s.tif", plan, grid, workers, pending)
    text = "\n".join(r.getMessage() for r in caplog.records)
    if said:
        ending = "" if said.endswith("process") else " (windows at block edges are computed by each block they touch)"
        if said.endswith("scene's 9"):
            ending += ": little faster than one process, if at all"
        assert text.startswith("s.tif: its ") and text.endswith(said + ending)
    else:
        assert text == ""


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
        # the engine's resolved context rule reaches the assembled output, as segment writes it
        assert out.tags()["GLGEO_CONTEXT"] == ref.tags()["GLGEO_CONTEXT"]
        assert "auto" not in out.tags()["GLGEO_CONTEXT"]
    workers = {b.worker for b in result.blocks}
    assert len(workers) == 2 and all(w.startswith("tcp://") for w in workers)  # both processes worked
    data = json.loads(manifest.read_text())
    assert [s["status"] for s in data["scenes"]] == ["done"]
    assert [b["block"] for b in data["blocks"]] == ["block-000-000", "block-000-001", "block-001-000", "block-001-001"]
    assert all(b["status"] == "done" and b["peak_rss_mb"] > 0 and b["windows"] >= 4 for b in data["blocks"])
    assert hidden(tmp_path) == []


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
        "split-p.qmd", "split-p.qml", "split-p.tif", "split.qmd", "split.qml", "split.tif", "split.tif.aux.xml",
    ]  # fmt: skip


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


def test_a_rerun_that_keeps_every_block_says_how_they_were_computed(tmp_path, scene, checkpoint):
    """Interrupted after its last block, then run again: every block is kept, and the summary
    and the map's provenance still say the mode, precision and device that computed them
    (they were empty, and the provenance said the asked ``auto``)."""
    out = tmp_path / "split.tif"
    options = BatchOptions(settings=SETTINGS)
    blocks = []

    def stop_at_the_end(done: int, total: int) -> None:
        blocks.append(total)
        if done == total:
            raise Stop

    with pytest.raises(Stop):
        run_split(scene, out, model=checkpoint, options=options, rows_per_block=1, cols_per_block=1,
                  progress=stop_at_the_end)
    assert len(list(blocks_folder(out).glob("block-*.tif"))) == blocks[-1] > 1
    result = run_split(scene, out, model=checkpoint, options=options, rows_per_block=1, cols_per_block=1)
    stats = result.summary.stats
    assert result.counts["skipped"] == blocks[-1] and result.counts["done"] == 0
    assert stats.mode == "g2l" and stats.precision in ("fp32", "bf16") and stats.device == "cpu"
    with rasterio.open(out) as src:
        assert src.tags()["GLGEO_PRECISION"] == stats.precision and src.tags()["GLGEO_MODE"] == "g2l"


def test_a_kept_block_damaged_since_says_to_delete_it_and_is_then_computed_again(tmp_path, scene, checkpoint):
    """A finished block truncated before the rerun was a traceback in the assembly, on
    every rerun."""
    out = tmp_path / "split.tif"
    options = BatchOptions(settings=SETTINGS)

    def stop_after_two(done: int, total: int) -> None:
        if done == 2:
            raise Stop

    with pytest.raises(Stop):
        run_split(scene, out, model=checkpoint, options=options, rows_per_block=1, cols_per_block=1, workers=1,
                  progress=stop_after_two)
    damaged = sorted(blocks_folder(out).glob("block-*.tif"))[0]
    whole = damaged.read_bytes()
    damaged.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(GlgeoError, match=rf"the finished block '{damaged}' cannot be read \(.*\); delete it and run the"
                                         r" same command again: that block is computed again"):
        run_split(scene, out, model=checkpoint, options=options, rows_per_block=1, cols_per_block=1)
    damaged.unlink()
    run_split(scene, out, model=checkpoint, options=options, rows_per_block=1, cols_per_block=1)
    np.testing.assert_array_equal(read(out)[0], reference(scene, checkpoint, tmp_path)[0])


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


def test_a_scene_of_nodata_only_is_assembled_with_a_warning(tmp_path, checkpoint, caplog):
    from fixtures.rasters import write_geotiff

    scene = write_geotiff(tmp_path / "empty.tif", np.zeros((3, 192, 160), dtype=np.uint8), nodata=0)
    out = tmp_path / "empty_classes.tif"
    with caplog.at_level(logging.WARNING, logger="glgeo"):
        result = run_split(scene, out, model=checkpoint, options=BatchOptions(settings=SETTINGS), rows_per_block=2)
    assert f"every pixel of {scene} is nodata: {out} holds no class" in caplog.text
    assert result.summary.nodata_pixels == 192 * 160
    with rasterio.open(out) as dst:
        assert (dst.read(1) == dst.nodata).all()


def test_a_split_scene_counts_each_window_once_as_one_process_does(tmp_path, scene, checkpoint):
    """The windows at block edges are computed by each block they reach into, and --json
    counted them that many times (15 windows and 15 patches against 9 and 9 in one process
    for a 3 x 3 window scene in three blocks)."""
    ref = segment(scene, tmp_path / "ref.tif", model=checkpoint, settings=SETTINGS).stats
    result = run_split(scene, tmp_path / "split.tif", model=checkpoint, options=BatchOptions(settings=SETTINGS),
                       rows_per_block=1, cols_per_block=2)
    assert len(result.plan.blocks) > 1 and result.plan.overhead > 1  # some windows are computed twice
    got = result.summary.stats
    assert (got.windows, got.patches, got.computed, got.skipped_nodata, got.skipped_c2f, got.skipped_windows) == (
        ref.windows, ref.patches, ref.computed, ref.skipped_nodata, ref.skipped_c2f, ref.skipped_windows)
    assert got.windows > 1


def test_a_split_scene_without_georeferencing_is_said_and_its_row_keeps_it(tmp_path, checkpoint, caplog):
    """segment warns that a plain image's output has no place on a map; split over blocks
    it said nothing, and the manifest's row listed no warning."""
    from fixtures.rasters import write_geotiff

    pixels = np.random.default_rng(0).integers(0, 255, (3, 192, 160), dtype=np.uint8)
    scene = write_geotiff(tmp_path / "plain.png", pixels, driver="PNG")
    manifest = tmp_path / "manifest.json"
    with caplog.at_level(logging.WARNING, logger="glgeo"):
        run_split(scene, tmp_path / "out.tif", model=checkpoint, rows_per_block=2,
                  options=BatchOptions(settings=SETTINGS, manifest=manifest))
    said = f"{scene} has no georeferencing: the output has none either and areas are in pixels"
    assert said in caplog.text
    (row,) = json.loads(manifest.read_text())["scenes"]
    assert row["status"] == "done" and said in row["warnings"]


def test_a_script_that_set_up_no_logging_still_sees_the_warnings(tmp_path, checkpoint):
    """run_split keeps the scene's warnings for its row with a handler on glgeo's logger,
    and any handler there silences Python's last-resort printer: a script without logging
    saw none (segment's are printed)."""
    import subprocess
    import sys

    from fixtures.rasters import write_geotiff

    pixels = np.random.default_rng(0).integers(0, 255, (3, 192, 160), dtype=np.uint8)
    scene = write_geotiff(tmp_path / "plain.png", pixels, driver="PNG")
    code = (
        "import sys; from glgeo.batch import BatchOptions, run_split; from glgeo.inference import InferenceSettings\n"
        "run_split(sys.argv[1], sys.argv[2], model=sys.argv[3], rows_per_block=2, options=BatchOptions(settings="
        "InferenceSettings(device='cpu', min_overlap=8, batch_size=8, footprint=64, window_overlap=8)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(scene), str(tmp_path / "out.tif"), str(checkpoint)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"{scene} has no georeferencing: the output has none either" in done.stderr


def test_an_interrupted_split_writes_its_manifest_saying_which_blocks_are_finished(tmp_path, scene, checkpoint):
    """An interrupted batch wrote its manifest; an interrupted split wrote none."""
    from glgeo.errors import Interruption

    out = tmp_path / "split.tif"
    options = BatchOptions(settings=SETTINGS, manifest=tmp_path / "m.json")

    def interrupt_after_two(done: int, total: int) -> None:
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt) as stopped:  # (not Interruption: a plain one ended pytest's run)
        run_split(scene, out, model=checkpoint, options=options, rows_per_block=1, cols_per_block=1,
                  progress=interrupt_after_two)
    folder = blocks_folder(out)
    assert isinstance(stopped.value, Interruption)
    assert str(stopped.value) == (
        f"Interrupted: {out} was not written; 2 of 12 blocks are finished, kept in {folder} (each block's row is in "
        f"{tmp_path / 'm.json'}): run the same command again to resume (or delete that folder)"
    )
    written = json.loads((tmp_path / "m.json").read_text())
    (row,) = written["scenes"]
    assert row["status"] == "failed" and row["error"].startswith(f"interrupted: {out} was not written; 2 of 12 blocks")
    assert [b["status"] for b in written["blocks"]] == ["done"] * 2 + ["failed"] * 10
    assert {b["error"] for b in written["blocks"][2:]} == {"not run (the split was interrupted)"}
    assert sorted(p.name for p in folder.glob("block-*.tif")) == [b["block"] + ".tif" for b in written["blocks"][:2]]


def test_blocks_failing_alike_are_said_once_with_a_count(tmp_path, scene, checkpoint, monkeypatch, caplog):
    """Every failed block's message was printed in full, and a split that finished no block
    said "the finished blocks are kept"."""
    import glgeo.batch.split
    from glgeo.errors import SceneError

    def unreadable(split, block, *args, **kwargs):
        if block.name == "block-002-001":
            raise InputError("another reason")
        raise SceneError("cannot read the scene: the disk went away")

    monkeypatch.setattr(glgeo.batch.split, "write_block", unreadable)
    out = tmp_path / "split.tif"
    options = BatchOptions(settings=SETTINGS, manifest=tmp_path / "m.csv")
    with caplog.at_level(logging.WARNING, logger="glgeo"), pytest.raises(OutputError) as failed:
        run_split(scene, out, model=checkpoint, options=options, rows_per_block=1, cols_per_block=1)
    assert str(failed.value) == (
        f"{scene}: 12 of 12 blocks failed: block-000-000: SceneError: cannot read the scene: the disk went away (and 10"
        " other blocks with the same message); 1 more with 1 other message, e.g. block-002-001: InputError: another"
        f" reason (each block's error is in {tmp_path / 'm.csv'}); no block was finished ({blocks_folder(out)} holds"
        " only the plan): fix the cause and run again"
    )
    said = [r.getMessage() for r in caplog.records if "failed" in r.getMessage()]
    assert said == [
        f"block-000-000 of {scene} failed: SceneError: cannot read the scene: the disk went away",
        f"block-002-001 of {scene} failed: InputError: another reason",
    ]
    rows = read_manifest(tmp_path / "m.csv")
    assert [r["error"] for r in rows[1:]].count("SceneError: cannot read the scene: the disk went away") == 11


def test_an_interrupted_local_cluster_split_leaves_no_partial_block(tmp_path, scene, checkpoint):
    """The local cluster's workers are killed mid-block when an interrupted run closes it:
    a block's temporary ``.block-*.part.tif`` stayed in the blocks folder until the next run
    (the one here stands for the block a killed worker was writing)."""
    pytest.importorskip("distributed")
    out = tmp_path / "split.tif"
    folder = blocks_folder(out)
    stray = folder / ".block-002-002.0123abcd.part.tif"

    def stop_after_one(done: int, total: int) -> None:
        if not (folder / "block-002-002.tif").exists():
            stray.write_bytes(b"half")
        raise Stop

    with pytest.raises(Stop):
        run_split(scene, out, model=checkpoint, options=BatchOptions(settings=SETTINGS), rows_per_block=1,
                  cols_per_block=1, workers=2, progress=stop_after_one)
    assert hidden(folder) == []


def test_a_split_stopped_after_its_output_is_written_records_it_done(tmp_path, scene, checkpoint, monkeypatch):
    """Ctrl-C while the blocks folder is removed, after the output was assembled: the
    manifest said nothing of the finished output (it was written after the removal)."""
    import glgeo.batch.split

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(glgeo.batch.split.shutil, "rmtree", interrupted)
    out = tmp_path / "split.tif"
    with pytest.raises(KeyboardInterrupt):
        run_split(scene, out, model=checkpoint, options=BatchOptions(settings=SETTINGS, manifest=tmp_path / "m.json"),
                  rows_per_block=1, cols_per_block=1)
    (row,) = read_manifest(tmp_path / "m.json")
    assert out.is_file() and row["status"] == "done" and row["class_areas"]
