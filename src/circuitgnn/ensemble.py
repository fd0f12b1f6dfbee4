"""An ensemble of fits: how much W and the types change from one fit to another.

Members differ by their seed and, with ``bootstrap=True``, by a block-bootstrap resample of the frames:
blocks of consecutive frames drawn with replacement, long enough that the activity's autocorrelation
dies out within them, so that a resample varies the way a new recording of the same circuit would.
Each member's W is compared with psi*'s scale moved into it (``W_ij * plateau_j``): only W psi* is
determined by the data.

>>> from circuitgnn.ensemble import CircuitGNNEnsemble
>>> ens = CircuitGNNEnsemble(n_members=5, training={"n_epochs": 4}).fit(x, dt=0.01, folder="runs/ensemble")
>>> ens.confidence_.confident()[:10], ens.type_stability_
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from tqdm.auto import tqdm

from circuitgnn.analyze.confidence import EdgeConfidence, combined_confidence, ensemble_confidence, plateau_aligned, type_stability
from circuitgnn.config import ModelConfig, TrainingConfig
from circuitgnn.data.activity import InputMode, ScaleMethod, as_float32_frames, check_dt
from circuitgnn.data.derivatives import segment_bounds
from circuitgnn.errors import CircuitGNNError
from circuitgnn.estimator import NotFittedError, validate_section
from circuitgnn.fit_jobs import FitJob, fit_in_parallel, resolve_jobs, run_fit


def block_length(x: np.ndarray, segments: Sequence[int] = (0,), minimum: int = 20, max_lag: int = 2000) -> int:
    """Twice the lag at which the mean autocorrelation of the neurons' activity falls below 1/e (at least
    ``minimum`` frames): blocks this long keep what the dynamics correlate together."""
    a, b = max(segment_bounds(len(x), segments), key=lambda ab: ab[1] - ab[0])
    z = np.asarray(x[a:b], dtype=np.float64)
    z = z[:, np.isfinite(z).all(axis=0)]
    z = (z - z.mean(axis=0)) / (z.std(axis=0) + 1e-12)
    n = len(z)
    lag = 1
    while lag < min(max_lag, n // 4):
        if np.mean(z[: n - lag] * z[lag:]) < np.exp(-1):
            break
        lag = int(lag * 1.25) + 1
    return max(minimum, 2 * lag)


def block_bootstrap(n_frames: int, segments: Sequence[int], block: int, rng: np.random.Generator) -> tuple[np.ndarray, tuple[int, ...]]:
    """(frame indices, segment starts) of a resample: blocks of ``block`` consecutive frames within a segment,
    drawn with replacement until the resample is as long as the data; each block is its own segment."""
    bounds = [(a, b) for a, b in segment_bounds(n_frames, segments) if b - a >= 2]
    if not bounds:
        raise CircuitGNNError("no segment of at least 2 frames to resample")
    starts = np.concatenate([np.arange(a, max(a + 1, b - block + 1)) for a, b in bounds])
    ends = np.concatenate([np.minimum(np.arange(a, max(a + 1, b - block + 1)) + block, b) for a, b in bounds])
    frames, seg, total = [], [], 0
    while total < n_frames:
        k = rng.integers(len(starts))
        seg.append(total)
        frames.append(np.arange(starts[k], ends[k]))
        total += ends[k] - starts[k]
    if n_frames - seg[-1] < 2 and len(seg) > 1:  # a last block cut to one frame: end at the block before it
        n_frames = seg.pop()
    return np.concatenate(frames)[:n_frames], tuple(seg)


class CircuitGNNEnsemble:
    """K fits of :class:`~circuitgnn.estimator.CircuitGNN` (different seeds; block-bootstrap resamples of the frames
    with ``bootstrap=True``), and what they agree on.

    Parameters
    ----------
    n_members
        K, at least 2.
    bootstrap
        Resample the frames in blocks for each member (otherwise only the seed differs).
    block
        Block length in frames (default: :func:`block_length` of the data).
    model, training
        The members' settings, as for :class:`~circuitgnn.estimator.CircuitGNN`; member k trains with seed
        ``training.seed + k``.
    level
        The nominal coverage of the intervals.
    n_jobs
        How many members train at once, each in its own process with an equal share of the CPU cores (or, with
        the device "auto" and several GPUs, member k on GPU k mod their count); -1: one per GPU, else one per core.
        The members have the seeds and resamples of ``n_jobs=1``, which trains them one after another in this
        process (their W differ only where a fit's arithmetic depends on its thread count). Like a PyTorch
        DataLoader's workers, the processes are spawned: a script needs its work under ``if __name__ == "__main__":``.

    Attributes
    ----------
    members_ : list of CircuitGNN
    confidence_ : EdgeConfidence
        Per-connection mean, interval (Student t, as a prediction for one more fit) and sign agreement, over the
        members' W each divided by its overall scale against the others' (``confidence_.scales``).
    connectivity_ : numpy.ndarray
        The members' mean W (psi*'s scale moved in, the members aligned on one overall scale).
    coassignment_ : numpy.ndarray
        (N, N) fraction of members that put two neurons in one type.
    type_stability_ : float
        Mean adjusted Rand index between every two members' types.
    block_ : int
        The block length used (0 without bootstrap).
    """

    def __init__(
        self,
        n_members: int = 5,
        *,
        bootstrap: bool = True,
        block: int | None = None,
        model: ModelConfig | dict[str, Any] | None = None,
        training: TrainingConfig | dict[str, Any] | None = None,
        level: float = 0.9,
        n_jobs: int = 1,
        progress: bool = True,
    ):
        if not isinstance(n_members, int) or isinstance(n_members, bool) or n_members < 2:
            raise CircuitGNNError(f"n_members must be an integer >= 2, got {n_members!r}")
        if block is not None and (not isinstance(block, int) or isinstance(block, bool) or block < 2):
            raise CircuitGNNError(f"block must be an integer >= 2 (frames), got {block!r}")
        resolve_jobs(n_jobs, n_members)
        self.n_members, self.bootstrap, self.block, self.level, self.progress = n_members, bootstrap, block, level, progress
        self.n_jobs = n_jobs
        self.model = validate_section(model, ModelConfig, "model")
        self.training = validate_section(training, TrainingConfig, "training")

    def fit(
        self,
        x: Any,
        dt: float,
        dxdt: Any | None = None,
        inputs: Any | None = None,
        *,
        input_mode: Literal["multiplicative", "additive"] = "multiplicative",
        grid_size: int = 0,
        segments: Sequence[int] | None = None,
        scale: ScaleMethod | None = None,
        folder: str | Path | None = None,
    ) -> CircuitGNNEnsemble:
        """Fit the K members to activity ``x`` (T, N) sampled every ``dt`` (``dxdt``, ``inputs``, ``input_mode``,
        ``grid_size``, ``segments`` and ``scale`` as for :meth:`CircuitGNN.fit`; a known input is resampled with the
        frames); with ``folder``, member k trains in ``folder/member_k`` and a second call continues the members that
        were interrupted."""
        start = time.perf_counter()
        check_dt(dt)
        xa = as_float32_frames(x, "x")
        da = None if dxdt is None else as_float32_frames(dxdt, "dxdt", xa.shape[1])
        ua = None if inputs is None else as_float32_frames(inputs, "inputs", xa.shape[1])
        for name, arr in (("dxdt", da), ("inputs", ua)):
            if arr is not None and len(arr) != len(xa):
                raise CircuitGNNError(f"{name} has {len(arr)} frames but x has {len(xa)}: one row per frame of x")
        segs = (0,) if segments is None else tuple(int(s) for s in segments)
        self.block_ = (self.block or block_length(xa, segs)) if self.bootstrap else 0
        jobs = []
        for k in range(self.n_members):
            training = self.training.model_copy(update={"seed": self.training.seed + k})
            frames, sk = None, segs
            if self.bootstrap:
                frames, sk = block_bootstrap(len(xa), segs, self.block_, np.random.default_rng([self.training.seed, k]))
            folder_k = None if folder is None else Path(folder) / f"member_{k}"
            jobs.append(FitJob(self.model, training, frames, sk, folder_k, scale, input_mode, grid_size))
        if resolve_jobs(self.n_jobs, self.n_members) == 1:
            self.members_ = [run_fit(job, xa, dt, da, self.progress, ua) for job in jobs]
        else:
            with tqdm(total=self.n_members, desc="ensemble members", unit="fit", disable=not self.progress) as bar:
                self.members_ = fit_in_parallel(jobs, xa, dt, da, self.n_jobs, on_done=lambda k: bar.update(), inputs=ua)
        weights = [plateau_aligned(m.model_, m.xnorm_) for m in self.members_]
        self.confidence_: EdgeConfidence = ensemble_confidence(weights, self.level, time.perf_counter() - start)
        self.connectivity_ = self.confidence_.mean
        self.coassignment_, self.type_stability_ = type_stability([m.types_ for m in self.members_])
        return self

    def combined_confidence(
        self,
        x: Any,
        dxdt: Any | None = None,
        *,
        inputs: Any | None = None,
        segments: Sequence[int] | None = None,
        members: int | None = None,
        centre: Literal["fit", "least_squares"] = "least_squares",
        test_on: Literal["fit", "least_squares"] = "fit",
    ) -> EdgeConfidence:
        """Intervals with the data's share of the members' error counted once
        (:func:`~circuitgnn.analyze.confidence.combined_confidence`), that share estimated by the mean of the members'
        least-squares variances (:meth:`CircuitGNN.edge_confidence`) on ``x``, the frames the ensemble was fitted to
        (``inputs``: their known input, for members fitted with one).

        ``centre``: ``"least_squares"`` (at least two members): the members' least-squares W, each receiver's row
        solved with its own terms, their mean and spread, closer to the truth than the trained W on dense networks;
        ``"fit"``: the trained members' W (``confidence_``), closer where they were fitted with an L1 penalty on a
        sparse network (docs/confidence.md).

        ``members``: how many members (the first ones) give their least-squares variances; all by default. Each is one
        pass over ``x`` with that member's functions (minutes for N = 1000 and 100,000 frames on one thread); one
        member alone gives a less steady estimate (docs/confidence.md).

        ``test_on`` (with ``centre="fit"``): which estimate ranks and tests the connections (``z``, ``lfdr``,
        ``confident()``): the members' mean, or their least-squares W (at least two members;
        :func:`~circuitgnn.analyze.confidence.combined_confidence`)."""
        ones = self.one_fits(x, dxdt, inputs=inputs, segments=segments, members=members)  # refuses an unfitted ensemble first
        return combined_confidence(self.confidence_, ones, test_on, centre)

    def check_combined(self, input_mode: InputMode = "none") -> None:
        """Refuse, with the reason, settings whose members' least squares (:meth:`one_fits`, hence
        :meth:`combined_confidence`) cannot be computed: a multiplicative input (``model.external_input`` ``field``, or
        ``known`` with ``input_mode`` multiplicative), which least squares cannot take out of the drift, or a learned
        additive input with bootstrap resamples, over whose frames each member learned it. Callable before fitting."""
        kind = self.model.external_input
        if kind == "field" or (kind == "known" and input_mode == "multiplicative"):
            raise CircuitGNNError(
                f"combined intervals need each member's least squares, which cannot take a multiplicative input (model."
                f"external_input {kind!r}) out of the drift: read the ensemble's prediction intervals (confidence_) instead"
            )
        if kind == "additive_lowrank" and self.bootstrap:
            raise CircuitGNNError(
                "combined intervals need each member's learned input at the frames of x, but each member learned it over its "
                "own block-bootstrap resample: fit with bootstrap=False, or read the prediction intervals (confidence_)"
            )

    def one_fits(
        self,
        x: Any,
        dxdt: Any | None = None,
        *,
        inputs: Any | None = None,
        segments: Sequence[int] | None = None,
        members: int | None = None,
    ) -> list[EdgeConfidence]:
        """Each of the first ``members`` members' least-squares intervals (:meth:`CircuitGNN.edge_confidence`) on
        ``x``, at the ensemble's level; without ``dxdt``, the drift is estimated once for all of them.

        Members fitted with an additive input: a known one needs ``inputs`` at the frames of ``x``; a learned one
        (``additive_lowrank``) is taken at the frames of ``x``, which must be those the ensemble was fitted to, and
        only without bootstrap (each resample has its own frames, over which its member learned the input). A
        multiplicative input (known, or the learned ``field``) is refused: least squares cannot take it out of the
        drift, and the members' prediction intervals (``confidence_``) do not need them."""
        if not hasattr(self, "confidence_"):
            raise NotFittedError("this CircuitGNNEnsemble is not fitted yet: call fit(x, dt) first")
        count = self.n_members if members is None else members
        if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= self.n_members:
            raise CircuitGNNError(f"members must be an integer from 1 to {self.n_members} (the ensemble's size), got {members!r}")
        first = self.members_[0]
        self.check_combined(first.input_mode_)
        frames = None
        if first.config.model.external_input == "additive_lowrank":
            n = len(as_float32_frames(x, "x"))
            if n != first.n_frames_:
                raise CircuitGNNError(f"x has {n} frames, the ensemble was fitted to {first.n_frames_}: pass those frames")
            frames = np.arange(n)
        if dxdt is None:  # estimated once: the members share their training settings, so their derivative too
            dxdt = first._drift(first._activity(x, segments), None)
        return [
            m.edge_confidence(x, dxdt, segments=segments, level=self.level, inputs=inputs, frames=frames) for m in self.members_[:count]
        ]
