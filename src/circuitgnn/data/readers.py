"""Readers that turn a recording file (or a suite2p folder) into one in-memory :class:`Recording`.

What each format reads (``key``, ``timestamps_key``, ``inputs_key`` and ``time_column`` are arguments of
:func:`read_recording`):

``npy``
    One 2-D numeric array.
``npz``
    The array ``key``, or the only 2-D array when no key is given. Timing from ``timestamps_key``, else the
    arrays ``timestamps``, ``dt`` or ``rate`` (in this order). Neuron names from ``names`` or ``neuron_names``
    (strings), positions from ``positions`` (N, 2|3), inputs from ``inputs_key``.
``csv`` / ``tsv``
    Rows are frames (columns with ``layout="neurons_first"``). A first row holding any non-numeric cell is a
    header naming the columns; ``time_column`` (a name or a 0-based index) holds timestamps, and without it a
    column headed ``time``, ``t``, ``timestamp`` or ``timestamps`` does. Empty cells are NaN.
``hdf5``
    The dataset ``key`` (a path such as ``"ophys/F"``), or the only 2-D numeric dataset. Timing from the
    dataset ``timestamps_key``, else an attribute ``dt`` (time step) or ``rate`` / ``sampling_rate`` / ``fs``
    (Hz) of the dataset. Beside it in its group: ``names`` or ``neuron_names`` (strings) and ``positions``
    (N, 2|3). Units from its ``units`` or ``unit`` attribute; inputs from the dataset ``inputs_key``.
``nwb``
    A time series: a ``RoiResponseSeries`` in ``processing`` (also inside ``Fluorescence`` / ``DfOverF``) or a
    TimeSeries in ``acquisition``, chosen by ``key`` (its name or its path such as
    ``"processing/ophys/Fluorescence/RoiResponseSeries"``), or the only 2-D one. Timing from the series' rate or
    timestamps, units from its ``unit`` (``conversion`` and ``offset`` are applied); names ``roi<id>`` and
    (x, y) centroids of the ROI masks when it has ``rois``. ``inputs_key`` names a TimeSeries in ``stimulus``,
    ``acquisition`` or ``processing``. Needs the optional ``pynwb`` (``pip install "circuitgnn[nwb]"``).
``suite2p``
    A folder with ``F.npy`` and ``Fneu.npy`` (neurons x frames), in it or in ``suite2p/plane0`` or ``plane0``:
    x = F - neuropil * Fneu. ``iscell.npy`` selects the cells, ``ops.npy`` gives the rate (``fs``),
    ``stat.npy`` the (x, y) positions (``med``); neurons are named ``roi<index in the suite2p output>``.

Every reader checks shapes, dtypes and timing before loading the activity, and raises
:class:`~circuitgnn.errors.DatasetError` naming the file, the field and what was expected.
"""

from __future__ import annotations

import csv
import itertools
import numbers
import pickle
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from circuitgnn.data.activity import Frames
from circuitgnn.errors import DatasetError

FORMATS = ("npy", "npz", "csv", "tsv", "hdf5", "nwb", "suite2p")

_SUFFIXES = {".npy": "npy", ".npz": "npz", ".csv": "csv", ".tsv": "tsv", ".h5": "hdf5", ".hdf5": "hdf5", ".hdf": "hdf5", ".nwb": "nwb"}
_LAYOUTS = ("time_first", "neurons_first")
_GAP = 1.5  # a step longer than this many dt starts a new segment
_JITTER = 0.05  # largest relative deviation of a step (gaps aside) from the median step
_NAME_KEYS = ("names", "neuron_names")
_TIME_HEADERS = ("time", "t", "timestamp", "timestamps")  # a csv/tsv column headed so holds the frame times
_POSITIONS_KEY = "positions"
_TIMESTAMPS_KEY = "timestamps"
_RATE_ATTRS = ("rate", "sampling_rate", "fs")
_SUITE2P_DIRS = (".", "suite2p/plane0", "plane0")
_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK\x03\x04"
_LISTED = 30  # at most this many names listed in a message
# what numpy, pickle, zipfile and h5py raise on a missing, truncated or corrupt file
_LOAD_ERRORS = (OSError, ValueError, EOFError, TypeError, AttributeError, ImportError, pickle.UnpicklingError, zipfile.BadZipFile)
# which formats each option applies to
_OPTION_FORMATS = {
    "key": ("npz", "hdf5", "nwb"),
    "layout": ("npy", "npz", "csv", "tsv", "hdf5"),
    "timestamps_key": ("npz", "hdf5"),
    "inputs_key": ("npz", "hdf5", "nwb"),
    "time_column": ("csv", "tsv"),
}
_LAYOUT_FIXED = {"nwb": "NWB series are time first by the standard", "suite2p": "suite2p files are always neurons x frames"}


@dataclass(frozen=True)
class Recording(Frames):
    """One recording as arrays, time first.

    Attributes
    ----------
    x:
        (T, N) float32 activity; NaN where a value is missing.
    dt:
        Time between frames (seconds, or the file's time unit).
    source:
        The file or folder read, for messages.
    segments:
        Start frame of each contiguous segment (session, trial, or a gap in the timestamps): strictly
        increasing, the first is 0 and each is below T.
    inputs:
        (T, M) float32 known input covariates (a stimulus), or None.
    names:
        The N neuron names, when the file has them.
    positions:
        (N, 2) or (N, 3) float32 positions, when the file has them.
    units:
        Units of ``x`` when the file says (e.g. ``"dF/F"``), else ``"a.u."``.
    """

    x: np.ndarray
    dt: float
    source: str
    segments: tuple[int, ...] = (0,)
    inputs: np.ndarray | None = None
    names: tuple[str, ...] | None = None
    positions: np.ndarray | None = None
    units: str = "a.u."

    def __post_init__(self) -> None:
        x = self.x
        if not isinstance(x, np.ndarray) or x.ndim != 2:
            raise DatasetError(f"{self.source}: x must be a 2-D array (frames, neurons), got {getattr(x, 'shape', type(x).__name__)}")
        t, n = x.shape
        if not isinstance(self.dt, numbers.Real) or not np.isfinite(self.dt) or self.dt <= 0:
            raise DatasetError(f"{self.source}: dt must be a finite number > 0, got {self.dt!r}")
        seg = tuple(self.segments)
        if not seg or seg[0] != 0 or any(b <= a for a, b in itertools.pairwise(seg)) or seg[-1] >= t:
            raise DatasetError(f"{self.source}: segments must increase strictly from 0 and stay below {t} frames, got {seg}")
        if self.inputs is not None and (self.inputs.ndim != 2 or self.inputs.shape[0] != t):
            raise DatasetError(f"{self.source}: inputs must have shape ({t}, M), got {self.inputs.shape}")
        if self.names is not None and len(self.names) != n:
            raise DatasetError(f"{self.source}: {len(self.names)} names for {n} neurons")
        if self.positions is not None and (
            self.positions.ndim != 2 or self.positions.shape[0] != n or self.positions.shape[1] not in (2, 3)
        ):
            raise DatasetError(f"{self.source}: positions must have shape ({n}, 2) or ({n}, 3), got {self.positions.shape}")


@dataclass
class _Parts:
    """What a reader found in a file, checked and loaded by :func:`_assemble`."""

    what: str  # how messages name the activity array, e.g. "dataset '/F'"
    shape: tuple[int, ...]  # as stored
    dtype: np.dtype
    load: Callable[[], Any]  # reads the array as stored (the heavy part)
    time_first: bool | None = None  # fixed by the format; None: from the layout argument
    step: tuple[Any, str, bool] | None = None  # the file's (value, its name in messages, whether a rate), checked when used
    timestamps: Any = None
    timestamps_what: str = "timestamps"
    inputs: Any = None
    inputs_what: str = "inputs"
    names: tuple[str, ...] | None = None
    positions: Any = None
    units: str = "a.u."
    scale: tuple[float, float] = (1.0, 0.0)  # x * scale[0] + scale[1] (NWB conversion and offset)
    timing_hint: str = ""  # where this format could have found the timing, for the error when it has none


def read_recording(
    path: str | Path,
    *,
    format: str | None = None,
    key: str | None = None,
    layout: str | None = None,
    dt: float | None = None,
    rate: float | None = None,
    timestamps_key: str | None = None,
    inputs_key: str | None = None,
    time_column: str | int | None = None,
    neuropil: float = 0.7,
    cells_only: bool = True,
) -> Recording:
    """Read one recording file (or suite2p folder) into a :class:`Recording`.

    The module docstring lists the names each format looks for.

    Parameters
    ----------
    path:
        The file, or a suite2p output folder.
    format:
        One of :data:`FORMATS`; None infers it from the suffix (``.npy``, ``.npz``, ``.csv``, ``.tsv``,
        ``.h5`` / ``.hdf5`` / ``.hdf``, ``.nwb``) or, for a folder, from a suite2p ``F.npy`` in it.
    key:
        The array (npz), dataset path (HDF5) or time series (NWB) to read; needed when there are several.
    layout:
        ``"time_first"`` (rows are frames) or ``"neurons_first"``. None means time first, but an array with
        fewer frames than neurons is refused as probably transposed. Not used by NWB and suite2p (fixed).
    dt, rate:
        Time between frames, or frames per unit of time (dt = 1 / rate); at most one. They take precedence over
        the file's own timing (so a single segment).
    timestamps_key:
        Array (npz) or dataset (HDF5) of the frames' timestamps.
    inputs_key:
        Array (npz), dataset (HDF5) or TimeSeries (NWB) of known inputs: (T, M) or (T,), laid out like x.
    time_column:
        CSV/TSV column (header name or 0-based index) of timestamps; it is removed from x.
    neuropil:
        suite2p neuropil coefficient in [0, 1]: x = F - neuropil * Fneu.
    cells_only:
        suite2p: keep only the ROIs that ``iscell.npy`` flags as cells.

    Returns
    -------
    Recording
        x as (T, N) float32, with dt, segments (a gap in the timestamps starts one) and what the file holds
        of inputs, names, positions and units.

    Raises
    ------
    DatasetError
        For a missing, unreadable or inconsistent file, naming the file, the field and what was expected.
    """
    p = Path(path)
    src = str(p)
    if not p.exists():
        raise DatasetError(f"{src}: no such file or folder")
    fmt = _format_of(p, src, format)
    _check_options(src, fmt, key=key, layout=layout, timestamps_key=timestamps_key, inputs_key=inputs_key, time_column=time_column)
    if dt is not None and rate is not None:
        raise DatasetError(f"{src}: pass dt= (time between frames) or rate= (frames per unit of time), not both")
    step = _positive(dt, f"{src}: dt") if dt is not None else 1.0 / _positive(rate, f"{src}: rate") if rate is not None else None
    if step is not None and (timestamps_key is not None or time_column is not None):
        option = "timestamps_key" if timestamps_key is not None else "time_column"
        raise DatasetError(f"{src}: pass either dt=/rate= or {option}= for the timing, not both")

    if fmt == "suite2p":
        if not isinstance(neuropil, numbers.Real) or isinstance(neuropil, bool) or not 0.0 <= float(neuropil) <= 1.0:
            raise DatasetError(f"{src}: neuropil must be a number in [0, 1] (x = F - neuropil * Fneu), got {neuropil!r}")
        return _assemble(_read_suite2p(p, src, float(neuropil), bool(cells_only)), src, layout, step)
    if fmt == "npy":
        return _assemble(_read_npy(p, src), src, layout, step)
    if fmt in ("csv", "tsv"):
        return _assemble(_read_table(p, src, "," if fmt == "csv" else "\t", layout, time_column), src, layout, step)
    if fmt == "npz":
        archive = _np_load(p, src, "as an .npz archive")
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise DatasetError(f"{src}: holds a single array, not an .npz archive; pass format='npy'")
        with archive:
            return _assemble(_read_npz(archive, p, src, key, timestamps_key, inputs_key), src, layout, step)
    if fmt == "hdf5":
        try:
            h5 = h5py.File(p, "r")
        except OSError as err:
            raise DatasetError(f"{src}: cannot open as an HDF5 file ({err})") from None
        with h5:
            return _assemble(_read_hdf5(h5, src, key, timestamps_key, inputs_key), src, layout, step)
    return _read_nwb(p, src, key, inputs_key, step)


def concatenate(recordings: Sequence[Recording]) -> Recording:
    """Join recordings of the same neurons (sessions or trials) in time.

    Parameters
    ----------
    recordings:
        Recordings with the same neurons (and names, when two have them), equal dt (within 1e-6 relative)
        and units, and all or none with inputs of the same width.

    Returns
    -------
    Recording
        x and inputs stacked in time, each recording's segments shifted to where it starts, source
        ``"a + b"``, names and positions of the first recording that has them.

    Raises
    ------
    DatasetError
        Naming the recording that does not match the first.
    """
    recs = list(recordings)
    if not recs:
        raise DatasetError("concatenate needs at least one recording")
    for i, rec in enumerate(recs):
        if not isinstance(rec, Recording):
            raise DatasetError(f"concatenate takes Recordings; item {i} is a {type(rec).__name__}")
    first = recs[0]
    names = next((r.names for r in recs if r.names is not None), None)
    for i, rec in enumerate(recs[1:], start=1):
        which = f"recording {i} ({rec.source})"
        if rec.n_neurons != first.n_neurons:
            raise DatasetError(f"{which} has {rec.n_neurons} neurons but recording 0 ({first.source}) has {first.n_neurons}")
        if abs(rec.dt - first.dt) > 1e-6 * max(rec.dt, first.dt):
            raise DatasetError(f"{which} has dt {rec.dt:g} but recording 0 ({first.source}) has dt {first.dt:g}")
        if rec.units != first.units:
            raise DatasetError(f"{which} is in units {rec.units!r} but recording 0 ({first.source}) in {first.units!r}")
        if rec.names is not None and names is not None and rec.names != names:
            j = next(k for k, (a, b) in enumerate(zip(rec.names, names, strict=True)) if a != b)
            raise DatasetError(f"{which} names neuron {j} {rec.names[j]!r} where an earlier recording names it {names[j]!r}")
        if (rec.inputs is None) != (first.inputs is None):
            has, lacks = (which, f"recording 0 ({first.source})") if first.inputs is None else (f"recording 0 ({first.source})", which)
            raise DatasetError(f"{has} has inputs but {lacks} has none: all recordings or none must have inputs")
        if rec.inputs is not None and first.inputs is not None and rec.inputs.shape[1] != first.inputs.shape[1]:
            raise DatasetError(
                f"{which} has {rec.inputs.shape[1]} input columns but recording 0 ({first.source}) has {first.inputs.shape[1]}"
            )
    if len(recs) == 1:
        return first
    segments: list[int] = []
    offset = 0
    for rec in recs:
        segments.extend(offset + s for s in rec.segments)
        offset += rec.n_frames
    inputs = (
        None if first.inputs is None else np.concatenate([r.inputs for r in recs if r.inputs is not None]).astype(np.float32, copy=False)
    )
    return Recording(
        x=np.concatenate([r.x for r in recs]).astype(np.float32, copy=False),
        dt=first.dt,
        source=" + ".join(r.source for r in recs),
        segments=tuple(segments),
        inputs=inputs,
        names=names,
        positions=next((r.positions for r in recs if r.positions is not None), None),
        units=first.units,
    )


# --- options and checks shared by the readers ---


def _format_of(p: Path, src: str, fmt: str | None) -> str:
    if fmt is not None:
        if fmt not in FORMATS:
            raise DatasetError(f"{src}: unknown format {fmt!r}; formats are {', '.join(FORMATS)}")
        if p.is_dir() != (fmt == "suite2p"):
            raise DatasetError(
                f"{src}: format {fmt!r} reads a {'folder' if fmt == 'suite2p' else 'file'}, and this is a {'folder' if p.is_dir() else 'file'}"
            )
        return fmt
    if p.is_dir():
        if _suite2p_dir(p) is None:
            looked = ", ".join(str(p / d / "F.npy") for d in _SUITE2P_DIRS)
            raise DatasetError(
                f"{src}: a folder but not a suite2p output (no {looked}); pass a file of one of the formats {', '.join(FORMATS)}"
            )
        return "suite2p"
    suffix = p.suffix.lower()
    if suffix not in _SUFFIXES:
        known = ", ".join(sorted(_SUFFIXES))
        raise DatasetError(
            f"{src}: cannot tell the format from the suffix {suffix or '(none)'!r} (known: {known}); pass format= one of {', '.join(FORMATS)}"
        )
    return _SUFFIXES[suffix]


def _check_options(src: str, fmt: str, **options: Any) -> None:
    for name, value in options.items():
        if value is None:
            continue
        if fmt not in _OPTION_FORMATS[name]:
            why = f" ({_LAYOUT_FIXED[fmt]})" if name == "layout" and fmt in _LAYOUT_FIXED else ""
            raise DatasetError(f"{src}: {name}= does not apply to the {fmt} format{why}; it is for {', '.join(_OPTION_FORMATS[name])}")
        if name == "time_column":
            if isinstance(value, bool) or not isinstance(value, str | numbers.Integral):
                raise DatasetError(f"{src}: time_column must be a column name or a 0-based index, got {value!r}")
        elif name == "layout":
            if value not in _LAYOUTS:
                raise DatasetError(f"{src}: layout must be 'time_first' or 'neurons_first', got {value!r}")
        elif not isinstance(value, str):
            raise DatasetError(f"{src}: {name} must be a name (a string), got {value!r}")
    if options.get("time_column") is not None and options.get("layout") == "neurons_first":
        raise DatasetError(f"{src}: time_column= needs rows that are frames; with layout='neurons_first' they are neurons")


def _positive(value: Any, what: str) -> float:
    """``value`` as a float that is finite and > 0 (a number, a numpy scalar or a one-element array)."""
    arr = np.asarray(value)
    if isinstance(value, bool) or arr.size != 1 or arr.dtype.kind not in "iuf":
        raise DatasetError(f"{what} must be a finite number > 0, got {value!r}")
    number = float(arr.reshape(()))
    if not np.isfinite(number) or number <= 0:
        raise DatasetError(f"{what} must be a finite number > 0, got {number!r}")
    return number


def _check_numeric(dtype: np.dtype, what: str) -> None:
    if dtype.kind not in "biuf":
        raise DatasetError(f"{what} must hold real numbers (bool, int or float), got dtype {dtype}")


def _listing(names: Sequence[str]) -> str:
    if not names:
        return "(none)"
    shown = ", ".join(repr(n) for n in names[:_LISTED])
    return shown + (f" and {len(names) - _LISTED} more" if len(names) > _LISTED else "")


def _neuron(j: int, names: tuple[str, ...] | None) -> str:
    return f"neuron {j} ({names[j]!r})" if names is not None else f"neuron {j}"


def _assemble(parts: _Parts, src: str, layout: str | None, step: float | None) -> Recording:
    """Check shapes, dtypes and timing, then load x and inputs and check their values."""
    what = f"{src}: {parts.what}"
    if len(parts.shape) != 2:
        raise DatasetError(f"{what} must be 2-dimensional (frames x neurons), got shape {parts.shape}")
    _check_numeric(parts.dtype, what)
    time_first = parts.time_first if parts.time_first is not None else layout != "neurons_first"
    t, n = parts.shape if time_first else parts.shape[::-1]
    if parts.time_first is None and layout is None and t < n:
        raise DatasetError(
            f"{what} has shape {parts.shape}: read time first it has fewer frames ({t}) than neurons ({n}), so it looks transposed; "
            'pass layout="neurons_first" if its rows are neurons, or layout="time_first" to confirm'
        )
    if t < 2:
        raise DatasetError(f"{what} has {t} frame(s): a recording needs at least 2")
    if n < 2:
        raise DatasetError(f"{what} has {n} neuron(s): a recording needs at least 2")

    segments: tuple[int, ...] = (0,)
    if step is not None:
        dt = step
    elif parts.timestamps is not None:
        dt, segments = _timing_from(parts.timestamps, t, f"{src}: {parts.timestamps_what}")
    elif parts.step is not None:
        value, label, is_rate = parts.step
        dt = 1.0 / _positive(value, label) if is_rate else _positive(value, label)
    else:
        raise DatasetError(
            f"{src}: no time step between frames: pass dt= (time between frames) or rate= (frames per unit of time){parts.timing_hint}"
        )

    if parts.names is not None and len(parts.names) != n:
        raise DatasetError(f"{src}: {len(parts.names)} neuron names for the {n} neurons of {parts.what}")
    positions = None
    if parts.positions is not None:
        positions = np.asarray(parts.positions)
        _check_numeric(positions.dtype, f"{src}: positions")
        if positions.ndim != 2 or positions.shape[0] != n or positions.shape[1] not in (2, 3):
            raise DatasetError(f"{src}: positions must have shape ({n}, 2) or ({n}, 3), one row per neuron, got {positions.shape}")
        positions = positions.astype(np.float32)
    inputs_what = f"{src}: {parts.inputs_what}"
    if parts.inputs is not None:
        shape = tuple(parts.inputs.shape)
        _check_numeric(np.dtype(parts.inputs.dtype), inputs_what)
        if len(shape) not in (1, 2):
            raise DatasetError(f"{inputs_what} must have shape (frames,) or (frames, inputs), got {shape}")
        frames = shape[0] if len(shape) == 1 or time_first else shape[1]
        if frames != t:
            hint = (
                " (it looks transposed: the inputs are laid out like x)" if len(shape) == 2 and shape[1 if time_first else 0] == t else ""
            )
            raise DatasetError(f"{inputs_what} has shape {shape}: expected {t} frames, as many as x{hint}")

    x = _to_float32(parts.load, what)
    if not time_first:
        x = np.ascontiguousarray(x.T)
    if parts.scale != (1.0, 0.0):
        x = x * np.float32(parts.scale[0]) + np.float32(parts.scale[1])
    _check_values(x, what, parts.names)

    inputs = None
    if parts.inputs is not None:
        source = parts.inputs
        inputs = _to_float32(lambda: source[()] if isinstance(source, h5py.Dataset) else source, inputs_what)
        inputs = inputs[:, None] if inputs.ndim == 1 else inputs if time_first else np.ascontiguousarray(inputs.T)
        if np.isinf(inputs).any():
            raise DatasetError(f"{inputs_what} holds an infinite value at frame {int(np.argmax(np.isinf(inputs).any(axis=1)))}")
    return Recording(x, float(dt), src, tuple(int(s) for s in segments), inputs, parts.names, positions, parts.units or "a.u.")


def _to_float32(load: Callable[[], Any], what: str) -> np.ndarray:
    try:
        raw = load()
        # a memory map converted without a copy would keep the file open and read-only
        with np.errstate(over="ignore"):
            return np.array(raw, dtype=np.float32) if isinstance(raw, np.memmap) else np.asarray(raw, dtype=np.float32)
    except _LOAD_ERRORS as err:
        raise DatasetError(f"{what}: cannot read the values ({err})") from None


def _check_values(x: np.ndarray, what: str, names: tuple[str, ...] | None) -> None:
    inf = np.isinf(x)
    if inf.any():
        i = int(np.argmax(inf.any(axis=1)))
        j = int(np.argmax(inf[i]))
        raise DatasetError(f"{what} holds an infinite value (or one too large for float32) at frame {i}, {_neuron(j, names)}")
    empty = np.isnan(x).all(axis=0)
    if empty.any():
        j = int(np.argmax(empty))
        more = f" (and {int(empty.sum()) - 1} more)" if empty.sum() > 1 else ""
        raise DatasetError(f"{what}: {_neuron(j, names)} has no value in any frame (all NaN){more}; drop it before reading")


def _timing_from(timestamps: Any, n_frames: int, what: str) -> tuple[float, tuple[int, ...]]:
    """dt (the median step) and segment starts (after each gap) from timestamps; refuses irregular sampling."""
    ts = np.asarray(timestamps)
    if ts.ndim != 1 or ts.shape[0] != n_frames:
        raise DatasetError(f"{what} has shape {ts.shape}: expected ({n_frames},), one timestamp per frame")
    _check_numeric(ts.dtype, what)
    ts = ts.astype(np.float64)
    bad = ~np.isfinite(ts)
    if bad.any():
        i = int(np.argmax(bad))
        raise DatasetError(f"{what} must be finite: timestamp {i} is {ts[i]}")
    steps = np.diff(ts)
    if (steps <= 0).any():
        i = int(np.argmax(steps <= 0)) + 1
        raise DatasetError(f"{what} must increase strictly: timestamp {i} ({ts[i]:g}) is not after timestamp {i - 1} ({ts[i - 1]:g})")
    dt = float(np.median(steps))
    gaps = steps > _GAP * dt
    off = ~gaps & (np.abs(steps - dt) > _JITTER * dt)
    if off.any():
        i = int(np.argmax(off))
        raise DatasetError(
            f"{what} are irregular: the step from frame {i} to {i + 1} is {steps[i]:g}, {100 * abs(steps[i] - dt) / dt:.0f}% off the "
            f"median step {dt:g} (at most {100 * _JITTER:.0f}% is allowed); resample the recording to a regular rate"
        )
    return dt, (0, *(int(i) + 1 for i in np.flatnonzero(gaps)))


def _strings(values: Any, what: str) -> tuple[str, ...]:
    arr = np.asarray(values)
    if arr.ndim != 1 or arr.dtype.kind not in "USO":
        raise DatasetError(f"{what} must be a 1-D array of strings, got dtype {arr.dtype} and shape {arr.shape}")
    out = tuple(v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in arr.tolist())
    if not all(isinstance(v, str) for v in out):
        raise DatasetError(f"{what} must hold strings only")
    return out


# --- numpy files ---


def _np_load(p: Path, src: str, what: str, *, mmap: bool = False, pickled: bool = False) -> Any:
    try:
        with p.open("rb") as fh:
            start = fh.read(len(_NPY_MAGIC))
    except OSError as err:
        raise DatasetError(f"{src}: cannot read {what} ({err})") from None
    # np.load takes anything else for a pickle, which would give a misleading message (or run it, if allowed)
    if not start.startswith((_NPY_MAGIC, _ZIP_MAGIC)):
        raise DatasetError(f"{src}: cannot read {what}: {'the file is empty' if not start else 'it is not a NumPy .npy or .npz file'}")
    try:
        return np.load(p, mmap_mode="r" if mmap else None, allow_pickle=pickled)
    except _LOAD_ERRORS as err:
        raise DatasetError(f"{src}: cannot read {what} ({type(err).__name__}: {err})") from None


def _read_npy(p: Path, src: str) -> _Parts:
    arr = _np_load(p, src, "as an .npy file", mmap=True)
    if not isinstance(arr, np.ndarray):
        arr.close()
        raise DatasetError(f"{src}: an .npz archive, not a single array; pass format='npz'")
    return _Parts(what="the array", shape=arr.shape, dtype=arr.dtype, load=lambda: arr, timing_hint="")


def _npz_shapes(p: Path, src: str) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Shape and dtype of each array of an .npz archive, read from the headers without loading the arrays."""
    out: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
    try:
        with zipfile.ZipFile(p) as archive:
            for member in archive.namelist():
                if not member.endswith(".npy"):
                    continue
                with archive.open(member) as fh:
                    version = np.lib.format.read_magic(fh)
                    if version == (1, 0):
                        shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
                    else:
                        shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
                out[member[: -len(".npy")]] = (tuple(shape), np.dtype(dtype))
    except _LOAD_ERRORS as err:
        raise DatasetError(f"{src}: cannot read as an .npz archive ({type(err).__name__}: {err})") from None
    return out


def _read_npz(archive: Any, p: Path, src: str, key: str | None, timestamps_key: str | None, inputs_key: str | None) -> _Parts:
    shapes = _npz_shapes(p, src)
    present = _listing(sorted(shapes))

    def get(name: str) -> Any:
        try:
            return archive[name]
        except _LOAD_ERRORS as err:
            raise DatasetError(f"{src}: cannot read array {name!r} ({type(err).__name__}: {err})") from None

    for option, name in (("key", key), ("timestamps_key", timestamps_key), ("inputs_key", inputs_key)):
        if name is not None and name not in shapes:
            raise DatasetError(f"{src}: no array {name!r} ({option}=) in the archive; arrays present: {present}")
    if key is None:
        reserved = {timestamps_key, inputs_key, _TIMESTAMPS_KEY, _POSITIONS_KEY, *_NAME_KEYS}
        candidates = sorted(k for k, (shape, _) in shapes.items() if len(shape) == 2 and k not in reserved)
        if len(candidates) != 1:
            found = "no 2-D array" if not candidates else f"several 2-D arrays ({_listing(candidates)})"
            raise DatasetError(f"{src}: {found} to read as the activity; pass key= one of the arrays present: {present}")
        key = candidates[0]
    shape, dtype = shapes[key]
    chosen = key
    parts = _Parts(what=f"array {key!r}", shape=shape, dtype=dtype, load=lambda: get(chosen))
    parts.timing_hint = ", or store an array 'timestamps', 'dt' or 'rate' in the archive (or pass timestamps_key=)"
    ts_key = timestamps_key or (_TIMESTAMPS_KEY if _TIMESTAMPS_KEY in shapes else None)
    if ts_key is not None:
        parts.timestamps, parts.timestamps_what = get(ts_key), f"array {ts_key!r}"
    elif "dt" in shapes:
        parts.step = (get("dt"), f"{src}: array 'dt'", False)
    elif "rate" in shapes:
        parts.step = (get("rate"), f"{src}: array 'rate'", True)
    if inputs_key is not None:
        parts.inputs, parts.inputs_what = get(inputs_key), f"array {inputs_key!r} (inputs_key=)"
    names_key = next((k for k in _NAME_KEYS if k in shapes), None)
    if names_key is not None:
        parts.names = _strings(get(names_key), f"{src}: array {names_key!r}")
    if _POSITIONS_KEY in shapes:
        parts.positions = get(_POSITIONS_KEY)
    return parts


# --- text tables ---


def _is_number(cell: str) -> bool:
    if not cell.strip():
        return True
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _read_table(p: Path, src: str, delimiter: str, layout: str | None, time_column: str | int | None) -> _Parts:
    rows: list[tuple[int, list[str]]] = []  # (line in the file, cells); blank lines skipped
    try:
        with p.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh, delimiter=delimiter)
            for row in reader:
                if any(cell.strip() for cell in row):
                    rows.append((reader.line_num, row))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DatasetError(f"{src}: cannot read as a {'CSV' if delimiter == ',' else 'TSV'} table ({err})") from None
    if not rows:
        raise DatasetError(f"{src}: the table is empty")
    width = len(rows[0][1])
    for line, row in rows:
        if len(row) != width:
            raise DatasetError(f"{src}: row {line} has {len(row)} cells but row {rows[0][0]} has {width}")
    header: list[str] | None = None
    if not all(_is_number(cell) for cell in rows[0][1]):
        header = [cell.strip() for cell in rows[0][1]]
        rows = rows[1:]
    if not rows:
        raise DatasetError(f"{src}: the table has a header but no rows of values")

    def column(j: int) -> str:
        return f"column {header[j]!r} (index {j})" if header is not None else f"column {j}"

    cells = np.array([row for _, row in rows], dtype=str)
    try:
        values = np.where(np.char.strip(cells) == "", "nan", cells).astype(np.float64)
    except ValueError:
        # find the cell to name, parsing one at a time as Python does
        values = np.empty(cells.shape, dtype=np.float64)
        for i, (line, row) in enumerate(rows):
            for j, cell in enumerate(row):
                if not _is_number(cell):
                    raise DatasetError(f"{src}: {column(j)}, row {line}: {cell!r} is not a number") from None
                values[i, j] = float(cell) if cell.strip() else np.nan

    parts = _Parts(what="the table", shape=values.shape, dtype=values.dtype, load=lambda: values, timing_hint=", or time_column=")
    if time_column is None and header is not None:  # a column headed like frame times is taken as them
        time_column = next((h for h in header if h.lower() in _TIME_HEADERS), None)
    if time_column is not None:
        if isinstance(time_column, str):
            if header is None or time_column not in header:
                columns = f"columns: {_listing(header)}" if header is not None else "the table has no header row"
                raise DatasetError(f"{src}: no column {time_column!r} (time_column=); {columns}")
            jt = header.index(time_column)
        else:
            jt = int(time_column)
            if not -width <= jt < width:
                raise DatasetError(f"{src}: time_column={jt} is out of range: the table has {width} columns")
            jt %= width
        parts.timestamps, parts.timestamps_what = values[:, jt], f"{column(jt)} (time_column=)"
        values = np.delete(values, jt, axis=1)
        parts.shape, parts.load = values.shape, lambda: values
        if header is not None:
            del header[jt]
    # with neurons first the header labels frames, not neurons
    if header is not None and layout != "neurons_first":
        parts.names = tuple(name or str(j) for j, name in enumerate(header))
    return parts


# --- HDF5 ---


def _read_hdf5(h5: h5py.File, src: str, key: str | None, timestamps_key: str | None, inputs_key: str | None) -> _Parts:
    datasets: dict[str, h5py.Dataset] = {}

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset):
            datasets["/" + name] = obj

    try:
        h5.visititems(visit)
    except (OSError, RuntimeError, KeyError, ValueError) as err:
        raise DatasetError(f"{src}: cannot list the datasets of the HDF5 file ({err})") from None

    def find(name: str, option: str) -> h5py.Dataset:
        try:
            obj = h5.get(name)
        except (OSError, RuntimeError, KeyError, ValueError):
            obj = None
        if obj is None:
            raise DatasetError(f"{src}: no dataset {name!r} ({option}=); datasets present: {_listing(sorted(datasets))}")
        if not isinstance(obj, h5py.Dataset):
            raise DatasetError(f"{src}: {name!r} ({option}=) is a group, not a dataset; datasets present: {_listing(sorted(datasets))}")
        return obj

    ts = find(timestamps_key, "timestamps_key") if timestamps_key is not None else None
    inputs = find(inputs_key, "inputs_key") if inputs_key is not None else None
    if key is not None:
        ds = find(key, "key")
    else:
        skip = {d.name for d in (ts, inputs) if d is not None}
        reserved = {_TIMESTAMPS_KEY, _POSITIONS_KEY, *_NAME_KEYS}
        candidates = sorted(
            path
            for path, d in datasets.items()
            if d.ndim == 2 and d.dtype.kind in "biuf" and path not in skip and path.rsplit("/", 1)[-1] not in reserved
        )
        if len(candidates) != 1:
            found = "no 2-D numeric dataset" if not candidates else f"several 2-D datasets ({_listing(candidates)})"
            raise DatasetError(
                f"{src}: {found} to read as the activity; pass key= one of the datasets present: {_listing(sorted(datasets))}"
            )
        ds = datasets[candidates[0]]
    what = f"dataset {ds.name!r}"
    parts = _Parts(what=what, shape=tuple(ds.shape), dtype=ds.dtype, load=lambda: ds[()])
    parts.timing_hint = f", or timestamps_key=, or set an attribute 'dt' or {_listing(list(_RATE_ATTRS))} (Hz) on {what}"
    attrs = _attributes(ds, src)
    if ts is not None:
        parts.timestamps, parts.timestamps_what = _read_small(ts, src), f"dataset {ts.name!r}"
    elif "dt" in attrs:
        parts.step = (attrs["dt"], f"{src}: attribute 'dt' of {what}", False)
    else:
        name = next((a for a in _RATE_ATTRS if a in attrs), None)
        if name is not None:
            parts.step = (attrs[name], f"{src}: attribute {name!r} of {what}", True)
    unit = attrs.get("units", attrs.get("unit"))
    if unit is not None:
        parts.units = unit.decode("utf-8", "replace") if isinstance(unit, bytes) else str(unit)
    if inputs is not None:
        parts.inputs, parts.inputs_what = inputs, f"dataset {inputs.name!r} (inputs_key=)"
    group = ds.parent
    for name in _NAME_KEYS:
        found = group.get(name)
        if isinstance(found, h5py.Dataset):
            text = found.asstr() if h5py.check_string_dtype(found.dtype) is not None else found
            parts.names = _strings(_read_small(text, src), f"{src}: dataset {found.name!r}")
            break
    found = group.get(_POSITIONS_KEY)
    if isinstance(found, h5py.Dataset):
        parts.positions = _read_small(found, src)
    return parts


def _attributes(ds: h5py.Dataset, src: str) -> dict[str, Any]:
    try:
        return dict(ds.attrs.items())
    except (OSError, RuntimeError, KeyError, ValueError, TypeError) as err:
        raise DatasetError(f"{src}: cannot read the attributes of dataset {ds.name!r} ({err})") from None


def _read_small(ds: Any, src: str) -> np.ndarray:
    try:
        return np.asarray(ds[()])
    except (OSError, RuntimeError, KeyError, ValueError, TypeError) as err:
        raise DatasetError(f"{src}: cannot read dataset {getattr(ds, 'name', '?')!r} ({err})") from None


# --- NWB ---


def _read_nwb(p: Path, src: str, key: str | None, inputs_key: str | None, step: float | None) -> Recording:
    try:
        from pynwb import NWBHDF5IO, TimeSeries
        from pynwb.ophys import RoiResponseSeries
    except ImportError:
        raise DatasetError(f'{src}: reading NWB files needs pynwb, an optional extra: pip install "circuitgnn[nwb]"') from None
    # pynwb and hdmf raise many exception types (and their own) on a file they cannot parse
    try:
        io = NWBHDF5IO(str(p), mode="r")
    except Exception as err:
        raise DatasetError(f"{src}: cannot open as an NWB file ({type(err).__name__}: {err})") from None
    with io:
        try:
            nwbfile = io.read()
        except Exception as err:
            raise DatasetError(f"{src}: cannot read as an NWB file ({type(err).__name__}: {err})") from None
        series: dict[str, Any] = {}
        for module_name, module in nwbfile.processing.items():
            for iface_name, iface in module.data_interfaces.items():
                if isinstance(iface, RoiResponseSeries):
                    series[f"processing/{module_name}/{iface_name}"] = iface
                for name, s in getattr(iface, "roi_response_series", {}).items():
                    series[f"processing/{module_name}/{iface_name}/{name}"] = s
        for name, s in nwbfile.acquisition.items():
            if isinstance(s, TimeSeries):
                series[f"acquisition/{name}"] = s
        others = {f"stimulus/{name}": s for name, s in nwbfile.stimulus.items() if isinstance(s, TimeSeries)}

        inputs = _nwb_series({**others, **series}, inputs_key, src, "inputs_key") if inputs_key is not None else None
        if key is not None:
            chosen = _nwb_series(series, key, src, "key")
        else:
            candidates = sorted(path for path, s in series.items() if len(_shape(s.data)) == 2 and s is not inputs)
            if len(candidates) != 1:
                found = "no 2-D time series" if not candidates else f"several 2-D time series ({_listing(candidates)})"
                raise DatasetError(
                    f"{src}: {found} to read as the activity; pass key= one of the series present: {_listing(sorted(series))}"
                )
            chosen = series[candidates[0]]
        return _assemble(_nwb_parts(chosen, inputs, src), src, None, step)


def _shape(data: Any) -> tuple[int, ...]:
    shape = getattr(data, "shape", None)
    return tuple(shape) if shape is not None else np.shape(data)


def _nwb_series(series: dict[str, Any], key: str, src: str, option: str) -> Any:
    if key in series:
        return series[key]
    matches = [path for path in series if path.rsplit("/", 1)[-1] == key]
    if len(matches) == 1:
        return series[matches[0]]
    if matches:
        raise DatasetError(f"{src}: several time series are named {key!r} ({option}=); pass one of their paths: {_listing(matches)}")
    raise DatasetError(f"{src}: no time series {key!r} ({option}=); series present: {_listing(sorted(series))}")


def _nwb_parts(s: Any, inputs: Any, src: str) -> _Parts:
    what = f"time series {s.name!r}"
    data = s.data
    shape = _shape(data)
    parts = _Parts(what=what, shape=shape, dtype=np.dtype(data.dtype), load=lambda: data[()] if isinstance(data, h5py.Dataset) else data)
    parts.time_first = True
    if s.timestamps is not None:
        parts.timestamps, parts.timestamps_what = _read_small(s.timestamps, src), f"timestamps of {what}"
    elif s.rate is not None:
        parts.step = (s.rate, f"{src}: rate of {what}", True)
    parts.timing_hint = f" ({what} has neither a rate nor timestamps)"
    parts.units = str(s.unit) if s.unit else "a.u."
    parts.scale = (float(getattr(s, "conversion", 1.0) or 1.0), float(getattr(s, "offset", 0.0) or 0.0))
    if inputs is not None:
        parts.inputs = inputs.data if isinstance(inputs.data, h5py.Dataset) else np.asarray(inputs.data)
        parts.inputs_what = f"time series {inputs.name!r} (inputs_key=)"
    rois = getattr(s, "rois", None)
    if rois is not None and len(shape) == 2:
        try:
            rows = np.asarray(rois.data[:], dtype=np.int64)
            ids = np.asarray(rois.table.id.data[:])[rows]
        except Exception:  # a malformed ROI table: names and positions are optional
            rows = ids = np.empty(0, dtype=np.int64)
        if len(rows) == shape[1]:
            parts.names = tuple(f"roi{i}" for i in ids.tolist())
            parts.positions = _roi_centroids(rois.table, rows)
    return parts


def _roi_centroids(table: Any, rows: np.ndarray) -> np.ndarray | None:
    """(x, y[, z]) weighted centroid of each ROI mask of a PlaneSegmentation, or None when it has no usable mask."""
    try:
        centroids = []
        if "pixel_mask" in table.colnames or "voxel_mask" in table.colnames:
            column = "pixel_mask" if "pixel_mask" in table.colnames else "voxel_mask"
            axes = ("x", "y") if column == "pixel_mask" else ("x", "y", "z")
            for r in rows:
                mask = np.asarray(table[column][int(r)])
                weight = np.asarray(mask["weight"], dtype=np.float64)
                coords = np.stack([np.asarray(mask[a], dtype=np.float64) for a in axes], axis=1)
                centroids.append(_weighted_mean(coords, weight))
        elif "image_mask" in table.colnames:
            masks = table["image_mask"].data
            for r in rows:
                image = np.asarray(masks[int(r)], dtype=np.float64)  # indexed [x, y(, z)] in NWB
                idx = np.nonzero(image)
                centroids.append(_weighted_mean(np.stack(idx, axis=1).astype(np.float64), image[idx]))
        else:
            return None
        return np.asarray(centroids, dtype=np.float32)
    except Exception:  # positions are optional: an unusual mask layout should not stop reading the activity
        return None


def _weighted_mean(coords: np.ndarray, weight: np.ndarray) -> np.ndarray:
    if len(coords) == 0:
        return np.full(coords.shape[1], np.nan)
    if weight.sum() > 0:
        return (coords * weight[:, None]).sum(axis=0) / weight.sum()
    return coords.mean(axis=0)


# --- suite2p ---


def _suite2p_dir(p: Path) -> Path | None:
    return next((p / d for d in _SUITE2P_DIRS if (p / d / "F.npy").is_file()), None)


def _read_suite2p(p: Path, src: str, neuropil: float, cells_only: bool) -> _Parts:
    folder = _suite2p_dir(p)
    if folder is None:
        looked = ", ".join(str(p / d / "F.npy") for d in _SUITE2P_DIRS)
        raise DatasetError(f"{src}: not a suite2p output folder: no F.npy (looked for {looked})")
    fneu_path = folder / "Fneu.npy"
    if not fneu_path.is_file():
        raise DatasetError(f"{src}: the suite2p folder {folder} has F.npy but no Fneu.npy (the neuropil traces)")

    def array(name: str, mmap: bool = True) -> np.ndarray:
        arr = _np_load(folder / name, str(folder / name), "as an .npy file", mmap=mmap)
        if not isinstance(arr, np.ndarray):
            raise DatasetError(f"{folder / name}: not a single array")
        _check_numeric(arr.dtype, str(folder / name))
        return arr

    f, fneu = array("F.npy"), array("Fneu.npy")
    if f.ndim != 2:
        raise DatasetError(f"{folder / 'F.npy'}: must be 2-dimensional (ROIs x frames), got shape {f.shape}")
    if fneu.shape != f.shape:
        raise DatasetError(f"{fneu_path}: shape {fneu.shape} differs from F.npy's {f.shape}; both are (ROIs, frames)")
    n_rois = f.shape[0]
    iscell_path = folder / "iscell.npy"
    if iscell_path.is_file():
        iscell = array("iscell.npy", mmap=False)
        if iscell.ndim not in (1, 2) or iscell.shape[0] != n_rois:
            raise DatasetError(f"{iscell_path}: shape {iscell.shape}, expected ({n_rois}, 2) (a flag and a probability per ROI of F.npy)")
        flags = (iscell[:, 0] if iscell.ndim == 2 else iscell) > 0
    elif cells_only:
        raise DatasetError(
            f"{src}: the suite2p folder {folder} has no iscell.npy to select the cells; pass cells_only=False (circuitgnn import --all-rois) to keep every ROI"
        )
    else:
        flags = np.ones(n_rois, dtype=bool)
    rows = np.flatnonzero(flags) if cells_only else np.arange(n_rois)
    if len(rows) == 0:
        raise DatasetError(
            f"{iscell_path}: no ROI is flagged as a cell; pass cells_only=False (circuitgnn import --all-rois) to keep every ROI"
        )

    parts = _Parts(
        what="F - neuropil * Fneu",
        shape=(len(rows), f.shape[1]),
        dtype=f.dtype,
        load=lambda: np.asarray(f[rows], dtype=np.float32) - np.float32(neuropil) * np.asarray(fneu[rows], dtype=np.float32),
        time_first=False,
        names=tuple(f"roi{r}" for r in rows.tolist()),
        timing_hint=f", or an 'fs' entry in {folder / 'ops.npy'}",
    )
    # suite2p pickles ops.npy (a dict) and stat.npy (an array of dicts), so they need allow_pickle=True:
    # only read suite2p folders from a trusted source
    ops_path = folder / "ops.npy"
    if ops_path.is_file():
        ops = _np_load(ops_path, str(ops_path), "the suite2p options", pickled=True)
        ops = ops.item() if isinstance(ops, np.ndarray) and ops.dtype == object and ops.ndim == 0 else ops
        if not isinstance(ops, dict):
            raise DatasetError(f"{ops_path}: expected a pickled dict of suite2p options, got {type(ops).__name__}")
        if "fs" in ops:
            parts.step = (ops["fs"], f"{ops_path}: 'fs' (frames per second)", True)
    stat_path = folder / "stat.npy"
    if stat_path.is_file():
        stat = _np_load(stat_path, str(stat_path), "the suite2p ROI statistics", pickled=True)
        if not isinstance(stat, np.ndarray) or stat.ndim != 1 or len(stat) != n_rois:
            raise DatasetError(
                f"{stat_path}: expected one dict per ROI of F.npy ({n_rois}), got {getattr(stat, 'shape', type(stat).__name__)}"
            )
        positions = np.empty((len(rows), 2), dtype=np.float32)
        for k, r in enumerate(rows.tolist()):
            med = stat[r].get("med") if isinstance(stat[r], dict) else None
            if med is None or np.shape(med) != (2,):
                raise DatasetError(f"{stat_path}: ROI {r} has no 'med' centroid [y, x]")
            positions[k] = (med[1], med[0])  # suite2p's med is [y, x]
        parts.positions = positions
    return parts
