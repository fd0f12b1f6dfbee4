"""Shared helpers: tiny configs that simulate in well under a second."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from circuitgnn.config import ExperimentConfig, config_from_dict
from circuitgnn.data.dataset import Dataset
from circuitgnn.simulate.run import simulate

# The tests' models are small: one thread loses little alone, and beside other jobs on the machine torch's
# spin-waiting threads made the suite many times slower (issue 15).
torch.set_num_threads(1)


def tiny_config(**sim: Any) -> ExperimentConfig:
    """A small experiment; keyword arguments override the `simulation` section (nested dicts allowed)."""
    base: dict[str, Any] = {
        "n_neurons": 40,
        "n_frames": 300,
        "burn_in": 50,
        "neurons": {"n_types": 4, "self_coupling": [1, 2, 1, 2], "decay": [1, 1, 2, 2]},
    }
    for key, value in sim.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    return config_from_dict({"name": "tiny", "simulation": base})


WIDTHS = [1.0, 2.0, 4.0, 8.0]  # the typed transfers' widths, as in Supp. 13 and 14


def typed_transfer_config(signal: str, n_neurons: int, n_frames: int, noise_std: float, gain: float, **training: Any) -> ExperimentConfig:
    """4 types whose transfer has a width per type (``signal``: "sender", Supp. 13, or "pair", Supp. 14) and the GNN form
    that fits it; keyword arguments update the (short) `training` section."""
    cfg = tiny_config(
        n_neurons=n_neurons,
        n_frames=n_frames,
        noise_std=noise_std,
        neurons={"gain": gain, "signal": signal, "width": WIDTHS},
        connectivity={"filling_factor": 0.3},
    ).model_dump(mode="json")
    cfg["model"]["psi_input"] = "x_j,a_i,a_j" if signal == "pair" else "x_j,a_j"
    cfg["training"].update(
        {"batch_size": 8, "iterations_per_epoch": 20, "n_epochs": 1, "log_every": 10, "checkpoint_every": 10, **training}
    )
    return config_from_dict(cfg)


def simulated_arrays(path, **sim: Any):
    """Simulate ``tiny_config(**sim)`` into ``path``; returns (dataset, x, dxdt) with the arrays in memory."""
    import numpy as np

    from circuitgnn import open_dataset, simulate

    simulate(tiny_config(**sim), path, progress=False, figure=False)
    ds = open_dataset(path)
    return ds, np.array(ds.x), np.array(ds.dxdt)


@pytest.fixture(scope="session")
def network(tmp_path_factory):
    """50 neurons, 20 % of W filled, gain 3 and process noise: activity rich enough that the true functions fix W."""

    cfg = tiny_config(n_neurons=50, n_frames=2000, neurons={"gain": 3}, noise_std=0.1, connectivity={"filling_factor": 0.2})
    out = tmp_path_factory.mktemp("network") / "net"
    simulate(cfg, out, progress=False, figure=False)
    return Dataset(out)


@pytest.fixture
def tiny():
    return tiny_config
