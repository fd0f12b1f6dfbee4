"""The GNN's dense message passing against a naive per-edge loop, and its constraints."""

import numpy as np
import pytest
import torch

from circuitgnn.config import ModelConfig
from circuitgnn.model.gnn import GNN


def per_edge_prediction(model: GNN, x: torch.Tensor, omega=None, extra=None) -> torch.Tensor:
    """One edge at a time, as a graph library would do it: message W_ij psi*(inputs_ij) for every j != i."""
    b, n = x.shape
    w = model.connectivity()
    a = model.a
    out = torch.zeros(b, n)
    for s in range(b):
        for i in range(n):
            m = torch.zeros(())
            for j in range(n):
                if j == i:
                    continue
                if model.psi_input == "x_j":
                    z = x[s, j : j + 1]
                elif model.psi_input == "x_j,a_j":
                    z = torch.cat([x[s, j : j + 1], a[j]])
                else:
                    z = torch.cat([x[s, j : j + 1], a[i], a[j]])
                m = m + w[i, j] * model.psi(z)[0]
            if omega is not None:
                m = m * omega[s, i]
            out[s, i] = model.phi(torch.cat([x[s, i : i + 1], a[i]]))[0] + m
            if extra is not None:
                out[s, i] += extra[s, i]
    return out


def make_model(psi_input: str, n: int = 9, **kw) -> GNN:
    torch.manual_seed(0)
    model = GNN(ModelConfig(psi_input=psi_input, hidden=16, w_init_std=0.3, pair_chunk=4, **kw), n)
    with torch.no_grad():
        model.a.copy_(torch.randn(n, 2))  # distinct embeddings, so a_i and a_j matter
    return model


@pytest.mark.parametrize(
    ("psi_input", "options"), [("x_j", {}), ("x_j,a_j", {}), ("x_j,a_i,a_j", {}), ("x_j,a_i,a_j", {"pair_rank": None})]
)
def test_dense_message_passing_equals_per_edge_reference(psi_input, options):
    """The pair form both as its default sum of products (rank dense products) and as one MLP on every pair."""
    model = make_model(psi_input, **options)
    x = torch.randn(3, 9) * 3
    omega = torch.rand(3, 9) + 0.5
    extra = torch.randn(3, 9)
    with torch.no_grad():
        torch.testing.assert_close(model(x), per_edge_prediction(model, x), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(model(x, omega, extra), per_edge_prediction(model, x, omega, extra), rtol=1e-5, atol=1e-5)


def test_low_rank_equals_its_dense_product_without_diagonal():
    model = make_model("x_j", low_rank=3)
    dense = make_model("x_j")
    with torch.no_grad():
        w = model.L @ model.R
        w.fill_diagonal_(0)
        dense.W.copy_(w)
        dense.phi.load_state_dict(model.phi.state_dict())
        dense.psi.load_state_dict(model.psi.state_dict())
        dense.a.copy_(model.a)
        x = torch.randn(4, 9)
        torch.testing.assert_close(model(x), dense(x), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(model(x), per_edge_prediction(model, x), rtol=1e-5, atol=1e-5)


def test_diagonal_and_masked_weights_stay_zero_under_training():
    n = 12
    mask = (np.random.default_rng(0).random((n, n)) < 0.5).astype(np.float32)
    model = GNN(ModelConfig(hidden=8, w_init_std=0.1), n, mask=mask)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(5):
        opt.zero_grad()
        loss = (model(torch.randn(4, n)) - torch.randn(4, n)).pow(2).mean() + model.W.abs().sum()
        loss.backward()
        opt.step()
    w = model.W.detach().numpy()
    allowed = (mask != 0) & ~np.eye(n, dtype=bool)
    assert np.all(w[~allowed] == 0)
    assert np.count_nonzero(w[allowed]) == allowed.sum()


def test_fixed_embedding_is_a_constant_buffer():
    model = GNN(ModelConfig(fixed_embedding=True, hidden=8), 5)
    assert "a" not in dict(model.named_parameters())
    assert torch.all(model.a == 1)


def test_mlp_initialisation_follows_the_paper():
    model = GNN(ModelConfig(), 1000)
    layers = [m for m in model.phi.net if isinstance(m, torch.nn.Linear)]
    assert len(layers) == 3 and layers[1].weight.shape == (64, 64)
    assert layers[1].weight.std().item() == pytest.approx(0.1, rel=0.05)
    assert torch.all(layers[2].bias == 0)
    assert model.W.std().item() == pytest.approx(0.01, rel=0.02) and torch.all(torch.diag(model.W) == 0)


def test_the_pair_form_is_a_sum_of_rank_products_of_a_receiver_and_a_sender_part():
    """psi*(x, a_i, a_j) = u(a_i) . v(x, a_j): for fixed x, the matrix over (receiver, sender) has rank <= pair_rank,
    and the one-MLP form (pair_rank null) is the paper's."""
    from circuitgnn.model.pair import PairTransfer

    model = make_model("x_j,a_i,a_j", n=12, pair_rank=3)
    assert isinstance(model.psi, PairTransfer)
    with torch.no_grad():
        pairs = model.psi_of_pair(torch.full((12,), 0.7), model.a, model.a)  # (receivers, senders)
    singular = torch.linalg.svdvals(pairs.double())
    assert float(singular[3]) < 1e-6 * float(singular[0]) and float(singular[2]) > 1e-4 * float(singular[0])
    assert not isinstance(make_model("x_j,a_i,a_j", pair_rank=None).psi, PairTransfer)
