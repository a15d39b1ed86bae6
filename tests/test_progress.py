"""Progress callbacks: one type, taken by every long-running library function."""

from __future__ import annotations

import importlib
import inspect

import pytest

from glgeo.progress import ProgressCallback

FUNCTIONS = [
    ("glgeo.segmentation", "segment"),
    ("glgeo.vectorization", "vectorize"),
    ("glgeo.evaluate", "evaluate_rasters"),
    ("glgeo.evaluate", "evaluate_model"),
    ("glgeo.evaluate", "evaluate_imagery"),
    ("glgeo.batch.scheduling", "run_batch"),
    ("glgeo.inference", "StreamingSegmenter.run"),
]


@pytest.mark.parametrize(("module_name", "qualname"), FUNCTIONS)
def test_every_progress_parameter_is_the_one_callback_type(module_name, qualname):
    module = importlib.import_module(module_name)
    function = module
    for part in qualname.split("."):
        function = getattr(function, part)
    annotation = inspect.signature(function).parameters["progress"].annotation
    assert annotation == "ProgressCallback | None"
    assert module.ProgressCallback is ProgressCallback  # imported, not defined again
