"""Diagnostic figure of a simulated dataset: raster, traces, W sorted by type, W histogram."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import numpy as np

_MAX_RASTER_FRAMES = 2000
_MAX_RASTER_NEURONS = 200
_MAX_HEATMAP = 400


def _strided_frames(arr: np.ndarray, max_frames: int) -> tuple[np.ndarray, np.ndarray]:
    step = max(1, arr.shape[0] // max_frames)
    idx = np.arange(0, arr.shape[0], step)[:max_frames]
    return idx, np.asarray(arr[idx])


def plot_simulation(folder: Path, connectivity: np.ndarray, types: np.ndarray, out: Path) -> Path:
    """Draw the figure for the dataset arrays in ``folder`` and save it atomically to ``out`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.load(Path(folder) / "x.npy", mmap_mode="r")
    n = x.shape[1]
    rng = np.random.default_rng(0)
    sample = np.sort(rng.choice(n, size=min(n, _MAX_RASTER_NEURONS), replace=False))
    sample = sample[np.argsort(types[sample], kind="stable")]
    frames, xs = _strided_frames(x, _MAX_RASTER_FRAMES)
    xs = xs[:, sample]

    fig, axes = plt.subplots(2, 2, figsize=(12, 9))
    ax = axes[0, 0]
    lim = np.percentile(np.abs(xs), 99) or 1.0
    im = ax.imshow(xs.T, aspect="auto", cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest",
                   extent=(frames[0], frames[-1], len(sample), 0))
    ax.set(title=f"activity of {len(sample)} neurons (sorted by type)", xlabel="frame", ylabel="neuron")
    fig.colorbar(im, ax=ax, label="x")

    ax = axes[0, 1]
    cmap = plt.get_cmap("tab10")
    n_types = int(types.max()) + 1
    for t in range(min(n_types, 10)):
        members = np.flatnonzero(types == t)
        if members.size:
            i = members[0]
            window = min(x.shape[0], 2000)
            ax.plot(np.arange(window), np.asarray(x[:window, i]), color=cmap(t % 10), lw=1, label=f"neuron {i} (type {t})")
    ax.set(title="sample traces", xlabel="frame", ylabel="x")
    ax.legend(fontsize=8, loc="upper right")

    ax = axes[1, 0]
    order = np.argsort(types, kind="stable")
    if n > _MAX_HEATMAP:
        order = order[np.linspace(0, n - 1, _MAX_HEATMAP).astype(int)]
    wsub = connectivity[np.ix_(order, order)]
    wl = np.percentile(np.abs(wsub), 99) or 1.0
    im = ax.imshow(wsub, cmap="bwr", vmin=-wl, vmax=wl, interpolation="nearest")
    bounds = np.flatnonzero(np.diff(types[order])) + 0.5
    for b in bounds:
        ax.axhline(b, color="k", lw=0.5)
        ax.axvline(b, color="k", lw=0.5)
    ax.set(title=f"W sorted by type{' (subsampled)' if n > _MAX_HEATMAP else ''}: row = receiver, column = sender",
           xlabel="sender j", ylabel="receiver i")
    fig.colorbar(im, ax=ax, label="W[i, j]")

    ax = axes[1, 1]
    nz = connectivity[connectivity != 0]
    if nz.size > 1_000_000:
        nz = rng.choice(nz, size=1_000_000, replace=False)
    ax.hist(nz, bins=200, color="0.3")
    ax.set_yscale("log")
    ax.set(title=f"histogram of non-zero W ({100 * (connectivity != 0).mean():.1f} % non-zero)", xlabel="W[i, j]", ylabel="count")

    fig.tight_layout()
    out = Path(out)
    tmp = out.with_name(f".{out.stem}.tmp-{uuid.uuid4().hex[:8]}{out.suffix}")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    os.replace(tmp, out)
    return out
