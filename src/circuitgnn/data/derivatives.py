"""dx/dt estimated from sampled activity, segment by segment, for data that do not come with it.

``forward`` and ``central`` finite differences suit clean, finely sampled activity (forward is exact
for Euler-integrated data at the sampling step). ``savgol`` (a local polynomial fit, Savitzky-Golay)
and ``spline`` (a cubic smoothing spline, its smoothness chosen from the data alone by
cross-validation: fitted to the even frames, scored on the odd ones) smooth measurement noise away;
``docs/recordings.md`` compares them on simulated recordings (``benchmarks/derivatives.py``). No derivative crosses a segment boundary; a value that needs
a missing (NaN) frame is NaN, and training masks it out.
"""

from __future__ import annotations

import itertools
import numbers
from collections.abc import Sequence
from typing import Literal

import numpy as np

from circuitgnn.errors import DatasetError

DerivativeMethod = Literal["forward", "central", "savgol", "spline"]
METHODS: tuple[str, ...] = ("forward", "central", "savgol", "spline")
SAVGOL_WINDOW = 15
SAVGOL_ORDER = 3


def segment_bounds(n_frames: int, segments: Sequence[int]) -> list[tuple[int, int]]:
    """(start, stop) of each segment, from the start frames ``segments`` (first 0, strictly increasing)."""
    if isinstance(segments, str | bytes) or not hasattr(segments, "__iter__"):
        raise DatasetError(f"segments must be a list of start frames (integers), got {segments!r}")
    if not all(isinstance(s, numbers.Integral) and not isinstance(s, bool) for s in segments):
        raise DatasetError(f"segments must be integer start frames, got {list(segments)}")
    starts = [int(s) for s in segments]
    if not starts or starts[0] != 0 or any(b <= a for a, b in itertools.pairwise(starts)) or starts[-1] >= n_frames:
        raise DatasetError(f"segments must be strictly increasing start frames, the first 0 and each < {n_frames}; got {list(segments)}")
    return list(zip(starts, [*starts[1:], n_frames], strict=True))


def _forward(x: np.ndarray, dt: float) -> np.ndarray:
    d = np.empty(x.shape, dtype=np.float32)
    d[:-1] = (x[1:] - x[:-1]) / np.float32(dt)
    d[-1] = d[-2]
    return d


def fill_gaps(x: np.ndarray) -> np.ndarray:
    """Linear interpolation in time over each neuron's NaN frames (ends held), for the smoothing methods only."""
    missing = np.isnan(x)
    if not missing.any():
        return x
    out = x.copy()
    t = np.arange(len(x))
    for i in np.flatnonzero(missing.any(axis=0)):
        ok = ~missing[:, i]
        out[missing[:, i], i] = np.interp(t[missing[:, i]], t[ok], x[ok, i]) if ok.any() else 0.0
    return out


def _savgol(x: np.ndarray, dt: float, window: int) -> np.ndarray:
    from scipy.signal import savgol_filter

    w = min(window, len(x) - (1 - len(x) % 2))  # odd and at most the segment's length
    if w <= SAVGOL_ORDER:
        return np.gradient(x, dt, axis=0).astype(np.float32)
    return savgol_filter(x, w, SAVGOL_ORDER, deriv=1, delta=dt, axis=0, mode="interp").astype(np.float32)


def spline_smoothness(x: np.ndarray, dt: float, max_frames: int = 2000, max_neurons: int = 64) -> float:
    """The smoothing spline's penalty weight lambda for frames ``x`` (T, N), chosen without ground truth.

    Splines fitted to the even frames of up to ``max_neurons`` evenly chosen neurons predict the odd
    frames; the lambda with the least error, on a grid of dt^3 x 10^(-3 .. 9), is doubled (the full
    data have twice the frames, so twice the weight on fitting them).
    """
    from scipy.interpolate import make_smoothing_spline

    cols = np.unique(np.linspace(0, x.shape[1] - 1, min(max_neurons, x.shape[1])).astype(np.int64))
    sample = fill_gaps(np.asarray(x[:max_frames], dtype=np.float64)[:, cols])
    t = np.arange(len(sample), dtype=np.float64) * dt
    n_odd = (len(sample) - 1) // 2  # odd frames inside the even frames' span
    even, odd = sample[0::2], sample[1 : 2 * n_odd : 2]
    best, best_err = dt**3, np.inf
    for c in 10.0 ** np.arange(-3, 9.01, 0.25):
        lam = float(c * dt**3)
        pred = make_smoothing_spline(t[0::2], even, lam=lam, axis=0)(t[1 : 2 * n_odd : 2])
        err = float(np.mean((pred - odd) ** 2))
        if err < best_err:
            best, best_err = lam, err
    return 2.0 * best


MIN_SPLINE_FRAMES = 10  # fewer frames: central differences (the smoothness search fits every other frame)


def longest_smoothness(x: np.ndarray, dt: float, bounds: Sequence[tuple[int, int]]) -> float | None:
    """:func:`spline_smoothness` on the longest of ``bounds`` (None when it is too short to choose one)."""
    a, b = max(bounds, key=lambda ab: ab[1] - ab[0])
    return spline_smoothness(np.asarray(x[a:b]), dt) if b - a >= MIN_SPLINE_FRAMES else None


def _spline(x: np.ndarray, dt: float, lam: float | None) -> np.ndarray:
    from scipy.interpolate import make_smoothing_spline

    if len(x) < MIN_SPLINE_FRAMES:
        return np.gradient(x, dt, axis=0).astype(np.float32)
    t = np.arange(len(x), dtype=np.float64) * dt
    lam = spline_smoothness(x, dt) if lam is None else lam
    return make_smoothing_spline(t, x.astype(np.float64), lam=lam, axis=0).derivative()(t).astype(np.float32)


def estimate_derivative(
    x: np.ndarray,
    dt: float,
    method: DerivativeMethod = "forward",
    segments: Sequence[int] = (0,),
    window: int = SAVGOL_WINDOW,
    smoothness: float | None = None,
) -> np.ndarray:
    """dx/dt of frames ``x`` (T, N) sampled every ``dt``, computed within each segment.

    ``forward``: (x[t+1] - x[t]) / dt, the last frame of a segment repeating the one before.
    ``central``: (x[t+1] - x[t-1]) / (2 dt), one-sided at a segment's ends (``numpy.gradient``).
    ``savgol``: the slope of a cubic fitted to ``window`` frames around each frame.
    ``spline``: the derivative of a cubic smoothing spline of penalty weight ``smoothness`` (None: chosen
    by :func:`spline_smoothness` on the longest segment, shared by all; segments shorter than 10 frames
    get central differences).
    Frames with NaN give NaN wherever the estimate uses them (smoothing methods: at those frames).
    """
    if method not in METHODS:
        raise DatasetError(f"derivative method must be one of {', '.join(METHODS)}; got {method!r}")
    x = np.asarray(x, dtype=np.float32)
    out = np.empty(x.shape, dtype=np.float32)
    bounds = segment_bounds(len(x), segments)
    if method == "spline" and smoothness is None:
        smoothness = longest_smoothness(x, dt, bounds)
    for start, stop in bounds:
        seg = x[start:stop]
        if len(seg) < 2:
            out[start:stop] = np.nan  # a one-frame segment has no derivative
            continue
        if method == "forward":
            out[start:stop] = _forward(seg, dt)
        elif method == "central":
            out[start:stop] = np.gradient(seg, dt, axis=0)
        else:
            filled = fill_gaps(seg)
            d = _savgol(filled, dt, window) if method == "savgol" else _spline(filled, dt, smoothness)
            d[np.isnan(seg)] = np.nan
            out[start:stop] = d
    return out


def roughness(x: np.ndarray, max_frames: int = 4000) -> float:
    """rms of second differences over rms of first differences, on up to ``max_frames`` leading frames.

    About 0 for activity that is smooth at the frame scale, sqrt(3) for white noise: a value above
    about 0.5 means that measurement noise dominates frame-to-frame changes, and finite differences
    will be noisy.
    """
    sample = np.asarray(x[:max_frames], dtype=np.float64)
    d1 = np.diff(sample, axis=0)
    d2 = np.diff(sample, 2, axis=0)
    num, den = np.sqrt(np.nanmean(d2**2)), np.sqrt(np.nanmean(d1**2))
    return float(num / den) if den > 0 else 0.0
