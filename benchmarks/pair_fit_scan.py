"""The warm start's spline fit on a "transmitters and receptors" dataset (Supp. 14: psi_ij = tanh(x_j / w_i) - theta_j
x_j): one shared psi, one psi per pair of groups told the true types (to measure the fit alone; the truth is read only
here and to score), and the warm start's own label-free grouping (update curves, then each receiver's preferred psi).
For each: W R^2 with the paper's per-sender correction (every pair's psi has plateau 1, so W_ij carries the true
pair's plateau) and pair by pair (W_ij psi_ij against the truth's, both plateaus over [0.8, 1] x the activity's std),
the adjusted Rand index of the groups, the time.

    OMP_NUM_THREADS=2 python benchmarks/pair_fit_scan.py runs/s10/supp14 --frames 5000
"""

from __future__ import annotations

import argparse
import importlib
import time

import numpy as np
import torch
from sklearn.metrics import adjusted_rand_score

from circuitgnn.analyze.metrics import linear_fit, true_pair_plateaus
from circuitgnn.data.dataset import open_dataset
from circuitgnn.train.varpro import FunctionFit, fit_functions

warm = importlib.import_module("circuitgnn.train.warm_start")  # the module, not the function of the same name


def scores(fit: FunctionFit, truth, xnorm: float) -> str:
    """The two W R^2 of a fit against the truth (divided by the receivers' gains)."""
    types = truth.types
    true_plateau = true_pair_plateaus(truth.functions, xnorm)[np.ix_(types, types)]
    groups = np.zeros(len(types), dtype=int) if fit.groups is None else fit.groups.numpy()
    k = groups.max() + 1
    learned = fit.pair_plateaus(xnorm).numpy()
    w = fit.connectivity.numpy() / truth.gains[:, None]
    paper = linear_fit(truth.connectivity, w, off_diagonal=True).r2
    pair = linear_fit(truth.connectivity * true_plateau, w * learned[np.ix_(groups, groups)], off_diagonal=True).r2
    ari = adjusted_rand_score(types, groups)
    return f"W R^2 {paper:.4f} (per-sender correction), {pair:.4f} (pair by pair); groups {k}, ARI {ari:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset")
    parser.add_argument("--frames", type=int, default=5000, help="evenly spaced frames (the warm start's default)")
    parser.add_argument("--max-groups", type=int, default=10)
    args = parser.parse_args()
    ds = open_dataset(args.dataset)
    index = np.linspace(0, ds.n_frames - 1, min(args.frames, ds.n_frames)).astype(int)
    x, y = torch.as_tensor(np.asarray(ds.x[index])), torch.as_tensor(np.asarray(ds.dxdt[index]))
    xnorm, truth = float(x.double().std()), ds.truth
    options = {"n_psi": 24, "n_phi": 24, "receivers": 128, "dtype": torch.float32}
    start = time.perf_counter()
    shared = fit_functions(x, y, **options)
    print(f"shared psi: {scores(shared, truth, xnorm)}; {time.perf_counter() - start:.0f} s", flush=True)
    start = time.perf_counter()
    told = fit_functions(x, y, groups=torch.as_tensor(truth.types), start=shared.psi_coefficients, **options)
    print(f"one psi per pair of true types: {scores(told, truth, xnorm)}; {time.perf_counter() - start:.0f} s", flush=True)
    start = time.perf_counter()

    def show(fit: FunctionFit) -> None:
        steps = len(fit.history) - 1
        print(
            f"label-free, a grouped fit ({steps} steps): {scores(fit, truth, xnorm)}; {time.perf_counter() - start:.0f} s so far",
            flush=True,
        )

    options["iterations"] = 6
    fit = warm.grouped_fit(x, y, shared, options, args.max_groups, seed=0, log=show)
    print(f"label-free, the warm start's fit: {scores(fit, truth, xnorm)}; {time.perf_counter() - start:.0f} s in all")


if __name__ == "__main__":
    main()
