"""How many frames to evaluate the model's MLPs on at once (:meth:`GNN.frames_per_pass`): wall, user and system
seconds of psi* and phi* over the same frames in blocks of several sizes, on a trained run's model.

    python benchmarks/chunk_size.py runs/s12/data/fig2_baseline runs/s14/conf_it7000/fig2_baseline/member_0 \\
        --record benchmarks/results/chunk_size.jsonl

On a CPU, blocks whose activations exceed the allocator's threshold come as fresh pages from the system at every
allocation: the system time then grows past the arithmetic. Each size runs in a fresh process (the allocator's
thresholds move with what was allocated before). Run it alone.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from records import append_record

from circuitgnn import open_dataset
from circuitgnn.device import environment
from circuitgnn.estimator import CircuitGNN


@torch.no_grad()
def timed(dataset: Path, run: Path, frames: int, size: int) -> dict[str, float]:
    """Wall, user and system seconds of psi* and phi* over the first ``frames`` frames, ``size`` at a time."""
    model = CircuitGNN.load(run, "cpu").model_
    x = torch.as_tensor(np.array(open_dataset(dataset).x[:frames]))
    before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for s in range(0, len(x), size):
        model.psi_of_sender(x[s : s + size], model.a)
        model.phi_of(x[s : s + size], model.a)
    wall, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF)
    return {
        "wall_s": round(wall, 2),
        "user_s": round(after.ru_utime - before.ru_utime, 2),
        "system_s": round(after.ru_stime - before.ru_stime, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("run", type=Path, help="a trained run folder")
    parser.add_argument("--frames", type=int, default=20000)
    parser.add_argument("--sizes", type=int, nargs="+", default=[8, 16, 32, 64, 512, 2048], help="frames per block")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # one size, in this process: print its JSON
    parser.add_argument("--record", type=Path, help="append the result as a JSON line here")
    args = parser.parse_args()
    if args.one:
        print(json.dumps(timed(args.dataset, args.run, args.frames, args.sizes[0])))
        return
    rows = {}
    for size in args.sizes:  # each in a fresh process: the allocator's state carries over from one size to the next
        command = [sys.executable, __file__, str(args.dataset), str(args.run), "--frames", str(args.frames), "--sizes", str(size), "--one"]
        rows[str(size)] = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout.splitlines()[-1])
        r = rows[str(size)]
        print(f"{size:>6} frames at a time: {r['wall_s']} s wall, user {r['user_s']} s, system {r['system_s']} s", flush=True)
    model = CircuitGNN.load(args.run, "cpu").model_
    print(f"frames_per_pass() of this model on the CPU: {model.frames_per_pass()}")
    if args.record:
        record = {"dataset": args.dataset.name, "run": str(args.run), "frames": args.frames, "n_neurons": model.n, "hidden": model.cfg.hidden,
                  "by_block": rows, "frames_per_pass": model.frames_per_pass(), "machine": environment()}  # fmt: skip
        append_record(args.record, record)


if __name__ == "__main__":
    main()
