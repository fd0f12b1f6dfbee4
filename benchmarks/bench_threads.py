"""Two trainings side by side on one machine: torch's default threads against the thread governor (issue 20).

Each job trains the Fig. 2 model (N = 1000, batch 8, no warm start, no log line or checkpoint inside the
timed part) for ``--warmup`` iterations, then times ``--iterations`` more; the time per iteration of each
job is printed. Three settings, one after the other on an otherwise idle machine:

* ``alone``: one job, the thread governor on (it keeps every core);
* ``before``: two jobs at once, each with torch's default of one thread per core (``CIRCUITGNN_THREADS`` set
  to the core count: what circuitgnn did before the governor);
* ``after``: two jobs at once, the governor on (``CIRCUITGNN_THREADS=auto``).

    python benchmarks/bench_threads.py --data datasets/fig2 --record benchmarks/results/threads.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from records import append_record

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs/paper/fig2_baseline.yaml"


def job(data: Path, warmup: int, iterations: int) -> None:
    """One training: prints a JSON line with the time per iteration after the warm-up, and the thread counts used."""
    import torch

    from circuitgnn import load_config, open_dataset
    from circuitgnn.train.trainer import Trainer

    cfg = load_config(CONFIG)
    cfg.training.log_every = 10**9
    trainer = Trainer(cfg, open_dataset(data), progress=False)
    trainer.fit(max_iterations=warmup)
    start = time.perf_counter()
    trainer.fit(max_iterations=warmup + iterations)
    seconds = time.perf_counter() - start
    changes = [n for _, n in trainer.threads.changes]
    print(json.dumps({"ms_per_iteration": 1e3 * seconds / iterations, "threads_end": torch.get_num_threads(), "thread_changes": changes}))


def run(n_jobs: int, threads: str, args: argparse.Namespace) -> list[dict]:
    env = {**os.environ, "CIRCUITGNN_THREADS": threads}
    env.pop("OMP_NUM_THREADS", None)
    command = [
        sys.executable,
        __file__,
        "--job",
        "--data",
        str(args.data),
        "--warmup",
        str(args.warmup),
        "--iterations",
        str(args.iterations),
    ]
    procs = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True) for _ in range(n_jobs)]
    return [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--data", type=Path, default=ROOT / "datasets/fig2", help="Fig. 2 dataset (circuitgnn simulate configs/paper/fig2_baseline.yaml)"
    )
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--record", type=Path, help="append the results as a JSON line to this file")
    parser.add_argument("--job", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.job:
        job(args.data, args.warmup, args.iterations)
        return
    from circuitgnn.device import environment
    from circuitgnn.threads import available_cores

    cores = available_cores()
    results = {"benchmark": "threads", "environment": environment(), "warmup": args.warmup, "iterations": args.iterations}
    for name, n_jobs, threads in (("alone", 1, "auto"), ("before", 2, str(cores)), ("after", 2, "auto")):
        results[name] = run(n_jobs, threads, args)
        per = ", ".join(f"{r['ms_per_iteration']:.1f} ms (threads {r['thread_changes'] or r['threads_end']})" for r in results[name])
        print(f"{name:>6}: {n_jobs} job(s), CIRCUITGNN_THREADS={threads}: {per}", flush=True)
    if args.record:
        append_record(args.record, results)


if __name__ == "__main__":
    main()
