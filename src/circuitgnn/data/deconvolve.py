"""Deconvolution: the activity behind a calcium recording, for the usual derivative fit.

The indicator's ODEs (:mod:`circuitgnn.data.indicators`) are inverted exactly,
f(x) = c + (rise + tau) c' + rise tau c'', on a smoothing spline of the calcium c (the
fluorescence with scale, baseline and saturation undone). The spline's weight is the inverse's
regularisation: it is chosen from the recording alone, by the even/odd-frame cross-validation of
:func:`~circuitgnn.data.derivatives.spline_smoothness`, once per recording on its longest segment.
The activity's dx/dt is the spline's next derivative taken through the same inverse.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from circuitgnn.config.indicator import IndicatorConfig
from circuitgnn.data.activity import Activity, Observation
from circuitgnn.data.dataset import Dataset
from circuitgnn.data.derivatives import MIN_SPLINE_FRAMES, fill_gaps, longest_smoothness, segment_bounds
from circuitgnn.data.indicators import Indicator
from circuitgnn.data.writer import DatasetWriter, check_destination
from circuitgnn.errors import DatasetError

_COLUMNS = 256  # neurons per spline solve: bounds the memory of the derivatives at large N


@dataclass(frozen=True)
class Deconvolution:
    """Deconvolved activity: estimates of x and dx/dt, the smoothed calcium, and the smoothness used."""

    x: np.ndarray
    dxdt: np.ndarray
    calcium: np.ndarray
    smoothness: float | None


def _derivatives(c: np.ndarray, dt: float, lam: float | None, order: int) -> list[np.ndarray]:
    """c smoothed and its first ``order`` time derivatives (a smoothing spline; central differences for short parts)."""
    if lam is None or len(c) < MIN_SPLINE_FRAMES:
        out = [c]
        for _ in range(order):
            out.append(np.gradient(out[-1], dt, axis=0) if len(c) > 1 else np.full_like(c, np.nan))
        return out
    from scipy.interpolate import make_smoothing_spline

    t = np.arange(len(c), dtype=np.float64) * dt
    spline = make_smoothing_spline(t, c, lam=lam, axis=0)
    return [spline(t), *(spline.derivative(k)(t) for k in range(1, order + 1))]


def deconvolve(
    fluorescence: np.ndarray,
    dt: float,
    indicator: Indicator | IndicatorConfig,
    segments: Sequence[int] = (0,),
    smoothness: float | None = None,
    choose_on: Sequence[tuple[int, int]] | None = None,
) -> Deconvolution:
    """Activity, its dx/dt and the smoothed calcium behind ``fluorescence`` (T, N) sampled every ``dt``.

    ``smoothness`` is the spline's penalty weight; None chooses it by cross-validation (no ground truth)
    on the longest of the ``choose_on`` frame ranges (default: the segments). Missing values (NaN) are
    bridged for the spline and stay NaN in every output. With a softplus or ReLU indicator, activity
    whose calcium is within 3 noise levels of zero cannot be told apart: there x is held at that level
    and dx/dt is NaN (training masks it).
    """
    if smoothness is not None and (not np.isfinite(smoothness) or smoothness < 0):
        raise DatasetError(f"smoothness must be a finite number >= 0 (the spline's penalty weight), got {smoothness!r}")
    ind = indicator if isinstance(indicator, Indicator) else Indicator(indicator)
    f = np.asarray(fluorescence)
    if f.ndim != 2:
        raise DatasetError(f"fluorescence must be a (frames, neurons) array, got shape {f.shape}")
    calcium = ind.calcium(f)  # float64: the spline's second and third derivatives need the digits
    bounds = segment_bounds(len(f), segments)
    lam = longest_smoothness(calcium, dt, list(choose_on) if choose_on else bounds) if smoothness is None else smoothness
    order = 3 if ind.cfg.rise > 0 else 2
    x, dxdt, smooth = (np.empty(f.shape, dtype=np.float32) for _ in range(3))
    for start, stop in bounds:
        for a in range(0, f.shape[1], _COLUMNS):
            cols = slice(a, a + _COLUMNS)
            seg = calcium[start:stop, cols]
            d = _derivatives(fill_gaps(seg), dt, lam, order)
            u = ind.drive(d[0], d[1], d[2])
            du = d[1] + (ind.cfg.rise + ind.cfg.tau) * d[2] + (ind.cfg.rise * ind.cfg.tau * d[3] if order == 3 else 0.0)
            observable: np.ndarray | float = 1.0
            if ind.cfg.transform != "identity":  # f^-1 is steep (softplus) or unknown (ReLU) near zero calcium
                floor = 3 * np.sqrt(np.nanmean((seg - d[0]) ** 2, axis=0)) + 1e-6
                observable = np.where(u < floor, np.nan, 1.0)
                u = np.maximum(u, floor)
            xs, slope = ind.activity(u)
            missing = np.isnan(seg)
            for out, value in ((x, xs), (dxdt, slope * du * observable), (smooth, d[0])):
                out[start:stop, cols] = np.where(missing, np.nan, value)
    return Deconvolution(x, dxdt, smooth, lam)


def deconvolve_activity(data: Activity, indicator: Indicator | IndicatorConfig, smoothness: float | None = None) -> Activity:
    """The activity behind the calcium recording ``data`` (its x is fluorescence): x and dx/dt deconvolved, the
    recording and the indicator kept (:class:`Observation`) for the fluorescence objective.

    The training part and the held-out part of each segment are deconvolved apart, so that no held-out
    frame shapes a value training reads.
    """
    if data.dxdt is not None:
        raise DatasetError(f"{data.source}: a calcium recording has no dx/dt to give; the deconvolution estimates it")
    ind = indicator if isinstance(indicator, Indicator) else Indicator(indicator)
    result = deconvolve(data.x, data.dt, ind, data.part_starts(), smoothness, data.train_bounds())
    return replace(
        data,
        x=result.x,
        dxdt=result.dxdt,
        fingerprint=None,
        missing=bool(np.isnan(result.x).any() or np.isnan(result.dxdt).any()),
        observation=Observation(np.asarray(data.x, dtype=np.float32), result.calcium, ind, result.smoothness),
    )


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another file system, or links not allowed
        shutil.copy2(src, dst)


def deconvolve_dataset(
    dataset: Dataset | str | Path,
    out: str | Path,
    indicator: IndicatorConfig | None = None,
    *,
    smoothness: float | None = None,
    overwrite: bool = False,
) -> Dataset:
    """Write a dataset whose x and dx/dt are deconvolved from the calcium recording ``dataset``.

    The indicator is the one the recording names in its meta.json (a calcium simulation) unless
    ``indicator`` is given. The new folder also holds the recorded ``fluorescence`` and the smoothed
    ``calcium`` (for the fluorescence objective of training), and the source's ground truth, if any.
    """
    ds = dataset if isinstance(dataset, Dataset) else Dataset(dataset)
    out = Path(out)
    check_destination(out, overwrite)
    if out.resolve() == ds.path.resolve():
        raise DatasetError(f"--out {out} is the recording itself: choose another folder")
    if ds.signal == "deconvolved":
        raise DatasetError(f"{ds.path} is already deconvolved (from {ds.meta.get('deconvolution', {}).get('source')})")
    ind = Indicator(indicator) if indicator is not None else ds.indicator
    if ind is None:
        raise DatasetError(
            f"{ds.path} names no calcium indicator in its meta.json: give the indicator's parameters (tau, and rise, transform, "
            "saturation, hill, scale, baseline when they apply)"
        )
    dec = deconvolve_activity(ds.activity(), ind, smoothness)
    assert dec.observation is not None and dec.dxdt is not None
    with DatasetWriter(out, overwrite=overwrite) as writer:
        meta = json.loads((ds.path / "meta.json").read_text())
        arrays: dict[str, Any] = {}
        obs = dec.observation
        for name, array in (("x", dec.x), ("dxdt", dec.dxdt), ("fluorescence", obs.fluorescence), ("calcium", obs.calcium)):
            stream = writer.stream(name, array.shape)
            stream.append(np.asarray(array, dtype=np.float32))
            arrays[name] = stream.close()
        for name, spec in meta["arrays"].items():
            if name not in ("x", "dxdt"):  # omega, when the recording has an input
                _link_or_copy(ds.path / spec["file"], writer.file(spec["file"]))
                arrays[name] = spec
        for item in ds.path.rglob("*"):
            rel = item.relative_to(ds.path)
            if item.is_file() and (rel.parts[0] == "truth" or rel.name == "neurons.npz"):
                _link_or_copy(item, writer.file(str(rel)))
        for key in ("format", "format_version", "complete"):
            meta.pop(key, None)
        meta.update(
            name=out.name,
            arrays=arrays,
            signal="deconvolved",
            indicator=ind.cfg.model_dump(mode="json"),
            deconvolution={
                "method": "spline",
                "smoothness": obs.smoothness,
                "smoothness_chosen": "cross-validated" if smoothness is None else "given",
                "source": str(ds.path.resolve()),
            },
            missing=dec.missing,
        )
        writer.finish(meta)
    return Dataset(out)
