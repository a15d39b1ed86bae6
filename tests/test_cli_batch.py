"""glgeo segment with several scenes (cli/batch.py): in process, on a local or an existing
cluster, and the messages for bad combinations."""

from __future__ import annotations

import json
import sys

import pytest
from affine import Affine

from glgeo.batch import (
    read_manifest,
)
from glgeo.schemes import DEEPGLOBE

from fixtures.batch import areas_from, check_output, cli_options, segment_cli


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


def test_the_manifest_words_its_messages_in_flags_as_the_terminal_does(tmp_path, scenes, checkpoint):
    """A manifest row's warning said "pass overwrite=True" (the library's words) where the
    terminal said "pass --overwrite"; the command line's manifest says the flags too."""
    out = tmp_path / "out"
    assert segment_cli(scenes[0], "--out-dir", out, *cli_options(checkpoint)).exit_code == 0
    again = segment_cli(scenes[0], "--out-dir", out, "--co", "NBITS=8", *cli_options(checkpoint))
    assert again.exit_code == 0, again.output
    (row,) = read_manifest(out / "manifest.json")
    assert row["warnings"] == ["kept as it was written (NBITS=3, this run asked NBITS=8): output options do not"
                               " change the classes; pass --overwrite to write it again with them"]


def test_the_merge_may_go_into_the_out_dir_it_creates(tmp_path, scenes, checkpoint):
    """--out-dir is created if missing, so --vector-merge may name a file in it (it was refused:
    "output folder does not exist"); a merge into another missing folder still is."""
    out = tmp_path / "out"
    result = segment_cli(scenes[0], "--out-dir", out, "--vector-merge", out / "all.gpkg", *cli_options(checkpoint))
    assert result.exit_code == 0, result.output
    assert (out / "all.gpkg").is_file()
    result = segment_cli(scenes[0], "--out-dir", tmp_path / "o2", "--vector-merge", tmp_path / "nowhere" / "all.gpkg",
                         *cli_options(checkpoint))
    assert result.exit_code == 1 and "does not exist" in result.stderr and not (tmp_path / "o2").exists()


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
        assert (out / f"{scene.stem}-polygons.gpkg").is_file()
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


def test_a_failed_scene_is_told_with_the_commands_flags(tmp_path, scenes, checkpoint):
    import numpy as np
    import rasterio

    gray = tmp_path / "gray.tif"
    with rasterio.open(gray, "w", driver="GTiff", height=64, width=64, count=1, dtype="uint8") as dst:
        dst.write(np.zeros((1, 64, 64), np.uint8))
    result = segment_cli(gray, scenes[0], "--out-dir", tmp_path / "out", *cli_options(checkpoint))
    assert result.exit_code == 1
    assert f"failed: 1 scene ({gray}): InputError: scene has 1 band" in result.stderr
    assert "pass --bands 1,1,1 to choose them" in result.stderr and "bands=(" not in result.stderr


def test_a_failed_scene_s_warning_has_the_commands_flags_too(tmp_path, scenes, checkpoint, caplog):
    """The warning when a scene fails, while the batch goes on, said ``bands=(1, 1, 1)``."""
    import numpy as np
    import rasterio

    gray = tmp_path / "gray.tif"
    with rasterio.open(gray, "w", driver="GTiff", height=64, width=64, count=1, dtype="uint8") as dst:
        dst.write(np.zeros((1, 64, 64), np.uint8))
    with caplog.at_level("WARNING", logger="glgeo"):
        result = segment_cli(gray, scenes[0], "--out-dir", tmp_path / "out", *cli_options(checkpoint))
    assert result.exit_code == 1
    failed = [r.getMessage() for r in caplog.records if "failed" in r.getMessage()]
    assert failed and all("pass --bands 1,1,1" in m and "bands=(" not in m for m in failed), failed


def test_an_interrupted_batch_says_what_is_finished(tmp_path, scenes, checkpoint, monkeypatch):
    """Ctrl-C after the first scene: not "no partial output was left behind", but how many
    scenes are finished and that the same command finishes the batch; exit status 130."""
    import glgeo.batch.scheduling as scheduling

    process_scene, calls = scheduling.process_scene, []

    def interrupted_at_the_second(*args, **kwargs):
        calls.append(args)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return process_scene(*args, **kwargs)

    monkeypatch.setattr(scheduling, "process_scene", interrupted_at_the_second)
    out = tmp_path / "out"
    result = segment_cli(scenes[0], scenes[1], scenes[2], "--out-dir", out, *cli_options(checkpoint))
    assert result.exit_code == 130
    assert (f"Interrupted: 1 of 3 scenes are finished in {out} (each scene's row is in {out / 'manifest.json'}); "
            "run the same batch again") in result.stderr
    assert "no partial output" not in result.output
    assert [r["status"] for r in read_manifest(out / "manifest.json")] == ["done", "failed", "failed"]


def test_the_summary_says_how_many_scenes_have_warnings(tmp_path, scenes, checkpoint):
    import numpy as np

    from fixtures.rasters import write_geotiff

    plain = write_geotiff(tmp_path / "plain.tif", np.full((3, 96, 96), 90, np.uint8), crs=None, transform=Affine.identity())
    out = tmp_path / "out"
    result = segment_cli(scenes[0], plain, "--out-dir", out, *cli_options(checkpoint))
    assert result.exit_code == 0, result.output
    assert f"warnings about 1 scene: each scene's row of {out / 'manifest.json'} lists them" in result.output


def test_a_warning_repeated_for_many_scenes_is_printed_three_times(tmp_path, checkpoint, caplog):
    """A batch of 800 plain images printed "has no georeferencing" 800 times: each kind of
    warning is printed for three scenes, the fourth says the rest are in the manifest, and
    the manifest keeps every scene's."""
    import numpy as np

    from fixtures.rasters import write_geotiff

    plain = [write_geotiff(tmp_path / f"plain_{i}.tif", np.full((3, 64, 64), 90 + i, np.uint8), crs=None,
                           transform=Affine.identity())
             for i in range(6)]
    out = tmp_path / "out"
    with caplog.at_level("WARNING", logger="glgeo"):
        result = segment_cli(*plain, "--out-dir", out, *cli_options(checkpoint))
    assert result.exit_code == 0, result.output
    said = [r.getMessage() for r in caplog.records if "has no georeferencing" in r.getMessage()]
    assert len(said) == 4, said
    assert said[3].endswith(f"(further warnings like this one are not printed: each scene's row of {out / 'manifest.json'} "
                            "lists its warnings)")
    rows = read_manifest(out / "manifest.json")
    assert all(any("has no georeferencing" in w for w in row["warnings"]) for row in rows), rows
    # after the batch nothing is held back
    import logging

    from glgeo.cli.batch import _RepeatsCollapsed

    assert not any(isinstance(f, _RepeatsCollapsed) for h in logging.getLogger().handlers for f in h.filters)


@pytest.mark.parametrize(("args", "message"), [
    (["--manifest", "m.json"], "--manifest belongs to a batch (--out-dir DIR) or to one scene split over Dask workers"
                               " (-o OUT --workers N)"),
    (["--vectors"], "--vectors belongs to a batch (--out-dir DIR); for one scene with -o, write its polygons with"
                    " --vector FILE.gpkg"),
])
def test_batch_options_with_one_scene_and_o_say_where_they_belong(tmp_path, scenes, checkpoint, args, message):
    """It said "with several scenes, write them with --out-dir" though one scene was given."""
    result = segment_cli(scenes[0], "-o", tmp_path / "a.tif", *args, *cli_options(checkpoint))
    assert result.exit_code == 2 and result.output.strip().splitlines()[-1] == f"Error: {message}", result.output
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_while_the_local_cluster_starts_prints_one_line(tmp_path, scenes, checkpoint):
    """Ctrl-C in the first seconds of a --workers 2 run (the worker processes still starting)
    printed the workers' tracebacks, and Dask's exit handler an AssertionError on the cluster
    the interrupted start left, before glgeo's one line. Ctrl-C reaches every process of the
    terminal's group: here the command's own group, once its worker processes are spawned."""
    import os
    import signal
    import subprocess
    import time

    psutil = pytest.importorskip("psutil")
    pytest.importorskip("distributed")
    out = tmp_path / "out"
    args = ["segment", str(scenes[0]), str(scenes[1]), "--out-dir", str(out), "--workers", "2",
            *cli_options(checkpoint)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASK_")}
    run = subprocess.Popen([sys.executable, "-c", "from glgeo.cli.main import cli; cli()", *args], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    def command_line(process) -> str:
        try:
            return " ".join(process.cmdline())
        except psutil.Error:  # gone, or a zombie not yet reaped (a spawn helper that ended)
            return ""

    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and run.poll() is None:
            try:
                children = psutil.Process(run.pid).children(recursive=True)
            except psutil.Error:
                break
            lines = [command_line(p) for p in children]
            spawned = [line for line in lines if "spawn_main" in line and "resource_tracker" not in line]
            if len(spawned) >= 2:  # the workers: their Python is starting
                break
            time.sleep(0.02)
        os.killpg(run.pid, signal.SIGINT)
        stdout, stderr = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
    assert run.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr and "AssertionError" not in stderr, stderr[-3000:]
    assert stderr.strip().splitlines()[-1].startswith("Interrupted"), stderr[-3000:]


@pytest.fixture
def read_only_folder(tmp_path):
    """A folder this process cannot write in: its mode bits, or (root ignores them) the
    immutable attribute; skips where neither makes it so."""
    import os
    import subprocess

    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    immutable = False
    if os.access(folder, os.W_OK):  # root
        immutable = subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0
    try:
        (folder / "probe").touch()
    except OSError:
        pass
    else:
        (folder / "probe").unlink()
        pytest.skip("cannot make a read-only folder here")
    yield folder
    if immutable:
        subprocess.run(["chattr", "-i", str(folder)], check=True)
    folder.chmod(0o755)


def test_a_read_only_out_dir_is_refused_before_any_scene(read_only_folder, scenes, checkpoint):
    """A read-only --out-dir was found out scene by scene (each failed as it wrote): one line
    before anything runs now, saying what to do."""
    result = segment_cli(scenes[0], scenes[1], "--out-dir", read_only_folder, *cli_options(checkpoint))
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        f"Error: cannot write in the output folder '{read_only_folder}'; make it writable, or give another --out-dir"
    ], result.stderr
    assert result.stdout == ""
    # a folder to create in it: the same, one line that says what to do
    result = segment_cli(scenes[0], scenes[1], "--out-dir", read_only_folder / "out", *cli_options(checkpoint))
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1].startswith(
        f"Error: cannot create the output folder '{read_only_folder / 'out'}': "), result.stderr
    assert result.stderr.strip().endswith("; create it yourself, or give another --out-dir"), result.stderr


def test_a_manifest_or_merge_in_a_read_only_folder_is_refused_before_any_scene(read_only_folder, scenes, checkpoint,
                                                                               tmp_path):
    """Found out after every scene had run, with a doubled advice ('choose a writable folder;
    check the folder exists and is writable')."""
    out = tmp_path / "out"
    result = segment_cli(scenes[0], scenes[1], "--out-dir", out, "--manifest", read_only_folder / "m.json",
                         *cli_options(checkpoint))
    assert result.exit_code == 1 and not out.exists(), result.stderr  # no output folder made either
    assert result.stderr.strip() == (f"Error: cannot write in the manifest's folder '{read_only_folder}'; make it"
                                     " writable, or give the manifest another path"), result.stderr
    result = segment_cli(scenes[0], scenes[1], "--out-dir", out, "--vectors", "--vector-merge",
                         read_only_folder / "all.gpkg", *cli_options(checkpoint))
    assert result.exit_code == 1 and not any(out.glob("*.tif")), result.stderr
    assert result.stderr.strip() == f"Error: cannot write in the output folder '{read_only_folder}'; choose a writable folder"
