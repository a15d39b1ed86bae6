"""Class schemes: validated at construction, registered by name, round-tripped through checkpoints."""

from __future__ import annotations

import pytest

from glgeo import schemes
from glgeo.errors import InputError, UnknownNameError
from glgeo.schemes import (
    DEEPGLOBE,
    INRIA,
    NODATA_ID,
    ClassInfo,
    ClassScheme,
    class_raster_bits,
    class_raster_nodata,
    get_scheme,
    list_schemes,
    register_scheme,
)


def test_the_benchmark_schemes():
    assert DEEPGLOBE.n_classes == 7 and DEEPGLOBE.names[1] == "urban" and DEEPGLOBE.scored_ids == [1, 2, 3, 4, 5, 6]
    assert INRIA.names == ["background", "building"] and INRIA.scored_ids == [0, 1]
    assert INRIA.by_name("building").mask_value == 255 and DEEPGLOBE.by_name("water").color == (0, 0, 255)
    assert DEEPGLOBE.colormap()[5] == (0, 0, 255, 255) and DEEPGLOBE.colormap()[NODATA_ID] == (0, 0, 0, 0)
    assert DEEPGLOBE.by_name("forest").hex_color == "#00ff00"


def _scheme_of(n: int) -> ClassScheme:
    return ClassScheme(name=f"n{n}", classes=tuple(ClassInfo(i, f"c{i}", (i, i, i), i) for i in range(n)))


@pytest.mark.parametrize(("n", "bits"), [(2, 2), (3, 2), (4, 3), (7, 3), (8, 4), (15, 4), (16, 8), (254, 8)])
def test_class_rasters_take_the_fewest_bits_that_hold_the_ids_and_nodata(n, bits):
    scheme = _scheme_of(n)
    assert class_raster_bits(scheme) == bits
    nodata = class_raster_nodata(bits)
    assert nodata == 2**bits - 1 and nodata >= n  # the largest value, never a class id
    cmap = scheme.colormap(bits)
    assert sorted(cmap) == list(range(2**bits))  # a TIFF palette has 2^bits entries
    assert all(cmap[i] == (i, i, i, 255) for i in range(n))
    assert all(cmap[v][3] == 0 for v in range(n, 2**bits))  # nodata and unused values transparent


def test_the_benchmark_schemes_pack_into_3_and_2_bits():
    assert (class_raster_bits(DEEPGLOBE), class_raster_nodata(3)) == (3, 7)
    assert (class_raster_bits(INRIA), class_raster_nodata(2)) == (2, 3)
    assert class_raster_nodata(8) == NODATA_ID and len(DEEPGLOBE.colormap()) == 256
    assert DEEPGLOBE.colormap(3)[7] == (0, 0, 0, 0) and DEEPGLOBE.colormap(3)[6] == (255, 255, 255, 255)
    assert INRIA.colormap(2) == {0: (230, 230, 230, 255), 1: (200, 30, 30, 255), 2: (0, 0, 0, 0), 3: (0, 0, 0, 0)}
    with pytest.raises(InputError, match="2 bits cannot hold the 7 classes of 'deepglobe' plus nodata; use 3 or more"):
        DEEPGLOBE.colormap(2)
    with pytest.raises(InputError, match="1-8 bits"):
        class_raster_nodata(9)


def test_class_names_and_ids_as_typed_on_a_command_line():
    assert DEEPGLOBE.ids_for(["water", " 2", "barren"]) == [5, 2, 6]
    with pytest.raises(UnknownNameError, match="unknown class 'roads' in scheme 'deepglobe'; choose from: unknown, urban"):
        DEEPGLOBE.ids_for(["roads"])
    with pytest.raises(UnknownNameError, match="unknown class '9'"):
        INRIA.ids_for(["9"])  # not an id of a two-class scheme


@pytest.mark.parametrize(
    ("classes", "message"),
    [
        ((ClassInfo(0, "a", (0, 0, 0), 0),), "needs at least two classes"),
        ((ClassInfo(0, "a", (0, 0, 0), 0), ClassInfo(2, "b", (1, 1, 1), 1)), "must number its classes 0..n-1"),
        ((ClassInfo(0, "a", (0, 0, 0), 0), ClassInfo(1, "a", (1, 1, 1), 1)), "repeats a class name"),
    ],
)
def test_bad_schemes_are_refused_at_construction(classes, message):
    with pytest.raises(InputError, match=message):
        ClassScheme(name="bad", classes=classes)


def test_bad_classes_are_refused_at_construction():
    with pytest.raises(InputError, match="out of range: use 0-254"):
        ClassInfo(NODATA_ID, "nodata", (0, 0, 0), 0)
    with pytest.raises(InputError, match="give three values 0-255"):
        ClassInfo(0, "red", (300, 0, 0), 0)
    with pytest.raises(InputError, match="mask_encoding must be 'rgb' or 'value'"):
        ClassScheme(name="x", classes=INRIA.classes, mask_encoding="palette")


def test_schemes_round_trip_and_register(monkeypatch):
    assert ClassScheme.from_dict(DEEPGLOBE.to_dict()) == DEEPGLOBE
    assert ClassScheme.from_dict(INRIA.to_dict()) == INRIA
    with pytest.raises(InputError, match="incomplete: missing"):
        ClassScheme.from_dict({"name": "x"})
    monkeypatch.setattr(schemes, "_SCHEMES", dict(schemes._SCHEMES))
    roads = ClassScheme(name="roads", classes=(ClassInfo(0, "other", (0, 0, 0), 0), ClassInfo(1, "road", (9, 9, 9), 1)))
    register_scheme(roads)
    assert get_scheme("roads") is roads and list_schemes() == ["deepglobe", "inria", "roads"]
    with pytest.raises(UnknownNameError, match="unknown class scheme 'landsat'; choose from: deepglobe, inria, roads"):
        get_scheme("landsat")


def test_a_scheme_file_that_is_no_scheme_is_one_line_not_a_traceback(tmp_path):
    """--scheme x.json with a typo printed a JSONDecodeError traceback (evaluate, train)."""
    from click.testing import CliRunner

    from glgeo.cli.main import cli
    from glgeo.schemes import load_scheme

    broken = tmp_path / "roads.json"
    broken.write_text('{"name": "roads", "classes": [')
    with pytest.raises(InputError, match=r"roads.json' is not valid JSON .*; fix it or give a scheme name"):
        load_scheme(broken)
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(InputError, match="holds no scheme"):
        load_scheme(tmp_path / "list.json")
    with pytest.raises(InputError, match="typo.json' does not exist; check the path"):
        load_scheme(tmp_path / "typo.json")
    (tmp_path / "ids.json").write_text('{"name": "x", "classes": [{"id": "one", "name": "a", "color": [1, 2, 3], '
                                       '"mask_value": 1}]}')
    with pytest.raises(InputError, match="class scheme description is not valid"):
        load_scheme(tmp_path / "ids.json")
    for name in ("p.tif", "t.tif"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "r").mkdir()
    for command in (["evaluate", "--pred", str(tmp_path / "p.tif"), "--truth", str(tmp_path / "t.tif")],
                    ["train", "--dataset", "folder", "--root", str(tmp_path / "r"), "--out", str(tmp_path / "run")]):
        result = CliRunner().invoke(cli, [*command, "--scheme", str(broken)])
        assert result.exit_code in (1, 2) and isinstance(result.exception, SystemExit), result.output
        assert "is not valid JSON" in result.output, result.output
