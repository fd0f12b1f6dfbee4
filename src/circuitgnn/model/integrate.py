"""Integrating the model's dynamics between recorded frames: the rollout and fluorescence objectives and forecasts share it."""

from __future__ import annotations

from typing import Literal

import torch

from circuitgnn.data.indicators import Indicator
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


def fluorescence_rollout(
    model: GNN,
    x0: torch.Tensor,
    calcium: torch.Tensor,
    frame_dt: float,
    indicator: Indicator,
    k: int,
    substeps: int = 1,
    integrator: Integrator = "euler",
    inputs: list[tuple[torch.Tensor | None, torch.Tensor | None]] | None = None,
) -> list[torch.Tensor]:
    """The fluorescence 1 .. ``k`` frames after activity ``x0`` (B, N) under the model, seen through ``indicator``.

    The indicator starts at the smoothed ``calcium[0]`` (its rise state, when it has one, from the calcium's
    slope to ``calcium[1]``, or at rest where that is missing); the model's activity drives it, held over each substep as in the simulator.
    ``inputs[s]`` is the (omega, extra) held over interval s.
    """
    cfg = indicator.cfg
    h = frame_dt / substeps
    c0 = calcium[0]
    if cfg.rise > 0:  # r = c + tau c', the slope over the first interval (where that calcium is missing: at rest, r = c)
        rise = c0 + cfg.tau * (calcium[1] - c0) / frame_dt
        rise = torch.where(torch.isnan(rise), c0, rise)
    else:
        rise = indicator.transform(x0)
    state, x = (rise, c0), x0
    out = []
    for s in range(k):
        omega, extra = inputs[s] if inputs is not None else (None, None)
        for _ in range(substeps):
            state = indicator.step(state, x, h)
            x = advance(model, x, h, omega, extra, integrator)
        out.append(indicator.fluorescence(state[1]))
    return out
