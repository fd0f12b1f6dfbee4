"""Recovery of a hidden stimulus Omega (paper section 5.6) and its movie figures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from circuitgnn.analyze.metrics import linear_fit
from circuitgnn.data.dataset import Dataset, evenly_spaced_frames
from circuitgnn.model.siren import StimulusField


@torch.no_grad()
def field_frames(field: StimulusField, frames: np.ndarray, n_frames: int) -> np.ndarray:
    """The learned Omega* of the driven neurons at the given frame indices: (len(frames), n_driven)."""
    t = torch.as_tensor(frames / n_frames, dtype=torch.float32, device=field.coords.device)
    return field.driven_values(t).cpu().numpy()


def stimulus_score(field: StimulusField, ds: Dataset, n_frames: int = 100) -> dict[str, Any]:
    """R^2 and slope between the true and the learned field on the driven neurons, over evenly spaced frames.

    The model only identifies the product of Omega*_i and the row i of W, so a global factor of
    Omega* is free: both fields are divided by their mean over the compared frames and neurons
    before the line fit (R^2 does not depend on that factor; the slope then measures contrast).

    The paper's own metric (spec 5.6) is given beside it as ``omega_sqrt_*``: square roots of both
    fields (the SIREN's output before squaring), the learned one scaled so that the maxima of the
    first compared frame agree.
    """
    frames = evenly_spaced_frames(ds.n_frames, n_frames)
    learned = field_frames(field, frames, ds.n_frames).astype(np.float64)
    true = np.asarray(ds.omega[frames], dtype=np.float64)[:, : field.n_driven]
    fit = linear_fit(true / true.mean(), learned / learned.mean())
    root_true, root_learned = np.sqrt(true), np.sqrt(learned)
    peak = root_learned[0].max()
    root_fit = linear_fit(root_true, root_learned * (root_true[0].max() / peak if peak > 0 else 1.0))
    return {
        "omega_r2": fit.r2,
        "omega_slope": fit.slope,
        "omega_frames_compared": n_frames,
        "omega_normalisation": "each field divided by its mean over the compared frames and driven neurons",
        "omega_sqrt_r2": root_fit.r2,
        "omega_sqrt_slope": root_fit.slope,
    }


def _cumulative_crossing(freqs: np.ndarray, power: np.ndarray, fraction: float) -> float:
    order = np.argsort(freqs)
    cum = np.cumsum(power[order]) / power.sum()
    return float(freqs[order][np.searchsorted(cum, fraction)])


def movie_bandwidth(movie: np.ndarray, fractions: tuple[float, ...] = (0.9, 0.95)) -> dict[str, float]:
    """The frequencies below which a fraction of a movie's variance lies, for a movie (frames, G, G).

    In time: cycles over the frames given. In space: cycles per side of the grid, summed over frames,
    of the movie less its mean frame (what changes, which is what a representation in t must follow).
    """
    movie = np.asarray(movie, dtype=np.float64)
    n, side = movie.shape[0], movie.shape[1]
    centred = movie - movie.mean(axis=0)
    temporal = (np.abs(np.fft.rfft(centred.reshape(n, -1), axis=0)) ** 2).sum(axis=1)
    grids = centred - centred.mean(axis=(1, 2), keepdims=True)
    spatial = (np.abs(np.fft.fft2(grids)) ** 2).sum(axis=0)
    f = np.fft.fftfreq(side) * side
    radius = np.hypot(f[:, None], f[None, :])
    out = {}
    for q in fractions:
        pct = int(round(100 * q))
        out[f"omega_temporal_cycles_{pct}"] = _cumulative_crossing(np.arange(len(temporal), dtype=float), temporal, q)
        out[f"omega_spatial_cycles_{pct}"] = _cumulative_crossing(radius.ravel(), spatial.ravel(), q)
    return out


def stimulus_bandwidth(ds: Dataset, n_driven: int, fractions: tuple[float, ...] = (0.9, 0.95), n_samples: int = 1024) -> dict[str, float]:
    """How detailed the true stimulus is (:func:`movie_bandwidth` of ``n_samples`` evenly spaced frames
    of the driven neurons; temporal cycles are then over the whole recording). An implicit
    representation of the stimulus has to reach these frequencies to recover it.
    """
    frames = evenly_spaced_frames(ds.n_frames, n_samples)
    side = int(round(np.sqrt(n_driven)))
    movie = np.asarray(ds.omega[frames], dtype=np.float64)[:, :n_driven].reshape(len(frames), side, side)
    return movie_bandwidth(movie, fractions)


def movie_figure(field: StimulusField, ds: Dataset, n_show: int = 6):
    """True and recovered stimulus side by side at a few frames."""
    from circuitgnn.simulate.figure import pyplot

    plt = pyplot()
    g = int(ds.neurons["grid_size"])
    frames = evenly_spaced_frames(ds.n_frames, n_show)
    learned = field_frames(field, frames, ds.n_frames).reshape(n_show, g, g)
    true = np.asarray(ds.omega[frames])[:, : g * g].reshape(n_show, g, g)
    learned = learned / learned.mean() * true.mean()
    fig, axes = plt.subplots(2, n_show, figsize=(2.2 * n_show, 4.8))
    for j in range(n_show):
        for i, (img, name) in enumerate(((true[j], "true"), (learned[j], "recovered"))):
            axes[i, j].imshow(img, cmap="gray", vmin=true.min(), vmax=true.max())
            axes[i, j].set_axis_off()
            axes[i, j].set_title(f"{name}, frame {frames[j]}", fontsize=8)
    fig.tight_layout()
    return fig


def write_movie_gif(field: StimulusField, ds: Dataset, out: Path, n_show: int = 60) -> Path:
    """An animated GIF of the true (left) and recovered (right) stimulus, written atomically."""
    import os
    import uuid

    from PIL import Image

    g = int(ds.neurons["grid_size"])
    frames = evenly_spaced_frames(ds.n_frames, n_show)
    true = np.asarray(ds.omega[frames])[:, : g * g].reshape(n_show, g, g)
    learned = field_frames(field, frames, ds.n_frames).reshape(n_show, g, g)
    learned = learned / learned.mean() * true.mean()
    lo, hi = true.min(), true.max()
    pair = np.concatenate([true, np.full((n_show, g, 2), hi), learned], axis=2)
    pixels = (255 * np.clip((pair - lo) / (hi - lo or 1.0), 0, 1)).astype(np.uint8)
    images = [Image.fromarray(p).resize((p.shape[1] * 8, p.shape[0] * 8), Image.NEAREST) for p in pixels]
    out = Path(out)
    tmp = out.with_name(f".{out.stem}.tmp-{uuid.uuid4().hex[:8]}.gif")
    images[0].save(tmp, save_all=True, append_images=images[1:], duration=100, loop=0)
    os.replace(tmp, out)
    return out
