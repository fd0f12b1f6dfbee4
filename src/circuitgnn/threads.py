"""CPU threads that leave room for the other jobs on the machine.

torch starts one intra-op thread per core, and its threads spin while they wait for each other: two trainings
side by side on 2 cores then run an order of magnitude slower each than one thread each would (issue 20:
257 ms against 23 ms per step). :class:`ThreadGovernor` measures, every few seconds, how many cores the other
processes kept busy (the machine's busy time from ``/proc/stat`` less this process's own CPU time) and sets
torch's thread count to the cores they leave free, at least one. Several circuitgnn jobs converge to sharing
the cores; alone, a job keeps them all.

It acts only where the user has not chosen: ``CIRCUITGNN_THREADS`` (``auto``, the default, or a number),
``OMP_NUM_THREADS``, or a ``torch.set_num_threads`` call that left torch below the machine's cores all turn it
off (a number in ``CIRCUITGNN_THREADS`` sets that count once).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch

from circuitgnn.errors import ConfigError

_STAT = Path("/proc/stat")
_last_set: int | None = None  # the count a governor last set: not the user's choice


_TORCH_DEFAULT = torch.get_num_threads()  # torch's own choice (one per physical core), before anyone changes it


def _affinity() -> set[int] | None:
    try:
        return set(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return None


def available_cores() -> int:
    """The cores this process may run on."""
    cpus = _affinity()
    return len(cpus) if cpus is not None else (os.cpu_count() or 1)


def _busy_seconds() -> float | None:
    """CPU seconds the CPUs this process may run on have spent busy since boot (None where /proc/stat is not
    readable): load on other CPUs (another container's) is not ours to share."""
    cpus = _affinity()
    try:
        lines = _STAT.read_text().splitlines()
    except OSError:
        return None
    total = 0.0
    for line in lines:
        name, _, rest = line.partition(" ")
        if not name.startswith("cpu") or name == "cpu" or (cpus is not None and int(name[3:]) not in cpus):
            continue
        fields = [int(v) for v in rest.split()]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle and iowait
        total += sum(fields[:8]) - idle
    return total / os.sysconf("SC_CLK_TCK") if total else None


def requested_threads() -> int | None:
    """The thread count set by ``CIRCUITGNN_THREADS`` (None for ``auto`` or unset), refusing other values."""
    value = os.environ.get("CIRCUITGNN_THREADS", "auto").strip().lower()
    if value in ("", "auto"):
        return None
    if not value.isdigit() or int(value) < 1:
        raise ConfigError(f"CIRCUITGNN_THREADS must be 'auto' or a whole number of threads >= 1, got {value!r}")
    return int(value)


class ThreadGovernor:
    """Keeps torch's CPU thread count at the cores the other processes leave free; call :meth:`update` often
    (it acts every ``interval`` seconds)."""

    def __init__(self, device: torch.device, interval: float = 2.0):
        self.interval = interval
        self.cores = min(available_cores(), _TORCH_DEFAULT)  # no more threads than torch itself would start
        fixed = requested_threads()
        if fixed is not None and device.type == "cpu":
            torch.set_num_threads(fixed)
        self.enabled = (
            device.type == "cpu"
            and fixed is None
            and "OMP_NUM_THREADS" not in os.environ
            and self.cores > 1
            and torch.get_num_threads() in (_TORCH_DEFAULT, _last_set)  # else the user chose
            and _busy_seconds() is not None
        )
        self.changes: list[tuple[float, int]] = []  # (time, threads) of each change
        self._start = torch.get_num_threads()
        self._mark()

    def restore(self) -> None:
        """Put back the thread count found at the start (a notebook is not left at one thread)."""
        if self.enabled and torch.get_num_threads() != self._start:
            torch.set_num_threads(self._start)

    def _mark(self) -> None:
        self._wall, self._own, self._busy = time.perf_counter(), time.process_time(), _busy_seconds()

    def others(self) -> float | None:
        """Cores the other processes kept busy since the last mark (None before a mark or without /proc/stat)."""
        busy, wall = _busy_seconds(), time.perf_counter() - self._wall
        if busy is None or self._busy is None or wall <= 0:
            return None
        return max(0.0, (busy - self._busy) - (time.process_time() - self._own)) / wall

    def update(self) -> int:
        """Set the thread count when ``interval`` seconds have passed since the last measurement; returns it."""
        if not self.enabled or time.perf_counter() - self._wall < self.interval:  # every step: one clock read
            return torch.get_num_threads()
        threads = torch.get_num_threads()
        others = self.others()
        self._mark()
        if others is None:
            return threads
        wanted = max(1, min(self.cores, round(self.cores - others)))
        if wanted != threads:
            global _last_set
            torch.set_num_threads(wanted)
            _last_set = wanted
            self.changes.append((time.time(), wanted))
        return wanted
