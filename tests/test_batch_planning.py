"""glgeo.batch.planning: jobs, options, an interrupted attempt's temporaries."""

from __future__ import annotations

import pytest

from glgeo.batch import (
    BatchOptions,
    SceneJob,
    plan_jobs,
    remove_partials,
    run_batch,
    scene_stem,
)
from glgeo.errors import InputError


def test_scene_stem_and_plan_jobs(tmp_path):
    assert scene_stem("https://host/a/tile_12.tif?sig=abc") == "tile_12"
    assert scene_stem("/vsis3/bucket/x/y.vrt") == "y"
    jobs = plan_jobs(["/data/a.tif", "https://h/b.jp2"], tmp_path, vector=True)
    assert jobs == [
        SceneJob("/data/a.tif", tmp_path / "a.tif", tmp_path / "a-polygons.gpkg"),
        SceneJob("https://h/b.jp2", tmp_path / "b.tif", tmp_path / "b-polygons.gpkg"),
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


def test_remove_partials_only_touches_this_scenes_temporaries(tmp_path):
    job = SceneJob("a.tif", tmp_path / "a.tif", tmp_path / "a-polygons.gpkg")
    mine = [".a.1f2e3d4c.stage.tif", ".a.1f2e3d4c.cog.tif", ".a.k2j3h4g5.part.tif", ".a.tif.aux.x1y2z3w4.part.xml",
            # what GDAL writes beside a temporary COG: its sidecar, the overviews being built
            ".a.1f2e3d4c.copy.tif.aux.xml", ".a.1f2e3d4c.copy.tif.ovr.tmp",
            # the scene's GeoPackage being written, and SQLite's journal
            ".a-polygons.k2j3h4g5.part.gpkg", ".a-polygons.k2j3h4g5.part.gpkg-journal"]
    # not another scene's (a scene named a-polygons writes a-polygons.tif; its GeoPackage is
    # a-polygons-polygons.gpkg), nor this scene's vector temporaries seen from that scene
    others = [".a.b.1f2e3d4c.stage.tif", "a.tif", "a.qml", ".b.1f2e3d4c.stage.tif", ".a.notes",
              ".a-polygons.1f2e3d4c.part.tif"]
    for name in mine + others:
        (tmp_path / name).write_bytes(b"x")
    assert remove_partials(job) == len(mine)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(others)
    # the scene a-polygons leaves scene a's GeoPackage temporaries alone
    (tmp_path / ".a-polygons.k2j3h4g5.part.gpkg").write_bytes(b"x")
    assert remove_partials(SceneJob("a-polygons.tif", tmp_path / "a-polygons.tif")) == 1  # its own .part.tif
    assert (tmp_path / ".a-polygons.k2j3h4g5.part.gpkg").exists()


def test_a_rerun_leaves_out_the_batch_s_own_outputs(tmp_path):
    """An output folder inside a globbed input folder (``data/**/*.tif`` into ``data/out``): the
    rerun that resumes the batch globs its own outputs too; they are left out, not refused as
    scenes that would write the same files."""
    out = tmp_path / "out"
    scenes = [str(tmp_path / "a.tif"), str(out / "a.tif"), str(out / "a-polygons.gpkg"), str(out / "a.tif.aux.xml"),
              str(tmp_path / "b.jpg"), str(out / "b.tif")]
    assert plan_jobs(scenes, out, vector=True) == [
        SceneJob(scenes[0], out / "a.tif", out / "a-polygons.gpkg"),
        SceneJob(scenes[4], out / "b.tif", out / "b-polygons.gpkg"),
    ]
    # a scene of its own in the output folder is still a scene (and still may not replace itself)
    assert plan_jobs([str(out / "c.jpg")], out) == [SceneJob(str(out / "c.jpg"), out / "c.tif")]
    with pytest.raises(InputError, match="would replace the scene itself"):
        plan_jobs([str(out / "a.tif")], out)
