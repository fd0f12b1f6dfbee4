"""The loss: prediction error plus the regularisers of spec 4.3.

All terms are means of squares, so their size does not depend on N or the
batch size (the paper's code uses un-squared norms; coefficients are therefore
not interchangeable with the paper's).
"""

from __future__ import annotations

import torch

from circuitgnn.model.gnn import CircuitGNN


def prediction_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error between predicted and true dx/dt."""
    return torch.mean((pred - target) ** 2)


def phi_zero_penalty(model: CircuitGNN) -> torch.Tensor:
    """alpha term: mean_i phi*(0, a_i)^2, a steady state at zero activity."""
    zeros = torch.zeros(model.n, device=model.a.device)
    return torch.mean(model.phi_of(zeros, model.a) ** 2)


def phi_decreasing_penalty(model: CircuitGNN, x: torch.Tensor, delta: float) -> torch.Tensor:
    """beta term: mean ReLU(phi*(x + delta) - phi*(x))^2 at the batch's activity x (B, N): phi* decreasing in x."""
    x = x.detach()
    diff = model.phi_of(x + delta, model.a) - model.phi_of(x, model.a)
    return torch.mean(torch.relu(diff) ** 2)


def psi_monotone_penalty(model: CircuitGNN, x: torch.Tensor, delta: float) -> torch.Tensor:
    """gamma term: mean ReLU(psi*(x) - psi*(x + delta))^2 at the batch's activity: psi* increasing.

    For the pair form it is evaluated on the pairs (a_j, a_j), as in the paper's code.
    """
    x = x.detach()
    diff = model.psi_of_own_type(x) - model.psi_of_own_type(x + delta)
    return torch.mean(torch.relu(diff) ** 2)


def w_l1_penalty(model: CircuitGNN) -> torch.Tensor:
    """zeta term: sum_ij |W_ij| (the diagonal is zero); for a low-rank W = L R, sum |L| + sum |R|."""
    if model.cfg.low_rank is not None:
        return model.L.abs().sum() + model.R.abs().sum()
    return model.W.abs().sum()


def total_loss(
    model: CircuitGNN,
    x: torch.Tensor,
    target: torch.Tensor,
    coefficients: dict[str, float],
    delta: float,
    omega: torch.Tensor | None = None,
    extra: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Loss and its terms (as floats, unweighted) for a batch; terms with a zero coefficient are skipped."""
    pred = model(x, omega, extra)
    loss = prediction_loss(pred, target)
    terms = {"prediction": loss}
    if coefficients.get("phi_zero", 0) > 0:
        terms["phi_zero"] = phi_zero_penalty(model)
    if coefficients.get("phi_decreasing", 0) > 0:
        terms["phi_decreasing"] = phi_decreasing_penalty(model, x, delta)
    if coefficients.get("psi_monotone", 0) > 0:
        terms["psi_monotone"] = psi_monotone_penalty(model, x, delta)
    if coefficients.get("w_l1", 0) > 0:
        terms["w_l1"] = w_l1_penalty(model)
    for name, value in terms.items():
        if name != "prediction":
            loss = loss + coefficients[name] * value
    return loss, {name: float(v.detach()) for name, v in terms.items()}
