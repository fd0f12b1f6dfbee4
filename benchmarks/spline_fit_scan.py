"""The warm start's spline fit alone (`circuitgnn.train.varpro.fit_functions`) on a simulated dataset, for several
numbers of frames and basis sizes: W R^2 against the truth (divided by the receivers' gains; the truth is read only
to score), the fit's residual as its normal equations give it and as the data give it, and the precision its
products ran in. Each SPEC is FRAMES,PSI_BASIS,PHI_BASIS[,float32|float64] (the precision asked; float32 by default,
which the fit replaces by float64 where it loses the residual, unless ``--trust-float32``). ``--within T``: the frames are taken from the first T
only; ``--told``: the regression told the true functions (psi = tanh; phi's basis x, tanh x, 1) on the same frames.

    OMP_NUM_THREADS=1 python benchmarks/spline_fit_scan.py runs/reproduce_families/family_sparse_default/data \\
        5000,24,24 20000,24,24 5000,12,12 5000,48,24 5000,24,48 5000,12,24
    OMP_NUM_THREADS=1 python benchmarks/spline_fit_scan.py runs/baselines_data/fig2_baseline --first 10000,24,24 5000,24,24
    OMP_NUM_THREADS=1 python benchmarks/spline_fit_scan.py DATASET --within 10000 --told 5000,24,24 5000,24,24,float64 5000,48,24
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from circuitgnn.analyze.baselines.linear import KnownFunctionRegression, constant, identity
from circuitgnn.analyze.metrics import linear_fit
from circuitgnn.data.dataset import Dataset
from circuitgnn.train import varpro
from circuitgnn.train.varpro import fit_functions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset")
    parser.add_argument("specs", nargs="+", help="FRAMES,PSI_BASIS,PHI_BASIS[,float32|float64]")
    parser.add_argument("--first", action="store_true", help="the first FRAMES consecutive frames instead of evenly spaced ones")
    parser.add_argument("--within", type=int, default=None, help="take the frames from the first WITHIN frames only")
    parser.add_argument("--told", action="store_true", help="also the regression told the true functions (a tanh network)")
    parser.add_argument("--trust-float32", action="store_true", help="skip the fit's precision check (its behaviour before session 9)")
    args = parser.parse_args()
    if args.trust_float32:
        varpro._LOSS_AGREEMENT = float("inf")
    ds = Dataset(args.dataset)
    assert ds.truth is not None and ds.dxdt is not None, f"{args.dataset} needs ground truth and dx/dt"
    gains = ds.truth.gains
    x_all, y_all = np.asarray(ds.x)[: args.within], np.asarray(ds.dxdt)[: args.within]
    scale = float(x_all.std())
    told_done: set[int] = set()
    for spec in args.specs:
        frames, n_psi, n_phi = (int(v) for v in spec.split(",")[:3])
        dtype = getattr(torch, spec.split(",")[3]) if spec.count(",") == 3 else torch.float32
        count = min(frames, len(x_all))
        idx = np.arange(count) if args.first else np.linspace(0, len(x_all) - 1, count).astype(int)
        x, y = torch.as_tensor(x_all[idx] / scale), torch.as_tensor(y_all[idx] / scale)
        start = time.perf_counter()
        fit = fit_functions(x, y, n_psi=n_psi, n_phi=n_phi, iterations=6, receivers=128, dtype=dtype)
        seconds = time.perf_counter() - start
        w = linear_fit(ds.truth.connectivity, fit.connectivity.cpu().numpy() / gains[:, None], off_diagonal=True)
        data_residual = float(((fit.predict(x.float()).double() - y) ** 2).mean())
        print(
            f"frames {len(idx)} psi basis {n_psi} phi basis {n_phi} ({str(dtype)[6:]} asked, {str(fit.products)[6:]} ran): "
            f"W R^2 {w.r2:.4f}, residual {fit.history[-1]:.3g} (normal equations) {data_residual:.3g} (data), {seconds:.0f} s",
            flush=True,
        )
        if args.told and count not in told_done:
            told_done.add(count)
            told = KnownFunctionRegression(np.tanh, (identity, np.tanh, constant)).fit(x_all[idx], ds.dt, dxdt=y_all[idx])
            w = linear_fit(ds.truth.connectivity, told.connectivity_ / gains[:, None], off_diagonal=True)
            print(f"frames {len(idx)}, told the true functions: W R^2 {w.r2:.4f}", flush=True)


if __name__ == "__main__":
    main()
