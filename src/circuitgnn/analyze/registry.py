"""Every metric circuitgnn reports, declared once: its name, its label, and which way is better.

Read by :mod:`~circuitgnn.analyze.evaluate` (the order of ``metrics.json``), the command-line
summary, the HTML report and the scoreboard. Paper values are not here: they belong to the paper's
experiments (the reproduce manifest) and appear only in reports of those experiments.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

Direction = Literal["higher", "lower", "none"]


@dataclass(frozen=True)
class Metric:
    """One reported number: ``direction`` says whether higher or lower is better (``none``: a count or a size)."""

    name: str
    label: str
    direction: Direction = "higher"
    digits: int = 4

    def format(self, value: object) -> str:
        """The value as shown in summaries (integers as they are, floats to ``digits`` significant digits)."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            return str(value)
        if isinstance(value, int):
            return f"{value:,}"
        return f"{value:.{self.digits}g}" if math.isfinite(value) else str(value)

    def meets(self, value: float, target: float) -> bool:
        """Whether ``value`` reaches ``target`` in this metric's better direction."""
        if self.direction == "lower":
            return value <= target
        return value >= target


def _generalization() -> list[Metric]:
    tests = {"S5": "new W (25 % filled), types 10/20/30/40 %", "S6": "new W (50 % filled), types 60/40/0/0 %"}
    out = []
    for name, what in tests.items():
        for h in (400, 800):
            out.append(Metric(f"generalization_{name}_r2_{h}", f"generalisation {name} ({what}): forecast R^2 at {h} steps"))
            out.append(Metric(f"generalization_{name}_slope_{h}", f"generalisation {name}: forecast slope at {h} steps", "none"))
    return out


METRICS: tuple[Metric, ...] = (
    Metric("W_r2", "W R^2 (corrected for psi* scale and gain)"),
    Metric("W_slope", "W slope (corrected; 1 is exact)", "none"),
    Metric("W_r2_pair_scaled", "W R^2 pair by pair (W_ij psi_ij at each pair's psi scale; transfer of both types)"),
    Metric("W_slope_pair_scaled", "W slope pair by pair (1 is exact)", "none"),
    Metric("W_r2_raw", "W R^2 (raw)"),
    Metric("W_slope_raw", "W slope (raw)", "none"),
    Metric("W_edge_auc", "edge detection AUC of |W| (sparse W: connected or not)"),
    Metric("W_edge_auc_partial_correlation", "edge detection AUC of partial correlation, for reference (same frames)"),
    Metric("type_accuracy", "type accuracy during training (K-means on embeddings, no labels)"),
    Metric("n_clusters", "clusters found during training", "none"),
    Metric("types_kmeans_accuracy", "type accuracy (K-means, K by silhouette, no labels)"),
    Metric("types_kmeans_k", "number of types found (K-means)", "none"),
    Metric("types_kmeans_ari", "adjusted Rand index (K-means)"),
    Metric("types_hierarchical_accuracy", "type accuracy (hierarchical)"),
    Metric("types_hierarchical_k", "number of types found (hierarchical)", "none"),
    Metric("types_hierarchical_ari", "adjusted Rand index (hierarchical)"),
    Metric("phi_error_max", "phi* error, worst type (relative RMSE)", "lower"),
    Metric("psi_error_max", "psi* error, worst type (relative RMSE, scale aligned)", "lower"),
    Metric("psi_width_error", "psi* width error, worst type: the tanh width g of its formula against the true one (relative)", "lower"),
    Metric("rollout_r2_400", "forecast R^2 at 400 steps"),
    Metric("rollout_slope_400", "forecast slope at 400 steps", "none"),
    Metric("rollout_r2_800", "forecast R^2 at 800 steps"),
    Metric("rollout_slope_800", "forecast slope at 800 steps", "none"),
    *_generalization(),
    Metric("omega_r2", "hidden stimulus R^2 (each field divided by its mean)"),
    Metric("omega_slope", "hidden stimulus slope (each field divided by its mean)", "none"),
    Metric("omega_sqrt_r2", "hidden stimulus R^2, the paper's metric (Fig. 3): sqrt(Omega), first-frame maxima matched"),
    Metric("omega_sqrt_slope", "hidden stimulus slope, the paper's metric", "none"),
    Metric("iterations", "training iterations", "none"),
    Metric("train_seconds", "training time (s)", "none", 3),
)
_BY_NAME = {m.name: m for m in METRICS}


def metric(name: str) -> Metric:
    """The registered metric ``name``; raises ``KeyError`` naming the known ones."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown metric {name!r}; known: {', '.join(_BY_NAME)}") from None


def summary_rows(values: dict[str, object]) -> list[tuple[Metric, object]]:
    """The registered metrics present in ``values``, in registry order, with their values."""
    return [(m, values[m.name]) for m in METRICS if m.name in values]
