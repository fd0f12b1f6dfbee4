"""Start the GNN from a spline fit of the same model (``training.extensions.warm_start``).

The GNN's functions are a handful of shared 1-D curves, and for given curves W is a linear least-squares
problem: :func:`circuitgnn.train.varpro.fit_functions` solves the whole model with spline curves in a few
exact solves. The GNN then starts from that fit instead of from random weights:

* W: the fit's W (zero diagonal; each neuron's own psi term is folded into its update function);
* the embeddings: the neurons' update curves phi_i on a grid over the bulk of the activity, projected on their
  first ``embedding_dim`` principal components (neurons with the same curve start at the same point, so the
  types are apart from the first step; no label is read);
* phi* and psi*: Adam steps fitting the MLPs to the spline curves at the recorded activity (embeddings held).

Gradient training then goes on from there as usual.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from circuitgnn.config import WarmStartConfig
from circuitgnn.errors import CircuitGNNError
from circuitgnn.model.gnn import GNN
from circuitgnn.train.varpro import FunctionFit, fit_functions

_CURVE_POINTS = 32
_DISTILL_FRAMES = 8  # frames (x every neuron) per distillation step, as a training batch
_SAMPLE_FRAMES = 512  # frames the distillation draws its batches from
_QUANTILE_LIMIT = 1 << 24  # the most values torch.quantile takes


@dataclass(frozen=True)
class WarmStart:
    """What the warm start found: the function fit and the times of its two parts."""

    fit: FunctionFit
    fit_seconds: float
    distill_seconds: float
    distill_error: float  # relative mean squared error of phi* and psi* against the splines, at the end

    def as_dict(self) -> dict[str, float | bool]:
        residual = self.fit.history[-1] if self.fit.history else float("nan")
        return {
            "warm_start_fit_seconds": round(self.fit_seconds, 3),
            "warm_start_distill_seconds": round(self.distill_seconds, 3),
            "warm_start_residual": residual,
            "warm_start_gauss_newton_steps": len(self.fit.history) - 1,
            "warm_start_distill_error": self.distill_error,
            "warm_start_float64": self.fit.products == torch.float64,
        }


def phi_curves(fit: FunctionFit, x: torch.Tensor, n_points: int = _CURVE_POINTS) -> torch.Tensor:
    """Each neuron's update curve (N, n_points) on a grid over the 5th to 95th percentile of the activity ``x``.

    Outside a neuron's own range (its 2nd to 98th percentile) its spline has no data: there the curve continues
    linearly, with the slope over the last tenth of its range, so that neurons which visit different ranges
    compare by what their data say.
    """
    kw: dict[str, Any] = {"dtype": torch.float64, "device": x.device}
    sample = x.reshape(-1)[:: max(1, x.numel() // 1_000_000)].double()
    lo, hi = torch.quantile(sample, torch.tensor([0.05, 0.95], **kw)).tolist()
    grid = torch.linspace(lo, hi, n_points, **kw)[:, None].expand(n_points, x.shape[1])
    rows = x[:: max(1, len(x) // min(2000, _QUANTILE_LIMIT // x.shape[1]))].double()
    own_lo, own_hi = torch.quantile(rows, torch.tensor([0.02, 0.98], **kw), dim=0)
    inner = 0.1 * (own_hi - own_lo)
    edges = torch.stack([own_lo, own_lo + inner, own_hi - inner, own_hi])  # (4, N)
    at = fit.phi(edges)
    left_slope = (at[1] - at[0]) / inner.clamp_min(1e-12)
    right_slope = (at[3] - at[2]) / inner.clamp_min(1e-12)
    curves = fit.phi(grid.clamp(own_lo, own_hi))
    curves = curves + torch.where(grid < own_lo, left_slope * (grid - own_lo), torch.zeros_like(grid))
    curves = curves + torch.where(grid > own_hi, right_slope * (grid - own_hi), torch.zeros_like(grid))
    return curves.T


def curve_embeddings(curves: torch.Tensor, dim: int) -> torch.Tensor:
    """The first ``dim`` principal components of the curves (N, P), scaled so that the first has unit std."""
    curves = curves.cpu()
    centred = curves - curves.mean(0)
    _, _, v = torch.linalg.svd(centred, full_matrices=False)
    scores = centred @ v[:dim].T
    if scores.shape[1] < dim:  # fewer curve points than embedding dimensions
        scores = torch.cat([scores, torch.zeros(len(scores), dim - scores.shape[1], dtype=scores.dtype)], 1)
    return scores / scores[:, 0].std().clamp_min(1e-12)


def distill(
    model: GNN,
    fit: FunctionFit,
    x: torch.Tensor,
    steps: int,
    generator: torch.Generator,
    lr: float = 1e-3,
    should_stop: Callable[[], bool] | None = None,
) -> float:
    """Adam steps fitting phi* and psi* to the fit's curves at the recorded activity ``x`` (T, N), the embeddings held;
    returns the final relative mean squared error (phi's and psi's, added). ``should_stop`` ends the steps early."""
    device = model.a.device
    frames = x[torch.randperm(len(x), generator=generator)[:_SAMPLE_FRAMES]].to(device)
    phi_target = fit.phi(frames.double()).to(device, torch.float32)
    psi_target = fit.psi(frames.double()).to(device, torch.float32)
    phi_var, psi_var = phi_target.var().clamp_min(1e-12), psi_target.var().clamp_min(1e-12)
    params = list(model.phi.parameters()) + list(model.psi.parameters())
    optimizer = torch.optim.Adam(params, lr=lr)
    error = torch.tensor(float("nan"))
    for _ in range(steps):
        if should_stop is not None and should_stop():
            break
        rows = torch.randint(len(frames), (_DISTILL_FRAMES,), generator=generator).to(device)
        xb = frames[rows]
        phi_error = ((model.phi_of(xb, model.a) - phi_target[rows]) ** 2).mean() / phi_var
        psi_error = ((model.psi_of_sender(xb, model.a) - psi_target[rows]) ** 2).mean() / psi_var
        error = phi_error + psi_error
        optimizer.zero_grad(set_to_none=True)
        error.backward()
        optimizer.step()
    return float(error.detach())


def warm_start(
    model: GNN,
    x: torch.Tensor,
    y: torch.Tensor,
    cfg: WarmStartConfig,
    seed: int,
    should_stop: Callable[[], bool] | None = None,
    deadline: float | None = None,
) -> WarmStart:
    """Fit the spline model to frames ``x`` (T, N) and their drift ``y``, and set the GNN's W, embeddings, phi* and psi*
    from it (see the module docstring). ``should_stop`` (e.g. a Ctrl-C seen) and ``deadline`` (a
    ``time.perf_counter()`` value) cut the Gauss-Newton steps short; the distillation (``distill_steps`` Adam steps,
    seconds) is cut only by ``should_stop``: without it phi* and psi* would not match the W just set."""
    if model.psi_input == "x_j,a_i,a_j" or model.cfg.low_rank is not None or model.masked:
        raise CircuitGNNError("training.extensions.warm_start needs a dense, unmasked W and a sender-only psi*")
    start = time.perf_counter()
    fit = fit_functions(
        x,
        y,
        n_psi=cfg.psi_basis,
        n_phi=cfg.phi_basis,
        iterations=cfg.steps,
        receivers=cfg.receivers,
        seed=seed,
        dtype=torch.float32,
        deadline=deadline,
        should_stop=should_stop,
    )
    fit_seconds = time.perf_counter() - start
    with torch.no_grad():
        model.W.copy_(fit.connectivity.to(model.W))
        if isinstance(model.a, torch.nn.Parameter):
            model.a.copy_(curve_embeddings(phi_curves(fit, x), model.a.shape[1]).to(model.a))
    start = time.perf_counter()
    error = distill(model, fit, x, cfg.distill_steps, torch.Generator().manual_seed(seed), should_stop=should_stop)
    return WarmStart(fit, fit_seconds, time.perf_counter() - start, error)
