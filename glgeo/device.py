"""Choosing the torch device and numeric precision for inference; the host memory a run took."""

from __future__ import annotations

import contextlib
import re
import sys
from typing import ContextManager, Literal

import torch

from .errors import InputError

Precision = Literal["auto", "fp32", "bf16", "fp16"]


def resolve_device(spec: str = "auto") -> torch.device:
    """The torch device for ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.

    ``auto`` is the first CUDA GPU when one is usable, else the CPU.

    Raises:
        InputError: an unknown spec, or a CUDA device that is not there.
    """
    spec = spec.strip().lower()
    if spec == "auto":
        return torch.device("cuda:0") if torch.cuda.is_available() else torch.device("cpu")
    if spec == "cpu":
        return torch.device("cpu")
    match = re.fullmatch(r"cuda(?::(\d+))?", spec)
    if not match:
        raise InputError(f"unknown device {spec!r}; use auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise InputError(f"device {spec!r} asked for but no CUDA GPU is usable here; use device='cpu'")
    index = int(match.group(1) or 0)
    if index >= torch.cuda.device_count():
        raise InputError(f"device {spec!r} does not exist: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    return torch.device("cuda", index)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU runs bf16 convolutions natively (oneDNN's own check: AVX-512 BF16,
    AVX512-FP16 or AMX); elsewhere bf16 is emulated and slower than fp32."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(precision: Precision, device: torch.device) -> Literal["fp32", "bf16", "fp16"]:
    """The precision to run at.

    ``auto`` is the fastest precision whose class maps agree with fp32 on at least 99 % of
    the pixels of the shared DeepGlobe samples (``benchmarks/speed.py`` measures it; figures
    in ``docs/performance.md``): bf16 autocast on CUDA GPUs that support it
    (fp16 on older ones) and on CPUs with native bf16, fp32 on other CPUs.

    Raises:
        InputError: an unknown precision, or fp16 on a CPU.
    """
    if precision not in ("auto", "fp32", "bf16", "fp16"):
        raise InputError(f"unknown precision {precision!r}; use auto, fp32, bf16 or fp16")
    if precision != "auto":
        if precision == "fp16" and device.type != "cuda":
            raise InputError("fp16 needs a CUDA device; on a CPU use bf16 or fp32")
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_has_native_bf16() else "fp32"


#: Patches per network call on a CPU: larger batches were not faster there, and a batch's
#: activations are the largest transient memory (figures in ``docs/performance.md``).
CPU_BATCH_SIZE = 2

#: GPU memory one 508 x 508 patch takes in a batch, ResNet-50, bf16, rounded up from the
#: measured figure (``docs/performance.md``).
CUDA_BYTES_PER_PATCH = 256 * 2**20


def default_batch_size(device: torch.device, patch_size: int = 508, cap: int = 16) -> int:
    """Patches per network call sized to the device.

    On a CPU :data:`CPU_BATCH_SIZE`. On CUDA as many patches as fit in half the GPU's free
    memory at :data:`CUDA_BYTES_PER_PATCH` per 508 px patch (scaled by the patch's area),
    between 1 and ``cap``.
    """
    if device.type != "cuda":
        return CPU_BATCH_SIZE
    free, _ = torch.cuda.mem_get_info(device)
    per_patch = CUDA_BYTES_PER_PATCH * (patch_size / 508) ** 2
    return max(1, min(cap, int(free / 2 // per_patch)))


def autocast(device: torch.device, precision: Literal["fp32", "bf16", "fp16"]) -> ContextManager:
    """Autocast context for ``precision`` on ``device`` (a no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def peak_resident_mb() -> float:
    """This process's peak resident memory in MiB (0 where it cannot be known).

    On Linux, the high-water mark of the process's own address space (``VmHWM``):
    ``getrusage``'s ``ru_maxrss`` is kept across ``fork`` and ``execve``, so a process
    started by a large one (a Dask worker, a benchmark's child) would report its parent's
    size. Elsewhere ``ru_maxrss`` (bytes on macOS, KiB on the other systems).
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    try:
        import resource
    except ImportError:  # Windows
        return 0.0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024
