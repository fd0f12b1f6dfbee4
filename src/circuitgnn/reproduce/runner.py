"""Run one manifest experiment end to end, resuming whatever an earlier call left.

Layout under the work directory, the same as ``circuitgnn run --out WORK/ID``::

    WORK/ID/config.yaml   the effective config (with the manifest's CPU sizing unless full size)
    WORK/ID/data/         the simulated dataset (reused when complete)
    WORK/ID/deconvolved/  for a calcium recording: the activity deconvolved from it, which training reads
    WORK/ID/run/          the training run (resumed from its checkpoint), metrics.json

Training continues until the run's total training time reaches the budget
(or its schedule ends), so a later call with a larger budget picks up where
the last one stopped.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from circuitgnn.config import ExperimentConfig, dump_config, load_config
from circuitgnn.data.writer import META_FILE, write_json_atomic, write_text_atomic
from circuitgnn.device import pick_device
from circuitgnn.errors import ConfigError
from circuitgnn.reproduce.manifest import Experiment, experiment_config
from circuitgnn.reproduce.resources import measure, read_resources
from circuitgnn.train.run_folder import CHECKPOINT, RUN_INFO

METRICS_FILE = "metrics.json"
FAILURE_FILE = "failure.json"


@dataclass
class ExperimentPaths:
    """The files of one experiment under the work directory."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def deconvolved(self) -> Path:
        return self.root / "deconvolved"

    @property
    def run(self) -> Path:
        return self.root / "run"


def run_info(run_dir: Path) -> dict | None:
    """The run's run.json (status, counters, device, environment), or None before training started."""
    path = run_dir / RUN_INFO
    return json.loads(path.read_text()) if path.is_file() else None


def remaining_minutes(paths: ExperimentPaths, budget: float, n_epochs: int) -> float:
    """Training minutes left before the experiment's training wall time reaches ``budget`` (0 once its
    ``n_epochs``-epoch schedule finished).

    The wall time of the training phase (resources.json) is the clock, the same one the trainer's
    deadline uses, so a run stopped at its budget is not trained again by a second call.
    """
    info = run_info(paths.run)
    if info is None:
        return budget
    if info["status"] == "finished" and info["global_iteration"] >= n_epochs * info["iterations_per_epoch"]:
        return 0.0
    # train_seconds (pure training, kept in the checkpoint) covers calls that resources.json may have missed.
    spent = max(info["train_seconds"], read_resources(paths.root).get("train", {}).get("wall_seconds", 0.0))
    return max(0.0, budget - spent / 60)


def metrics_current(run_dir: Path) -> bool:
    """Whether metrics.json was computed on the run's latest checkpoint."""
    info, path = run_info(run_dir), run_dir / METRICS_FILE
    if info is None or not path.is_file():
        return False
    return json.loads(path.read_text()).get("iterations") == info["global_iteration"]


def _check_same_config(paths: ExperimentPaths, config: ExperimentConfig, exp: Experiment) -> bool:
    """Refuse to resume work made with a different config: its numbers would not belong to this row.

    One change is a continuation, not a different experiment: more epochs, all else equal. Returns
    True in that case (the saved config must then be replaced), False when the configs are the same.
    """
    if not paths.config.is_file():
        return False
    # Compared as validated configs, so fields added to the package later (with their defaults) do not count.
    saved, wanted = load_config(paths.config).model_dump(mode="json"), config.model_dump(mode="json")
    if saved == wanted:
        return False
    longer = wanted["training"]["n_epochs"] > saved["training"]["n_epochs"]
    saved["training"]["n_epochs"] = wanted["training"]["n_epochs"]
    if not (longer and saved == wanted):
        raise ConfigError(
            f"experiment {exp.id}: {paths.config} differs from the config this call would use (the manifest or the "
            f"config changed, or the folder was made at the other size: CPU sizing vs --full-size or a GPU; only more "
            f"training.n_epochs, all else equal, continues a run); start it again with "
            f"`circuitgnn reproduce {exp.id} --restart` (deletes {paths.root})"
        )
    return True


def reproduce_experiment(
    exp: Experiment,
    work: Path,
    *,
    minutes: float | None = None,
    device: str | None = None,
    restart: bool = False,
    full_size: bool | None = None,
    progress: bool = True,
    say: Callable[[str], None] = print,
) -> ExperimentPaths:
    """Simulate (if needed), train up to the budget (resuming), and evaluate (if stale) one experiment.

    ``restart`` deletes the experiment's folder first (dataset, run and metrics). ``full_size``
    ignores the manifest's CPU sizing; by default it does so when training will run on CUDA.
    """
    from circuitgnn.analyze.evaluate import evaluate_run, training_scorer
    from circuitgnn.data.dataset import Dataset
    from circuitgnn.data.deconvolve import deconvolve_dataset
    from circuitgnn.report.html import build_report
    from circuitgnn.simulate.run import simulate
    from circuitgnn.train.trainer import Trainer

    if full_size is None:
        full_size = pick_device(device).type == "cuda"
    config = experiment_config(exp, full_size)
    pick_device(device or config.training.device)  # refuses an unavailable device before anything is deleted
    paths = ExperimentPaths(Path(work) / exp.id)
    if restart and paths.root.exists():
        say(f"[{exp.id}] restarting: deleting {paths.root}")
        shutil.rmtree(paths.root)
    extended = _check_same_config(paths, config, exp)
    if extended:
        say(f"[{exp.id}] the schedule grew to {config.training.n_epochs} epochs: continuing the run")
    paths.root.mkdir(parents=True, exist_ok=True)
    if extended or not paths.config.is_file():
        write_text_atomic(paths.config, dump_config(config))
    (paths.root / FAILURE_FILE).unlink(missing_ok=True)
    if device is not None:
        config.training.device = device

    if (paths.data / META_FILE).is_file():
        say(f"[{exp.id}] dataset exists: reusing {paths.data}")
    else:
        say(f"[{exp.id}] simulating {config.simulation.n_neurons} neurons x {config.simulation.n_frames} frames")
        with measure(paths.root, "simulate"):
            simulate(config, paths.data, overwrite=False, progress=progress, figure=False)

    data = paths.data
    if Dataset(paths.data).signal == "fluorescence":  # a calcium recording: training reads the activity behind it
        data = paths.deconvolved
        if (data / META_FILE).is_file():
            say(f"[{exp.id}] deconvolved dataset exists: reusing {data}")
        else:
            say(f"[{exp.id}] deconvolving the calcium recording")
            with measure(paths.root, "deconvolve"):
                deconvolve_dataset(paths.data, data)

    budget = exp.minutes if minutes is None else minutes
    left = remaining_minutes(paths, budget, config.training.n_epochs)
    resume = (paths.run / CHECKPOINT).is_file()
    if left > (0.05 if resume else 0.0):  # a resumed run needs a few seconds to be worth its start-up
        say(f"[{exp.id}] training{' (resumed)' if resume else ''}: up to {left:.1f} more minutes (budget {budget:g})")
        config.training.max_minutes = left
        # Without a checkpoint, whatever a killed first attempt left in the run folder is worthless.
        with measure(paths.root, "train", budget_minutes=budget):
            dataset = Dataset(data)
            trainer = Trainer(
                config, dataset, paths.run, resume=resume, overwrite=not resume, progress=progress, scorer=training_scorer(dataset, config)
            )
            trainer.fit()
    else:
        say(f"[{exp.id}] training done for a {budget:g}-minute budget")

    if not metrics_current(paths.run):
        say(f"[{exp.id}] evaluating")
        with measure(paths.root, "evaluate"):
            evaluate_run(paths.run)
        reference = exp.paper.model_dump() if exp.paper is not None else None
        build_report(paths.run, reference=reference, reference_name=f"paper ({exp.figure})")
    return paths


def record_failure(work: Path, exp: Experiment, err: BaseException) -> None:
    """Keep why an experiment failed, for its scoreboard row (removed when it next runs)."""
    root = Path(work) / exp.id
    root.mkdir(parents=True, exist_ok=True)
    write_json_atomic(root / FAILURE_FILE, {"error": f"{type(err).__name__}: {err}", "time": time.strftime("%Y-%m-%d %H:%M:%S")})
