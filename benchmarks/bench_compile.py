"""The training step with and without ``torch.compile`` (training.compile), on the paper's Fig. 2 setting.

For each mode (off, default, reduce-overhead), a Trainer with `configs/paper/fig2_baseline.yaml` takes
``--warmup`` steps (the compilation happens there; their time is printed as the cost of compiling),
then ``--steps`` timed steps of :meth:`Trainer.step`: batch sampling, the loss, its gradient, Adam and
the running sums, as in the training loop, without its logging. The device is synchronised before
each clock reading. Each mode starts from the same seed; the largest difference of W from the
eager run's after the same steps is printed, as a check that compiling changes the arithmetic only
by rounding.

    python benchmarks/bench_compile.py --data datasets/fig2 --record benchmarks/results/compile.jsonl
"""

from __future__ import annotations

import argparse
import subprocess
import time
from pathlib import Path

import torch
from records import append_record

from circuitgnn import load_config, simulate
from circuitgnn.device import environment
from circuitgnn.train.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs/paper/fig2_baseline.yaml"


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_mode(data: Path, mode: str, warmup: int, steps: int) -> tuple[dict[str, float], torch.Tensor]:
    """(timings, W after warmup + steps steps) of the training step with training.compile = ``mode``."""
    cfg = load_config(CONFIG)
    cfg.training.compile = mode
    trainer = Trainer(cfg, data, None, progress=False)
    lrs = trainer._set_learning_rates()
    coeffs = trainer.coefficients(0)
    delta = cfg.training.regularization.delta_fraction * trainer.xnorm
    t0 = time.perf_counter()
    for _ in range(warmup):
        trainer.step(coeffs, lrs, delta)
    synchronize(trainer.device)
    t1 = time.perf_counter()
    for _ in range(steps):
        trainer.step(coeffs, lrs, delta)
    synchronize(trainer.device)
    t2 = time.perf_counter()
    timings = {"warmup_s": t1 - t0, "step_ms": 1e3 * (t2 - t1) / steps, "device": str(trainer.device)}
    return timings, trainer.model.W.detach().cpu()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT / "datasets/fig2", help="Fig. 2 dataset (simulated if missing)")
    parser.add_argument("--modes", nargs="+", default=["off", "default", "reduce-overhead"])
    parser.add_argument("--warmup", type=int, default=50, help="untimed steps first (the compilation happens in them)")
    parser.add_argument("--steps", type=int, default=2000, help="timed steps")
    parser.add_argument("--record", type=Path, default=None, help="append the results as a JSON line to this file")
    args = parser.parse_args()
    if not (args.data / "meta.json").is_file():
        simulate(load_config(CONFIG), args.data)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    results: dict = {"benchmark": "train_step_compile", "commit": commit, "threads": torch.get_num_threads(), "environment": environment()}
    reference = None
    for mode in args.modes:
        timings, w = time_mode(args.data, mode, args.warmup, args.steps)
        if reference is None:
            reference = w
        timings["max_abs_w_difference"] = float((w - reference).abs().max())
        results[mode] = timings
        print(
            f"{mode:>16}: {timings['step_ms']:.3f} ms per step on {timings['device']} ({args.steps} steps; the first {args.warmup} "
            f"took {timings['warmup_s']:.1f} s); W differs from the first mode's by {timings['max_abs_w_difference']:.1e} at most"
        )
    if args.record:
        append_record(args.record, results)


if __name__ == "__main__":
    main()
