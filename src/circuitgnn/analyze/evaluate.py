"""`circuitgnn evaluate`: every metric of a trained run, saved to metrics.json.

Metrics that need ground truth are computed only when the dataset has it; the
others (forecast on held-out time, clusters) always are. Each skipped metric is
listed in ``metrics["skipped"]`` with the reason.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from circuitgnn.analyze.functions import function_errors
from circuitgnn.analyze.generalization import PAPER_TESTS, generalization_test
from circuitgnn.analyze.metrics import (
    connectivity_score,
    edge_auc,
    matched_accuracy,
    pair_scaled_score,
    partial_correlation,
    type_scores,
)
from circuitgnn.analyze.registry import METRICS as REGISTERED
from circuitgnn.analyze.rollout import RolloutScore, rollout_model, score_rollout
from circuitgnn.analyze.stimulus import stimulus_bandwidth, stimulus_score, write_movie_gif
from circuitgnn.analyze.symbolic import symbolic_formulas, width_error
from circuitgnn.config import ExperimentConfig
from circuitgnn.data.dataset import Dataset
from circuitgnn.data.writer import save_npz_atomic, write_json_atomic
from circuitgnn.errors import ConfigError
from circuitgnn.model.gnn import GNN
from circuitgnn.simulate.replay import frame_trajectory, held_out_state, true_circuit
from circuitgnn.train.clustering import kmeans_silhouette
from circuitgnn.train.run_folder import RUN_INFO, TrainedRun, load_run, run_dataset
from circuitgnn.train.trainer import Scorer

METRICS = "metrics.json"
HORIZONS = (400, 800)


def training_scorer(dataset: Dataset, config: ExperimentConfig) -> Scorer | None:
    """Scores of a model during training against the dataset's ground truth, or None without truth.

    For the log's learning curves only: training itself never reads the truth. W R^2 and slope (raw
    and corrected), the hidden stimulus' R^2 for a learned field, and the type accuracy of K-means on
    the embeddings (K by silhouette, no labels; the labels are used only to score).
    """
    truth = dataset.truth
    if truth is None:
        return None
    gains = truth.gains
    field = config.model.external_input == "field" and dataset.omega is not None

    def score(model: GNN, input_model: torch.nn.Module | None, xnorm: float) -> dict[str, float]:
        out: dict[str, float] = connectivity_score(model, truth.connectivity, gains, xnorm, n_points=200).as_dict()
        if field and input_model is not None:
            out["omega_r2"] = stimulus_score(input_model, dataset)["omega_r2"]
        if isinstance(model.a, torch.nn.Parameter):
            found = kmeans_silhouette(model.a.detach().cpu().numpy(), config.training.clustering.max_types, seed=0)
            out["type_accuracy"] = matched_accuracy(truth.types, found.labels)
            out["n_clusters"] = found.k
        return out

    return score


_MIN_FORECAST = 10  # frames: the first scored horizon


def _rollout(run: TrainedRun, ds: Dataset, steps: int, seed: int) -> tuple[RolloutScore | None, str]:
    """Forecast from a state training never saw and score it against the true (or recorded) activity."""
    model = run.model
    kind = run.config.model.external_input
    uses_input = kind == "known" and ds.omega is not None
    mode = ds.stimulus_mode
    steps = min(steps, ds.n_frames - 1)
    learned_inputs, learned_mode = None, "none"
    if run.input_model is not None:
        with torch.no_grad():
            frames = torch.arange(steps)
            if kind == "field":
                learned_inputs, learned_mode = run.input_model(frames.float() / ds.n_frames).cpu().numpy(), "multiplicative"
            else:
                learned_inputs, learned_mode = run.input_model(frames).cpu().numpy(), "additive"
    substeps, integrator = run.config.training.frame_integration()
    if replay_unavailable(ds) is None:
        circuit = true_circuit(ds)
        x0 = held_out_state(circuit, ds.dt / ds.every, seed)
        inputs = np.array(ds.omega[:steps]) if ds.omega is not None else None
        true = frame_trajectory(circuit, x0, steps, ds, inputs, mode)
        if learned_inputs is not None:
            pred = rollout_model(model, x0, steps, ds.dt, learned_inputs, learned_mode, substeps, integrator)
        else:
            pred = rollout_model(model, x0, steps, ds.dt, inputs if uses_input else None, mode, substeps, integrator)
        how = "from a held-out state of the true network (new random start, settled noise-free), against its noise-free trajectory"
    else:
        start, stop = max(ds.activity().heldout_bounds(), key=lambda b: b[1] - b[0])
        held = "held out from training"
        if stop - start < 2:  # nothing held out: the last frames (which training saw)
            start, stop, held = max(0, ds.n_frames - steps - 1), ds.n_frames, "seen in training"
        x = np.asarray(ds.x[start:stop])
        complete = np.flatnonzero(np.isfinite(x).all(axis=1))  # a forecast starts from a frame where every neuron was recorded
        if len(complete) == 0 or stop - (start + complete[0]) < _MIN_FORECAST + 1:
            return None, f"no {_MIN_FORECAST + 1} frames {held} from a complete frame to forecast (frames {start} to {stop - 1})"
        start += int(complete[0])
        steps = min(steps, stop - start - 1)
        true = np.asarray(ds.x[start : start + steps + 1])
        inputs = np.array(ds.omega[start : start + steps]) if uses_input else None
        pred = rollout_model(model, true[0], steps, ds.dt, inputs, mode, substeps, integrator)
        how = f"from recorded frame {start} ({steps + 1} frames {held}), against the recording"
    return score_rollout(pred, true), how


def generalization_skipped(run: TrainedRun, ds: Dataset) -> str | None:
    """Why the paper's S5 and S6 tests do not apply (None when they do: 4 types, no stimulus, dense W, the state recorded)."""
    why = replay_unavailable(ds)
    if why is not None or ds.truth is None:
        return why
    if len(ds.truth.functions["types"]) != 4:
        return "the paper's tests are defined for 4 types"
    if ds.stimulus_mode != "none":
        return "the dataset has an external input"
    if run.config.model.low_rank is not None:
        return "the model has a low-rank W"
    return None


def _generalization(run: TrainedRun, ds: Dataset, metrics: dict[str, Any], steps: int) -> None:
    """The paper's S5 and S6 tests, when they apply."""
    why = generalization_skipped(run, ds)
    if why:
        metrics["skipped"]["generalization"] = why
        return
    for name, filling, fractions in PAPER_TESTS:
        score = generalization_test(run, ds, metrics["W_slope_raw"], filling, fractions, steps)
        for h in HORIZONS:
            if h <= score.horizons[-1]:
                metrics[f"generalization_{name}_r2_{h}"], metrics[f"generalization_{name}_slope_{h}"] = score.at(h)


# The reference partial correlation reads at most this many values (frames x neurons, evenly spaced frames): all of
# N = 8,000 at 100,000 frames, in float64 and copied by Ledoit-Wolf, took the evaluation past 22 GB.
PARTIAL_CORRELATION_VALUES = 100_000_000


def _edge_detection(model: GNN, ds: Dataset, true_w: np.ndarray) -> dict[str, float]:
    """Edge-detection AUC of |W| and, for reference, of partial correlation on the training frames (sparse W only)."""
    auc = edge_auc(true_w, model.connectivity().detach().cpu().numpy())
    if not np.isfinite(auc):
        return {}
    bounds = ds.activity().train_bounds()
    step = max(1, -(-sum(b - a for a, b in bounds) * ds.n_neurons // PARTIAL_CORRELATION_VALUES))  # evenly spaced frames
    frames = [np.asarray(ds.x[a:b:step]) for a, b in bounds]
    return {"W_edge_auc": auc, "W_edge_auc_partial_correlation": edge_auc(true_w, partial_correlation(np.concatenate(frames)))}


def replay_unavailable(ds: Dataset) -> str | None:
    """Why the true network cannot replay the recorded neurons' activity (None when it can)."""
    if ds.truth is None:
        return "the dataset has no ground truth"
    if ds.recorded is not None:
        return "only part of the network was recorded"
    if ds.signal == "fluorescence":
        return "the recording is fluorescence, not the activity the network's equations describe"
    return None


def evaluate_run(run_dir: str | Path, rollout_steps: int = 800, seed: int = 1) -> dict[str, Any]:
    """Compute the metrics of a run, write them to ``RUN/metrics.json`` and return them."""
    if isinstance(rollout_steps, bool) or not isinstance(rollout_steps, int) or rollout_steps < 1:
        raise ConfigError(f"rollout_steps (the forecast's length in frames) must be an integer >= 1, got {rollout_steps!r}")
    run = load_run(run_dir)
    assert run.path is not None
    ds = run_dataset(run)
    info = json.loads((run.path / RUN_INFO).read_text())
    model = run.model
    truth = ds.truth
    metrics: dict[str, Any] = {
        "name": run.config.name,
        "dataset": str(ds.path),
        "n_neurons": ds.n_neurons,
        "n_frames": ds.n_frames,
        "iterations": info["global_iteration"],
        "train_seconds": info["train_seconds"],
        "skipped": {},
    }
    learnable_a = isinstance(model.a, torch.nn.Parameter)
    if truth is None:
        for name in ("connectivity", "types", "functions"):
            metrics["skipped"][name] = "the dataset has no ground truth (truth/ folder)"
    else:
        gains = truth.gains
        connectivity = connectivity_score(model, truth.connectivity, gains, run.xnorm, orientation=True)
        metrics.update(connectivity.as_dict())
        if truth.functions.get("signal") == "pair" and model.psi_input == "x_j,a_i,a_j":
            metrics.update(pair_scaled_score(model, truth.connectivity, gains, truth.types, truth.functions, run.xnorm))
        orientation = connectivity.orientation_warning()
        if orientation is not None:
            warnings.warn(f"{ds.path}: {orientation}", UserWarning, stacklevel=2)
            metrics["warnings"] = [orientation]
        metrics.update(_edge_detection(model, ds, truth.connectivity))
        if learnable_a:
            metrics.update(type_scores(model.a.detach().cpu().numpy(), truth.types, run.config.training.clustering.max_types))
        else:
            metrics["skipped"]["types"] = "the model has one fixed embedding (model.fixed_embedding)"
        metrics.update(function_errors(model, truth.types, truth.functions, run.xnorm))
    if run.config.model.external_input == "field":
        if ds.omega is not None and ds.stimulus_mode == "multiplicative":
            metrics.update(stimulus_score(run.input_model, ds))
            metrics.update(stimulus_bandwidth(ds, run.input_model.n_driven))
            write_movie_gif(run.input_model, ds, run.path / "stimulus.gif")
        else:
            metrics["skipped"]["stimulus"] = "the dataset has no recorded multiplicative stimulus to compare with"
    _generalization(run, ds, metrics, rollout_steps)
    score, how = _rollout(run, ds, rollout_steps, seed)
    metrics["rollout_method"] = how
    for h in HORIZONS:
        if score is not None and h <= score.horizons[-1]:
            metrics[f"rollout_r2_{h}"], metrics[f"rollout_slope_{h}"] = score.at(h)
        else:
            last = 0 if score is None else int(score.horizons[-1])
            metrics["skipped"][f"rollout_{h}"] = f"the forecast spans {last} frames ({how})"
    if run.config.analysis.symbolic:
        formulas = symbolic_formulas(
            model, run.xnorm, run.config.training.clustering.max_types, truth, run.config.analysis.symbolic_backend
        )
        write_json_atomic(run.path / "symbolic.json", formulas)
        metrics["symbolic_phi"] = [e["formula"] for e in formulas["phi"]]
        metrics["symbolic_psi"] = [e["formula"] for e in formulas["psi"]]
        error = width_error(formulas)
        if error is not None:
            metrics["psi_width_error"] = error
    else:
        metrics["skipped"]["symbolic"] = "analysis.symbolic is off in the config"
    order = {m.name: k for k, m in enumerate(REGISTERED)}
    metrics = dict(sorted(metrics.items(), key=lambda kv: order.get(kv[0], len(order))))  # registered metrics first, in registry order
    if score is not None:
        metrics["rollout_curve"] = {"steps": score.horizons.tolist(), "r2": score.r2.tolist(), "slope": score.slope.tolist()}
    write_json_atomic(run.path / METRICS, metrics)
    if score is not None:
        save_npz_atomic(run.path / "rollout.npz", predicted=score.predicted, true=score.true)
    else:
        (run.path / "rollout.npz").unlink(missing_ok=True)  # an earlier evaluation's forecast is no longer this one
    return metrics
