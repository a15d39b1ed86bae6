"""What the benchmarks say about the machine they ran on and the memory a run took."""

from __future__ import annotations

import os
import platform
import resource


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


def peak_rss_mb() -> float:
    """This process's peak resident memory, MB. Linux: ``VmHWM`` of its own address space;
    ``ru_maxrss`` (elsewhere) is kept across ``execve``, so a run started from a large
    parent (one that has just built a 400 MP scene) would report the parent's size."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
