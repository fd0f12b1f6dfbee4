"""Unsupervised grouping of neurons into types: never reads true labels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.metrics import silhouette_score

from circuitgnn.model.gnn import GNN

_SILHOUETTE_SAMPLE = 2000  # neurons used to score each K (silhouette is quadratic in the sample)


@dataclass(frozen=True)
class Clustering:
    labels: np.ndarray  # (N,) cluster of each neuron, 0 .. k-1
    k: int
    silhouettes: dict[int, float]  # silhouette score of each K tried
    splits: int = 0  # clusters split after the silhouette choice (see split_bimodal)


SPLIT_SEPARATION = 4.0  # centroid distance / within std along the split axis; a Gaussian blob gives about 2.7
MIN_GROUP = 10  # neurons in each part of a split (a few outliers are not a type)


def split_bimodal(z: np.ndarray, labels: np.ndarray, max_k: int, seed: int) -> tuple[np.ndarray, int]:
    """Split clusters that are two groups: 2-means inside the cluster, projection on the axis joining the
    two centroids, split when they are more than SPLIT_SEPARATION within-group stds apart. Repeats
    until no cluster splits or ``max_k`` clusters exist. Returns the labels and the number of splits."""
    labels = labels.copy()
    splits = 0
    changed = True
    while changed and labels.max() + 1 < max_k:
        changed = False
        for c in range(labels.max() + 1):
            members = np.flatnonzero(labels == c)
            if members.size < 2 * MIN_GROUP or np.ptp(z[members], axis=0).max() == 0:
                continue
            sub = KMeans(n_clusters=2, n_init=4, random_state=seed).fit(z[members])
            axis = sub.cluster_centers_[1] - sub.cluster_centers_[0]
            norm = np.linalg.norm(axis)
            if norm == 0 or min(np.bincount(sub.labels_, minlength=2)) < MIN_GROUP:
                continue
            proj = z[members] @ (axis / norm)
            spread = np.sqrt(np.mean([proj[sub.labels_ == h].var() for h in (0, 1)]))
            if norm > SPLIT_SEPARATION * max(spread, 1e-12):
                labels[members[sub.labels_ == 1]] = labels.max() + 1
                splits += 1
                changed = True
                break
    return labels, splits


def kmeans_silhouette(features: np.ndarray, max_k: int, seed: int) -> Clustering:
    """K-means for K = 2 .. max_k on standardised features, K chosen by silhouette, without labels.

    Silhouette alone merges two tight clusters lying close to each other when the others are far
    (seen on learned embeddings: K = 3 scored 0.933 against 0.929 for the true K = 4, with the two
    merged clusters 10 stds apart), so clusters that are clearly two groups are then split
    (:func:`split_bimodal`). When every silhouette is poor (< 0.25), the data are one cluster.
    """
    z = np.asarray(features, dtype=np.float64)
    z = (z - z.mean(0)) / (z.std(0).max() + 1e-12)
    n = len(z)
    n_distinct = len(np.unique(z.round(6), axis=0))  # about: near-duplicates left after embedding sharing
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
    labels, splits = split_bimodal(z, fits[best].astype(np.int64), max_k, seed)
    return Clustering(labels, int(labels.max()) + 1, scores, splits)


@torch.no_grad()
def phi_profiles(model: GNN, half_range: float, n_points: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """phi*(r, a_i) on r in [-half_range, half_range] for every neuron: (grid (P,), profiles (N, P))."""
    r = torch.linspace(-half_range, half_range, n_points, device=model.a.device)
    prof = model.phi_of(r[:, None].expand(n_points, model.n), model.a).T
    return r.cpu().numpy(), prof.cpu().numpy()


def meet(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """The common refinement of two labellings: two items share a label only when both labellings agree."""
    _, labels = np.unique(np.stack([first, second], axis=1), axis=0, return_inverse=True)
    return labels.reshape(-1).astype(np.int64)


def cluster_neurons(model: GNN, features: str, max_k: int, half_range: float, seed: int) -> Clustering:
    """Cluster neurons by their learned phi* profiles (reduced by PCA), by their embeddings, or by both.

    ``both`` keeps two neurons together only when both clusterings do (:func:`meet`; its K can
    exceed ``max_k``, and the silhouettes reported are the phi* clustering's). Sharing embeddings
    within a group cannot be undone, and each view can merge types that the other separates: on the
    5 % sparse network, phi* profiles sampled on [-5, 5] merged three of the four types into one
    group, every time, while K-means on the embeddings had them apart (accuracy 0.985 just before
    the merge, 0.50 after).
    """
    if features == "both":
        by_phi = cluster_neurons(model, "phi", max_k, half_range, seed)
        by_emb = cluster_neurons(model, "embedding", max_k, half_range, seed)
        labels = meet(by_phi.labels, by_emb.labels)
        return Clustering(labels, int(labels.max()) + 1, by_phi.silhouettes, by_phi.splits + by_emb.splits)
    if features == "embedding":
        feats = model.a.detach().cpu().numpy()
    else:
        _, prof = phi_profiles(model, half_range)
        if np.ptp(prof, axis=0).max() <= 1e-5 * max(float(np.abs(prof).max()), 1e-12):
            return Clustering(np.zeros(len(prof), dtype=np.int64), 1, {})  # one profile: PCA would scale up float noise
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
