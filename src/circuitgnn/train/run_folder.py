"""A run folder: what training writes and analysis reads, and the checks made before resuming.

A run folder holds::

    config.yaml            the resolved config
    run.json               data source, xnorm, status (running / stopped / interrupted / finished), environment
    log.jsonl              one line per log interval: iteration, epoch, loss terms, learning rates, time,
                           and whatever the caller's scorer adds (W R^2 ... when ground truth exists)
    checkpoint.pt          the latest checkpoint (model, optimiser, random state, counters), written atomically
    .lock                  while a process trains into the folder: its PID and host (one trainer per folder)

This module sits below both the training loop and the analysis, which read runs through :func:`load_run`.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from circuitgnn.config import ExperimentConfig, config_from_dict, dump_config
from circuitgnn.data.dataset import Dataset
from circuitgnn.data.writer import pid_alive, write_json_atomic, write_text_atomic
from circuitgnn.device import pick_device
from circuitgnn.errors import CircuitGNNError, DatasetError
from circuitgnn.model.gnn import GNN
from circuitgnn.model.siren import make_input_model

CHECKPOINT = "checkpoint.pt"
LOG = "log.jsonl"
RUN_INFO = "run.json"
CONFIG = "config.yaml"
LOCK = ".lock"


class ResumeError(CircuitGNNError):
    """A checkpoint cannot be resumed with this config or data."""


class RunExistsError(CircuitGNNError, FileExistsError):
    """The run folder already holds a run and neither resume nor overwrite was asked for."""


class RunLockedError(CircuitGNNError):
    """Another live process is training into the run folder."""


class RunWriteError(CircuitGNNError):
    """A file of the run folder could not be written (a full disk, a lost mount); what was there before is kept."""


def save_atomic(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary name, then rename it into place; a failed write leaves the old file and no temporary."""
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as err:  # torch reports a full disk as a RuntimeError
        raise RunWriteError(f"could not write {path} ({err}); is the disk full? The previous {path.name}, if any, is kept") from None
    finally:
        tmp.unlink(missing_ok=True)


class RunFolder:
    """The files of one training run; nothing is written or deleted until :meth:`start`."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT

    def owner(self) -> dict[str, Any] | None:
        """The live process training into this folder (its lock: pid, host, started), or None."""
        path = self.path / LOCK
        try:
            owner = json.loads(path.read_text())
            pid, host = int(owner["pid"]), str(owner["host"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):  # cut short by a kill or a full disk: nobody holds it
            return None
        if host == socket.gethostname() and not pid_alive(pid):
            return None
        return owner

    def check(self, resume: bool, overwrite: bool) -> None:
        """Refuse, before any side effect, a folder another process is training into, a resume without a checkpoint
        or a run that would be overwritten silently."""
        owner = self.owner()
        if owner is not None:
            raise RunLockedError(self._in_use(owner))
        if resume:
            if not self.checkpoint.is_file():
                raise ResumeError(f"--resume: no checkpoint in {self.path} ({CHECKPOINT} is missing)")
        elif self.path.exists() and not self.path.is_dir():
            raise RunExistsError(f"{self.path} exists and is not a folder")
        elif self.path.is_dir() and any(self.path.iterdir()) and not overwrite:
            raise RunExistsError(f"{self.path} already holds a run: pass --resume to continue it or --overwrite to replace it")

    def start(self, config: ExperimentConfig, resume: bool, at_iteration: int) -> None:
        """Create the folder (replacing an old run when not resuming) and write the config, or trim the log on resume."""
        if resume:
            self.truncate_log(at_iteration)
            return
        self.path.mkdir(parents=True, exist_ok=True)
        for item in self.path.iterdir():  # the old run's files; the lock is this process's
            if item.name == LOCK:
                continue
            if item.is_dir() and not item.is_symlink():
                shutil.rmtree(item)
            else:
                item.unlink()
        write_text_atomic(self.path / CONFIG, dump_config(config))

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the folder's lock while training: a second trainer is refused, naming this process; the lock of a
        process that is gone (killed) is taken over with a warning."""
        path = self.path / LOCK
        owner = self.owner()
        if owner is not None:
            raise RunLockedError(self._in_use(owner))
        self.path.mkdir(parents=True, exist_ok=True)
        if path.exists():
            warnings.warn(f"{path}: taking over the lock of a process that is gone", UserWarning, stacklevel=3)
            path.unlink(missing_ok=True)
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:  # another trainer took it between the check and now
            raise RunLockedError(self._in_use(self.owner() or {"pid": "?", "host": "?"})) from None
        with os.fdopen(fd, "w") as f:
            json.dump({"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}, f)
        leftovers = [p for p in self.path.glob(".*.tmp-*") if p.is_file()]  # writes a killed trainer left half done
        for p in leftovers:
            p.unlink(missing_ok=True)
        if leftovers:
            warnings.warn(f"{self.path}: removed {len(leftovers)} half-written file(s) of an interrupted run", UserWarning, stacklevel=3)
        try:
            yield
        finally:
            path.unlink(missing_ok=True)

    def _in_use(self, owner: dict[str, Any]) -> str:
        return (
            f"{self.path} is in use: process {owner['pid']} on {owner['host']} has been training into it since "
            f"{owner.get('started', '?')}; wait for it, stop it, or choose another run folder"
        )

    def write_info(self, info: dict[str, Any]) -> None:
        write_json_atomic(self.path / RUN_INFO, info)

    def append_log(self, line: dict[str, Any]) -> None:
        """Append one line, whole or not at all: a failed write (a full disk) is cut back to the line before."""
        path = self.path / LOG
        size = path.stat().st_size if path.exists() else 0
        try:
            with path.open("a") as f:
                f.write(json.dumps(line) + "\n")
        except OSError as err:
            with path.open("r+") as f:
                f.truncate(size)
            raise RunWriteError(
                f"could not append to {path} ({err}); is the disk full? The log ends at its last whole line; free space and "
                "resume from the last checkpoint"
            ) from None

    def truncate_log(self, iteration: int) -> None:
        """Drop log lines written after the checkpoint (that work is redone on resume)."""
        keep = [line for line in read_log(self.path) if line["iteration"] <= iteration]
        write_text_atomic(self.path / LOG, "".join(json.dumps(line) + "\n" for line in keep))

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        save_atomic(state, self.checkpoint)

    def load_checkpoint(self) -> dict[str, Any]:
        try:
            # Loaded on the CPU: load_state_dict moves model and optimizer tensors to their parameters'
            # device, and a sampler (a CPU generator) needs its state as a CPU ByteTensor.
            return torch.load(self.checkpoint, map_location="cpu", weights_only=False)
        except Exception as err:  # a truncated or foreign file
            raise ResumeError(f"{self.checkpoint} is not a readable circuitgnn checkpoint ({err})") from None


def read_log(run_dir: str | Path) -> list[dict[str, Any]]:
    """The log lines of a run folder; a last line cut short (a kill or a full disk mid-write) is dropped."""
    path = Path(run_dir) / LOG
    if not path.is_file():
        return []
    lines = [line for line in path.read_text().splitlines() if line]
    out = []
    for k, line in enumerate(lines):
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            if k < len(lines) - 1:
                raise ResumeError(f"{path}: line {k + 1} is not valid JSON") from None
    return out


@dataclass
class TrainedRun:
    """A trained model with its config, activity scale and log; ``path`` is its run folder (None when trained without one)."""

    path: Path | None
    config: ExperimentConfig
    model: GNN
    xnorm: float
    log: list[dict[str, Any]]
    input_model: torch.nn.Module | None = None  # the learned external input, when the config has one
    data: dict[str, Any] = field(default_factory=dict)  # what the model was fitted on: n_neurons, n_frames, dt, grid_size ...


def load_run(path: str | Path, device: str | None = "cpu") -> TrainedRun:
    """Load a run folder's config and latest checkpoint."""
    folder = RunFolder(path)
    if not folder.checkpoint.is_file():
        raise ResumeError(f"{folder.path} has no checkpoint ({CHECKPOINT}): train first, or check the path")
    dev = pick_device(device)
    state = folder.load_checkpoint()
    config = config_from_dict(state["config"], source=str(folder.checkpoint))
    data = state["dataset"]
    mask = None
    if config.model.connectivity_mask is not None:
        mask = np.load(config.model.connectivity_mask)
    model = GNN(config.model, data["n_neurons"], mask=mask)
    model.load_state_dict(state["model"])
    model.to(dev).eval()
    input_model = None
    if state.get("input_model") is not None:
        grid = data["grid_size"] if "grid_size" in data else int(Dataset(data["path"]).neurons["grid_size"])  # older checkpoints
        input_model = make_input_model(config.model, data["n_frames"], data["n_neurons"], grid, None)
        assert input_model is not None
        input_model.load_state_dict(state["input_model"])
        input_model.to(dev).eval()
    return TrainedRun(folder.path, config, model, float(state["xnorm"]), read_log(folder.path), input_model, dict(data))


def run_dataset(run: TrainedRun) -> Dataset:
    """The dataset folder a run was trained on, with a clear error when it has moved or gone."""
    if run.path is None:
        raise DatasetError("this model was fitted without a run folder: it has no dataset folder to open")
    info_path = run.path / RUN_INFO
    if not info_path.is_file():
        raise DatasetError(f"{run.path} has no {RUN_INFO}: not a finished or started training run")
    path = Path(json.loads(info_path.read_text())["dataset"])
    if not (path / "meta.json").is_file():
        raise DatasetError(f"the run's data {path} is not a dataset folder: it was moved or deleted, or the run was fitted on arrays")
    ds = Dataset(path)
    trained_on, now = run.data.get("x_sha256"), ds.meta["arrays"]["x"].get("sha256")
    if trained_on is not None and now is not None and trained_on != now:
        raise DatasetError(
            f"{path} is not the dataset this run was trained on: its x.npy changed since (sha256 {now[:12]}..., the run's "
            f"{trained_on[:12]}...); evaluate against the original data"
        )
    return ds
