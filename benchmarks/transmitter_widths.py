"""Are the transmitters' widths (Supp. 13: psi_j = tanh(x_j / gamma_j), gamma = 1, 2, 4, 8) determined by the data?
The warm start's spline fit with one psi per pair of groups, told the true types (the truth is read only for that
and to score), on evenly spaced frames of a Supp. 13 dataset; each sender group's width is then read off its psi
curves by least squares of c tanh(x / gamma) + b over the bulk of the activity (1st to 99th percentile), per
receiver group, and the median over receiver groups printed beside the true width.

    OMP_NUM_THREADS=2 python benchmarks/transmitter_widths.py runs/s10/supp13 --frames 5000
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from circuitgnn.analyze.metrics import linear_fit, true_pair_plateaus
from circuitgnn.data.dataset import open_dataset
from circuitgnn.train.varpro import fit_functions


def width(x: np.ndarray, curve: np.ndarray) -> float:
    """The gamma of c tanh(x / gamma) + b closest to ``curve`` in least squares (c and b solved for each gamma)."""
    best, found = np.inf, float("nan")
    for gamma in np.geomspace(0.2, 40, 800):
        basis = np.stack([np.tanh(x / gamma), np.ones_like(x)], axis=1)
        residual = np.linalg.lstsq(basis, curve, rcond=None)[1]
        error = float(residual[0]) if residual.size else float(((basis @ np.linalg.lstsq(basis, curve, rcond=None)[0] - curve) ** 2).sum())
        if error < best:
            best, found = error, float(gamma)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset")
    parser.add_argument("--frames", type=int, default=5000)
    parser.add_argument("--psi-basis", type=int, default=24)
    args = parser.parse_args()
    ds = open_dataset(args.dataset)
    index = np.linspace(0, ds.n_frames - 1, min(args.frames, ds.n_frames)).astype(int)
    x, y = torch.as_tensor(np.asarray(ds.x[index])), torch.as_tensor(np.asarray(ds.dxdt[index]))
    truth = ds.truth
    true_widths = [t["width"] for t in truth.functions["types"]]
    options = {"n_psi": args.psi_basis, "n_phi": 24, "receivers": 128, "dtype": torch.float32}
    start = time.perf_counter()
    shared = fit_functions(x, y, **options)
    print(
        f"shared psi: W R^2 {linear_fit(truth.connectivity, shared.connectivity.numpy() / truth.gains[:, None], off_diagonal=True).r2:.4f}"
    )
    fit = fit_functions(x, y, groups=torch.as_tensor(truth.types), start=shared.psi_coefficients, **options)
    k, types = len(true_widths), truth.types
    # W_ij times each pair's plateau over [0.8, 1] x the activity's std, the fit's and the truth's
    xnorm = float(x.double().std())
    learned, true_plateau = fit.pair_plateaus(xnorm).numpy(), true_pair_plateaus(truth.functions, xnorm)
    scaled = linear_fit(
        truth.connectivity * true_plateau[np.ix_(types, types)],
        fit.connectivity.numpy() * learned[np.ix_(types, types)] / truth.gains[:, None],
        off_diagonal=True,
    )
    print(
        f"one psi per pair of true types: fitted in {time.perf_counter() - start:.0f} s, residual {fit.history[-1]:.3g}, W R^2 pair by pair {scaled.r2:.4f}"
    )
    low, high = np.quantile(x.numpy().reshape(-1)[::97], [0.01, 0.99])
    grid = np.linspace(low, high, 200)
    print(f"activity's 1st to 99th percentile: {low:.1f} to {high:.1f}")
    for h in range(k):
        found = [width(grid, fit.psi_basis.combine(torch.as_tensor(grid), fit.psi_coefficients[g, h]).numpy()) for g in range(k)]
        print(
            f"sender type {h}: true gamma {true_widths[h]:g}, fitted {np.median(found):.2f} (per receiver group: {', '.join(f'{v:.2f}' for v in found)})"
        )


if __name__ == "__main__":
    main()
