"""Open a class raster and its GeoPackage in a real QGIS (Debian's python3-qgis).

QGIS runs under the system python (``/usr/bin/python3``, or ``$GLGEO_QGIS_PYTHON``) with
``QT_QPA_PLATFORM=offscreen``, through ``tests/qgis_check.py``; the test is skipped with a
reason where that python cannot import ``qgis.core``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from glgeo.schemes import DEEPGLOBE, NODATA_ID
from glgeo.styles import FILL_ALPHA, write_raster_sidecars
from glgeo.vectorization import vectorize

pytestmark = pytest.mark.qgis

QGIS_PYTHON = os.environ.get("GLGEO_QGIS_PYTHON", "/usr/bin/python3")
CHECK_SCRIPT = Path(__file__).with_name("qgis_check.py")
TRANSFORM = from_origin(500_000.0, 4_400_000.0, 0.5, 0.5)


def _qgis_missing_reason() -> str | None:
    if shutil.which(QGIS_PYTHON) is None and not Path(QGIS_PYTHON).is_file():
        return f"{QGIS_PYTHON} not found (install Debian's python3-qgis, or set GLGEO_QGIS_PYTHON)"
    probe = subprocess.run(
        [QGIS_PYTHON, "-c", "import qgis.core"],
        capture_output=True,
        text=True,
        env={**os.environ, "QT_QPA_PLATFORM": "offscreen"},
    )
    if probe.returncode != 0:
        last_line = (probe.stderr.strip().splitlines() or ["no error output"])[-1]
        return f"{QGIS_PYTHON} cannot import qgis.core (install Debian's python3-qgis): {last_line}"
    return None


@pytest.fixture(scope="module")
def qgis_python() -> str:
    reason = _qgis_missing_reason()
    if reason:
        pytest.skip(reason)
    return QGIS_PYTHON


def _center(col: float, row: float) -> tuple[float, float]:
    return TRANSFORM.c + col * TRANSFORM.a, TRANSFORM.f + row * TRANSFORM.e


def test_qgis_opens_both_outputs_styled(tmp_path, qgis_python):
    # Big flat regions (so probes sit far from borders), a nodata band, and an island.
    data = np.full((120, 160), 2, dtype=np.uint8)  # agriculture
    data[:, 80:] = 4  # forest
    data[30:70, 20:60] = 5  # water island
    data[100:, :] = NODATA_ID
    raster = tmp_path / "landcover.tif"
    # No colour table on purpose: the paletted renderer must come from landcover.qml.
    with rasterio.open(raster, "w", driver="GTiff", width=160, height=120, count=1, dtype="uint8",
                       nodata=NODATA_ID, crs="EPSG:32618", transform=TRANSFORM) as dst:
        dst.write(data, 1)
        bounds = dst.bounds
    write_raster_sidecars(raster, DEEPGLOBE)
    out = tmp_path / "landcover.gpkg"
    result = vectorize(raster, out, scheme=DEEPGLOBE, simplify=1.0, block_size=48)

    png = tmp_path / "render.png"
    probes = {"agriculture": (10, 10), "forest": (120, 50), "water": (40, 50), None: (40, 110)}
    command = [qgis_python, str(CHECK_SCRIPT), "--raster", str(raster), "--gpkg", str(out), "--layer", result.layer,
               "--png", str(png)]
    for col, row in probes.values():
        command += ["--probe", *map(str, _center(col + 0.5, row + 0.5))]
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "XDG_RUNTIME_DIR": str(tmp_path)}
    completed = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert completed.returncode == 0, completed.stderr[-2000:]
    report = json.loads(completed.stdout)
    if os.environ.get("GLGEO_QGIS_RENDER"):
        shutil.copy(png, os.environ["GLGEO_QGIS_RENDER"])  # to look at it
    print(json.dumps(report, indent=1), file=sys.stderr)

    expected_extent = [bounds.left, bounds.bottom, bounds.right, bounds.top]
    rast = report["raster"]
    assert rast["valid"] and rast["crs"] == "EPSG:32618"
    assert rast["extent"] == pytest.approx(expected_extent)
    assert (rast["width"], rast["height"]) == (160, 120)
    assert rast["renderer"] == "paletted"
    assert [c["label"] for c in rast["classes"]] == DEEPGLOBE.names
    assert [c["value"] for c in rast["classes"]] == [c.id for c in DEEPGLOBE.classes]
    assert [tuple(c["color"][:3]) for c in rast["classes"]] == DEEPGLOBE.colors

    vect = report["vector"]
    assert vect["valid"] and vect["crs"] == "EPSG:32618"
    # The polygons cover the raster minus the nodata band at the bottom.
    assert vect["extent"] == pytest.approx([bounds.left, bounds.top - 100 * 0.5, bounds.right, bounds.top])
    assert vect["feature_count"] == result.n_polygons == 3
    assert {"class_id", "class_name", "area_m2"} <= set(vect["fields"])
    assert vect["renderer"] == "categorizedSymbol" and vect["attribute"] == "class_id"
    assert [(c["value"], c["label"]) for c in vect["categories"]] == [(str(c.id), c.name) for c in DEEPGLOBE.classes]
    assert [tuple(c["color"][:3]) for c in vect["categories"]] == DEEPGLOBE.colors

    # What QGIS drew: class colours inside the regions, the white background under nodata.
    assert report["png_saved"] and png.stat().st_size > 1000
    for (name, _), probe in zip(probes.items(), report["probes"]):
        expected = (255, 255, 255) if name is None else DEEPGLOBE.by_name(name).color
        assert tuple(probe["raster"][:3]) == expected, (name, probe)
        assert tuple(probe["vector"][:3]) == pytest.approx(_over_white(expected), abs=2), (name, probe)


def _over_white(color) -> tuple[float, ...]:
    """What a polygon of ``color`` filled half transparent (the vector style) shows on white."""
    alpha = FILL_ALPHA / 255
    return tuple(alpha * c + (1 - alpha) * 255 for c in color)


def _run_check(qgis_python: str, tmp_path: Path, *args: str) -> dict:
    command = [qgis_python, str(CHECK_SCRIPT), *args]
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "XDG_RUNTIME_DIR": str(tmp_path)}
    completed = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert completed.returncode == 0, completed.stderr[-2000:]
    report = json.loads(completed.stdout)
    print(json.dumps(report, indent=1), file=sys.stderr)
    return report


def _write_with_glgeo(out: Path, data: np.ndarray, scheme, scores: np.ndarray | None = None,
                      scores_out: Path | None = None) -> Path:
    """``data`` (ids, NODATA_ID where no data) written as ``glgeo segment`` writes a class
    raster: its writer, a COG with the scheme's colour table and sidecars (and ``scores``,
    one uint8 band per class, to ``scores_out``)."""
    from rasterio.crs import CRS

    from glgeo.blend import RowBand
    from glgeo.io import SceneInfo
    from glgeo.writer import ClassRasterWriter

    height, width = data.shape
    info = SceneInfo(path="scene.tif", height=height, width=width, count=3, bands=(1, 2, 3), dtype="uint8",
                     crs=CRS.from_epsg(32618), transform=TRANSFORM, nodata=None, has_mask=False, block_shape=(256, 256))
    out.parent.mkdir(parents=True, exist_ok=True)
    with ClassRasterWriter(out, info, scheme, scores_out=scores_out) as writer:
        writer.write(RowBand(0, data, scores))
        writer.commit()
    return out


def _bare_copy(styled: Path, folder: Path) -> Path:
    bare = folder / styled.name
    bare.parent.mkdir()
    shutil.copy(styled, bare)  # the tif alone, as e-mailed or uploaded
    assert [p.name for p in bare.parent.iterdir()] == [styled.name]
    return bare


def test_bare_cog_and_background_left_out(tmp_path, qgis_python):
    """A class raster copied without its sidecars still draws in the scheme's colours and
    lists one legend entry per value of its 2 bits, and the GeoPackage's default style
    leaves the background class undrawn (issue 16)."""
    from glgeo.schemes import INRIA

    data = np.zeros((120, 160), dtype=np.uint8)  # background
    data[20:60, 30:90] = 1  # a building
    data[100:, :] = NODATA_ID
    styled = _write_with_glgeo(tmp_path / "styled" / "buildings.tif", data, INRIA)
    bare = _bare_copy(styled, tmp_path / "bare")
    out = tmp_path / "buildings.gpkg"
    result = vectorize(bare, out)  # the scheme travels inside the tif

    building, background = _center(60.5, 40.5), _center(10.5, 80.5)
    report = _run_check(qgis_python, tmp_path, "--raster", str(bare), "--gpkg", str(out), "--layer", result.layer,
                        "--png", str(tmp_path / "bare.png"), "--probe", *map(str, building),
                        "--probe", *map(str, background))
    rast = report["raster"]
    assert rast["valid"] and rast["renderer"] == "paletted"
    # 2 bits: 4 legend entries, the two classes in the scheme's colours, nodata 3 transparent
    # (2 is never written; a TIFF palette has no alpha, so QGIS shows it opaque black)
    assert [c["value"] for c in rast["classes"]] == [0, 1, 2, 3]
    assert [tuple(c["color"][:3]) for c in rast["classes"][:2]] == INRIA.colors
    assert rast["classes"][2]["color"] == [0, 0, 0, 255] and rast["classes"][3]["color"][3] == 0
    building_probe, background_probe = report["probes"]
    assert tuple(building_probe["raster"][:3]) == INRIA.by_name("building").color

    vect = report["vector"]
    assert [(c["label"], c["render"]) for c in vect["categories"]] == [("background", False), ("building", True)]
    # the provenance QGIS shows under Layer Properties > Metadata (gpkg_metadata)
    assert vect["metadata"]["title"] == result.layer
    assert vect["metadata"]["abstract"].startswith("Polygons of the classes of buildings.tif, vectorized ")
    assert "Classes (inria): 0 background, 1 building." in vect["metadata"]["abstract"]
    assert "GLGEO_SOURCE_RASTER: buildings.tif" in vect["metadata"]["history"]
    assert tuple(building_probe["vector"][:3]) == pytest.approx(_over_white(INRIA.by_name("building").color), abs=2)
    assert tuple(background_probe["vector"][:3]) == (255, 255, 255)  # not drawn: the map shows through

    styled_report = _run_check(qgis_python, tmp_path, "--raster", str(styled))
    assert [c["label"] for c in styled_report["raster"]["classes"]] == INRIA.names  # with its .qml: the classes only
    metadata = styled_report["raster"]["metadata"]  # from buildings.qmd
    assert metadata["title"] == "buildings" and metadata["keywords"] == {"glgeo": ["inria", "background", "building"]}
    assert metadata["abstract"] == (
        "The class of each pixel of scene.tif. Classes (inria): 0 background, 1 building; 3: no data."
    )


def test_bare_deepglobe_cog_lists_its_classes_and_nodata(tmp_path, qgis_python):
    """A DeepGlobe class raster from glgeo's writer, copied alone: 3 bits, so QGIS lists 8
    entries, the 7 classes in their colours and nodata (7) transparent, and draws them."""
    data = np.repeat(np.arange(7, dtype=np.uint8), 20)[None].repeat(120, axis=0)  # 7 bands of 20 columns
    data[100:, :] = NODATA_ID
    styled = _write_with_glgeo(tmp_path / "styled" / "landcover.tif", data, DEEPGLOBE)
    bare = _bare_copy(styled, tmp_path / "bare")
    out = tmp_path / "landcover.gpkg"
    result = vectorize(bare, out)
    assert result.n_polygons == 7
    probes = [_center(20 * c + 10.5, 50.5) for c in range(7)] + [_center(70.5, 110.5)]
    report = _run_check(qgis_python, tmp_path, "--raster", str(bare), "--gpkg", str(out), "--layer", result.layer,
                        "--png", str(tmp_path / "bare.png"), *(a for p in probes for a in ("--probe", *map(str, p))))
    rast = report["raster"]
    assert rast["valid"] and rast["renderer"] == "paletted"
    assert [c["value"] for c in rast["classes"]] == list(range(8))
    assert [tuple(c["color"][:3]) for c in rast["classes"][:7]] == DEEPGLOBE.colors
    assert [c["color"][3] for c in rast["classes"]] == [255] * 7 + [0]
    for probe, info in zip(report["probes"], DEEPGLOBE.classes):
        assert tuple(probe["raster"][:3]) == info.color, (info.name, probe)
        if info.name != "unknown":  # the vector style leaves unknown undrawn
            assert tuple(probe["vector"][:3]) == pytest.approx(_over_white(info.color), abs=2), (info.name, probe)
    assert tuple(report["probes"][-1]["raster"][:3]) == (255, 255, 255)  # nodata: transparent

    styled_report = _run_check(qgis_python, tmp_path, "--raster", str(styled))
    assert [c["label"] for c in styled_report["raster"]["classes"]] == DEEPGLOBE.names


def test_polygons_of_a_plain_image_lie_on_it_in_qgis(tmp_path, qgis_python):
    """A class raster without georeferencing (a DeepGlobe JPEG's) and its polygons: QGIS puts
    both at 0,-height : width,0, and draws the same class at the same place."""
    data = np.full((90, 120), 2, dtype=np.uint8)  # agriculture
    data[10:40, 60:110] = 5  # water, near the top right
    raster = tmp_path / "plain.tif"
    with rasterio.open(raster, "w", driver="GTiff", width=120, height=90, count=1, dtype="uint8",
                       nodata=NODATA_ID) as dst:  # no CRS, no transform
        dst.write(data, 1)
    write_raster_sidecars(raster, DEEPGLOBE)
    out = tmp_path / "plain.gpkg"
    result = vectorize(raster, out, scheme=DEEPGLOBE)
    water, field = (85.5, -25.5), (20.5, -70.5)  # map points: x = column, y = -row
    report = _run_check(qgis_python, tmp_path, "--raster", str(raster), "--gpkg", str(out), "--layer", result.layer,
                        "--png", str(tmp_path / "plain.png"), "--probe", *map(str, water), "--probe", *map(str, field))
    assert report["raster"]["extent"] == pytest.approx([0, -90, 120, 0])
    assert report["vector"]["extent"] == pytest.approx([0, -90, 120, 0])
    for probe, name in zip(report["probes"], ["water", "agriculture"]):
        assert tuple(probe["raster"][:3]) == DEEPGLOBE.by_name(name).color, probe
        assert tuple(probe["vector"][:3]) == pytest.approx(_over_white(DEEPGLOBE.by_name(name).color), abs=2), probe


def test_scores_open_drawn_by_a_class_score_with_no_data_transparent(tmp_path, qgis_python):
    """``--probabilities``: QGIS draws the first class that is not a background (building)
    with a ramp from 0 to 100 %, no data transparent, and shows the scores' provenance.
    (Without its style QGIS showed the first two scores and the mask as a colour composite.)"""
    from glgeo.schemes import INRIA
    from glgeo.styles import SCORE_RAMP

    data = np.zeros((120, 160), dtype=np.uint8)
    data[20:60, 30:90] = 1  # a building
    data[100:, :] = NODATA_ID
    building = np.where(data == 1, 255, 0).astype(np.uint8)
    scores = np.stack([255 - building, building])
    scores[:, 100:] = 0  # as the engine writes no data
    scores_out = tmp_path / "buildings-scores.tif"
    _write_with_glgeo(tmp_path / "buildings.tif", data, INRIA, scores, scores_out)
    probes = [_center(60.5, 40.5), _center(10.5, 80.5), _center(40.5, 110.5)]
    report = _run_check(qgis_python, tmp_path, "--raster", str(scores_out), "--png", str(tmp_path / "scores.png"),
                        *(a for p in probes for a in ("--probe", *map(str, p))))
    rast = report["raster"]
    assert rast["valid"] and rast["crs"] == "EPSG:32618" and (rast["width"], rast["height"]) == (160, 120)
    assert rast["band_names"][:2] == ["Band 1: score background", "Band 2: score building"]
    assert rast["renderer"] == "singlebandpseudocolor" and rast["band"] == 2
    assert rast["alpha_band"] == 3  # the internal mask, as QGIS exposes it
    assert [item["label"] for item in rast["ramp"]] == ["building 0 %", "building 25 %", "building 50 %",
                                                        "building 75 %", "building 100 %"]
    inside, outside, nodata = (tuple(p["raster"][:3]) for p in report["probes"])
    hex_color = lambda rgb: "#%02x%02x%02x" % rgb  # noqa: E731
    assert (hex_color(inside), hex_color(outside)) == (SCORE_RAMP[-1], SCORE_RAMP[0])
    assert nodata == (255, 255, 255)  # transparent over the white background
    metadata = rast["metadata"]
    assert metadata["title"] == "buildings-scores"
    assert metadata["abstract"].startswith("The score of each class at each pixel of scene.tif (softmax x 255)")
