"""Ground-truth connectivity matrices.

``W[i, j]`` is the weight of the connection from neuron j (sender, column) to
neuron i (receiver, row). The diagonal is always zero: self-interaction is part
of each neuron's own update function, not of the network.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from circuitgnn.config import ConnectivityConfig
from circuitgnn.errors import ConfigError

_ROWS_PER_DRAW = 512  # rows drawn at a time, so float64 temporaries stay small for large N


def cauchy_scale(n_neurons: int) -> float:
    """The paper's N-dependent scale of the truncated Cauchy weights (spec 2.2)."""
    n = n_neurons
    if n < 2000:
        p = 0.7
    elif n < 4000:
        p = 0.675
    elif n < 8000:
        p = 0.67
    elif n == 8000:
        p = 0.66
    else:
        p = 0.5
    return float(n ** (-p))


def _draw_rows(rng: np.random.Generator, n: int, kind: str, truncation: float) -> np.ndarray:
    """Draw the (n, n) unscaled samples in float32, a block of rows at a time."""
    out = np.empty((n, n), dtype=np.float32)
    for start in range(0, n, _ROWS_PER_DRAW):
        stop = min(start + _ROWS_PER_DRAW, n)
        if kind == "cauchy":
            block = rng.standard_cauchy(size=(stop - start, n))
            block[np.abs(block) > truncation] = 0.0
        else:
            block = rng.standard_normal(size=(stop - start, n))
        out[start:stop] = block
    return out


def load_matrix(path: Path, n_neurons: int) -> np.ndarray:
    """Load a user connectivity matrix from .npy and check it is (n_neurons, n_neurons) and finite."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"connectivity.path: file not found: {path}")
    try:
        w = np.load(path, allow_pickle=False)
    except ValueError as err:
        raise ConfigError(f"connectivity.path: {path} is not a readable .npy array ({err})") from None
    if w.shape != (n_neurons, n_neurons):
        raise ConfigError(
            f"connectivity.path: {path} has shape {w.shape}, expected ({n_neurons}, {n_neurons}) "
            f"(n_neurons x n_neurons, W[i, j] = weight from j to i)"
        )
    if not np.issubdtype(w.dtype, np.number) or not np.all(np.isfinite(w)):
        raise ConfigError(f"connectivity.path: {path} must contain finite numbers")
    w = np.array(w, dtype=np.float32)
    if np.any(np.diag(w) != 0):
        warnings.warn(f"connectivity matrix {path} has a non-zero diagonal: it is set to 0", stacklevel=2)
    return w


def make_connectivity(cfg: ConnectivityConfig, n_neurons: int, rng: np.random.Generator) -> np.ndarray:
    """Generate the ground-truth W (float32, zero diagonal) described by ``cfg``.

    Steps, in order: draw (or load), scale, zero the diagonal, apply the
    filling-factor mask, apply Dale's law (and its E/I balance). The same ``rng`` state gives the same matrix.
    """
    n = n_neurons
    if cfg.kind == "file":
        assert cfg.path is not None  # guaranteed by the config validator
        w = load_matrix(cfg.path, n)
    else:
        w = _draw_rows(rng, n, cfg.kind, cfg.truncation)
        if cfg.scale is not None:
            scale = cfg.scale
        else:
            scale = cauchy_scale(n) if cfg.kind == "cauchy" else 1.0 / np.sqrt(n)
        w *= np.float32(scale)
    np.fill_diagonal(w, 0.0)
    if cfg.filling_factor < 1.0:
        for start in range(0, n, _ROWS_PER_DRAW):
            stop = min(start + _ROWS_PER_DRAW, n)
            keep = rng.random(size=(stop - start, n)) <= cfg.filling_factor
            w[start:stop] *= keep
    if cfg.dale_excitatory_fraction is not None:
        n_exc = int(np.floor(n * cfg.dale_excitatory_fraction))
        np.abs(w, out=w)
        w[:, n_exc:] *= -1.0
        if cfg.dale_balance:  # each receiver's inhibition scaled to its excitation: the row sums to zero
            excitation = w[:, :n_exc].sum(axis=1, dtype=np.float64)
            inhibition = -w[:, n_exc:].sum(axis=1, dtype=np.float64)
            factor = np.divide(excitation, inhibition, out=np.ones(n), where=inhibition > 0)
            w[:, n_exc:] *= factor[:, None].astype(np.float32)
    return w


def spectral_radius(w: np.ndarray) -> float:
    """Largest eigenvalue modulus of W (ARPACK for large matrices, dense solver for small ones)."""
    n = w.shape[0]
    if n <= 1500:
        return float(np.max(np.abs(np.linalg.eigvals(w.astype(np.float64)))))
    from scipy.sparse.linalg import ArpackNoConvergence, eigs

    try:
        vals = eigs(w, k=1, which="LM", return_eigenvectors=False, tol=1e-4, maxiter=5000)
    except ArpackNoConvergence as err:
        vals = err.eigenvalues
        if len(vals) == 0:
            return float("nan")
    return float(np.max(np.abs(vals)))
