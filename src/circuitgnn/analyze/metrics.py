"""Scores of a learned model against ground truth (spec section 5)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from circuitgnn.model.gnn import GNN
from circuitgnn.simulate.neuron_models import true_psi


@dataclass(frozen=True)
class LinearFit:
    """Least-squares line learned = slope * true + intercept, with R^2 of the residuals to that line."""

    r2: float
    slope: float
    intercept: float


def _row_blocks(t: np.ndarray, y: np.ndarray, block_entries: int):
    """Matching blocks of rows of two 2-D arrays, as float64."""
    rows = max(1, block_entries // max(1, t.shape[1]))
    for start in range(0, t.shape[0], rows):
        yield np.asarray(t[start : start + rows], dtype=np.float64), np.asarray(y[start : start + rows], dtype=np.float64)


def linear_fit(true: np.ndarray, learned: np.ndarray, off_diagonal: bool = False, block_entries: int = 1 << 22) -> LinearFit:
    """Fit learned = slope * true + intercept over all entries; R^2 = 1 - SS_res / SS_tot (squared Pearson r).

    ``off_diagonal`` skips the diagonal of square matrices (self-connections). The sums are taken
    in float64 over blocks of rows, in two passes (means, then centred sums), so a 64-million-entry
    W is scored without float64 copies of it.
    """
    t_all, y_all = np.asarray(true), np.asarray(learned)
    if t_all.size != y_all.size:
        raise ValueError(f"true and learned have different sizes: {t_all.size} and {y_all.size}")
    if off_diagonal:
        if t_all.ndim != 2 or t_all.shape[0] != t_all.shape[1] or y_all.shape != t_all.shape:
            raise ValueError(f"off_diagonal needs two square matrices of one shape, got {t_all.shape} and {y_all.shape}")
        t2, y2 = t_all, y_all
        t_diag, y_diag = np.diagonal(t2).astype(np.float64), np.diagonal(y2).astype(np.float64)
    else:
        t2, y2 = t_all.reshape(-1, 1), y_all.reshape(-1, 1)
        t_diag = y_diag = np.zeros(0)
    count = t2.size - t_diag.size
    if count == 0:
        raise ValueError("no entries to fit a line to")
    sum_t = sum_y = 0.0
    for t, y in _row_blocks(t2, y2, block_entries):
        sum_t += float(t.sum())
        sum_y += float(y.sum())
    mean_t = (sum_t - t_diag.sum()) / count
    mean_y = (sum_y - y_diag.sum()) / count
    stt = syy = sty = 0.0
    for t, y in _row_blocks(t2, y2, block_entries):
        tc, yc = t - mean_t, y - mean_y
        stt += float(np.einsum("ij,ij->", tc, tc))
        syy += float(np.einsum("ij,ij->", yc, yc))
        sty += float(np.einsum("ij,ij->", tc, yc))
    tdc, ydc = t_diag - mean_t, y_diag - mean_y
    scale_t = stt
    stt -= float(tdc @ tdc)
    syy -= float(ydc @ ydc)
    sty -= float(tdc @ ydc)
    if stt <= 1e-12 * scale_t:
        raise ValueError("the true values are constant: no line can be fitted")
    slope = sty / stt
    r2 = min(1.0, 1.0 - max(0.0, syy - sty * slope) / syy) if syy > 0 else 0.0
    return LinearFit(r2=r2, slope=slope, intercept=mean_y - slope * mean_t)


@torch.no_grad()
def psi_plateau(model: GNN, xnorm: float, n_points: int = 1000) -> np.ndarray:
    """Per sender j, the median of psi* over activity in [0.8 xnorm, xnorm] (spec 5.1): psi*'s saturation scale.

    For the pair form the receiver embedding is taken equal to the sender's, as in the paper.
    """
    u = torch.linspace(0.8 * xnorm, xnorm, n_points, device=model.a.device)
    vals = model.psi_of_own_type(u[:, None].expand(n_points, model.n))
    return vals.median(dim=0).values.cpu().numpy().astype(np.float64)


@dataclass(frozen=True)
class ConnectivityScore:
    """W recovery: raw (learned vs true) and corrected for psi*'s scale and the known gain (spec 5.1)."""

    raw: LinearFit
    corrected: LinearFit
    transposed: LinearFit | None = None  # the corrected weights against the true W's transpose (``orientation``)

    def orientation_warning(self) -> str | None:
        """A message when the learned W matches the truth's transpose far better than the truth: the true W was most
        likely written as W[j, i] (from i to j), the other convention; None otherwise (or when not measured)."""
        if self.transposed is None:
            return None
        if self.transposed.r2 > 0.5 and self.transposed.r2 > self.corrected.r2 + 0.2:
            return (
                f"the learned W matches the transpose of the true W (R^2 {self.transposed.r2:.3f}) far better than the true W "
                f"itself ({self.corrected.r2:.3f}): the truth file most likely holds W[j, i] for the connection from i to j. "
                "circuitgnn reads W[i, j] as the weight from neuron j onto neuron i; transpose truth/connectivity.npy"
            )
        return None

    def as_dict(self) -> dict[str, float]:
        return {
            "W_r2_raw": self.raw.r2,
            "W_slope_raw": self.raw.slope,
            "W_r2": self.corrected.r2,
            "W_slope": self.corrected.slope,
        }


@torch.no_grad()
def connectivity_score(
    model: GNN, true_w: np.ndarray, gain: np.ndarray, xnorm: float, n_points: int = 1000, orientation: bool = False
) -> ConnectivityScore:
    """Compare the learned W with the true one.

    The model can only learn ``gain_i * W_ij * scale_j`` where ``scale_j`` is
    psi*'s amplitude; the corrected weights are ``W*_ij * plateau_j / gain_i``
    with ``plateau_j`` from :func:`psi_plateau` and the true per-neuron gain
    ("given g = 10", as the paper). The diagonal is excluded: it is zero by construction. ``orientation`` also fits
    the truth's transpose (one more pass over N^2 weights: the evaluation does it, the training log does not).
    """
    learned = model.connectivity().detach().cpu().numpy()
    plateau = psi_plateau(model, xnorm, n_points).astype(learned.dtype)
    corrected = learned * plateau[None, :] / np.asarray(gain, dtype=learned.dtype)[:, None]
    return ConnectivityScore(
        raw=linear_fit(true_w, learned, off_diagonal=True),
        corrected=linear_fit(true_w, corrected, off_diagonal=True),
        transposed=linear_fit(np.ascontiguousarray(true_w.T), corrected, off_diagonal=True) if orientation else None,
    )


@torch.no_grad()
def pair_plateau(model: GNN, xnorm: float, n_points: int = 100, chunk: int = 64) -> np.ndarray:
    """Per pair (receiver i, sender j), the median of psi*(x, a_i, a_j) over x in [0.8 xnorm, xnorm]: (N, N)."""
    u = torch.linspace(0.8 * xnorm, xnorm, n_points, device=model.a.device)[:, None].expand(n_points, model.n)
    out = np.empty((model.n, model.n))
    for start in range(0, model.n, chunk):
        stop = min(start + chunk, model.n)
        out[start:stop] = model.psi_of_pair(u, model.a[start:stop], model.a).median(dim=0).values.cpu().numpy()
    return out


def true_pair_plateaus(functions: dict[str, Any], xnorm: float, n_points: int = 100) -> np.ndarray:
    """The true transfer's median over [0.8 xnorm, xnorm] for every pair of types (receiver, sender): (K, K)."""
    grid = np.linspace(0.8 * xnorm, xnorm, n_points)
    table = functions["types"]
    return np.array([[np.median(true_psi(grid, functions["signal"], sender, receiver)) for sender in table] for receiver in table])


def pair_scaled_score(
    model: GNN, true_w: np.ndarray, gain: np.ndarray, types: np.ndarray, functions: dict[str, Any], xnorm: float, n_points: int = 100
) -> dict[str, float]:
    """W recovery for a transfer that depends on both neurons (the pair form), weight by weight at the scale of its
    own pair's transfer: W*_ij psi*_ij / gain_i against W_ij psi_ij, each psi at its median over [0.8 xnorm, xnorm].

    With psi*(x_j, a_i, a_j) the data fix W_ij psi_ij, not W and psi apart: every pair of (receiver type, sender
    type) has its own free factor between its weights and its function (the spec 5.1 correction fixes one per sender
    only). This score compares what the data determine; for a sender-only truth it is the spec 5.1 score with the
    truth also scaled by its (nearly constant) plateau."""
    true_plateau = true_pair_plateaus(functions, xnorm, n_points)
    learned = model.connectivity().detach().cpu().numpy().astype(np.float64)
    found = learned * pair_plateau(model, xnorm, n_points) / np.asarray(gain, dtype=np.float64)[:, None]
    fit = linear_fit(true_w * true_plateau[np.ix_(types, types)], found, off_diagonal=True)
    return {"W_r2_pair_scaled": fit.r2, "W_slope_pair_scaled": fit.slope}


def matched_accuracy(true_labels: np.ndarray, found_labels: np.ndarray) -> float:
    """Fraction of neurons whose found cluster maps to their true type, under the best one-to-one
    matching of clusters to types (Hungarian method); unmatched clusters count as errors."""
    true_ids, t = np.unique(true_labels, return_inverse=True)
    found_ids, f = np.unique(found_labels, return_inverse=True)
    counts = np.zeros((len(found_ids), len(true_ids)), dtype=np.int64)
    np.add.at(counts, (f, t), 1)
    rows, cols = linear_sum_assignment(-counts)
    return float(counts[rows, cols].sum() / len(true_labels))


def type_scores(embeddings: np.ndarray, true_types: np.ndarray, max_k: int = 10, seed: int = 0) -> dict[str, float]:
    """Neuron-type recovery from the embeddings, clustered without labels two ways (spec 5.2):
    K-means with K by silhouette, and single-linkage hierarchical clustering (threshold 0.1 on
    min-max normalised embeddings). The labels are used only here, to score: Hungarian-matched
    accuracy and adjusted Rand index."""
    from sklearn.metrics import adjusted_rand_score

    from circuitgnn.train.clustering import hierarchical, kmeans_silhouette

    km = kmeans_silhouette(embeddings, max_k, seed)
    hc = hierarchical(embeddings)
    return {
        "types_kmeans_k": km.k,
        "types_kmeans_accuracy": matched_accuracy(true_types, km.labels),
        "types_kmeans_ari": float(adjusted_rand_score(true_types, km.labels)),
        "types_hierarchical_k": hc.k,
        "types_hierarchical_accuracy": matched_accuracy(true_types, hc.labels),
        "types_hierarchical_ari": float(adjusted_rand_score(true_types, hc.labels)),
    }


def edge_auc(true_w: np.ndarray, score: np.ndarray) -> float:
    """Edge detection: the area under the ROC curve of ``|score|`` for telling the true connections (W != 0) from the
    absent ones, over off-diagonal pairs (the ChaLearn 2014 connectomics challenge's score); NaN when W has no
    absent or no present connection."""
    from sklearn.metrics import roc_auc_score

    off = ~np.eye(true_w.shape[0], dtype=bool)
    present = true_w[off] != 0
    if present.all() or not present.any():
        return float("nan")
    return float(roc_auc_score(present, np.abs(np.asarray(score, dtype=np.float64)[off])))


def partial_correlation(x: np.ndarray) -> np.ndarray:
    """Partial correlations between the columns of ``x`` (T, N), from the Ledoit-Wolf shrunk precision matrix:
    -P_ij / sqrt(P_ii P_jj) (the diagonal is 1). Frames with a missing value are left out."""
    from sklearn.covariance import LedoitWolf

    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x).all(axis=1)]
    precision = LedoitWolf().fit(x).precision_
    d = np.sqrt(np.diag(precision))
    out = -precision / d[:, None] / d[None, :]
    np.fill_diagonal(out, 1.0)
    return out
