"""A recording (or several of the same neurons) written as a dataset folder that training reads.

>>> from circuitgnn.data.importer import import_recording
>>> ds = import_recording("session1.nwb", "datasets/mouse1", rate=30.0)     # or several paths: one segment each

The dataset keeps the recorded values (NaN where missing), the segment boundaries, the frames held out
from training (the last ``holdout`` of each segment), the units, and the neurons' names and positions
when the file has them. Neurons with constant activity are left out with a warning that names them,
and listed in ``meta.json`` (the readers refuse a column with no value at all). Activity at a fixed point
is refused; growth, duplicated neurons and fewer independent directions than neurons are named in warnings
(:mod:`circuitgnn.data.informative`). The folder appears only when complete.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from circuitgnn.data.activity import check_holdout, neurons_with_signal
from circuitgnn.data.dataset import Dataset
from circuitgnn.data.informative import check_informative
from circuitgnn.data.readers import Recording, concatenate, read_recording
from circuitgnn.data.writer import DatasetWriter, check_destination
from circuitgnn.device import environment
from circuitgnn.errors import DatasetError

DEFAULT_HOLDOUT = 0.1


def import_recording(
    recordings: str | Path | Recording | Sequence[str | Path | Recording],
    out: str | Path,
    *,
    holdout: float = DEFAULT_HOLDOUT,
    overwrite: bool = False,
    name: str | None = None,
    check_activity: bool = True,
    **read_options: Any,
) -> Dataset:
    """Read one or several recordings of the same neurons and write them to the dataset folder ``out``.

    Parameters
    ----------
    recordings
        A file or folder (any format of :func:`~circuitgnn.data.readers.read_recording`), a
        :class:`~circuitgnn.data.readers.Recording`, or a list of them: sessions or trials of the same
        neurons, each a segment that no derivative, batch or rollout crosses.
    out
        The dataset folder to write (refused when it exists, unless ``overwrite``).
    holdout
        Fraction of each segment's last frames that training never reads: the forecast score's frames.
    check_activity
        Refuse activity that sits at a fixed point (:func:`~circuitgnn.data.informative.check_informative`; growth,
        duplicated neurons and too few independent directions are warnings either way). False imports it anyway.
    read_options
        Passed to :func:`~circuitgnn.data.readers.read_recording` (``format``, ``key``, ``layout``,
        ``dt``, ``rate``, ``timestamps_key``, ``inputs_key``, ``time_column``, ``neuropil``, ``cells_only``).
    """
    out = Path(out)
    check_holdout(holdout)
    check_destination(out, overwrite)
    items = [recordings] if isinstance(recordings, str | Path | Recording) else list(recordings)
    if not items:
        raise DatasetError("no recording given")
    parts = [r if isinstance(r, Recording) else read_recording(r, **read_options) for r in items]
    rec = parts[0] if len(parts) == 1 else concatenate(parts)
    x = rec.x
    found, silent = neurons_with_signal(x, rec.names, rec.source)
    kept = np.arange(x.shape[1]) if found is None else found
    if found is not None:
        x = x[:, kept]
    names = None if rec.names is None else [rec.names[i] for i in kept]
    positions = None if rec.positions is None else np.asarray(rec.positions, dtype=np.float32)[kept]
    t, n = x.shape
    missing = bool(np.isnan(x).any())
    informative = check_informative(
        x, rec.segments, rec.source, names, refuse=check_activity, override="check_activity=False (--no-check) imports it anyway"
    )

    with DatasetWriter(out, overwrite=overwrite) as writer:
        stream = writer.stream("x", (t, n))
        stream.append(np.ascontiguousarray(x, dtype=np.float32))
        arrays = {"x": stream.close()}
        covariates = None
        if rec.inputs is not None:
            cov = writer.stream("covariates", tuple(rec.inputs.shape))
            cov.append(np.ascontiguousarray(rec.inputs, dtype=np.float32))
            covariates = cov.close()
        np.savez(
            writer.file("neurons.npz"),
            positions=positions if positions is not None else np.zeros((n, 2), dtype=np.float32),
            driven=np.zeros(n, dtype=bool),
            grid_size=np.int64(0),
        )
        meta = {
            "name": name or out.name,
            "n_frames": t,
            "n_neurons": n,
            "dt": rec.dt,
            "stimulus_mode": "none",
            "arrays": arrays,
            "covariates": covariates,
            "segments": list(rec.segments),
            "holdout": holdout,
            "scale": "robust",
            "missing": missing,
            "units": rec.units,
            "names": names,
            "has_positions": positions is not None,
            "left_out": [{"index": i, "name": None if rec.names is None else rec.names[i], "why": why} for i, why in silent.items()],
            "source": rec.source,
            "informative": informative.as_dict(),
            "environment": environment(),
        }
        writer.finish(meta)
    return Dataset(out)


def describe_import(ds: Dataset) -> str:
    """The one-screen summary printed by ``circuitgnn import``."""
    m = ds.meta
    seg = ds.segments
    x = np.asarray(ds.x)
    frac_missing = float(np.isnan(x).mean())
    lines = [
        f"dataset      {ds.path}: N = {ds.n_neurons} neurons, T = {ds.n_frames} frames, dt = {ds.dt:g} ({1 / ds.dt:.4g} frames per time unit)",
        f"segments     {len(seg)} (sessions, trials or gaps), held out from training: the last {100 * ds.holdout:g} % of each",
        f"activity     units {ds.units}, range [{np.nanmin(x):.3g}, {np.nanmax(x):.3g}], missing values {100 * frac_missing:.2f} %",
        f"left out     {len(m['left_out'])} neuron(s) without signal"
        + (f": {[e['name'] or e['index'] for e in m['left_out'][:10]]}" if m["left_out"] else ""),
        f"source       {m['source']}",
    ]
    return "\n".join(lines)
