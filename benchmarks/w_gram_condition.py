"""Why gradient steps learn W slowly on noise-free data, and what an exact solve gives instead.

For a trained run (sender-only psi*), on evenly spaced frames of its dataset:
  * the condition number of the senders' Gram matrix G = <psi psi^T>, with the true transfer functions
    and with the learned psi* (gradient descent on W converges at a rate set by G's small eigenvalues);
  * the W R^2 of the run's own W, and of the exact least-squares W given the run's phi* and psi*
    (circuitgnn.train.wsolve, what `training.extensions.w_solve` does during training);
  * as a check of the solver, the least-squares W given the true functions (R^2 should be 1).
Ground truth is read only to score, as everywhere.

    python benchmarks/w_gram_condition.py runs/reproduce/supp13_transmitters/run
"""

from __future__ import annotations

import argparse
import copy
import time

import numpy as np
import torch

from circuitgnn.analyze.metrics import connectivity_score, linear_fit
from circuitgnn.data.dataset import evenly_spaced_frames
from circuitgnn.simulate.replay import true_circuit
from circuitgnn.train.run_folder import load_run, run_dataset
from circuitgnn.train.wsolve import constrained_solve, gram_sums

CHUNK = 1000


def condition(g: torch.Tensor) -> float:
    ev = torch.linalg.eigvalsh(g)
    return float(ev[-1] / ev[0])


def report(run_dir: str, n_frames: int) -> None:
    run = load_run(run_dir)
    ds = run_dataset(run)
    truth = ds.truth
    if truth is None or run.model.psi_input == "x_j,a_i,a_j":
        print(f"{run_dir}: needs ground truth and a sender-only psi*; skipped")
        return
    circuit = true_circuit(ds, torch.device("cpu"))
    idx = evenly_spaced_frames(ds.n_frames, n_frames)
    chunks = [torch.as_tensor(np.asarray(a[idx]), dtype=torch.float32) for a in (ds.x, ds.dxdt)]

    def frames():
        for s in range(0, len(idx), CHUNK):
            yield chunks[0][s : s + CHUNK], chunks[1][s : s + CHUNK]

    m = run.model
    gains = circuit.gain.numpy().astype(np.float64)
    with torch.no_grad():
        g_true, b_true = gram_sums(
            (circuit.transfer(x), (y - (-circuit.decay * x + circuit.bias + circuit.self_coupling * torch.tanh(x))) / circuit.gain)
            for x, y in frames()
        )
        start = time.perf_counter()
        g_model, b_model = gram_sums((m.psi_of_sender(x, m.a), y - m.phi_of(x, m.a)) for x, y in frames())
        gram_seconds = time.perf_counter() - start
    print(f"{run_dir} ({len(idx)} frames, N = {ds.n_neurons})")
    print(f"  condition number of G: true psi {condition(g_true):.3g}, learned psi* {condition(g_model):.3g}")
    w_true = constrained_solve(g_true, b_true, ridge=0.0).numpy()
    print(f"  least-squares W given the true functions: R^2 {linear_fit(truth.connectivity, w_true, off_diagonal=True).r2:.4f}")
    own = connectivity_score(m, truth.connectivity, gains, run.xnorm).corrected
    solved_model = copy.deepcopy(m)
    start = time.perf_counter()
    with torch.no_grad():  # what solve_connectivity does, on the Gram sums taken above
        solved_model.W.copy_(constrained_solve(g_model, b_model).to(m.W.dtype))
    seconds = gram_seconds + time.perf_counter() - start
    solved = connectivity_score(solved_model, truth.connectivity, gains, run.xnorm).corrected
    print(f"  the run's W: R^2 {own.r2:.4f}, slope {own.slope:.3f} (corrected)")
    print(
        f"  least-squares W given the run's phi*, psi*: R^2 {solved.r2:.4f}, slope {solved.slope:.3f} (corrected), solved in {seconds:.1f} s"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="trained run folders")
    ap.add_argument("--frames", type=int, default=10000, help="evenly spaced frames used")
    args = ap.parse_args()
    for r in args.runs:
        report(r, args.frames)


if __name__ == "__main__":
    main()
