"""Peak memory of the warm start's spline fit at large N (issue 20, item 2), without running it to the end.

Random frames of the given size; the fit runs its setup (spline bases, the blocks), one starting solve on
the psi-step receivers, ``--iterations`` Gauss-Newton steps (each with its trial solves), the factorised Gram
matrix of the final solve and its first chunk of receivers, then stops: those hold the fit's largest arrays.
Prints the peak resident memory (VmHWM; nothing here is memory-mapped) after each solve and step and appends
the last to benchmarks/results/warm_start_memory.jsonl with the machine.

    OMP_NUM_THREADS=1 python benchmarks/warm_start_memory.py --neurons 8000 --frames 20000
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from records import append_record

from circuitgnn.analyze.baselines.compare import machine
from circuitgnn.train import varpro


class _FirstChunk(Exception):
    """Raised after the first chunk of the final solve: the measurement is complete."""


def peak_gb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 2**20
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--neurons", type=int, default=8000)
    parser.add_argument("--frames", type=int, default=20000)
    parser.add_argument("--psi-basis", type=int, default=24)
    parser.add_argument("--phi-basis", type=int, default=12)
    parser.add_argument("--iterations", type=int, default=1, help="Gauss-Newton steps (the records before 2026-12-07: 0)")
    args = parser.parse_args()
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(args.frames, args.neurons, generator=generator)
    y = torch.randn(args.frames, args.neurons, generator=generator)
    print(f"frames and drift held: {2 * x.numel() * 4 / 2**30:.2f} GB; peak so far {peak_gb():.2f} GB")
    solve, step = varpro._solve, varpro._gauss_newton

    def measured(*a, **k):
        out = solve(*a, **k)
        print(f"after a solve of {len(a[1])} receivers: peak {peak_gb():.2f} GB", flush=True)
        if len(a[1]) == varpro._CHUNK:
            raise _FirstChunk
        return out

    def measured_step(*a, **k):
        out = step(*a, **k)
        print(f"after a Gauss-Newton step: peak {peak_gb():.2f} GB", flush=True)
        return out

    varpro._solve, varpro._gauss_newton = measured, measured_step
    start = time.perf_counter()
    try:
        varpro.fit_functions(
            x, y, n_psi=args.psi_basis, n_phi=args.phi_basis, iterations=args.iterations, receivers=128, widths=(0.3,), dtype=torch.float32
        )
    except _FirstChunk:
        pass
    finally:
        varpro._solve, varpro._gauss_newton = solve, step
    seconds = time.perf_counter() - start
    print(f"peak {peak_gb():.2f} GB ({seconds:.0f} s)")
    append_record(
        Path(__file__).parent / "results" / "warm_start_memory.jsonl",
        {**vars(args), "peak_gb": peak_gb(), "seconds": seconds, "machine": machine()},
    )


if __name__ == "__main__":
    main()
