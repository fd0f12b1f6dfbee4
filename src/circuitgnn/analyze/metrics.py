"""Scores of a learned model against ground truth (spec section 5)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from circuitgnn.model.gnn import CircuitGNN


@dataclass(frozen=True)
class LinearFit:
    """Least-squares line learned = slope * true + intercept, with R^2 of the residuals to that line."""

    r2: float
    slope: float
    intercept: float


def linear_fit(true: np.ndarray, learned: np.ndarray) -> LinearFit:
    """Fit learned = slope * true + intercept over all entries; R^2 = 1 - SS_res / SS_tot (squared Pearson r)."""
    t = np.asarray(true, dtype=np.float64).ravel()
    y = np.asarray(learned, dtype=np.float64).ravel()
    tc, yc = t - t.mean(), y - y.mean()
    var_t = float(tc @ tc)
    if var_t == 0:
        raise ValueError("the true values are constant: no line can be fitted")
    slope = float(tc @ yc) / var_t
    intercept = float(y.mean() - slope * t.mean())
    ss_tot = float(yc @ yc)
    ss_res = float(((yc - slope * tc) ** 2).sum())
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else 0.0
    return LinearFit(r2=r2, slope=slope, intercept=intercept)


@torch.no_grad()
def psi_plateau(model: CircuitGNN, xnorm: float, n_points: int = 1000) -> np.ndarray:
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

    def as_dict(self) -> dict[str, float]:
        return {
            "W_r2_raw": self.raw.r2,
            "W_slope_raw": self.raw.slope,
            "W_r2": self.corrected.r2,
            "W_slope": self.corrected.slope,
        }


@torch.no_grad()
def connectivity_score(
    model: CircuitGNN, true_w: np.ndarray, gain: np.ndarray, xnorm: float, n_points: int = 1000
) -> ConnectivityScore:
    """Compare the learned W with the true one.

    The model can only learn ``gain_i * W_ij * scale_j`` where ``scale_j`` is
    psi*'s amplitude; the corrected weights are ``W*_ij * plateau_j / gain_i``
    with ``plateau_j`` from :func:`psi_plateau` and the true per-neuron gain
    ("given g = 10", as the paper). The diagonal is excluded: it is zero by construction.
    """
    learned = model.connectivity().detach().cpu().numpy().astype(np.float64)
    plateau = psi_plateau(model, xnorm, n_points)
    corrected = learned * plateau[None, :] / np.asarray(gain, dtype=np.float64)[:, None]
    off = ~np.eye(learned.shape[0], dtype=bool)
    return ConnectivityScore(raw=linear_fit(true_w[off], learned[off]), corrected=linear_fit(true_w[off], corrected[off]))


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

    from circuitgnn.analyze.clustering import hierarchical, kmeans_silhouette

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
