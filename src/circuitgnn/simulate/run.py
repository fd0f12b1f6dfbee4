"""Simulate an experiment's ground truth and write it as a dataset folder."""

from __future__ import annotations

import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from circuitgnn.config import ExperimentConfig, SimulationConfig
from circuitgnn.data.dataset import Dataset
from circuitgnn.data.indicators import Indicator
from circuitgnn.data.informative import activity_rank, rank_shortfall
from circuitgnn.data.writer import BackgroundStreams, DatasetWriter, check_destination
from circuitgnn.device import check_fits, environment, pick_device, torch_threads
from circuitgnn.errors import SimulationDegenerate
from circuitgnn.simulate.connectivity import make_connectivity, spectral_radius
from circuitgnn.simulate.integrate import Integrator, chunk_frames
from circuitgnn.simulate.neuron_models import Circuit
from circuitgnn.simulate.neurons import TypeTable, assign_types, make_positions
from circuitgnn.simulate.stimuli import Stimulus


@dataclass(frozen=True)
class GroundTruthNetwork:
    """Everything drawn before integration: connectivity, types, positions, parameters, stimulus."""

    connectivity: np.ndarray
    types: np.ndarray
    positions: np.ndarray
    table: TypeTable
    circuit: Circuit
    stimulus: Stimulus
    grid_size: int  # side of the stimulus grid of the first neurons, 0 without one


def build_network(cfg: SimulationConfig, device: torch.device) -> GroundTruthNetwork:
    """Draw the network of ``cfg``. Each component has its own random stream spawned from
    ``cfg.seed``, so changing, say, the stimulus does not change W."""
    rng_w, rng_types, rng_pos, rng_stim = (np.random.default_rng(s) for s in np.random.SeedSequence(cfg.seed).spawn(4))
    n = cfg.n_neurons
    w = make_connectivity(cfg.connectivity, n, rng_w)
    types = assign_types(n, cfg.neurons, rng_types)
    grid = cfg.stimulus.grid_size if cfg.stimulus.mode != "none" and cfg.stimulus.source != "oscillation" else 0
    positions = make_positions(n, grid, rng_pos)
    table = TypeTable.from_config(cfg.neurons)
    circuit = Circuit(w, types, table, cfg.neurons.signal, device)
    every = cfg.observation.every if cfg.observation is not None else 1
    stimulus = Stimulus(cfg.stimulus, n, cfg.n_frames * every, cfg.dt, rng_stim, device)
    return GroundTruthNetwork(w, types, positions, table, circuit, stimulus, grid)


def connectivity_stats(w: np.ndarray) -> dict[str, float]:
    nz = w[w != 0]
    return {
        "W_mean": float(w.mean(dtype=np.float64)),
        "W_std": float(w.std(dtype=np.float64)),
        "W_nonzero_fraction": float(nz.size / w.size),
        "W_max_abs": float(np.abs(w).max()),
        "W_median_abs_nonzero": float(np.median(np.abs(nz))) if nz.size else 0.0,
        "W_spectral_radius": spectral_radius(w),
    }


@dataclass(frozen=True)
class SimulationResult:
    """The published dataset and the summary printed at the end."""

    dataset: Dataset
    summary: dict[str, Any]


def simulate(
    config: ExperimentConfig,
    out: str | Path,
    *,
    overwrite: bool = False,
    device: str | None = None,
    progress: bool = True,
    figure: bool = True,
) -> SimulationResult:
    """Simulate ``config.simulation`` and write the dataset to ``out``.

    The folder appears only when complete (see :class:`DatasetWriter`); an
    existing ``out`` is refused unless ``overwrite``. Returns the opened dataset
    and a summary (sizes, W statistics, spectral radius, activity range, timing).
    """
    cfg = config.simulation
    out = Path(out)
    check_destination(out, overwrite)
    dev = pick_device(device)
    check_fits(8.0 * cfg.n_neurons**2, f"simulating N = {cfg.n_neurons} neurons (W, float32, and its copy on the device)", dev)
    t0 = time.perf_counter()
    net = build_network(cfg, dev)
    generator = torch.Generator(device=dev).manual_seed(cfg.seed)
    x0 = cfg.init_std * torch.randn(cfg.n_neurons, generator=generator, device=dev)
    n, t_frames = cfg.n_neurons, cfg.n_frames
    obs = cfg.observation
    every = obs.every if obs is not None else 1

    indicator = Indicator(obs.indicator) if obs is not None and obs.indicator is not None else None
    integrator = Integrator(net.circuit, net.stimulus, cfg.dt, cfg.noise_std, cfg.integrator, generator, indicator)
    recorded = recorded_neurons(cfg, np.random.default_rng(np.random.SeedSequence(cfg.seed).spawn(6)[5]))
    partly = len(recorded) < n

    with DatasetWriter(out, overwrite=overwrite) as writer:
        # A recording keeps the clean states, their drift (and the clean fluorescence) apart, in truth/, and gets its
        # noisy x below; when neurons are left unrecorded, the whole network's arrays go to truth/network/.
        truth_dir = "truth/network" if partly else "truth"
        files = {"x": "x", "dxdt": "dxdt"} if obs is None else {"x": f"{truth_dir}/x", "dxdt": f"{truth_dir}/dxdt"}
        if indicator is not None:
            files["fluorescence"] = f"{truth_dir}/fluorescence"
        if net.stimulus.active:
            files["omega"] = f"{truth_dir}/omega" if partly else "omega"
        streams = BackgroundStreams({name: writer.stream(file, (t_frames, n)) for name, file in files.items()})
        bar = tqdm(total=cfg.burn_in + t_frames * every, unit="step", desc="burn-in", disable=not progress, smoothing=0.1)
        t_sim = time.perf_counter()
        # On CPU the mat-vec runs in numpy's BLAS threads; torch's own threads, idling in spin-waits after each
        # small element-wise op, would compete with them for the cores and make each step 1.7x slower at N = 8000.
        threads = torch_threads(1) if dev.type == "cpu" else nullcontext()
        try:
            with threads:
                x = integrator.burn_in(x0, cfg.burn_in, bar.update)
                bar.set_description("simulate")
                stats = integrator.run(x, t_frames, streams.put, lambda m: bar.update(m * every), every)
            arrays = streams.close()
        except BaseException:
            streams.abort()
            raise
        finally:
            bar.close()
        sim_seconds = time.perf_counter() - t_sim
        problem = degenerate_activity(stats.as_dict())
        if problem is not None and cfg.check_activity:
            raise SimulationDegenerate(f"{problem}; nothing was published (simulation.check_activity: false publishes it anyway)")
        truth_arrays: dict[str, Any] = {}
        if obs is not None:
            for k in [k for k in ("x", "dxdt", "fluorescence") if k in arrays]:
                spec = arrays.pop(k)
                spec = spec if not partly else write_columns(writer, f"{truth_dir}/{k}", f"truth/{k}", recorded)
                truth_arrays[k] = {**spec, "file": f"truth/{k}.npy"}
            if partly and "omega" in arrays:
                arrays["omega"] = write_columns(writer, f"{truth_dir}/omega", "omega", recorded)
            observed = "truth/fluorescence" if indicator is not None else "truth/x"
            rng_noise = np.random.default_rng(np.random.SeedSequence(cfg.seed).spawn(5)[4])
            arrays["x"] = write_columns(writer, observed, "x", np.arange(len(recorded)), obs.noise, rng_noise)

        rank, rank_neurons, _ = activity_rank(np.load(writer.file("x.npy"), mmap_mode="r"))
        if rank < rank_neurons:
            warnings.warn(
                f"{config.name}: {rank_shortfall(rank, f'of {rank_neurons} neurons in {t_frames} frames')}. Simulate more "
                "frames (n_frames), a longer step between frames (observation.every) or add noise (noise_std)",
                UserWarning,
                stacklevel=2,
            )
        if partly:
            writer.save("truth/network/connectivity.npy", net.connectivity)
            writer.save("truth/network/types.npy", net.types)
            writer.save("truth/network/recorded.npy", recorded)
        writer.save("truth/connectivity.npy", net.connectivity[np.ix_(recorded, recorded)])
        writer.save("truth/types.npy", net.types[recorded])
        writer.save_json("truth/functions.json", net.circuit.describe(net.table))
        if net.stimulus.movie is not None:
            writer.save("truth/movie.npy", net.stimulus.movie)
        driven = np.zeros(n, dtype=bool)
        driven[: net.stimulus.n_driven] = True
        np.savez(writer.file("neurons.npz"), positions=net.positions[recorded], driven=driven[recorded], grid_size=np.int64(net.grid_size))

        counts = np.bincount(net.types, minlength=cfg.neurons.n_types)
        summary: dict[str, Any] = {
            "name": config.name,
            "n_neurons": n,
            "n_frames": t_frames,
            "burn_in": cfg.burn_in,
            "dt": cfg.dt,
            "every": every,
            "measurement_noise": obs.noise if obs is not None else 0.0,
            "n_recorded": len(recorded),
            "indicator": indicator.describe() if indicator is not None else None,
            "n_types": cfg.neurons.n_types,
            "type_counts": counts.tolist(),
            "signal": cfg.neurons.signal,
            "stimulus": cfg.stimulus.mode,
            "noise_std": cfg.noise_std,
            **connectivity_stats(net.connectivity),
            **stats.as_dict(),
            "activity_rank": rank,
            "simulation_seconds": sim_seconds,
            "steps_per_second": (cfg.burn_in + t_frames) / max(sim_seconds, 1e-9),
            "device": str(dev),
        }
        if figure:
            from circuitgnn.simulate.figure import plot_simulation

            plot_simulation(writer.tmp, net.connectivity[np.ix_(recorded, recorded)], net.types[recorded], writer.file("simulation.png"))
        summary["total_seconds"] = time.perf_counter() - t0
        meta = {
            "name": config.name,
            "n_frames": t_frames,
            "n_neurons": len(recorded),
            "dt": cfg.dt * every,
            "seed": cfg.seed,
            "stimulus_mode": cfg.stimulus.mode,
            "arrays": arrays,
            "config": config.model_dump(mode="json"),
            "environment": environment(),
            "summary": summary,
        }
        if obs is not None:
            meta.update(
                segments=[0],
                holdout=obs.holdout,
                scale="robust",
                missing=False,
                units="a.u.",
                observation=obs.model_dump(mode="json"),
                truth_arrays=truth_arrays,
            )
            if indicator is not None:
                meta.update(signal="fluorescence", indicator=obs.indicator.model_dump(mode="json"))
        writer.finish(meta)
    return SimulationResult(Dataset(out), summary)


FIXED_POINT = 1e-3  # rms dx/dt below this fraction of the activity's std: the network has stopped moving
EXPLOSION = 1e6  # activity beyond this magnitude: the coupling is far too strong for any usable scale


def degenerate_activity(stats: dict[str, float]) -> str | None:
    """Why the simulated activity (its running statistics) is useless for training, or None when it is not."""
    size = max(abs(stats["x_min"]), abs(stats["x_max"]))
    if size > EXPLOSION:
        return (
            f"the activity reaches {size:.3g}: the network explodes. Lower neurons.gain or the weights' scale "
            "(connectivity.scale), or raise the decay"
        )
    if stats["dxdt_rms"] < FIXED_POINT * max(stats["x_std"], 1e-12) or stats["x_std"] == 0:
        return (
            f"the network fell to a fixed point (rms dx/dt {stats['dxdt_rms']:.2g} against an activity std of {stats['x_std']:.3g}): "
            "there are no dynamics to learn from. Balance excitation and inhibition (connectivity.dale_balance), raise "
            "neurons.gain, add noise (noise_std) or a stimulus"
        )
    return None


def recorded_neurons(cfg: SimulationConfig, rng: np.random.Generator) -> np.ndarray:
    """The indices (sorted) of the neurons a recording of ``cfg`` holds: all but ``observation.unrecorded``."""
    n = cfg.n_neurons
    obs = cfg.observation
    if obs is None or not obs.unrecorded:
        return np.arange(n)
    left_out = obs.unrecorded if isinstance(obs.unrecorded, list) else rng.choice(n, obs.n_unrecorded(n), replace=False)
    return np.setdiff1d(np.arange(n), np.asarray(left_out, dtype=np.int64))


def write_columns(
    writer: DatasetWriter,
    source: str,
    dest: str,
    columns: np.ndarray,
    noise: float = 0.0,
    rng: np.random.Generator | None = None,
) -> dict[str, Any]:
    """Write ``dest``.npy: the ``columns`` of the written array ``source``.npy, plus Gaussian noise of std ``noise`` x each
    column's std when ``noise`` > 0; returns its meta entry."""
    full = np.load(writer.file(f"{source}.npy"), mmap_mode="r")
    t = full.shape[0]
    step = chunk_frames(full.shape[1])
    std = np.zeros(len(columns))
    if noise > 0:
        total, total_sq = np.zeros(len(columns)), np.zeros(len(columns))
        for a in range(0, t, step):
            block = np.asarray(full[a : a + step], dtype=np.float64)[:, columns]
            total += block.sum(axis=0)
            total_sq += (block**2).sum(axis=0)
        std = np.sqrt(np.maximum(total_sq / t - (total / t) ** 2, 0.0))
    stream = writer.stream(dest, (t, len(columns)))
    try:
        for a in range(0, t, step):
            block = np.asarray(full[a : a + step])[:, columns]
            if noise > 0:
                assert rng is not None
                block = block + noise * std * rng.standard_normal(block.shape)
            stream.append(block.astype(np.float32))
        return stream.close()
    except BaseException:
        stream.abort()
        raise


def format_summary(summary: dict[str, Any]) -> str:
    """The one-screen summary printed by ``circuitgnn simulate``."""
    s = summary
    every = s.get("every", 1)
    seen = f"the fluorescence of a calcium indicator ({s['indicator']})" if s.get("indicator") else "the activity"
    n_rec = s.get("n_recorded", s["n_neurons"])
    recorded = (
        f"\nrecording    {seen}, every {every} steps (frame interval {every * s['dt']:g}), measurement noise "
        f"{100 * s.get('measurement_noise', 0):g} % of each neuron's std; no dx/dt; clean states in truth/"
        + (f"\n             {n_rec} of the {s['n_neurons']} neurons recorded, the others simulated only" if n_rec < s["n_neurons"] else "")
        if every > 1 or s.get("measurement_noise", 0) > 0 or s.get("indicator") or n_rec < s["n_neurons"]
        else ""
    )
    lines = [
        f"dataset      {s['name']}: N = {s['n_neurons']} neurons, T = {s['n_frames']} frames (+{s['burn_in']} burn-in), dt = {s['dt']:g}"
        + recorded,
        f"types        {s['n_types']} ({s['signal']} signal), neurons per type: {s['type_counts']}",
        f"input        stimulus: {s['stimulus']}, noise std per step: {s['noise_std']:g}",
        f"W            mean {s['W_mean']:.2e}, std {s['W_std']:.2e}, non-zero {100 * s['W_nonzero_fraction']:.1f} %, "
        f"max |W| {s['W_max_abs']:.3g}, median |W| (non-zero) {s['W_median_abs_nonzero']:.2e}",
        f"             spectral radius {s['W_spectral_radius']:.3f} (times gain: the coupling's scale)",
        f"activity     range [{s['x_min']:.2f}, {s['x_max']:.2f}], mean {s['x_mean']:.2f}, std {s['x_std']:.2f}, "
        f"rms dx/dt {s['dxdt_rms']:.2f}",
        f"time         {s['simulation_seconds']:.1f} s integrating ({s['steps_per_second']:.0f} steps/s on {s['device']}), "
        f"{s['total_seconds']:.1f} s in all",
    ]
    return "\n".join(lines)
