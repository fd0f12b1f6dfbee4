"""The warm start's spline fit alone (`circuitgnn.train.varpro.fit_functions`) on a simulated dataset, for several
numbers of frames and basis sizes: W R^2 against the truth (divided by the receivers' gains; the truth is read only
to score) and the fit's residual. Each SPEC is FRAMES,PSI_BASIS,PHI_BASIS.

    OMP_NUM_THREADS=1 python benchmarks/spline_fit_scan.py runs/reproduce_families/family_sparse_default/data \\
        5000,24,24 20000,24,24 5000,12,12 5000,48,24 5000,24,48 5000,12,24
    OMP_NUM_THREADS=1 python benchmarks/spline_fit_scan.py runs/baselines_data/fig2_baseline --first 10000,24,24 5000,24,24
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from circuitgnn.analyze.metrics import linear_fit
from circuitgnn.data.dataset import Dataset
from circuitgnn.train.varpro import fit_functions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset")
    parser.add_argument("specs", nargs="+", help="FRAMES,PSI_BASIS,PHI_BASIS")
    parser.add_argument("--first", action="store_true", help="the first FRAMES consecutive frames instead of evenly spaced ones")
    args = parser.parse_args()
    ds = Dataset(args.dataset)
    assert ds.truth is not None and ds.dxdt is not None, f"{args.dataset} needs ground truth and dx/dt"
    gains = ds.truth.gains
    x_all, y_all = np.asarray(ds.x), np.asarray(ds.dxdt)
    scale = float(x_all.std())
    for spec in args.specs:
        frames, n_psi, n_phi = (int(v) for v in spec.split(","))
        count = min(frames, len(x_all))
        idx = np.arange(count) if args.first else np.linspace(0, len(x_all) - 1, count).astype(int)
        x, y = torch.as_tensor(x_all[idx] / scale), torch.as_tensor(y_all[idx] / scale)
        start = time.perf_counter()
        fit = fit_functions(x, y, n_psi=n_psi, n_phi=n_phi, iterations=6, receivers=128, dtype=torch.float32)
        w = linear_fit(ds.truth.connectivity, fit.connectivity.cpu().numpy() / gains[:, None], off_diagonal=True)
        print(
            f"frames {len(idx)} psi basis {n_psi} phi basis {n_phi}: W R^2 {w.r2:.4f}, residual {fit.history[-1]:.3g}, "
            f"{time.perf_counter() - start:.0f} s",
            flush=True,
        )


if __name__ == "__main__":
    main()
