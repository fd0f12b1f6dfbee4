"""Connectivity estimators a user would pick instead of the GNN: correlation, partial correlation, a ridge
linear model (VAR in continuous time) and the regression told the true functions (an upper bound).

The last two share one solver: the drift of each receiver i is linear in shared sender features
``f(x_j)`` (weights ``W_ij``) and in a few per-receiver basis functions ``u_k(x_i)`` (coefficients
``c_ik``). One Gram matrix of the sender features serves every receiver; each receiver's basis is
eliminated by a small Schur complement, so the whole solve costs a few N x T x N products.
"""

from __future__ import annotations

import numbers
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from circuitgnn.analyze.metrics import partial_correlation
from circuitgnn.data.activity import as_float32_frames
from circuitgnn.data.derivatives import estimate_derivative, segment_bounds
from circuitgnn.errors import CircuitGNNError

Basis = Callable[[np.ndarray], np.ndarray]  # (T, N) activity -> (T, N) feature of each neuron
_BLOCK_ROWS = 4096


def _check_dt(dt: float) -> float:
    if not isinstance(dt, numbers.Real) or isinstance(dt, bool) or not np.isfinite(float(dt)) or dt <= 0:
        raise CircuitGNNError(f"dt must be a positive number (time between frames), got {dt!r}")
    return float(dt)


def _complete_frames(x: np.ndarray, y: np.ndarray | None = None) -> np.ndarray:
    """Indices of the frames where every value of ``x`` (and ``y``) is finite."""
    ok = np.isfinite(x).all(axis=1)
    if y is not None:
        ok &= np.isfinite(y).all(axis=1)
    return np.flatnonzero(ok)


def drift_targets(x: np.ndarray, dt: float, dxdt: np.ndarray | None, segments: Sequence[int]) -> np.ndarray:
    """dx/dt of every frame: the given one, or forward differences within each segment (the last frame: NaN)."""
    if dxdt is not None:
        d = as_float32_frames(dxdt, "dxdt", x.shape[1])
        if d.shape[0] != x.shape[0]:
            raise CircuitGNNError(f"dxdt has {d.shape[0]} frames but x has {x.shape[0]}")
        return d
    out = np.full(x.shape, np.nan, dtype=np.float32)
    for a, b in segment_bounds(x.shape[0], segments):
        if b - a >= 2:
            out[a:b] = estimate_derivative(np.asarray(x[a:b]), dt, "forward")
    return out


def regression_frames(x: np.ndarray, dt: float, dxdt: np.ndarray | None, segments: Sequence[int], minimum: int = 2):
    """(dt, x as float32 frames, dx/dt of every frame, the complete frames' indices) for a regression of the drift,
    refusing data with fewer than ``minimum`` complete frames."""
    dt = _check_dt(dt)
    xa = as_float32_frames(x, "x")
    y = drift_targets(xa, dt, dxdt, segments)
    rows = _complete_frames(xa, y)
    if len(rows) < minimum:
        raise CircuitGNNError(f"x has {len(rows)} complete frames with a drift: at least {minimum} are needed")
    return dt, xa, y, rows


@dataclass(frozen=True)
class _Sums:
    """The sums the shared-feature regression needs, accumulated over frames in float64."""

    gram: np.ndarray  # (N, N)  sum_t f_j f_l
    cross: np.ndarray  # (p, N, N)  [k, j, i] = sum_t f_j u_k(x_i)
    basis: np.ndarray  # (N, p, p)  [i, k, l] = sum_t u_k(x_i) u_l(x_i)
    target: np.ndarray  # (N, N)  [j, i] = sum_t f_j y_i
    basis_target: np.ndarray  # (p, N)  [k, i] = sum_t u_k(x_i) y_i


def _features(x: np.ndarray, sender: Basis, receiver: Sequence[Basis]) -> tuple[np.ndarray, np.ndarray]:
    f = np.asarray(sender(x), dtype=np.float64)
    u = np.stack([np.broadcast_to(np.asarray(b(x), dtype=np.float64), x.shape) for b in receiver])
    return f, u


def _accumulate(x: np.ndarray, y: np.ndarray, rows: np.ndarray, sender: Basis, receiver: Sequence[Basis]) -> _Sums:
    n, p = x.shape[1], len(receiver)
    gram, target = np.zeros((n, n)), np.zeros((n, n))
    cross, basis, basis_target = np.zeros((p, n, n)), np.zeros((n, p, p)), np.zeros((p, n))
    for s in range(0, len(rows), _BLOCK_ROWS):
        idx = rows[s : s + _BLOCK_ROWS]
        xb = np.asarray(x[idx], dtype=np.float64)
        yb = np.asarray(y[idx], dtype=np.float64)
        f, u = _features(xb, sender, receiver)
        gram += f.T @ f
        target += f.T @ yb
        for k in range(p):
            cross[k] += f.T @ u[k]
            basis_target[k] += np.einsum("ti,ti->i", u[k], yb)
            for m in range(p):
                basis[:, k, m] += np.einsum("ti,ti->i", u[k], u[m])
    return _Sums(gram, cross, basis, target, basis_target)


def _solve(sums: _Sums, eigen: tuple[np.ndarray, np.ndarray], ridge: float) -> tuple[np.ndarray, np.ndarray]:
    """W (N, N; receivers in rows) and the basis coefficients c (N, p) minimising the squared error plus ``ridge |W|^2``."""
    values, vectors = eigen
    inverse = (vectors / (values + ridge)) @ vectors.T  # (G + ridge I)^-1
    a_target = inverse @ sums.target  # (N, N): column i is A F^T y_i
    a_cross = np.stack([inverse @ c for c in sums.cross])  # (p, N, N)
    schur = sums.basis - np.einsum("kni,lni->ikl", sums.cross, a_cross)  # (N, p, p)
    rhs = sums.basis_target.T - np.einsum("kni,ni->ik", sums.cross, a_target)  # (N, p)
    p = schur.shape[1]
    schur = schur + 1e-12 * np.trace(schur, axis1=1, axis2=2)[:, None, None] * np.eye(p)  # a basis function that is constant zero
    coef = np.linalg.solve(schur, rhs[:, :, None])[:, :, 0]  # (N, p)
    w_t = a_target - np.einsum("kni,ik->ni", a_cross, coef)  # column i: the weights into receiver i
    return w_t.T.copy(), coef


class _SharedFeatureRegression:
    """dx_i/dt = sum_j W_ij f(x_j) + sum_k c_ik u_k(x_i), fitted by (ridge) least squares."""

    _sender: Basis
    _receiver: tuple[Basis, ...]

    def _sums(self, x: np.ndarray, y: np.ndarray, rows: np.ndarray) -> _Sums:
        return _accumulate(x, y, rows, self._sender, self._receiver)

    def _features(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(sender features (T, N), receiver basis (p, T, N)) at states ``x``."""
        return _features(x, self._sender, self._receiver)

    def _set(self, w: np.ndarray, coef: np.ndarray, dt: float) -> None:
        self.connectivity_ = w
        self.coefficients_ = coef
        self.dt_ = dt
        self.n_neurons_ = w.shape[0]

    def _check_fitted(self) -> None:
        if not hasattr(self, "connectivity_"):
            raise CircuitGNNError(f"this {type(self).__name__} is not fitted yet: call fit(x, dt) first")

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The drift dx/dt the model predicts at states ``x`` (T, N) -> (T, N)."""
        self._check_fitted()
        xa = np.asarray(as_float32_frames(x, "x", self.n_neurons_), dtype=np.float64)
        f, u = self._features(xa)
        return (f @ self.connectivity_.T + np.einsum("kti,ik->ti", u, self.coefficients_)).astype(np.float32)

    def simulate(self, x0: np.ndarray, n_steps: int, dt: float | None = None, substeps: int = 1) -> np.ndarray:
        """Roll the model out from ``x0`` (N,) for ``n_steps`` frames of ``dt`` (``substeps`` Euler steps each): (n_steps + 1, N)."""
        self._check_fitted()
        h = (self.dt_ if dt is None else _check_dt(dt)) / substeps
        out = np.empty((n_steps + 1, self.n_neurons_), dtype=np.float32)
        x = np.asarray(x0, dtype=np.float64)[None, :]
        out[0] = x[0]
        for k in range(n_steps):
            for _ in range(substeps):
                x = x + h * self.predict(x).astype(np.float64)
            out[k + 1] = x[0]
        return out

    def score(self, x: np.ndarray, dxdt: np.ndarray) -> float:
        """R^2 of the predicted drift against ``dxdt`` over all entries of the complete frames."""
        xa = as_float32_frames(x, "x", getattr(self, "n_neurons_", None))
        ya = as_float32_frames(dxdt, "dxdt", xa.shape[1])
        rows = _complete_frames(xa, ya)
        y = ya[rows].astype(np.float64)
        resid = y - self.predict(xa[rows])
        return 1.0 - float((resid**2).sum()) / float(((y - y.mean()) ** 2).sum())


class RidgeVAR(_SharedFeatureRegression):
    """The linear model dx/dt = A x + b (a first-order VAR in continuous time), ridge-regularised.

    The ridge weight is chosen from ``alphas`` (relative to the mean diagonal of the Gram matrix) by the
    error on the last ``validation`` fraction of each segment; the model is then refitted on all frames.

    Attributes
    ----------
    connectivity_ : (N, N) A, receivers in rows (its diagonal holds each neuron's own linear term).
    coefficients_ : (N, 1) b.
    alpha_ : the chosen relative ridge weight.
    """

    def __init__(self, alphas: Sequence[float] = (0.0, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0), validation: float = 0.1):
        if not alphas or any(not isinstance(a, numbers.Real) or not a >= 0 for a in alphas):
            raise CircuitGNNError(f"alphas must be non-negative numbers, got {alphas!r}")
        if not 0 < validation < 1:
            raise CircuitGNNError(f"validation must be a fraction in (0, 1), got {validation!r}")
        self.alphas = tuple(float(a) for a in alphas)
        self.validation = float(validation)
        self._sender = identity
        self._receiver = (constant,)

    def fit(self, x: np.ndarray, dt: float, dxdt: np.ndarray | None = None, segments: Sequence[int] = (0,)) -> RidgeVAR:
        """Fit to activity ``x`` (T, N) sampled every ``dt`` (``dxdt`` by forward differences when not given)."""
        start = time.perf_counter()
        dt, xa, y, rows = regression_frames(x, dt, dxdt, segments)
        fit_rows, val_rows = [], []
        for a, b in segment_bounds(xa.shape[0], segments):
            cut = a + max(1, int(round((b - a) * (1 - self.validation))))
            fit_rows.append(np.arange(a, cut))
            val_rows.append(np.arange(cut, b))
        fit_idx = np.intersect1d(np.concatenate(fit_rows), rows)
        val_idx = np.intersect1d(np.concatenate(val_rows), rows)
        part = self._sums(xa, y, fit_idx)
        scale = float(np.mean(np.diag(part.gram)))
        eigen = np.linalg.eigh(part.gram)
        self.validation_errors_: dict[float, float] = {}
        if len(val_idx):
            xv = np.asarray(xa[val_idx], dtype=np.float64)
            yv = np.asarray(y[val_idx], dtype=np.float64)
            for alpha in self.alphas:
                w, c = _solve(part, eigen, alpha * scale)
                pred = xv @ w.T + c[:, 0][None, :]
                self.validation_errors_[alpha] = float(np.mean((yv - pred) ** 2))
            self.alpha_ = min(self.validation_errors_, key=self.validation_errors_.__getitem__)
        else:
            self.alpha_ = self.alphas[0]
        full = self._sums(xa, y, rows)
        w, c = _solve(full, np.linalg.eigh(full.gram), self.alpha_ * float(np.mean(np.diag(full.gram))))
        self._set(w, c, dt)
        self.fit_seconds_ = time.perf_counter() - start
        return self


class KnownFunctionRegression(_SharedFeatureRegression):
    """Least squares told the true functions: dx_i/dt = sum_j W_ij psi(x_j) + sum_k c_ik u_k(x_i).

    ``psi`` maps the activity (T, N) to each sender's signal (T, N); ``phi_basis`` are the functions
    whose combination makes each neuron's update function. Given the right functions, W is exactly
    determined by enough frames: an upper bound for any method that must learn them.

    Attributes
    ----------
    connectivity_ : (N, N) W, receivers in rows (times the receiver's gain, if the dynamics have one).
    coefficients_ : (N, p) each neuron's coefficients of ``phi_basis``.
    """

    def __init__(self, psi: Basis = np.tanh, phi_basis: Sequence[Basis] | None = None, ridge: float = 1e-10):
        if not callable(psi):
            raise CircuitGNNError(f"psi must be a function of the activity, got {type(psi).__name__}")
        basis = (identity, constant) if phi_basis is None else tuple(phi_basis)
        if not basis or not all(callable(b) for b in basis):
            raise CircuitGNNError("phi_basis must be a non-empty sequence of functions of the activity")
        if not isinstance(ridge, numbers.Real) or not ridge >= 0:
            raise CircuitGNNError(f"ridge must be a non-negative number, got {ridge!r}")
        self.ridge = float(ridge)
        self._sender = psi
        self._receiver = basis

    def fit(self, x: np.ndarray, dt: float, dxdt: np.ndarray | None = None, segments: Sequence[int] = (0,)) -> KnownFunctionRegression:
        """Fit to activity ``x`` (T, N) sampled every ``dt`` (``dxdt`` by forward differences when not given)."""
        start = time.perf_counter()
        dt, xa, y, rows = regression_frames(x, dt, dxdt, segments)
        sums = self._sums(xa, y, rows)
        w, c = _solve(sums, np.linalg.eigh(sums.gram), self.ridge * float(np.mean(np.diag(sums.gram))))
        self._set(w, c, dt)
        self.fit_seconds_ = time.perf_counter() - start
        return self


def identity(x: np.ndarray) -> np.ndarray:
    """The basis function x."""
    return x


def constant(x: np.ndarray) -> np.ndarray:
    """The basis function 1."""
    return np.ones_like(x)


class _PairScore:
    """A symmetric score of every pair of neurons from the complete frames (diagonal 0), as ``connectivity_``."""

    def _score(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def fit(self, x: np.ndarray) -> _PairScore:
        """Score every pair from the complete frames of ``x`` (T, N)."""
        start = time.perf_counter()
        xa = as_float32_frames(x, "x")
        rows = _complete_frames(xa)
        if len(rows) < 3:
            raise CircuitGNNError(f"x has {len(rows)} complete frames: at least 3 are needed")
        score = np.nan_to_num(self._score(np.asarray(xa[rows], dtype=np.float64)))
        np.fill_diagonal(score, 0.0)
        self.connectivity_ = score
        self.fit_seconds_ = time.perf_counter() - start
        return self


class CorrelationConnectivity(_PairScore):
    """Pearson correlation of the activity of every pair of neurons (diagonal 0) as a connectivity score."""

    def _score(self, x: np.ndarray) -> np.ndarray:
        return np.corrcoef(x, rowvar=False)


class PartialCorrelationConnectivity(_PairScore):
    """Partial correlation of every pair given all others (diagonal 0), from the Ledoit-Wolf shrunk precision
    matrix (closed form at any N; scikit-learn's graphical lasso failed to converge on chaotic activity)."""

    def _score(self, x: np.ndarray) -> np.ndarray:
        return partial_correlation(x)
