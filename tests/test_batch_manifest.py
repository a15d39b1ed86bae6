"""glgeo.batch.manifest: the run's rows written as JSON or CSV and read back."""

from __future__ import annotations

import json

import pytest

from glgeo.batch import BatchResult, BlockResult, SceneResult, read_manifest, write_manifest
from glgeo.errors import InputError


def _result() -> BatchResult:
    scenes = (
        SceneResult("a.tif", "out/a.tif", None, "done", {"urban": 12.5, "water": 3.0}, "m2", 1.23456, "w1", "cpu"),
        SceneResult("b.tif", "out/b.tif", "out/b.gpkg", "failed", error="boom"),
    )
    blocks = (BlockResult("block-000-001", (0, 64, 128, 128), 6, "done", 2.5, "w2", "cpu", 812.34),)
    return BatchResult(scenes, 4.0, "local cluster of 2 workers", blocks=blocks)


def test_json_manifest_round_trip(tmp_path):
    path = write_manifest(_result(), tmp_path / "m.json")
    rows = read_manifest(path)
    assert [r["status"] for r in rows] == ["done", "failed"]
    assert rows[0]["class_areas"] == {"urban": 12.5, "water": 3.0} and rows[0]["seconds"] == 1.235
    assert rows[1]["error"] == "boom" and rows[1]["vector"] == "out/b.gpkg"
    data = json.loads(path.read_text())
    assert data["workers"] == "local cluster of 2 workers" and data["done"] == 1 and data["failed"] == 1
    assert data["blocks"][0]["box"] == [0, 64, 128, 128] and data["blocks"][0]["peak_rss_mb"] == 812.3


def test_csv_manifest_has_area_columns_and_block_rows(tmp_path):
    rows = read_manifest(write_manifest(_result(), tmp_path / "m.csv"))
    assert [r["status"] for r in rows] == ["done", "failed", "done"]
    assert rows[0]["area:urban"] == "12.5" and rows[0]["area:water"] == "3.0" and rows[1]["area:urban"] == ""
    assert rows[2]["block"] == "block-000-001" and rows[2]["box"] == "0 64 128 128" and rows[2]["input"] == "a.tif"
    assert rows[0]["block"] == "" and rows[2]["windows"] == "6"


def test_manifest_suffix_and_foreign_files_are_refused(tmp_path):
    with pytest.raises(InputError, match=r"must end in \.json or \.csv"):
        write_manifest(_result(), tmp_path / "m.txt")
    (tmp_path / "other.json").write_text('{"not": "a manifest"}')
    with pytest.raises(InputError, match="is not a glgeo batch manifest"):
        read_manifest(tmp_path / "other.json")
    with pytest.raises(InputError, match="cannot read manifest"):
        read_manifest(tmp_path / "missing.csv")


def test_failures_differing_only_in_their_scene_are_one_reason():
    """Errors name their scene, in its input path and its outputs' paths: grouped by the
    rest of their words, as a whole name only (scene "a" is no article)."""
    def failed(scene: str, error: str) -> SceneResult:
        return SceneResult(input=scene, output="", vector=None, status="failed", error=error)

    rows = (
        failed("/in/a.tif", "SceneError: /in/a.tif: cannot write /out/a.tif: disk full"),
        failed("/in/b.tif", "SceneError: /in/b.tif: cannot write /out/b.tif: disk full"),
        failed("x/a", "SceneError: cannot open 'x/a' as a raster"),
        failed("x/b", "SceneError: cannot open 'x/b' as a raster"),
        failed("/in/c.tif", "SceneError: /in/c.tif: band 4 is missing"),
    )
    summary = BatchResult(rows, 1.0, "in-process").failure_summary()
    assert summary == [
        "2 scenes (e.g. /in/a.tif): SceneError: /in/a.tif: cannot write /out/a.tif: disk full",
        "2 scenes (e.g. x/a): SceneError: cannot open 'x/a' as a raster",
        "1 scene (/in/c.tif): SceneError: /in/c.tif: band 4 is missing",
    ]


@pytest.mark.parametrize("text", ["", "path\n", "tiles/a.tif\n", '{"scenes": []}'])
def test_an_empty_or_one_line_file_of_the_users_is_no_manifest_to_replace(tmp_path, text):
    """A one-path list, a header-only or empty CSV read as no rows, which counted as a glgeo
    manifest: a batch replaced it without --overwrite."""
    from glgeo.batch.manifest import check_manifest_target
    from glgeo.errors import OutputError

    path = tmp_path / ("mine.json" if text.startswith("{") else "mine.csv")
    path.write_text(text)
    with pytest.raises(OutputError, match="already exists and is no glgeo manifest"):
        check_manifest_target(path, overwrite=False)
    check_manifest_target(path, overwrite=True)
    write_manifest(_result(), tmp_path / "ours.csv")  # a manifest of glgeo's own is replaced by a rerun
    check_manifest_target(tmp_path / "ours.csv", overwrite=False)
