"""The package-level API: glgeo.segment(...) and glgeo.vectorize(...) in any import order,
and output checks shared by every command."""

from __future__ import annotations

import pytest

import glgeo
from glgeo.atomic import check_output_path
from glgeo.errors import InputError, OutputError


def test_package_functions_stay_callable_after_submodule_imports():
    import glgeo.segment  # noqa: F401  (binds glgeo.segment to the submodule)
    import glgeo.vectorize  # noqa: F401
    from glgeo.segment import segment as segment_function
    from glgeo.vectorize import vectorize as vectorize_function

    assert callable(glgeo.segment) and callable(glgeo.vectorize)
    with pytest.raises(InputError, match="must be a GeoPackage"):
        glgeo.vectorize(__file__, __file__)  # the call reaches the function
    assert segment_function.__name__ == "segment" and vectorize_function.__name__ == "vectorize"


def test_output_equal_to_input_is_refused(tmp_path):
    scene = tmp_path / "scene.tif"
    scene.write_bytes(b"x")
    with pytest.raises(OutputError, match="same file as the input"):
        check_output_path(scene, overwrite=True, inputs=(scene,))
    with pytest.raises(OutputError, match="does not exist"):
        check_output_path(tmp_path / "missing" / "o.tif", overwrite=False)
    assert check_output_path(tmp_path / "o.tif", overwrite=False, inputs=("/vsicurl/https://x/y.tif",)).name == "o.tif"
