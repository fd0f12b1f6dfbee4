"""Wall time and peak memory of each phase of an experiment, kept in ``WORK/ID/resources.json``.

Peak memory is the process's resident high-water mark (Linux ``VmHWM``), reset
at the start of each phase where the kernel allows it, so each phase reports
its own peak; elsewhere it is the process's peak so far, an upper bound. On a
GPU the peak of allocated CUDA memory is recorded too.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from circuitgnn.data.writer import write_json_atomic
from circuitgnn.device import peak_memory_mb, reset_peak_memory

RESOURCES_FILE = "resources.json"


def read_resources(root: Path) -> dict[str, dict[str, float]]:
    """The record of an experiment folder: {phase: {wall_seconds, peak_memory_mb, ...}} ({} when none)."""
    path = root / RESOURCES_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


@contextmanager
def measure(root: Path, phase: str, **extra: float) -> Iterator[None]:
    """Add this phase's wall time to the record and keep the largest peak memory seen for it.

    ``extra`` values (such as the budget the phase ran under) replace earlier ones.
    """
    exact = reset_peak_memory()
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    try:
        yield
    finally:
        record = read_resources(root)
        old = record.get(phase, {})
        new = {
            "wall_seconds": old.get("wall_seconds", 0.0) + time.perf_counter() - t0,
            "peak_memory_mb": max(old.get("peak_memory_mb", 0.0), peak_memory_mb()),
            "peak_memory_exact": exact and old.get("peak_memory_exact", True),
            **extra,
        }
        if cuda:
            new["peak_cuda_mb"] = max(old.get("peak_cuda_mb", 0.0), torch.cuda.max_memory_allocated() / 2**20)
        record[phase] = new
        write_json_atomic(root / RESOURCES_FILE, record)
