"""The training loop: random frames, Adam with per-group learning rates, regulariser schedules,
unsupervised type clustering, atomic checkpoints, exact resume.

A run folder holds::

    config.yaml            the resolved config
    run.json               dataset, xnorm, status (running / interrupted / finished), environment
    log.jsonl              one line per log interval: iteration, epoch, loss terms, learning rates,
                           time, and W R^2 / slope / type accuracy when the dataset has ground truth
    checkpoint.pt          the latest checkpoint (model, optimiser, random state, counters), written atomically
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import adjusted_rand_score
from tqdm.auto import tqdm

from circuitgnn.analyze.clustering import cluster_neurons, kmeans_silhouette, phi_profiles
from circuitgnn.analyze.metrics import connectivity_score, matched_accuracy
from circuitgnn.config import ExperimentConfig, config_from_dict, dump_config, load_config
from circuitgnn.data.dataset import Dataset, evenly_spaced_frames
from circuitgnn.data.writer import write_json_atomic
from circuitgnn.device import environment, pick_device
from circuitgnn.errors import CircuitGNNError, DatasetError
from circuitgnn.interrupts import sigterm_as_interrupt
from circuitgnn.model.gnn import CircuitGNN
from circuitgnn.model.siren import LowRankInput, StimulusField
from circuitgnn.simulate.neurons import grid_coordinates
from circuitgnn.train.data import FrameSource, activity_scale, check_finite
from circuitgnn.train.losses import total_loss
from circuitgnn.train.wsolve import solve_connectivity

CHECKPOINT = "checkpoint.pt"
LOG = "log.jsonl"
RUN_INFO = "run.json"
CONFIG = "config.yaml"


class TrainingDiverged(CircuitGNNError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class ResumeError(CircuitGNNError):
    """A checkpoint cannot be resumed with this config or dataset."""


@dataclass
class Counters:
    """Where training stands; saved in every checkpoint."""

    epoch: int = 0
    iteration: int = 0  # within the epoch
    global_iteration: int = 0
    train_seconds: float = 0.0
    frozen_until_epoch: int = 0  # psi* and embeddings frozen while epoch < this
    clusterings: list[dict[str, Any]] = field(default_factory=list)
    cluster_labels: list[int] | None = None  # the latest clustering's partition
    clustering_stable: bool = False  # clustering.stop_at_ari was reached: no more clusterings
    w_solves: int = 0  # exact least-squares solves of W so far (training.w_solve)


def _save_atomic(obj: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _validate_inputs(config: ExperimentConfig, dataset: Dataset) -> np.ndarray | None:
    """Check that the model fits the dataset; returns the connectivity mask, if any."""
    m = config.model
    n = dataset.n_neurons
    if m.external_input == "known" and dataset.omega is None:
        raise DatasetError(
            f"model.external_input is 'known' but the dataset {dataset.path} has no omega.npy (recorded input): "
            "simulate with a stimulus or set model.external_input to 'none'"
        )
    if m.external_input == "field" and int(dataset.neurons.get("grid_size", 0)) == 0:
        raise DatasetError(
            f"model.external_input is 'field' but the dataset {dataset.path} has no stimulus grid "
            "(neurons.npz grid_size is 0): the field needs the driven neurons' grid positions"
        )
    if dataset.n_frames < 2:
        raise DatasetError(f"{dataset.path}: {dataset.n_frames} frame(s), training needs at least 2")
    if config.training.batch_size > dataset.n_frames:
        raise DatasetError(f"training.batch_size {config.training.batch_size} exceeds the dataset's {dataset.n_frames} frames")
    if m.low_rank is not None and m.low_rank > n:
        raise DatasetError(f"model.low_rank {m.low_rank} exceeds the dataset's {n} neurons")
    if m.connectivity_mask is None:
        return None
    path = Path(m.connectivity_mask)
    if not path.is_file():
        raise DatasetError(f"model.connectivity_mask: file not found: {path}")
    mask = np.load(path, allow_pickle=False)
    if mask.shape != (n, n):
        raise DatasetError(f"model.connectivity_mask: {path} has shape {mask.shape}, expected ({n}, {n}) for this dataset")
    return mask


class Trainer:
    """Trains a :class:`CircuitGNN` on a dataset, writing a run folder.

    ``Trainer(config, "datasets/fig2", "runs/fig2").fit()`` trains from scratch;
    ``resume=True`` continues from the run's checkpoint exactly where it stopped.
    """

    def __init__(
        self,
        config: ExperimentConfig,
        dataset: Dataset | str | Path,
        run_dir: str | Path,
        *,
        resume: bool = False,
        overwrite: bool = False,
        progress: bool = True,
    ):
        self.config = config
        self.dataset = dataset if isinstance(dataset, Dataset) else Dataset(dataset)
        self.run_dir = Path(run_dir)
        self.progress = progress
        self.resume = resume
        mask = _validate_inputs(config, self.dataset)
        ckpt_path = self.run_dir / CHECKPOINT
        if resume:
            if not ckpt_path.is_file():
                raise ResumeError(f"--resume: no checkpoint in {self.run_dir} ({CHECKPOINT} is missing)")
        elif self.run_dir.exists() and any(self.run_dir.iterdir()):
            if not overwrite:
                raise FileExistsError(f"{self.run_dir} already holds a run: pass --resume to continue it or --overwrite to replace it")
            shutil.rmtree(self.run_dir)

        tc = config.training
        self.device = pick_device(tc.device)
        self.use_input = config.model.external_input == "known"
        names = ["x", "dxdt"] + (["omega"] if self.use_input else [])
        check_finite(self.dataset, names)
        torch.manual_seed(tc.seed)
        init_gen = torch.Generator().manual_seed(tc.seed)
        self.model = CircuitGNN(config.model, self.dataset.n_neurons, mask=mask, generator=init_gen).to(self.device)
        self.optimizer = self._make_optimizer()
        self.input_model = make_input_model(config, self.dataset, init_gen)
        self.input_optimizer = None
        if self.input_model is not None:
            self.input_model.to(self.device)
            self.input_optimizer = torch.optim.Adam(self.input_model.parameters(), lr=tc.lr_input)
        self.sampler = torch.Generator().manual_seed(tc.seed + 1)
        self.counters = Counters()
        self.xnorm = activity_scale(self.dataset)
        self.source = FrameSource(self.dataset, names, self.device)
        self.iters_per_epoch = tc.iterations_per_epoch or max(1, self.dataset.n_frames // tc.batch_size)
        truth = self.dataset.truth
        self.truth_gain = None
        if truth is not None:
            gains = np.array([t["gain"] for t in truth.functions["types"]])
            self.truth_gain = gains[truth.types]
        if resume:
            self._load_checkpoint(ckpt_path)

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
        tc = self.config.training
        frozen = self.counters.epoch < self.counters.frozen_until_epoch
        w_by_solves_only = tc.w_solve is not None and not tc.w_solve.adam_on_w and self.counters.w_solves > 0
        base = {
            "W": 0.0 if w_by_solves_only else tc.lr_w,
            "phi": tc.lr_mlp,
            "psi": 0.0 if frozen else tc.lr_mlp,
            "embedding": 0.0 if frozen else tc.lr_embedding,
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
    def _dataset_fingerprint(self) -> dict[str, Any]:
        return {
            "path": str(self.dataset.path.resolve()),
            "n_neurons": self.dataset.n_neurons,
            "n_frames": self.dataset.n_frames,
            "x_sha256": self.dataset.meta["arrays"]["x"].get("sha256"),
        }

    def save_checkpoint(self, status: str = "running") -> Path:
        """Write the checkpoint, then run.json with the same counters (so a killed run's run.json stays true)."""
        path = self.run_dir / CHECKPOINT
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "input_model": self.input_model.state_dict() if self.input_model is not None else None,
            "input_optimizer": self.input_optimizer.state_dict() if self.input_optimizer is not None else None,
            "sampler": self.sampler.get_state(),
            "counters": self.counters.__dict__,
            "xnorm": self.xnorm,
            "config": self.config.model_dump(mode="json"),
            "dataset": self._dataset_fingerprint(),
        }
        _save_atomic(state, path)
        self._write_run_info(status)
        return path

    def _load_checkpoint(self, path: Path) -> None:
        try:
            # Loaded on the CPU: load_state_dict moves model and optimizer tensors to their parameters'
            # device, and the sampler (a CPU generator) needs its state as a CPU ByteTensor.
            state = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as err:  # a truncated or foreign file
            raise ResumeError(f"{path} is not a readable circuitgnn checkpoint ({err})") from None
        old_model = state["config"]["model"]
        new_model = self.config.model.model_dump(mode="json")
        diffs = [f"model.{k}: {old_model.get(k)!r} in the checkpoint, {v!r} in the config" for k, v in new_model.items() if old_model.get(k) != v]
        if diffs:
            raise ResumeError(f"checkpoint {path} comes from an incompatible config:\n  " + "\n  ".join(diffs))
        fp = state["dataset"]
        if fp["n_neurons"] != self.dataset.n_neurons or fp["x_sha256"] != self._dataset_fingerprint()["x_sha256"]:
            raise ResumeError(
                f"checkpoint {path} was trained on another dataset ({fp['path']}, N = {fp['n_neurons']}); "
                f"this one is {self.dataset.path} (N = {self.dataset.n_neurons})"
            )
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.input_model is not None:
            self.input_model.load_state_dict(state["input_model"])
            self.input_optimizer.load_state_dict(state["input_optimizer"])
        self.sampler.set_state(state["sampler"])
        self.counters = Counters(**state["counters"])
        self.xnorm = float(state["xnorm"])

    def _write_run_info(self, status: str) -> None:
        write_json_atomic(
            self.run_dir / RUN_INFO,
            {
                "status": status,
                "dataset": str(self.dataset.path.resolve()),
                "n_neurons": self.dataset.n_neurons,
                "n_frames": self.dataset.n_frames,
                "xnorm": self.xnorm,
                "iterations_per_epoch": self.iters_per_epoch,
                "global_iteration": self.counters.global_iteration,
                "train_seconds": self.counters.train_seconds,
                "clusterings": self.counters.clusterings,
                "device": str(self.device),
                "environment": environment(),
            },
        )

    def _truncate_log(self) -> None:
        """On resume, drop log lines written after the checkpoint (that work is redone)."""
        log = self.run_dir / LOG
        if not log.is_file():
            return
        keep = [line for line in log.read_text().splitlines() if line and json.loads(line)["iteration"] <= self.counters.global_iteration]
        log.write_text("".join(line + "\n" for line in keep))

    # -------------------------------------------------------------- metrics
    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Scores against ground truth (empty without it): W R^2 and slope, raw and corrected, and type accuracy."""
        truth = self.dataset.truth
        if truth is None:
            return {}
        out = connectivity_score(self.model, truth.connectivity, self.truth_gain, self.xnorm, n_points=200).as_dict()
        if self.config.model.external_input == "field" and self.dataset.omega is not None:
            from circuitgnn.analyze.stimulus import stimulus_score

            out["omega_r2"] = stimulus_score(self.input_model, self.dataset)["omega_r2"]
        if isinstance(self.model.a, torch.nn.Parameter):
            emb = self.model.a.detach().cpu().numpy()
            found = kmeans_silhouette(emb, self.config.training.clustering.max_types, seed=0)
            out["type_accuracy"] = matched_accuracy(truth.types, found.labels)
            out["n_clusters"] = found.k
        return out

    # ----------------------------------------------------------- clustering
    def _cluster(self) -> dict[str, Any]:
        """Group neurons without labels, share embeddings within groups, refit phi* to the group profiles;
        with ``clustering.stop_at_ari``, a partition that repeats the previous one ends clustering instead."""
        cc = self.config.training.clustering
        m = self.model
        seed = self.config.training.seed + self.counters.epoch
        result = cluster_neurons(m, cc.features, cc.max_types, cc.profile_range, seed)
        labels = result.labels
        record: dict[str, Any] = {"epoch": self.counters.epoch, "k": result.k, "silhouettes": result.silhouettes}
        previous = self.counters.cluster_labels
        if previous is not None and cc.stop_at_ari is not None:
            record["ari_with_previous"] = float(adjusted_rand_score(previous, labels))
            if record["ari_with_previous"] >= cc.stop_at_ari:
                self.counters.clustering_stable = record["stable"] = True
                self.counters.clusterings.append(record)
                return record
        grid, prof = phi_profiles(m, cc.profile_range)
        with torch.no_grad():
            a = m.a.detach().cpu().numpy().copy()
            targets = np.empty_like(prof)
            for k in np.unique(labels):
                members = labels == k
                a[members] = np.median(a[members], axis=0)
                targets[members] = np.median(prof[members], axis=0)
            m.a.copy_(torch.as_tensor(a, device=self.device))
        if cc.refit_steps > 0:
            r = torch.as_tensor(grid, dtype=torch.float32, device=self.device)
            target = torch.as_tensor(targets, dtype=torch.float32, device=self.device).T  # (P, N)
            opt = torch.optim.Adam(m.phi.parameters(), lr=self.config.training.lr_mlp)
            for _ in range(cc.refit_steps):
                opt.zero_grad(set_to_none=True)
                loss = torch.mean((m.phi_of(r[:, None].expand(len(r), m.n), m.a.detach()) - target) ** 2)
                loss.backward()
                opt.step()
        # recorded only now: an interrupt above resumes into this clustering again, which must not
        # find its own partition as "the previous one"
        self.counters.frozen_until_epoch = self.counters.epoch + 1 + cc.freeze_epochs
        self.counters.cluster_labels = labels.tolist()
        self.counters.clusterings.append(record)
        return record

    def _clustering_due(self) -> bool:
        cc = self.config.training.clustering
        e, n = self.counters.epoch, self.config.training.n_epochs
        return (
            cc.enabled
            and not self.counters.clustering_stable
            and isinstance(self.model.a, torch.nn.Parameter)
            and (e + 1) % cc.every_epochs == 0
            and e < n - cc.every_epochs
        )

    # ------------------------------------------------------------ W solves
    def _solve_w(self) -> int:
        """Replace W by the least-squares W given phi* and psi* on evenly spaced frames; returns their number."""
        ws = self.config.training.w_solve
        assert ws is not None
        idx = torch.from_numpy(evenly_spaced_frames(self.dataset.n_frames, ws.frames))
        chunk = max(1, (1 << 20) // self.dataset.n_neurons)  # about a million psi* evaluations at a time
        batches = (self.source.batch(idx[s : s + chunk])[:2] for s in range(0, len(idx), chunk))
        try:
            w = solve_connectivity(self.model, batches, ws.ridge)
        except ValueError as err:
            raise CircuitGNNError(f"training.w_solve at epoch {self.counters.epoch}: {err}") from None
        with torch.no_grad():
            self.model.W.copy_(w)
        self.counters.w_solves += 1
        return len(idx)

    def _w_solve_due(self) -> bool:
        ws = self.config.training.w_solve
        return ws is not None and (self.counters.epoch + 1) % ws.every_epochs == 0

    def _inputs(self, idx: torch.Tensor, batch: list[torch.Tensor]) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(omega, extra) for a batch: recorded (known), learned (field / low rank) or none."""
        kind = self.config.model.external_input
        if kind == "known":
            inp = batch[2]
            return (inp, None) if self.dataset.stimulus_mode == "multiplicative" else (None, inp)
        if kind == "field":
            return self.input_model(idx.to(self.device).float() / self.dataset.n_frames), None
        if kind == "additive_lowrank":
            return None, self.input_model(idx.to(self.device))
        return None, None

    # ------------------------------------------------------------------ loop
    def fit(self, max_iterations: int | None = None) -> TrainedRun:
        """Train until ``n_epochs`` are done (or ``max_iterations`` global iterations, or ``max_minutes``).

        Ctrl-C saves a checkpoint before re-raising ``KeyboardInterrupt``; a NaN loss raises
        :class:`TrainingDiverged` and keeps the last good checkpoint.
        """
        tc = self.config.training
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.resume:
            self._truncate_log()
        else:
            (self.run_dir / CONFIG).write_text(dump_config(self.config))
        self._write_run_info("running")
        total = tc.n_epochs * self.iters_per_epoch
        bar = tqdm(total=total, initial=self.counters.global_iteration, unit="it", disable=not self.progress, smoothing=0.05)
        sums: dict[str, float] = {}
        n_sum = 0
        deadline = None if tc.max_minutes is None else time.perf_counter() + 60 * tc.max_minutes
        status = "finished"
        c = self.counters
        t_last = time.perf_counter()
        last_scores: dict[str, float] = {}
        with sigterm_as_interrupt():
            try:
                while c.epoch < tc.n_epochs:
                    lrs = self._set_learning_rates()
                    coeffs = self.coefficients(c.epoch)
                    delta = tc.regularization.delta_fraction * self.xnorm
                    while c.iteration < self.iters_per_epoch:
                        if max_iterations is not None and c.global_iteration >= max_iterations:
                            raise _Stop("stopped")
                        if deadline is not None and time.perf_counter() > deadline:
                            raise _Stop("stopped")
                        idx = torch.randint(self.dataset.n_frames, (tc.batch_size,), generator=self.sampler)
                        batch = self.source.batch(idx)
                        x, y = batch[0], batch[1]
                        omega, extra = self._inputs(idx, batch)
                        loss, terms = total_loss(self.model, x, y, coeffs, delta, omega, extra, tc.regularization.monotone_norm)
                        if not torch.isfinite(loss):
                            raise TrainingDiverged(
                                f"the loss became {loss.item()} at iteration {c.global_iteration} (epoch {c.epoch}); "
                                f"the last good checkpoint in {self.run_dir / CHECKPOINT} is kept. Lower the learning rates"
                            )
                        self.optimizer.zero_grad(set_to_none=True)
                        if self.input_optimizer is not None:
                            self.input_optimizer.zero_grad(set_to_none=True)
                        loss.backward()
                        self.optimizer.step()
                        if coeffs["w_shrink"] > 0:
                            self.model.shrink_w(coeffs["w_shrink"] * lrs["W"], tc.regularization.w_shrink_keep_norm)
                        if self.input_optimizer is not None:
                            self.input_optimizer.step()
                        c.iteration += 1
                        c.global_iteration += 1
                        for k, v in terms.items():
                            sums[k] = sums.get(k, 0.0) + v
                        n_sum += 1
                        bar.update(1)
                        if c.global_iteration % tc.log_every == 0:
                            now = time.perf_counter()
                            c.train_seconds += now - t_last
                            last_scores = self._log({k: v / n_sum for k, v in sums.items()}, lrs, coeffs)
                            sums, n_sum = {}, 0
                            bar.set_postfix(loss=f"{terms['prediction']:.3g}", **{k: f"{v:.3f}" for k, v in last_scores.items() if k == "W_r2"})
                            t_last = time.perf_counter()
                        if c.global_iteration % tc.checkpoint_every == 0:
                            self.save_checkpoint()
                    if self._clustering_due():
                        record = self._cluster()
                        stable = " the same groups as before: clustering stops" if record.get("stable") else ""
                        bar.write(f"epoch {c.epoch}: clustered the neurons into {record['k']} groups (no labels used){stable}")
                    if self._w_solve_due():
                        used = self._solve_w()
                        bar.write(f"epoch {c.epoch}: W solved by least squares over {used} frames")
                    c.epoch += 1
                    c.iteration = 0
            except _Stop:
                status = "stopped"
            except KeyboardInterrupt:
                c.train_seconds += time.perf_counter() - t_last
                self.save_checkpoint("interrupted")
                raise
            finally:
                bar.close()
        c.train_seconds += time.perf_counter() - t_last
        if n_sum:
            self._log({k: v / n_sum for k, v in sums.items()}, self._set_learning_rates(), self.coefficients(min(c.epoch, tc.n_epochs - 1)))
        self.save_checkpoint(status)
        return TrainedRun(self.run_dir, self.config, self.model, self.xnorm, read_log(self.run_dir), self.input_model)

    def _log(self, terms: dict[str, float], lrs: dict[str, float], coeffs: dict[str, float]) -> dict[str, float]:
        c = self.counters
        scores = self.evaluate()
        line = {
            "iteration": c.global_iteration,
            "epoch": c.epoch,
            "train_seconds": round(c.train_seconds, 3),
            **{f"loss_{k}": v for k, v in terms.items()},
            **{f"lr_{k}": v for k, v in lrs.items()},
            **{f"coef_{k}": v for k, v in coeffs.items() if v},
            **scores,
        }
        with (self.run_dir / LOG).open("a") as f:
            f.write(json.dumps(line) + "\n")
        return scores


class _Stop(Exception):
    """Internal: leave the loop early (iteration or time budget) with a checkpoint."""


def read_log(run_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / LOG
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


@dataclass
class TrainedRun:
    """A run folder loaded for analysis: config, trained model, activity scale and log."""

    path: Path
    config: ExperimentConfig
    model: CircuitGNN
    xnorm: float
    log: list[dict[str, Any]]
    input_model: torch.nn.Module | None = None  # the learned external input, when the config has one


def load_run(path: str | Path, device: str | None = "cpu") -> TrainedRun:
    """Load a run folder's config and latest checkpoint."""
    path = Path(path)
    ckpt = path / CHECKPOINT
    if not ckpt.is_file():
        raise ResumeError(f"{path} has no checkpoint ({CHECKPOINT}): train first, or check the path")
    dev = pick_device(device)
    state = torch.load(ckpt, map_location=dev, weights_only=False)
    config = config_from_dict(state["config"], source=str(ckpt))
    n = state["dataset"]["n_neurons"]
    mask = None
    if config.model.connectivity_mask is not None:
        mask = np.load(config.model.connectivity_mask)
    model = CircuitGNN(config.model, n, mask=mask).to(dev)
    model.load_state_dict(state["model"])
    model.eval()
    input_model = None
    if state.get("input_model") is not None:
        input_model = make_input_model(config, Dataset(state["dataset"]["path"]), None)
        input_model.load_state_dict(state["input_model"])
        input_model.to(dev).eval()
    return TrainedRun(path, config, model, float(state["xnorm"]), read_log(path), input_model)


def make_input_model(config: ExperimentConfig, dataset: Dataset, generator: torch.Generator | None) -> torch.nn.Module | None:
    """The learned external input of ``config.model.external_input`` for this dataset, or None."""
    m = config.model
    if m.external_input == "field":
        coords = torch.as_tensor(grid_coordinates(int(dataset.neurons["grid_size"])), dtype=torch.float32)
        return StimulusField(coords, dataset.n_neurons, m.siren_hidden, m.siren_layers, m.siren_omega0)
    if m.external_input == "additive_lowrank":
        return LowRankInput(dataset.n_frames, dataset.n_neurons, m.input_rank, generator)
    return None


def train(config: ExperimentConfig | str | Path, data: str | Path, out: str | Path, **kwargs: Any) -> TrainedRun:
    """Convenience: load the config if given as a path, then ``Trainer(...).fit()``."""
    if not isinstance(config, ExperimentConfig):
        config = load_config(config)
    return Trainer(config, data, out, **kwargs).fit()
