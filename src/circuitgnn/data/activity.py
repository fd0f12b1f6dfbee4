"""Activity to learn from, held as arrays: the one view of data that training reads.

An :class:`Activity` wraps arrays in memory or memory-mapped (numpy or torch, never copied when
they are already float32 numpy arrays); a dataset folder gives one with :meth:`Dataset.activity`,
and :meth:`Activity.from_arrays` makes one from a user's arrays, checking every shape and value
first and naming the argument that is wrong.
"""

from __future__ import annotations

import hashlib
import numbers
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from circuitgnn.errors import DatasetError

InputMode = Literal["none", "multiplicative", "additive"]
_SCAN_ROWS = 4096
_FILES = {"inputs": "omega"}  # array name -> file stem in a dataset folder


def as_float32_frames(value: Any, name: str, n_neurons: int | None = None) -> np.ndarray:
    """A (T, N) float32 numpy view of a numpy array, memory map or torch tensor; raises naming ``name``."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor, without importing torch here
        value = value.detach().cpu().numpy()
    if not isinstance(value, np.ndarray):
        try:
            value = np.asarray(value)
        except (TypeError, ValueError) as err:
            raise DatasetError(f"{name} must be an array of shape (frames, neurons), got {type(value).__name__} ({err})") from None
    if value.ndim != 2:
        raise DatasetError(f"{name} must be 2-dimensional, shape (frames, neurons); got shape {value.shape}")
    if not np.issubdtype(value.dtype, np.number) or np.issubdtype(value.dtype, np.complexfloating):
        raise DatasetError(f"{name} must hold real numbers, got dtype {value.dtype}")
    if n_neurons is not None and value.shape[1] != n_neurons:
        raise DatasetError(f"{name} has {value.shape[1]} neurons (columns) but x has {n_neurons}")
    return value if value.dtype == np.float32 else value.astype(np.float32)


def finite_differences(x: np.ndarray, dt: float, method: Literal["forward", "central"] = "forward") -> np.ndarray:
    """dx/dt estimated from frames ``x`` (T, N) sampled every ``dt``.

    ``forward``: (x[t+1] - x[t]) / dt, the last frame repeating the one before. It is exact for data
    integrated by explicit Euler at the sampling step (what the simulator writes), and first-order
    accurate otherwise. ``central``: (x[t+1] - x[t-1]) / (2 dt), second-order accurate for smooth
    data, first-order at both ends (``numpy.gradient``). Neither smooths: noisy recordings need a
    smoothing differentiator.
    """
    if len(x) < 2:
        raise DatasetError(f"finite differences need at least 2 frames, got {len(x)}")
    if method == "central":
        return np.gradient(np.asarray(x, dtype=np.float32), dt, axis=0).astype(np.float32)
    if method != "forward":
        raise DatasetError(f"derivative method must be 'forward' or 'central', got {method!r}")
    d = np.empty(x.shape, dtype=np.float32)
    d[:-1] = (np.asarray(x[1:], dtype=np.float32) - np.asarray(x[:-1], dtype=np.float32)) / np.float32(dt)
    d[-1] = d[-2]
    return d


@dataclass(frozen=True)
class Activity:
    """Frames of activity with their drift, the optional known input, and where they came from.

    Attributes
    ----------
    x, dxdt:
        (T, N) float32 arrays (in memory or memory-mapped): activity and its time derivative.
    dt:
        Time between frames.
    inputs:
        Optional (T, N) known external input of each frame (``input_mode`` says how it acts).
    input_mode:
        ``multiplicative`` (scales the summed synaptic input), ``additive`` or ``none``.
    grid_size:
        Side of the stimulus grid of the first ``grid_size**2`` neurons (0: none); needed by a
        learned stimulus field.
    source:
        Where the data came from (a folder, or ``"<arrays>"``), for messages.
    fingerprint:
        sha256 of ``x`` when known (a dataset folder records it); see :meth:`x_fingerprint`.
    checked_finite:
        Whether every array was already checked for NaN and inf (training then does not scan them again).
    """

    x: np.ndarray
    dxdt: np.ndarray
    dt: float
    inputs: np.ndarray | None = None
    input_mode: InputMode = "none"
    grid_size: int = 0
    source: str = "<arrays>"
    fingerprint: str | None = None
    checked_finite: bool = False  # from_arrays has already scanned every array for NaN and inf

    @classmethod
    def from_arrays(
        cls,
        x: Any,
        dt: float,
        dxdt: Any | None = None,
        inputs: Any | None = None,
        input_mode: InputMode = "multiplicative",
        derivative: Literal["forward", "central"] = "forward",
        grid_size: int = 0,
    ) -> Activity:
        """Check a user's arrays and wrap them; dx/dt by :func:`finite_differences` when not given."""
        if not isinstance(dt, numbers.Real) or isinstance(dt, bool) or not np.isfinite(float(dt)) or dt <= 0:
            raise DatasetError(f"dt must be a positive number (time between frames), got {dt!r}")
        if not isinstance(grid_size, numbers.Integral) or isinstance(grid_size, bool):
            raise DatasetError(f"grid_size must be an integer, got {grid_size!r}")
        grid_size = int(grid_size)
        xa = as_float32_frames(x, "x")
        n = xa.shape[1]
        if xa.shape[0] < 2:
            raise DatasetError(f"x has {xa.shape[0]} frame(s): training needs at least 2")
        if n < 2:
            raise DatasetError(f"x has {n} neuron(s) (columns): a circuit needs at least 2; is x transposed (it must be frames x neurons)?")
        check_finite_array(xa, "x")
        if dxdt is None:
            da = finite_differences(xa, float(dt), derivative)
        else:
            da = as_float32_frames(dxdt, "dxdt", n)
            if da.shape[0] != xa.shape[0]:
                raise DatasetError(f"dxdt has {da.shape[0]} frames but x has {xa.shape[0]}")
            check_finite_array(da, "dxdt")
        ia = None
        if inputs is not None:
            ia = as_float32_frames(inputs, "inputs", n)
            if ia.shape[0] != xa.shape[0]:
                raise DatasetError(f"inputs has {ia.shape[0]} frames but x has {xa.shape[0]}")
            check_finite_array(ia, "inputs")
            if input_mode not in ("multiplicative", "additive"):
                raise DatasetError(f"input_mode must be 'multiplicative' or 'additive', got {input_mode!r}")
        if grid_size < 0 or grid_size**2 > n:
            raise DatasetError(f"grid_size {grid_size} needs grid_size^2 <= {n} neurons")
        return cls(xa, da, float(dt), ia, input_mode if ia is not None else "none", grid_size, checked_finite=True)

    @property
    def n_frames(self) -> int:
        return int(self.x.shape[0])

    @property
    def n_neurons(self) -> int:
        return int(self.x.shape[1])

    def label(self, name: str) -> str:
        """How to name array ``name`` (x, dxdt or inputs) in a message: its file in a dataset folder, else the argument."""
        if self.source == "<arrays>":
            return name
        return f"{self.source}/{_FILES.get(name, name)}.npy"

    def x_fingerprint(self) -> str:
        """sha256 of ``x`` (the recorded one, or computed in blocks): ties a checkpoint to its data."""
        return self.fingerprint if self.fingerprint is not None else sha256_of_rows(self.x)


def sha256_of_rows(array: np.ndarray, block_rows: int = _SCAN_ROWS) -> str:
    """sha256 of an array's bytes in C order, read in blocks of rows (a memory map is never loaded whole)."""
    h = hashlib.sha256()
    for start in range(0, array.shape[0], block_rows):
        h.update(np.ascontiguousarray(array[start : start + block_rows]).data.cast("B"))
    return h.hexdigest()


def check_finite_array(array: np.ndarray, name: str) -> None:
    """Raise :class:`DatasetError` naming ``name`` and the first frame holding NaN or inf (scanned in blocks)."""
    for start in range(0, array.shape[0], _SCAN_ROWS):
        ok = np.isfinite(np.asarray(array[start : start + _SCAN_ROWS])).all(axis=1)
        if not ok.all():
            raise DatasetError(f"{name} holds NaN or inf at frame {start + int(np.argmin(ok))}: training needs finite data")
