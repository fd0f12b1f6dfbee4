"""The reproduction manifest: which experiments, their CPU sizing, the paper's values and the targets.

The manifest (``configs/reproduce.yaml``) names each experiment's config and says
how it is sized for a small machine (a wall-time budget and, where needed,
config overrides such as fewer frames, applied only when training on a CPU). The paper's numbers (spec sections 6.1,
6.2 and 4.6) sit beside each entry so the scoreboard can show them next to ours.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator

from circuitgnn.config import ExperimentConfig, StrictModel, config_from_dict, format_validation_error, load_config
from circuitgnn.errors import ConfigError

DEFAULT_MANIFEST = Path(__file__).resolve().parent.parent / "configs" / "reproduce.yaml"


class PaperValues(StrictModel):
    """What the paper reports for an experiment, and how long it trained."""

    W_r2: float | None = None
    W_slope: float | None = None
    type_accuracy: float | None = None
    rollout_r2_400: float | None = None
    rollout_r2_800: float | None = None
    omega_r2: float | None = None
    omega_slope: float | None = None
    generalization_S5_r2_400: float | None = None
    generalization_S5_r2_800: float | None = None
    generalization_S6_r2_400: float | None = None
    generalization_S6_r2_800: float | None = None
    frames: int = Field(..., gt=0, description="frames of the paper's training set")
    iterations: int = Field(..., gt=0, description="the paper's gradient iterations (epochs x iterations per epoch)")
    batch_size: int = Field(..., gt=0, description="the paper's frames per iteration")
    source: str = Field("", description="where the values come from (paper text, project page)")


class Targets(StrictModel):
    """Minimum values this project aims for on a CPU budget."""

    W_r2: float | None = None
    W_r2_pair_scaled: float | None = None
    type_accuracy: float | None = None
    omega_r2: float | None = None
    W_edge_auc: float | None = None
    psi_width_error: float | None = Field(None, description="the largest relative error of psi*'s tanh widths (lower is better)")


class Experiment(StrictModel):
    """One row of the scoreboard."""

    id: str = Field(..., description="short name; also the folder under the work directory")
    title: str = Field(..., description="what the experiment tests, as in the paper")
    figure: str = Field(..., description="the paper's figure(s), or the issue of an experiment beyond the paper")
    config: Path = Field(..., description="experiment YAML, relative to the manifest")
    minutes: float = Field(..., gt=0, description="training wall-time budget on the reference CPU machine")
    overrides: dict[str, Any] = Field(
        default_factory=dict, description="dotted config keys that make this experiment a variant of its config (always applied)"
    )
    cpu_overrides: dict[str, Any] = Field(
        default_factory=dict, description="dotted config keys changed for CPU sizing; ignored on a GPU or with full_size"
    )
    series: list[Literal["frames", "sparsity"]] = Field(default_factory=list, description="series plots this run belongs to")
    paper: PaperValues | None = Field(None, description="the paper's values; null for an experiment beyond the paper")
    targets: Targets = Field(default_factory=Targets)
    note: str = Field("", description="context for the row: known limits, what the paper saw")

    @property
    def beyond(self) -> bool:
        """Whether the experiment goes beyond the paper (no paper values to compare with)."""
        return self.paper is None

    @field_validator("id")
    @classmethod
    def _simple(cls, v: str) -> str:
        if not v or not all(c.isalnum() or c in "_-" for c in v):
            raise ValueError(f"id must be letters, digits, '_' or '-', got {v!r}")
        return v


class Manifest(StrictModel):
    """The scoreboard's experiments, in the order of its rows."""

    experiments: list[Experiment]

    def select(self, ids: list[str] | None) -> list[Experiment]:
        """The named experiments in manifest order (all when ``ids`` is empty); unknown names are an error."""
        if not ids:
            return list(self.experiments)
        known = {e.id: e for e in self.experiments}
        unknown = [i for i in ids if i not in known]
        if unknown:
            raise ConfigError(f"unknown experiment(s) {', '.join(unknown)}; known: {', '.join(known)}")
        return [e for e in self.experiments if e.id in ids]


def load_manifest(path: str | Path = DEFAULT_MANIFEST) -> Manifest:
    """Read and validate a manifest; config paths become absolute, relative to the manifest's folder."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"manifest file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
        manifest = Manifest.model_validate(data)
    except yaml.YAMLError as err:
        raise ConfigError(f"manifest {path} is not valid YAML: {err}") from None
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, str(path))) from None
    ids = [e.id for e in manifest.experiments]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"manifest {path}: experiment ids must be unique, got {ids}")
    for e in manifest.experiments:
        e.config = (path.parent / e.config).resolve()
        if not e.config.is_file():
            raise ConfigError(f"manifest {path}: experiment {e.id}: config {e.config} not found")
    return manifest


def set_dotted(data: dict[str, Any], key: str, value: Any, source: str) -> None:
    """``set_dotted(d, "simulation.n_frames", 20000)``; the sections along the path must exist."""
    node = data
    parts = key.split(".")
    for p in parts[:-1]:
        if not isinstance(node.get(p), dict):
            raise ConfigError(f"{source}: override {key!r}: {p!r} is not a section of the config")
        node = node[p]
    if parts[-1] not in node:
        raise ConfigError(f"{source}: override {key!r}: no field {parts[-1]!r} in that section")
    node[parts[-1]] = value


def experiment_config(exp: Experiment, full_size: bool = False) -> ExperimentConfig:
    """The experiment's config with its ``overrides``; unless ``full_size``, also with the manifest's CPU-sizing overrides."""
    config = load_config(exp.config)
    changes = {**exp.overrides, **({} if full_size else exp.cpu_overrides)}
    if not changes:
        return config
    data = config.model_dump(mode="json")
    for key, value in changes.items():
        set_dotted(data, key, value, f"experiment {exp.id}")
    return config_from_dict(data, source=f"{exp.config} (with the overrides of experiment {exp.id})")
