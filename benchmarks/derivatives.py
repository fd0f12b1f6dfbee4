"""How well each derivative estimator recovers dx/dt from a recording, against the simulation's exact drift.

    python benchmarks/derivatives.py DATASET [DATASET ...] [--frames 5000]

DATASET: an observed simulation (``simulation.observation`` in its config), whose exact drift at the
recorded frames is in truth/dxdt.npy. Prints, per method, the relative rms error
rms(estimate - truth) / rms(truth), the correlation of the error with the recorded value's own
measurement noise (a non-zero one biases the fit: the model can learn the noise from its input), and
the regression slope of the estimate on the truth (below 1: the estimate is shrunk), and the time per
1000 frames x 100 neurons.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from circuitgnn.data.dataset import Dataset
from circuitgnn.data.derivatives import METHODS, estimate_derivative


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("datasets", nargs="+")
    parser.add_argument("--frames", type=int, default=5000, help="leading frames used (the spline is slow)")
    parser.add_argument("--neurons", type=int, default=100, help="leading neurons used")
    args = parser.parse_args()
    print(
        f"{'dataset':28s} {'method':8s} {'rel. rms error':>15s} {'corr(err, noise)':>17s} {'slope':>6s} {'s / (1k frames x 100 n.)':>25s}"
    )
    for path in args.datasets:
        ds = Dataset(path)
        truth = ds.truth
        if truth is None or truth.dxdt is None or truth.x is None:
            raise SystemExit(f"{path}: not an observed simulation (no truth/dxdt.npy)")
        sl = (slice(0, args.frames), slice(0, args.neurons))
        x, true_d, clean = (np.asarray(a[sl], dtype=np.float32) for a in (ds.x, truth.dxdt, truth.x))
        noise = x - clean
        obs = ds.meta["observation"]
        label = f"every {obs['every']}, noise {100 * obs['noise']:g} %"
        for method in METHODS:
            t0 = time.perf_counter()
            est = estimate_derivative(x, ds.dt, method)  # type: ignore[arg-type]
            seconds = time.perf_counter() - t0
            err = (est - true_d)[2:-2]  # away from the segment ends
            inner = true_d[2:-2].astype(np.float64)
            slope = float((est[2:-2] * inner).sum() / (inner * inner).sum())
            rel = float(np.sqrt(np.mean(err**2)) / np.sqrt(np.mean(true_d**2)))
            corr = float(np.corrcoef(err.ravel(), noise[2:-2].ravel())[0, 1]) if noise.std() > 0 else float("nan")
            scale = 1000 * 100 / (x.shape[0] * x.shape[1])
            print(f"{label:28s} {method:8s} {rel:15.3f} {corr:17.3f} {slope:6.3f} {seconds * scale:25.3f}")


if __name__ == "__main__":
    main()
