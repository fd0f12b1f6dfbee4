"""Integrating the model's dynamics between recorded frames: the rollout objective and forecasts share it."""

from __future__ import annotations

from typing import Literal

import torch

from circuitgnn.model.gnn import GNN

Integrator = Literal["euler", "rk4"]


def advance(
    model: GNN,
    x: torch.Tensor,
    h: float,
    omega: torch.Tensor | None = None,
    extra: torch.Tensor | None = None,
    integrator: Integrator = "euler",
) -> torch.Tensor:
    """The state one step ``h`` after ``x`` (B, N) under the model, the inputs held over the step."""
    f1 = model(x, omega, extra)
    if integrator == "euler":
        return x + h * f1
    f2 = model(x + 0.5 * h * f1, omega, extra)
    f3 = model(x + 0.5 * h * f2, omega, extra)
    f4 = model(x + h * f3, omega, extra)
    return x + (h / 6.0) * (f1 + 2 * f2 + 2 * f3 + f4)


def next_frame(
    model: GNN,
    x: torch.Tensor,
    frame_dt: float,
    substeps: int = 1,
    omega: torch.Tensor | None = None,
    extra: torch.Tensor | None = None,
    integrator: Integrator = "euler",
) -> torch.Tensor:
    """The state one frame interval after ``x``, in ``substeps`` steps of ``frame_dt / substeps``."""
    h = frame_dt / substeps
    for _ in range(substeps):
        x = advance(model, x, h, omega, extra, integrator)
    return x
