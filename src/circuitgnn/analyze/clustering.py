"""Unsupervised grouping of neurons into types: never reads true labels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.metrics import silhouette_score

from circuitgnn.model.gnn import CircuitGNN

_SILHOUETTE_SAMPLE = 2000  # neurons used to score each K (silhouette is quadratic in the sample)


@dataclass(frozen=True)
class Clustering:
    labels: np.ndarray  # (N,) cluster of each neuron, 0 .. k-1
    k: int
    silhouettes: dict[int, float]  # silhouette score of each K tried


def kmeans_silhouette(features: np.ndarray, max_k: int, seed: int) -> Clustering:
    """K-means for K = 2 .. max_k on standardised features; keeps the K with the best silhouette.

    When every K's silhouette is poor (< 0.25), the data are taken as one cluster.
    """
    z = np.asarray(features, dtype=np.float64)
    z = (z - z.mean(0)) / (z.std(0).max() + 1e-12)
    n = len(z)
    n_distinct = len(np.unique(z.round(9), axis=0))
    rng = np.random.default_rng(seed)
    sample = rng.choice(n, size=min(n, _SILHOUETTE_SAMPLE), replace=False)
    scores: dict[int, float] = {}
    fits: dict[int, np.ndarray] = {}
    for k in range(2, min(max_k, n - 1, n_distinct) + 1):
        labels = KMeans(n_clusters=k, n_init=4, random_state=seed).fit_predict(z)
        if len(np.unique(labels[sample])) < 2:
            continue
        scores[k] = float(silhouette_score(z[sample], labels[sample]))
        fits[k] = labels
    if not scores or max(scores.values()) < 0.25:
        return Clustering(np.zeros(n, dtype=np.int64), 1, scores)
    best = max(scores, key=lambda k: scores[k])
    return Clustering(fits[best].astype(np.int64), best, scores)


@torch.no_grad()
def phi_profiles(model: CircuitGNN, half_range: float, n_points: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """phi*(r, a_i) on r in [-half_range, half_range] for every neuron: (grid (P,), profiles (N, P))."""
    r = torch.linspace(-half_range, half_range, n_points, device=model.a.device)
    prof = model.phi_of(r[:, None].expand(n_points, model.n), model.a).T
    return r.cpu().numpy(), prof.cpu().numpy()


def cluster_neurons(model: CircuitGNN, features: str, max_k: int, half_range: float, seed: int) -> Clustering:
    """Cluster neurons by their learned phi* profiles (reduced by PCA) or by their embeddings."""
    if features == "embedding":
        feats = model.a.detach().cpu().numpy()
    else:
        _, prof = phi_profiles(model, half_range)
        n_comp = min(5, prof.shape[0], prof.shape[1])
        feats = PCA(n_components=n_comp, random_state=seed).fit_transform(prof)
    return kmeans_silhouette(feats, max_k, seed)


def hierarchical(features: np.ndarray, threshold: float = 0.1) -> Clustering:
    """Single-linkage clustering of min-max normalised features, cut at ``threshold`` (the paper's code)."""
    from scipy.cluster.hierarchy import fcluster, linkage

    z = np.asarray(features, dtype=np.float64)
    span = z.max() - z.min()
    z = (z - z.min()) / (span if span > 0 else 1.0)
    if len(z) < 2:
        return Clustering(np.zeros(len(z), dtype=np.int64), 1, {})
    labels = fcluster(linkage(z, method="single"), t=threshold, criterion="distance") - 1
    return Clustering(labels.astype(np.int64), int(labels.max()) + 1, {})
