"""The paper's figures for a trained run (each function returns a matplotlib figure)."""

from __future__ import annotations

from typing import Any

import numpy as np

from circuitgnn.analyze.confidence import plateau_aligned
from circuitgnn.analyze.functions import phi_curves, psi_curves
from circuitgnn.analyze.metrics import psi_plateau
from circuitgnn.data.dataset import Dataset
from circuitgnn.simulate.figure import draw_raster, draw_traces, draw_w_heatmap, pyplot
from circuitgnn.simulate.neuron_models import true_phi, true_psi
from circuitgnn.train.clustering import kmeans_silhouette
from circuitgnn.train.run_folder import TrainedRun

_MAX_CURVES = 400
_MAX_SCATTER = 200_000


def activity(ds: Dataset):
    plt = pyplot()
    types = ds.truth.types if ds.truth is not None else None
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    draw_raster(axes[0], ds.x, types, fig)
    draw_traces(axes[1], ds.x, types)
    fig.tight_layout()
    return fig


def calcium(ds: Dataset, n_neurons: int = 4, max_frames: int = 400):
    """For a few neurons: the recorded fluorescence (as calcium), the deconvolved activity and, in a simulation, the true one."""
    plt = pyplot()
    fluorescence = ds.arrays["fluorescence"]
    assert ds.indicator is not None
    cols = np.linspace(0, ds.n_neurons - 1, min(n_neurons, ds.n_neurons)).astype(int)
    frames = slice(0, min(max_frames, ds.n_frames))
    t = np.arange(ds.n_frames)[frames] * ds.dt
    fig, axes = plt.subplots(len(cols), 1, figsize=(12, 1.9 * len(cols)), sharex=True, squeeze=False)
    for ax, i in zip(axes[:, 0], cols, strict=True):
        ax.plot(t, ds.indicator.calcium(np.asarray(fluorescence[frames, i])), color="0.6", lw=1, label="recorded (as calcium)")
        if ds.truth is not None and ds.truth.x is not None:
            ax.plot(t, ds.truth.x[frames, i], color="k", lw=1.5, label="true activity")
        ax.plot(t, ds.x[frames, i], color="tab:red", lw=1, ls="--", label="deconvolved activity")
        ax.set_ylabel(f"neuron {i}")
    axes[0, 0].legend(loc="upper right", fontsize=8, ncol=3)
    axes[-1, 0].set_xlabel(f"time ({ds.indicator.describe()})")
    fig.tight_layout()
    return fig


def _corrected_w(run: TrainedRun, gains: np.ndarray | None) -> np.ndarray:
    g = gains if gains is not None else np.ones(run.model.n)
    return plateau_aligned(run.model, run.xnorm) / g[:, None]


def connectivity(run: TrainedRun, ds: Dataset, metrics: dict[str, Any]):
    """Learned W (corrected for psi*'s scale and the gain) next to the true W, and their scatter."""
    plt = pyplot()
    truth = ds.truth
    types = truth.types if truth is not None else None
    gains = truth.gains if truth is not None else None
    learned = _corrected_w(run, gains)
    if truth is None:
        fig, ax = plt.subplots(1, 1, figsize=(6.5, 5.5))
        draw_w_heatmap(ax, learned, None, fig, "learned W (times psi* plateau)")
        fig.tight_layout()
        return fig
    fig, axes = plt.subplots(1, 3, figsize=(19, 5.5))
    draw_w_heatmap(axes[0], truth.connectivity, types, fig, "true W, sorted by type")
    draw_w_heatmap(axes[1], learned, types, fig, "learned W (corrected), sorted by type")
    off = ~np.eye(learned.shape[0], dtype=bool)
    t, y = truth.connectivity[off], learned[off]
    if t.size > _MAX_SCATTER:
        pick = np.random.default_rng(0).choice(t.size, _MAX_SCATTER, replace=False)
        t, y = t[pick], y[pick]
    ax = axes[2]
    ax.scatter(t, y, s=1, alpha=0.3, color="k", rasterized=True)
    lim = np.abs(t).max()
    ax.plot([-lim, lim], [-lim, lim], "r--", lw=1, label="identity")
    ax.set(
        xlabel="true W",
        ylabel="learned W (corrected)",
        title=f"R^2 = {metrics['W_r2']:.3f}, slope = {metrics['W_slope']:.3f}  (raw R^2 {metrics['W_r2_raw']:.3f})",
    )
    ax.legend(loc="upper left")
    fig.tight_layout()
    return fig


def embeddings(run: TrainedRun, ds: Dataset, max_k: int):
    """Embeddings coloured by true type (when known) and by the clusters found without labels."""
    plt = pyplot()
    a = run.model.a.detach().cpu().numpy()
    found = kmeans_silhouette(a, max_k, seed=0)
    panels = [("found clusters (K-means, K by silhouette + split test, no labels)", found.labels)]
    if ds.truth is not None:
        panels.insert(0, ("true types", ds.truth.types))
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 5), squeeze=False)
    for ax, (title, labels) in zip(axes[0], panels, strict=True):
        cmap = plt.get_cmap("tab20" if labels.max() >= 10 else "tab10")
        ax.scatter(a[:, 0], a[:, 1] if a.shape[1] > 1 else np.zeros(len(a)), c=labels % cmap.N, cmap=cmap, s=8, vmin=0, vmax=cmap.N - 1)
        ax.set(title=f"embeddings a_i: {title}", xlabel="a_0", ylabel="a_1")
    fig.tight_layout()
    return fig


def functions(run: TrainedRun, ds: Dataset):
    """Learned phi* of all neurons with the true functions, and psi* normalised by its plateau."""
    plt = pyplot()
    grid = np.linspace(-run.xnorm, run.xnorm, 200)
    phi = phi_curves(run.model, grid)
    psi = psi_curves(run.model, grid)
    plateau = psi_plateau(run.model, run.xnorm)
    truth = ds.truth
    types = truth.types if truth is not None else np.zeros(run.model.n, dtype=int)
    cmap = plt.get_cmap("tab20" if types.max() >= 10 else "tab10")
    shown = np.random.default_rng(0).choice(run.model.n, size=min(run.model.n, _MAX_CURVES), replace=False)
    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    for n in shown:
        axes[0].plot(grid, phi[:, n], color=cmap(types[n] % cmap.N), lw=0.5, alpha=0.4)
        axes[1].plot(grid, psi[:, n] / (plateau[n] if plateau[n] != 0 else 1), color=cmap(types[n] % cmap.N), lw=0.5, alpha=0.4)
    if truth is not None:
        table, signal = truth.functions["types"], truth.functions["signal"]
        for _k, params in enumerate(table):
            axes[0].plot(grid, true_phi(grid, params), "k--", lw=1)
            if signal != "pair":
                psi_true = true_psi(grid, signal, params, params)
                axes[1].plot(
                    grid, psi_true / np.median(true_psi(np.linspace(0.8 * run.xnorm, run.xnorm, 50), signal, params, params)), "k--", lw=1
                )
    axes[0].set(title="learned phi*(x, a_i) of each neuron (dashed: true)", xlabel="x", ylabel="phi*")
    axes[1].set(title="learned psi* / plateau (dashed: true, same normalisation)", xlabel="x_j", ylabel="psi* (normalised)")
    fig.tight_layout()
    return fig


def rollout(pred: np.ndarray, true: np.ndarray, metrics: dict[str, Any], dt: float):
    """Forecast traces against the truth and R^2 against the horizon."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    steps = np.arange(len(true))
    cmap = plt.get_cmap("tab10")
    for c, i in enumerate(np.linspace(0, true.shape[1] - 1, 5).astype(int)):
        axes[0].plot(steps, true[:, i], color=cmap(c), lw=1.5)
        axes[0].plot(steps, pred[:, i], color=cmap(c), lw=1, ls="--")
    axes[0].set(title="forecast (dashed) against truth (solid), 5 neurons", xlabel=f"step (dt = {dt:g})", ylabel="x")
    curve = metrics["rollout_curve"]
    axes[1].plot(curve["steps"], curve["r2"], "k-", label="R^2")
    axes[1].plot(curve["steps"], curve["slope"], "b--", label="slope")
    axes[1].set(title="forecast quality against horizon", xlabel="step", ylim=(-0.1, 1.2))
    axes[1].legend()
    fig.tight_layout()
    return fig


def training(log: list[dict[str, Any]]):
    """Loss terms and W R^2 against iterations."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    it = [line["iteration"] for line in log]
    for key in sorted({k for line in log for k in line if k.startswith("loss_")}):
        axes[0].plot(it, [line.get(key, np.nan) for line in log], label=key.removeprefix("loss_"))
    axes[0].set(yscale="log", title="loss terms", xlabel="iteration")
    axes[0].legend()
    if any("W_r2" in line for line in log):
        axes[1].plot(it, [line.get("W_r2", np.nan) for line in log], "k-", label="W R^2")
        axes[1].plot(it, [line.get("W_slope", np.nan) for line in log], "b--", label="W slope (corrected)")
        if any("type_accuracy" in line for line in log):
            axes[1].plot(it, [line.get("type_accuracy", np.nan) for line in log], "g:", label="type accuracy")
        axes[1].set(ylim=(0, 1.1), title="recovery during training", xlabel="iteration")
        axes[1].legend()
    else:
        axes[1].set_axis_off()
    fig.tight_layout()
    return fig


def _confidence_map(fig, ax, arrays: dict[str, np.ndarray], summary: dict[str, Any]) -> None:
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.nan_to_num(np.abs(arrays["mean"]) / arrays["sd"])
    im = ax.imshow(np.minimum(z, 10), cmap="magma", interpolation="nearest")
    fig.colorbar(im, ax=ax, label="|W| / sd (capped at 10)")
    ax.set(title=f"confidence map: {summary['n_confident']:,} connections with lfdr < 0.05", xlabel="sender j", ylabel="receiver i")


def confidence(arrays: dict[str, np.ndarray], summary: dict[str, Any]):
    """How far to trust each connection: |W| / sd, the label-free diagnostics, and (simulated data) calibration."""
    plt = pyplot()
    curve = summary.get("coverage_curve")
    fig, axes = plt.subplots(1, 3 if curve else 2, figsize=(19 if curve else 13, 5))
    _confidence_map(fig, axes[0], arrays, summary)
    axes[1].hist(
        arrays["self_explained"][np.isfinite(arrays["self_explained"])], bins=40, range=(0, 1), alpha=0.6, label="self-explained coupling"
    )
    axes[1].hist(arrays["excitation"], bins=40, range=(0, 1), alpha=0.6, label="psi* range excited")
    axes[1].set(xlabel="fraction", ylabel="neurons", title=f"diagnostics (Gram condition {summary['gram_condition']:.3g})")
    axes[1].legend()
    if curve:
        axes[2].plot(curve["level"], curve["coverage"], "o-", label="one fit (least squares)")
        axes[2].plot([0, 1], [0, 1], "k--", lw=1, label="calibrated")
        axes[2].set(
            xlabel="nominal level", ylabel="true weights covered", title="calibration (against the truth)", xlim=(0.4, 1), ylim=(0, 1)
        )
        axes[2].legend()
    fig.tight_layout()
    return fig


def ensemble(arrays: dict[str, np.ndarray], summary: dict[str, Any]):
    """What an ensemble's members agree on: |W| / sd, the share of members that give each weight the mean's sign, the
    type co-assignment (neurons ordered by average-linkage clustering of 1 - co-assignment) and, on simulated data,
    the calibration of its intervals."""
    from scipy.cluster.hierarchy import leaves_list, linkage
    from scipy.spatial.distance import squareform

    plt = pyplot()
    curve = summary.get("coverage_curve")
    fig, axes = plt.subplots(1, 4 if curve else 3, figsize=(25 if curve else 19, 5))
    _confidence_map(fig, axes[0], arrays, summary)
    off = ~np.eye(len(arrays["mean"]), dtype=bool)
    k = len(summary["members"])
    agreeing, counts = np.unique(np.rint(arrays["sign_agreement"][off] * k).astype(int), return_counts=True)
    axes[1].bar(agreeing, counts, width=0.6)
    axes[1].set_xticks(agreeing, [f"{m}/{k}" for m in agreeing])
    axes[1].set(xlabel="members with the mean's sign", ylabel="connections", title="sign agreement")
    co = arrays["coassignment"]
    distance = np.clip(1 - co, 0, None)
    np.fill_diagonal(distance, 0)
    order = leaves_list(linkage(squareform(distance, checks=False), "average")) if len(co) > 2 else np.arange(len(co))
    im = axes[2].imshow(co[np.ix_(order, order)], cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
    fig.colorbar(im, ax=axes[2], label="share of members with both in one type")
    axes[2].set(title=f"type co-assignment (mean ARI {summary['type_stability_ari']:.3f})", xlabel="neuron (clustered)", ylabel="neuron")
    if curve:
        axes[3].plot(curve["level"], curve["coverage"], "o-", label=summary["method"])
        axes[3].plot([0, 1], [0, 1], "k--", lw=1, label="calibrated")
        axes[3].set(
            xlabel="nominal level", ylabel="true weights covered", title="calibration (against the truth)", xlim=(0.4, 1), ylim=(0, 1)
        )
        axes[3].legend(fontsize=8)
    fig.tight_layout()
    return fig
