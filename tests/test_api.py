"""The package-level API: glgeo.segment(...), glgeo.vectorize(...) and the other entry points
are plain functions in any import order."""

from __future__ import annotations

import pytest

import glgeo
from glgeo.errors import InputError


@pytest.mark.parametrize("name", [n for n in glgeo.__all__ if n != "__version__"])
def test_entry_points_are_the_functions_of_their_modules(name):
    import importlib
    import inspect

    function = getattr(glgeo, name)
    assert inspect.isfunction(function) or (inspect.isclass(function) and name[0].isupper())  # or a settings class
    assert function is getattr(importlib.import_module(function.__module__), name)
    assert function.__module__ != f"glgeo.{name}"  # no module shares a re-exported name


def test_every_entry_point_is_listed_in_all():
    assert sorted(glgeo.__all__) == sorted(["__version__", *glgeo._ENTRY_POINTS])


def test_entry_points_stay_functions_after_their_modules_are_imported():
    import inspect

    import glgeo.segmentation  # noqa: F401
    import glgeo.vectorization  # noqa: F401

    assert inspect.isfunction(glgeo.segment) and inspect.isfunction(glgeo.vectorize)
    assert "scene" in inspect.signature(glgeo.segment).parameters
    with pytest.raises(InputError, match="must be a GeoPackage"):
        glgeo.vectorize(__file__, __file__)
    with pytest.raises(AttributeError, match="no attribute 'segmentt'"):
        glgeo.segmentt  # noqa: B018
