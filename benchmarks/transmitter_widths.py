"""Are the transmitters' widths (Supp. 13: psi_j = tanh(x_j / gamma_j), gamma = 1, 2, 4, 8) determined by the data, and
does the warm start find them without labels? Spline fits on evenly spaced frames of a Supp. 13 dataset:

* ``sender``: one psi per group of senders, told the true types (the truth is read only for that and to score);
* ``label-free``: as the warm start does it (``warm_start.sender_fit``: K-means groups of the shared fit's update
  curves, on purpose too many, then one psi per group of senders); each true type's width is the median over the
  groups its neurons fell in, weighted by their counts;
* ``pair`` (with ``--pair``): one psi per pair of true types, as for Supp. 14.

Each psi's width is read by least squares of c tanh(x / gamma) + b over the bulk of the activity (1st to 99th
percentile) and printed beside the true width, with W's R^2 (the paper's per-sender correction) and the time.

    OMP_NUM_THREADS=2 python benchmarks/transmitter_widths.py runs/s11/supp13 --frames 5000
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from circuitgnn.analyze.metrics import linear_fit, true_pair_plateaus
from circuitgnn.data.dataset import open_dataset
from circuitgnn.train.varpro import FunctionFit, fit_functions
from circuitgnn.train.warm_start import sender_fit


def width(x: np.ndarray, curve: np.ndarray) -> float:
    """The gamma of c tanh(x / gamma) + b closest to ``curve`` in least squares (c and b solved for each gamma)."""
    best, found = np.inf, float("nan")
    for gamma in np.geomspace(0.2, 40, 800):
        basis = np.stack([np.tanh(x / gamma), np.ones_like(x)], axis=1)
        error = float(((basis @ np.linalg.lstsq(basis, curve, rcond=None)[0] - curve) ** 2).sum())
        if error < best:
            best, found = error, float(gamma)
    return found


def sender_widths(fit: FunctionFit, grid: np.ndarray) -> np.ndarray:
    """The width of each sender group's psi, for a fit with one psi per group of senders: (K,)."""
    return np.array([width(grid, fit.psi_basis.combine(torch.as_tensor(grid), row).numpy()) for row in fit.psi_coefficients[0]])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset")
    parser.add_argument("--frames", type=int, default=5000)
    parser.add_argument("--psi-basis", type=int, default=24)
    parser.add_argument("--groups", type=int, default=10, help="the label-free fit's K-means groups (the warm start's max_types)")
    parser.add_argument("--pair", action="store_true", help="also the fit with one psi per pair of true types")
    args = parser.parse_args()
    ds = open_dataset(args.dataset)
    index = np.linspace(0, ds.n_frames - 1, min(args.frames, ds.n_frames)).astype(int)
    x, y = torch.as_tensor(np.asarray(ds.x[index])), torch.as_tensor(np.asarray(ds.dxdt[index]))
    truth = ds.truth
    true_widths = np.array([t["width"] for t in truth.functions["types"]])
    k, types = len(true_widths), truth.types
    options = {"n_psi": args.psi_basis, "n_phi": 24, "receivers": 128, "dtype": torch.float32}
    xnorm = float(x.double().std())
    low, high = np.quantile(x.numpy().reshape(-1)[::97], [0.01, 0.99])
    grid = np.linspace(low, high, 200)
    print(
        f"{len(x)} frames; activity's 1st to 99th percentile: {low:.1f} to {high:.1f}; true gamma {', '.join(f'{g:g}' for g in true_widths)}"
    )

    def w_r2(fit: FunctionFit) -> float:
        """W's R^2 with the paper's per-sender correction (each sender's psi at its plateau over [0.8, 1] xnorm)."""
        plateau = fit.pair_plateaus(xnorm).numpy()[0] if fit.groups is not None else np.ones(1)
        sender = plateau[fit.groups.numpy()] if fit.groups is not None else plateau[np.zeros(len(types), dtype=int)]
        return linear_fit(truth.connectivity, fit.connectivity.numpy() * sender[None, :] / truth.gains[:, None], off_diagonal=True).r2

    def report(name: str, fit: FunctionFit, seconds: float, found: np.ndarray) -> None:
        error = 100 * np.abs(found / true_widths - 1)
        print(
            f"{name}: {seconds:.0f} s, W R^2 {w_r2(fit):.4f}, gamma {', '.join(f'{g:.2f}' for g in found)} "
            f"(off by {', '.join(f'{e:.1f}' for e in error)} %)"
        )

    start = time.perf_counter()
    shared = fit_functions(x, y, **options)
    shared_seconds = time.perf_counter() - start
    print(f"shared psi: {shared_seconds:.0f} s, W R^2 {w_r2(shared):.4f}")

    start = time.perf_counter()
    told = fit_functions(x, y, groups=torch.as_tensor(types), by_receiver=False, start=shared.psi_coefficients, **options)
    report("one psi per sender type, told the types", told, time.perf_counter() - start, sender_widths(told, grid))

    start = time.perf_counter()
    found = sender_fit(x, y, shared, {**options, "iterations": 6}, args.groups, seed=0)
    seconds = time.perf_counter() - start
    assert found.groups is not None
    groups = found.groups.numpy()
    per_group = sender_widths(found, grid)
    weighted = []
    for t in range(k):  # the median over the true type's neurons of their group's width
        weighted.append(float(np.median(per_group[groups[types == t]])))
    purity = np.mean([np.bincount(types[groups == g]).max() / np.sum(groups == g) for g in np.unique(groups)])
    report(f"label-free, {len(per_group)} groups (mean purity {purity:.3f})", found, seconds + shared_seconds, np.array(weighted))

    if args.pair:
        start = time.perf_counter()
        fit = fit_functions(x, y, groups=torch.as_tensor(types), start=shared.psi_coefficients, **options)
        learned, true_plateau = fit.pair_plateaus(xnorm).numpy(), true_pair_plateaus(truth.functions, xnorm)
        scaled = linear_fit(
            truth.connectivity * true_plateau[np.ix_(types, types)],
            fit.connectivity.numpy() * learned[np.ix_(types, types)] / truth.gains[:, None],
            off_diagonal=True,
        )
        pair = np.array(
            [
                np.median([width(grid, fit.psi_basis.combine(torch.as_tensor(grid), fit.psi_coefficients[g, h]).numpy()) for g in range(k)])
                for h in range(k)
            ]
        )
        report(f"one psi per pair of true types (W R^2 pair by pair {scaled.r2:.4f})", fit, time.perf_counter() - start, pair)


if __name__ == "__main__":
    main()
