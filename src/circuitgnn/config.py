"""Experiment configuration: typed, validated, loaded from YAML.

Every section is a pydantic model that rejects unknown keys; every field has a
default and a one-line description (shown by ``circuitgnn config-help``).
Per-type parameter tables accept either one number (shared by all types) or
one value per type.

Conventions used everywhere in the package:

* ``W[i, j]`` is the weight of the connection **from neuron j to neuron i**
  (row = receiver, column = sender), so the summed input is ``W @ psi(x)``.
* Neuron types are integers ``0 .. n_types - 1``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from circuitgnn.errors import ConfigError

ScalarOrList = float | list[float]


class StrictModel(BaseModel):
    """Base model: unknown keys are errors, defaults are validated too."""

    model_config = ConfigDict(extra="forbid", validate_default=True, validate_assignment=True)


class ConnectivityConfig(StrictModel):
    """How the ground-truth connectivity matrix W is generated."""

    kind: Literal["cauchy", "gaussian", "file"] = Field(
        "cauchy", description="cauchy: truncated Cauchy (paper); gaussian: N(0, scale^2); file: a user .npy matrix"
    )
    truncation: float = Field(25.0, gt=0, description="Cauchy samples with |s| above this are set to 0 (paper: 25)")
    scale: float | None = Field(
        None, gt=0, description="multiplier of the samples; null = paper's N-dependent N^-p (cauchy) or 1/sqrt(N) (gaussian)"
    )
    filling_factor: float = Field(
        1.0, gt=0, le=1, description="fraction of entries kept, each independently (1 = dense; paper sparse: 0.05 to 0.5)"
    )
    dale_excitatory_fraction: float | None = Field(
        None, ge=0, le=1, description="Dale's law: this fraction of senders (first columns) excitatory, the rest inhibitory; null = off"
    )
    path: Path | None = Field(None, description="kind=file: path of an (N, N) .npy matrix, W[i, j] = weight from j to i")

    @model_validator(mode="after")
    def _file_needs_path(self) -> ConnectivityConfig:
        if self.kind == "file" and self.path is None:
            raise ValueError("connectivity.kind is 'file' but connectivity.path is not set")
        return self


class NeuronConfig(StrictModel):
    """Neuron types, their parameters and the form of the signal they send.

    The drift of neuron i of type k is
    ``dx_i/dt = -decay_k x_i + bias_k + self_coupling_k tanh(x_i) + gain_k * Omega_i(t) * sum_j W_ij psi_ij + e_i(t)``
    with ``psi_ij`` set by ``signal``.
    """

    n_types: int = Field(4, ge=1, description="number of neuron types K")
    signal: Literal["tanh", "sender", "pair"] = Field(
        "tanh",
        description="tanh: psi = tanh(x_j) (paper 2.3); sender: tanh((x_j - h_j)/w_j) (2.4); "
        "pair: tanh((x_j - h_j)/w_i) - theta_j x_j (2.5)",
    )
    type_layout: Literal["contiguous", "shuffled"] = Field(
        "contiguous", description="contiguous index blocks per type (paper) or a seeded random permutation of them"
    )
    type_fractions: list[float] | None = Field(
        None, description="fraction of neurons of each type (sums to 1); null = equal blocks, remainder to the last type"
    )
    gain: ScalarOrList = Field(10.0, description="g_k, gain of the summed synaptic input (paper: 10)")
    self_coupling: ScalarOrList = Field([1.0, 2.0, 1.0, 2.0], description="s_k, weight of tanh(x_i) in the update")
    decay: ScalarOrList = Field([1.0, 1.0, 2.0, 2.0], description="c_k = 1/tau_k, linear decay rate of the update")
    bias: ScalarOrList = Field(0.0, description="b_k, constant drive of the update")
    width: ScalarOrList = Field(1.0, description="w_k, width of the transfer function tanh((x - h)/w) (gamma in the paper)")
    threshold: ScalarOrList = Field(0.0, description="h_k, threshold of the transfer function")
    leak: ScalarOrList | None = Field(
        None, description="theta_k, linear leak of the pair form's transfer; null = ln(width_k)/50 as in the paper"
    )

    _per_type = ("gain", "self_coupling", "decay", "bias", "width", "threshold", "leak")

    @model_validator(mode="after")
    def _tables_match_types(self) -> NeuronConfig:
        k = self.n_types
        for name in self._per_type:
            value = getattr(self, name)
            if isinstance(value, list) and len(value) != k:
                raise ValueError(
                    f"neurons.{name} has {len(value)} values but n_types is {k}: give one value per type or a single number"
                )
        widths = self.table("width")
        if any(w <= 0 for w in widths):
            raise ValueError(f"neurons.width must be > 0 for every type, got {widths}")
        if self.type_fractions is not None:
            fr = self.type_fractions
            if len(fr) != k:
                raise ValueError(f"neurons.type_fractions has {len(fr)} values but n_types is {k}")
            if any(f < 0 for f in fr) or not math.isclose(sum(fr), 1.0, abs_tol=1e-6):
                raise ValueError(f"neurons.type_fractions must be >= 0 and sum to 1, got {fr} (sum {sum(fr):.6g})")
        return self

    def table(self, name: str) -> list[float]:
        """One value per type for a per-type parameter (scalars broadcast; leak defaults to ln(w)/50)."""
        value = getattr(self, name)
        if name == "leak" and value is None:
            return [math.log(w) / 50.0 for w in self.table("width")]
        if isinstance(value, list):
            return [float(v) for v in value]
        return [float(value)] * self.n_types


class StimulusConfig(StrictModel):
    """External input: a field Omega_i(t) over a 2-D grid of the first neurons (paper 2.6)."""

    mode: Literal["none", "multiplicative", "additive"] = Field(
        "none", description="none; multiplicative: Omega_i(t) scales the summed input (Fig. 3); additive: e_i(t) is added"
    )
    source: Literal["image_pan", "drifting_grating", "moving_blobs", "file", "oscillation"] = Field(
        "image_pan",
        description="image_pan: a photograph panned and zoomed; drifting_grating; moving_blobs; "
        "file: a user movie (.npy or .tif); oscillation: A_i cos(2 pi f t) per driven neuron (no grid)",
    )
    grid_size: int = Field(32, ge=1, description="the first grid_size^2 neurons sit on a grid_size x grid_size layout and are driven")
    n_movie_frames: int = Field(256, ge=1, description="number of distinct movie frames spread over the saved frames")
    value_range: tuple[float, float] = Field((0.5, 1.5), description="movie values are rescaled to this range (paper: 0.5 to 1.5)")
    normalize: bool = Field(True, description="rescale the movie (also a user movie) to value_range")
    path: Path | None = Field(None, description="source=file: movie of shape (frames, grid_size, grid_size), .npy or multi-page .tif")
    burn_in_value: float = Field(0.0, description="Omega of every neuron during burn-in (paper: 0, i.e. no coupling)")
    frequency: float = Field(0.5, gt=0, description="source=oscillation: frequency f in cycles per time unit")
    amplitude: float = Field(1.0, ge=0, description="source=oscillation: A_i drawn uniformly in [-amplitude, amplitude]")

    @model_validator(mode="after")
    def _check(self) -> StimulusConfig:
        lo, hi = self.value_range
        if not lo < hi:
            raise ValueError(f"stimulus.value_range must be (low, high) with low < high, got {self.value_range}")
        if self.mode == "multiplicative" and self.source == "oscillation":
            raise ValueError("stimulus.source 'oscillation' is an additive input: set stimulus.mode to 'additive'")
        if self.mode != "none" and self.source == "file" and self.path is None:
            raise ValueError("stimulus.source is 'file' but stimulus.path is not set")
        return self

    @property
    def n_driven(self) -> int:
        """Number of neurons that receive the stimulus (the first ``grid_size**2``)."""
        return self.grid_size**2 if self.mode != "none" else 0


class SimulationConfig(StrictModel):
    """The ground-truth simulation: network size, time, integrator, noise, seed."""

    n_neurons: int = Field(1000, ge=2, description="number of neurons N")
    n_frames: int = Field(100_000, ge=1, description="number of saved frames T (after burn-in)")
    burn_in: int = Field(1000, ge=0, description="integration steps run before the first saved frame, not saved")
    dt: float = Field(0.01, gt=0, description="integration time step")
    integrator: Literal["euler", "rk4"] = Field("euler", description="euler (paper) or rk4")
    noise_std: float = Field(0.0, ge=0, description="per-step std of the additive process noise, not scaled by dt (paper's sigma)")
    init_std: float = Field(5.0, ge=0, description="initial state x_i(0) ~ N(0, init_std^2)")
    seed: int = Field(42, description="seed of every random draw of the simulation")
    connectivity: ConnectivityConfig = Field(default_factory=ConnectivityConfig, description="connectivity generator")
    neurons: NeuronConfig = Field(default_factory=NeuronConfig, description="neuron types and signal form")
    stimulus: StimulusConfig = Field(default_factory=StimulusConfig, description="external input")

    @model_validator(mode="after")
    def _sizes(self) -> SimulationConfig:
        if self.neurons.n_types > self.n_neurons:
            raise ValueError(
                f"neurons.n_types ({self.neurons.n_types}) is larger than n_neurons ({self.n_neurons}): every type needs a neuron"
            )
        if self.stimulus.n_driven > self.n_neurons:
            raise ValueError(
                f"stimulus.grid_size {self.stimulus.grid_size} drives {self.stimulus.n_driven} neurons "
                f"but n_neurons is {self.n_neurons}"
            )
        return self


class ModelConfig(StrictModel):
    """The interpretable GNN: dx_i/dt = phi*(x_i, a_i) + Omega_i(t) * sum_{j != i} W_ij psi*(inputs)."""

    psi_input: Literal["x_j", "x_j,a_j", "x_j,a_i,a_j"] = Field(
        "x_j", description="inputs of psi*: sender activity only (Fig. 2), with the sender's embedding (transmitters), or both embeddings"
    )
    embedding_dim: int = Field(2, ge=1, description="dimension of the learned per-neuron embedding a_i")
    fixed_embedding: bool = Field(False, description="one shared, fixed embedding for all neurons (the paper's Supp. 3 ablation)")
    hidden: int = Field(64, ge=1, description="width of the hidden layers of phi* and psi*")
    phi_layers: int = Field(3, ge=1, description="number of linear layers of phi*")
    psi_layers: int = Field(3, ge=1, description="number of linear layers of psi*")
    activation: Literal["relu", "tanh", "silu", "gelu", "softplus"] = Field("relu", description="activation of the hidden layers")
    w_init_std: float = Field(
        0.01, ge=0, description="std of the initial W; the paper's 1.0 is far above the true scale and slows recovery"
    )
    low_rank: int | None = Field(None, ge=1, description="learn W = L R of this rank instead of a dense matrix (for large N)")
    connectivity_mask: Path | None = Field(
        None, description=".npy (N, N) of 0/1: entries known to be zero are masked out of W (prior knowledge)"
    )
    external_input: Literal["none", "known", "field", "additive_lowrank"] = Field(
        "none",
        description="known: the dataset's recorded input (omega.npy) as Omega or e; field: learn a hidden Omega*(x, y, t) "
        "= SIREN^2 on the dataset's stimulus grid (Fig. 3); additive_lowrank: learn an additive e*(t) = U V",
    )
    siren_hidden: int = Field(128, ge=1, description="external_input field: width of the SIREN")
    siren_layers: int = Field(5, ge=0, description="external_input field: hidden sine layers after the first")
    siren_omega0: float = Field(30.0, gt=0, description="external_input field: frequency omega_0 of the sine layers")
    input_rank: int = Field(8, ge=1, description="external_input additive_lowrank: rank r of e*(t) = U[t] V")
    pair_chunk: int = Field(
        64, ge=1, description="psi_input x_j,a_i,a_j: receivers per chunk; memory ~ batch x chunk x N x hidden x 4 bytes"
    )


class Coefficient(StrictModel):
    """A regulariser coefficient active from ``from_epoch`` (included) until ``until_epoch`` (excluded)."""

    value: float = Field(0.0, ge=0, description="the coefficient while active")
    from_epoch: int = Field(0, ge=0, description="first epoch where it is active")
    until_epoch: int | None = Field(None, ge=0, description="first epoch where it is no longer active; null = never stops")

    def at(self, epoch: int) -> float:
        active = epoch >= self.from_epoch and (self.until_epoch is None or epoch < self.until_epoch)
        return self.value if active else 0.0


def _coefficient(value: Any) -> Any:
    return {"value": value} if isinstance(value, int | float) else value


class RegularizationConfig(StrictModel):
    """Loss terms besides the prediction error (spec 4.3); each a number or {value, from_epoch, until_epoch}."""

    phi_zero: Coefficient = Field(Coefficient(value=1.0), description="alpha: mean phi*(0, a_i)^2, a steady state at zero")
    phi_decreasing: Coefficient = Field(Coefficient(), description="beta: mean ReLU(phi*(x + d) - phi*(x))^2 (see monotone_norm), phi* decreasing in x")
    psi_monotone: Coefficient = Field(
        Coefficient(), description="gamma: mean ReLU(psi*(x) - psi*(x + d))^2 (see monotone_norm), psi* increasing (fixes the sign of W)"
    )
    w_l1: Coefficient = Field(Coefficient(), description="zeta: sum |W_ij|, sparsity of W")
    w_shrink: Coefficient = Field(
        Coefficient(),
        description="proximal L1 for a dense W: after each step every W_ij moves toward 0 by this x lr_w, stopping at 0 "
        "(in units of an Adam step: about 0.5 holds at exactly 0 the weights whose gradient has no steady sign)",
    )
    w_shrink_keep_norm: bool = Field(
        True,
        description="rescale W after each shrink to its norm before it. The data fix the scale of W only jointly with "
        "psi* (W psi* = (cW)(psi*/c)), so a shrink alone drifts W down and psi* up, and the loss rises while psi* follows",
    )
    delta_fraction: float = Field(1 / 150, gt=0, description="d = delta_fraction * xnorm, the step of the two monotonicity terms")
    monotone_norm: bool = Field(
        False,
        description="measure the two monotonicity terms by the root mean square of their violations (the paper code's "
        "un-squared norm) instead of the mean square: the gradient does not fade as a violation shrinks",
    )

    _coerce = field_validator("phi_zero", "phi_decreasing", "psi_monotone", "w_l1", "w_shrink", mode="before")(_coefficient)


class ClusteringConfig(StrictModel):
    """Periodic unsupervised type clustering (spec 4.5), never reading true labels."""

    enabled: bool = Field(True, description="cluster the neurons during training and share embeddings within clusters")
    every_epochs: int = Field(4, ge=1, description="cluster at the end of every this many epochs (not after the last ones)")
    features: Literal["phi", "embedding", "both"] = Field(
        "phi", description="cluster the learned phi* profiles, the embeddings, or both (neurons stay together only when both agree)"
    )
    max_types: int = Field(10, ge=2, description="K-means tries K = 2 .. max_types and keeps the best silhouette")
    refit_steps: int = Field(20, ge=0, description="Adam steps refitting phi* to the cluster-median profiles")
    freeze_epochs: int = Field(1, ge=0, description="epochs after clustering where psi* and the embeddings are frozen")
    profile_range: float = Field(5.0, gt=0, description="phi* profiles for clustering are sampled on [-r, r] (activity units; paper: 5)")
    stop_at_ari: float | None = Field(
        None,
        gt=0,
        le=1,
        description="stop clustering once a clustering agrees with the one before at least this well (adjusted Rand "
        "index, 1 = the same partition); that one and all later epochs train psi* and the embeddings unfrozen. "
        "null = cluster on schedule to the end (the paper's code freezes psi* for an epoch each time)",
    )


class WSolveConfig(StrictModel):
    """Periodic exact least-squares W given phi* and psi* (circuitgnn.train.wsolve)."""

    every_epochs: int = Field(1, ge=1, description="solve at the end of every this many epochs (the last one included)")
    frames: int = Field(10000, ge=1, description="evenly spaced training frames the solve uses (all of them if fewer)")
    ridge: float = Field(1e-6, ge=0, description="added to the Gram matrix's diagonal, relative to its mean eigenvalue")
    adam_on_w: bool = Field(
        True, description="W also takes Adam steps between solves; false: W changes only by solves, from the first one on"
    )


class TrainingConfig(StrictModel):
    """Optimisation: batches of random frames, Adam with per-group learning rates, schedules, checkpoints."""

    seed: int = Field(16, description="seed of initialisation, frame sampling and clustering")
    batch_size: int = Field(8, ge=1, description="frames per iteration")
    n_epochs: int = Field(10, ge=1, description="number of epochs")
    iterations_per_epoch: int | None = Field(None, ge=1, description="null = n_frames // batch_size (one pass over the frames)")
    lr_w: float = Field(1e-3, gt=0, description="Adam learning rate of W")
    lr_mlp: float = Field(5e-4, gt=0, description="Adam learning rate of phi* and psi*")
    lr_embedding: float = Field(7.5e-4, gt=0, description="Adam learning rate of the embeddings")
    lr_input: float = Field(1e-5, gt=0, description="Adam learning rate of the learned external input (its own optimiser)")
    regularization: RegularizationConfig = Field(default_factory=RegularizationConfig, description="regularisers")
    clustering: ClusteringConfig = Field(default_factory=ClusteringConfig, description="type clustering")
    w_solve: WSolveConfig | None = Field(
        None,
        description="replace W, every few epochs, by the exact least-squares W given phi* and psi* (noise-free data "
        "leave W's Gram matrix ill-conditioned, and Adam slow on it); needs a dense, unmasked W, a sender-only psi*, "
        "no external input and no W sparsity penalty. null = off (the paper trains W by gradient steps only)",
    )
    log_every: int = Field(500, ge=1, description="iterations between log lines (and W R^2 when ground truth exists)")
    checkpoint_every: int = Field(5000, ge=1, description="iterations between checkpoints")
    max_minutes: float | None = Field(None, gt=0, description="stop (with a checkpoint) after this much wall time")
    device: str = Field("auto", description="auto (CUDA when available), cpu, cuda, cuda:1 ...")


class AnalysisConfig(StrictModel):
    """What `circuitgnn evaluate` computes besides the standard metrics."""

    symbolic: bool = Field(True, description="fit closed-form formulas to the learned phi* and psi* (symbolic.json)")
    symbolic_backend: Literal["grammar", "pysr"] = Field(
        "grammar", description="grammar: offline search over rate-model expressions; pysr: PySR (needs pysr and Julia)"
    )


class ExperimentConfig(StrictModel):
    """One experiment: a name, a description and its sections."""

    name: str = Field("experiment", description="short name, used in folder names and reports")
    description: str = Field("", description="one line on what the experiment shows")
    simulation: SimulationConfig = Field(default_factory=SimulationConfig, description="ground-truth simulation")
    model: ModelConfig = Field(default_factory=ModelConfig, description="the GNN")
    training: TrainingConfig = Field(default_factory=TrainingConfig, description="optimisation")
    analysis: AnalysisConfig = Field(default_factory=AnalysisConfig, description="evaluation extras")

    @model_validator(mode="after")
    def _shrink_needs_dense_w(self) -> ExperimentConfig:
        if self.training.regularization.w_shrink.value > 0 and self.model.low_rank is not None:
            raise ValueError("training.regularization.w_shrink acts on a dense W: it cannot be combined with model.low_rank")
        return self

    @model_validator(mode="after")
    def _stop_at_ari_needs_unfrozen_epochs(self) -> ExperimentConfig:
        cc = self.training.clustering
        if cc.stop_at_ari is not None and cc.every_epochs <= cc.freeze_epochs:
            # with no unfrozen epoch between two clusterings the embeddings cannot move, so the next
            # partition repeats the last one whatever the data say, and clustering would stop at once
            raise ValueError(
                f"training.clustering.stop_at_ari needs every_epochs ({cc.every_epochs}) > freeze_epochs ({cc.freeze_epochs})"
            )
        return self

    @model_validator(mode="after")
    def _w_solve_needs_a_linear_w(self) -> ExperimentConfig:
        if self.training.w_solve is None:
            return self
        m, reg = self.model, self.training.regularization
        clashes = {
            "model.psi_input x_j,a_i,a_j": m.psi_input == "x_j,a_i,a_j",
            "model.low_rank": m.low_rank is not None,
            "model.connectivity_mask": m.connectivity_mask is not None,
            f"model.external_input {m.external_input}": m.external_input != "none",
            "training.regularization.w_l1": reg.w_l1.value > 0,
            "training.regularization.w_shrink": reg.w_shrink.value > 0,
        }
        found = [name for name, clash in clashes.items() if clash]
        if found:
            raise ValueError(f"training.w_solve needs a dense, unpenalised W and a sender-only psi* without input: remove {', '.join(found)}")
        return self

    @field_validator("name")
    @classmethod
    def _name_is_simple(cls, v: str) -> str:
        if not v or any(c in v for c in "/\\ "):
            raise ValueError(f"name must be non-empty without spaces or slashes, got {v!r}")
        return v


def _format_validation_error(err: ValidationError, source: str) -> str:
    lines = [f"invalid config {source}:"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key (not a field of this section)"
        lines.append(f"  {loc or '<top level>'}: {msg}")
    return "\n".join(lines)


def _resolve_paths(data: dict[str, Any], base: Path) -> None:
    """Make relative file paths in the config relative to the config file's folder."""
    sim = data.get("simulation")
    targets = [(data.get("model"), "connectivity_mask")]
    if isinstance(sim, dict):
        targets += [(sim.get("connectivity"), "path"), (sim.get("stimulus"), "path")]
    for sec, key in targets:
        if isinstance(sec, dict) and isinstance(sec.get(key), str):
            p = Path(sec[key]).expanduser()
            if not p.is_absolute():
                sec[key] = str((base / p).resolve())


def config_from_dict(data: dict[str, Any], source: str = "<dict>") -> ExperimentConfig:
    """Validate a plain dict as an :class:`ExperimentConfig`, raising :class:`ConfigError` naming the fields."""
    if not isinstance(data, dict):
        raise ConfigError(f"invalid config {source}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        return ExperimentConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, source)) from None


def load_config(path: str | Path) -> ExperimentConfig:
    """Load and validate a YAML experiment config.

    Relative paths inside the file are taken relative to the file's folder.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path} is not valid YAML: {err}") from None
    data = {} if data is None else data
    if isinstance(data, dict):
        _resolve_paths(data, path.parent.resolve())
    return config_from_dict(data, source=str(path))


def dump_config(config: ExperimentConfig) -> str:
    """The config as YAML text (all fields, defaults included)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


def describe_fields(model: type[BaseModel] = ExperimentConfig, prefix: str = "") -> list[tuple[str, str, str]]:
    """(dotted name, default, description) for every field, recursing into sections."""
    rows: list[tuple[str, str, str]] = []
    for name, field in model.model_fields.items():
        ann = field.annotation
        dotted = f"{prefix}{name}"
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            rows.append((dotted, "", field.description or ""))
            rows.extend(describe_fields(ann, dotted + "."))
        else:
            default = field.get_default(call_default_factory=True)
            rows.append((dotted, repr(default), field.description or ""))
    return rows
