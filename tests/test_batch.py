"""Batch segmentation (glgeo.batch, cli/batch.py): inputs, jobs, manifest, a real Dask
LocalCluster of two worker processes, a worker killed mid-scene, resuming, merged vectors,
and the message when Dask is missing."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from glgeo.batch import (
    BatchOptions,
    SceneJob,
    class_areas_of,
    expand_inputs,
    plan_jobs,
    read_manifest,
    remove_partials,
    require_distributed,
    run_batch,
    scene_stem,
    worker_device,
)
from glgeo.errors import InputError, MissingDependencyError
from glgeo.inference import InferenceSettings
from glgeo.schemes import DEEPGLOBE, NODATA_ID
from glgeo.segmentation import segment

from fixtures.rasters import blocky_scene as write_scene

CRS = "EPSG:32618"
PIXEL = 0.5
#: Small patches with little overlap keep each scene at a few dozen patches.
SETTINGS = InferenceSettings(device="cpu", min_overlap=8, batch_size=8)


@pytest.fixture(scope="module")
def checkpoint(tiny_checkpoint) -> Path:
    return tiny_checkpoint


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("scenes")
    return [write_scene(folder / f"tile_{i}.tif", seed=i, x0=500_000.0 + 200 * i) for i in range(4)]


@pytest.fixture(scope="module")
def references(scenes, checkpoint, tmp_path_factory) -> dict[str, np.ndarray]:
    """Each scene segmented in this process by glgeo.segment: what the batch must reproduce."""
    folder = tmp_path_factory.mktemp("reference")
    out = {}
    for scene in scenes:
        segment(scene, folder / scene.name, model=str(checkpoint), settings=SETTINGS)
        with rasterio.open(folder / scene.name) as src:
            out[scene.stem] = src.read(1)
    return out


def check_output(path: Path, scene: Path, reference: np.ndarray) -> None:
    """The class raster is complete, on the scene's grid, and equals the in-process result."""
    with rasterio.open(scene) as src:
        crs, transform, shape = src.crs, src.transform, (src.height, src.width)
    with rasterio.open(path) as out:
        assert out.crs == crs
        assert out.transform == transform
        assert (out.height, out.width) == shape
        assert out.nodata == NODATA_ID
        np.testing.assert_array_equal(out.read(1), reference)


def areas_from(reference: np.ndarray) -> dict[str, float]:
    counts = np.bincount(reference.ravel(), minlength=256)
    return {c.name: float(counts[c.id] * PIXEL * PIXEL) for c in DEEPGLOBE.classes}


def hidden_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# ------------------------------------------------------------------ inputs and jobs


def test_expand_inputs_globs_lists_urls_and_duplicates(tmp_path):
    for name in ("b.tif", "a.tif", "c.jpg"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "d.tif").write_bytes(b"x")
    listing = tmp_path / "list.txt"
    listing.write_text("# scenes\n\nsub/d.tif\nhttps://example.org/tiles/e.tif?sig=1\n" + str(tmp_path / "a.tif") + "\n")
    scenes = expand_inputs([str(tmp_path / "*.tif"), f"@{listing}", "/vsis3/bucket/f.tif"])
    assert scenes == [
        str(tmp_path / "a.tif"),
        str(tmp_path / "b.tif"),
        str(tmp_path / "sub" / "d.tif"),  # relative to the list's folder
        "https://example.org/tiles/e.tif?sig=1",
        "/vsis3/bucket/f.tif",
    ]  # a.tif named twice, kept once
    assert expand_inputs([], input_lists=[listing])[0] == str(tmp_path / "sub" / "d.tif")
    assert expand_inputs([str(tmp_path / "**" / "*.tif")]) == [
        str(tmp_path / "a.tif"), str(tmp_path / "b.tif"), str(tmp_path / "sub" / "d.tif")
    ]
    with pytest.raises(InputError, match="no file matches"):
        expand_inputs([str(tmp_path / "*.png")])
    with pytest.raises(InputError, match="cannot read the list"):
        expand_inputs([f"@{tmp_path / 'missing.txt'}"])
    with pytest.raises(InputError, match="no scenes given"):
        expand_inputs([])


def test_scene_stem_and_plan_jobs(tmp_path):
    assert scene_stem("https://host/a/tile_12.tif?sig=abc") == "tile_12"
    assert scene_stem("/vsis3/bucket/x/y.vrt") == "y"
    jobs = plan_jobs(["/data/a.tif", "https://h/b.jp2"], tmp_path, vector=True)
    assert jobs == [
        SceneJob("/data/a.tif", tmp_path / "a.tif", tmp_path / "a.gpkg"),
        SceneJob("https://h/b.jp2", tmp_path / "b.tif", tmp_path / "b.gpkg"),
    ]
    with pytest.raises(InputError, match="would both write a.tif"):
        plan_jobs(["/data/2020/a.tif", "/data/2021/a.tif"], tmp_path)
    with pytest.raises(InputError, match="would replace the scene itself"):
        plan_jobs([str(tmp_path / "a.tif")], tmp_path)


def test_batch_options_are_checked(tmp_path):
    with pytest.raises(InputError, match="retries"):
        BatchOptions(retries=-1)
    with pytest.raises(InputError, match=r"\.json or \.csv"):
        BatchOptions(manifest=tmp_path / "m.txt")
    with pytest.raises(InputError, match="GeoPackage"):
        BatchOptions(vector_merge=tmp_path / "all.shp")
    assert BatchOptions(vector_merge=tmp_path / "all.gpkg").vector is True
    with pytest.raises(InputError, match="workers"):
        run_batch(["x.tif"], tmp_path, workers=0)


@pytest.mark.parametrize(
    "spec, name, gpus, expected",
    [
        ("auto", 0, 0, "cpu"),
        ("auto", 3, 0, "cpu"),
        ("cpu", 1, 4, "cpu"),
        ("cuda:2", 1, 4, "cuda:2"),
        ("auto", 0, 2, "cuda:0"),
        ("auto", 1, 2, "cuda:1"),
        ("auto", 5, 2, "cuda:1"),  # LocalCluster names workers 0, 1, 2 ...
        ("cuda", "gpu-node-3", 4, "cuda:3"),  # dask worker --name gpu-node --nworkers 4
        ("auto", "tcp://10.0.0.1:40000", 4, "cuda:0"),  # no number: first GPU
        ("auto", None, 1, "cuda:0"),
        ("cuda", 0, 0, "cuda"),  # no GPU: left for the engine to refuse with its message
    ],
)
def test_worker_device(spec, name, gpus, expected):
    assert worker_device(spec, name, gpus) == expected


def test_remove_partials_only_touches_this_scenes_temporaries(tmp_path):
    job = SceneJob("a.tif", tmp_path / "a.tif")
    mine = [".a.1f2e3d4c.stage.tif", ".a.1f2e3d4c.cog.tif", ".a.k2j3h4g5.part.tif", ".a.tif.aux.x1y2z3w4.part.xml"]
    others = [".a.b.1f2e3d4c.stage.tif", "a.tif", "a.qml", ".b.1f2e3d4c.stage.tif", ".a.notes"]
    for name in mine + others:
        (tmp_path / name).write_bytes(b"x")
    assert remove_partials(job) == len(mine)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(others)


# ------------------------------------------------------------------ a broken install


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


# ------------------------------------------------------------------ in process


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


# ------------------------------------------------------------------ on a Dask cluster


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
        frame = pyogrio.read_dataframe(out / f"{scene.stem}.gpkg", layer=scene.stem)
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
    (out / "tile_1.gpkg").unlink()
    third = run_batch(inputs, out, model=checkpoint, options=options, scheduler=client)
    assert [r.status for r in third.scenes] == ["skipped", "done", "skipped", "skipped"]
    assert (out / "tile_1.tif").stat().st_mtime_ns == stamps["tile_1.tif"]
    assert len(pyogrio.read_dataframe(out / "tile_1.gpkg", layer="tile_1")) == len(per_scene["tile_1"])


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


def _scene_worker(dask_scheduler, prefix: str) -> str | None:
    for key, task in dask_scheduler.tasks.items():
        if str(key).startswith(prefix) and task.processing_on is not None:
            return task.processing_on.address
    return None


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


def test_class_areas_of_rejects_foreign_rasters(tmp_path):
    path = write_scene(tmp_path / "plain.tif", seed=1)
    with pytest.raises(InputError, match="not written by glgeo"):
        class_areas_of(path)


# ------------------------------------------------------------------ glgeo segment with many scenes


def segment_cli(*args: object):
    from click.testing import CliRunner

    from glgeo.cli.main import cli

    return CliRunner().invoke(cli, ["segment", *(str(a) for a in args)])


def cli_options(checkpoint: Path) -> list[str]:
    return ["--model", str(checkpoint), "--device", "cpu", "--overlap", "8", "--batch-size", "8"]


def test_cli_several_scenes_in_process(tmp_path, scenes, checkpoint, references):
    out = tmp_path / "out"
    result = segment_cli(scenes[0], scenes[1], "--out-dir", out, *cli_options(checkpoint))
    assert result.exit_code == 0, result.output
    assert "2 scenes in this process: 2 done, 0 skipped (outputs already there), 0 failed" in result.stdout
    assert f"manifest: {out / 'manifest.json'}" in result.stdout
    for scene in scenes[:2]:
        check_output(out / scene.name, scene, references[scene.stem])
    rows = read_manifest(out / "manifest.json")
    assert [(r["input"], r["status"], r["worker"]) for r in rows] == [(str(s), "done", "in-process") for s in scenes[:2]]
    assert rows[1]["class_areas"] == pytest.approx(areas_from(references[scenes[1].stem]))

    again = segment_cli(scenes[0], scenes[1], "--out-dir", out, *cli_options(checkpoint))
    assert again.exit_code == 0, again.output
    assert "2 scenes in this process: 0 done, 2 skipped" in again.stdout and "scenes/min" not in again.stdout
    again = segment_cli(scenes[0], scenes[1], "--out-dir", out, "--json", *cli_options(checkpoint))
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["skipped"] == 2


def test_cli_local_cluster_list_file_failure_and_merge(tmp_path, scenes, checkpoint, references):
    pytest.importorskip("distributed")
    listing = tmp_path / "scenes.txt"
    listing.write_text(f"{scenes[2]}\nmissing.tif\n{scenes[3]}\n")
    out, merged, manifest = tmp_path / "out", tmp_path / "all.gpkg", tmp_path / "run.csv"
    result = segment_cli(
        f"@{listing}", "--out-dir", out, "--workers", "2", "--retries", "0", "--manifest", manifest,
        "--vector-merge", merged, *cli_options(checkpoint),
    )
    assert result.exit_code == 1
    assert "3 scenes on a local cluster of 2 workers: 2 done, 0 skipped (outputs already there), 1 failed" in result.stdout
    assert f"failed: 1 scene ({tmp_path / 'missing.tif'}): SceneError: scene" in result.stderr
    assert "Error: 1 of 3 scenes failed" in result.stderr and "Traceback" not in result.output
    for scene in scenes[2:]:
        check_output(out / scene.name, scene, references[scene.stem])
        assert (out / f"{scene.stem}.gpkg").is_file()
    rows = read_manifest(manifest)
    assert [r["status"] for r in rows] == ["done", "failed", "done"]
    assert all(r["worker"].startswith("tcp://127.0.0.1:") for r in (rows[0], rows[2]))
    import pyogrio

    polygons = pyogrio.read_dataframe(merged, layer="all")
    assert sorted(set(polygons.scene)) == ["tile_2", "tile_3"]
    assert polygons.area_m2.sum() == pytest.approx(
        sum(areas_from(references[s.stem])[c.name] for s in scenes[2:] for c in DEEPGLOBE.classes)
    )


def test_cli_existing_scheduler(tmp_path, scenes, checkpoint, references, client):
    out = tmp_path / "out"
    result = segment_cli(
        str(scenes[0].parent / "tile_[01].tif"), "--out-dir", out, "--scheduler", client.scheduler.address,
        "--json", *cli_options(checkpoint),
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["workers"] == client.scheduler.address
    assert {r["worker"] for r in summary["scenes"]} <= set(client.scheduler_info()["workers"])
    for scene in scenes[:2]:
        check_output(out / scene.name, scene, references[scene.stem])


def test_cli_without_dask_says_how_to_install(monkeypatch, tmp_path, scenes, checkpoint):
    monkeypatch.setitem(sys.modules, "distributed", None)
    result = segment_cli(scenes[0], scenes[1], "--out-dir", tmp_path, "--workers", "2", *cli_options(checkpoint))
    assert result.exit_code == 1
    assert "pip install 'dask[distributed]>=2024.1'" in result.stderr
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert not list(tmp_path.glob("*.tif"))


@pytest.mark.parametrize(
    "extra, message",
    [
        (["-o", "x.tif"], "--out-dir DIR instead of -o"),
        (["--vector", "x.gpkg"], "use --vectors (one GeoPackage per scene) or --vector-merge"),
        (["--probabilities", "p.tif"], "--probabilities names one file"),
    ],
)
def test_cli_single_scene_options_in_a_batch(tmp_path, scenes, checkpoint, extra, message):
    result = segment_cli(scenes[0], scenes[1], "--out-dir", tmp_path, *extra, *cli_options(checkpoint))
    assert result.exit_code == 2
    assert message in result.output
    assert list(tmp_path.iterdir()) == []


def test_cli_batch_needs_out_dir_and_scenes(tmp_path, checkpoint):
    assert "give --out-dir DIR" in segment_cli(str(tmp_path / "*.tif"), *cli_options(checkpoint)).output
    assert "name the scenes" in segment_cli("--out-dir", tmp_path, *cli_options(checkpoint)).output


def test_model_is_loaded_once_per_process_and_again_when_the_file_changes(tmp_path, checkpoint, monkeypatch):
    import glgeo.batch.worker as batch
    import glgeo.segmentation

    monkeypatch.setattr(batch, "_MODEL_CACHE", {})
    calls = []
    real = glgeo.segmentation.load_model
    monkeypatch.setattr(glgeo.segmentation, "load_model", lambda m: calls.append(m) or real(m))
    copy = tmp_path / "model.pt"
    copy.write_bytes(checkpoint.read_bytes())
    first = batch.cached_model(str(copy))
    assert batch.cached_model(str(copy)) is first and calls == [str(copy)]
    os.utime(copy, ns=(time.time_ns(), time.time_ns() + 10**9))  # replaced by a retrained model
    second = batch.cached_model(str(copy))
    assert second is not first and len(calls) == 2 and len(batch._MODEL_CACHE) == 1


def test_merging_scenes_without_crs_is_refused(tmp_path):
    """Polygons of plain images are in pixel coordinates: merged, they would lie on one square."""
    import warnings

    from glgeo.batch import merge_vectors
    from glgeo.vectorization import vectorize

    parts = []
    for i in range(2):
        image = tmp_path / f"plain_{i}.tif"
        with rasterio.open(image, "w", driver="GTiff", width=32, height=24, count=1, dtype="uint8", nodata=NODATA_ID) as dst:
            dst.write(np.full((24, 32), i + 1, dtype=np.uint8), 1)
        parts.append((str(image), vectorize(image, tmp_path / f"plain_{i}.gpkg", scheme=DEEPGLOBE).path))
    with pytest.raises(InputError, match=r"2 of the 2 scenes to merge have no CRS \(plain_0, plain_1\)"):
        merge_vectors(parts, tmp_path / "all.gpkg")
    assert not (tmp_path / "all.gpkg").exists()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one scene merges, and pyogrio's "'crs' was not provided" stays quiet
        merge_vectors(parts[:1], tmp_path / "one.gpkg")
    assert (tmp_path / "one.gpkg").is_file()


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


def test_dask_logs_only_with_verbose(tmp_path, scenes, checkpoint):
    """Dask's INFO lines ("Nanny at ... closed") stay out of the default output."""
    import subprocess

    pytest.importorskip("distributed")
    command = [sys.executable, "-c", "from glgeo.cli.main import cli; cli()", "segment", str(scenes[0]),
               "--out-dir", str(tmp_path / "out"), "--workers", "2", "--retries", "0", *cli_options(checkpoint)]
    quiet = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    assert "distributed." not in quiet.stderr and "Nanny" not in quiet.stderr, quiet.stderr[-2000:]


def test_merged_geopackage_says_where_it_came_from(tmp_path):
    import pyogrio

    from glgeo.batch import merge_vectors
    from glgeo.vectorization import vectorize

    parts = []
    for i in range(2):
        raster = tmp_path / f"tile_{i}.tif"
        with rasterio.open(raster, "w", driver="GTiff", width=20, height=20, count=1, dtype="uint8", nodata=NODATA_ID,
                           crs=CRS, transform=from_origin(500_000.0 + 10 * i, 4_000_000.0, PIXEL, PIXEL)) as dst:
            dst.write(np.full((20, 20), 4, dtype=np.uint8), 1)
            dst.update_tags(GLGEO_MODEL="tiny.pt", GLGEO_MODEL_SHA256="abc", GLGEO_MODE="g2l")
        parts.append((str(raster), vectorize(raster, tmp_path / f"tile_{i}.gpkg", scheme=DEEPGLOBE).path))
    merged = merge_vectors(parts, tmp_path / "all.gpkg")
    metadata = pyogrio.read_info(merged, layer="all")["layer_metadata"]
    assert metadata["GLGEO_MODEL"] == "tiny.pt" and metadata["GLGEO_MODEL_SHA256"] == "abc"
    assert metadata["GLGEO_MERGED_SCENES"] == "2" and "GLGEO_SOURCE_RASTER" not in metadata
