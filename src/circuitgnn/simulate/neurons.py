"""Neuron types, positions and the per-type parameter table."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from circuitgnn.config import NeuronConfig

PARAMETER_NAMES = ("gain", "self_coupling", "decay", "bias", "width", "threshold", "leak")


def assign_types(n_neurons: int, cfg: NeuronConfig, rng: np.random.Generator) -> np.ndarray:
    """Type of every neuron (int64, shape (N,)).

    Contiguous blocks as in the paper: with equal blocks ``m = N // K`` neurons
    per type and the remainder to the last type; with ``type_fractions`` the
    block of type k has ``floor(f_k N)`` neurons and the remainder goes to the
    last type with a non-zero fraction. ``type_layout='shuffled'`` permutes the
    blocks with ``rng``.
    """
    k = cfg.n_types
    if cfg.type_fractions is None:
        m = n_neurons // k
        types = np.minimum(np.arange(n_neurons) // m, k - 1)
    else:
        counts = np.floor(np.asarray(cfg.type_fractions) * n_neurons).astype(np.int64)
        last = max(i for i, f in enumerate(cfg.type_fractions) if f > 0)
        counts[last] += n_neurons - counts.sum()
        types = np.repeat(np.arange(k), counts)
    types = types.astype(np.int64)
    if cfg.type_layout == "shuffled":
        types = rng.permutation(types)
    return types


def sunflower_positions(n: int) -> np.ndarray:
    """Golden-angle (sunflower) points filling the unit disc, centred at (0.5, 0.5); shape (n, 2)."""
    k = np.arange(n) + 0.5
    r = np.sqrt(k / n)
    theta = np.pi * (1 + np.sqrt(5)) * k
    return np.stack([0.5 + r * np.cos(theta) / 2, 0.5 + r * np.sin(theta) / 2], axis=1)


def grid_coordinates(grid_size: int) -> np.ndarray:
    """Exact grid coordinates in [0, 1]^2 of neurons 0 .. G^2-1: neuron r*G + c sits at (x, y) = (c, r) / (G - 1)."""
    g = grid_size
    r, c = np.divmod(np.arange(g * g), g)
    denom = max(g - 1, 1)
    return np.stack([c / denom, r / denom], axis=1)


def make_positions(n_neurons: int, grid_size: int, rng: np.random.Generator) -> np.ndarray:
    """2-D positions (float32, (N, 2)): sunflower points in random order, and, when a
    stimulus grid of ``grid_size`` > 0 is used, the first G^2 neurons on that grid
    with a small jitter (std 1/(8 G), as in the paper)."""
    pos = sunflower_positions(n_neurons)[rng.permutation(n_neurons)]
    if grid_size > 0:
        n_grid = grid_size * grid_size
        jitter = rng.normal(0.0, 1.0 / (8 * grid_size), size=(n_grid, 2))
        pos[:n_grid] = grid_coordinates(grid_size) + jitter
    return pos.astype(np.float32)


@dataclass(frozen=True)
class TypeTable:
    """Per-type parameters, one array of length K per name in :data:`PARAMETER_NAMES`."""

    values: dict[str, np.ndarray]

    @classmethod
    def from_config(cls, cfg: NeuronConfig) -> TypeTable:
        return cls({name: np.asarray(cfg.table(name), dtype=np.float64) for name in PARAMETER_NAMES})

    def per_neuron(self, types: np.ndarray) -> dict[str, np.ndarray]:
        """Expand every parameter to one value per neuron (float32)."""
        return {name: v[types].astype(np.float32) for name, v in self.values.items()}

    @classmethod
    def from_json(cls, rows: list[dict[str, float]]) -> TypeTable:
        """Inverse of :meth:`to_json` (the ``types`` list of a dataset's ``truth/functions.json``)."""
        return cls({name: np.array([row[name] for row in rows], dtype=np.float64) for name in PARAMETER_NAMES})

    def to_json(self) -> list[dict[str, float]]:
        n_types = len(next(iter(self.values.values())))
        return [{name: float(v[k]) for name, v in self.values.items()} for k in range(n_types)]
