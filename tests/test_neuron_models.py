"""Each formula of the ground-truth dynamics against an independent float64 per-edge reference."""

import numpy as np
import pytest
import torch

from circuitgnn.config import NeuronConfig
from circuitgnn.simulate.neuron_models import Circuit, true_phi, true_psi
from circuitgnn.simulate.neurons import TypeTable


def reference_drift(x, w, types, table, signal, omega=None, extra=None):
    """Per-edge loops, float64, written from the paper's equations (spec 2.3 to 2.5)."""
    n = len(x)
    p = table.values
    f = np.empty(n)
    for i in range(n):
        ti = types[i]
        m = 0.0
        for j in range(n):
            tj = types[j]
            if signal == "tanh":
                psi = np.tanh(x[j])
            elif signal == "sender":
                psi = np.tanh((x[j] - p["threshold"][tj]) / p["width"][tj])
            else:
                psi = np.tanh((x[j] - p["threshold"][tj]) / p["width"][ti]) - np.log(p["width"][tj]) / 50 * x[j]
            m += w[i, j] * psi
        coupling = p["gain"][ti] * m * (1.0 if omega is None else omega[i])
        f[i] = -p["decay"][ti] * x[i] + p["bias"][ti] + p["self_coupling"][ti] * np.tanh(x[i]) + coupling
        if extra is not None:
            f[i] += extra[i]
    return f


@pytest.mark.parametrize("signal", ["tanh", "sender", "pair"])
def test_drift_matches_per_edge_reference(signal):
    rs = np.random.default_rng(0)
    n = 30
    cfg = NeuronConfig(signal=signal, width=[1, 2, 4, 8], threshold=[0, 0.5, -0.5, 1], bias=[0, 0.1, 0, -0.2])
    table = TypeTable.from_config(cfg)
    types = rs.integers(0, 4, size=n)
    w = (rs.standard_cauchy((n, n)) * 0.05).astype(np.float32)
    np.fill_diagonal(w, 0)
    x = (rs.normal(size=n) * 5).astype(np.float32)
    omega = rs.uniform(0.5, 1.5, size=n).astype(np.float32)
    extra = rs.normal(size=n).astype(np.float32)
    c = Circuit(w, types, table, signal, torch.device("cpu"))
    got = c.drift(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, reference_drift(x.astype(float), w.astype(float), types, table, signal), rtol=1e-4, atol=1e-4)
    got = c.drift(torch.from_numpy(x), torch.from_numpy(omega), torch.from_numpy(extra)).numpy()
    ref = reference_drift(x.astype(float), w.astype(float), types, table, signal, omega, extra)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


def test_true_function_helpers():
    x = np.linspace(-5, 5, 11)
    assert np.allclose(true_phi(x, {"decay": 2, "bias": 0, "self_coupling": 1}), -2 * x + np.tanh(x))
    s = {"width": 4.0, "threshold": 0.0, "leak": np.log(4) / 50}
    r = {"width": 2.0, "threshold": 0.0, "leak": 0.0}
    assert np.allclose(true_psi(x, "sender", s, r), np.tanh(x / 4))
    assert np.allclose(true_psi(x, "pair", s, r), np.tanh(x / 2) - np.log(4) / 50 * x)
