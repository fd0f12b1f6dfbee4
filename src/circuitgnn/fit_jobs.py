"""Several fits of :class:`~circuitgnn.estimator.CircuitGNN` at once, in worker processes.

Each worker receives the activity once, trains the fits it is given on the frames each names, with its share of
the CPU cores (or its own GPU where there are several) and writes each fitted estimator to a file, which the
caller loads: nothing larger than the frame indices travels per fit, and no model crosses a process boundary
in memory (a CUDA tensor would not). Workers are started with ``spawn``: threads of a forked PyTorch can deadlock.
As with a PyTorch DataLoader's workers, a script that uses them needs its work under ``if __name__ == "__main__":``.
"""

from __future__ import annotations

import multiprocessing
import os
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from circuitgnn.config import ModelConfig, TrainingConfig
from circuitgnn.data.activity import ScaleMethod
from circuitgnn.errors import CircuitGNNError
from circuitgnn.estimator import CircuitGNN


@dataclass(frozen=True)
class FitJob:
    """One fit: its settings, the frames of the activity it trains on (all when None), their segment starts, the run
    folder it trains in (resumed when it holds a run), how the activity's scale is estimated (as
    :meth:`CircuitGNN.fit`'s ``scale``), how a known input acts and the stimulus grid's side (``input_mode`` and
    ``grid_size`` of :meth:`CircuitGNN.fit`)."""

    model: ModelConfig
    training: TrainingConfig
    frames: np.ndarray | None
    segments: tuple[int, ...]
    run_dir: Path | None
    scale: ScaleMethod | None = None
    input_mode: Literal["multiplicative", "additive"] = "multiplicative"
    grid_size: int = 0


def available_cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def resolve_jobs(n_jobs: int, n_fits: int) -> int:
    """How many fits run at once: ``n_jobs``, or with -1 one per GPU (CUDA) or per core, at most ``n_fits``."""
    if not isinstance(n_jobs, int) or isinstance(n_jobs, bool) or (n_jobs < 1 and n_jobs != -1):
        raise CircuitGNNError(f"n_jobs must be a positive integer or -1 (one per GPU or core), got {n_jobs!r}")
    if n_jobs == -1:
        n_jobs = torch.cuda.device_count() if torch.cuda.is_available() else available_cores()
    return max(1, min(n_jobs, n_fits))


_SHARED: dict[str, Any] = {}


def _start_worker(x: np.ndarray, dxdt: np.ndarray | None, inputs: np.ndarray | None, dt: float, threads: int) -> None:
    torch.set_num_threads(threads)
    _SHARED.update(x=x, dxdt=dxdt, inputs=inputs, dt=dt)


def run_fit(
    job: FitJob, x: np.ndarray, dt: float, dxdt: np.ndarray | None, progress: bool = False, inputs: np.ndarray | None = None
) -> CircuitGNN:
    """Fit ``job`` to its frames of ``x`` (with their ``dxdt`` and known ``inputs`` when given) here, resuming its run
    folder where it holds a run."""
    if job.frames is not None:
        x = x[job.frames]
        dxdt, inputs = (None if a is None else a[job.frames] for a in (dxdt, inputs))
    resume = job.run_dir is not None and (job.run_dir / "run.json").is_file()
    est = CircuitGNN(job.model, job.training, progress=progress)
    return est.fit(
        x, dt, dxdt, inputs, input_mode=job.input_mode, grid_size=job.grid_size, segments=job.segments, scale=job.scale,
        run_dir=job.run_dir, resume=resume,
    )  # fmt: skip


def _run(job: FitJob, gpu: int | None, out: Path) -> Path:
    if gpu is not None:  # "auto" then means this GPU, and the settings saved with the fit stay as given
        torch.cuda.set_device(gpu)
    return run_fit(job, _SHARED["x"], _SHARED["dt"], _SHARED["dxdt"], inputs=_SHARED["inputs"]).save(out)


def fit_in_parallel(
    jobs: Sequence[FitJob],
    x: np.ndarray,
    dt: float,
    dxdt: np.ndarray | None,
    n_jobs: int,
    on_done: Callable[[int], None] | None = None,
    inputs: np.ndarray | None = None,
) -> list[CircuitGNN]:
    """The fitted estimators of ``jobs``, in their order, trained ``n_jobs`` at a time in worker processes, each
    with an equal share of the cores (where the settings say "auto" and there are several GPUs, fit k on GPU
    k mod their count); ``on_done(k)`` is called as fit k finishes. ``inputs``: a known input of every frame of ``x``.

    When a fit fails, the fits not yet started are cancelled, those running finish (those with a run folder
    have their checkpoints to resume from), and the error is raised."""
    workers = resolve_jobs(n_jobs, len(jobs))
    threads = max(1, available_cores() // workers)
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    context = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="circuitgnn-fits-") as scratch:
        paths: dict[int, Path] = {}
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker, initargs=(x, dxdt, inputs, dt, threads)) as pool:
            futures: dict[Future[Path], int] = {}
            for k, job in enumerate(jobs):
                gpu = k % gpus if gpus > 1 and job.training.device == "auto" else None
                futures[pool.submit(_run, job, gpu, Path(scratch) / f"fit_{k}.pt")] = k
            try:
                for future in as_completed(futures):
                    paths[futures[future]] = future.result()
                    if on_done is not None:
                        on_done(futures[future])
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise
        return [CircuitGNN.load(paths[k], jobs[k].training.device) for k in range(len(jobs))]


__all__ = ["FitJob", "available_cores", "fit_in_parallel", "resolve_jobs", "run_fit"]
