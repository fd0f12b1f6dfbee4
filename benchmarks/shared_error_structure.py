"""Where the error of an inferred W against the truth lies: its rms, the slope of its rows' means on the truth's
(below 1: rows shrunk along the mean of their inputs), and the share of its energy in its first singular pair with
the correlation of that pair's receiver side with the truth's row sums (the truth is read only here, to score).

    python benchmarks/shared_error_structure.py runs/s16/data/fig2_baseline runs/s16/conf/fig2_baseline/member_* \\
        runs/s16/conf/fig2_baseline/one_fit_own3_member_0.npz --mean

Each argument after the dataset is a trained run folder (its W with psi*'s scale moved in) or a stored one fit
(``.npz`` with ``mean``); ``--mean`` adds the run folders' mean after aligning their overall scales.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from circuitgnn import open_dataset
from circuitgnn.analyze.confidence import ensemble_confidence, plateau_aligned
from circuitgnn.analyze.metrics import linear_fit
from circuitgnn.train.run_folder import load_run


def structure(w: np.ndarray, truth: np.ndarray) -> str:
    """rms error, rows' mean slope, first singular pair's share and its receiver side's correlation with the row sums."""
    off = ~np.eye(len(truth), dtype=bool)
    t = np.where(off, linear_fit(truth, w, off_diagonal=True).slope * truth, 0.0)
    e = np.where(off, w - t, 0.0)
    rows_w, rows_t = np.where(off, w, 0.0).sum(axis=1), t.sum(axis=1)
    u, s, _ = np.linalg.svd(e)
    return (
        f"rms {np.sqrt(np.mean(e[off] ** 2)):.5f}, rows' mean slope {rows_w @ rows_t / (rows_t @ rows_t):.3f}, first singular pair "
        f"{s[0] ** 2 / np.sum(s**2):.3f} of the energy (receiver side vs the true row sums: r = {abs(np.corrcoef(u[:, 0], rows_t)[0, 1]):.2f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("estimates", nargs="+", type=Path, help="run folders or stored one fits (.npz)")
    parser.add_argument("--mean", action="store_true", help="also the run folders' mean, their overall scales aligned")
    args = parser.parse_args()
    ds = open_dataset(args.dataset)
    assert ds.truth is not None, f"{args.dataset} has no ground truth to score against"
    truth = ds.truth.connectivity * ds.truth.gains[:, None]
    runs = []
    for path in args.estimates:
        if path.suffix == ".npz":
            w = np.load(path)["mean"]
            print(f"{path}: {structure(w, truth)}")
        else:
            run = load_run(path)
            runs.append(plateau_aligned(run.model, run.xnorm))
            print(f"{path} ({run.log[-1]['iteration'] if run.log else 0} iterations): {structure(runs[-1], truth)}")
    if args.mean and len(runs) >= 2:
        print(f"mean of the {len(runs)} runs: {structure(ensemble_confidence(runs).mean, truth)}")


if __name__ == "__main__":
    main()
