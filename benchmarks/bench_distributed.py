"""Memory and communication of W sharded by receiver rows (issue 20), measured and modelled.

Measured: ``torchrun --nproc_per_node P -m circuitgnn.train.distributed`` on a dataset for ``--steps`` steps,
with P = 1 and 2 processes (gloo on CPU): the time per step and rank 0's peak resident memory. Modelled,
up to N = 100,000 and 8 processes: what one process holds (its rows of W with their gradient and Adam's two
moments, 16 bytes per weight, plus the replicated MLPs and embeddings) and what it sends per step (a ring
all-reduce of the shared gradients: 2 (P - 1) / P of their bytes); the frames are read from each process's
memory map, never sent.

    python benchmarks/bench_distributed.py --config configs/paper/fig2_baseline.yaml --data datasets/fig2 \\
        --record benchmarks/results/distributed.jsonl
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from records import append_record

ROOT = Path(__file__).resolve().parents[1]


def shared_numbers(n: int, hidden: int = 64, layers: int = 3, embedding: int = 2) -> int:
    """The replicated parameters (phi* on (x, a), psi* on x, the embeddings) for the paper's MLP sizes."""

    def mlp(n_in: int) -> int:
        return n_in * hidden + hidden + (layers - 2) * (hidden * hidden + hidden) + hidden + 1

    return mlp(1 + embedding) + mlp(1) + n * embedding


def modelled(n: int, processes: int) -> dict[str, float]:
    rows = -(-n // processes)
    shared = shared_numbers(n)
    return {
        "n_neurons": n,
        "processes": processes,
        "memory_gb": (16 * rows * n + 16 * shared) / 1e9,
        "sent_mb_per_step": 4 * shared * 2 * (processes - 1) / processes / 1e6,
    }


def measured(config: Path, data: Path, processes: int, steps: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "w.npy"
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)]
        command += ["-m", "circuitgnn.train.distributed", str(config), str(data), "--steps", str(steps), "--out", str(out)]
        subprocess.run(command, check=True, capture_output=True, text=True)
        return json.loads(out.with_suffix(".json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=ROOT / "configs/paper/fig2_baseline.yaml")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--record", type=Path)
    args = parser.parse_args()
    from circuitgnn.device import environment

    results: dict = {"benchmark": "distributed", "environment": environment(), "measured": [], "modelled": []}
    print("measured (gloo, CPU):")
    for processes in (1, 2):
        found = measured(args.config, args.data, processes, args.steps)
        results["measured"].append(found)
        print(
            f"  N = {found['n_neurons']:,}, {processes} process(es): {found['ms_per_step']:.1f} ms per step, rank 0 peak "
            f"{found['peak_memory_mb_rank0']:.0f} MB, {found['all_reduced_numbers']:,.0f} numbers all-reduced per step"
        )
    print("| N | processes | memory per process (GB) | sent per step and process (MB) |\n|---|---|---|---|")
    for n in (1_000, 8_000, 20_000, 71_721, 100_000):
        for processes in (1, 2, 4, 8):
            row = modelled(n, processes)
            results["modelled"].append(row)
            print(f"| {n:,} | {processes} | {row['memory_gb']:.3g} | {row['sent_mb_per_step']:.3g} |")
    if args.record:
        append_record(args.record, results)


if __name__ == "__main__":
    main()
