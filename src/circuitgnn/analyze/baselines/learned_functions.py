"""A regression that learns the functions: one shared signal curve psi, one update curve phi_i per neuron, and W.

    dx_i/dt = phi_i(x_i) + sum_j W_ij psi(x_j)

psi and every phi_i are cubic splines (knots at the activity's quantiles), fitted by variable projection
(:func:`circuitgnn.train.varpro.fit_functions`): W and the phi_i exactly for each psi, damped Gauss-Newton
steps on psi's few coefficients. psi's offset is fixed by phi_i(0) = 0 and its plateau (its median over
[0.8, 1] x 1.5 std of the activity, as for the GNN) is 1.

This is the GLM with a learned pointwise nonlinearity among the baselines, and a measure of how fast the
structure can be found when the functions are shared curves: types are not learned, but each neuron's phi
curve clusters by type. The GNN's warm start (``training.extensions.warm_start``) is this fit.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch

from circuitgnn.analyze.baselines.linear import _SharedFeatureRegression, regression_frames
from circuitgnn.errors import CircuitGNNError
from circuitgnn.train.varpro import FunctionFit, fit_functions


class LearnedFunctionRegression(_SharedFeatureRegression):
    """dx_i/dt = phi_i(x_i) + sum_j W_ij psi(x_j) with psi shared and learned (see the module docstring).

    Parameters
    ----------
    n_psi, n_phi
        Spline functions of psi and of each phi_i (each phi_i also has a linear term).
    iterations
        Gauss-Newton steps on psi at most.
    max_frames
        Frames used, evenly spread over the training frames (W needs enough of them to be determined:
        about 10 N consecutive ones for the paper's networks).
    receivers
        Receivers whose residual the steps on psi use (all are solved at the end).
    widths
        Starting psi candidates tanh(x / (width * std)): the one with the smallest residual is refined.
        A saturating start matters: a linear psi sits in a poor basin.
    max_minutes
        No Gauss-Newton step starts after this much time (the steps taken are kept).

    Attributes
    ----------
    connectivity_ : (N, N) W (psi's plateau scaled to 1, as the GNN's corrected W; receivers in rows; zero diagonal).
    coefficients_ : (N, n_phi + 2) each neuron's phi coefficients (splines, then x), then the weight of its own psi term.
    fit_ : the :class:`~circuitgnn.train.varpro.FunctionFit` (psi and phi as curves).
    history_ : the mean squared residual (of the receivers the steps use) after each step.
    """

    def __init__(
        self,
        n_psi: int = 24,
        n_phi: int = 24,
        iterations: int = 8,
        max_frames: int = 20000,
        receivers: int = 256,
        widths: Sequence[float] = (0.1, 0.3, 1.0),
        ridge: float = 1e-8,
        tolerance: float = 1e-4,
        max_minutes: float | None = None,
        progress: bool = False,
    ):
        checks = (
            ("n_psi", n_psi, 4),
            ("n_phi", n_phi, 4),
            ("iterations", iterations, 0),
            ("max_frames", max_frames, 10),
            ("receivers", receivers, 1),
        )
        for name, value, low in checks:
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise CircuitGNNError(f"{name} must be an integer >= {low}, got {value!r}")
        if not widths or any(not w > 0 for w in widths):
            raise CircuitGNNError(f"widths must be positive numbers, got {widths!r}")
        if max_minutes is not None and not max_minutes > 0:
            raise CircuitGNNError(f"max_minutes must be a positive number or None, got {max_minutes!r}")
        self.n_psi, self.n_phi, self.iterations, self.max_frames, self.receivers = n_psi, n_phi, iterations, max_frames, receivers
        self.widths, self.ridge, self.tolerance, self.progress = tuple(widths), float(ridge), float(tolerance), progress
        self.max_minutes = max_minutes

    def _features(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """psi, and the phi basis followed by psi (each neuron's own psi term)."""
        xt = torch.from_numpy(np.asarray(x, dtype=np.float64))
        psi = self.fit_.psi(xt)
        basis = self.fit_.phi_basis(xt).movedim(-1, 0)
        return psi.numpy(), torch.cat([basis, psi[None]]).numpy()

    def fit(self, x: np.ndarray, dt: float, dxdt: np.ndarray | None = None, segments: Sequence[int] = (0,)) -> LearnedFunctionRegression:
        """Fit to activity ``x`` (T, N) sampled every ``dt`` (``dxdt`` by forward differences when not given)."""
        start = time.perf_counter()
        dt, xa, y_all, rows = regression_frames(x, dt, dxdt, segments, minimum=10)
        rows = rows[np.linspace(0, len(rows) - 1, min(self.max_frames, len(rows))).astype(np.int64)]
        fit: FunctionFit = fit_functions(
            torch.from_numpy(np.ascontiguousarray(xa[rows], dtype=np.float32)),
            torch.from_numpy(np.ascontiguousarray(y_all[rows], dtype=np.float32)),
            n_psi=self.n_psi,
            n_phi=self.n_phi,
            iterations=self.iterations,
            receivers=self.receivers,
            widths=self.widths,
            ridge=self.ridge,
            tolerance=self.tolerance,
            deadline=None if self.max_minutes is None else start + 60 * self.max_minutes,
            log=(lambda line: print(line, flush=True)) if self.progress else None,
        )
        self.fit_, self.history_ = fit, fit.history
        self.psi_coefficients_ = fit.psi_coefficients.numpy()
        coefficients = torch.cat([fit.phi_coefficients, fit.self_weights[:, None]], 1)
        self._set(fit.connectivity.numpy(), coefficients.numpy(), dt)
        self.fit_seconds_ = time.perf_counter() - start
        return self
