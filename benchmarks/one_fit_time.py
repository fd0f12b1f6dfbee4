"""Time of one fit's least-squares intervals (:meth:`CircuitGNN.edge_confidence`): with each receiver's own terms
(the default) and with phi* as learned (``own_degree=None``, as before session 17), the functions' values kept between
the two passes over the frames; and with the own terms, the values computed twice (as when they do not fit in memory).

    python benchmarks/one_fit_time.py runs/s12/data/fig2_baseline runs/s14/conf_it7000/fig2_baseline/member_0 \\
        --record benchmarks/results/one_fit_time.jsonl

Prints the seconds of each and the largest difference between the intervals kept and computed twice (none expected).
Run it alone.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from records import append_record

from circuitgnn import open_dataset
from circuitgnn.analyze import confidence
from circuitgnn.device import environment
from circuitgnn.estimator import CircuitGNN


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("run", type=Path, help="a trained run folder (a member of an ensemble)")
    parser.add_argument("--frames", type=int, help="only the first frames of the training part (default: all)")
    parser.add_argument("--record", type=Path, help="append the result as a JSON line here")
    args = parser.parse_args()
    ds = open_dataset(args.dataset)
    a, b = ds.activity().train_bounds()[0]
    b = b if args.frames is None else min(b, a + args.frames)
    x = np.asarray(ds.x[a:b])
    dxdt = None if ds.dxdt is None else np.asarray(ds.dxdt[a:b])
    est = CircuitGNN.load(args.run)
    seconds, results = {}, {}
    for mode, degree in (("own terms, kept", 3), ("phi* as learned, kept", None), ("own terms, computed twice", 3)):
        if mode == "own terms, computed twice":
            confidence.memory_bytes = lambda device: None  # type: ignore[assignment]  # as when they do not fit
        start = time.perf_counter()
        results[mode] = est.edge_confidence(x, dxdt, own_degree=degree)
        seconds[mode] = time.perf_counter() - start
        print(f"{mode:>26}: {seconds[mode]:.1f} s", flush=True)
    off = ~np.eye(x.shape[1], dtype=bool)
    difference = float(np.abs(results["own terms, kept"].sd - results["own terms, computed twice"].sd)[off].max())
    print(
        f"own terms / phi* as learned x{seconds['own terms, kept'] / seconds['phi* as learned, kept']:.2f}; largest sd difference {difference:.2e}"
    )
    if args.record:
        record = {
            "dataset": args.dataset.name,
            "run": str(args.run),
            "frames": int(b - a),
            "n_neurons": int(x.shape[1]),
            "seconds": {k: round(v, 2) for k, v in seconds.items()},
            "max_sd_difference": difference,
            "machine": environment(),
        }
        append_record(args.record, record)


if __name__ == "__main__":
    main()
