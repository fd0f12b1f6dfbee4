"""Fit circuitgnn to an activity array, as you would to your own recording.

The array here comes from the simulator (the packaged quick config: 200 neurons, 4 types) so that
the recovered W and types can be scored; the estimator sees only the array and its frame interval,
and the ground truth is read afterwards, only to score.

    python examples/fit_an_array.py                  # about 2 minutes on 2 CPU cores
    python examples/fit_an_array.py --neurons 40 --frames 2000 --epochs 1   # a quick check
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from circuitgnn import CircuitGNN, load_config, open_dataset, simulate
from circuitgnn.analyze.metrics import connectivity_score, matched_accuracy

QUICK = Path(__file__).resolve().parents[1] / "src/circuitgnn/configs/quick.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--neurons", type=int, default=200)
    parser.add_argument("--frames", type=int, default=20000)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--save", type=Path, help="also save the fitted model to this file and check that it loads")
    args = parser.parse_args()

    cfg = load_config(QUICK)
    cfg.simulation.n_neurons, cfg.simulation.n_frames = args.neurons, args.frames
    with tempfile.TemporaryDirectory() as tmp:
        simulate(cfg, Path(tmp) / "data", progress=False, figure=False)
        ds = open_dataset(Path(tmp) / "data")
        x, dt, truth = np.array(ds.x), ds.dt, ds.truth  # what a user holds: a (frames, neurons) array

    cfg.training.n_epochs = args.epochs
    est = CircuitGNN(cfg.model, cfg.training).fit(x, dt=dt)  # the quick config's settings; dx/dt from x
    print(f"W {est.connectivity_.shape}, {est.n_types_} types found, drift R^2 {est.score(x):.3f}")
    for line in est.equations():
        print(line)

    gains = np.array([t["gain"] for t in truth.functions["types"]])[truth.types]
    w = connectivity_score(est.model_, truth.connectivity, gains, est.xnorm_).corrected
    print(f"against the truth: W R^2 {w.r2:.3f}, slope {w.slope:.3f}; type accuracy {matched_accuracy(truth.types, est.types_):.3f}")
    if args.save:
        est.save(args.save)
        same = np.array_equal(CircuitGNN.load(args.save).predict(x[:100]), est.predict(x[:100]))
        print(f"saved to {args.save}; the loaded model predicts the same: {same}")


if __name__ == "__main__":
    main()
