"""What an output's metadata says made it."""

from __future__ import annotations

import hashlib
import os

from glgeo.provenance import Provenance, file_sha256, glgeo_items

MADE = Provenance(model="inria-buildings", model_sha256="ab" * 32, glgeo_version="0.1.0", mode="g2l",
                  precision="bf16", scale=0.25, gsd_m=2.0, blend="taper", created="2026-12-04T15:52:16Z")


def test_provenance_round_trips_through_metadata_items():
    tags = MADE.tags()
    assert tags["GLGEO_MODEL"] == "inria-buildings" and tags["GLGEO_READING_SCALE"] == "0.25"
    assert tags["TIFFTAG_SOFTWARE"] == "glgeo 0.1.0" and tags["TIFFTAG_DATETIME"] == "2026:12:04 15:52:16"
    assert Provenance.from_tags(tags) == MADE
    assert Provenance.from_tags({"TIFFTAG_SOFTWARE": "gdal"}) is None
    plain = Provenance.from_tags({**tags, "GLGEO_READING_GSD_M": "", "GLGEO_READING_SCALE": "x"})
    assert plain.gsd_m is None and plain.scale == 1.0


def test_a_scale_of_its_own_on_each_axis_round_trips():
    """A scene in degrees is read at a scale of its own down and across (rows, cols)."""
    from dataclasses import replace

    made = replace(MADE, scale=(1.0, 0.801272), gsd_m=0.680936)
    assert made.tags()["GLGEO_READING_SCALE"] == "1,0.801272"
    assert Provenance.from_tags(made.tags()) == made


def test_glgeo_items_are_only_the_provenance_items():
    tags = {**MADE.tags(), "GLGEO_SCHEME": "{}", "AREA_OR_POINT": "Area"}
    assert set(glgeo_items(tags)) == {k for k in MADE.tags() if k.startswith("GLGEO_")}


def test_file_hash_is_recomputed_when_the_file_changes(tmp_path):
    model = tmp_path / "model.pt"
    model.write_bytes(b"weights")
    assert file_sha256(model) == hashlib.sha256(b"weights").hexdigest()
    model.write_bytes(b"new weights")
    os.utime(model, ns=(1, 1))  # another modification time, as a retrained file has
    assert file_sha256(model) == hashlib.sha256(b"new weights").hexdigest()


def test_options_are_those_asked_for_that_can_change_the_map():
    from glgeo.inference import InferenceSettings
    from glgeo.provenance import options_rule

    assert options_rule(InferenceSettings()) == "defaults"
    # device, threads, batching and reading ahead cannot change the map
    assert options_rule(InferenceSettings(device="cpu", torch_threads=1, batch_size=4, prefetch=0)) == "defaults"
    asked = options_rule(InferenceSettings(scale=0.5, blend="sum", precision="fp32"), bands=(3, 2, 1), tta=True,
                         aoi="/data/fields.gpkg", bounds=(1, 2, 3, 4))
    assert asked == "scale=0.5, precision=fp32, blend=sum, bands=3,2,1, tta, aoi=fields.gpkg, bounds=1,2,3,4"
    made = Provenance.from_tags({**MADE.tags(), "GLGEO_OPTIONS": asked})
    assert made.options == asked and made.tags()["GLGEO_OPTIONS"] == asked
