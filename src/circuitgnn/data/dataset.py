"""Reading a dataset folder: memory-mapped arrays, metadata and optional ground truth.

Layout of a dataset folder::

    meta.json                 format, shapes, dtypes, sha256 checksums, config, seed, versions, summary
    x.npy                     activity, float32 (T, N); NaN marks a missing value (recordings)
    dxdt.npy                  optional: noise-free drift dx/dt at each saved state, float32 (T, N) (simulations;
                              a recording has none, and training estimates it or needs none)
    omega.npy                 optional: the external input of each frame, float32 (T, N)
    neurons.npz               positions (N, 2); driven (N,) bool; grid_size
    truth/connectivity.npy    optional ground truth: W (N, N), W[i, j] = weight from j to i
    truth/types.npy           optional ground truth: type of each neuron (N,)
    truth/functions.json      optional ground truth: signal form, formulas and per-type parameters
    truth/movie.npy           optional ground truth: the stimulus movie (frames, G, G)
    truth/x.npy, truth/dxdt.npy  optional ground truth of a recording: clean states and exact drift at its frames
    truth/fluorescence.npy    optional ground truth of a calcium recording: its noise-free fluorescence
    truth/network/            optional: the whole network of a simulation that left neurons unrecorded (connectivity,
                              types, x, dxdt, recorded: the indices of the recorded neurons); truth/ holds the recorded ones'
    fluorescence.npy, calcium.npy  a deconvolved recording's fluorescence and smoothed calcium (``circuitgnn deconvolve``)

``meta.json`` of a recording (``circuitgnn import``, or a simulation with ``observation``) also holds
``segments`` (start frame of each session or trial), ``holdout`` (the fraction of each segment's
last frames that training never reads), ``scale`` (``robust``), ``missing`` (whether x has NaN),
``units`` and, when the file had them, the neurons' ``names``; a calcium recording's ``signal``
(``fluorescence``, or ``deconvolved`` after ``circuitgnn deconvolve``) and ``indicator``.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from circuitgnn.data.activity import Activity, Frames, Observation, sha256_of_rows
from circuitgnn.data.indicators import Indicator
from circuitgnn.data.writer import FORMAT_NAME, META_FILE, file_sha256
from circuitgnn.errors import DatasetError


@dataclass(frozen=True)
class GroundTruth:
    """What the simulator knows and the method must recover (never read by training)."""

    connectivity: np.ndarray
    types: np.ndarray
    functions: dict[str, Any]
    movie: np.ndarray | None
    x: np.ndarray | None = None  # a recording's clean states at its frames (memory-mapped)
    dxdt: np.ndarray | None = None  # and their exact drift

    @property
    def gains(self) -> np.ndarray:
        """Each neuron's gain (its type's), (N,): it scales the rows of any W the data determine."""
        return np.array([t["gain"] for t in self.functions["types"]], dtype=np.float64)[self.types]


class Dataset(Frames):
    """A dataset folder opened for reading; large arrays are memory-mapped, never loaded whole.

    Raises :class:`DatasetError` naming the file when the folder is missing,
    incomplete or inconsistent with its ``meta.json``.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_dir():
            raise DatasetError(f"dataset folder not found: {self.path}")
        meta_path = self.path / META_FILE
        if not meta_path.is_file():
            raise DatasetError(
                f"{self.path} is not a complete dataset: {META_FILE} is missing "
                "(an interrupted simulation, or not a circuitgnn dataset folder)"
            )
        try:
            self.meta: dict[str, Any] = json.loads(meta_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise DatasetError(f"{meta_path} is not valid JSON: {err}") from None
        if not isinstance(self.meta, dict) or self.meta.get("format") != FORMAT_NAME or not self.meta.get("complete"):
            raise DatasetError(f"{meta_path} does not describe a complete {FORMAT_NAME}")
        _check_meta(self.meta, meta_path)
        self.arrays: dict[str, np.ndarray] = {name: self._open_array(name, spec) for name, spec in self.meta["arrays"].items()}
        if "x" not in self.arrays:
            raise DatasetError(f"{meta_path}: the dataset has no 'x' array")
        shape = self.arrays["x"].shape
        for name, arr in self.arrays.items():
            if arr.shape != shape:
                raise DatasetError(f"{self.path / (name + '.npy')}: shape {arr.shape}, expected {shape} like x.npy")

    def _open_array(self, name: str, spec: dict[str, Any]) -> np.ndarray:
        if not isinstance(spec, dict) or not {"file", "shape", "dtype"} <= spec.keys():
            raise DatasetError(f"{self.path / META_FILE}: the entry of array {name!r} needs 'file', 'shape' and 'dtype', got {spec!r}")
        file = self.path / spec["file"]
        if not file.is_file():
            raise DatasetError(f"{file} is missing (listed in {META_FILE})")
        try:
            arr = np.load(file, mmap_mode="r")
        except (ValueError, OSError, EOFError) as err:
            raise DatasetError(f"{file} is not a readable .npy file ({err}): the dataset is incomplete or corrupted") from None
        if list(arr.shape) != list(spec["shape"]) or arr.dtype.name != spec["dtype"]:
            raise DatasetError(f"{file}: shape {arr.shape} {arr.dtype}, expected {tuple(spec['shape'])} {spec['dtype']}")
        return arr

    @property
    def x(self) -> np.ndarray:
        """Activity, (T, N), memory-mapped."""
        return self.arrays["x"]

    @property
    def dxdt(self) -> np.ndarray | None:
        """Noise-free drift at each saved state, (T, N), memory-mapped; None for a recording."""
        return self.arrays.get("dxdt")

    @property
    def omega(self) -> np.ndarray | None:
        """External input of each frame (T, N), or None."""
        return self.arrays.get("omega")

    @property
    def dt(self) -> float:
        return float(self.meta["dt"])

    @property
    def every(self) -> int:
        """Integration steps of the simulation between two frames (1 unless the dataset is an observed simulation)."""
        return int(self.meta.get("observation", {}).get("every", 1))

    @property
    def segments(self) -> tuple[int, ...]:
        """Start frame of each segment (session, trial)."""
        return tuple(int(s) for s in self.meta.get("segments", [0]))

    @property
    def holdout(self) -> float:
        """Fraction of each segment's last frames held out from training."""
        return float(self.meta.get("holdout", 0.0))

    @property
    def units(self) -> str:
        """Units of x (a simulation's are arbitrary)."""
        return str(self.meta.get("units", "a.u."))

    @property
    def signal(self) -> str:
        """What x holds: ``activity``, the ``fluorescence`` of a calcium indicator, or activity ``deconvolved`` from it."""
        return str(self.meta.get("signal", "activity"))

    @cached_property
    def indicator(self) -> Indicator | None:
        """The calcium indicator that the recording was seen through (meta.json ``indicator``), or None."""
        spec = self.meta.get("indicator")
        return None if spec is None else Indicator.from_meta(spec, str(self.path / META_FILE))

    @property
    def recorded(self) -> np.ndarray | None:
        """For a simulation that left neurons out of its recording: the indices of the recorded ones in the whole network."""
        file = self.path / "truth" / "network" / "recorded.npy"
        return load_npy(file) if file.is_file() else None

    @property
    def stimulus_mode(self) -> str:
        return str(self.meta.get("stimulus_mode", "none"))

    @cached_property
    def neurons(self) -> dict[str, np.ndarray]:
        file = self.path / "neurons.npz"
        if not file.is_file():
            raise DatasetError(f"{file} is missing")
        try:
            with np.load(file, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
            raise DatasetError(f"{file} is not a readable .npz file ({err}): the dataset is incomplete or corrupted") from None

    @property
    def positions(self) -> np.ndarray:
        if "positions" not in self.neurons:
            raise DatasetError(f"{self.path / 'neurons.npz'} has no 'positions' array")
        return self.neurons["positions"]

    @property
    def has_truth(self) -> bool:
        return (self.path / "truth" / "connectivity.npy").is_file()

    @cached_property
    def truth(self) -> GroundTruth | None:
        """Ground truth, or None for a recording without it; a truth folder that is incomplete or does not fit x is a
        named error."""
        t = self.path / "truth"
        if not self.has_truth:
            return None
        for name in ("types.npy", "functions.json"):
            if not (t / name).is_file():
                raise DatasetError(f"{t / name} is missing: the ground truth is incomplete (truth/connectivity.npy is there)")
        n = self.n_neurons
        connectivity, types = load_npy(t / "connectivity.npy"), load_npy(t / "types.npy")
        if connectivity.shape != (n, n):
            raise DatasetError(f"{t / 'connectivity.npy'}: shape {connectivity.shape}, expected ({n}, {n}) for the {n} neurons of x.npy")
        if types.shape != (n,) or not np.issubdtype(types.dtype, np.integer) or (types < 0).any():
            raise DatasetError(f"{t / 'types.npy'}: expected {n} integer type labels >= 0, got shape {types.shape} {types.dtype}")
        try:
            functions = json.loads((t / "functions.json").read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise DatasetError(f"{t / 'functions.json'} is not valid JSON: {err}") from None
        movie = t / "movie.npy"
        clean = {name: self._open_array(name, spec) for name, spec in self.meta.get("truth_arrays", {}).items()}
        return GroundTruth(
            connectivity=connectivity,
            types=types,
            functions=functions,
            movie=load_npy(movie) if movie.is_file() else None,
            x=clean.get("x"),
            dxdt=clean.get("dxdt"),
        )

    def activity(self) -> Activity:
        """The folder's arrays as an :class:`Activity` (memory-mapped, nothing copied): what training reads."""
        omega = self.omega
        return Activity(
            x=self.x,
            dxdt=self.dxdt,
            dt=self.dt,
            inputs=omega,
            input_mode="none" if omega is None else ("multiplicative" if self.stimulus_mode == "multiplicative" else "additive"),
            grid_size=int(self.neurons.get("grid_size", 0)) if (self.path / "neurons.npz").is_file() else 0,
            source=str(self.path.resolve()),
            fingerprint=self.meta["arrays"]["x"].get("sha256"),
            segments=self.segments,
            holdout=self.holdout,
            scale="robust" if self.meta.get("scale") == "robust" else "std",
            missing=bool(self.meta.get("missing", False)),
            observation=self._observation(),
        )

    def training_frames(self) -> tuple[np.ndarray, np.ndarray | None, tuple[int, ...]]:
        """The frames training may read (each segment without its held-out end), joined in memory, with their drift
        when the folder has one, and the start of each segment among them."""
        bounds = self.activity().train_bounds()
        starts = tuple(int(s) for s in np.cumsum([0] + [b - a for a, b in bounds[:-1]]))
        dxdt = None if self.dxdt is None else _rows(self.dxdt, bounds)
        return _rows(self.x, bounds), dxdt, starts

    def training_inputs(self) -> np.ndarray | None:
        """The recorded input at the frames of :meth:`training_frames`, or None when the folder has none."""
        omega = self.omega
        return None if omega is None else _rows(omega, self.activity().train_bounds())

    def _observation(self) -> Observation | None:
        """A deconvolved recording's fluorescence, smoothed calcium and indicator (None for other data)."""
        if self.signal != "deconvolved" or "fluorescence" not in self.arrays or "calcium" not in self.arrays:
            return None
        indicator = self.indicator
        assert indicator is not None  # a deconvolved dataset names its indicator
        lam = self.meta.get("deconvolution", {}).get("smoothness")
        return Observation(self.arrays["fluorescence"], self.arrays["calcium"], indicator, lam)

    def verify_checksums(self, block_rows: int = 4096) -> None:
        """Recompute the sha256 of every array and every other file (ground truth, neurons) and compare with meta.json
        (reads the whole data once); datasets written before file checksums were kept have their arrays checked."""
        for key in ("arrays", "truth_arrays"):
            for name, spec in self.meta.get(key, {}).items():
                array = self.arrays[name] if key == "arrays" else self._open_array(name, spec)
                if "sha256" in spec and sha256_of_rows(array, block_rows) != spec["sha256"]:
                    raise DatasetError(f"{self.path / spec['file']}: checksum mismatch, the file was modified or is corrupted")
        for rel, digest in self.meta.get("checksums", {}).items():
            file = self.path / rel
            if not file.is_file():
                raise DatasetError(f"{file} is missing (listed in {META_FILE})")
            if file_sha256(file) != digest:
                raise DatasetError(f"{file}: checksum mismatch, the file was modified or is corrupted")

    def __repr__(self) -> str:
        return f"Dataset({str(self.path)!r}, T={self.n_frames}, N={self.n_neurons}, truth={self.has_truth})"


_SIGNALS = ("activity", "fluorescence", "deconvolved")


def _check_spec(name: str, spec: Any, path: Path) -> None:
    ok = (
        isinstance(spec, dict)
        and isinstance(spec.get("file"), str)
        and isinstance(spec.get("dtype"), str)
        and isinstance(spec.get("shape"), list)
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in spec["shape"])
    )
    if not ok:
        raise DatasetError(f"{path}: the entry of array {name!r} needs 'file' (a name), 'shape' (sizes) and 'dtype', got {spec!r}")
    if spec["dtype"] != "float32":
        raise DatasetError(
            f"{path}: array {name!r} is {spec['dtype']}, datasets hold float32: write it with `circuitgnn import` "
            "(which converts), or convert the file"
        )


def _check_meta(meta: dict[str, Any], path: Path) -> None:
    """Every entry readers rely on, with its type, before anything reads it; a named error otherwise."""
    arrays = meta.get("arrays")
    if not isinstance(arrays, dict) or "x" not in arrays:
        raise DatasetError(f"{path}: 'arrays' must map array names (x, and dxdt, omega ...) to their files; got {arrays!r}")
    truth_arrays = meta.get("truth_arrays", {})
    if not isinstance(truth_arrays, dict):
        raise DatasetError(f"{path}: 'truth_arrays' must map array names to their files, got {truth_arrays!r}")
    for name, spec in [*arrays.items(), *truth_arrays.items()]:
        _check_spec(name, spec, path)
    dt = meta.get("dt")
    if isinstance(dt, bool) or not isinstance(dt, int | float) or not 0 < dt < 1e30:  # NaN fails too
        raise DatasetError(f"{path}: 'dt' (the time between frames) must be a positive number, got {dt!r}")
    checks: dict[str, tuple[Any, str]] = {
        "segments": (
            lambda v: isinstance(v, list) and all(isinstance(s, int) and not isinstance(s, bool) for s in v),
            "a list of start frames",
        ),
        "holdout": (lambda v: isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v < 1, "a fraction in [0, 1)"),
        "scale": (lambda v: v in ("std", "robust"), "'std' or 'robust'"),
        "missing": (lambda v: isinstance(v, bool), "true or false"),
        "stimulus_mode": (lambda v: isinstance(v, str), "a stimulus mode"),
        "signal": (lambda v: v in _SIGNALS, " or ".join(_SIGNALS)),
        "units": (lambda v: isinstance(v, str), "a unit"),
        "indicator": (lambda v: v is None or isinstance(v, dict), "the indicator's parameters"),
        "observation": (
            lambda v: v is None or (isinstance(v, dict) and isinstance(v.get("every", 1), int) and v.get("every", 1) >= 1),
            "the observation settings (every: an integer >= 1)",
        ),
        "deconvolution": (lambda v: isinstance(v, dict), "the deconvolution's settings"),
        "summary": (lambda v: isinstance(v, dict), "the simulation's summary"),
        "checksums": (lambda v: isinstance(v, dict) and all(isinstance(d, str) for d in v.values()), "file names and sha256 digests"),
    }
    for key, (valid, expected) in checks.items():
        if key in meta and not valid(meta[key]):
            raise DatasetError(f"{path}: '{key}' must be {expected}, got {meta[key]!r}")


def load_npy(file: Path) -> np.ndarray:
    """A small .npy file of the dataset, loaded whole; a named error when it is not a readable array."""
    try:
        return np.load(file, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise DatasetError(f"{file} is not a readable .npy file ({err}): the dataset is incomplete or corrupted") from None


def open_dataset(path: str | Path) -> Dataset:
    """Open a dataset folder for reading (see :class:`Dataset`)."""
    return Dataset(path)


def evenly_spaced_frames(n_frames: int, k: int) -> np.ndarray:
    """min(k, n_frames) frame indices spread evenly from the first frame to the last (integer arithmetic)."""
    k = min(k, n_frames)
    if k < 1:
        raise ValueError(f"need at least one frame, got n_frames={n_frames}, k={k}")
    return np.arange(k, dtype=np.int64) * (n_frames - 1) // max(k - 1, 1)


def _rows(array: np.ndarray, bounds: Sequence[tuple[int, int]]) -> np.ndarray:
    """The rows of ``array`` within ``bounds``, joined in memory."""
    return np.concatenate([np.asarray(array[a:b]) for a, b in bounds])
