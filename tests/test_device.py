"""Device, precision and batch size choices."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from glgeo.device import (
    CPU_BATCH_SIZE,
    autocast,
    cpu_has_native_bf16,
    default_batch_size,
    resolve_device,
    resolve_precision,
)
from glgeo.errors import InputError


def test_device_names():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")
    expected = torch.device("cuda:0") if torch.cuda.is_available() else torch.device("cpu")
    assert resolve_device("auto") == expected
    with pytest.raises(InputError, match="unknown device 'gpu0'; use auto, cpu, cuda or cuda:N"):
        resolve_device("gpu0")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_without_a_gpu_says_to_use_the_cpu():
    with pytest.raises(InputError, match="no CUDA GPU is usable here; use device='cpu'"):
        resolve_device("cuda:1")


def test_precision_on_a_cpu():
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) == "fp32" and resolve_precision("bf16", cpu) == "bf16"
    assert resolve_precision("auto", cpu) == ("bf16" if cpu_has_native_bf16() else "fp32")
    with pytest.raises(InputError, match="fp16 needs a CUDA device"):
        resolve_precision("fp16", cpu)
    with pytest.raises(InputError, match="unknown precision 'half'"):
        resolve_precision("half", cpu)


def test_precision_on_cuda_follows_the_gpu(monkeypatch):
    cuda = torch.device("cuda", 0)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_precision("auto", cuda) == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert resolve_precision("auto", cuda) == "fp16" and resolve_precision("fp16", cuda) == "fp16"


def test_batch_size_on_a_cpu_and_on_a_gpu(monkeypatch):
    assert default_batch_size(torch.device("cpu")) == CPU_BATCH_SIZE
    free = 8 * 2**30
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (free, 2 * free))
    cuda = torch.device("cuda", 0)
    assert default_batch_size(cuda) == 16  # 4 GiB usable / 256 MiB per 508 px patch, at the cap
    assert default_batch_size(cuda, cap=64) == 16
    assert default_batch_size(cuda, patch_size=1016, cap=64) == 4  # four times the area
    free = 2**20
    assert default_batch_size(cuda) == 1  # at least one patch


def test_autocast_runs_the_precision_asked_for():
    cpu = torch.device("cpu")
    a, b = torch.rand(4, 4), torch.rand(4, 4)
    with autocast(cpu, "fp32"):
        assert (a @ b).dtype == torch.float32
    with autocast(cpu, "bf16"):
        assert (a @ b).dtype == torch.bfloat16


def test_auto_precision_is_bf16_on_cpus_with_native_bf16(monkeypatch):
    from glgeo import device as dev

    cpu = torch.device("cpu")
    monkeypatch.setattr(dev, "cpu_has_native_bf16", lambda: True)
    assert dev.resolve_precision("auto", cpu) == "bf16"
    monkeypatch.setattr(dev, "cpu_has_native_bf16", lambda: False)
    assert dev.resolve_precision("auto", cpu) == "fp32"
    assert dev.resolve_precision("fp32", cpu) == "fp32"
    with pytest.raises(InputError, match="fp16 needs a CUDA device"):
        dev.resolve_precision("fp16", cpu)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="Linux /proc: VmHWM")
def test_peak_resident_memory_is_the_process_own_not_its_parent(tmp_path):
    """A process started by a large one (a Dask worker, a benchmark's run) reports its own
    peak: ``ru_maxrss`` would report the parent's 1.5 GB (Linux keeps it across fork and
    execve)."""
    import subprocess
    import sys

    import numpy as np

    from glgeo.device import peak_resident_mb

    ballast = np.ones(1_500_000_000 // 8)  # 1.5 GB, touched
    assert peak_resident_mb() > 1400
    child = subprocess.run(
        [sys.executable, "-c", "import resource; from glgeo.device import peak_resident_mb; "
                               "print(peak_resident_mb(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"],
        capture_output=True, text=True, check=True,
    )
    own, inherited = map(float, child.stdout.split())
    del ballast
    assert own < 1200, (own, inherited)
