"""Simulation benchmark: wall time, steps per second and peak memory of `circuitgnn simulate`.

Each size runs in its own process (so peak memory is that run's alone) on the
paper's config (Fig. 2 for N = 1000, Supp. Fig. 11 for N = 8000), end to end:
network drawing, integration, streamed writing with checksums, summary
(spectral radius) and diagnostic figure.

    python benchmarks/bench_simulate.py                     # N = 1000 and 8000, 100,000 frames
    python benchmarks/bench_simulate.py --sizes 1000 --frames 20000
    python benchmarks/bench_simulate.py --record benchmarks/results/simulate.jsonl

Targets on 2 CPU cores (issue 2): N = 1000 x 100,000 frames in < 60 s with < 1.5 GB peak;
N = 8000 x 100,000 frames in < 20 min with < 4 GB peak.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from records import append_record

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {1000: ROOT / "configs/paper/fig2_baseline.yaml", 8000: ROOT / "configs/paper/supp11_n8000.yaml"}

CHILD = r"""
import json, resource, sys, time
from circuitgnn import load_config, simulate
cfg = load_config(sys.argv[1])
cfg.simulation.n_frames = int(sys.argv[3])
t0 = time.perf_counter()
res = simulate(cfg, sys.argv[2], progress=False)
wall = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB -> MB on Linux
s = res.summary
print(json.dumps({"n_neurons": s["n_neurons"], "n_frames": s["n_frames"], "burn_in": s["burn_in"],
                  "wall_s": wall, "integration_s": s["simulation_seconds"], "steps_per_s": s["steps_per_second"],
                  "peak_rss_mb": peak, "bytes_written": sum(p.stat().st_size for p in res.dataset.path.rglob("*") if p.is_file())}))
"""


def machine() -> dict[str, str | int]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu or platform.processor(), "cores": os.cpu_count() or 0, "python": platform.python_version()}


def run_one(n: int, frames: int, workdir: Path) -> dict:
    out = workdir / f"sim_{n}"
    proc = subprocess.run([sys.executable, "-c", CHILD, str(CONFIGS[n]), str(out), str(frames)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark for N = {n} failed:\n{proc.stderr}")
    shutil.rmtree(out, ignore_errors=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 8000], choices=sorted(CONFIGS))
    parser.add_argument("--frames", type=int, default=100_000)
    parser.add_argument("--workdir", type=Path, default=None, help="where the datasets are written (default: a temp folder)")
    parser.add_argument("--record", type=Path, default=None, help="append the results as JSON lines to this file")
    args = parser.parse_args()
    info = machine()
    print(f"machine: {info['cpu']}, {info['cores']} cores, Python {info['python']}")
    print(f"{'N':>6} {'frames':>8} {'wall s':>8} {'integr. s':>9} {'steps/s':>9} {'frames/s':>9} {'peak MB':>8} {'written GB':>10}")
    workdir = Path(tempfile.mkdtemp(prefix="bench_sim_", dir=args.workdir))
    try:
        for n in args.sizes:
            r = run_one(n, args.frames, workdir)
            r["frames_per_s"] = r["n_frames"] / r["wall_s"]
            print(
                f"{n:>6} {r['n_frames']:>8} {r['wall_s']:>8.1f} {r['integration_s']:>9.1f} {r['steps_per_s']:>9.0f} "
                f"{r['frames_per_s']:>9.0f} {r['peak_rss_mb']:>8.0f} {r['bytes_written'] / 1e9:>10.2f}",
                flush=True,
            )
            if args.record:
                append_record(args.record, {"benchmark": "simulate", **info, **r})
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
