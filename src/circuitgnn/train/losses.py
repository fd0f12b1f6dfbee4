"""The loss: prediction error plus the regularisers of spec 4.3.

The prediction error and the terms on phi* and psi* are means (of squares, or
with ``monotone_norm`` root mean squares for the two monotonicity terms), so
their size does not depend on N or the batch size; the L1 term on W is a sum.
The paper's code uses un-squared norms: coefficients are not interchangeable
with the paper's.
"""

from __future__ import annotations

import math

import torch

from circuitgnn.data.indicators import Indicator
from circuitgnn.model.gnn import GNN
from circuitgnn.model.integrate import Integrator, fluorescence_rollout, next_frame


def prediction_loss(pred: torch.Tensor, target: torch.Tensor, masked: bool = False) -> torch.Tensor:
    """Mean squared error between prediction and target; with ``masked``, NaN targets (missing values) are left out."""
    if not masked:
        return torch.mean((pred - target) ** 2)
    seen = ~torch.isnan(target)
    err = torch.where(seen, pred - torch.nan_to_num(target), torch.zeros((), device=pred.device))
    return (err**2).sum() / seen.sum().clamp(min=1)


def phi_zero_penalty(model: GNN) -> torch.Tensor:
    """alpha term: mean_i phi*(0, a_i)^2, a steady state at zero activity."""
    zeros = torch.zeros(model.n, device=model.a.device)
    return torch.mean(model.phi_of(zeros, model.a) ** 2)


def violation(diff: torch.Tensor, norm: bool = False) -> torch.Tensor:
    """Size of the positive part of ``diff``: its mean square, or with ``norm`` its root mean square.

    The root (the un-squared norm of the paper's code, spec 4.3, divided by sqrt(size)) keeps a
    gradient of fixed size however small the violation, so the term acts almost as a constraint; the
    mean square's gradient vanishes with the violation.
    """
    r = torch.relu(diff)
    if norm:
        return torch.linalg.vector_norm(r) / math.sqrt(r.numel())  # gradient 0, not NaN, when r == 0
    return torch.mean(r**2)


def phi_decreasing_penalty(model: GNN, x: torch.Tensor, delta: float, norm: bool = False) -> torch.Tensor:
    """beta term: ReLU(phi*(x + delta) - phi*(x)) at the batch's activity x (B, N), by :func:`violation`."""
    x = x.detach()
    return violation(model.phi_of(x + delta, model.a) - model.phi_of(x, model.a), norm)


def psi_monotone_penalty(model: GNN, x: torch.Tensor, delta: float, norm: bool = False) -> torch.Tensor:
    """gamma term: ReLU(psi*(x) - psi*(x + delta)) at the batch's activity, by :func:`violation`: psi* increasing.

    For the pair form it is evaluated on the pairs (a_j, a_j), as in the paper's code.
    """
    x = x.detach()
    return violation(model.psi_of_own_type(x) - model.psi_of_own_type(x + delta), norm)


def w_l1_penalty(model: GNN) -> torch.Tensor:
    """zeta term: sum_ij |W_ij| (the diagonal is zero); for a low-rank W = L R, sum |L| + sum |R|."""
    if model.cfg.low_rank is not None:
        return model.L.abs().sum() + model.R.abs().sum()
    return model.W.abs().sum()


REGULARIZERS = ("phi_zero", "phi_decreasing", "psi_monotone", "w_l1")


def active_regularizers(coefficients: dict[str, float]) -> tuple[str, ...]:
    """The regularisers of :data:`REGULARIZERS` whose coefficient is positive, in that order."""
    return tuple(name for name in REGULARIZERS if coefficients.get(name, 0) > 0)


def penalties(model: GNN, x: torch.Tensor, names: tuple[str, ...], delta: float, monotone_norm: bool = False) -> list[torch.Tensor]:
    """The unweighted regularisers ``names`` at the batch's activity ``x`` (B, N)."""
    terms = {
        "phi_zero": lambda: phi_zero_penalty(model),
        "phi_decreasing": lambda: phi_decreasing_penalty(model, x, delta, monotone_norm),
        "psi_monotone": lambda: psi_monotone_penalty(model, x, delta, monotone_norm),
        "w_l1": lambda: w_l1_penalty(model),
    }
    return [terms[name]() for name in names]


def regularized(
    model: GNN,
    x: torch.Tensor,
    prediction: torch.Tensor,
    coefficients: dict[str, float],
    delta: float,
    monotone_norm: bool = False,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The prediction error plus the regularisers at the batch's activity ``x``, and the terms (unweighted,
    detached 0-d tensors on the model's device, so that reading them is the caller's choice of when to wait
    for the device); terms with a zero coefficient are skipped.

    ``monotone_norm`` measures the two monotonicity terms by their root mean square (see :func:`violation`).
    """
    names = active_regularizers(coefficients)
    loss = prediction
    terms = {"prediction": prediction}
    for name, value in zip(names, penalties(model, x, names, delta, monotone_norm), strict=True):
        terms[name] = value
        loss = loss + coefficients[name] * value
    return loss, {name: v.detach() for name, v in terms.items()}


def total_loss(
    model: GNN,
    x: torch.Tensor,
    target: torch.Tensor,
    coefficients: dict[str, float],
    delta: float,
    omega: torch.Tensor | None = None,
    extra: torch.Tensor | None = None,
    monotone_norm: bool = False,
    masked: bool = False,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The derivative objective: the error of the predicted dx/dt at states ``x`` (B, N) against ``target``,
    regularised (see :func:`regularized`); ``masked`` leaves NaN targets out."""
    pred = model(x, omega, extra)
    return regularized(model, x, prediction_loss(pred, target, masked), coefficients, delta, monotone_norm)


def stacked_loss(
    model: GNN,
    x: torch.Tensor,
    target: torch.Tensor,
    names: tuple[str, ...],
    weights: torch.Tensor,
    delta: float,
    omega: torch.Tensor | None = None,
    extra: torch.Tensor | None = None,
    monotone_norm: bool = False,
    masked: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`total_loss` in the form that ``torch.compile`` traces once: the regularisers ``names`` weighted by the
    tensor ``weights`` (one per name), so that a change of the coefficients' values is new data, not a new graph.

    Returns the loss and the detached terms stacked, the prediction error first and then ``names`` in order.
    """
    prediction = prediction_loss(model(x, omega, extra), target, masked)
    values = torch.stack([prediction, *penalties(model, x, names, delta, monotone_norm)])
    return prediction + (weights * values[1:]).sum(), values.detach()


def rollout_error(
    model: GNN,
    frames: torch.Tensor,
    frame_dt: float,
    substeps: int = 1,
    integrator: Integrator = "euler",
    inputs: list[tuple[torch.Tensor | None, torch.Tensor | None]] | None = None,
    masked: bool = False,
) -> torch.Tensor:
    """The rollout objective's prediction error for recorded ``frames`` (k + 1, B, N).

    The model is integrated from ``frames[0]`` (``substeps`` steps per frame interval); the state s
    frames later is compared with ``frames[s]``, the difference divided by ``s * frame_dt`` so that
    the error is in units of dx/dt: with k = 1, one Euler substep and clean data it equals the
    derivative objective on forward differences. ``inputs[s]`` is the (omega, extra) held over
    interval s. The k errors are averaged.
    """
    k = frames.shape[0] - 1
    x = frames[0]
    total = frames.new_zeros(())
    for s in range(1, k + 1):
        omega, extra = inputs[s - 1] if inputs is not None else (None, None)
        x = next_frame(model, x, frame_dt, substeps, omega, extra, integrator)
        scale = s * frame_dt  # differences from the start frame first: dividing states by a small step would lose digits
        total = total + prediction_loss((x - frames[0]) / scale, (frames[s] - frames[0]) / scale, masked)
    return total / k


def fluorescence_error(
    model: GNN,
    x0: torch.Tensor,
    calcium: torch.Tensor,
    fluorescence: torch.Tensor,
    frame_dt: float,
    indicator: Indicator,
    substeps: int = 1,
    integrator: Integrator = "euler",
    inputs: list[tuple[torch.Tensor | None, torch.Tensor | None]] | None = None,
    masked: bool = False,
) -> torch.Tensor:
    """The fluorescence objective's prediction error: the model and the indicator integrated together
    (:func:`~circuitgnn.model.integrate.fluorescence_rollout`) from activity ``x0`` (B, N) and the smoothed
    ``calcium`` (k + 1, B, N), against the recorded ``fluorescence`` (k + 1, B, N).

    Differences from the start frame are divided by ``s * frame_dt / tau`` and by the indicator's scale,
    so that the error has the activity's units. The k errors are averaged.
    """
    cfg = indicator.cfg
    k = fluorescence.shape[0] - 1
    predicted = fluorescence_rollout(model, x0, calcium, frame_dt, indicator, k, substeps, integrator, inputs)
    start = fluorescence[0]
    total = x0.new_zeros(())
    for s, pred in enumerate(predicted, start=1):
        scale = cfg.scale * s * frame_dt / cfg.tau
        total = total + prediction_loss((pred - start) / scale, (fluorescence[s] - start) / scale, masked)
    return total / k
