"""What the benchmarks print about the machine they ran on (their figures depend on it)."""

from __future__ import annotations

import os
import platform


def cores() -> int:
    """CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def machine() -> str:
    """One line: cores, CPU model, torch version and the load average when the run started."""
    import torch

    try:
        with open("/proc/cpuinfo") as info:
            model = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.processor() or "unknown CPU"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{cores()} cores ({model}), torch {torch.__version__}, load average at start {load:.1f}"

