"""glgeo.batch.worker: the device a worker takes, class areas of outputs, the model cache."""

from __future__ import annotations

import os
import time

import pytest

from glgeo.batch import (
    class_areas_of,
    worker_device,
)
from glgeo.errors import InputError

from fixtures.rasters import blocky_scene as write_scene


@pytest.mark.parametrize(
    "spec, name, gpus, expected",
    [
        ("auto", 0, 0, "cpu"),
        ("auto", 3, 0, "cpu"),
        ("cpu", 1, 4, "cpu"),
        ("cuda:2", 1, 4, "cuda:2"),
        ("auto", 0, 2, "cuda:0"),
        ("auto", 1, 2, "cuda:1"),
        ("auto", 5, 2, "cuda:1"),  # LocalCluster names workers 0, 1, 2 ...
        ("cuda", "gpu-node-3", 4, "cuda:3"),  # dask worker --name gpu-node --nworkers 4
        ("auto", "tcp://10.0.0.1:40000", 4, "cuda:0"),  # no number: first GPU
        ("auto", None, 1, "cuda:0"),
        ("cuda", 0, 0, "cuda"),  # no GPU: left for the engine to refuse with its message
    ],
)
def test_worker_device(spec, name, gpus, expected):
    assert worker_device(spec, name, gpus) == expected


def test_class_areas_of_rejects_foreign_rasters(tmp_path):
    path = write_scene(tmp_path / "plain.tif", seed=1)
    with pytest.raises(InputError, match="not written by glgeo"):
        class_areas_of(path)


def test_model_is_loaded_once_per_process_and_again_when_the_file_changes(tmp_path, checkpoint, monkeypatch):
    import glgeo.batch.worker as batch
    import glgeo.segmentation

    monkeypatch.setattr(batch, "_MODEL_CACHE", {})
    calls = []
    real = glgeo.segmentation.load_model
    monkeypatch.setattr(glgeo.segmentation, "load_model", lambda m: calls.append(m) or real(m))
    copy = tmp_path / "model.pt"
    copy.write_bytes(checkpoint.read_bytes())
    first = batch.cached_model(str(copy))
    assert batch.cached_model(str(copy)) is first and calls == [str(copy)]
    os.utime(copy, ns=(time.time_ns(), time.time_ns() + 10**9))  # replaced by a retrained model
    second = batch.cached_model(str(copy))
    assert second is not first and len(calls) == 2 and len(batch._MODEL_CACHE) == 1


def test_a_dask_worker_leaves_the_warnings_it_keeps_to_the_client(caplog):
    """Every worker printed each scene's warnings itself (800 plain images: 800 lines): a
    worker's console leaves out the warnings a scene's result keeps, and the client logs
    them as results arrive (the command line prints a few of each kind)."""
    import logging

    from glgeo.batch import BatchOptions
    from glgeo.batch.manifest import SceneResult
    from glgeo.batch.scheduling import _Run
    from glgeo.batch.worker import _not_kept_for_the_client, _SceneWarnings

    def record(level):
        return logging.LogRecord("glgeo.segmentation", level, __file__, 1, "a.tif has no georeferencing", (), None)

    keeping = _SceneWarnings()
    assert not _not_kept_for_the_client(record(logging.WARNING))
    assert _not_kept_for_the_client(record(logging.ERROR))
    keeping.close()
    assert _not_kept_for_the_client(record(logging.WARNING))

    job_result = SceneResult(input="a.tif", output="out/a.tif", vector=None, status="done",
                             warnings=("a.tif has no georeferencing: 100% of it",))
    for workers, printed in (("in-process", []), ("local cluster of 2 workers", ["a.tif has no georeferencing: 100% of it"])):
        run = _Run([], BatchOptions(), None, workers)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="glgeo"):
            run.add(0, job_result)
        assert [r.getMessage() for r in caplog.records] == printed
