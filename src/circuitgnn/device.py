"""Device selection and the environment record saved with every output."""

from __future__ import annotations

import os
import platform
import resource
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from circuitgnn.errors import ConfigError
from circuitgnn.version import __version__


def pick_device(requested: str | None = None) -> torch.device:
    """``None`` or ``"auto"``: CUDA when available, else CPU; otherwise the named device."""
    if requested in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
    except RuntimeError:
        raise ConfigError(f"device {requested!r} is not a device name: use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {requested!r} was requested but CUDA is not available on this machine (use 'auto' or 'cpu')")
    return device


def memory_bytes(device: torch.device) -> int | None:
    """The memory of ``device``: the GPU's, or the machine's physical memory (None when unknown)."""
    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).total_memory)
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def check_fits(n_bytes: float, what: str, device: torch.device) -> None:
    """Refuse, before allocating, work whose arrays alone need more than the device's memory, naming the sizes."""
    total = memory_bytes(device)
    if total is not None and n_bytes > total:
        raise ConfigError(
            f"{what} needs about {n_bytes / 2**30:,.1f} GiB, more than the {total / 2**30:,.1f} GiB of {device}: make it smaller"
        )


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment() -> dict[str, str]:
    """Versions and machine, recorded in metadata so results can be traced."""
    env = {
        "circuitgnn": __version__,
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "torch": torch.__version__,
        "platform": platform.platform(),
        "processor": platform.machine(),
        "torch_threads": str(torch.get_num_threads()),
        "cpu_count": str(os.cpu_count()),
        "cpu_model": _cpu_model(),
    }
    if torch.cuda.is_available():
        env["cuda_device"] = torch.cuda.get_device_name(0)
    return env


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Temporarily set torch's intra-op thread count."""
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def reset_peak_memory() -> bool:
    """Reset the process's resident high-water mark (Linux ``/proc/self/clear_refs``); False where the kernel does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _status_mb(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def resident_memory_mb() -> float | None:
    """The process's resident memory now in MB (Linux), or None."""
    return _status_mb("VmRSS")


def peak_memory_mb() -> float:
    """The process's peak resident memory in MB (since the last :func:`reset_peak_memory` on Linux)."""
    peak = _status_mb("VmHWM")
    if peak is not None:
        return peak
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024
