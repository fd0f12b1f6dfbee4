"""Where an ensemble's error against the truth comes from: how much of it the members share, whether the members'
spread or their least-squares sd tracks it, and, on sparse W, how the absent and present connections differ.

Reads the members that ``benchmarks/edge_confidence.py`` trained into ``--work`` and the one fits it stored beside
them (``one_fit_member_K.npz``); the truth is read only here, to score.

    python benchmarks/confidence_errors.py DATASET --work runs/s12/conf

Prints, after one scale aligns the truth with the members' mean (off the diagonal):

- each member's overall scale against the others' (:func:`~circuitgnn.analyze.confidence.member_scales`) and the share
  of its difference from the members' mean (before that alignment) that lies along the mean, an overall scale;
- each member's rms error, the mean's, and the correlation between every two members' errors (0: independent;
  the mean's error variance is sd^2 (rho + (1 - rho) / K) for correlation rho);
- binned by least-squares sd / members' sd: the mean's rms error over rms(sd / sqrt(K)) and over rms(least-squares sd);
- the kurtosis of the mean's error over sd / sqrt(K);
- the coverage of the combined 90 % interval with each member's least squares and with their mean, and on sparse W
  for absent and present connections apart;
- the members' least-squares W: its mean's rms error over the rms of their least-squares sd;
- the width of the empirical null (:meth:`EdgeConfidence.with_empirical_null`) of each one fit, of the combined
  confidence and of the ensemble's (near 1 where the standard errors are right on a sparse network; large on a dense one);
- on sparse W: the present weights' error toward the sign of the truth by bins of size (a constant offset is the
  signature of soft-thresholding), and the edge AUC of several rankings (each member's own abs(W) among them).
"""

from __future__ import annotations

import argparse
import itertools
import warnings
from pathlib import Path

import numpy as np
from edge_confidence import stored_one_fits
from scipy import stats

from circuitgnn import open_dataset
from circuitgnn.analyze.confidence import EdgeConfidence, calibration, combined_confidence, ensemble_confidence, plateau_aligned
from circuitgnn.analyze.metrics import edge_auc, linear_fit
from circuitgnn.train.run_folder import load_run


def _rms(v: np.ndarray) -> float:
    return float(np.sqrt(np.mean(v**2)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--work", type=Path, required=True, help="the --work folder of benchmarks/edge_confidence.py")
    parser.add_argument(
        "--own-degree",
        type=lambda v: None if v == "none" else int(v),
        default=3,
        help="which stored one fits (edge_confidence.py --own-degree)",
    )
    args = parser.parse_args()
    ds = open_dataset(args.dataset)
    assert ds.truth is not None, f"{args.dataset} has no ground truth to score against"
    folder = args.work / args.dataset.name
    weights = [plateau_aligned(r.model, r.xnorm) for r in map(load_run, sorted(folder.glob("member_*")))]
    ens = ensemble_confidence(weights)
    k = len(weights)
    truth = ds.truth.connectivity * ds.truth.gains[:, None]
    off = ~np.eye(truth.shape[0], dtype=bool)
    aligned = linear_fit(truth, ens.mean, off_diagonal=True).slope * truth
    errors = np.stack(weights) - aligned
    mean_error = (ens.mean - aligned)[off]
    rho = np.corrcoef(errors[:, off])[np.triu_indices(k, 1)]
    print(f"{k} members: rms error {', '.join(f'{_rms(e[off]):.4g}' for e in errors)}; the mean's {_rms(mean_error):.4g}")
    print(f"correlation between two members' errors: {', '.join(f'{r:.2f}' for r in rho)} (mean {rho.mean():.2f})")
    centre = np.mean(weights, axis=0)[off]
    apart = np.stack(weights)[:, off] - centre
    along = apart @ centre / (centre @ centre)
    scale_share = 1 - ((apart - along[:, None] * centre) ** 2).sum(axis=1) / (apart**2).sum(axis=1)
    print(
        f"members' overall scales (member_scales) {', '.join(f'{c:.3f}' for c in ens.scales)}; share of each member's difference from "
        f"the members' mean that is an overall scale: {', '.join(f'{v:.2f}' for v in scale_share)}"
    )
    sd = ens.sd[off]
    with np.errstate(divide="ignore", invalid="ignore"):
        z = mean_error / (sd / np.sqrt(k))
    print(f"kurtosis of the mean's error over sd / sqrt(K): {stats.kurtosis(z[np.isfinite(z)]):.0f}")

    ones = stored_one_fits(folder, ens.level, args.own_degree)
    if ones:
        ls = np.sqrt(np.mean([o.sd**2 for o in ones], axis=0))[off]
        ratio = ls / sd
        print("binned by least-squares sd / members' sd: n, rms(mean error) / rms(sd / sqrt(K)), / rms(least-squares sd)")
        for lo, hi in ((0, 0.3), (0.3, 0.6), (0.6, 1), (1, 2), (2, np.inf)):
            m = (ratio >= lo) & (ratio < hi)
            if m.any():
                e = _rms(mean_error[m])
                print(f"  [{lo}, {hi}): {m.sum():>7}  {e / _rms(sd[m] / np.sqrt(k)):.2f}  {e / _rms(ls[m]):.2f}")

        def cover(conf: EdgeConfidence) -> str:
            c = calibration(conf, ds.truth.connectivity, ds.truth.gains)
            parts = "".join(f", {name[9:]} {c[name]:.3f}" for name in ("coverage_absent", "coverage_present") if name in c)
            return f"{c['coverage']:.3f}{parts}"

        for j, one in enumerate(ones):
            print(f"combined with member {j}'s least squares: {cover(combined_confidence(ens, one))}")
        combined = combined_confidence(ens, ones)
        print(f"combined with the mean of the {len(ones)} members' least-squares variances: {cover(combined)}")
        ls_error = _rms(np.mean([o.mean for o in ones], axis=0)[off] - aligned[off])
        print(f"the members' least-squares W: rms error of their mean {ls_error:.4g}, {ls_error / _rms(ls):.2f} times the rms of their sd")
        with warnings.catch_warnings():  # a dense network's width is large by nature; printed, not warned about
            warnings.simplefilter("ignore", UserWarning)
            widths = [o.with_empirical_null().null_width for o in (*ones, combined, ens)]
        print(
            f"empirical null width: one fits {', '.join(f'{w:.3g}' for w in widths[:-2])}; combined {widths[-2]:.3g}; ensemble {widths[-1]:.3g}"
        )

    present = truth[off] != 0
    if 0 < present.mean() < 1:
        a = aligned[off][present]
        toward = mean_error[present] * np.sign(a)
        edges = np.quantile(np.abs(a), [0, 0.25, 0.5, 0.75, 0.95, 1])
        print("present weights: error toward the truth's sign, by size")
        for lo, hi in itertools.pairwise(edges):
            m = (np.abs(a) >= lo) & (np.abs(a) <= hi)
            print(f"  |W| in [{lo:.3f}, {hi:.3f}]: mean {toward[m].mean():+.4f}, rms {_rms(toward[m]):.4f}")
        print(f"rms error: absent {_rms(mean_error[~present]):.4g}, present {_rms(mean_error[present]):.4g}")
        w = np.abs(np.where(off, ens.mean, np.nan))
        robust = np.sqrt(np.nanmedian(w, axis=1, keepdims=True) * np.nanmedian(w, axis=0, keepdims=True))
        ranks = {"abs(mean)": ens.mean, "lfdr": -np.log(np.clip(ens.lfdr, 1e-300, 1)), "abs(mean) / moderated sd": ens.z}
        ranks["abs(mean) / robust row and column scale"] = np.nan_to_num(w / robust)
        if ones:
            ranks["abs(mean) / combined se"] = combined.z_raw
        ranks |= {f"member {j}'s own abs(W)": w_j for j, w_j in enumerate(weights)}
        print("edge AUC: " + "; ".join(f"{name} {edge_auc(ds.truth.connectivity, score):.4f}" for name, score in ranks.items()))


if __name__ == "__main__":
    main()
