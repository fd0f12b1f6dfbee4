"""How well deconvolution recovers the activity and its dx/dt from a simulated calcium recording.

For the dataset's first ``--frames`` frames, the activity and dx/dt deconvolved with the
cross-validated spline weight (and with that weight times each ``--factors``) are compared with
the truth (read only to score): R^2 over all neurons and frames, and the slope of the estimate
regressed on the truth (below 1: smoothing shrinks it). The fluorescence itself, taken as the
activity, is the row "recorded". Example::

    circuitgnn simulate configs/beyond/calcium_fig2.yaml --out datasets/calcium
    python benchmarks/deconvolution.py datasets/calcium --frames 4000
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from circuitgnn.data.dataset import Dataset
from circuitgnn.data.deconvolve import deconvolve


def r2(true: np.ndarray, est: np.ndarray) -> float:
    return float(1 - ((true - est) ** 2).sum() / ((true - true.mean(axis=0)) ** 2).sum())


def slope(true: np.ndarray, est: np.ndarray) -> float:
    t, e = true - true.mean(axis=0), est - est.mean(axis=0)
    return float((t * e).sum() / (t * t).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", help="a calcium simulation (simulation.observation.indicator)")
    parser.add_argument("--frames", type=int, default=4000)
    parser.add_argument("--factors", type=float, nargs="*", default=[0.25, 0.5, 2.0, 4.0])
    args = parser.parse_args()
    ds = Dataset(args.dataset)
    truth = ds.truth
    if ds.indicator is None or truth is None or truth.x is None or truth.dxdt is None:
        raise SystemExit(f"{ds.path} is not a calcium simulation with its truth")
    frames = slice(0, min(args.frames, ds.n_frames))
    f = np.asarray(ds.x[frames])
    x, dxdt = (np.asarray(a[frames], dtype=np.float64) for a in (truth.x, truth.dxdt))
    print(f"{ds.path}: {f.shape[0]} frames x {f.shape[1]} neurons, indicator {ds.indicator.describe()}")
    print(f"{'spline weight':>22} {'x R^2':>8} {'x slope':>8} {'dx/dt R^2':>10} {'dx/dt slope':>12} {'seconds':>8}")
    print(f"{'recorded (as activity)':>22} {r2(x, f):8.4f} {slope(x, f):8.3f} {'':>10} {'':>12}")
    chosen = None
    for factor in [1.0, *args.factors]:
        t0 = time.perf_counter()
        out = deconvolve(f, ds.dt, ds.indicator, smoothness=None if chosen is None else chosen * factor)
        chosen = out.smoothness if chosen is None else chosen
        label = f"{out.smoothness:.3g}" + (" (CV)" if factor == 1.0 else f" (x{factor:g})")
        print(
            f"{label:>22} {r2(x, out.x):8.4f} {slope(x, out.x):8.3f} {r2(dxdt, out.dxdt):10.4f} {slope(dxdt, out.dxdt):12.3f} "
            f"{time.perf_counter() - t0:8.1f}"
        )


if __name__ == "__main__":
    main()
