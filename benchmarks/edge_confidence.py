"""Are the per-edge intervals calibrated? An ensemble of fits and the one-fit least-squares intervals on a
simulated dataset, scored against its true W (the truth is read only here, to score).

For each dataset: K members (seeds and block-bootstrap resamples, each trained for ``--minutes``, or for
``--iterations``, which makes a replicate the same on every machine); the
ensemble's 90 % intervals; each member's one-fit intervals (least squares given its phi* and psi*) and
their time; the ensemble's intervals combined with the mean of the members' least-squares variances (and with
each member's alone); the coverage of the true scale-aligned weights by each; on sparse W the edge-detection AUC of
ranking by |mean| / sd beside ranking by |W|; how the one-fit and ensemble standard deviations compare; type
stability. Results go to ``--out`` as JSON, one line per dataset.

    python benchmarks/edge_confidence.py DATASET... --members 4 --minutes 4 --work runs/confidence \\
        --out benchmarks/results/edge_confidence.jsonl

``--rescore`` scores the members already in ``--work`` again, without training (e.g. after a change of the
ranking score), and prints the ensemble's calibration; with ``--one-fit`` also the members' one-fit intervals
(computed once, then read from ``one_fit_own3_member_K.npz`` beside the members; ``--own-degree``) and the two combined (:func:`~circuitgnn.analyze.confidence.combined_confidence`), as a measurement also records.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from records import append_record
from scipy import stats

from circuitgnn import CircuitGNN, open_dataset
from circuitgnn.analyze.confidence import EdgeConfidence, calibration, combined_confidence, ensemble_confidence, plateau_aligned
from circuitgnn.analyze.metrics import linear_fit, matched_accuracy
from circuitgnn.config import WarmStartConfig, config_from_dict
from circuitgnn.data.dataset import GroundTruth
from circuitgnn.device import environment
from circuitgnn.ensemble import CircuitGNNEnsemble
from circuitgnn.train.run_folder import load_run


def _rms_errors(weights: list[np.ndarray], truth_w: np.ndarray) -> list[float]:
    """Each W's root-mean-square distance from the truth after one scale aligns the two (off the diagonal)."""
    off = ~np.eye(truth_w.shape[0], dtype=bool)
    return [float(np.sqrt(np.mean((w - linear_fit(truth_w, w, off_diagonal=True).slope * truth_w)[off] ** 2))) for w in weights]


def _one_fit_prefix(own_degree: int | None) -> str:
    """The stored one fits' file names: ``one_fit_member_K.npz`` for phi* as learned (as before session 17),
    ``one_fit_own{p}_member_K.npz`` with the receivers' own terms of degree p."""
    return "one_fit_member_" if own_degree is None else f"one_fit_own{own_degree}_member_"


def stored_one_fits(folder: Path, level: float, own_degree: int | None = 3) -> list[EdgeConfidence]:
    """The one-fit intervals at ``level`` stored beside the members in ``folder`` (see :func:`_one_fit_prefix`), in member order."""
    out = []
    prefix = _one_fit_prefix(own_degree)
    for path in sorted(folder.glob(f"{prefix}*.npz"), key=lambda p: int(p.stem.rsplit("_", 1)[1])):
        z = np.load(path)
        half = stats.norm.ppf(0.5 + level / 2) * z["sd"]
        out.append(EdgeConfidence(z["mean"], z["sd"], z["mean"] - half, z["mean"] + half, level, "least_squares", float(z["seconds"])))
    return out


def _one_fits(
    folder: Path, level: float, count: int, x: np.ndarray, dxdt: np.ndarray | None, own_degree: int | None
) -> list[EdgeConfidence]:
    """The one-fit intervals at ``level`` of the first ``count`` members in ``folder``, each computed once and stored
    beside the members so that a rescore need not recompute them."""
    for k in range(count):
        path = folder / f"{_one_fit_prefix(own_degree)}{k}.npz"
        if not path.exists():
            one = CircuitGNN.load(folder / f"member_{k}", device="cpu").edge_confidence(x, dxdt, level=level, own_degree=own_degree)
            np.savez(folder / "one_fit.partial.npz", mean=one.mean, sd=one.sd, seconds=one.seconds)
            (folder / "one_fit.partial.npz").replace(path)
    return stored_one_fits(folder, level, own_degree)[:count]


def _one_fit_scores(ones: list[EdgeConfidence], ensemble: EdgeConfidence, truth: GroundTruth) -> dict:
    """The calibration of member 0's one-fit intervals, of the ensemble's combined with the mean of the members'
    least-squares variances and with each member's alone; on sparse W, the edge AUCs when the members' least-squares W
    ranks the connections instead of their mean, and each with the empirical null; the one fits' times; how member 0's
    sd compares with the ensemble's."""
    score = lambda conf: calibration(conf, truth.connectivity, truth.gains)  # noqa: E731
    off = ~np.eye(truth.connectivity.shape[0], dtype=bool)
    ratio = ones[0].sd[off] / ensemble.sd[off]
    combined = combined_confidence(ensemble, ones)
    tested = combined_confidence(ensemble, ones, "least_squares") if len(ones) > 1 else None
    sparse = {}
    if np.mean(truth.connectivity[off] == 0) > 0.5:  # the empirical null needs most connections absent
        sparse["combined_empirical_null"] = score(combined.with_empirical_null())
        sparse["one_fit_empirical_null"] = score(ones[0].with_empirical_null())
        if tested is not None:
            sparse["combined_tested_on_least_squares_empirical_null"] = score(tested.with_empirical_null())
            if tested.test is not None:
                sparse["least_squares_combined_empirical_null"] = score(tested.test.with_empirical_null())
    return sparse | {
        "one_fit": score(ones[0]),
        "combined": score(combined),
        "combined_one_member": [score(combined_confidence(ensemble, one))["coverage"] for one in ones],
        "combined_tested_on_least_squares": (
            {k: v for k, v in score(tested).items() if k.startswith(("auc_", "confident_"))} if tested is not None else {}
        ),
        "least_squares_combined": score(tested.test) if tested is not None and tested.test is not None else {},
        "least_squares_mean_w_rms_error": (
            _rms_errors([tested.test.mean], truth.connectivity * truth.gains[:, None])[0]
            if tested is not None and tested.test is not None
            else None
        ),
        "one_fit_members": len(ones),
        "one_fit_seconds": [one.seconds for one in ones],
        "one_fit_w_rms_error": _rms_errors([one.mean for one in ones], truth.connectivity * truth.gains[:, None]),
        "sd_ratio_one_fit_to_ensemble": {q: float(np.quantile(ratio, p)) for q, p in (("q10", 0.1), ("median", 0.5), ("q90", 0.9))},
        "sd_ratio_one_fit_to_least_squares_combined": (
            {
                q: float(np.quantile(ones[0].sd[off] / ensemble.scales[0] / tested.test.sd[off], p))
                for q, p in (("q10", 0.1), ("median", 0.5), ("q90", 0.9))
            }
            if tested is not None and tested.test is not None and ensemble.scales is not None
            else {}
        ),
        "confident_edges_one_fit": int(ones[0].nonzero().sum()),
    }


def _detection_line(row: dict) -> str:
    """On sparse W: the coverage, the edge AUCs and the precision and recall of the confident() list of the combined
    confidence tested on the members' mean and on their least squares, with the empirical null, and of one fit."""
    fit, ls = row.get("combined", {}), row.get("combined_tested_on_least_squares", {})
    if "auc_lfdr" not in fit or "auc_lfdr" not in ls:
        return ""
    variants = [("tested on the members' mean", fit), ("on their least squares", ls)]
    for name, key in (
        ("with the empirical null", "combined_empirical_null"),
        ("on their least squares with the empirical null", "combined_tested_on_least_squares_empirical_null"),
        ("one fit", "one_fit"),
        ("one fit with the empirical null", "one_fit_empirical_null"),
    ):
        if key in row:
            variants.append((name, row[key]))
    return "".join(
        f"; {name}: coverage {c.get('coverage', fit['coverage']):.3f} (absent {c.get('coverage_absent', fit['coverage_absent']):.3f}, "
        f"present {c.get('coverage_present', fit['coverage_present']):.3f}), edge AUC lfdr {c['auc_lfdr']:.4f}, |mean|/se {c['auc_z_raw']:.4f} "
        f"(|W| {fit['auc_abs_w']:.4f}), confident() lists {c['confident_count']}, precision {c['confident_precision']:.3f} (promised "
        f"{1 - c['confident_promised_fdr']:.4f}), recall {c['confident_recall']:.3f}"
        for name, c in variants
    )


def measure(
    path: Path,
    members: int,
    minutes: float,
    work: Path,
    level: float,
    warm: bool = False,
    one_fit: bool = True,
    no_shrink: bool = False,
    seed: int | None = None,
    iterations: int | None = None,
    own_degree: int | None = 3,
) -> dict:
    ds = open_dataset(path)
    truth = ds.truth
    assert truth is not None, f"{path} has no ground truth to score against"
    settings = dict(ds.meta["config"])
    if no_shrink:  # the proximal L1 shrinks every member's present weights alike, a bias no spread between members shows
        settings["training"] = {
            **settings["training"],
            "regularization": {**settings["training"].get("regularization", {}), "w_shrink": {"value": 0.0}},
        }
    config = config_from_dict(settings, source=str(path))
    if iterations is None:
        config.training.max_minutes = minutes
    else:  # a fixed number of steps, whatever the machine's speed, the epochs (and what starts with them) unchanged
        config.training.max_minutes, config.training.max_iterations = None, iterations
    if seed is not None:  # member k trains with seed + k
        config.training.seed = seed
    if warm:  # each member starts from the spline fit of its own block-bootstrap resample
        config.training.extensions.warm_start = WarmStartConfig()
    activity = ds.activity()
    a, b = activity.train_bounds()[0]
    x = np.asarray(ds.x[a:b])
    dxdt = None if ds.dxdt is None else np.asarray(ds.dxdt[a:b])
    start = time.perf_counter()
    ens = CircuitGNNEnsemble(members, model=config.model, training=config.training, level=level, progress=False)
    ens.fit(x, ds.dt, dxdt, folder=work / path.name)
    ensemble_seconds = time.perf_counter() - start
    gains = truth.gains
    aligned_truth = truth.connectivity * gains[:, None]
    row = {
        "dataset": path.name,
        "n_neurons": ds.n_neurons,
        "frames": int(b - a),
        "members": members,
        "minutes_per_member": minutes if iterations is None else None,
        "iterations_per_member": iterations,
        "warm_start": warm,
        "w_shrink": config.training.regularization.w_shrink.value,
        "seed": config.training.seed,
        "block_frames": ens.block_,
        "member_scales": _scales(ens.confidence_),
        "member_iterations": [_last_iteration(m.history_) for m in ens.members_],
        "ensemble": calibration(ens.confidence_, truth.connectivity, gains),
        "ensemble_seconds": ensemble_seconds,
        "member_w_rms_error": _rms_errors([plateau_aligned(m.model_, m.xnorm_) for m in ens.members_], aligned_truth),
        "mean_w_rms_error": _rms_errors([ens.confidence_.mean], aligned_truth)[0],
        "type_stability_ari": ens.type_stability_,
        "member_type_accuracy": [matched_accuracy(truth.types, m.types_) for m in ens.members_],
        "confident_edges_ensemble": int(ens.confidence_.nonzero().sum()),
        "machine": environment(),
    }
    if one_fit:
        row |= {"own_degree": own_degree} | _one_fit_scores(
            _one_fits(work / path.name, level, members, x, dxdt, own_degree), ens.confidence_, truth
        )
    return row


def _last_iteration(log: list[dict]) -> int:
    """The iterations a member trained for (its log's last line)."""
    return int(log[-1]["iteration"]) if log else 0


def _scales(conf: EdgeConfidence) -> list[float]:
    assert conf.scales is not None
    return [round(float(c), 4) for c in conf.scales]


def rescore(path: Path, work: Path, level: float, one_fit: bool = False, align_scale: bool = True, own_degree: int | None = 3) -> dict:
    """The calibration of the ensemble whose members were trained into ``work``/NAME/member_*; with ``one_fit``, also
    that of the members' least-squares intervals and of the two combined (on the frames the members were fitted to).
    ``align_scale``: divide each member's W by its overall scale first (:func:`~circuitgnn.analyze.confidence.member_scales`)."""
    ds = open_dataset(path)
    truth = ds.truth
    assert truth is not None, f"{path} has no ground truth to score against"
    folders = sorted((work / path.name).glob("member_*"))
    runs = [load_run(p) for p in folders]
    weights = [plateau_aligned(r.model, r.xnorm) for r in runs]
    conf = ensemble_confidence(weights, level, align_scale=align_scale)
    aligned_truth = truth.connectivity * truth.gains[:, None]
    row = {"dataset": path.name, "members": len(runs), "work": str(work), "rescored": True, "member_scales": _scales(conf),
           "member_iterations": [_last_iteration(r.log) for r in runs],
           "ensemble": calibration(conf, truth.connectivity, truth.gains),
           "member_w_rms_error": _rms_errors(weights, aligned_truth),
           "mean_w_rms_error": _rms_errors([conf.mean], aligned_truth)[0],
           "machine": environment()}  # fmt: skip
    if one_fit:
        a, b = ds.activity().train_bounds()[0]
        dxdt = None if ds.dxdt is None else np.asarray(ds.dxdt[a:b])
        one_fits = _one_fits(work / path.name, level, len(runs), np.asarray(ds.x[a:b]), dxdt, own_degree)
        row |= {"own_degree": own_degree} | _one_fit_scores(one_fits, conf, truth)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("datasets", nargs="+", type=Path)
    parser.add_argument("--members", type=int, default=4)
    parser.add_argument("--minutes", type=float, default=4.0, help="training budget of each member")
    parser.add_argument("--iterations", type=int, help="train each member for this many iterations instead of --minutes")
    parser.add_argument("--level", type=float, default=0.9)
    parser.add_argument("--warm-start", action="store_true", help="members start from the spline fit (training.extensions.warm_start)")
    parser.add_argument("--work", type=Path, default=Path("runs/confidence"), help="the members' run folders (resumable)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/edge_confidence.jsonl"))
    parser.add_argument(
        "--skip-one-fit",
        action="store_true",
        help="do not compute the members' one-fit intervals (about 5 min each for N = 1000, 100,000 frames, on one thread)",
    )
    parser.add_argument(
        "--no-shrink", action="store_true", help="train the members without the config's proximal L1 on W (regularization.w_shrink)"
    )
    parser.add_argument("--seed", type=int, help="the members' first training seed (default: the dataset config's)")
    parser.add_argument("--rescore", action="store_true", help="score the members in --work again, without training")
    parser.add_argument("--one-fit", action="store_true", help="with --rescore: also the members' one-fit and the combined intervals")
    parser.add_argument(
        "--own-degree",
        type=lambda v: None if v == "none" else int(v),
        default=3,
        help="the one fits' own terms: the degree of each receiver's polynomial (none: phi* as learned, as before session 17)",
    )
    parser.add_argument(
        "--no-align-scale", action="store_true", help="with --rescore: compare the members without aligning their overall scales"
    )
    args = parser.parse_args()
    print(f"torch threads {torch.get_num_threads()}")
    for path in args.datasets:
        if args.rescore:
            row = rescore(path, args.work, args.level, args.one_fit, not args.no_align_scale, args.own_degree)
            append_record(args.out, row)
            print(
                f"{row['dataset']} ({row['members']} members in {args.work}, scales {row['member_scales']}, iterations {row['member_iterations']}): {row['ensemble']}; W rms error: members {row['member_w_rms_error']}, mean {row['mean_w_rms_error']:.3g}"
                + (
                    f"; one fit {row['one_fit']['coverage']:.3f}, combined {row['combined']['coverage']:.3f}, centred on the members' "
                    f"least squares {row['least_squares_combined'].get('coverage', float('nan')):.3f} (with one member's "
                    f"least squares: {', '.join(f'{v:.3f}' for v in row['combined_one_member'])})"
                    if "combined" in row
                    else ""
                )
                + _detection_line(row)
            )
            continue
        row = measure(
            path,
            args.members,
            args.minutes,
            args.work,
            args.level,
            args.warm_start,
            not args.skip_one_fit,
            args.no_shrink,
            args.seed,
            args.iterations,
            args.own_degree,
        )
        append_record(args.out, row)
        e = row["ensemble"]
        one = (
            f", one fit {row['one_fit']['coverage']:.3f} ({row['one_fit_seconds'][0]:.0f} s each against {row['ensemble_seconds']:.0f} s), "
            f"the two combined {row['combined']['coverage']:.3f}, centred on the members' least squares "
            f"{row['least_squares_combined'].get('coverage', float('nan')):.3f} (with one member's least squares: "
            f"{', '.join(f'{v:.3f}' for v in row['combined_one_member'])}); "
            f"one-fit sd / ensemble sd: median {row['sd_ratio_one_fit_to_ensemble']['median']:.2f}"
            if "one_fit" in row
            else ""
        )
        print(
            f"{row['dataset']}: coverage of {args.level:.0%} intervals: ensemble {e['coverage']:.3f}{one}; "
            f"W rms error: members {', '.join(f'{v:.3g}' for v in row['member_w_rms_error'])}, mean {row['mean_w_rms_error']:.3g}; "
            f"type stability (ARI) {row['type_stability_ari']:.3f}"
            + (f"; AUC lfdr {e['auc_lfdr']:.3f}, |mean|/sd {e['auc_z']:.3f} against |W| {e['auc_abs_w']:.3f}" if "auc_z" in e else "")
            + _detection_line(row)
        )


if __name__ == "__main__":
    main()
