"""The training loop: random frames, Adam with per-group learning rates, regulariser schedules,
epoch-end events (:mod:`circuitgnn.train.events`), atomic checkpoints and exact resume.

Reading order: :meth:`Trainer.step` is one optimisation step; :meth:`Trainer.fit` runs steps,
writes a log line every ``log_every`` iterations and a checkpoint every ``checkpoint_every`` (or every
``log_every_minutes`` and ``checkpoint_every_minutes`` of wall time), and runs the epoch-end events. The loss terms stay on the device between log lines: no step reads a
loss value back from the device. The run folder (:mod:`circuitgnn.train.run_folder`) is optional: without one, nothing
is written and the run cannot be resumed.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from circuitgnn.config import ExperimentConfig, load_config
from circuitgnn.data.activity import Activity, check_finite_array
from circuitgnn.data.dataset import Dataset
from circuitgnn.data.derivatives import roughness
from circuitgnn.device import check_fits, environment, pick_device
from circuitgnn.errors import CircuitGNNError, ConfigError, DatasetError
from circuitgnn.interrupts import deferred_interrupts
from circuitgnn.model.gnn import GNN
from circuitgnn.model.siren import make_input_model
from circuitgnn.threads import ThreadGovernor
from circuitgnn.train.data import FrameSource, activity_scale
from circuitgnn.train.events import Counters, run_epoch_events
from circuitgnn.train.losses import active_regularizers, fluorescence_error, regularized, rollout_error, stacked_loss, total_loss
from circuitgnn.train.run_folder import CHECKPOINT, RUN_INFO, ResumeError, RunFolder, TrainedRun, read_log
from circuitgnn.train.warm_start import warm_start

Scorer = Callable[[GNN, "torch.nn.Module | None", float], dict[str, float]]
"""``scorer(model, input_model, xnorm) -> {name: value}``, called at each log line (e.g. scores against ground truth)."""


class TrainingDiverged(CircuitGNNError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


def _connectivity_mask(config: ExperimentConfig, data: Activity) -> np.ndarray | None:
    """The mask of allowed weights; one made for all the caller's columns is cut to the neurons kept."""
    path = config.model.connectivity_mask
    if path is None:
        return None
    if not Path(path).is_file():
        raise DatasetError(f"model.connectivity_mask: file not found: {path}")
    mask = np.load(path, allow_pickle=False)
    n = data.n_neurons
    kept = data.neurons
    if kept is not None and mask.shape == (mask.shape[0], mask.shape[0]) and mask.shape[0] > int(kept.max()) and mask.shape[0] != n:
        mask = mask[np.ix_(kept, kept)]
    if mask.shape != (n, n):
        left_out = "" if kept is None else f" ({n} neurons kept of the data's columns)"
        raise DatasetError(f"model.connectivity_mask: {path} has shape {mask.shape}, expected ({n}, {n}) for these data{left_out}")
    return mask


def check_data_fits(config: ExperimentConfig, data: Activity) -> np.ndarray | None:
    """Check that the model and training settings fit the data, naming what does not; returns the connectivity mask."""
    m = config.model
    if m.external_input == "known" and data.inputs is None:
        raise DatasetError(
            f"model.external_input is 'known' but the data ({data.source}) have no recorded input (omega.npy, or fit(inputs=...)): "
            "give the input or set model.external_input to 'none'"
        )
    if m.external_input == "field" and data.grid_size == 0:
        raise DatasetError(
            f"model.external_input is 'field' but the data ({data.source}) have no stimulus grid "
            "(neurons.npz grid_size is 0, or fit(grid_size=...)): the field needs the driven neurons' grid positions"
        )
    if data.n_frames < 2:
        raise DatasetError(f"{data.source}: {data.n_frames} frame(s), training needs at least 2")
    tc = config.training
    if tc.objective == "derivative" and tc.derivative == "recorded" and data.dxdt is None:
        raise DatasetError(
            f"training.derivative is 'recorded' but the data ({data.source}) have no dx/dt: choose forward, central, savgol or "
            "spline, or training.objective 'rollout'"
        )
    if tc.objective == "fluorescence" and data.observation is None:
        raise DatasetError(
            f"training.objective is 'fluorescence' but {data.source} is not a deconvolved calcium recording: deconvolve it first "
            "(`circuitgnn deconvolve`), which keeps the fluorescence, the smoothed calcium and the indicator beside the activity"
        )
    if tc.extensions.w_solve is not None and (tc.objective != "derivative" or data.missing):
        raise DatasetError(
            "training.extensions.w_solve needs the derivative objective on data without missing values "
            f"(objective is {tc.objective!r}, {data.source} {'has' if data.missing else 'has no'} missing values)"
        )
    if m.low_rank is not None and m.low_rank > data.n_neurons:
        raise DatasetError(f"model.low_rank {m.low_rank} exceeds the data's {data.n_neurons} neurons")
    return _connectivity_mask(config, data)


def derivative_method(config: ExperimentConfig, data: Activity) -> str | None:
    """The dx/dt the derivative objective trains on: ``recorded`` or an estimator's name; None for the other objectives."""
    tc = config.training
    if tc.objective != "derivative":
        return None
    if tc.derivative != "auto":
        return tc.derivative
    if data.dxdt is not None:
        return "recorded"
    r = roughness(data.x)
    if r > 0.5:
        warnings.warn(
            f"the activity of {data.source} changes from frame to frame mostly by noise (roughness {r:.2f}; 0 is smooth, 1.7 white "
            "noise): forward differences will be noisy. Set training.derivative to 'spline' or 'savgol', or training.objective "
            "to 'rollout'",
            UserWarning,
            stacklevel=3,
        )
    return "forward"


def as_activity(data: Activity | Dataset | str | Path) -> Activity:
    """Training data from an :class:`Activity`, a :class:`Dataset` or a dataset folder's path."""
    if isinstance(data, Activity):
        return data
    ds = data if isinstance(data, Dataset) else Dataset(data)
    if ds.signal == "fluorescence":
        warnings.warn(
            f"{ds.path} holds the fluorescence of a calcium indicator ({ds.indicator.describe() if ds.indicator else 'unknown'}): "
            "the model will describe the fluorescence, not the activity behind it. Deconvolve it first (`circuitgnn deconvolve`)",
            UserWarning,
            stacklevel=3,
        )
    return ds.activity()


class _Cadence:
    """When a periodic action (a log line, a checkpoint) is due: every ``iterations`` global iterations, or, when
    ``minutes`` is given, once that much wall time has passed since it was last due."""

    def __init__(self, iterations: int, minutes: float | None):
        self.iterations = iterations
        self.seconds = None if minutes is None else 60.0 * minutes
        self.last = time.perf_counter()

    def __call__(self, iteration: int) -> bool:
        if self.seconds is None:
            return iteration % self.iterations == 0
        now = time.perf_counter()
        if now - self.last < self.seconds:
            return False
        self.last = now
        return True


class Trainer:
    """Trains a :class:`GNN` on activity, optionally writing a run folder.

    ``Trainer(config, "datasets/fig2", "runs/fig2").fit()`` trains from scratch;
    ``resume=True`` continues from the run's checkpoint exactly where it stopped. Every check
    (config against data, device, finite values, the run folder) happens here, before anything is
    written or deleted; an old run is replaced (``overwrite``) only when :meth:`fit` starts.
    """

    def __init__(
        self,
        config: ExperimentConfig,
        data: Activity | Dataset | str | Path,
        run_dir: str | Path | None = None,
        *,
        resume: bool = False,
        overwrite: bool = False,
        progress: bool = True,
        scorer: Scorer | None = None,
    ):
        self.config = config
        self.data = as_activity(data)
        self.progress = progress
        self.resume = resume
        self.scorer = scorer
        tc = config.training
        mask = check_data_fits(config, self.data)
        self.device = pick_device(tc.device)
        self.threads = ThreadGovernor(self.device)
        m = config.model
        params = (0 if m.low_rank is not None else self.data.n_neurons**2) + (m.phi_layers + m.psi_layers) * m.hidden**2
        check_fits(
            16.0 * params, f"training with N = {self.data.n_neurons} and hidden = {m.hidden} (weights, gradients, Adam)", self.device
        )
        self.use_input = config.model.external_input == "known"
        if not self.data.checked_finite:
            for name, array in {"x": self.data.x, "dxdt": self.data.dxdt, "inputs": self.data.inputs}.items():
                if array is not None and (name != "inputs" or self.use_input):
                    check_finite_array(array, self.data.label(name), allow_nan=self.data.missing and name != "inputs")
        self.derivative = derivative_method(config, self.data)
        self.horizon = tc.rollout.steps if self.derivative is None else 0
        self.starts = torch.from_numpy(self.data.start_frames(self.horizon))
        if len(self.starts) < tc.batch_size:
            raise DatasetError(
                f"{self.data.source}: {len(self.starts)} frames to train from (training.batch_size is {tc.batch_size}); "
                + (f"a rollout of {self.horizon} frames needs segments longer than that, " if self.horizon else "")
                + "with holdout, segments and missing values taken out"
            )
        self.run = RunFolder(run_dir) if run_dir is not None else None
        if self.run is not None:
            self.run.check(resume, overwrite)
        elif resume:
            raise ResumeError("resume needs a run folder (run_dir) holding a checkpoint")

        self.n_frames = self.data.n_frames
        torch.manual_seed(tc.seed)
        init_gen = torch.Generator().manual_seed(tc.seed)
        self.model = GNN(config.model, self.data.n_neurons, mask=mask, generator=init_gen).to(self.device)
        self.optimizer = self._make_optimizer()
        mode = tc.compile_mode(self.device.type)
        self._compiled_loss = None if mode == "off" else torch.compile(stacked_loss, mode=mode)
        self._weights: dict[tuple[float, ...], torch.Tensor] = {}  # the regularisers' coefficients on the device, per value
        self.input_model = make_input_model(config.model, self.n_frames, self.data.n_neurons, self.data.grid_size, init_gen)
        self.input_optimizer = None
        if self.input_model is not None:
            self.input_model.to(self.device)
            self.input_optimizer = torch.optim.Adam(self.input_model.parameters(), lr=tc.lr_input)
        self.sampler = torch.Generator().manual_seed(tc.seed + 1)
        self.counters = Counters()
        self.xnorm = activity_scale(self.data.x, self.data.scale, self.data.train_bounds())
        if not self.xnorm > 0:
            raise DatasetError(f"{self.data.source}: the activity is constant (its scale is {self.xnorm}): there is nothing to learn from")
        arrays = self._arrays()
        # a target is missing where x is, and where an estimate has too few frames (a one-frame segment)
        self.masked = self.data.missing or (self.derivative not in (None, "recorded") and bool(np.isnan(arrays[1]).any()))
        self.source = FrameSource(arrays, self.device)
        self.iters_per_epoch = tc.iterations_per_epoch or max(1, len(self.starts) // tc.batch_size)
        self._fingerprint = self._data_fingerprint() if self.run is not None else None
        self._sums: dict[str, torch.Tensor] = {}  # loss terms summed on the device since the last log line
        self._n_sum = 0
        self.history: list[dict[str, Any]] = []  # the log lines (also in the run folder's log.jsonl)
        if resume:
            self._load_checkpoint()

    def _arrays(self) -> list[np.ndarray]:
        """What the batches read: x, then the target dx/dt (derivative objective) or the smoothed calcium and the
        fluorescence (fluorescence objective), then the known input."""
        d = self.data
        arrays = [d.x]
        if self.config.training.objective == "fluorescence":
            assert d.observation is not None
            arrays += [d.observation.calcium, d.observation.fluorescence]
        elif self.derivative == "recorded":
            assert d.dxdt is not None
            arrays.append(d.dxdt)
        elif self.derivative is not None:
            arrays.append(d.derivative(self.derivative))  # type: ignore[arg-type]
        if self.use_input and d.inputs is not None:
            arrays.append(d.inputs)
        return arrays

    # ------------------------------------------------------------- optimiser
    def _make_optimizer(self) -> torch.optim.Optimizer:
        tc = self.config.training
        m = self.model
        w_params = [m.W] if m.cfg.low_rank is None else [m.L, m.R]
        groups = [
            {"name": "W", "params": w_params, "lr": tc.lr_w},
            {"name": "phi", "params": list(m.phi.parameters()), "lr": tc.lr_mlp},
            {"name": "psi", "params": list(m.psi.parameters()), "lr": tc.lr_mlp},
        ]
        if isinstance(m.a, torch.nn.Parameter):
            groups.append({"name": "embedding", "params": [m.a], "lr": tc.lr_embedding})
        try:
            return torch.optim.Adam(groups, fused=True)
        except (RuntimeError, TypeError):  # fused Adam unavailable for this device or build
            return torch.optim.Adam(groups)

    def _set_learning_rates(self) -> dict[str, float]:
        """The epoch's learning rates: psi* and embeddings frozen after a clustering, W held between solves, W's and the
        embeddings' rates scaled down once a warm start has set them."""
        tc = self.config.training
        ws, warm = tc.extensions.w_solve, tc.extensions.warm_start
        frozen = self.counters.epoch < self.counters.frozen_until_epoch
        w_by_solves_only = ws is not None and not ws.adam_on_w and self.counters.w_solves > 0
        scale = warm.lr_scale if warm is not None and self.counters.warm_started else 1.0
        base = {
            "W": 0.0 if w_by_solves_only else scale * tc.lr_w,
            "phi": tc.lr_mlp,
            "psi": 0.0 if frozen else tc.lr_mlp,
            "embedding": 0.0 if frozen else scale * tc.lr_embedding,
        }
        for g in self.optimizer.param_groups:
            g["lr"] = base[g["name"]]
        lrs = {g["name"]: g["lr"] for g in self.optimizer.param_groups}
        if self.input_optimizer is not None:  # the config's rate wins over a resumed checkpoint's
            for g in self.input_optimizer.param_groups:
                g["lr"] = tc.lr_input
            lrs["input"] = tc.lr_input
        return lrs

    def coefficients(self, epoch: int) -> dict[str, float]:
        reg = self.config.training.regularization
        return {name: getattr(reg, name).at(epoch) for name in ("phi_zero", "phi_decreasing", "psi_monotone", "w_l1", "w_shrink")}

    # ------------------------------------------------------------ checkpoints
    def _data_fingerprint(self) -> dict[str, Any]:
        d = self.data
        return {**self._data_summary(), "x_sha256": d.x_fingerprint()}

    def _data_summary(self) -> dict[str, Any]:
        d = self.data
        return {
            "path": d.source,
            "n_neurons": d.n_neurons,
            "n_frames": d.n_frames,
            "grid_size": d.grid_size,
            "dt": d.dt,
            "input_mode": d.input_mode,
            "segments": list(d.segments),
            "holdout": d.holdout,
            "neurons": None if d.neurons is None else d.neurons.tolist(),
            "objective": self.config.training.objective,
            "derivative": self.derivative,
        }

    def save_checkpoint(self, status: str = "running") -> Path | None:
        """Write the checkpoint, then run.json with the same counters (so a killed run's run.json stays true)."""
        if self.run is None:
            return None
        self.run.save_checkpoint(
            {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "input_model": self.input_model.state_dict() if self.input_model is not None else None,
                "input_optimizer": self.input_optimizer.state_dict() if self.input_optimizer is not None else None,
                "sampler": self.sampler.get_state(),
                "counters": self.counters.__dict__,
                "log_sums": ({k: v.detach().cpu() for k, v in self._sums.items()}, self._n_sum),  # the next log line's share
                "xnorm": self.xnorm,
                "config": self.config.model_dump(mode="json"),
                "dataset": self._fingerprint,
            }
        )
        self._write_run_info(status)
        return self.run.checkpoint

    def _load_checkpoint(self) -> None:
        assert self.run is not None and self._fingerprint is not None
        path = self.run.checkpoint
        state = self.run.load_checkpoint()
        old_model = state["config"]["model"]
        new_model = self.config.model.model_dump(mode="json")
        diffs = [
            f"model.{k}: {old_model.get(k)!r} in the checkpoint, {v!r} in the config" for k, v in new_model.items() if old_model.get(k) != v
        ]
        if diffs:
            raise ResumeError(f"checkpoint {path} comes from an incompatible config:\n  " + "\n  ".join(diffs))
        fp = state["dataset"]
        if fp["n_neurons"] != self.data.n_neurons or fp["x_sha256"] != self._fingerprint["x_sha256"]:
            raise ResumeError(
                f"checkpoint {path} was trained on other data ({fp['path']}, N = {fp['n_neurons']}); "
                f"these are {self.data.source} (N = {self.data.n_neurons})"
            )
        # which frames and targets training reads (checkpoints before recordings: one segment, nothing held out, the data's dx/dt)
        before = {"segments": [0], "holdout": 0.0, "objective": "derivative", "derivative": "recorded"}
        changed = [
            f"{key}: {fp.get(key, default)!r} in the checkpoint, {self._fingerprint[key]!r} now"
            for key, default in before.items()
            if fp.get(key, default) != self._fingerprint[key]
        ]
        if changed:
            raise ResumeError(f"checkpoint {path} trained on other frames or targets:\n  " + "\n  ".join(changed))
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.input_model is not None:
            assert self.input_optimizer is not None
            self.input_model.load_state_dict(state["input_model"])
            self.input_optimizer.load_state_dict(state["input_optimizer"])
        self.sampler.set_state(state["sampler"])
        self.counters = Counters(**state["counters"])
        sums, self._n_sum = state.get("log_sums", ({}, 0))  # older checkpoints: none
        self._sums = {k: v.to(self.device) for k, v in sums.items()}
        self.xnorm = float(state["xnorm"])

    def _write_run_info(self, status: str) -> None:
        assert self.run is not None
        self.run.write_info(
            {
                "status": status,
                "dataset": self.data.source,
                "n_neurons": self.data.n_neurons,
                "n_frames": self.n_frames,
                "xnorm": self.xnorm,
                "iterations_per_epoch": self.iters_per_epoch,
                "global_iteration": self.counters.global_iteration,
                "train_seconds": self.counters.train_seconds,
                "clusterings": self.counters.clusterings,
                "device": str(self.device),
                "environment": environment(),
            }
        )

    # ------------------------------------------------------------------ step
    def _inputs(self, idx: torch.Tensor, recorded: torch.Tensor | None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(omega, extra) at frames ``idx``: ``recorded`` (a known input), learned (field / low rank) or none."""
        kind = self.config.model.external_input
        if kind == "known":
            assert recorded is not None
            return (recorded, None) if self.data.input_mode == "multiplicative" else (None, recorded)
        if self.input_model is None:
            return None, None
        if kind == "field":
            return self.input_model(idx.to(self.device).float() / self.n_frames), None
        return None, self.input_model(idx.to(self.device))

    def step(self, coeffs: dict[str, float], lrs: dict[str, float], delta: float) -> None:
        """One optimisation step on a random batch of frames; the loss terms are added to the running sums on the device."""
        tc = self.config.training
        idx = self.starts[torch.randint(len(self.starts), (tc.batch_size,), generator=self.sampler)]
        if self.derivative is not None:
            batch = self.source.batch(idx)
            omega, extra = self._inputs(idx, batch[2] if self.use_input else None)
            if self._compiled_loss is None:
                loss, terms = total_loss(
                    self.model, batch[0], batch[1], coeffs, delta, omega, extra, tc.extensions.monotone_norm, self.masked
                )
            else:
                loss, terms = self._compiled_step_loss(batch[0], batch[1], coeffs, delta, omega, extra)
        else:
            loss, terms = self._rollout_loss(idx, coeffs, delta)
        self.optimizer.zero_grad(set_to_none=True)
        if self.input_optimizer is not None:
            self.input_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        if coeffs["w_shrink"] > 0:
            self.model.shrink_w(coeffs["w_shrink"] * lrs["W"], tc.extensions.w_shrink_keep_norm)
        if self.input_optimizer is not None:
            self.input_optimizer.step()
        for k, v in {"total": loss.detach(), **terms}.items():
            # a copy, not v itself: a CUDA graph's outputs are overwritten by its next replay
            self._sums[k] = self._sums[k] + v if k in self._sums else v.clone()
        self._n_sum += 1

    def _compiled_step_loss(
        self,
        x: torch.Tensor,
        target: torch.Tensor,
        coeffs: dict[str, float],
        delta: float,
        omega: torch.Tensor | None,
        extra: torch.Tensor | None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The derivative objective through ``torch.compile`` (training.compile): :func:`stacked_loss`, with the
        coefficients as a device tensor so that a new value of them is not a new graph."""
        assert self._compiled_loss is not None
        names = active_regularizers(coeffs)
        key = tuple(coeffs[name] for name in names)
        if key not in self._weights:
            self._weights[key] = torch.tensor(key, dtype=torch.float32, device=self.device)
        monotone_norm = self.config.training.extensions.monotone_norm
        loss, values = self._compiled_loss(
            self.model, x, target, names, self._weights[key], delta, omega, extra, monotone_norm, self.masked
        )
        return loss, dict(zip(("prediction", *names), values.unbind(), strict=True))

    def _rollout_loss(self, idx: torch.Tensor, coeffs: dict[str, float], delta: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The rollout (or fluorescence) objective on start frames ``idx``: the model integrated k frames from each, against
        the recorded activity (or fluorescence)."""
        tc = self.config.training
        k, b = self.horizon, len(idx)
        rows = (idx[None, :] + torch.arange(k + 1)[:, None]).reshape(-1)
        batch = [a.reshape(k + 1, b, -1) for a in self.source.batch(rows)]
        frames = batch[0]
        recorded = batch[-1] if self.use_input else None
        inputs = [self._inputs(rows[s * b : (s + 1) * b], None if recorded is None else recorded[s]) for s in range(k)]
        r = tc.rollout
        if tc.objective == "fluorescence":
            observation = self.data.observation
            assert observation is not None
            error = fluorescence_error(
                self.model,
                frames[0],
                batch[1],
                batch[2],
                self.data.dt,
                observation.indicator,
                r.substeps,
                r.integrator,
                inputs,
                self.masked,
            )
        else:
            error = rollout_error(self.model, frames, self.data.dt, r.substeps, r.integrator, inputs, self.masked)
        return regularized(self.model, frames[0], error, coeffs, delta, tc.extensions.monotone_norm)

    def _take_means(self) -> dict[str, float]:
        """The loss terms' means since the last call (one wait for the device); raises when one is not finite."""
        means = {k: float(v) / self._n_sum for k, v in self._sums.items()}
        self._sums, self._n_sum = {}, 0
        self._raise_if_diverged(means)
        return means

    def _check_finite(self) -> None:
        """Raise when a loss term since the last log line or a parameter is not finite (before a checkpoint: never save a
        diverged model; a step can leave NaN weights behind a finite loss)."""
        if self._n_sum:
            self._raise_if_diverged({k: float(v) for k, v in self._sums.items()})
        models = [self.model] + ([self.input_model] if self.input_model is not None else [])
        bad = [name for m in models for name, p in m.named_parameters() if not bool(torch.isfinite(p).all())]
        if bad:
            raise self._diverged(f"parameter {', '.join(bad)} became NaN or infinite")

    def _raise_if_diverged(self, values: dict[str, float]) -> None:
        bad = {k: v for k, v in values.items() if not np.isfinite(v)}
        if bad:
            raise self._diverged(f"the loss became {bad}")

    def _diverged(self, what: str) -> TrainingDiverged:
        """The divergence error: what became non-finite, when, and whether a good checkpoint is kept."""
        c = self.counters
        kept = (
            f"the last good checkpoint in {self.run.checkpoint} is kept"
            if self.run is not None and self.run.checkpoint.is_file()
            else "no checkpoint was written"
        )
        return TrainingDiverged(f"{what} before iteration {c.global_iteration} (epoch {c.epoch}); {kept}. Lower the learning rates")

    def _warn_if_worse_than_nothing(self, factor: float = 10.0) -> None:
        """Warn when the final prediction error is far above that of predicting dx/dt = 0 (the learning rates are too high:
        a run can end with a finite loss 10^5 times too large and nothing learned)."""
        if self.derivative is None or not self.history or "loss_prediction" not in self.history[-1]:
            return
        target = self.source.batch(self.starts[:: max(1, len(self.starts) // 4096)])[1]
        baseline = float(torch.nanmean(target.float() ** 2))
        final = float(self.history[-1]["loss_prediction"])
        if baseline > 0 and final > factor * baseline:
            warnings.warn(
                f"training ended with a prediction error of {final:.3g}, {final / baseline:.3g} times that of predicting no change "
                f"({baseline:.3g}): nothing useful was learned; lower the learning rates",
                UserWarning,
                stacklevel=3,
            )

    def _mark_diverged(self) -> None:
        """run.json says the run diverged (its counters stay those of the last good checkpoint, the one kept)."""
        if self.run is None or not (self.run.path / RUN_INFO).is_file():
            return
        info = json.loads((self.run.path / RUN_INFO).read_text())
        self.run.write_info({**info, "status": "diverged"})

    def score(self) -> dict[str, float]:
        """The caller's scores of the current model (empty without a scorer)."""
        if self.scorer is None:
            return {}
        with torch.no_grad():
            return self.scorer(self.model, self.input_model, self.xnorm)

    # ------------------------------------------------------------------ loop
    def fit(self, max_iterations: int | None = None) -> TrainedRun:
        """Train until ``n_epochs`` are done (or ``max_iterations`` global iterations, by default the config's
        ``training.max_iterations``, or ``max_minutes``).

        Ctrl-C (or SIGTERM) finishes the current step, saves a checkpoint and raises ``KeyboardInterrupt``:
        resuming it gives the run an uninterrupted fit would have (a second Ctrl-C stops at once and keeps the last
        periodic checkpoint). A NaN loss raises :class:`TrainingDiverged` and keeps the last good checkpoint.
        """
        if max_iterations is not None and (isinstance(max_iterations, bool) or not isinstance(max_iterations, int) or max_iterations < 0):
            raise ConfigError(
                f"max_iterations must be a whole number >= 0 (global iterations in all; 0: the warm start only), got {max_iterations!r}"
            )
        with self.run.locked() if self.run is not None else nullcontext():
            return self._fit(self.config.training.max_iterations if max_iterations is None else max_iterations)

    def _fit(self, max_iterations: int | None) -> TrainedRun:
        tc = self.config.training
        c = self.counters
        if self.run is not None:
            self.run.start(self.config, self.resume, c.global_iteration)
            self.history = read_log(self.run.path)
            self.resume = True  # a second fit() continues this run instead of replacing it
            self._write_run_info("running")
        bar = tqdm(
            total=tc.n_epochs * self.iters_per_epoch, initial=c.global_iteration, unit="it", disable=not self.progress, smoothing=0.05
        )
        deadline = None if tc.max_minutes is None else time.perf_counter() + 60 * tc.max_minutes
        log_due, checkpoint_due = _Cadence(tc.log_every, tc.log_every_minutes), _Cadence(tc.checkpoint_every, tc.checkpoint_every_minutes)
        status = "finished"
        t_last = time.perf_counter()
        with deferred_interrupts() as stop:
            try:
                if tc.extensions.warm_start is not None and not c.warm_started and c.global_iteration == 0:
                    bar.write(self._warm_start(stop, deadline))
                    t_last = time.perf_counter()
                while c.epoch < tc.n_epochs:
                    lrs = self._set_learning_rates()
                    coeffs = self.coefficients(c.epoch)
                    delta = tc.regularization.delta_fraction * self.xnorm
                    while c.iteration < self.iters_per_epoch:
                        if stop.requested:  # between two steps: the checkpoint below is the state of a whole number of steps
                            raise KeyboardInterrupt
                        if max_iterations is not None and c.global_iteration >= max_iterations:
                            raise _Stop
                        if deadline is not None and time.perf_counter() > deadline:
                            raise _Stop
                        self.step(coeffs, lrs, delta)
                        self.threads.update()
                        c.iteration += 1
                        c.global_iteration += 1
                        bar.update(1)
                        if log_due(c.global_iteration):
                            now = time.perf_counter()
                            c.train_seconds += now - t_last
                            line = self._log(lrs, coeffs)
                            bar.set_postfix(
                                loss=f"{line['loss_prediction']:.3g}", **({"W_r2": f"{line['W_r2']:.3f}"} if "W_r2" in line else {})
                            )
                            t_last = time.perf_counter()
                        if checkpoint_due(c.global_iteration):
                            self._check_finite()
                            self.save_checkpoint()
                    self._check_finite()  # events never see a diverged model
                    for message in run_epoch_events(self):
                        bar.write(message)
                    c.epoch += 1
                    c.iteration = 0
            except _Stop:
                status = "stopped"
            except TrainingDiverged:
                self._mark_diverged()
                raise
            except KeyboardInterrupt:
                if stop.forced:  # stopped mid-step: the last periodic checkpoint is the consistent state, keep it
                    raise
                c.train_seconds += time.perf_counter() - t_last
                self._check_finite()
                self.save_checkpoint("interrupted")
                raise
            finally:
                bar.close()
                self.threads.restore()
        c.train_seconds += time.perf_counter() - t_last
        if self._n_sum:
            self._log(self._set_learning_rates(), self.coefficients(min(c.epoch, tc.n_epochs - 1)))
        self.save_checkpoint(status)
        self._warn_if_worse_than_nothing()
        return TrainedRun(
            self.run.path if self.run else None,
            self.config,
            self.model,
            self.xnorm,
            list(self.history),
            self.input_model,
            self._data_summary(),
        )

    def _warm_start(self, stop: Any, deadline: float | None) -> str:
        """Set the model from the spline fit (extensions.warm_start) on evenly spaced training frames, log it with the
        scores and save a checkpoint (a resume does not fit again); returns a line for the user."""
        ws = self.config.training.extensions.warm_start
        assert ws is not None
        started = time.perf_counter()
        idx = self.starts[torch.linspace(0, len(self.starts) - 1, min(ws.n_frames(self.model.n), len(self.starts))).long()]
        x, y = self.source.batch(idx)[:2]
        complete = torch.isfinite(x).all(1) & torch.isfinite(y).all(1)
        if int(complete.sum()) < 10:
            raise DatasetError(f"{self.data.source}: training.extensions.warm_start needs at least 10 frames without missing values")
        if not bool(complete.all()):  # a copy of the frames: at N = 8,000, 1.3 GB
            x, y = x[complete], y[complete]
        tc = self.config.training
        found = warm_start(
            self.model, x, y, ws, tc.seed, should_stop=lambda: stop.requested, deadline=deadline, max_groups=tc.clustering.max_types
        )
        c = self.counters
        c.warm_started = True
        c.train_seconds += time.perf_counter() - started
        with torch.no_grad():  # the loss terms where training starts, on a sample of the frames the fit used
            rows = torch.arange(0, len(x), max(1, len(x) // 256), device=x.device)
            delta = tc.regularization.delta_fraction * self.xnorm
            loss, terms = total_loss(
                self.model, x[rows], y[rows], self.coefficients(c.epoch), delta, None, None, tc.extensions.monotone_norm
            )
        self._record({**{f"loss_{k}": float(v) for k, v in {"total": loss, **terms}.items()}, **found.as_dict()})
        self._check_finite()
        self.save_checkpoint()
        return (
            f"warm start: spline fit in {found.fit_seconds:.1f} s ({len(found.fit.history) - 1} Gauss-Newton steps"
            f"{', float64 products: float32 was not accurate enough on these frames' if found.fit.products == torch.float64 else ''}), "
            f"phi* and psi* fitted to it in {found.distill_seconds:.1f} s"
        )

    def _log(self, lrs: dict[str, float], coeffs: dict[str, float]) -> dict[str, Any]:
        return self._record(
            {
                **{f"loss_{k}": v for k, v in self._take_means().items()},
                **{f"lr_{k}": v for k, v in lrs.items()},
                **{f"coef_{k}": v for k, v in coeffs.items() if v},
            }
        )

    def _record(self, fields: dict[str, Any]) -> dict[str, Any]:
        """Append a log line: where training stands, ``fields``, then the scores."""
        c = self.counters
        line = {"iteration": c.global_iteration, "epoch": c.epoch, "train_seconds": round(c.train_seconds, 3), **fields, **self.score()}
        self.history.append(line)
        if self.run is not None:
            self.run.append_log(line)
        return line


class _Stop(Exception):
    """Internal: leave the loop early (iteration or time budget) with a checkpoint."""


def train(config: ExperimentConfig | str | Path, data: str | Path, out: str | Path, **kwargs: Any) -> TrainedRun:
    """Convenience: load the config if given as a path, then ``Trainer(...).fit()``."""
    if not isinstance(config, ExperimentConfig):
        config = load_config(config)
    return Trainer(config, data, out, **kwargs).fit()


__all__ = ["CHECKPOINT", "Scorer", "Trainer", "TrainingDiverged", "as_activity", "check_data_fits", "train"]
