"""A dataset's activity written as a recording file (what an experimenter would hand over): HDF5, NWB, npz or csv.

``circuitgnn export DATASET --out recording.h5`` writes only what a recording has: the activity, its
sampling rate, the neurons' names; never dx/dt or the ground truth. :func:`~circuitgnn.data.readers.read_recording`
reads every format back to the same array.
"""

from __future__ import annotations

import csv
import os
import uuid
from pathlib import Path

import numpy as np

from circuitgnn.data.dataset import Dataset
from circuitgnn.errors import DatasetError

EXPORT_FORMATS = {".h5": "hdf5", ".hdf5": "hdf5", ".nwb": "nwb", ".npz": "npz", ".csv": "csv"}


def _write_hdf5(path: Path, x: np.ndarray, rate: float, names: list[str], units: str) -> None:
    import h5py

    with h5py.File(path, "w") as f:
        ds = f.create_dataset("activity", data=x, chunks=(min(len(x), 4096), x.shape[1]))
        ds.attrs["rate"] = rate
        ds.attrs["units"] = units
        f.create_dataset("names", data=np.array(names, dtype=object), dtype=h5py.string_dtype())


def _write_nwb(path: Path, x: np.ndarray, rate: float, units: str, description: str) -> None:
    try:
        from pynwb import NWBHDF5IO, NWBFile, TimeSeries
    except ImportError:
        raise DatasetError(f'writing {path} needs pynwb, an optional extra: pip install "circuitgnn[nwb]"') from None
    from datetime import UTC, datetime

    nwb = NWBFile(session_description=description, identifier=uuid.uuid4().hex, session_start_time=datetime.now(UTC))
    nwb.add_acquisition(TimeSeries(name="activity", data=x, unit=units, rate=rate, description="neural activity, time x neurons"))
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)


def export_recording(dataset: Dataset | str | Path, out: str | Path, *, overwrite: bool = False) -> Path:
    """Write the activity of ``dataset`` to the recording file ``out``; the format follows its suffix
    (``.h5``/``.hdf5``, ``.nwb``, ``.npz``, ``.csv``). Written to a temporary name, then renamed."""
    ds = dataset if isinstance(dataset, Dataset) else Dataset(dataset)
    out = Path(out)
    fmt = EXPORT_FORMATS.get(out.suffix.lower())
    if fmt is None:
        raise DatasetError(f"{out}: unknown recording format {out.suffix!r}; use one of {', '.join(EXPORT_FORMATS)}")
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists: choose another --out or pass --overwrite to replace it")
    if len(ds.segments) > 1:
        raise DatasetError(f"{ds.path} has {len(ds.segments)} segments: export writes one continuous recording")
    x = np.asarray(ds.x, dtype=np.float32)
    rate = 1.0 / ds.dt
    names = list(ds.meta.get("names") or [f"neuron{i}" for i in range(ds.n_neurons)])
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.tmp-{uuid.uuid4().hex[:8]}{out.suffix}")
    try:
        if fmt == "hdf5":
            _write_hdf5(tmp, x, rate, names, ds.units)
        elif fmt == "nwb":
            _write_nwb(tmp, x, rate, ds.units, f"circuitgnn export of {ds.path.name}")
        elif fmt == "npz":
            np.savez(tmp, activity=x, rate=np.float64(rate), names=np.array(names))
        else:
            with tmp.open("w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(["time", *names])
                for t, row in enumerate(x):
                    writer.writerow([repr(t * ds.dt), *(repr(float(v)) for v in row)])
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out
