"""Re-simulating a dataset's true network: held-out trajectories for scoring forecasts."""

from __future__ import annotations

import numpy as np
import torch

from circuitgnn.data.dataset import Dataset
from circuitgnn.errors import DatasetError
from circuitgnn.simulate.neuron_models import Circuit
from circuitgnn.simulate.neurons import TypeTable


def true_circuit(dataset: Dataset, device: torch.device | None = None) -> Circuit:
    """The ground-truth :class:`Circuit` of a simulated dataset."""
    truth = dataset.truth
    if truth is None:
        raise DatasetError(f"{dataset.path} has no ground truth (truth/): the true network cannot be re-simulated")
    table = TypeTable.from_json(truth.functions["types"])
    return Circuit(truth.connectivity, truth.types, table, truth.functions["signal"], device or torch.device("cpu"))


@torch.no_grad()
def true_trajectory(
    circuit: Circuit, x0: np.ndarray, n_steps: int, dt: float, inputs: np.ndarray | None = None, mode: str = "none"
) -> np.ndarray:
    """Noise-free Euler trajectory of the true network from ``x0``: (n_steps + 1, N)."""
    x = torch.as_tensor(x0, dtype=torch.float32, device=circuit.device)
    out = np.empty((n_steps + 1, len(x0)), dtype=np.float32)
    out[0] = x0
    for k in range(n_steps):
        omega = extra = None
        if inputs is not None:
            inp = torch.as_tensor(inputs[k], device=circuit.device)
            omega, extra = (inp, None) if mode == "multiplicative" else (None, inp)
        x = x + dt * circuit.drift(x, omega, extra)
        out[k + 1] = x.cpu().numpy()
    return out


def frame_trajectory(
    circuit: Circuit, x0: np.ndarray, n_frames: int, dataset: Dataset, inputs: np.ndarray | None = None, mode: str = "none"
) -> np.ndarray:
    """The true network's noise-free trajectory at the frames of ``dataset`` from ``x0``: (n_frames + 1, N).

    Integrated at the simulation's own step (the frame interval / ``dataset.every``) and sampled every
    ``every`` steps; ``inputs`` (n_frames, N) are held over each frame interval.
    """
    every = dataset.every
    held = None if inputs is None else np.repeat(inputs, every, axis=0)
    return true_trajectory(circuit, x0, n_frames * every, dataset.dt / every, held, mode)[::every]


def held_out_state(circuit: Circuit, dt: float, seed: int, init_std: float = 5.0, settle_steps: int = 1000) -> np.ndarray:
    """A state on the network's attractor that training never saw: a new random start, run noise-free."""
    gen = torch.Generator(device=circuit.device).manual_seed(seed)
    x0 = init_std * torch.randn(circuit.n_neurons, generator=gen, device=circuit.device)
    return true_trajectory(circuit, x0.cpu().numpy(), settle_steps, dt)[-1]
