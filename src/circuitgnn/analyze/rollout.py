"""Autoregressive forecasts of a trained model against the true dynamics (spec 5.4)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from circuitgnn.analyze.metrics import linear_fit
from circuitgnn.model.gnn import GNN
from circuitgnn.model.integrate import Integrator, next_frame


@dataclass(frozen=True)
class RolloutScore:
    """R^2 and slope of predicted against true activity across all neurons, at each scored horizon."""

    horizons: np.ndarray  # steps
    r2: np.ndarray
    slope: np.ndarray
    predicted: np.ndarray  # (steps + 1, N) trajectory of the model
    true: np.ndarray  # (steps + 1, N) reference trajectory

    def at(self, step: int) -> tuple[float, float]:
        """(R^2, slope) at the scored horizon closest to ``step``."""
        k = int(np.argmin(np.abs(self.horizons - step)))
        return float(self.r2[k]), float(self.slope[k])


@torch.no_grad()
def rollout_model(
    model: GNN,
    x0: np.ndarray,
    n_steps: int,
    dt: float,
    inputs: np.ndarray | None = None,
    mode: str = "none",
    substeps: int = 1,
    integrator: Integrator = "euler",
) -> np.ndarray:
    """Integrate the model without noise from ``x0`` (N,) for ``n_steps`` frames ``dt`` apart: returns (n_steps + 1, N).

    ``inputs`` (n_steps, N) is the known multiplicative (``mode='multiplicative'``) or additive input,
    held over each frame interval; each interval takes ``substeps`` steps of ``integrator`` (explicit
    Euler in one step by default, the paper's).
    """
    dev = model.a.device
    x = torch.tensor(np.array(x0), dtype=torch.float32, device=dev)[None, :]
    out = np.empty((n_steps + 1, x.shape[1]), dtype=np.float32)
    out[0] = x0
    for k in range(n_steps):
        omega = extra = None
        if inputs is not None:
            inp = torch.as_tensor(inputs[k], device=dev)[None, :]
            omega, extra = (inp, None) if mode == "multiplicative" else (None, inp)
        x = next_frame(model, x, dt, substeps, omega, extra, integrator)
        out[k + 1] = x[0].cpu().numpy()
    return out


def _robust_fit(true: np.ndarray, pred: np.ndarray) -> tuple[float, float]:
    """Line fit on the points within 3 std of the median in both variables (as the paper)."""
    t, p = true.ravel(), pred.ravel()
    seen = np.isfinite(t)  # a recording's missing values
    t, p = t[seen], p[seen]
    keep = (np.abs(t - np.median(t)) < 3 * t.std()) & (np.abs(p - np.median(p)) < 3 * (p.std() + 1e-12))
    if keep.sum() < 3 or not np.all(np.isfinite(p[keep])):
        return float("nan"), float("nan")
    fit = linear_fit(t[keep], p[keep])
    return fit.r2, fit.slope


def score_rollout(predicted: np.ndarray, true: np.ndarray, every: int = 10) -> RolloutScore:
    """Score a forecast every ``every`` steps against the reference trajectory."""
    horizons = np.arange(every, len(true), every)
    fits = [_robust_fit(true[h], predicted[h]) for h in horizons]
    r2 = np.array([f[0] for f in fits])
    slope = np.array([f[1] for f in fits])
    return RolloutScore(horizons, r2, slope, predicted, true)
