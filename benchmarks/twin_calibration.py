"""Does a twin of the data stand in for it? The shared factor of the combined intervals found on the twin (the recorded
states, member 0's drift as dx/dt) against the one the truth would choose, on an ensemble trained by
``benchmarks/edge_confidence.py --calibrated`` (the truth is read only to score).

    python benchmarks/twin_calibration.py runs/s16/data/fig2_baseline --work runs/s16/conf --seed 500
    python benchmarks/twin_calibration.py DATASET --work WORK --seed 500 --no-noise --twin quiet   # a twin without noise

For the real ensemble (WORK/NAME/member_k) and its twin (WORK/NAME/calibration[_TWIN]/member_k; trained here when
missing, with the members' settings of edge_confidence.py) it prints the combined coverage at factor 1, the shared
factor found on the twin and the truth's choice, the same for one factor on the whole half-width, the coverage of the
real intervals with the twin's factors, and the rms error, least-squares sd and members' own sd of each.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from edge_confidence import stored_one_fits
from records import append_record

from circuitgnn import open_dataset
from circuitgnn.analyze.confidence import (
    _aligned_truth,
    _combined_parts,
    calibration,
    combined_confidence,
    ensemble_confidence,
    fit_shared_factor,
    frame_noise_sd,
    plateau_aligned,
)
from circuitgnn.config import WarmStartConfig, config_from_dict
from circuitgnn.device import environment
from circuitgnn.ensemble import CircuitGNNEnsemble
from circuitgnn.train.run_folder import load_run


def _half_width_factor(conf, truth: np.ndarray) -> float:
    """The factor on every half-width for which the intervals cover ``truth`` at their level."""
    off = ~np.eye(len(truth), dtype=bool)
    dev = (np.abs(conf.mean - _aligned_truth(conf, truth, None)[0]) / (conf.upper - conf.mean))[off]
    return float(np.quantile(dev, conf.level))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--seed", type=int, required=True, help="the members' first seed (edge_confidence.py --seed)")
    parser.add_argument("--iterations", type=int, default=7000)
    parser.add_argument("--members", type=int, default=4)
    parser.add_argument("--no-noise", action="store_true", help="a twin without white noise")
    parser.add_argument("--twin", default="", help="suffix of the twin's folder, calibration_TWIN")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/twin_calibration.jsonl"))
    parser.add_argument("--note", default="", help="a note kept with the record")
    args = parser.parse_args()
    ds = open_dataset(args.dataset)
    truth = ds.truth.connectivity * ds.truth.gains[:, None]
    a, b = ds.activity().train_bounds()[0]
    x, dxdt = np.asarray(ds.x[a:b]), np.asarray(ds.dxdt[a:b])
    work = args.work / args.dataset.name
    folder = work / ("calibration" + (f"_{args.twin}" if args.twin else ""))
    if not (folder / f"member_{args.members - 1}").is_dir() or not list(folder.glob("one_fit_member_*.npz")):
        config = config_from_dict(dict(ds.meta["config"]), source=str(args.dataset))  # as edge_confidence.py --iterations --warm-start
        config.training.max_minutes, config.training.max_iterations, config.training.seed = None, args.iterations, args.seed
        config.training.extensions.warm_start = WarmStartConfig()
        ens = CircuitGNNEnsemble(args.members, model=config.model, training=config.training, progress=False).fit(
            x, ds.dt, dxdt, folder=work
        )
        ens.shared_factor(x, dxdt, folder=folder, noise=not args.no_noise)
        first = ens.members_[0]
        drift = first.predict(x)
        if not args.no_noise:
            sd = frame_noise_sd(dxdt - drift).astype(np.float32)
            drift += np.random.default_rng([args.seed, args.members]).standard_normal(drift.shape, dtype=np.float32) * sd[None, :]
        for k, one in enumerate(ens.calibration_ensemble_.one_fits(x, drift)):
            np.savez(folder / f"one_fit_member_{k}.npz", mean=one.mean, sd=one.sd, seconds=one.seconds)
    runs = [load_run(p) for p in sorted(work.glob("member_*"))]
    twins = [load_run(p) for p in sorted(folder.glob("member_*"))]
    real = ensemble_confidence([plateau_aligned(r.model, r.xnorm) for r in runs], 0.9)
    twin = ensemble_confidence([plateau_aligned(r.model, r.xnorm) for r in twins], 0.9)
    ones, twin_ones = stored_one_fits(work, 0.9), stored_one_fits(folder, 0.9)
    twin_truth = plateau_aligned(runs[0].model, runs[0].xnorm)
    found, chosen = fit_shared_factor(twin, twin_ones, twin_truth), fit_shared_factor(real, ones, truth)
    real_c, twin_c = combined_confidence(real, ones), combined_confidence(twin, twin_ones)
    widen = _half_width_factor(twin_c, twin_truth)
    off = ~np.eye(len(truth), dtype=bool)
    widened = np.abs(real_c.mean - _aligned_truth(real_c, truth, None)[0]) <= widen * (real_c.upper - real_c.mean)
    row = {
        "dataset": args.dataset.name,
        "twin": folder.name,
        "noise": not args.no_noise,
        "combined_coverage": {"real": calibration(real_c, truth)["coverage"], "twin": calibration(twin_c, twin_truth)["coverage"]},
        "shared_factor": {"twin": found, "truth": chosen},
        "coverage_with_twin_shared_factor": calibration(combined_confidence(real, ones, shared_factor=found), truth)["coverage"],
        "half_width_factor": {"twin": widen, "truth": _half_width_factor(real_c, truth)},
        "coverage_with_twin_half_width_factor": float(widened[off].mean()),
    }
    for name, conf, fits, target in (("real", real, ones, truth), ("twin", twin, twin_ones, twin_truth)):
        mean, shared, own, _ = _combined_parts(conf, fits)
        error = (mean - _aligned_truth(conf, target, None)[0])[off]
        row[name] = {
            "mean_rms_error": float(np.sqrt(np.mean(error**2))),
            "median_least_squares_sd": float(np.median(np.sqrt(shared[off]))),
            "median_own_sd": float(np.median(np.sqrt(own[off]))),
        }
    row |= {"work": str(args.work), "seed": args.seed, "note": args.note, "machine": environment()}
    append_record(args.out, row)
    print(json.dumps(row))


if __name__ == "__main__":
    main()
