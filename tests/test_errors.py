"""One exception root; each error is also the builtin a Python caller expects."""

from __future__ import annotations

import inspect

import pytest

from glgeo import errors

BUILTINS = {
    "InputError": ValueError,
    "SceneError": OSError,
    "OutputError": OSError,
    "CheckpointError": ValueError,
    "UnknownNameError": KeyError,
    "DatasetError": ValueError,
    "MissingDependencyError": ImportError,
    "InternalError": RuntimeError,
}


def test_every_error_is_listed_here():
    defined = {name for name, cls in inspect.getmembers(errors, inspect.isclass) if issubclass(cls, errors.GlgeoError)}
    assert defined == {"GlgeoError", *BUILTINS}


@pytest.mark.parametrize(("name", "builtin"), BUILTINS.items())
def test_each_error_derives_from_the_root_and_its_builtin(name, builtin):
    error = getattr(errors, name)("what was wrong; what to do")
    assert isinstance(error, errors.GlgeoError) and isinstance(error, builtin)


def test_unknown_names_print_their_message_not_a_repr():
    # KeyError's str() is the repr of its argument; the message must read as written
    assert str(errors.UnknownNameError("unknown scheme 'x'; choose from: a, b")) == "unknown scheme 'x'; choose from: a, b"
