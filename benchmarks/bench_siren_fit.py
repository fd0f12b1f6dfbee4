"""How fast can the stimulus SIREN represent the Fig. 3 movie when it is shown the movie?

An upper bound for the hidden-stimulus experiment: there the SIREN only sees the movie through the
GNN's prediction error, here it is fitted directly (Adam on the squared error of Omega* = SIREN^2),
with the Fig. 3 architecture, coordinates and frame schedule, on batches of frames as in training.
Prints Omega R^2 (the metric of ``circuitgnn evaluate``, on 100 evenly spaced frames) against steps.

    python benchmarks/bench_siren_fit.py --lr 1e-4 --steps 2000
    python benchmarks/bench_siren_fit.py --lr 1e-3 --steps 1000 --record benchmarks/results/siren_fit.jsonl
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from circuitgnn import load_config
from circuitgnn.analyze.metrics import linear_fit
from circuitgnn.device import environment
from circuitgnn.model.siren import StimulusField
from circuitgnn.simulate.neurons import grid_coordinates
from circuitgnn.simulate.run import build_network

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs/paper/fig3_external_inputs.yaml"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch-frames", type=int, default=4, help="frames per Adam step (Fig. 3 trains with 4)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--record", type=Path, help="append the result as one JSON line to this file")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    cfg = load_config(CONFIG)
    sim, m = cfg.simulation, cfg.model
    movie = build_network(sim, torch.device("cpu")).stimulus.movie  # the movie the simulator draws
    g, n_frames = movie.shape[1], sim.n_frames
    schedule = np.floor(np.arange(n_frames) / n_frames * len(movie)).astype(int)  # saved frame -> movie frame
    coords = torch.as_tensor(grid_coordinates(g), dtype=torch.float32)  # as in training
    field = StimulusField(coords, g * g, m.siren_hidden, m.siren_layers, m.siren_omega0)
    opt = torch.optim.Adam(field.parameters(), lr=args.lr)
    flat = torch.as_tensor(movie.reshape(len(movie), -1))
    shown = np.linspace(0, n_frames - 1, 100).astype(int)

    def omega_r2() -> float:
        with torch.no_grad():
            learned = field.driven_values(torch.as_tensor(shown / n_frames, dtype=torch.float32)).numpy()
        true = flat[schedule[shown]].numpy()
        return linear_fit(true, learned).r2

    rng = np.random.default_rng(args.seed)
    curve = []
    t0 = time.perf_counter()
    for step in range(args.steps + 1):
        if step % max(1, args.steps // 10) == 0:
            curve.append({"step": step, "omega_r2": omega_r2(), "seconds": time.perf_counter() - t0})
            print(f"step {step:6d}  Omega R^2 {curve[-1]['omega_r2']:.3f}  ({curve[-1]['seconds']:.0f} s)", flush=True)
        if step == args.steps:
            break
        frames = rng.integers(0, n_frames, args.batch_frames)
        pred = field.driven_values(torch.as_tensor(frames / n_frames, dtype=torch.float32))
        loss = torch.mean((pred - flat[schedule[frames]]) ** 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if args.record:
        record = {
            "benchmark": "siren_fit",
            "lr": args.lr,
            "batch_frames": args.batch_frames,
            "threads": args.threads,
            "curve": curve,
            "environment": environment(),
        }
        with open(args.record, "a") as f:
            f.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
