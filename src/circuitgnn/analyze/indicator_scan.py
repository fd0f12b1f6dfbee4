"""Choosing an unknown indicator time constant: fit each candidate, keep the one that forecasts the held-out fluorescence best.

For each candidate tau the recording is deconvolved with it and the model fitted (a short fit
suffices to compare); the fitted model and the indicator are then integrated from held-out frames
and their fluorescence compared with the recorded one. The recording is common to all candidates,
so their errors are comparable; no ground truth is read. The start states (deconvolved activity,
smoothed calcium) come from the deconvolution of the held-out part as a whole, the same for every
candidate: training never saw those frames, but the start state was smoothed with its successors.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from circuitgnn.config import ExperimentConfig
from circuitgnn.config.indicator import IndicatorConfig
from circuitgnn.data.activity import Activity
from circuitgnn.data.deconvolve import deconvolve_activity
from circuitgnn.data.indicators import Indicator, indicator_config
from circuitgnn.errors import ConfigError, DatasetError
from circuitgnn.model.gnn import GNN
from circuitgnn.model.integrate import fluorescence_rollout
from circuitgnn.train.trainer import Trainer

_MAX_STARTS = 256  # held-out start frames scored per candidate


@dataclass(frozen=True)
class TauScore:
    """One candidate: its held-out fluorescence forecast error (relative to the fluorescence's variance) and its fit's cost."""

    tau: float
    forecast_error: float
    iterations: int
    seconds: float


@torch.no_grad()
def heldout_fluorescence_error(model: GNN, data: Activity, horizon: int, substeps: int = 1) -> float:
    """Mean squared error of the fluorescence forecast ``horizon`` frames ahead from held-out frames of the deconvolved ``data``,
    divided by the recorded held-out fluorescence's variance (per neuron, then averaged)."""
    obs = data.observation
    if obs is None:
        raise DatasetError(f"{data.source} is not a deconvolved calcium recording")
    starts = np.concatenate([np.arange(a, b - horizon) for a, b in data.heldout_bounds() if b - horizon > a] or [np.zeros(0, int)])
    f = np.asarray(obs.fluorescence)
    if len(starts):
        starts = starts[np.isfinite(f[starts]).all(axis=1) & np.isfinite(np.asarray(data.x)[starts]).all(axis=1)]
    if len(starts) == 0:
        raise DatasetError(f"{data.source}: no held-out frames with {horizon} more after them to forecast: set a larger holdout")
    starts = starts[np.linspace(0, len(starts) - 1, min(_MAX_STARTS, len(starts))).astype(int)]
    rows = starts[None, :] + np.arange(horizon + 1)[:, None]
    device = next(model.parameters()).device

    def frames(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(a[rows.reshape(-1)]), dtype=torch.float32, device=device).reshape(horizon + 1, len(starts), -1)

    x0, calcium, recorded = frames(data.x)[0], frames(obs.calcium), frames(f)
    predicted = torch.stack(fluorescence_rollout(model, x0, calcium, data.dt, obs.indicator, horizon, substeps))
    held = np.concatenate([f[a:b] for a, b in data.heldout_bounds() if b > a])
    variance = torch.as_tensor(np.nanvar(held, axis=0), dtype=torch.float32, device=device).clamp(min=1e-12)
    error = (predicted - recorded[1:]) ** 2 / variance
    return float(torch.nanmean(error))


def scan_indicator_tau(
    recording: Activity,
    taus: Sequence[float],
    config: ExperimentConfig,
    *,
    indicator: IndicatorConfig | None = None,
    minutes: float = 3.0,
    horizon: int = 20,
    progress: bool = False,
) -> list[TauScore]:
    """Fit ``config`` to the calcium ``recording`` (x is fluorescence, with held-out frames) deconvolved with each of ``taus``.

    ``indicator`` gives the indicator's other parameters (default: a linear one); each candidate
    trains for ``minutes``. Returns the candidates' scores in the order given; the best has the
    smallest ``forecast_error``.
    """
    if not taus:
        raise ConfigError("taus: give at least one candidate time constant")
    if not isinstance(horizon, int) or horizon < 1:
        raise ConfigError(f"horizon must be a whole number of frames >= 1, got {horizon!r}")
    if not np.isfinite(minutes) or minutes <= 0:
        raise ConfigError(f"minutes must be a positive number (training time per candidate), got {minutes!r}")
    if recording.holdout <= 0:
        raise DatasetError(f"{recording.source}: the scan scores forecasts on held-out frames: set a holdout > 0")
    longest = max(b - a for a, b in recording.heldout_bounds())
    if longest <= horizon:
        raise DatasetError(
            f"{recording.source}: the longest held-out part has {longest} frames, a forecast of {horizon} needs more: "
            "shorten the horizon or hold out more"
        )
    if config.model.external_input != "none":
        raise ConfigError("the tau scan fits models without an external input (model.external_input: none)")
    base = (indicator or IndicatorConfig()).model_dump()
    candidates = [Indicator(indicator_config(base, f"tau candidate {tau!r}", tau=tau)) for tau in taus]  # all checked before any fit
    out = []
    for tau, candidate in zip(taus, candidates, strict=True):
        data = deconvolve_activity(recording, candidate)
        cfg = config.model_copy(deep=True)
        cfg.training.objective = "derivative"
        cfg.training.derivative = "recorded"
        cfg.training.max_minutes = minutes
        t0 = time.perf_counter()
        trainer = Trainer(cfg, data, progress=progress)
        run = trainer.fit()
        error = heldout_fluorescence_error(run.model, data, horizon)
        out.append(TauScore(float(tau), error, trainer.counters.global_iteration, time.perf_counter() - t0))
    return out
