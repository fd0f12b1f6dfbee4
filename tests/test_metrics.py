"""Each metric on hand-made cases with known answers."""

import numpy as np
import pytest
import torch

from circuitgnn.analyze.functions import function_errors
from circuitgnn.analyze.metrics import connectivity_score, linear_fit, matched_accuracy, type_scores
from circuitgnn.analyze.rollout import score_rollout
from circuitgnn.config import ModelConfig
from circuitgnn.model.gnn import GNN
from circuitgnn.train.clustering import hierarchical, kmeans_silhouette, split_bimodal


def test_perfect_scaled_and_shuffled_connectivity():
    rs = np.random.default_rng(0)
    w = rs.standard_cauchy((100, 100)) * 0.01
    fit = linear_fit(w, w)
    assert fit.r2 == pytest.approx(1.0) and fit.slope == pytest.approx(1.0) and fit.intercept == pytest.approx(0.0, abs=1e-12)
    fit = linear_fit(w, 3 * w + 1)
    assert fit.r2 == pytest.approx(1.0) and fit.slope == pytest.approx(3.0) and fit.intercept == pytest.approx(1.0)
    shuffled = rs.permutation(w.ravel())
    assert abs(linear_fit(w, shuffled).r2) < 0.01
    with pytest.raises(ValueError, match="constant"):
        linear_fit(np.ones(5), np.arange(5))


class TanhPsi(torch.nn.Module):
    def __init__(self, scale):
        super().__init__()
        self.scale = scale

    def forward(self, z):
        return self.scale * torch.tanh(z[..., :1])


def _random_w(n: int, seed: int) -> np.ndarray:
    w = np.random.default_rng(seed).normal(size=(n, n)) * 0.05
    np.fill_diagonal(w, 0)
    return w


def _tanh_model(w: np.ndarray, scale: float) -> GNN:
    """A GNN whose W is ``w`` and whose psi* is ``scale`` tanh."""
    model = GNN(ModelConfig(hidden=4), len(w))
    model.psi = TanhPsi(scale)
    with torch.no_grad():
        model.W.copy_(torch.as_tensor(w, dtype=torch.float32))
    return model


def test_connectivity_score_corrects_psi_scale_and_gain():
    n = 50
    w_true = _random_w(n, seed=1)
    model = _tanh_model(10 * w_true / 2.5, 2.5)  # psi* = 2.5 tanh: the model's W must be g W / 2.5
    gain = np.full(n, 10.0)
    score = connectivity_score(model, w_true, gain, xnorm=11.0)
    assert score.raw.r2 == pytest.approx(1.0, abs=1e-6) and score.raw.slope == pytest.approx(4.0, rel=1e-4)
    assert score.corrected.r2 == pytest.approx(1.0, abs=1e-6) and score.corrected.slope == pytest.approx(1.0, rel=1e-3)


def test_permuted_types_score_one_after_matching():
    true = np.repeat(np.arange(4), 25)
    found = np.array([2, 0, 3, 1])[true]
    assert matched_accuracy(true, found) == 1.0
    found[:5] = 0  # 5 neurons of type 0 put in type 1's cluster... already cluster 2 -> 0
    assert matched_accuracy(true, found) == pytest.approx(0.95)
    assert matched_accuracy(true, np.zeros(100, dtype=int)) == 0.25  # one cluster: a single type matched


def test_clustering_finds_separated_groups_without_labels():
    rs = np.random.default_rng(0)
    centres = np.array([[0, 0], [1, 0], [0, 1], [1, 1]]) * 3
    true = np.repeat(np.arange(4), 50)
    emb = centres[true] + rs.normal(scale=0.1, size=(200, 2))
    km = kmeans_silhouette(emb, 10, seed=0)
    assert km.k == 4 and matched_accuracy(true, km.labels) == 1.0
    hc = hierarchical(emb)
    assert hc.k == 4 and matched_accuracy(true, hc.labels) == 1.0
    scores = type_scores(emb, true)
    assert scores["types_kmeans_accuracy"] == 1.0 and scores["types_kmeans_ari"] == pytest.approx(1.0)
    assert kmeans_silhouette(np.ones((20, 2)), 10, seed=0).k == 1


def test_function_errors_zero_for_true_functions():
    n = 8
    types = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    table = [
        {"gain": 10, "self_coupling": s, "decay": c, "bias": 0, "width": 1, "threshold": 0, "leak": 0}
        for s, c in ((1, 1), (2, 1), (1, 2), (2, 2))
    ]
    model = GNN(ModelConfig(hidden=4), n)

    class TruePhi(torch.nn.Module):
        def forward(self, z):  # embedding a_0 holds the type index
            x, k = z[..., :1], z[..., 1:2].round().long()
            s = torch.tensor([1.0, 2, 1, 2])[k]
            c = torch.tensor([1.0, 1, 2, 2])[k]
            return -c * x + s * torch.tanh(x)

    model.phi = TruePhi()
    model.psi = TanhPsi(0.3)  # any scale: psi is compared after alignment
    with torch.no_grad():
        model.a.copy_(torch.tensor(np.stack([types, np.zeros(n)], 1), dtype=torch.float32))
    err = function_errors(model, types, {"signal": "tanh", "types": table}, xnorm=10.0)
    assert err["phi_error_max"] < 1e-5 and err["psi_error_max"] < 1e-5
    model.psi = TanhPsi(-1.0)  # a sign flip is part of the W-psi* symmetry: aligned by s = -1
    assert function_errors(model, types, {"signal": "tanh", "types": table}, xnorm=10.0)["psi_error_max"] < 1e-5


def test_rollout_score():
    rs = np.random.default_rng(0)
    true = rs.normal(size=(101, 50))
    score = score_rollout(true.copy(), true)
    assert np.allclose(score.r2, 1.0) and np.allclose(score.slope, 1.0)
    assert list(score.horizons[:3]) == [10, 20, 30]
    noisy = score_rollout(true + rs.normal(size=true.shape), true)
    assert 0.3 < noisy.at(50)[0] < 0.7  # R^2 = 1 / (1 + 1) for equal signal and noise variance


def test_close_tight_clusters_are_split_and_a_blob_is_not():
    # the geometry of learned embeddings where silhouette alone chose K = 3 (two clusters 10 stds apart)
    rs = np.random.default_rng(0)
    centres = np.array([[0.637, 1.505], [1.257, 1.856], [0.842, 0.104], [1.045, 0.237]])
    true = np.repeat(np.arange(4), 50)
    emb = centres[true] + rs.normal(scale=0.02, size=(200, 2))
    found = kmeans_silhouette(emb, 10, seed=0)
    assert found.k == 4 and matched_accuracy(true, found.labels) == 1.0
    labels, splits = split_bimodal(rs.normal(size=(500, 2)), np.zeros(500, dtype=np.int64), 10, seed=0)
    assert splits == 0 and labels.max() == 0


def test_blockwise_off_diagonal_fit_matches_the_masked_fit():
    """Regression: scoring W of N = 8000 made float64 copies of all 64 M entries; the blockwise
    fit must give the same line as the plain fit on the masked entries."""
    rs = np.random.default_rng(3)
    true = (rs.standard_cauchy((300, 300)) * 0.01).astype(np.float32)
    learned = (2.0 * true + rs.normal(scale=0.02, size=true.shape) + 0.1).astype(np.float32)
    np.fill_diagonal(learned, 50.0)  # must be ignored
    off = ~np.eye(300, dtype=bool)
    t, y = true[off].astype(np.float64), learned[off].astype(np.float64)
    r = np.corrcoef(t, y)[0, 1]
    slope, intercept = np.polyfit(t, y, 1)
    for block in (1 << 22, 1000, 7):
        fit = linear_fit(true, learned, off_diagonal=True, block_entries=block)
        assert fit.r2 == pytest.approx(r**2, rel=1e-9)
        assert fit.slope == pytest.approx(slope, rel=1e-9) and fit.intercept == pytest.approx(intercept, rel=1e-9)
    with pytest.raises(ValueError, match="square"):
        linear_fit(true[:, :10], learned[:, :10], off_diagonal=True)


def test_clustering_both_views_never_merges_what_one_view_separates():
    """phi* that ignores the embedding sees one group; the embeddings hold four. ``both`` keeps the
    four (regression: phi*-profile clustering alone merged the types of the 5 % sparse network)."""
    from circuitgnn.train.clustering import cluster_neurons

    n = 200
    model = GNN(ModelConfig(hidden=8), n)
    true = np.repeat(np.arange(4), n // 4)
    centres = np.array([[0.0, 0.0], [3.0, 0.0], [0.0, 3.0], [3.0, 3.0]])
    rs = np.random.default_rng(0)
    with torch.no_grad():
        model.a.copy_(torch.as_tensor(centres[true] + rs.normal(scale=0.05, size=(n, 2)), dtype=torch.float32))
        first = model.phi.net[0]
        first.weight[:, 1:] = 1e-9  # phi* all but ignores a: the profiles differ by float noise only
    by_phi = cluster_neurons(model, "phi", 10, 5.0, seed=0)
    both = cluster_neurons(model, "both", 10, 5.0, seed=0)
    assert by_phi.k == 1
    assert both.k == 4 and matched_accuracy(true, both.labels) == 1.0


def test_meet_separates_what_either_labelling_separates():
    from circuitgnn.train.clustering import meet

    first = np.array([0, 0, 0, 1, 1, 1])
    second = np.array([5, 5, 7, 7, 9, 9])
    labels = meet(first, second)
    assert labels.dtype == np.int64 and len(np.unique(labels)) == 4
    assert labels[0] == labels[1] and len({labels[1], labels[2], labels[3], labels[4]}) == 4 and labels[4] == labels[5]


def test_a_transposed_true_w_is_named():
    """Regression (issue 15): a true W written in the other convention (W[j, i] from i to j) was scored silently."""
    n = 40
    w_true = _random_w(n, seed=2)
    model = _tanh_model(w_true, 1.0)
    gain = np.ones(n)
    assert connectivity_score(model, w_true, gain, xnorm=11.0, orientation=True).orientation_warning() is None
    flipped = connectivity_score(model, np.ascontiguousarray(w_true.T), gain, xnorm=11.0, orientation=True)
    assert flipped.transposed.r2 == pytest.approx(1.0, abs=1e-6)
    assert "transpose truth/connectivity.npy" in flipped.orientation_warning()
