"""The transfer that depends on both neurons (psi_ij, "transmitters and receptors"): the spline fit with one psi per
pair of groups, the receivers' preferred groups, the warm start of a pair form GNN, and the score that compares what
the data determine (W_ij psi_ij, pair by pair)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score
from torch import nn

from circuitgnn import simulate
from circuitgnn.analyze.metrics import connectivity_score, linear_fit, pair_scaled_score, true_pair_plateaus
from circuitgnn.config import ModelConfig
from circuitgnn.data.dataset import Dataset
from circuitgnn.errors import CircuitGNNError
from circuitgnn.model.gnn import GNN
from circuitgnn.train.trainer import Trainer
from circuitgnn.train.varpro import SplineBasis, _gauss_newton, _prepare, _solve, fit_functions, receiver_losses
from tests.conftest import typed_transfer_config


def _pair_config(**training):
    return typed_transfer_config("pair", 60, 3000, 0.1, 3, **training)


@pytest.fixture(scope="module")
def pair_network(tmp_path_factory):
    """60 neurons of 4 types whose transfer tanh(x_j / w_i) - theta_j x_j depends on the receiver's width."""
    out = tmp_path_factory.mktemp("pair") / "net"
    simulate(_pair_config(), out, progress=False, figure=False)
    return Dataset(out)


def _arrays(ds: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(np.array(ds.x)), torch.from_numpy(np.array(ds.dxdt))


@pytest.mark.parametrize("grouped", [False, True])
def test_projected_gradient_matches_finite_differences_with_one_psi_per_sender_group(grouped):
    """J^T r is half the gradient of the exact solve's squared residual, also with one psi per group of senders."""
    rng = np.random.default_rng(7)
    x = torch.from_numpy(rng.normal(scale=2, size=(300, 8)))
    y = torch.tanh(x) @ torch.from_numpy(rng.normal(scale=0.5, size=(8, 8))).T - x
    psi_basis, phi_basis = SplineBasis(x, 6), SplineBasis(x, 5)
    blocks = _prepare(x, y, psi_basis, phi_basis)
    senders = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1]) if grouped else None
    theta = torch.from_numpy(rng.normal(size=(3, 6) if grouped else 6))
    receivers = torch.arange(2, 7)

    def loss(t: torch.Tensor) -> float:
        return _solve(blocks, receivers, t, psi_basis, phi_basis, 0.0, torch.float64, senders=senders).loss

    solved = _solve(blocks, receivers, theta, psi_basis, phi_basis, 0.0, torch.float64, senders=senders)
    assert float(solved.losses.mean()) == pytest.approx(solved.loss)
    jtj, jtr = _gauss_newton(blocks, receivers, theta, psi_basis, phi_basis, solved, torch.float64, senders)
    steps = torch.eye(theta.numel(), dtype=torch.float64).reshape(-1, *theta.shape)
    numeric = torch.tensor([(loss(theta + 1e-5 * e) - loss(theta - 1e-5 * e)) / 2e-5 for e in steps], dtype=torch.float64)
    torch.testing.assert_close(numeric, 2 * jtr / (300 * len(receivers)), rtol=1e-3, atol=1e-8)
    assert float(torch.linalg.eigvalsh(jtj).min()) > -1e-8 * float(jtj.abs().max())


def test_one_psi_per_pair_of_groups_recovers_what_a_shared_psi_cannot(pair_network):
    """Told the groups (here the true types, to test the fit alone), the grouped fit recovers every W_ij psi_ij and each
    psi_gh's shape, where the shared psi misfits; each receiver's own data then prefer its own group's psi."""
    x, y = _arrays(pair_network)
    types = torch.as_tensor(pair_network.truth.types)
    gains = pair_network.truth.gains[:, None]
    shared = fit_functions(x, y, n_psi=16, n_phi=10, receivers=30)
    fit = fit_functions(x, y, n_psi=16, n_phi=10, receivers=30, groups=types, start=shared.psi_coefficients)
    assert fit.psi_coefficients.shape == (4, 4, 16) and torch.equal(fit.groups, types)
    xnorm = float(x.std())
    learned = fit.pair_plateaus(xnorm).numpy()
    t = types.numpy()
    truth = pair_network.truth.connectivity * true_pair_plateaus(pair_network.truth.functions, xnorm)[np.ix_(t, t)]
    grouped_r2 = linear_fit(truth, fit.connectivity.numpy() * learned[np.ix_(t, t)] / gains, off_diagonal=True).r2
    shared_r2 = linear_fit(truth, shared.connectivity.numpy() / gains, off_diagonal=True).r2
    assert grouped_r2 > 0.97 and grouped_r2 > shared_r2 + 0.05
    assert fit.history[-1] < 0.5 * shared.history[-1]
    # the shape of psi between receivers of width 1 and 8 and senders of type 0 (no leak): tanh(x) and tanh(x / 8) up
    # to their scale, over the bulk of the activity
    low, high = torch.quantile(x.reshape(-1)[::7].double(), torch.tensor([0.05, 0.95], dtype=torch.float64)).tolist()
    grid = torch.linspace(low, high, 33, dtype=torch.float64)
    for group, width in ((0, 1.0), (3, 8.0)):
        learned_psi = fit.transfer(grid[:, None].expand(33, 60), group=group)[:, int(np.flatnonzero(t == 0)[0])]
        assert float(torch.corrcoef(torch.stack([learned_psi, torch.tanh(grid / width)]))[0, 1]) > 0.99
    torch.testing.assert_close(fit.predict(x[:4]), fit.phi(x[:4]) + _messages(fit, x[:4]))
    preferred = receiver_losses(x, y, fit).argmin(1)
    assert float((preferred == types).double().mean()) > 0.9
    with pytest.raises(CircuitGNNError, match="no shared psi"):
        fit.psi(x)
    with pytest.raises(CircuitGNNError, match="grouped fit"):
        receiver_losses(x, y, shared)


def _messages(fit, x: torch.Tensor) -> torch.Tensor:
    """sum_j W_ij psi_{g(i) g(j)}(x_j), receiver by receiver."""
    return torch.stack([fit.transfer(x, int(fit.groups[i])) @ fit.connectivity[i] for i in range(x.shape[1])], dim=1)


def test_groups_must_label_every_neuron_with_consecutive_labels():
    x = torch.randn(50, 4)
    with pytest.raises(CircuitGNNError, match="labels 0 .. K-1"):
        fit_functions(x, torch.tanh(x), n_psi=6, n_phi=5, groups=torch.tensor([0, 2, 2, 0]))
    with pytest.raises(CircuitGNNError, match="labels 0 .. K-1"):
        fit_functions(x, torch.tanh(x), n_psi=6, n_phi=5, groups=torch.tensor([0, 1, 1]))
    with pytest.raises(CircuitGNNError, match="start must hold"):
        fit_functions(x, torch.tanh(x), n_psi=6, n_phi=5, start=torch.zeros(5))


def test_the_warm_start_of_a_pair_form_finds_the_groups_without_labels(pair_network, tmp_path):
    """The warm start groups the neurons itself (update curves, then each receiver's preferred psi), fits one psi per
    pair of groups and distils it into psi*(x_j, a_i, a_j); the evaluation's pair-scaled score sees the recovery."""
    cfg = _pair_config(extensions={"warm_start": {"psi_basis": 16, "phi_basis": 10, "receivers": 30, "distill_steps": 1500}})
    trainer = Trainer(cfg, pair_network, tmp_path / "run", progress=False)
    run = trainer.fit(max_iterations=0)
    first = run.log[0]
    assert first["warm_start_groups"] >= 4 and first["warm_start_distill_error"] < 0.1
    model, truth = trainer.model, pair_network.truth
    score = pair_scaled_score(model, truth.connectivity, truth.gains, truth.types, truth.functions, trainer.xnorm)
    assert score["W_r2_pair_scaled"] > 0.95
    embeddings = model.a.detach().numpy()
    from sklearn.cluster import KMeans

    found = KMeans(4, n_init=4, random_state=0).fit_predict(embeddings)
    assert adjusted_rand_score(truth.types, found) > 0.9


class _BlockScaledTransfer(nn.Module):
    """The true pair transfer times a factor per pair of types, the types read off the embeddings' first coordinate."""

    def __init__(self, table, factors):
        super().__init__()
        self.width = torch.tensor([t["width"] for t in table], dtype=torch.float32)
        self.leak = torch.tensor([t["leak"] for t in table], dtype=torch.float32)
        self.factors = torch.as_tensor(factors, dtype=torch.float32)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x, receiver, sender = z[..., 0], z[..., 1].round().long(), z[..., 3].round().long()
        value = torch.tanh(x / self.width[receiver]) - self.leak[sender] * x
        return (self.factors[receiver, sender] * value).unsqueeze(-1)


def test_the_pair_scaled_score_is_blind_to_the_factor_between_each_pair_of_types_weights_and_transfer(pair_network):
    """W_ij psi_ij is what the data fix: a model with each block of W divided by any factor and that block's transfer
    multiplied by it predicts the same drift, scores 1 pair by pair, and not by the per-sender correction of spec 5.1."""
    truth = pair_network.truth
    types = truth.types
    factors = np.array([[1.0, 0.5, 2.0, 1.3], [0.7, 1.0, 1.6, 0.4], [2.5, 0.3, 1.0, 1.1], [0.9, 1.8, 0.6, 1.0]])
    model = GNN(ModelConfig(psi_input="x_j,a_i,a_j", pair_rank=None, hidden=4), len(types))
    model.psi = _BlockScaledTransfer(truth.functions["types"], factors)
    with torch.no_grad():
        model.a.copy_(torch.stack([torch.as_tensor(types, dtype=torch.float32), torch.zeros(len(types))], 1))
        model.W.copy_(torch.as_tensor(truth.connectivity * truth.gains[:, None] / factors[np.ix_(types, types)], dtype=torch.float32))
    score = pair_scaled_score(model, truth.connectivity, truth.gains, types, truth.functions, xnorm=5.0)
    assert score["W_r2_pair_scaled"] > 0.9999 and score["W_slope_pair_scaled"] == pytest.approx(1.0, abs=1e-3)
    assert connectivity_score(model, truth.connectivity, truth.gains, 5.0).corrected.r2 < 0.9
