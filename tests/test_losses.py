"""Each regulariser's value on a hand-made case."""

import pytest
import torch

from circuitgnn.config import Coefficient, ModelConfig, RegularizationConfig
from circuitgnn.model.gnn import GNN
from circuitgnn.train import losses


class Linear1(torch.nn.Module):
    """A fixed function of the first input column, standing in for an MLP."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, z):
        return self.fn(z)


def hand_model(phi, psi, n=3, psi_input="x_j"):
    model = GNN(ModelConfig(hidden=4, psi_input=psi_input), n)
    model.phi = Linear1(phi)
    model.psi = Linear1(psi)
    return model


def test_phi_zero_penalty():
    # phi*(x, a) = x + a_0: phi*(0, a) = a_0 -> mean of a_0^2
    model = hand_model(lambda z: z[..., :1] + z[..., 1:2], lambda z: z[..., :1])
    with torch.no_grad():
        model.a.copy_(torch.tensor([[1.0, 0], [2.0, 0], [3.0, 0]]))
    assert losses.phi_zero_penalty(model).item() == pytest.approx((1 + 4 + 9) / 3)


def test_psi_monotone_penalty_only_counts_decreasing_parts():
    # psi*(x) = -x is decreasing everywhere: psi(x) - psi(x + d) = d
    model = hand_model(lambda z: z[..., :1], lambda z: -z[..., :1])
    x = torch.randn(2, 3)
    assert losses.psi_monotone_penalty(model, x, 0.5).item() == pytest.approx(0.25)
    # increasing psi*: no penalty
    model = hand_model(lambda z: z[..., :1], lambda z: torch.tanh(z[..., :1]))
    assert losses.psi_monotone_penalty(model, x, 0.5).item() == 0.0
    # pair form evaluates psi*(x_j, a_j, a_j)
    model = hand_model(lambda z: z[..., :1], lambda z: -z[..., :1] * z[..., 1:2], psi_input="x_j,a_i,a_j")
    with torch.no_grad():
        model.a.copy_(torch.tensor([[1.0, 0], [-1.0, 0], [2.0, 0]]))
    # a_0 = 1: decreasing by d; a_0 = -1: increasing; a_0 = 2: decreasing by 2d
    x = torch.zeros(1, 3)
    assert losses.psi_monotone_penalty(model, x, 0.1).item() == pytest.approx((0.01 + 0 + 0.04) / 3)


def test_monotone_norm_is_the_root_mean_square_with_a_gradient_that_does_not_fade():
    # pair-form case above: violations (d, 0, 2d) -> RMS sqrt((d^2 + 4 d^2) / 3)
    model = hand_model(lambda z: z[..., :1], lambda z: -z[..., :1] * z[..., 1:2], psi_input="x_j,a_i,a_j")
    with torch.no_grad():
        model.a.copy_(torch.tensor([[1.0, 0], [-1.0, 0], [2.0, 0]]))
    x = torch.zeros(1, 3)
    assert losses.psi_monotone_penalty(model, x, 0.1, norm=True).item() == pytest.approx((0.05 / 3) ** 0.5)
    x = torch.tensor([[1.0, -2.0, 0.0]])  # phi* = x^2 case below
    expected = ((1.5**2 - 1) ** 2 + 0 + 0.25**2) / 3
    phi_sq = hand_model(lambda z: z[..., :1] ** 2, lambda z: z[..., :1])
    assert losses.phi_decreasing_penalty(phi_sq, x, 0.5, norm=True).item() == pytest.approx(expected**0.5)
    for size in (1.0, 1e-4):  # the gradient's norm is 1 / sqrt(numel) whatever the violation's size
        diff = torch.full((4,), -size, requires_grad=True)
        diff.data[:2] = size
        losses.violation(diff, norm=True).backward()
        assert diff.grad.norm().item() == pytest.approx(0.5) and (diff.grad[2:] == 0).all()
    # total_loss passes the switch on
    _, terms_sq = losses.total_loss(phi_sq, x, torch.zeros(1, 3), {"phi_zero": 0, "phi_decreasing": 1.0}, 0.5)
    _, terms_rms = losses.total_loss(phi_sq, x, torch.zeros(1, 3), {"phi_zero": 0, "phi_decreasing": 1.0}, 0.5, monotone_norm=True)
    assert float(terms_sq["phi_decreasing"]) == pytest.approx(expected) and float(terms_rms["phi_decreasing"]) == pytest.approx(
        expected**0.5
    )


def test_phi_decreasing_penalty():
    # phi*(x) = x^2: increasing for x > 0 (by (x + d)^2 - x^2), decreasing for x < -d
    model = hand_model(lambda z: z[..., :1] ** 2, lambda z: z[..., :1])
    x = torch.tensor([[1.0, -2.0, 0.0]])
    d = 0.5
    expected = ((1.5**2 - 1) ** 2 + 0 + (0.25) ** 2) / 3
    assert losses.phi_decreasing_penalty(model, x, d).item() == pytest.approx(expected)


def test_w_l1_penalty_and_total_loss():
    model = hand_model(lambda z: torch.zeros_like(z[..., :1]), lambda z: z[..., :1])
    with torch.no_grad():
        model.W.copy_(torch.tensor([[0.0, 1, -2], [3, 0, 0], [0, -1, 0]]))
    assert losses.w_l1_penalty(model).item() == 7.0
    x = torch.tensor([[1.0, 1.0, 1.0]])
    target = torch.zeros(1, 3)
    # prediction = W @ x = (-1, 3, -1): MSE = 11/3
    loss, terms = losses.total_loss(model, x, target, {"phi_zero": 0, "w_l1": 0.5, "psi_monotone": 0, "phi_decreasing": 0}, 0.1)
    assert float(terms["prediction"]) == pytest.approx(11 / 3)
    assert loss.item() == pytest.approx(11 / 3 + 0.5 * 7)
    assert set(terms) == {"prediction", "w_l1"}


def test_coefficient_schedules():
    reg = RegularizationConfig(w_l1={"value": 1e-5, "from_epoch": 2}, psi_monotone={"value": 100, "until_epoch": 2})
    assert [reg.w_l1.at(e) for e in range(4)] == [0, 0, 1e-5, 1e-5]
    assert [reg.psi_monotone.at(e) for e in range(4)] == [100, 100, 0, 0]
    assert RegularizationConfig(phi_zero=2).phi_zero == Coefficient(value=2)


def test_shrink_w_is_a_soft_threshold_with_exact_zeros():
    import torch

    from circuitgnn.config import ModelConfig
    from circuitgnn.model.gnn import GNN

    model = GNN(ModelConfig(), 3)
    with torch.no_grad():
        model.W.copy_(torch.tensor([[0.0, 0.5, -0.05], [-0.3, 0.0, 0.02], [0.1, -0.1, 0.0]]))
    model.shrink_w(0.1)
    expected = torch.tensor([[0.0, 0.4, 0.0], [-0.2, 0.0, 0.0], [0.0, 0.0, 0.0]])
    assert torch.allclose(model.W, expected)


def test_shrink_w_keeping_the_norm_zeros_the_small_entries_and_rescales_the_rest():
    import torch

    from circuitgnn.config import ModelConfig
    from circuitgnn.model.gnn import GNN

    model = GNN(ModelConfig(), 3)
    w = torch.tensor([[0.0, 0.5, -0.05], [-0.3, 0.0, 0.02], [0.1, -0.1, 0.0]])
    with torch.no_grad():
        model.W.copy_(w)
    model.shrink_w(0.1, keep_norm=True)
    shrunk = torch.tensor([[0.0, 0.4, 0.0], [-0.2, 0.0, 0.0], [0.0, 0.0, 0.0]])
    assert torch.allclose(model.W, shrunk * (w.norm() / shrunk.norm()))
    assert torch.isclose(model.W.norm(), w.norm())
    model.shrink_w(10.0, keep_norm=True)  # everything shrunk to zero: no rescue, no NaN
    assert torch.equal(model.W, torch.zeros(3, 3))


def test_shrink_cannot_be_combined_with_a_low_rank_w():
    import pytest

    from circuitgnn.config import config_from_dict
    from circuitgnn.errors import ConfigError

    with pytest.raises(ConfigError, match="w_shrink acts on a dense W"):
        config_from_dict({"model": {"low_rank": 4}, "training": {"regularization": {"w_shrink": 0.5}}})
