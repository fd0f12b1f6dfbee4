"""Settings of the train layer: optimisation, regularisers, clustering, checkpoints, and the extensions beyond the paper."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from circuitgnn.config.base import StrictModel


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
    phi_decreasing: Coefficient = Field(
        Coefficient(), description="beta: mean ReLU(phi*(x + d) - phi*(x))^2 (see extensions.monotone_norm), phi* decreasing in x"
    )
    psi_monotone: Coefficient = Field(
        Coefficient(),
        description="gamma: mean ReLU(psi*(x) - psi*(x + d))^2 (see extensions.monotone_norm), psi* increasing (fixes the sign of W)",
    )
    w_l1: Coefficient = Field(Coefficient(), description="zeta: sum |W_ij|, sparsity of W")
    w_shrink: Coefficient = Field(
        Coefficient(),
        description="proximal L1 for a dense W: after each step every W_ij moves toward 0 by this x lr_w, stopping at 0 "
        "(in units of an Adam step: about 0.5 holds at exactly 0 the weights whose gradient has no steady sign)",
    )
    delta_fraction: float = Field(1 / 150, gt=0, description="d = delta_fraction * xnorm, the step of the two monotonicity terms")
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


class WSolveConfig(StrictModel):
    """Periodic exact least-squares W given phi* and psi* (circuitgnn.train.wsolve)."""

    every_epochs: int = Field(1, ge=1, description="solve at the end of every this many epochs (the last one included)")
    frames: int = Field(10000, ge=1, description="evenly spaced training frames the solve uses (all of them if fewer)")
    ridge: float = Field(1e-6, ge=0, description="added to the Gram matrix's diagonal, relative to its mean eigenvalue")
    adam_on_w: bool = Field(
        True, description="W also takes Adam steps between solves; false: W changes only by solves, from the first one on"
    )


class WarmStartConfig(StrictModel):
    """Start from a fit of the same model with spline functions (circuitgnn.train.warm_start)."""

    frames: int | None = Field(
        None,
        ge=10,
        description="evenly spaced training frames the function fit uses (all of them if fewer); null: 5,000, or 2.5 N "
        "for N > 2,000, so that the frames outnumber the weights of each row",
    )

    def n_frames(self, n_neurons: int) -> int:
        """The frames the fit takes for ``n_neurons`` (before capping at the training frames)."""
        return self.frames if self.frames is not None else max(5000, int(2.5 * n_neurons))

    psi_basis: int = Field(24, ge=4, le=200, description="cubic B-splines of the shared psi (knots at quantiles of the activity)")
    phi_basis: int = Field(24, ge=4, le=200, description="cubic B-splines of each neuron's phi")
    receivers: int = Field(128, ge=1, description="receivers whose residual the psi steps use (all of them are solved at the end)")
    steps: int = Field(6, ge=0, le=100, description="damped Gauss-Newton steps on psi's coefficients at most")
    distill_steps: int = Field(
        600,
        ge=0,
        description="Adam steps that fit phi* and psi* to the spline functions (the embeddings held). Enough for W and the "
        "types; the shapes that symbolic regression reads need more: Supp. 13's widths gamma read 1.24 / 1.72 / 3.56 / 6.56 "
        "for 1 / 2 / 4 / 8 after 600 steps, 1.00 / 2.00 / 4.02 / 8.01 after 3,000 (N = 1,000: about 35 s on one core)",
    )
    lr_scale: float = Field(
        0.1,
        gt=0,
        le=1,
        description="multiplies training.lr_w and training.lr_embedding once the warm start has set W and the embeddings. "
        "Adam moves every parameter by about its learning rate per step whatever its gradient, and at the paper's rates that "
        "noise undid the fit: sparse family, 10 min, W R^2 0.9998 -> 0.955 and slope 0.99 -> 0.62 (W at 1e-3; at 1e-4 the fit "
        "stayed and the prediction loss fell 15-fold); Dale family, types 1.00 -> 0.75 with W alone scaled (embeddings at 7.5e-4)",
    )


class ExtensionsConfig(StrictModel):
    """Settings beyond the paper's method, added to reach its harder experiments (docs/training.md, "Extensions").

    Each was added after a measured failure of the paper's recipe on one experiment; all but
    ``w_shrink_keep_norm`` are off by default, so the paper's method is what runs unless a config asks.
    """

    monotone_norm: bool = Field(
        False,
        description="measure the two monotonicity terms (regularization.phi_decreasing, psi_monotone) by the root mean "
        "square of their violations (the paper code's un-squared norm) instead of the mean square: the gradient does not "
        "fade as a violation shrinks (Supp. 13: without it psi* ended decreasing and W's sign flipped)",
    )
    w_shrink_keep_norm: bool = Field(
        True,
        description="regularization.w_shrink: rescale W after each shrink to its norm before it. The data fix the scale of W only jointly with "
        "psi* (W psi* = (cW)(psi*/c)), so a shrink alone drifts W down and psi* up, and the loss rises while psi* follows",
    )
    stop_clustering_at_ari: float | None = Field(
        None,
        gt=0,
        le=1,
        description="stop clustering once a clustering agrees with the one before at least this well (adjusted Rand "
        "index, 1 = the same partition); that one and all later epochs train psi* and the embeddings unfrozen. "
        "null = cluster on schedule to the end (the paper's code freezes psi* for an epoch each time)",
    )
    warm_start: WarmStartConfig | None = Field(
        None,
        description="before the first step, fit W, a shared spline psi and a spline phi per neuron by variable projection "
        "(exact least squares for W and phi, Gauss-Newton on psi's few coefficients), then start the GNN from them: W copied, "
        "phi* and psi* fitted to the splines, the embeddings from the phi curves; needs the derivative objective, a dense "
        "unmasked W, a sender-only psi* and no external input. null = off (the paper starts from random weights)",
    )
    w_solve: WSolveConfig | None = Field(
        None,
        description="replace W, every few epochs, by the exact least-squares W given phi* and psi* (noise-free data "
        "leave W's Gram matrix ill-conditioned, and Adam slow on it); needs a dense, unmasked W, a sender-only psi*, "
        "no external input and no W sparsity penalty. null = off (the paper trains W by gradient steps only)",
    )


class RolloutConfig(StrictModel):
    """The derivative-free objective: integrate the model from a recorded frame and compare with the frames that follow."""

    steps: int = Field(1, ge=1, description="recorded frames predicted from each start frame (k)")
    substeps: int = Field(1, ge=1, description="integration steps of the model per frame interval (step = frame interval / substeps)")
    integrator: Literal["euler", "rk4"] = Field("euler", description="how the model is integrated between frames")


class TrainingConfig(StrictModel):
    """Optimisation: batches of random frames, Adam with per-group learning rates, schedules, checkpoints."""

    seed: int = Field(16, ge=0, description="seed of initialisation, frame sampling and clustering")
    batch_size: int = Field(8, ge=1, description="frames per iteration")
    objective: Literal["derivative", "rollout", "fluorescence"] = Field(
        "derivative",
        description="derivative: predict dx/dt at each frame (the paper); rollout: integrate the model from a frame and "
        "predict the next recorded frames (training.rollout), no derivative needed; fluorescence (a deconvolved calcium "
        "recording): integrate the model and the indicator from a frame and predict the next recorded fluorescence",
    )
    derivative: Literal["auto", "recorded", "forward", "central", "savgol", "spline"] = Field(
        "auto",
        description="dx/dt for the derivative objective: recorded (the data's own dxdt), forward or central finite differences, "
        "savgol (Savitzky-Golay) or spline (smoothing spline, GCV) for noisy data; auto = recorded when the data have it, else forward",
    )
    rollout: RolloutConfig = Field(default_factory=RolloutConfig, description="the rollout objective's settings")
    n_epochs: int = Field(10, ge=1, description="number of epochs")
    iterations_per_epoch: int | None = Field(
        None, ge=1, description="null = (frames training may start from) // batch_size: one pass over the training frames"
    )
    lr_w: float = Field(1e-3, gt=0, description="Adam learning rate of W")
    lr_mlp: float = Field(5e-4, gt=0, description="Adam learning rate of phi* and psi*")
    lr_embedding: float = Field(7.5e-4, gt=0, description="Adam learning rate of the embeddings")
    lr_input: float = Field(1e-5, gt=0, description="Adam learning rate of the learned external input (its own optimiser)")
    regularization: RegularizationConfig = Field(default_factory=RegularizationConfig, description="regularisers")
    clustering: ClusteringConfig = Field(default_factory=ClusteringConfig, description="type clustering")
    extensions: ExtensionsConfig = Field(
        default_factory=ExtensionsConfig, description="settings beyond the paper's method, for its harder experiments"
    )
    log_every: int = Field(500, ge=1, description="iterations between log lines (and W R^2 when ground truth exists)")
    checkpoint_every: int = Field(5000, ge=1, description="iterations between checkpoints")
    log_every_minutes: float | None = Field(
        None,
        gt=0,
        allow_inf_nan=False,
        description="minutes of training between log lines, instead of log_every iterations: a cadence that suits every N "
        "(a step costs 20 ms at N = 1000 and 0.3 s at N = 8000 on 2 cores); log lines then depend on the machine's speed",
    )
    checkpoint_every_minutes: float | None = Field(
        None, gt=0, allow_inf_nan=False, description="minutes between checkpoints, instead of checkpoint_every iterations"
    )
    max_minutes: float | None = Field(None, gt=0, description="stop (with a checkpoint) after this much wall time")
    max_iterations: int | None = Field(
        None,
        ge=0,
        description="stop (with a checkpoint) after this many iterations in all, the epochs and their schedules unchanged: "
        "a budget that, unlike max_minutes, is the same on every machine",
    )
    device: str = Field("auto", description="auto (CUDA when available), cpu, cuda, cuda:1 ...")
    compile: Literal["auto", "off", "default", "reduce-overhead"] = Field(
        "auto",
        description="torch.compile the derivative objective's loss and its gradient: default (fused kernels) or reduce-overhead "
        "(fused kernels replayed as CUDA graphs: fewer launches); the first steps pay the compilation. auto = reduce-overhead on "
        "a GPU with the derivative objective (Fig. 2's step 3.4 -> 1.6 ms on an H200), else off (on CPU, compiling made it slower)",
    )

    @model_validator(mode="after")
    def _compile_derivative_only(self) -> TrainingConfig:
        if self.compile not in ("auto", "off") and self.objective != "derivative":
            raise ValueError(f"training.compile ({self.compile}) applies to the derivative objective only, not to {self.objective}")
        return self

    def compile_mode(self, device_type: str) -> str:
        """training.compile resolved for a device of type ``device_type`` ("cpu", "cuda"): off, default or reduce-overhead."""
        if self.compile != "auto":
            return self.compile
        return "reduce-overhead" if device_type == "cuda" and self.objective == "derivative" else "off"

    def frame_integration(self) -> tuple[int, Literal["euler", "rk4"]]:
        """(substeps, integrator) of the model between two frames: the rollout objective's, else one Euler step (the paper)."""
        if self.objective in ("rollout", "fluorescence"):
            return self.rollout.substeps, self.rollout.integrator
        return 1, "euler"
