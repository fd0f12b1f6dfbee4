"""Diagnostic figure of a simulated dataset: raster, traces, W sorted by type, W histogram.

The drawing helpers are shared with the run report.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import numpy as np

_MAX_RASTER_FRAMES = 2000
_MAX_RASTER_NEURONS = 200
_MAX_HEATMAP = 400


def pyplot():
    """matplotlib.pyplot with a file-only backend (no screen needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, out: Path, dpi: int = 90) -> Path:
    """Save atomically (temporary name, then rename) and close the figure."""
    out = Path(out)
    tmp = out.with_name(f".{out.stem}.tmp-{uuid.uuid4().hex[:8]}{out.suffix}")
    fig.savefig(tmp, dpi=dpi)
    pyplot().close(fig)
    os.replace(tmp, out)
    return out


def draw_raster(ax, x: np.ndarray, types: np.ndarray | None, fig) -> None:
    """Activity of a sample of neurons (sorted by type when known) over evenly spaced frames."""
    n = x.shape[1]
    rng = np.random.default_rng(0)
    sample = np.sort(rng.choice(n, size=min(n, _MAX_RASTER_NEURONS), replace=False))
    if types is not None:
        sample = sample[np.argsort(types[sample], kind="stable")]
    step = max(1, x.shape[0] // _MAX_RASTER_FRAMES)
    frames = np.arange(0, x.shape[0], step)[:_MAX_RASTER_FRAMES]
    xs = np.asarray(x[frames])[:, sample]
    lim = np.percentile(np.abs(xs), 99) or 1.0
    im = ax.imshow(
        xs.T, aspect="auto", cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest", extent=(frames[0], frames[-1], len(sample), 0)
    )
    ax.set(title=f"activity of {len(sample)} neurons" + (" (sorted by type)" if types is not None else ""), xlabel="frame", ylabel="neuron")
    fig.colorbar(im, ax=ax, label="x")


def draw_traces(ax, x: np.ndarray, types: np.ndarray | None, window: int = 2000) -> None:
    """The first frames of one neuron per type (or of the first neurons)."""
    plt = pyplot()
    cmap = plt.get_cmap("tab10")
    if types is not None:
        picks = [(int(np.flatnonzero(types == t)[0]), t) for t in range(min(int(types.max()) + 1, 10)) if np.any(types == t)]
    else:
        picks = [(i, i) for i in range(min(4, x.shape[1]))]
    w = min(x.shape[0], window)
    for i, t in picks:
        label = f"neuron {i} (type {t})" if types is not None else f"neuron {i}"
        ax.plot(np.arange(w), np.asarray(x[:w, i]), color=cmap(t % 10), lw=1, label=label)
    ax.set(title="sample traces", xlabel="frame", ylabel="x")
    ax.legend(fontsize=8, loc="upper right")


def type_order(types: np.ndarray | None, n: int) -> np.ndarray:
    """Neuron order sorted by type (subsampled to at most 400 for heatmaps)."""
    order = np.argsort(types, kind="stable") if types is not None else np.arange(n)
    if n > _MAX_HEATMAP:
        order = order[np.linspace(0, n - 1, _MAX_HEATMAP).astype(int)]
    return order


def draw_w_heatmap(ax, w: np.ndarray, types: np.ndarray | None, fig, title: str) -> None:
    order = type_order(types, w.shape[0])
    wsub = w[np.ix_(order, order)]
    wl = np.percentile(np.abs(wsub), 99) or 1.0
    im = ax.imshow(wsub, cmap="bwr", vmin=-wl, vmax=wl, interpolation="nearest")
    if types is not None:
        for b in np.flatnonzero(np.diff(types[order])) + 0.5:
            ax.axhline(b, color="k", lw=0.5)
            ax.axvline(b, color="k", lw=0.5)
    sub = " (subsampled)" if w.shape[0] > _MAX_HEATMAP else ""
    ax.set(title=title + sub, xlabel="sender j", ylabel="receiver i")
    fig.colorbar(im, ax=ax, label="W[i, j]")


def draw_w_histogram(ax, w: np.ndarray) -> None:
    nz = w[w != 0]
    if nz.size > 1_000_000:
        nz = np.random.default_rng(0).choice(nz, size=1_000_000, replace=False)
    ax.hist(nz, bins=200, color="0.3")
    ax.set_yscale("log")
    ax.set(title=f"histogram of non-zero W ({100 * (w != 0).mean():.1f} % non-zero)", xlabel="W[i, j]", ylabel="count")


def plot_simulation(folder: Path, connectivity: np.ndarray, types: np.ndarray, out: Path) -> Path:
    """Draw the figure for the dataset arrays in ``folder`` and save it atomically to ``out`` (PNG)."""
    plt = pyplot()
    x = np.load(Path(folder) / "x.npy", mmap_mode="r")
    fig, axes = plt.subplots(2, 2, figsize=(12, 9))
    draw_raster(axes[0, 0], x, types, fig)
    draw_traces(axes[0, 1], x, types)
    draw_w_heatmap(axes[1, 0], connectivity, types, fig, "W sorted by type: row = receiver, column = sender")
    draw_w_histogram(axes[1, 1], connectivity)
    fig.tight_layout()
    return save_figure(fig, out)
