"""Settings of the simulate layer: network size, time, integrator, noise, connectivity, neuron types, stimulus."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from circuitgnn.config.base import StrictModel
from circuitgnn.config.indicator import IndicatorConfig

ScalarOrList = float | list[float]


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
    dale_balance: bool = Field(
        False,
        description="Dale's law with excitation/inhibition balance: each row's inhibitory weights scaled so that the row "
        "sums to zero (without it, a mostly excitatory network saturates to a fixed point)",
    )
    path: Path | None = Field(None, description="kind=file: path of an (N, N) .npy matrix, W[i, j] = weight from j to i")

    @model_validator(mode="after")
    def _file_needs_path(self) -> ConnectivityConfig:
        if self.kind == "file" and self.path is None:
            raise ValueError("connectivity.kind is 'file' but connectivity.path is not set")
        if self.dale_balance and not (self.dale_excitatory_fraction is not None and 0 < self.dale_excitatory_fraction < 1):
            raise ValueError("connectivity.dale_balance needs dale_excitatory_fraction strictly between 0 and 1 (both kinds of sender)")
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
    self_coupling: ScalarOrList = Field(1.0, description="s_k, weight of tanh(x_i) in the update (paper Fig. 2: [1, 2, 1, 2])")
    decay: ScalarOrList = Field(1.0, description="c_k = 1/tau_k, linear decay rate of the update (paper Fig. 2: [1, 1, 2, 2])")
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
                raise ValueError(f"neurons.{name} has {len(value)} values but n_types is {k}: give one value per type or a single number")
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


class ObservationConfig(StrictModel):
    """What an experimenter would record of the simulation: every k-th state, with measurement noise, no dx/dt.

    The recording (``x.npy``) holds ``n_frames`` frames ``every`` integration steps apart, each plus
    Gaussian noise of std ``noise`` times that neuron's std; the clean states and their exact drift
    go to ``truth/`` (used only to score), and the dataset has no ``dxdt.npy``.
    """

    every: int = Field(1, ge=1, description="record one frame every this many integration steps (the frame interval is every * dt)")
    noise: float = Field(0.0, ge=0, description="measurement noise std as a fraction of each neuron's activity std (0.05 = 5 %)")
    holdout: float = Field(
        0.1, ge=0, lt=1, description="fraction of frames at the end of the recording held out from training, for the forecast score"
    )
    indicator: IndicatorConfig | None = Field(
        None, description="record the fluorescence of a calcium indicator instead of the activity; null = the activity itself"
    )
    unrecorded: float | list[int] = Field(
        0.0,
        description="neurons simulated but left out of the recording: a fraction (drawn at random) or a list of neuron indices",
    )

    def n_unrecorded(self, n_neurons: int) -> int:
        """How many of ``n_neurons`` are left out of the recording."""
        u = self.unrecorded
        return len(u) if isinstance(u, list) else round(u * n_neurons)

    @field_validator("unrecorded")
    @classmethod
    def _unrecorded(cls, v: float | list[int]) -> float | list[int]:
        if isinstance(v, list):
            if len(set(v)) != len(v) or any(i < 0 for i in v):
                raise ValueError(f"observation.unrecorded: neuron indices must be distinct and >= 0, got {v}")
        elif not 0 <= v < 1:
            raise ValueError(f"observation.unrecorded must be a fraction in [0, 1) or a list of neuron indices, got {v}")
        return v


class SimulationConfig(StrictModel):
    """The ground-truth simulation: network size, time, integrator, noise, seed."""

    n_neurons: int = Field(1000, ge=2, description="number of neurons N")
    n_frames: int = Field(100_000, ge=1, description="number of saved frames T (after burn-in)")
    burn_in: int = Field(1000, ge=0, description="integration steps run before the first saved frame, not saved")
    dt: float = Field(0.01, gt=0, description="integration time step")
    integrator: Literal["euler", "rk4"] = Field("euler", description="euler (paper) or rk4")
    noise_std: float = Field(0.0, ge=0, description="per-step std of the additive process noise, not scaled by dt (paper's sigma)")
    init_std: float = Field(5.0, ge=0, description="initial state x_i(0) ~ N(0, init_std^2)")
    seed: int = Field(42, ge=0, description="seed of every random draw of the simulation")
    connectivity: ConnectivityConfig = Field(default_factory=ConnectivityConfig, description="connectivity generator")
    neurons: NeuronConfig = Field(default_factory=NeuronConfig, description="neuron types and signal form")
    stimulus: StimulusConfig = Field(default_factory=StimulusConfig, description="external input")
    check_activity: bool = Field(
        True,
        description="refuse to publish activity that carries nothing to learn from (a fixed point, an explosion), saying what "
        "to change; false = publish it anyway",
    )
    observation: ObservationConfig | None = Field(
        None, description="write a recording (sampled, noisy, no dx/dt; the truth apart) instead of the exact states; null = exact"
    )

    @model_validator(mode="after")
    def _sizes(self) -> SimulationConfig:
        if self.neurons.n_types > self.n_neurons:
            raise ValueError(
                f"neurons.n_types ({self.neurons.n_types}) is larger than n_neurons ({self.n_neurons}): every type needs a neuron"
            )
        if self.observation is not None:
            unrecorded = self.observation.unrecorded
            if isinstance(unrecorded, list) and unrecorded and max(unrecorded) >= self.n_neurons:
                raise ValueError(f"observation.unrecorded names neuron {max(unrecorded)} but n_neurons is {self.n_neurons}")
            if self.observation.n_unrecorded(self.n_neurons) and self.stimulus.n_driven:
                raise ValueError(
                    "observation.unrecorded with a stimulus grid: the grid's neurons would lose their places; "
                    "set stimulus.mode to none or record every neuron"
                )
            if self.n_neurons - self.observation.n_unrecorded(self.n_neurons) < 2:
                raise ValueError(f"observation.unrecorded leaves fewer than 2 of the {self.n_neurons} neurons recorded")
        if self.stimulus.n_driven > self.n_neurons:
            raise ValueError(
                f"stimulus.grid_size {self.stimulus.grid_size} drives {self.stimulus.n_driven} neurons but n_neurons is {self.n_neurons}"
            )
        return self
