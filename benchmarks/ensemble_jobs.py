"""Wall time of an ensemble whose members train one after another (n_jobs = 1) or at once (n_jobs = 2, ...).

Each setting trains the same K members (the dataset's config, a fixed number of iterations, block-bootstrap
resamples) from scratch; prints the seconds of each, the speed-up over n_jobs = 1 and the largest difference between
their members' W (psi*'s scale moved in), which should be rounding only. Run it alone on the machine.

    python benchmarks/ensemble_jobs.py runs/s12/data/fig2_baseline --members 4 --iterations 300 --jobs 1 2 \\
        --record benchmarks/results/ensemble_jobs.jsonl
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from records import append_record

from circuitgnn import open_dataset
from circuitgnn.analyze.confidence import plateau_aligned
from circuitgnn.config import config_from_dict
from circuitgnn.device import environment
from circuitgnn.ensemble import CircuitGNNEnsemble
from circuitgnn.fit_jobs import available_cores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--members", type=int, default=4)
    parser.add_argument("--iterations", type=int, default=300, help="training iterations of each member")
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2], help="the n_jobs settings to time (1 first: the reference)")
    parser.add_argument("--record", type=Path, help="append the result as a JSON line here")
    args = parser.parse_args()
    ds = open_dataset(args.dataset)
    config = config_from_dict(dict(ds.meta["config"]), source=str(args.dataset))
    config.training.max_minutes, config.training.max_iterations = None, args.iterations
    a, b = ds.activity().train_bounds()[0]
    x = np.asarray(ds.x[a:b])
    dxdt = None if ds.dxdt is None else np.asarray(ds.dxdt[a:b])
    seconds, weights = {}, {}
    for jobs in args.jobs:
        ens = CircuitGNNEnsemble(args.members, model=config.model, training=config.training, n_jobs=jobs, progress=False)
        with tempfile.TemporaryDirectory() as folder:
            start = time.perf_counter()
            ens.fit(x, ds.dt, dxdt, folder=folder)
            seconds[jobs] = time.perf_counter() - start
        weights[jobs] = np.stack([plateau_aligned(m.model_, m.xnorm_) for m in ens.members_])
        print(f"n_jobs={jobs}: {seconds[jobs]:.1f} s for {args.members} members of {args.iterations} iterations", flush=True)
    first = args.jobs[0]
    record = {
        "dataset": args.dataset.name,
        "n_neurons": int(x.shape[1]),
        "frames": int(x.shape[0]),
        "members": args.members,
        "iterations_per_member": args.iterations,
        "cores": available_cores(),
        "seconds": {str(j): round(s, 2) for j, s in seconds.items()},
        "speedup": {str(j): round(seconds[first] / s, 3) for j, s in seconds.items()},
        "max_w_difference": {str(j): float(np.abs(w - weights[first]).max()) for j, w in weights.items()},
        "machine": environment(),
    }
    for j in args.jobs:
        print(
            f"n_jobs={j}: x{record['speedup'][str(j)]} against n_jobs={first}; largest W difference {record['max_w_difference'][str(j)]:.2e}"
        )
    if args.record:
        append_record(args.record, record)


if __name__ == "__main__":
    main()
