"""Recovery from recordings: sampled every k-th step, with measurement noise, no dx/dt given.

For each (interval, noise) an observed simulation of the config's network is written (cached in
``--work``; its truth is used only to score), then fitted with each training method for
``--minutes`` of training, and the learning curve is scored against the truth at every log line
(W R^2 and slope corrected for psi*'s scale, type accuracy of K-means on the embeddings without
labels). Methods:

* ``recorded``: the simulator's exact dx/dt, on the network simulated without observation (every step, no noise)
* ``forward``, ``central``, ``savgol``, ``spline``: dx/dt estimated from the recording
* ``rollout:K:S[:rk4]``: the rollout objective, K frames ahead, S substeps per frame interval

Examples::

    python benchmarks/recordings.py configs/paper/fig2_baseline.yaml --every 5 --noise 0.05 --methods forward spline --minutes 45
    python benchmarks/recordings.py configs/paper/fig2_baseline.yaml --every 1 2 5 10 20 --noise 0 0.05 0.1 0.2 --methods spline --minutes 5

Each fit appends one JSON line (config, method, machine, the curve, time to each target) to
``--record``; ``--table`` prints the table of those lines instead of running anything.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from records import append_record

from circuitgnn import load_config, simulate
from circuitgnn.analyze.evaluate import training_scorer
from circuitgnn.config import ExperimentConfig, ObservationConfig
from circuitgnn.data.dataset import Dataset
from circuitgnn.data.writer import DatasetWriter
from circuitgnn.device import environment
from circuitgnn.simulate.run import write_columns
from circuitgnn.train.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
TARGETS = {"W_r2": 0.99, "W_r2_95": 0.95, "type_accuracy": 0.99, "type_accuracy_95": 0.95}


def dataset_for(config: ExperimentConfig, every: int, noise: float, frames: int | None, exact: bool, work: Path) -> Path:
    """The observed simulation of ``config`` at this interval and noise (simulated once, then reused).

    A noisy recording is made from the noise-free one of the same interval (same network and states,
    fresh measurement noise), which spares integrating the network again for each noise level.
    """
    sim = config.simulation.model_copy(deep=True)
    if frames is not None:
        sim.n_frames = frames
    name = f"{config.name}_T{sim.n_frames}_" + ("exact" if exact else f"every{every}_noise{noise:g}")
    path = work / name
    if (path / "meta.json").is_file():
        return path
    if not exact and noise > 0:
        clean = dataset_for(config, every, 0.0, frames, False, work)
        add_noise(Dataset(clean), path, noise, seed=sim.seed)
        return path
    sim.observation = None if exact else ObservationConfig(every=every, noise=noise)
    cfg = config.model_copy(update={"simulation": sim, "name": name})
    simulate(cfg, path, progress=True, figure=False)
    return path


def add_noise(clean: Dataset, out: Path, noise: float, seed: int) -> None:
    """A copy of the noise-free recording ``clean`` whose x has measurement noise of ``noise`` x each neuron's std."""
    with DatasetWriter(out) as writer:
        for item in (clean.path / "truth").iterdir():
            os.link(item, writer.file(f"truth/{item.name}"))
        os.link(clean.path / "neurons.npz", writer.file("neurons.npz"))
        meta = json.loads((clean.path / "meta.json").read_text())
        for name, spec in meta["arrays"].items():  # omega, when the network has a stimulus
            if name != "x":
                os.link(clean.path / spec["file"], writer.file(spec["file"]))
        rng = np.random.default_rng(np.random.SeedSequence([seed, round(1e6 * noise)]))
        meta["arrays"]["x"] = write_columns(writer, "truth/x", "x", np.arange(clean.n_neurons), noise, rng)
        meta["observation"]["noise"] = noise
        meta["summary"]["measurement_noise"] = noise
        meta["name"] = out.name
        for key in ("format", "format_version", "complete"):
            meta.pop(key)
        writer.finish(meta)


def configure(config: ExperimentConfig, method: str, minutes: float, log_every: int) -> ExperimentConfig:
    cfg = config.model_copy(deep=True)
    tc = cfg.training
    tc.max_minutes = minutes
    tc.log_every = log_every
    tc.checkpoint_every = 10**9
    if method.startswith("rollout"):
        parts = method.split(":")
        tc.objective = "rollout"
        tc.rollout.steps = int(parts[1]) if len(parts) > 1 else 1
        tc.rollout.substeps = int(parts[2]) if len(parts) > 2 else 1
        tc.rollout.integrator = parts[3] if len(parts) > 3 else "euler"  # type: ignore[assignment]
    else:
        tc.derivative = method  # type: ignore[assignment]
    return cfg


def first_time(curve: list[dict[str, Any]], key: str, value: float) -> float | None:
    """Training seconds at the first log line where ``key`` reaches ``value`` (None if never)."""
    for line in curve:
        if line.get(key, float("-inf")) >= value:
            return float(line["train_seconds"])
    return None


def fit(config: ExperimentConfig, data: Path, method: str, minutes: float, log_every: int) -> dict[str, Any]:
    cfg = configure(config, method, minutes, log_every)
    ds = Dataset(data)
    t0 = time.perf_counter()
    trainer = Trainer(cfg, ds, None, progress=False, scorer=training_scorer(ds, cfg))
    prep = time.perf_counter() - t0  # derivative estimation, copies to the device
    curve = trainer.fit().log
    last = curve[-1]
    return {
        "prep_seconds": prep,
        "iterations": trainer.counters.global_iteration,
        "W_r2": last.get("W_r2"),
        "W_slope": last.get("W_slope"),
        "type_accuracy": last.get("type_accuracy"),
        "n_clusters": last.get("n_clusters"),
        "seconds_to": {
            "W_r2_0.99": first_time(curve, "W_r2", 0.99),
            "W_r2_0.95": first_time(curve, "W_r2", 0.95),
            "types_0.99": first_time(curve, "type_accuracy", 0.99),
            "types_0.95": first_time(curve, "type_accuracy", 0.95),
        },
        "curve": [
            {k: v for k, v in line.items() if k in ("iteration", "train_seconds", "W_r2", "W_slope", "type_accuracy")} for line in curve
        ],
    }


def print_table(records: list[dict[str, Any]]) -> None:
    print(
        f"{'config':16s} {'every':>5s} {'noise':>6s} {'method':16s} {'min':>5s} {'W R2':>6s} {'slope':>6s} {'types':>6s} "
        f"{'t(W .99)':>9s} {'t(types .99)':>12s} {'machine'}"
    )
    for r in records:
        s = r["seconds_to"]
        fmt = lambda v: "-" if v is None else f"{v / 60:.1f}m"  # noqa: E731
        print(
            f"{r['config']:16s} {r['every']:>5d} {100 * r['noise']:>5g}% {r['method']:16s} {r['minutes']:>5g} {r['W_r2']:>6.3f} "
            f"{r['W_slope']:>6.3f} {r['type_accuracy'] if r['type_accuracy'] is not None else float('nan'):>6.3f} "
            f"{fmt(s['W_r2_0.99']):>9s} {fmt(s['types_0.99']):>12s} {r['machine']}"
        )


def plot_sweep(records: list[dict[str, Any]], out: Path) -> None:
    """W R^2 and type accuracy against the sampling interval, one line per noise level (one method, one budget)."""
    from circuitgnn.simulate.figure import pyplot

    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for noise in sorted({r["noise"] for r in records}):
        rows = sorted((r for r in records if r["noise"] == noise), key=lambda r: r["every"])
        for ax, key in zip(axes, ("W_r2", "type_accuracy"), strict=True):
            ax.plot([r["every"] for r in rows], [r[key] for r in rows], "o-", label=f"noise {100 * noise:g} %")
    for ax, label in zip(axes, ("W R^2 (corrected)", "type accuracy"), strict=True):
        ax.set_xscale("log")
        ax.set_xticks([1, 2, 5, 10, 20], ["1", "2", "5", "10", "20"])
        ax.set_xlabel("integration steps between frames")
        ax.set_ylabel(label)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    axes[0].legend()
    r0 = records[0]
    fig.suptitle(f"{r0['config']}, {r0['frames']} frames, {r0['method']}, {r0['minutes']:g} min of training per fit")
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", type=Path, nargs="?", default=ROOT / "configs/paper/fig2_baseline.yaml")
    parser.add_argument("--every", type=int, nargs="+", default=[5])
    parser.add_argument("--noise", type=float, nargs="+", default=[0.05])
    parser.add_argument("--methods", nargs="+", default=["spline"])
    parser.add_argument("--frames", type=int, help="recorded frames (default: the config's n_frames)")
    parser.add_argument("--minutes", type=float, default=5.0, help="training budget per fit")
    parser.add_argument("--log-every", type=int, default=1000)
    parser.add_argument("--work", type=Path, default=ROOT / "runs/recordings", help="cache of the observed datasets")
    parser.add_argument("--record", type=Path, default=ROOT / "benchmarks/results/recordings.jsonl")
    parser.add_argument("--machine", default="", help="a short name of this machine for the table (e.g. 'cpu2')")
    parser.add_argument("--table", action="store_true", help="print the recorded results and stop")
    parser.add_argument("--figure", type=Path, help="with --table: also plot the records of --methods and --minutes against interval")
    args = parser.parse_args()
    if args.table:
        records = [json.loads(line) for line in args.record.read_text().splitlines() if line.strip()]
        print_table(records)
        if args.figure:
            chosen = [
                r
                for r in records
                if r["method"] in args.methods and r["minutes"] == args.minutes and r["config"] == load_config(args.config).name
            ]
            plot_sweep(chosen, args.figure)
            print(f"figure: {args.figure}")
        return
    config = load_config(args.config)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    cells = [(e, n, m) for e in args.every for n in args.noise for m in args.methods]
    for every, noise, method in cells:
        data = dataset_for(config, every, noise, args.frames, method == "recorded", args.work)
        print(f"--- {config.name}: every {every}, noise {100 * noise:g} %, {method}, {args.minutes:g} min ({data})", flush=True)
        result = fit(config, data, method, args.minutes, args.log_every)
        record = {
            "benchmark": "recordings",
            "config": config.name,
            "frames": Dataset(data).n_frames,
            "every": every,
            "noise": noise,
            "method": method,
            "minutes": args.minutes,
            "commit": commit,
            "threads": torch.get_num_threads(),
            "machine": args.machine,
            "environment": environment(),
            **result,
        }
        print_table([record])
        append_record(args.record, record)


if __name__ == "__main__":
    main()
