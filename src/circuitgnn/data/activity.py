"""Activity to learn from, held as arrays: the one view of data that training reads.

An :class:`Activity` wraps arrays in memory or memory-mapped (numpy or torch, never copied when
they are already float32 numpy arrays); a dataset folder gives one with :meth:`Dataset.activity`,
and :meth:`Activity.from_arrays` makes one from a user's arrays, checking every shape and value
first and naming the argument that is wrong.
"""

from __future__ import annotations

import hashlib
import numbers
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from circuitgnn.data.derivatives import DerivativeMethod, estimate_derivative, longest_smoothness, segment_bounds
from circuitgnn.data.indicators import Indicator
from circuitgnn.data.informative import check_informative
from circuitgnn.errors import DatasetError

InputMode = Literal["none", "multiplicative", "additive"]
ScaleMethod = Literal["std", "robust"]
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


class Frames:
    """Sizes of anything holding activity ``x`` of shape (frames, neurons)."""

    if TYPE_CHECKING:

        @property
        def x(self) -> np.ndarray: ...

    @property
    def n_frames(self) -> int:
        return int(self.x.shape[0])

    @property
    def n_neurons(self) -> int:
        return int(self.x.shape[1])


@dataclass(frozen=True)
class Observation:
    """How a deconvolved calcium recording was seen: what the fluorescence objective of training fits.

    ``fluorescence`` (T, N) is the recording, ``calcium`` (T, N) its smoothed calcium (the indicator's
    state at each frame), ``indicator`` the model that links them to the activity and ``smoothness``
    the deconvolution's spline weight (None: unknown, or central differences).
    """

    fluorescence: np.ndarray
    calcium: np.ndarray
    indicator: Indicator
    smoothness: float | None = None


@dataclass(frozen=True)
class Activity(Frames):
    """Frames of activity, their drift when known, the optional known input, and where they came from.

    Attributes
    ----------
    x:
        (T, N) float32 activity (in memory or memory-mapped); NaN marks a missing value.
    dxdt:
        (T, N) float32 time derivative of ``x`` when known (a simulation's exact drift), else None:
        training then estimates it (``training.derivative``) or needs none (``training.objective: rollout``).
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
        Whether every array was already checked for inf (and, outside ``x``, NaN), so that training does not scan them again.
    segments:
        Start frame of each contiguous segment (sessions, trials): no derivative, batch or rollout crosses a boundary.
    holdout:
        Fraction of each segment's last frames kept out of training (the forecast score's frames).
    neurons:
        The columns of the caller's array kept (silent neurons are left out), or None when all were kept.
    scale:
        How the activity scale ``xnorm`` is estimated: ``std`` (1.5 x the std, the paper) or ``robust``
        (1.5 x the half distance between the 16th and 84th percentiles, per segment, then the median).
    missing:
        Whether ``x`` has missing (NaN) values, which training then masks out of the loss.
    observation:
        For activity deconvolved from a calcium recording: the recording and its indicator (see :class:`Observation`).
    """

    x: np.ndarray
    dxdt: np.ndarray | None
    dt: float
    inputs: np.ndarray | None = None
    input_mode: InputMode = "none"
    grid_size: int = 0
    source: str = "<arrays>"
    fingerprint: str | None = None
    checked_finite: bool = False
    segments: tuple[int, ...] = (0,)
    holdout: float = 0.0
    neurons: np.ndarray | None = None
    scale: ScaleMethod = "std"
    missing: bool = False
    observation: Observation | None = None

    @classmethod
    def from_arrays(
        cls,
        x: Any,
        dt: float,
        dxdt: Any | None = None,
        inputs: Any | None = None,
        input_mode: InputMode = "multiplicative",
        grid_size: int = 0,
        *,
        segments: Sequence[int] = (0,),
        holdout: float = 0.0,
        scale: ScaleMethod = "std",
        names: Sequence[str] | None = None,
    ) -> Activity:
        """Check a user's arrays and wrap them, naming the argument that is wrong.

        NaN in ``x`` marks missing values (masked out of the loss, never filled in); neurons with no
        recorded value or constant activity are left out with a warning that names them (``neurons``
        lists the columns kept).
        """
        check_dt(dt)
        if not isinstance(grid_size, numbers.Integral) or isinstance(grid_size, bool):
            raise DatasetError(f"grid_size must be an integer, got {grid_size!r}")
        check_holdout(holdout)
        if scale not in ("std", "robust"):
            raise DatasetError(f"scale must be 'std' or 'robust', got {scale!r}")
        grid_size = int(grid_size)
        xa = as_float32_frames(x, "x")
        if xa.shape[0] < 2:
            raise DatasetError(f"x has {xa.shape[0]} frame(s): training needs at least 2")
        if xa.shape[1] < 2:
            raise DatasetError(
                f"x has {xa.shape[1]} neuron(s) (columns): a circuit needs at least 2; is x transposed (it must be frames x neurons)?"
            )
        bounds = segment_bounds(xa.shape[0], segments)
        missing = check_finite_array(xa, "x", allow_nan=True)
        da = None
        if dxdt is not None:
            da = as_float32_frames(dxdt, "dxdt", xa.shape[1])
            if da.shape[0] != xa.shape[0]:
                raise DatasetError(f"dxdt has {da.shape[0]} frames but x has {xa.shape[0]}")
            check_finite_array(da, "dxdt", allow_nan=missing)
        ia = None
        if inputs is not None:
            ia = as_float32_frames(inputs, "inputs", xa.shape[1])
            if ia.shape[0] != xa.shape[0]:
                raise DatasetError(f"inputs has {ia.shape[0]} frames but x has {xa.shape[0]}")
            check_finite_array(ia, "inputs")
            if input_mode not in ("multiplicative", "additive"):
                raise DatasetError(f"input_mode must be 'multiplicative' or 'additive', got {input_mode!r}")
        if names is not None and (isinstance(names, str) or not isinstance(names, Sequence) or not all(isinstance(v, str) for v in names)):
            raise DatasetError(f"names must be a list of strings, one per neuron, got {type(names).__name__}")
        if names is not None and len(names) != xa.shape[1]:
            raise DatasetError(f"names has {len(names)} entries but x has {xa.shape[1]} neurons")
        kept, _ = neurons_with_signal(xa, names, "x")
        if kept is not None:
            xa = np.ascontiguousarray(xa[:, kept])
            da = None if da is None else np.ascontiguousarray(da[:, kept])
            ia = None if ia is None else np.ascontiguousarray(ia[:, kept])
        kept_names = None if names is None else list(names) if kept is None else [names[i] for i in kept]
        check_informative(xa, [b[0] for b in bounds], "x", kept_names)
        if grid_size < 0 or grid_size**2 > xa.shape[1]:
            raise DatasetError(f"grid_size {grid_size} needs grid_size^2 <= {xa.shape[1]} neurons")
        return cls(
            xa,
            da,
            float(dt),
            ia,
            input_mode if ia is not None else "none",
            grid_size,
            checked_finite=True,
            segments=tuple(b[0] for b in bounds),
            holdout=float(holdout),
            neurons=kept,
            scale=scale,
            missing=missing,
        )

    def label(self, name: str) -> str:
        """How to name array ``name`` (x, dxdt or inputs) in a message: its file in a dataset folder, else the argument."""
        if self.source == "<arrays>":
            return name
        return f"{self.source}/{_FILES.get(name, name)}.npy"

    def x_fingerprint(self) -> str:
        """sha256 of ``x`` (the recorded one, or computed in blocks): ties a checkpoint to its data."""
        return self.fingerprint if self.fingerprint is not None else sha256_of_rows(self.x)

    def train_bounds(self) -> list[tuple[int, int]]:
        """(start, stop) of the frames of each segment that training may read: all but its last ``holdout`` fraction."""
        return [(a, a + max(1, round((b - a) * (1 - self.holdout)))) for a, b in segment_bounds(self.n_frames, self.segments)]

    def heldout_bounds(self) -> list[tuple[int, int]]:
        """(start, stop) of the held-out frames of each segment (empty ranges when ``holdout`` is 0)."""
        ends = [b for _, b in segment_bounds(self.n_frames, self.segments)]
        return [(stop, end) for (_, stop), end in zip(self.train_bounds(), ends, strict=True)]

    def part_starts(self) -> tuple[int, ...]:
        """Start frames of the training part and of the held-out part of every segment: computations that must not carry
        held-out frames into training values (derivatives, deconvolution) treat each part as its own segment."""
        parts = [a for a, _ in self.train_bounds()] + [a for a, b in self.heldout_bounds() if b > a]
        return tuple(sorted(parts))

    def derivative(self, method: DerivativeMethod) -> np.ndarray:
        """dx/dt estimated from ``x`` by ``method`` within each segment's training frames (held-out frames: NaN)."""
        bounds = self.train_bounds()
        out = np.full(self.x.shape, np.nan, dtype=np.float32)
        smoothness = longest_smoothness(self.x, self.dt, bounds) if method == "spline" else None  # one choice for every segment
        for a, b in bounds:
            if b - a >= 2:
                out[a:b] = estimate_derivative(np.asarray(self.x[a:b]), self.dt, method, smoothness=smoothness)
        return out

    def start_frames(self, horizon: int) -> np.ndarray:
        """Frames training may start from: in a segment's training part, ``horizon`` more frames after them
        in the same part, and (with missing values) every neuron recorded at the frame."""
        parts = [np.arange(a, b - horizon, dtype=np.int64) for a, b in self.train_bounds() if b - horizon > a]
        frames = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        if self.missing and len(frames):
            complete = np.concatenate(
                [np.isfinite(np.asarray(self.x[s : s + _SCAN_ROWS])).all(axis=1) for s in range(0, self.n_frames, _SCAN_ROWS)]
            )
            frames = frames[complete[frames]]
        return frames


def check_dt(dt: Any) -> float:
    """``dt`` as a float, or a :class:`DatasetError` when it is not a positive, finite number."""
    if not isinstance(dt, numbers.Real) or isinstance(dt, bool) or not np.isfinite(float(dt)) or dt <= 0:
        raise DatasetError(f"dt must be a positive number (time between frames), got {dt!r}")
    return float(dt)


def check_holdout(holdout: Any) -> float:
    """``holdout`` as a float, or a :class:`DatasetError` when it is not a fraction in [0, 1)."""
    if not isinstance(holdout, numbers.Real) or isinstance(holdout, bool) or not 0 <= float(holdout) < 1:
        raise DatasetError(f"holdout must be a fraction in [0, 1), got {holdout!r}")
    return float(holdout)


def neurons_with_signal(x: np.ndarray, names: Sequence[str] | None, source: str) -> tuple[np.ndarray | None, dict[int, str]]:
    """The columns of ``x`` that carry a signal (None when all do) and why the others do not; those are named in a warning.

    Raises :class:`DatasetError` when fewer than 2 are left (``source`` names the data in messages).
    """
    silent = silent_neurons(x)
    if not silent:
        return None, silent
    listed = ", ".join(f"{i}{f' ({names[i]})' if names is not None else ''}: {why}" for i, why in list(silent.items())[:20])
    more = f" and {len(silent) - 20} more" if len(silent) > 20 else ""
    warnings.warn(f"{source}: {len(silent)} neuron(s) left out, they carry no signal: {listed}{more}", UserWarning, stacklevel=3)
    kept = np.array([i for i in range(x.shape[1]) if i not in silent], dtype=np.int64)
    if len(kept) < 2:
        raise DatasetError(f"only {len(kept)} neuron(s) of {source} carry a signal: a circuit needs at least 2")
    return kept, silent


def silent_neurons(x: np.ndarray, relative: float = 1e-6) -> dict[int, str]:
    """Neurons (columns of ``x``) that carry no signal: no recorded value, or a std below ``relative`` x the median std."""
    step = max(1, x.shape[0] // 20000)
    sample = np.asarray(x[::step], dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns
        std = np.nanstd(sample, axis=0)
    empty = np.isnan(std)
    typical = float(np.median(std[~empty])) if (~empty).any() else 0.0
    out: dict[int, str] = {}
    for i in np.flatnonzero(empty | (std <= relative * typical)):
        out[int(i)] = "no recorded value" if empty[i] else f"constant (std {std[i]:.3g})"
    return out


def sha256_of_rows(array: np.ndarray, block_rows: int = _SCAN_ROWS) -> str:
    """sha256 of an array's bytes in C order, read in blocks of rows (a memory map is never loaded whole)."""
    h = hashlib.sha256()
    for start in range(0, array.shape[0], block_rows):
        h.update(np.ascontiguousarray(array[start : start + block_rows]).data.cast("B"))
    return h.hexdigest()


def check_finite_array(array: np.ndarray, name: str, allow_nan: bool = False) -> bool:
    """Raise :class:`DatasetError` naming ``name`` and the first frame holding inf (or NaN, unless ``allow_nan``).

    Scanned in blocks; returns whether the array holds NaN (missing values).
    """
    has_nan = False
    for start in range(0, array.shape[0], _SCAN_ROWS):
        block = np.asarray(array[start : start + _SCAN_ROWS])
        bad = np.isinf(block).any(axis=1) if allow_nan else ~np.isfinite(block).all(axis=1)
        if bad.any():
            what = "inf" if allow_nan else "NaN or inf"
            raise DatasetError(f"{name} holds {what} at frame {start + int(np.argmax(bad))}: training needs finite data")
        if allow_nan and not has_nan:
            has_nan = bool(np.isnan(block).any())
    return has_nan
