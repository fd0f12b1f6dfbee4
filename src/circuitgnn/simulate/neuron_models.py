"""The ground-truth drift dx/dt of the three signal forms of the paper.

For neuron i of type k (``W[i, j]``: weight from j to i):

    dx_i/dt = phi_k(x_i) + g_k * Omega_i(t) * sum_j W_ij psi_ij + e_i(t)
    phi_k(x) = -c_k x + b_k + s_k tanh(x)

with the transfer ``psi_ij`` given by the signal form:

* ``tanh``   : tanh(x_j)                                   (paper 2.3, "PDE_N2")
* ``sender`` : tanh((x_j - h_j) / w_j)                     (paper 2.4, "transmitters")
* ``pair``   : tanh((x_j - h_j) / w_i) - theta_j x_j       (paper 2.5, "transmitters and receptors")
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from circuitgnn.simulate.neurons import TypeTable

PHI_FORMULA = "-decay*x + bias + self_coupling*tanh(x)"
PSI_FORMULAS = {
    "tanh": "tanh(x_j)",
    "sender": "tanh((x_j - threshold_j) / width_j)",
    "pair": "tanh((x_j - threshold_j) / width_i) - leak_j * x_j",
}


def true_phi(x: np.ndarray, params: dict[str, float]) -> np.ndarray:
    """The update function of one type, params as in :meth:`TypeTable.to_json`."""
    return -params["decay"] * x + params["bias"] + params["self_coupling"] * np.tanh(x)


def true_psi(x: np.ndarray, signal: str, sender: dict[str, float], receiver: dict[str, float]) -> np.ndarray:
    """The transfer function from a sender of one type to a receiver of another type."""
    if signal == "tanh":
        return np.tanh(x)
    if signal == "sender":
        return np.tanh((x - sender["threshold"]) / sender["width"])
    return np.tanh((x - sender["threshold"]) / receiver["width"]) - sender["leak"] * x


class Circuit:
    """A ground-truth network: connectivity, per-neuron parameters and signal form, on one device.

    ``drift(x, omega, extra)`` evaluates dx/dt for a state ``x`` of shape (N,)
    without noise. It is the single definition of the dynamics used by the
    integrator and saved as the training target.
    """

    def __init__(self, w: np.ndarray, types: np.ndarray, table: TypeTable, signal: str, device: torch.device):
        self.signal = signal
        self.device = device
        self.n_neurons = w.shape[0]
        self.types = torch.as_tensor(types, dtype=torch.long, device=device)
        self.w = torch.as_tensor(w, dtype=torch.float32, device=device).contiguous()
        # On CPU, numpy's BLAS does the dense mat-vec 2x faster than torch's (benchmarks/bench_simulate.py);
        # the numpy view shares memory with the tensor.
        self._w_np = self.w.numpy() if device.type == "cpu" else None
        p = table.per_neuron(types)
        t = {k: torch.as_tensor(v, device=device) for k, v in p.items()}
        self.gain, self.decay, self.bias, self.self_coupling = t["gain"], t["decay"], t["bias"], t["self_coupling"]
        self.width, self.threshold, self.leak = t["width"], t["threshold"], t["leak"]
        self.type_width = torch.as_tensor(table.values["width"], dtype=torch.float32, device=device)  # (K,)
        self._rows = torch.arange(self.n_neurons, device=device)

    def _matmul(self, v: torch.Tensor) -> torch.Tensor:
        if self._w_np is not None:
            return torch.from_numpy(self._w_np @ v.numpy())
        return self.w @ v

    def transfer(self, x: torch.Tensor) -> torch.Tensor:
        """Sender-side transfer values: (N,) for tanh/sender, (N, K) for pair (column k: receivers of type k)."""
        if self.signal == "tanh":
            return torch.tanh(x)
        if self.signal == "sender":
            return torch.tanh((x - self.threshold) / self.width)
        shifted = (x - self.threshold)[:, None] / self.type_width[None, :]
        return torch.tanh(shifted) - (self.leak * x)[:, None]

    def messages(self, x: torch.Tensor) -> torch.Tensor:
        """Summed input M_i = sum_j W_ij psi_ij, shape (N,)."""
        m = self._matmul(self.transfer(x))
        if self.signal == "pair":
            m = m[self._rows, self.types]
        return m

    def drift(self, x: torch.Tensor, omega: torch.Tensor | None = None, extra: torch.Tensor | None = None) -> torch.Tensor:
        """dx/dt at state x (N,), with a multiplicative field ``omega`` (N,) and an additive input ``extra`` (N,)."""
        coupling = self.gain * self.messages(x)
        if omega is not None:
            coupling = coupling * omega
        f = -self.decay * x + self.bias + self.self_coupling * torch.tanh(x) + coupling
        if extra is not None:
            f = f + extra
        return f

    def describe(self, table: TypeTable) -> dict[str, Any]:
        """The true functions by name and parameters, for the dataset's ground truth."""
        return {
            "signal": self.signal,
            "phi": PHI_FORMULA,
            "psi": PSI_FORMULAS[self.signal],
            "drift": "phi_type(i)(x_i) + gain_i * Omega_i(t) * sum_j W[i, j] * psi_ij + e_i(t)",
            "types": table.to_json(),
        }
