"""A regression that learns the functions: one shared signal curve psi, one update curve phi_i per neuron, and W.

    dx_i/dt = phi_i(x_i) + sum_j W_ij psi(x_j)

psi and every phi_i are cubic splines (uniform in the activity's quantiles, so that knots sit where the
data are). For a given psi the model is linear in W and in the phi_i coefficients: both are solved exactly
(one shared Gram matrix of the senders' signals, a small Schur complement per receiver). psi's few
coefficients are then updated by damped Gauss-Newton on the residual of that exact solve (variable
projection): the Jacobian of each receiver's residual is projected off the span of its own regressors, so a
step accounts for how W and phi would move with psi. psi's offset (absorbed by phi's constant) and scale
(absorbed by W) are invisible to the data and fixed after each step: psi(median activity) = 0 and psi's
plateau (its median over [0.8, 1] x 1.5 std of the activity, as for the GNN) = 1.

This is the GLM with a learned pointwise nonlinearity among the baselines, and a measure of how fast the
structure can be found when the functions are shared curves: types are not learned, but each neuron's phi
coefficients cluster by type.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from circuitgnn.analyze.baselines.linear import _SharedFeatureRegression, _solve, _Sums, regression_frames
from circuitgnn.errors import CircuitGNNError

_ROWS = 1024  # frames per block of the float64 products


class QuantileSpline:
    """A uniform cubic B-spline basis of ``n_basis`` functions in the coordinate u(x) that maps the activity's
    quantiles to equally spaced points (values outside the fitted range are clamped to it)."""

    def __init__(self, x: np.ndarray, n_basis: int):
        if n_basis < 4:
            raise CircuitGNNError(f"a cubic spline basis needs at least 4 functions, got {n_basis}")
        sample = np.asarray(x, dtype=np.float64).ravel()
        sample = sample[np.isfinite(sample)]
        self.n_basis = n_basis
        self.knots = np.quantile(sample, np.linspace(0, 1, n_basis - 2))
        self.knots = np.maximum.accumulate(self.knots + 1e-9 * np.arange(len(self.knots)))  # strictly increasing
        self._grid = np.arange(n_basis - 2, dtype=np.float64)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """The basis at ``x`` (any shape): (*x.shape, n_basis), float32."""
        u = np.interp(np.asarray(x, dtype=np.float64), self.knots, self._grid)
        j = np.minimum(np.floor(u), self.n_basis - 4).astype(np.int64)
        f = u - j
        f2, f3 = f * f, f * f * f
        weights = np.stack([(1 - f) ** 3, 3 * f3 - 6 * f2 + 4, -3 * f3 + 3 * f2 + 3 * f + 1, f3], axis=-1) / 6
        out = np.zeros((*u.shape, self.n_basis), dtype=np.float32)
        np.put_along_axis(out, j[..., None] + np.arange(4), weights.astype(np.float32), axis=-1)
        return out


class LearnedFunctionRegression(_SharedFeatureRegression):
    """dx_i/dt = phi_i(x_i) + sum_j W_ij psi(x_j) with psi shared and learned (see the module docstring).

    Parameters
    ----------
    n_psi, n_phi
        Spline functions of psi and of each phi_i.
    iterations
        Gauss-Newton steps on psi at most (each: two passes over the frames).
    max_frames
        Frames used, evenly spread over the training frames (W needs enough of them to be determined:
        about 10 N consecutive ones for the paper's networks).
    widths
        Starting psi candidates tanh(x / (width * std)): the one with the smallest residual is refined.
        A saturating start matters: a linear psi sits in a poor basin.
    max_minutes
        No Gauss-Newton step starts after this much time (the steps taken are kept).

    Attributes
    ----------
    connectivity_ : (N, N) W (psi's plateau scaled to 1, as the GNN's corrected W; receivers in rows).
    coefficients_ : (N, n_phi) each neuron's phi coefficients.
    psi_coefficients_ : (n_psi,) psi's coefficients.
    history_ : the mean squared residual after each step.
    """

    def __init__(
        self,
        n_psi: int = 12,
        n_phi: int = 8,
        iterations: int = 8,
        max_frames: int = 20000,
        widths: Sequence[float] = (0.1, 0.3, 1.0),
        ridge: float = 1e-8,
        tolerance: float = 1e-4,
        max_minutes: float | None = None,
        progress: bool = False,
    ):
        for name, value, low in (("n_psi", n_psi, 4), ("n_phi", n_phi, 4), ("iterations", iterations, 0), ("max_frames", max_frames, 10)):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise CircuitGNNError(f"{name} must be an integer >= {low}, got {value!r}")
        if not widths or any(not w > 0 for w in widths):
            raise CircuitGNNError(f"widths must be positive numbers, got {widths!r}")
        self.n_psi, self.n_phi, self.iterations, self.max_frames = n_psi, n_phi, iterations, max_frames
        if max_minutes is not None and not max_minutes > 0:
            raise CircuitGNNError(f"max_minutes must be a positive number or None, got {max_minutes!r}")
        self.widths, self.ridge, self.tolerance, self.progress = tuple(widths), float(ridge), float(tolerance), progress
        self.max_minutes = max_minutes

    def _features(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """psi and the phi basis from one evaluation of each spline basis (not one per phi function)."""
        psi_basis = self._psi_basis(x).astype(np.float64)
        return psi_basis @ self.psi_coefficients_, np.moveaxis(self._phi_basis(x).astype(np.float64), -1, 0)

    def _normalise(self, theta: np.ndarray, basis_x: np.ndarray, centre: np.ndarray, top: np.ndarray) -> np.ndarray:
        """psi(median) = 0 and psi's plateau (its median over the top of the activity range, ``top``: the basis there)
        = 1, as the GNN's corrected W: the two directions the data cannot see. A psi without a plateau is scaled to
        max |psi| = 1 over the data instead."""
        theta = theta - centre @ theta  # B-splines sum to one: subtracting psi(median) shifts every coefficient
        plateau = float(np.median(top @ theta))
        largest = float(np.abs(basis_x @ theta).max())
        return theta / (plateau if abs(plateau) > 0.1 * largest else max(largest, 1e-12))

    def _solve_at(
        self, basis: np.ndarray, phi: np.ndarray, y: np.ndarray, theta: np.ndarray
    ) -> tuple[_Sums, np.ndarray, np.ndarray, float]:
        """Exact W and phi coefficients for psi = basis @ theta; returns the sums, W, c and the mean squared residual."""
        n, p = y.shape[1], phi.shape[-1]
        gram, target = np.zeros((n, n)), np.zeros((n, n))
        cross, bb, bt = np.zeros((p, n, n)), np.zeros((n, p, p)), np.zeros((p, n))
        yy = 0.0
        for s in range(0, len(y), _ROWS):
            f = (basis[s : s + _ROWS] @ theta).astype(np.float64)
            u = phi[s : s + _ROWS].astype(np.float64)
            yb = y[s : s + _ROWS].astype(np.float64)
            gram += f.T @ f
            target += f.T @ yb
            for k in range(p):
                cross[k] += f.T @ u[:, :, k]
            bb += np.einsum("tik,til->ikl", u, u, optimize=True)
            bt += np.einsum("tik,ti->ki", u, yb, optimize=True)
            yy += float((yb**2).sum())
        sums = _Sums(gram, cross, bb, target, bt)
        w, c = _solve(sums, np.linalg.eigh(gram), self.ridge * float(np.mean(np.diag(gram))))
        explained = float(np.einsum("ij,ji->", w, target) + np.einsum("ik,ki->", c, bt))
        return sums, w, c, max(0.0, yy - explained) / y.size

    def _gauss_newton(
        self, basis: np.ndarray, phi: np.ndarray, y: np.ndarray, theta: np.ndarray, sums: _Sums, w: np.ndarray, c: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(J^T J, J^T r) of the projected residual with respect to psi's coefficients (Kaufman's variable projection)."""
        m, n = basis.shape[-1], y.shape[1]
        vv = np.zeros((m, m))
        grad = np.zeros(m)
        fv = np.zeros((m, n, n))  # [m, j, i] = sum_t f_j V_m,i
        uv = np.zeros((phi.shape[-1], m, n))  # [k, m, i] = sum_t u_k(x_i) V_m,i
        for s in range(0, len(y), _ROWS):
            b = basis[s : s + _ROWS].astype(np.float64)  # (t, N, M)
            f = b @ theta
            u = phi[s : s + _ROWS].astype(np.float64)
            r = y[s : s + _ROWS] - f @ w.T - np.einsum("tik,ik->ti", u, c, optimize=True)
            v = np.stack([b[:, :, k] @ w.T for k in range(m)])  # V_m = B_m(X) W^T: the messages with the m-th basis function as psi
            flat = v.reshape(m, -1)
            vv += flat @ flat.T
            grad += flat @ r.ravel()
            for k in range(m):
                fv[k] += f.T @ v[k]
            for k in range(u.shape[-1]):
                uv[k] += np.einsum("ti,mti->mi", u[:, :, k], v, optimize=True)
        values, vectors = np.linalg.eigh(sums.gram)
        inverse = (vectors / (values + self.ridge * float(np.mean(np.diag(sums.gram))))) @ vectors.T
        afv = np.einsum("jn,mni->mji", inverse, fv)
        a_cross = np.stack([inverse @ cr for cr in sums.cross])  # (P, N, N)
        schur = sums.basis - np.einsum("kni,lni->ikl", sums.cross, a_cross)
        schur = schur + 1e-12 * np.trace(schur, axis1=1, axis2=2)[:, None, None] * np.eye(schur.shape[1])
        shared = np.einsum("mji,lji->ml", fv, afv)  # sum_i Fv_m,i^T A Fv_l,i
        q = uv - np.einsum("kni,mni->kmi", sums.cross, afv)  # (P, M, N)
        solved = np.linalg.solve(schur, np.moveaxis(q, 2, 0))  # (N, P, M)
        own = np.einsum("kmi,ikl->ml", q, solved)
        return vv - shared - own, -grad  # J = -P(V): J^T r = -sum V r

    def fit(self, x: np.ndarray, dt: float, dxdt: np.ndarray | None = None, segments: Sequence[int] = (0,)) -> LearnedFunctionRegression:
        """Fit to activity ``x`` (T, N) sampled every ``dt`` (``dxdt`` by forward differences when not given)."""
        start = time.perf_counter()
        dt, xa, y_all, rows = regression_frames(x, dt, dxdt, segments, minimum=10)
        rows = rows[np.linspace(0, len(rows) - 1, min(self.max_frames, len(rows))).astype(np.int64)]
        xs = np.asarray(xa[rows], dtype=np.float32)
        y = np.asarray(y_all[rows], dtype=np.float64)
        self._psi_basis = QuantileSpline(xs, self.n_psi)
        self._phi_basis = QuantileSpline(xs, self.n_phi)
        basis = self._psi_basis(xs)  # (T, N, M) float32
        phi = self._phi_basis(xs)
        flat = basis.reshape(-1, self.n_psi)
        centre = self._psi_basis(np.array([np.median(xs)]))[0].astype(np.float64)
        grid = np.linspace(float(xs.min()), float(xs.max()), 400)
        grid_basis = self._psi_basis(grid).astype(np.float64)
        scale = float(np.std(xs))
        xnorm = 1.5 * scale  # the GNN's activity scale: the plateau is psi over [0.8, 1] xnorm
        top = self._psi_basis(np.linspace(0.8 * xnorm, xnorm, 50)).astype(np.float64)
        best = None
        for width in self.widths:  # the saturating start with the smallest residual
            theta = np.linalg.lstsq(grid_basis, np.tanh(grid / (width * scale)), rcond=None)[0]
            theta = self._normalise(theta, flat, centre, top)
            found = self._solve_at(basis, phi, y, theta)
            if best is None or found[3] < best[1][3]:
                best = (theta, found)
        assert best is not None
        theta, (sums, w, c, loss) = best
        self.history_ = [loss]
        damping = 1e-3
        deadline = None if self.max_minutes is None else start + 60 * self.max_minutes
        for _ in range(self.iterations):
            if deadline is not None and time.perf_counter() > deadline:
                break
            jtj, jtr = self._gauss_newton(basis, phi, y, theta, sums, w, c)
            improved = False
            for _ in range(4):  # Levenberg-Marquardt: raise the damping until the residual falls
                step = np.linalg.solve(jtj + damping * np.diag(np.diag(jtj) + 1e-12 * np.trace(jtj)), -jtr)
                trial = self._normalise(theta + step, flat, centre, top)
                found = self._solve_at(basis, phi, y, trial)
                if found[3] < loss:
                    theta, (sums, w, c, new_loss) = trial, found
                    damping = max(damping / 3, 1e-9)
                    improved = True
                    break
                damping *= 10
            if not improved:
                break
            done = (loss - new_loss) < self.tolerance * loss
            loss = new_loss
            self.history_.append(loss)
            if self.progress:
                print(f"learned functions: step {len(self.history_) - 1}, mean squared residual {loss:.4g}", flush=True)
            if done:
                break
        self.psi_coefficients_ = theta
        self._set(w, c, dt)
        self.fit_seconds_ = time.perf_counter() - start
        return self
