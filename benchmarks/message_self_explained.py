"""How much of each neuron's true synaptic input is a function of its own activity?

For a simulated dataset, the drift of neuron i is phi(x_i) + g_i Omega_i(t) M_i(t) with the message
M_i = sum_j W_ij psi_ij(x_j). When M_i(t) is itself close to a function of x_i(t) along the recorded
trajectory, the data cannot tell phi* from the messages well: parts of one can be traded for the
other at little cost, and training is slow to settle the split (W, phi* and psi* converge last).
This script measures that, from the ground truth (a diagnosis of the data, never used in training):
per neuron, the R^2 of the true coupling term regressed on (x_i, tanh x_i, 1), over sampled frames.

    python benchmarks/message_self_explained.py runs/reproduce/supp13_transmitters/data runs/reproduce/fig2_baseline/data
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from circuitgnn import open_dataset
from circuitgnn.data.dataset import evenly_spaced_frames
from circuitgnn.simulate.replay import true_circuit


def self_explained_r2(path: Path, n_frames: int, every_neuron: int) -> np.ndarray:
    """Per sampled neuron, R^2 of g_i Omega_i(t) M_i(t) on (x_i, tanh x_i, 1) over ``n_frames`` evenly spaced frames."""
    ds = open_dataset(path)
    circuit = true_circuit(ds)
    frames = evenly_spaced_frames(ds.n_frames, n_frames)
    x = np.asarray(ds.x[frames], dtype=np.float32)
    multiplicative = ds.omega is not None and ds.stimulus_mode == "multiplicative"  # an additive input is not coupling
    omega = np.asarray(ds.omega[frames], dtype=np.float64) if multiplicative else None
    with torch.no_grad():
        m = np.stack([circuit.messages(torch.from_numpy(row)).numpy() for row in x]).astype(np.float64)
    m *= circuit.gain.numpy()[None, :]
    if omega is not None:
        m *= omega
    r2 = []
    for i in range(0, ds.n_neurons, every_neuron):
        design = np.stack([x[:, i], np.tanh(x[:, i]), np.ones(len(x))], axis=1).astype(np.float64)
        coef, *_ = np.linalg.lstsq(design, m[:, i], rcond=None)
        total = np.sum((m[:, i] - m[:, i].mean()) ** 2)
        if total > 0:
            r2.append(1.0 - np.sum((m[:, i] - design @ coef) ** 2) / total)
    return np.asarray(r2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", type=Path, nargs="+", help="simulated dataset folders (with truth/)")
    parser.add_argument("--frames", type=int, default=4000, help="frames sampled evenly over the recording")
    parser.add_argument("--every", type=int, default=7, help="use every this many neurons")
    args = parser.parse_args()
    print(f"{'dataset':60s} {'median R^2':>10s} {'10th pct':>9s} {'90th pct':>9s}")
    for path in args.datasets:
        r2 = self_explained_r2(path, args.frames, args.every)
        print(f"{path!s:60s} {np.median(r2):10.3f} {np.percentile(r2, 10):9.3f} {np.percentile(r2, 90):9.3f}")


if __name__ == "__main__":
    main()
