"""glgeo: segment ultra-high resolution aerial and satellite scenes with GLNet.

The library lives in ``glgeo`` (one concept per module), the network in ``glgeo.models``
and the command line in ``glgeo.cli``. The entry points are plain functions re-exported
here from the module that owns each one:

* ``glgeo.segment`` from :mod:`glgeo.segmentation`;
* ``glgeo.vectorize`` from :mod:`glgeo.vectorization`;
* ``glgeo.train`` from :mod:`glgeo.training`;
* ``glgeo.evaluate_model`` and ``glgeo.evaluate_imagery`` from :mod:`glgeo.evaluate`;
* ``glgeo.run_batch`` from :mod:`glgeo.batch`;

with the settings they take: ``glgeo.InferenceSettings`` (:mod:`glgeo.inference`),
``glgeo.OutputOptions`` (:mod:`glgeo.writer`), ``glgeo.BatchOptions`` (:mod:`glgeo.batch`),
``glgeo.DataSettings`` and ``glgeo.TrainSettings`` (:mod:`glgeo.training`) and
``glgeo.GeoInputs`` (:mod:`glgeo.geodata`).

They are imported on first access (PEP 562), so ``import glgeo`` and ``glgeo --help`` do
not import torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

__version__ = "0.1.0"

#: Re-exported function or settings class -> the module that defines it.
_ENTRY_POINTS = {
    "segment": "glgeo.segmentation",
    "vectorize": "glgeo.vectorization",
    "train": "glgeo.training",
    "evaluate_model": "glgeo.evaluate",
    "evaluate_imagery": "glgeo.evaluate",
    "run_batch": "glgeo.batch",
    "InferenceSettings": "glgeo.inference",
    "OutputOptions": "glgeo.writer",
    "BatchOptions": "glgeo.batch",
    "DataSettings": "glgeo.training",
    "TrainSettings": "glgeo.training",
    "GeoInputs": "glgeo.geodata",
}

__all__ = [
    "BatchOptions", "DataSettings", "GeoInputs", "InferenceSettings", "OutputOptions", "TrainSettings", "__version__",
    "evaluate_imagery", "evaluate_model", "run_batch", "segment", "train", "vectorize",
]

if TYPE_CHECKING:
    from .batch import BatchOptions, run_batch
    from .evaluate import evaluate_imagery, evaluate_model
    from .geodata import GeoInputs
    from .inference import InferenceSettings
    from .segmentation import segment
    from .training import DataSettings, TrainSettings, train
    from .vectorization import vectorize
    from .writer import OutputOptions


def __getattr__(name: str):
    if name in _ENTRY_POINTS:
        function = getattr(import_module(_ENTRY_POINTS[name]), name)
        globals()[name] = function  # later look-ups skip this function
        return function
    raise AttributeError(f"module 'glgeo' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_ENTRY_POINTS})
