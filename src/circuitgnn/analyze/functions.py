"""Learned phi* and psi* curves, and their errors against the true functions (spec 5.3)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from circuitgnn.model.gnn import GNN
from circuitgnn.simulate.neuron_models import true_phi, true_psi


@torch.no_grad()
def phi_curves(model: GNN, grid: np.ndarray) -> np.ndarray:
    """phi*(x, a_n) for every neuron on ``grid``: (P, N)."""
    x = torch.as_tensor(grid, dtype=torch.float32, device=model.a.device)[:, None].expand(len(grid), model.n)
    return model.phi_of(x, model.a).cpu().numpy()


@torch.no_grad()
def psi_curves(model: GNN, grid: np.ndarray, receivers: np.ndarray | None = None) -> np.ndarray:
    """psi* on ``grid`` for every sender: (P, N). For the pair form, sender n is paired with receiver
    ``receivers[n]`` (default: itself)."""
    dev = model.a.device
    x = torch.as_tensor(grid, dtype=torch.float32, device=dev)[:, None].expand(len(grid), model.n)
    if model.psi_input != "x_j,a_i,a_j" or receivers is None:
        return model.psi_of_own_type(x).cpu().numpy()
    a_recv = model.a[torch.as_tensor(receivers, device=dev)]
    z = torch.cat([x.unsqueeze(-1), a_recv.expand(len(grid), -1, -1), model.a.expand(len(grid), -1, -1)], dim=-1)
    return model.psi(z).squeeze(-1).cpu().numpy()


def _relative_rmse(learned: np.ndarray, true: np.ndarray) -> float:
    scale = true.std()
    return float(np.sqrt(np.mean((learned - true) ** 2)) / (scale if scale > 0 else 1.0))


def _scale_aligned(curve: np.ndarray, true: np.ndarray) -> np.ndarray:
    """``s * curve`` with the least-squares s: psi* is only defined up to a factor that W absorbs."""
    denom = float(curve @ curve)
    return curve * (float(curve @ true) / denom if denom > 0 else 0.0)


def function_errors(model: GNN, types: np.ndarray, functions: dict[str, Any], xnorm: float, n_points: int = 200) -> dict[str, Any]:
    """Per true type, the median over its neurons of the RMSE between learned and true function
    on [-xnorm, xnorm], relative to the true function's std.

    phi* is compared as it is (it has no free scale); each psi* curve is first multiplied by its
    least-squares factor (the W-psi* scale symmetry). For the pair form, psi is scored for each
    (receiver type, sender type), pairing every sender with a receiver of the given type.
    """
    grid = np.linspace(-xnorm, xnorm, n_points)
    table = functions["types"]
    signal = functions["signal"]
    k_types = len(table)
    phi = phi_curves(model, grid)
    phi_err = [
        float(np.median([_relative_rmse(phi[:, n], true_phi(grid, table[k])) for n in np.flatnonzero(types == k)]))
        for k in range(k_types)
        if np.any(types == k)
    ]
    out: dict[str, Any] = {"phi_error_per_type": phi_err, "phi_error_max": max(phi_err)}
    if signal != "pair" or model.psi_input != "x_j,a_i,a_j":
        psi = psi_curves(model, grid)
        psi_err = []
        for k in range(k_types):
            members = np.flatnonzero(types == k)
            if members.size == 0:
                continue
            truth = true_psi(grid, signal, table[k], table[k])
            psi_err.append(float(np.median([_relative_rmse(_scale_aligned(psi[:, n], truth), truth) for n in members])))
        out["psi_error_per_type"] = psi_err
    else:
        psi_err = []
        for r in range(k_types):
            receivers = np.flatnonzero(types == r)
            if receivers.size == 0:
                continue
            partner = receivers[np.arange(model.n) % receivers.size]
            psi = psi_curves(model, grid, partner)
            row = []
            for k in range(k_types):
                members = np.flatnonzero(types == k)
                truth = true_psi(grid, signal, table[k], table[r])
                row.append(float(np.median([_relative_rmse(_scale_aligned(psi[:, n], truth), truth) for n in members])))
            psi_err.append(row)
        out["psi_error_per_type_pair"] = psi_err
        psi_err = [v for row in psi_err for v in row]
    out["psi_error_max"] = max(psi_err)
    return out
