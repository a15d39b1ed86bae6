"""glgeo.batch.scheduling: batches in process and on a real two-process LocalCluster, a worker
killed mid-scene, resuming, Dask's logs, and the message when Dask is missing."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
from affine import Affine
import rasterio

from glgeo.batch import (
    BatchOptions,
    class_areas_of,
    read_manifest,
    require_distributed,
    run_batch,
)
from glgeo.errors import InputError, MissingDependencyError, OutputError
from glgeo.schemes import DEEPGLOBE

from fixtures.batch import (
    CRS,
    PIXEL,
    SETTINGS,
    _scene_worker,
    areas_from,
    check_output,
    cli_options,
    hidden_files,
    segment_cli,
)
from fixtures.rasters import blocky_scene as write_scene


def test_missing_dask_says_how_to_install(monkeypatch, tmp_path, scenes, checkpoint):
    monkeypatch.setitem(sys.modules, "distributed", None)  # `import distributed` raises ImportError
    with pytest.raises(MissingDependencyError, match=r"pip install 'dask\[distributed\]>=2024.1'"):
        require_distributed()
    with pytest.raises(MissingDependencyError, match="workers=1"):
        run_batch([str(s) for s in scenes], tmp_path, model=checkpoint, workers=2)
    assert not list(tmp_path.glob("*.tif"))
    # one worker runs in this process and needs no Dask
    result = run_batch([str(scenes[0])], tmp_path, model=checkpoint, options=BatchOptions(settings=SETTINGS))
    assert result.counts == {"done": 1, "skipped": 0, "failed": 0}
    assert result.scenes[0].worker == "in-process"


def test_in_process_batch_manifest_csv_and_failures(tmp_path, scenes, checkpoint, references):
    broken = tmp_path / "broken.tif"
    broken.write_text("not a raster")
    out = tmp_path / "out"
    manifest = tmp_path / "run.csv"
    options = BatchOptions(settings=SETTINGS, manifest=manifest, retries=1)
    seen = []
    result = run_batch(
        [str(scenes[0]), str(broken), str(scenes[1])], out, model=checkpoint, options=options,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert seen == [(1, 3), (2, 3), (3, 3)]
    assert result.counts == {"done": 2, "skipped": 0, "failed": 1}
    assert not result.ok
    failed = result.failed[0]
    assert failed.input == str(broken) and failed.error.startswith("SceneError: cannot open")
    assert result.failure_summary() == [f"1 scene ({broken}): {failed.error}"]
    # two scenes failing for one reason are one line, whichever scene each error names
    (tmp_path / "broken2.tif").write_text("not a raster either")
    again = run_batch([str(broken), str(tmp_path / "broken2.tif")], tmp_path / "out2", model=checkpoint,
                      options=BatchOptions(settings=SETTINGS, retries=1))
    assert again.counts["failed"] == 2 and again.failed[1].error.startswith("SceneError: cannot open")
    assert again.failure_summary() == [f"2 scenes (e.g. {broken}): {failed.error}"]
    for scene in scenes[:2]:
        check_output(out / scene.name, scene, references[scene.stem])
    assert not (out / "broken.tif").exists()
    assert hidden_files(out) == []
    rows = read_manifest(manifest)
    assert [r["status"] for r in rows] == ["done", "failed", "done"]
    assert rows[1]["error"] == failed.error
    expected = areas_from(references[scenes[0].stem])
    assert {k[5:]: float(v) for k, v in rows[0].items() if k.startswith("area:")} == pytest.approx(expected)
    assert float(rows[0]["seconds"]) > 0 and rows[0]["worker"] == "in-process" and rows[0]["device"] == "cpu"
    # a manifest in a folder the run makes itself, above its output folder (--out-dir results/maps
    # --manifest results/run.json): made with it, not refused as missing
    nested = run_batch([str(scenes[0])], tmp_path / "results" / "maps", model=checkpoint,
                       options=BatchOptions(settings=SETTINGS, manifest=tmp_path / "results" / "run.json"))
    assert nested.ok and (tmp_path / "results" / "run.json").is_file()


def test_cluster_batch_outputs_manifest_vectors_and_resume(tmp_path, scenes, checkpoint, references, client):
    import pyogrio

    out = tmp_path / "out"
    merged = tmp_path / "city.gpkg"
    options = BatchOptions(settings=SETTINGS, manifest=out / "manifest.json", vector_merge=merged)
    inputs = [str(scenes[0].parent / "tile_*.tif")]
    result = run_batch(inputs, out, model=checkpoint, options=options, scheduler=client)

    assert result.counts == {"done": 4, "skipped": 0, "failed": 0}, result.failure_summary()
    cluster_workers = set(client.scheduler_info()["workers"])
    assert {r.worker for r in result.scenes} == cluster_workers  # both worker processes took scenes
    assert {r.device for r in result.scenes} == {"cpu"}
    for scene, row in zip(scenes, result.scenes):
        assert row.input == str(scene)
        check_output(out / scene.name, scene, references[scene.stem])
        assert row.class_areas == pytest.approx(areas_from(references[scene.stem]))
        assert row.area_unit == "m2"
        with rasterio.open(out / scene.name) as src:
            assert sum(row.class_areas.values()) == pytest.approx(src.width * src.height * PIXEL * PIXEL)
    assert hidden_files(out) == []

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["done"] == 4 and manifest["failed"] == 0
    assert [r["status"] for r in manifest["scenes"]] == ["done"] * 4
    assert [r["worker"] for r in manifest["scenes"]] == [r.worker for r in result.scenes]
    assert manifest["scenes"][2]["class_areas"] == pytest.approx(areas_from(references["tile_2"]))

    # one GeoPackage per scene, and all of them merged with a scene column
    per_scene = {}
    for scene in scenes:
        frame = pyogrio.read_dataframe(out / f"{scene.stem}-polygons.gpkg", layer=scene.stem)
        assert frame.crs == CRS
        per_scene[scene.stem] = frame
    all_polygons = pyogrio.read_dataframe(merged, layer="city")
    assert all_polygons.crs == CRS
    assert len(all_polygons) == sum(len(f) for f in per_scene.values())
    assert all_polygons.groupby("scene").size().to_dict() == {k: len(f) for k, f in per_scene.items()}
    for stem, frame in per_scene.items():
        mine = all_polygons[all_polygons.scene == stem]
        assert mine.area_m2.sum() == pytest.approx(frame.area_m2.sum())
        assert mine.area_m2.sum() == pytest.approx(sum(areas_from(references[stem]).values()))
    assert "layer_styles" in [name for name, _ in pyogrio.list_layers(merged)]

    # a rerun skips every finished scene, leaves the files alone, and still reports areas
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("tile_*")}
    again = run_batch(inputs, out, model=checkpoint, options=options, scheduler=client)
    assert again.counts == {"done": 0, "skipped": 4, "failed": 0}
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("tile_*")} == stamps
    for first, second in zip(result.scenes, again.scenes):
        assert second.class_areas == pytest.approx(first.class_areas)
        assert second.device == ""  # nothing was segmented
    assert json.loads((out / "manifest.json").read_text())["skipped"] == 4

    # a scene whose class raster is there but whose GeoPackage is not is only vectorized
    (out / "tile_1-polygons.gpkg").unlink()
    third = run_batch(inputs, out, model=checkpoint, options=options, scheduler=client)
    assert [r.status for r in third.scenes] == ["skipped", "done", "skipped", "skipped"]
    assert (out / "tile_1.tif").stat().st_mtime_ns == stamps["tile_1.tif"]
    assert len(pyogrio.read_dataframe(out / "tile_1-polygons.gpkg", layer="tile_1")) == len(per_scene["tile_1"])


def test_cluster_batch_failure_does_not_stop_others(tmp_path, scenes, checkpoint, client):
    missing = tmp_path / "nowhere" / "tile_9.tif"
    result = run_batch(
        [str(scenes[0]), str(missing)], tmp_path / "out", model=checkpoint,
        options=BatchOptions(settings=SETTINGS, scheme="inria"), scheduler=client,
    )
    # a model/scheme mismatch and a missing scene: reported, not retried, not raised
    assert result.counts == {"done": 0, "skipped": 0, "failed": 2}
    assert "predicts the 'deepglobe' classes" in result.scenes[0].error
    assert "does not exist" in result.scenes[1].error
    assert all(r.worker.startswith("tcp://") for r in result.scenes)
    assert list((tmp_path / "out").iterdir()) == []


def test_killed_worker_scene_is_retried_elsewhere_without_partial_files(tmp_path, scenes, checkpoint, references):
    """SIGKILL the worker segmenting a scene while its output is half-written."""
    distributed = pytest.importorskip("distributed")
    big = write_scene(tmp_path / "big.tif", seed=42, height=480, width=480)
    out = tmp_path / "out"
    out.mkdir()
    results = {}

    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0", silence_logs=logging.CRITICAL
    ) as cluster, distributed.Client(cluster) as client:
        pids = client.run(os.getpid)
        runner = threading.Thread(
            target=lambda: results.update(
                result=run_batch(
                    [str(big), str(scenes[0]), str(scenes[1])], out, model=checkpoint,
                    options=BatchOptions(settings=SETTINGS, retries=2, manifest=out / "manifest.json"),
                    scheduler=client,
                )
            )
        )
        runner.start()
        deadline = time.monotonic() + 120
        victim = None
        while victim is None and time.monotonic() < deadline and runner.is_alive():
            if any(p.name.startswith(".big.") for p in out.iterdir()):  # the raster is being written
                victim = client.run_on_scheduler(_scene_worker, prefix="glgeo-segment-big-")
            time.sleep(0.02)
        assert victim is not None, "the big scene finished before it could be interrupted; make it bigger"
        os.kill(pids[victim], signal.SIGKILL)
        leftovers = [p.name for p in out.iterdir() if p.name.startswith(".big.")]
        runner.join(timeout=180)
        assert not runner.is_alive()

    result = results["result"]
    assert result.counts == {"done": 3, "skipped": 0, "failed": 0}, result.failure_summary()
    row = result.scenes[0]
    assert row.input == str(big)
    assert row.worker != victim  # ran again, on another worker process
    assert leftovers and row.partials_removed >= 1  # the killed attempt's temporaries were cleaned up
    with rasterio.open(big) as src, rasterio.open(out / "big.tif") as done:  # complete and on the grid
        assert (done.crs, done.transform, done.shape) == (src.crs, src.transform, src.shape)
        classes = done.read(1)
        assert classes.max() < DEEPGLOBE.n_classes  # every pixel written, none left as nodata
        assert done.profile["tiled"] and done.colormap(1)[1][:3] == DEEPGLOBE.classes[1].color
    assert class_areas_of(out / "big.tif")[0] == pytest.approx(row.class_areas)
    assert sum(row.class_areas.values()) == pytest.approx(480 * 480 * PIXEL * PIXEL)
    assert hidden_files(out) == []
    for scene in scenes[:2]:
        check_output(out / scene.name, scene, references[scene.stem])
    rows = read_manifest(out / "manifest.json")
    assert rows[0]["worker"] == row.worker and rows[0]["partials_removed"] == row.partials_removed


def test_rerun_of_a_finished_batch_starts_no_cluster(tmp_path, scenes, checkpoint, monkeypatch):
    """Skips are decided on the submitting machine, before any Dask cluster starts."""
    distributed = pytest.importorskip("distributed")
    out = tmp_path / "out"
    first = run_batch([str(s) for s in scenes[:2]], out, model=checkpoint, options=BatchOptions(settings=SETTINGS))
    assert first.counts["done"] == 2

    def no_cluster(*args, **kwargs):
        raise AssertionError("a Dask cluster was started although every output is there")

    monkeypatch.setattr(distributed, "LocalCluster", no_cluster)
    monkeypatch.setattr(distributed, "Client", no_cluster)
    again = run_batch([str(s) for s in scenes[:2]], out, model=checkpoint, options=BatchOptions(settings=SETTINGS),
                      workers=2)
    assert again.counts == {"done": 0, "skipped": 2, "failed": 0}
    for second, earlier in zip(again.scenes, first.scenes):
        assert second.class_areas == pytest.approx(earlier.class_areas)
    result = segment_cli(scenes[0], scenes[1], "--out-dir", out, "--workers", "2", *cli_options(checkpoint))
    assert result.exit_code == 0, result.output
    assert "2 scenes in this process: 0 done, 2 skipped (outputs already there), 0 failed" in result.stdout


def test_one_scene_with_workers_runs_in_this_process(monkeypatch, tmp_path, scenes, checkpoint):
    """A batch with one scene to compute started a local cluster for it: only its start-up.
    It runs in this process (as does the last scene of a resumed batch)."""
    distributed = pytest.importorskip("distributed")

    def no_cluster(*args, **kwargs):
        raise AssertionError("a Dask cluster was started for one scene")

    monkeypatch.setattr(distributed, "LocalCluster", no_cluster)
    result = run_batch([str(scenes[0])], tmp_path, model=checkpoint, options=BatchOptions(settings=SETTINGS), workers=4)
    assert result.counts["done"] == 1 and result.workers == "in-process"


def test_dask_logs_only_with_verbose(tmp_path, scenes, checkpoint):
    """Dask's INFO lines ("Nanny at ... closed") stay out of the default output."""
    import subprocess

    pytest.importorskip("distributed")
    command = [sys.executable, "-c", "from glgeo.cli.main import cli; cli()", "segment", str(scenes[0]), str(scenes[1]),
               "--out-dir", str(tmp_path / "out"), "--workers", "2", "--retries", "0", *cli_options(checkpoint)]
    quiet = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    assert "2 scenes on a local cluster of 2 workers" in quiet.stdout
    assert "distributed." not in quiet.stderr and "Nanny" not in quiet.stderr, quiet.stderr[-2000:]


def test_a_worker_killed_for_exiting_slowly_is_not_a_warning(caplog):
    """Closing a local cluster on a loaded machine, each nanny warned "Worker process still
    alive after 4.0 seconds, killing" after the batch had finished (four lines for
    --workers 4); shown only with -vv now, and Dask's other warnings still show."""
    import logging

    from glgeo.batch.scheduling import dask_logs_at_glgeo_level

    nanny = logging.getLogger("distributed.nanny")
    with caplog.at_level(logging.WARNING):
        with dask_logs_at_glgeo_level():
            nanny.warning(f"Worker process still alive after {4.0:.1f} seconds, killing")
            nanny.warning("Restarting worker")
        nanny.warning("Worker process still alive after 4.0 seconds, killing")  # outside a run: Dask's own
    assert [r.getMessage() for r in caplog.records] == ["Restarting worker",
                                                        "Worker process still alive after 4.0 seconds, killing"]
    glgeo_log = logging.getLogger("glgeo")
    level = glgeo_log.level
    glgeo_log.setLevel(logging.DEBUG)  # -vv
    try:
        caplog.clear()
        with caplog.at_level(logging.WARNING), dask_logs_at_glgeo_level():
            nanny.warning("Worker process still alive after 4.0 seconds, killing")
        assert len(caplog.records) == 1
    finally:
        glgeo_log.setLevel(level)


def test_a_local_clusters_workers_leave_ctrl_c_to_the_run():
    """Ctrl-C reaches every process of the terminal's group: the local cluster's worker
    processes printed their event loops' tracebacks (60 lines for two workers) above the
    batch's one-line "Interrupted: ..."; they ignore SIGINT now, and the run closes them."""
    from glgeo.batch.scheduling import open_client

    pytest.importorskip("distributed")
    with open_client(None, 2, BatchOptions(settings=SETTINGS)) as (client, where, _):
        handlers = client.run(lambda: signal.getsignal(signal.SIGINT) == signal.SIG_IGN)
    assert where == "local cluster of 2 workers" and list(handlers.values()) == [True, True]
    assert signal.getsignal(signal.SIGINT) is not signal.SIG_IGN  # this process still stops on Ctrl-C


def test_submit_and_collect_hands_over_results_and_failures(client):
    """Scenes and split blocks run through one submit/collect loop: each result, or the
    error that ended a task after its retries, reaches ``collect`` with its item."""
    from glgeo.batch.scheduling import submit_and_collect

    got = {}
    tasks = [("three", "glgeo-test-int-3", int, ("3",)), ("bad", "glgeo-test-int-x", int, ("x",))]
    submit_and_collect(client, tasks, 0, lambda item, result, error: got.__setitem__(item, (result, error)))
    assert got["three"] == (3, None)
    assert got["bad"][0] is None and got["bad"][1].startswith("ValueError: invalid literal")


def test_a_worker_that_dies_is_told_with_the_scene_it_was_running(tmp_path, client, caplog):
    """A worker that died (out of memory, killed) was told by Dask's bare "Restarting
    worker": glgeo's warning names what it was running, and the task runs again elsewhere."""
    from glgeo.batch.scheduling import submit_and_collect

    def die_once(marker: str) -> str:
        import os
        import pathlib

        if not pathlib.Path(marker).exists():
            pathlib.Path(marker).touch()
            os._exit(1)  # as the kernel's OOM killer would end it
        return "done"

    got = {}
    tasks = [("scene_a.tif", "glgeo-test-die-once", die_once, (str(tmp_path / "died"),))]
    with caplog.at_level(logging.WARNING, logger="glgeo"):
        submit_and_collect(client, tasks, 0, lambda item, result, error: got.__setitem__(item, (result, error)))
    assert got == {"scene_a.tif": ("done", None)}
    died = [r.getMessage() for r in caplog.records if "died while running" in r.getMessage()]
    assert len(died) == 1 and "died while running scene_a.tif (out of memory? killed?)" in died[0], died
    # the client follows the scheduler's events no longer; one still on its way is dropped (with
    # no handler left, Dask's client logged a ValueError traceback on stderr)
    from glgeo.batch.scheduling import _ignore_event

    assert client._event_handlers["all"] is _ignore_event
    client.sync(client._handle_event, "all", (0.0, {"action": "remove-worker", "processing-tasks": []}))
    got.clear()  # and the next tasks follow them again
    submit_and_collect(client, [("scene_b.tif", "glgeo-test-die-twice", die_once, (str(tmp_path / "died-b"),))], 0,
                       lambda item, result, error: got.__setitem__(item, (result, error)))
    assert got == {"scene_b.tif": ("done", None)}
    assert sum("died while running scene_b.tif" in r.getMessage() for r in caplog.records) == 1


def test_an_interrupted_batch_says_what_is_finished_and_writes_the_manifest(tmp_path, scenes, checkpoint):
    """Ctrl-C (or SIGTERM) after the first scene: the manifest records it and the others, and
    the interruption says how many scenes are finished and how to go on (it said nothing,
    and a run shorter than the manifest's interval left none)."""
    from glgeo.errors import Interruption

    out = tmp_path / "out"
    manifest = out / "run.json"

    def interrupt(done: int, total: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt) as caught:
        run_batch([str(s) for s in scenes[:3]], out, model=checkpoint,
                  options=BatchOptions(settings=SETTINGS, manifest=manifest), progress=interrupt)
    assert isinstance(caught.value, Interruption) and isinstance(caught.value.cause, KeyboardInterrupt)
    assert str(caught.value) == (
        f"Interrupted: 1 of 3 scenes are finished in {out} (each scene's row is in {manifest}); "
        "run the same batch again to finish it: finished scenes are skipped"
    )
    rows = read_manifest(manifest)
    assert [r["status"] for r in rows] == ["done", "failed", "failed"]
    assert rows[1]["error"] == "not run (the batch was interrupted)"
    assert hidden_files(out) == []
    again = run_batch([str(s) for s in scenes[:3]], out, model=checkpoint, options=BatchOptions(settings=SETTINGS))
    assert again.counts == {"done": 2, "skipped": 1, "failed": 0}


def test_a_scene_finished_while_the_batch_stopped_is_recorded_done(tmp_path, scenes, checkpoint):
    """A worker may finish a scene while Ctrl-C stops the batch: its output is written, but
    its result never comes back, and the manifest said "not run". An output this run wrote
    (since it started: outputs are atomic) is recorded done; one from before (here replaced
    with overwrite=True, then not reached) is not."""
    import os

    from glgeo import segment

    out = tmp_path / "out"
    manifest = out / "run.json"
    run_batch([str(scenes[2])], out, model=checkpoint, options=BatchOptions(settings=SETTINGS))
    os.utime(out / "tile_2.tif", (0, time.time() - 3600))  # written an hour ago

    def interrupt(done: int, total: int) -> None:
        # another worker finishes tile_1 as the batch is being stopped
        segment(scenes[1], out / "tile_1.tif", model=checkpoint, settings=SETTINGS)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt) as caught:
        run_batch([str(s) for s in scenes[:3]], out, model=checkpoint,
                  options=BatchOptions(settings=SETTINGS, manifest=manifest, overwrite=True), progress=interrupt)
    assert str(caught.value).startswith(f"Interrupted: 2 of 3 scenes are finished in {out}")
    rows = read_manifest(manifest)
    assert [r["status"] for r in rows] == ["done", "done", "failed"]
    assert rows[1]["warnings"] == ["finished while the batch was being stopped"] and rows[1]["class_areas"]
    assert rows[2]["error"] == "not run (the batch was interrupted)"


def test_a_scene_vectorized_while_the_batch_was_being_stopped_is_done(tmp_path, scenes, checkpoint):
    """A rerun with --vectors over finished rasters, interrupted: a scene whose GeoPackage a
    worker wrote meanwhile was "not run" (its raster predates the run)."""
    import os

    from glgeo import vectorize

    out = tmp_path / "out"
    run_batch([str(s) for s in scenes[:2]], out, model=checkpoint, options=BatchOptions(settings=SETTINGS))
    for scene in scenes[:2]:
        os.utime(out / f"{scene.stem}.tif", (0, time.time() - 3600))  # finished an hour ago

    def interrupt(done: int, total: int) -> None:
        # another worker vectorizes the second scene as the batch is being stopped
        vectorize(out / f"{scenes[1].stem}.tif", out / f"{scenes[1].stem}-polygons.gpkg")
        raise KeyboardInterrupt

    manifest = out / "run.json"
    with pytest.raises(KeyboardInterrupt):
        run_batch([str(s) for s in scenes[:2]], out, model=checkpoint,
                  options=BatchOptions(settings=SETTINGS, manifest=manifest, vector=True), progress=interrupt)
    rows = {Path(r["input"]).stem: r for r in read_manifest(manifest)}
    assert rows[scenes[1].stem]["status"] == "done", rows
    assert rows[scenes[1].stem]["warnings"] == ["finished while the batch was being stopped"]


def test_a_merge_may_not_replace_a_scene_s_geopackage(tmp_path, scenes, checkpoint):
    """--vector-merge out/<scene>-polygons.gpkg replaced that scene's polygons with the merge, and the
    rerun merged the merge again (a traceback); it is refused before anything runs."""
    out = tmp_path / "out"
    options = BatchOptions(settings=SETTINGS, vector_merge=out / f"{scenes[1].stem}-polygons.gpkg")
    with pytest.raises(InputError, match=rf"^vector_merge='{out / scenes[1].stem}-polygons.gpkg' is the GeoPackage of the scene"):
        run_batch([str(s) for s in scenes[:2]], out, model=checkpoint, options=options)
    assert not out.exists()


def test_a_merge_replaces_its_own_earlier_merge_and_no_other_file(tmp_path, scenes, checkpoint):
    """--vector-merge city.gpkg replaced a city.gpkg that was no merge without a word; a
    rerun's merge still replaces the one before it."""
    import geopandas as gpd
    import pyogrio
    import shapely

    out, merge = tmp_path / "out", tmp_path / "city.gpkg"
    gpd.GeoDataFrame({"name": ["main street"]}, geometry=[shapely.LineString([(0, 0), (1, 1)])],
                     crs="EPSG:4326").to_file(merge, layer="city")
    kept = merge.read_bytes()
    options = BatchOptions(settings=SETTINGS, vector_merge=merge)
    with pytest.raises(OutputError, match=rf"^vector_merge='{merge}' already exists and is no merge glgeo wrote; pass"
                                          r" overwrite=True to replace it"):
        run_batch([str(s) for s in scenes[:2]], out, model=checkpoint, options=options)
    assert merge.read_bytes() == kept and not out.exists()
    run_batch([str(s) for s in scenes[:2]], out, model=checkpoint, options=dataclasses.replace(options, overwrite=True))
    run_batch([str(s) for s in scenes[:2]], out, model=checkpoint, options=options)  # a rerun: its own merge
    assert set(pyogrio.read_dataframe(merge, layer="city")["scene"]) == {s.stem for s in scenes[:2]}


def test_a_manifest_replaces_its_own_earlier_manifest_and_no_other_file(tmp_path, scenes, checkpoint):
    """--manifest scenes.csv, the list of scenes itself, replaced the list (the rerun then read
    manifest rows as scenes); another file of the user's was replaced without a word."""
    out = tmp_path / "out"
    listed = tmp_path / "scenes.csv"
    listed.write_text("\n".join(str(s) for s in scenes[:2]) + "\n")
    kept = listed.read_text()
    options = BatchOptions(settings=SETTINGS, manifest=listed, overwrite=True)
    with pytest.raises(OutputError, match=rf"^manifest '{listed}' is a list of the scenes given; choose another name"):
        run_batch([f"@{listed}"], out, model=checkpoint, options=options)
    mine = tmp_path / "mine.json"
    mine.write_text('{"my": "settings"}')
    options = BatchOptions(settings=SETTINGS, manifest=mine)
    with pytest.raises(OutputError, match=rf"^manifest '{mine}' already exists and is no glgeo manifest; pass"
                                          r" overwrite=True to replace it"):
        run_batch([f"@{listed}"], out, model=checkpoint, options=options)
    assert listed.read_text() == kept and mine.read_text() == '{"my": "settings"}' and not out.exists()
    ours = tmp_path / "run.json"
    for _ in range(2):  # the rerun rewrites its own manifest
        run_batch([f"@{listed}"], out, model=checkpoint, options=BatchOptions(settings=SETTINGS, manifest=ours))
    assert [r["status"] for r in read_manifest(ours)] == ["skipped", "skipped"]
    # another batch (another out_dir) naming that manifest: refused, its record kept
    before = ours.read_text()
    with pytest.raises(OutputError, match=rf"^manifest '{ours}' is another batch's \(its outputs are in '{out}'\)"):
        run_batch([str(scenes[2])], tmp_path / "other", model=checkpoint,
                  options=BatchOptions(settings=SETTINGS, manifest=ours))
    assert ours.read_text() == before


def test_a_refused_merge_and_an_unwritable_manifest_are_both_said(tmp_path, checkpoint, monkeypatch):
    """The merge is refused and then the manifest cannot be written (a full disk): the
    error said only the manifest's failure, and the merge's reason was lost."""
    from glgeo.batch import scheduling

    def full(*args, **kwargs):
        raise OutputError("cannot write 'm.json': the disk holding 'x' is full (0 bytes free)")

    out = tmp_path / "out"
    plain = [write_scene(tmp_path / f"plain_{i}.tif", seed=i, height=64, width=64, crs=None) for i in range(2)]
    options = BatchOptions(settings=SETTINGS, vector_merge=tmp_path / "all.gpkg", manifest=out / "m.json")
    monkeypatch.setattr(scheduling, "write_manifest", full)
    with pytest.raises(InputError, match=r"have no CRS .*\. The scenes were run: 2 done, 0 skipped, 0 failed \(outputs in "
                                         r".*out; the manifest was not written either: cannot write 'm\.json': the disk "
                                         r"holding 'x' is full \(0 bytes free\)\)$"):
        run_batch([str(p) for p in plain], out, model=checkpoint, options=options)
    assert sorted(p.name for p in out.glob("*.tif")) == ["plain_0.tif", "plain_1.tif"]


def test_a_glob_that_matches_the_batch_s_own_merge_leaves_it_out(tmp_path, checkpoint, caplog):
    """'d/**/*' with --vector-merge d/city.gpkg: the rerun took the merge for a scene (and
    failed on it)."""
    data = tmp_path / "d"
    for i in range(2):
        write_scene(data / f"t{i}.tif", seed=i, height=64, width=64)
    options = BatchOptions(settings=SETTINGS, vector_merge=data / "city.gpkg")
    for _ in range(2):
        result = run_batch([str(data / "**" / "*")], data / "maps", model=checkpoint, options=options)
        assert [Path(r.input).name for r in result.scenes] == ["t0.tif", "t1.tif"]
    assert [r.status for r in result.scenes] == ["skipped", "skipped"]
    assert f"left out {data / 'city.gpkg'}: this batch's own output, not a scene" in caplog.text


def test_a_refused_merge_still_says_what_became_of_the_scenes(tmp_path, checkpoint):
    """Scenes without a CRS are not merged; the error also says the scenes ran and where their rows are."""
    out = tmp_path / "out"
    plain = [write_scene(tmp_path / f"plain_{i}.tif", seed=i, height=64, width=64, crs=None) for i in range(2)]
    options = BatchOptions(settings=SETTINGS, vector_merge=tmp_path / "all.gpkg", manifest=out / "m.json")
    with pytest.raises(InputError, match=r"have no CRS .*\. The scenes were run: 2 done, 0 skipped, 0 failed \(see .*m\.json\)$"):
        run_batch([str(p) for p in plain], out, model=checkpoint, options=options)
    assert [r["status"] for r in read_manifest(out / "m.json")] == ["done", "done"]
    assert not (tmp_path / "all.gpkg").exists()
    # an earlier run's merge there: the refusal says it is left as it was, without these polygons
    placed = write_scene(tmp_path / "placed.tif", seed=5, height=64, width=64)
    run_batch([str(placed)], tmp_path / "earlier", model=checkpoint,
              options=BatchOptions(settings=SETTINGS, vector_merge=tmp_path / "all.gpkg"))
    with pytest.raises(InputError, match=rf"0 failed \(see .*m\.json\); {tmp_path / 'all.gpkg'} is an earlier run's merge,"
                                         r" left as it was: it does not hold this run's polygons$"):
        run_batch([str(p) for p in plain], out, model=checkpoint, options=options)


def test_outputs_another_model_made_are_not_kept_as_finished(tmp_path, scenes, checkpoint):
    """A rerun with another model skipped the scenes whose outputs were there and reported the
    old model's classes as its own: refused (the outputs say which model made them)."""
    import shutil

    out = tmp_path / "out"
    first = run_batch([str(scenes[0])], out, model=checkpoint, options=BatchOptions(settings=SETTINGS))
    assert first.counts["done"] == 1
    other = tmp_path / "other.pt"
    shutil.copy(checkpoint, other)
    with open(other, "ab") as f:  # another file (another SHA-256), the same weights
        f.write(b"\0")
    with pytest.raises(InputError, match=r"the output of 1 of the 2 scenes is there from another model .*tile_0[.]tif.*"
                                         r"pass overwrite=True to replace them"):
        run_batch([str(scenes[0]), str(scenes[1])], out, model=other, options=BatchOptions(settings=SETTINGS))
    assert not (out / "tile_1.tif").exists()
    # the same model: skipped as before; overwrite: replaced
    again = run_batch([str(scenes[0])], out, model=checkpoint, options=BatchOptions(settings=SETTINGS))
    assert again.counts["skipped"] == 1
    replaced = run_batch([str(scenes[0])], out, model=other, options=BatchOptions(settings=SETTINGS, overwrite=True))
    assert replaced.counts["done"] == 1


def test_an_output_another_scene_of_the_same_name_made_is_not_kept_as_finished(tmp_path, checkpoint):
    """a/tile.tif, then b/tile.tif (another place) into the same folder: the rerun skipped
    b's scene and listed a's map for it. Every output has its scene's grid, so it is told."""
    out = tmp_path / "out"
    first = write_scene(tmp_path / "a" / "tile.tif", seed=1, height=64, width=64)
    second = write_scene(tmp_path / "b" / "tile.tif", seed=2, height=64, width=64, x0=600_000.0)
    assert run_batch([str(first)], out, model=checkpoint, options=BatchOptions(settings=SETTINGS)).counts["done"] == 1
    with pytest.raises(InputError, match=rf"^the scene's output is there from another scene of the same name"
                                         rf" \({out / 'tile.tif'}: 64 x 64 px from \(500000, 4000000\); {second}: 64 x 64"
                                         rf" px from \(600000, 4000000\)\): they would be kept as they are"):
        run_batch([str(second)], out, model=checkpoint, options=BatchOptions(settings=SETTINGS))
    assert run_batch([str(first)], out, model=checkpoint, options=BatchOptions(settings=SETTINGS)).counts["skipped"] == 1


def test_an_output_of_another_date_of_the_same_tile_is_not_kept_as_finished(tmp_path, checkpoint):
    """2019/tile.tif, then 2020/tile.tif (the same grid, other pixels) into one folder: the
    rerun kept 2019's map for 2020 and listed its classes. The output records the file it
    was made from (GLGEO_SCENE), so it is told; a folder moved with its outputs is not."""
    import os
    import shutil

    out = tmp_path / "out"
    first = write_scene(tmp_path / "2019" / "tile.tif", seed=1, height=64, width=64)
    second = write_scene(tmp_path / "2020" / "tile.tif", seed=2, height=64, width=64)
    os.utime(second, ns=(10**18, 10**18))  # written at another time, as another date's file is
    assert run_batch([str(first)], out, model=checkpoint, options=BatchOptions(settings=SETTINGS)).counts["done"] == 1
    with pytest.raises(InputError, match=rf"^the scene's output is there, made from another file of the same name or"
                                         rf" this file before it changed \({out / 'tile.tif'}: from {first};"
                                         rf" this batch: {second}\): they would be kept as they are"):
        run_batch([str(second)], out, model=checkpoint, options=BatchOptions(settings=SETTINGS))
    moved = tmp_path / "moved"
    shutil.copytree(tmp_path / "2019", moved / "2019", copy_function=shutil.copy2)
    shutil.copytree(out, moved / "out", copy_function=shutil.copy2)
    again = run_batch([str(moved / "2019" / "tile.tif")], moved / "out", model=checkpoint,
                      options=BatchOptions(settings=SETTINGS))
    assert again.counts["skipped"] == 1


def test_a_precision_asked_by_name_is_the_one_an_auto_run_ran(tmp_path, scenes, checkpoint):
    """Outputs of a run with precision auto (bf16 here, fp32 elsewhere) were refused as made
    with other options by a rerun asking that precision by name."""
    import dataclasses

    import rasterio

    out = tmp_path / "out"
    run_batch([str(scenes[0])], out, model=checkpoint, options=BatchOptions(settings=SETTINGS))
    with rasterio.open(out / f"{scenes[0].stem}.tif") as src:
        ran = src.tags()["GLGEO_PRECISION"]
    named = BatchOptions(settings=dataclasses.replace(SETTINGS, precision=ran))
    assert run_batch([str(scenes[0])], out, model=checkpoint, options=named).counts["skipped"] == 1
    other = "fp32" if ran != "fp32" else "bf16"
    with pytest.raises(InputError, match=f"made with other options .*min_overlap=8; this batch: min_overlap=8, precision={other}"):
        run_batch([str(scenes[0])], out, model=checkpoint,
                  options=BatchOptions(settings=dataclasses.replace(SETTINGS, precision=other)))


def test_a_finished_geopackage_damaged_since_is_a_failed_row(tmp_path, scenes, checkpoint):
    """A truncated scene GeoPackage was kept as finished; only the merge failed on it."""
    out = tmp_path / "out"
    options = BatchOptions(settings=SETTINGS, vector=True)
    run_batch([str(s) for s in scenes[:2]], out, model=checkpoint, options=options)
    gpkg = out / f"{scenes[1].stem}-polygons.gpkg"
    gpkg.write_bytes(gpkg.read_bytes()[:30000])
    result = run_batch([str(s) for s in scenes[:2]], out, model=checkpoint, options=options)
    rows = {Path(r.input).stem: r for r in result.scenes}
    assert rows[scenes[0].stem].status == "skipped" and rows[scenes[1].stem].status == "failed"
    assert rows[scenes[1].stem].error == (f"OutputError: {gpkg} is there but cannot be read (database disk image is "
                                          "malformed); delete it and run the same command again")


def test_a_finished_output_damaged_since_is_a_failed_row_not_a_traceback(tmp_path, scenes, checkpoint, caplog):
    """... and not GDAL's raw warnings first (five 'tags apparently corrupt' lines)."""
    import logging

    out = tmp_path / "out"
    run_batch([str(s) for s in scenes[:2]], out, model=checkpoint, options=BatchOptions(settings=SETTINGS))
    whole = (out / f"{scenes[1].stem}.tif").read_bytes()
    (out / f"{scenes[1].stem}.tif").write_bytes(whole[: len(whole) // 3])
    with caplog.at_level(logging.WARNING):
        result = run_batch([str(s) for s in scenes[:2]], out, model=checkpoint, options=BatchOptions(settings=SETTINGS))
    assert not [r for r in caplog.records if r.name.startswith("rasterio")], caplog.text
    rows = {Path(r.input).stem: r for r in result.scenes}
    assert rows[scenes[0].stem].status == "skipped" and rows[scenes[1].stem].status == "failed"
    assert rows[scenes[1].stem].error.startswith(f"OutputError: {out / scenes[1].stem}.tif is there but cannot be read (")
    assert rows[scenes[1].stem].error.endswith("delete it and run the same command again")


def test_a_class_raster_deleted_to_be_computed_again_is_computed_again(tmp_path, scenes, checkpoint):
    """Deleting one scene's .tif left its .qml, .qmd and .aux.xml, which then refused the
    rerun's output ("a sidecar this output writes, already exists")."""
    out = tmp_path / "out"
    run_batch([str(s) for s in scenes[:2]], out, model=checkpoint, options=BatchOptions(settings=SETTINGS))
    (out / f"{scenes[1].stem}.tif").unlink()
    result = run_batch([str(s) for s in scenes[:2]], out, model=checkpoint, options=BatchOptions(settings=SETTINGS))
    assert [r.status for r in result.scenes] == ["skipped", "done"] and result.scenes[1].partials_removed == 0
    assert (out / f"{scenes[1].stem}.tif").is_file() and (out / f"{scenes[1].stem}.qml").is_file()


def test_outputs_made_with_other_options_are_not_kept_as_finished(tmp_path, scenes, checkpoint):
    """A rerun with other options (here the released plain sum instead of the taper, and
    bands reordered) skipped the outputs already there and reported them as made so:
    refused, naming both runs' options (``GLGEO_OPTIONS``); the same options resume."""
    import dataclasses

    out = tmp_path / "out"
    first = run_batch([str(scenes[0])], out, model=checkpoint, options=BatchOptions(settings=SETTINGS))
    assert first.counts["done"] == 1
    with rasterio.open(out / "tile_0.tif") as src:
        made = src.tags()["GLGEO_OPTIONS"]
    assert "blend" not in made and "bands" not in made
    summed = BatchOptions(settings=dataclasses.replace(SETTINGS, blend="sum"))
    with pytest.raises(InputError, match=r"^the output of 1 of the 2 scenes is there, made with other options "
                                         rf"\(.*tile_0[.]tif: {made}; this batch: .*blend=sum\): "
                                         r"they would be kept as they are; pass overwrite=True"):
        run_batch([str(scenes[0]), str(scenes[1])], out, model=checkpoint, options=summed)
    assert not (out / "tile_1.tif").exists()
    with pytest.raises(InputError, match=r"bands=3,2,1\)"):
        run_batch([str(scenes[0])], out, model=checkpoint, options=BatchOptions(settings=SETTINGS, bands=(3, 2, 1)))
    # the same options (device and threads do not count): skipped; overwrite: replaced and tagged anew
    same = BatchOptions(settings=dataclasses.replace(SETTINGS, torch_threads=1, prefetch=0))
    assert run_batch([str(scenes[0])], out, model=checkpoint, options=same).counts["skipped"] == 1
    replaced = run_batch([str(scenes[0])], out, model=checkpoint, options=dataclasses.replace(summed, overwrite=True))
    assert replaced.counts["done"] == 1
    with rasterio.open(out / "tile_0.tif") as src:
        assert "blend=sum" in src.tags()["GLGEO_OPTIONS"]


def test_each_scenes_warnings_are_in_its_manifest_row(tmp_path, scenes, checkpoint):
    """A batch of many scenes printed each warning once per scene and kept none: each
    scene's row now says what glgeo warned about while it ran (JSON list, CSV ' | ')."""
    import numpy as np

    from fixtures.rasters import write_geotiff

    plain = write_geotiff(tmp_path / "plain.tif", np.full((3, 96, 96), 90, np.uint8), crs=None, transform=Affine.identity())
    out = tmp_path / "out"
    result = run_batch([str(scenes[0]), str(plain)], out, model=checkpoint,
                       options=BatchOptions(settings=SETTINGS, manifest=tmp_path / "run.csv"))
    assert result.scenes[0].warnings == ()
    assert any("has no georeferencing" in w for w in result.scenes[1].warnings), result.scenes[1].warnings
    rows = read_manifest(tmp_path / "run.csv")
    assert rows[0]["warnings"] == "" and "has no georeferencing" in rows[1]["warnings"]
    assert json.loads(json.dumps(result.to_dict()))["scenes"][1]["warnings"] == list(result.scenes[1].warnings)


def test_a_scene_interrupted_while_vectorizing_is_recorded_with_its_complete_raster(tmp_path, scenes, checkpoint,
                                                                                    monkeypatch):
    """Its row said "not run" though its class raster was written."""
    import glgeo.batch.worker

    def interrupted(job, overwrite):
        raise KeyboardInterrupt

    monkeypatch.setattr(glgeo.batch.worker, "_vectorize", interrupted)
    out = tmp_path / "out"
    manifest = out / "run.json"
    with pytest.raises(KeyboardInterrupt) as caught:
        run_batch([str(scenes[0])], out, model=checkpoint,
                  options=BatchOptions(settings=SETTINGS, manifest=manifest, vector=True))
    assert str(caught.value).startswith(f"Interrupted: 0 of 1 scenes are finished in {out}")
    (row,) = read_manifest(manifest)
    assert row["status"] == "failed" and row["class_areas"] and row["vector"] == str(out / "tile_0-polygons.gpkg")
    assert row["error"] == (
        f"interrupted while vectorizing: {out / 'tile_0.tif'} is complete, {out / 'tile_0-polygons.gpkg'} was not"
        " written; run the same batch again to vectorize it"
    )


def test_a_rerun_with_other_creation_options_says_it_kept_the_outputs_as_written(tmp_path, scenes, checkpoint, caplog):
    """``--co NBITS=8`` on a rerun skipped the outputs packed in 3 bits (nodata 7) and said
    nothing: output options do not change the classes, so they are kept, and said to be."""
    import logging

    from glgeo.writer import OutputOptions

    out = tmp_path / "out"
    run_batch([str(scenes[0])], out, model=checkpoint, options=BatchOptions(settings=SETTINGS))
    options = BatchOptions(settings=SETTINGS, manifest=out / "m.json",
                           output_options=OutputOptions(creation_options={"NBITS": "8", "COMPRESS": "DEFLATE"}))
    with caplog.at_level(logging.WARNING, logger="glgeo"):
        result = run_batch([str(scenes[0])], out, model=checkpoint, options=options)
    assert result.counts == {"done": 0, "skipped": 1, "failed": 0}
    said = "NBITS=3, this run asked NBITS=8"  # DEFLATE is what the file has: not said
    assert read_manifest(out / "m.json")[0]["warnings"] == [
        f"kept as it was written ({said}): output options do not change the classes; pass overwrite=True to write it"
        " again with them"
    ]
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        f"1 finished output was kept as written, not as this run's output options ask (e.g. {out / 'tile_0.tif'}:"
        f" {said}); pass overwrite=True to write it again"
    ]
    with rasterio.open(out / "tile_0.tif") as src:
        assert src.nodata == 7


def test_an_interrupted_local_cluster_run_leaves_no_partial_files(tmp_path, scenes, checkpoint):
    """Ctrl-C while the local cluster's workers write scenes: closing the cluster kills a
    worker still in the middle of one, and its temporary files (``.<stem>.*.stage.tif``, a
    COG's ``.ovr.tmp``) stayed in the output folder until the next run; they are removed
    before the batch stops. The files here stand for those of the killed workers (both
    scenes' tasks started, and removed what an earlier attempt left, before any finished)."""
    pytest.importorskip("distributed")
    out = tmp_path / "out"
    strays = [out / f".{scenes[0].stem}.0123abcd.stage.tif", out / f".{scenes[1].stem}.0123abcd.copy.tif.ovr.tmp"]

    def interrupt(done: int, total: int) -> None:
        for stray in strays:
            stray.write_bytes(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt, match="^Interrupted: "):
        run_batch([str(s) for s in scenes[:2]], out, model=checkpoint, options=BatchOptions(settings=SETTINGS),
                  workers=2, progress=interrupt)
    assert hidden_files(out) == []
