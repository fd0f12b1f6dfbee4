"""Closed-form formulas for learned functions (symbolic regression, paper Tables 3 to 5).

The default backend works offline: it searches a small grammar of expressions built from the
terms that rate models are made of (constant, x, tanh((x - h)/g) with a free width and
threshold, and a polynomial / trigonometric library for anything else), fits each structure
(linear coefficients by least squares, inner widths and thresholds by nonlinear least squares
from several starts) and keeps the simplest structure whose error is within a tolerance of the
best. PySR (needs Julia) is used instead when ``backend="pysr"`` and it imports.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import sympy
import torch
from scipy.optimize import least_squares, linear_sum_assignment

from circuitgnn.analyze.functions import phi_curves, psi_curves
from circuitgnn.analyze.metrics import psi_plateau
from circuitgnn.data.dataset import GroundTruth
from circuitgnn.data.writer import write_json_atomic
from circuitgnn.errors import CircuitGNNError
from circuitgnn.model.gnn import GNN
from circuitgnn.train.clustering import kmeans_silhouette
from circuitgnn.train.run_folder import load_run, run_dataset

X = sympy.Symbol("x")


class SymbolicBackendMissing(CircuitGNNError):
    """The requested symbolic-regression backend is not installed."""


@dataclass(frozen=True)
class Formula:
    """A fitted closed form: sympy expression of ``x``, its text, and its relative RMSE on the samples."""

    expression: sympy.Expr
    error: float

    @property
    def text(self) -> str:
        return str(self.expression)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        f = sympy.lambdify(X, self.expression, modules="numpy")
        return np.broadcast_to(np.asarray(f(np.asarray(x, dtype=np.float64)), dtype=np.float64), np.shape(x)).copy()

    def to_json(self) -> dict[str, Any]:
        return {"formula": self.text, "error": self.error}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Formula:
        return cls(sympy.sympify(data["formula"], locals={"x": X}), float(data["error"]))


@dataclass(frozen=True)
class _Structure:
    """Linear combination of terms; the terms may share inner parameters (width g, threshold h)."""

    name: str
    terms: tuple[str, ...]  # among "1", "x", "tanh", "x2", "x3", "sin", "cos", "gauss"
    inner: tuple[str, ...]  # inner parameters of tanh: () -> tanh(x); ("g",) -> tanh(x/g); ("g", "h") -> tanh((x-h)/g)

    @property
    def n_params(self) -> int:
        return len(self.terms) + len(self.inner)


# Ordered from simple to complex; the search keeps the first one that fits about as well as the best.
STRUCTURES = (
    _Structure("b tanh x", ("tanh",), ()),
    _Structure("a x", ("x",), ()),
    _Structure("b tanh(x/g)", ("tanh",), ("g",)),
    _Structure("a x + b tanh x", ("x", "tanh"), ()),
    _Structure("a x + b tanh(x/g)", ("x", "tanh"), ("g",)),
    _Structure("a x + b tanh x + c", ("1", "x", "tanh"), ()),
    _Structure("b tanh((x-h)/g) + c", ("1", "tanh"), ("g", "h")),
    _Structure("a x + b tanh(x/g) + c", ("1", "x", "tanh"), ("g",)),
    _Structure("a x + b tanh((x-h)/g) + c", ("1", "x", "tanh"), ("g", "h")),
    _Structure("cubic", ("1", "x", "x2", "x3"), ()),
    _Structure("trigonometric", ("1", "x", "sin", "cos"), ()),
    _Structure("library", ("1", "x", "x2", "x3", "tanh", "sin", "cos", "gauss"), ()),
)


def _term(name: str, x: np.ndarray, g: float, h: float) -> np.ndarray:
    return {
        "1": lambda: np.ones_like(x),
        "x": lambda: x,
        "tanh": lambda: np.tanh((x - h) / g),
        "x2": lambda: x**2,
        "x3": lambda: x**3,
        "sin": lambda: np.sin(x),
        "cos": lambda: np.cos(x),
        "gauss": lambda: np.exp(-(x**2)),
    }[name]()


def _sym_term(name: str, g: float, h: float) -> sympy.Expr:
    gs, hs = sympy.Float(g, 4), sympy.Float(h, 4)
    inner = X if (g == 1.0 and h == 0.0) else ((X - hs) / gs if h != 0.0 else X / gs)
    return {
        "1": sympy.Integer(1),
        "x": X,
        "tanh": sympy.tanh(inner),
        "x2": X**2,
        "x3": X**3,
        "sin": sympy.sin(X),
        "cos": sympy.cos(X),
        "gauss": sympy.exp(-(X**2)),
    }[name]


def _linear(structure: _Structure, x: np.ndarray, y: np.ndarray, g: float, h: float) -> tuple[np.ndarray, np.ndarray]:
    basis = np.stack([_term(t, x, g, h) for t in structure.terms], axis=1)
    coef, *_ = np.linalg.lstsq(basis, y, rcond=None)
    return coef, basis @ coef


def _fit_structure(structure: _Structure, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray, float, float]:
    """Best (rmse, linear coefficients, g, h) of one structure."""
    if not structure.inner:
        coef, pred = _linear(structure, x, y, 1.0, 0.0)
        return float(np.sqrt(np.mean((pred - y) ** 2))), coef, 1.0, 0.0

    def residual(p: np.ndarray) -> np.ndarray:
        g = np.exp(p[0])
        h = p[1] if len(p) > 1 else 0.0
        return _linear(structure, x, y, g, h)[1] - y

    best: tuple[float, np.ndarray, float, float] | None = None
    for g0 in (0.2, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0):
        p0 = [np.log(g0)] + ([0.0] if "h" in structure.inner else [])
        sol = least_squares(residual, p0, method="lm" if len(x) > len(p0) else "trf")
        g = float(np.exp(sol.x[0]))
        h = float(sol.x[1]) if len(sol.x) > 1 else 0.0
        coef, pred = _linear(structure, x, y, g, h)
        rmse = float(np.sqrt(np.mean((pred - y) ** 2)))
        if best is None or rmse < best[0]:
            best = (rmse, coef, g, h)
    assert best is not None
    return best


def _expression(structure: _Structure, coef: np.ndarray, g: float, h: float, scale: float) -> sympy.Expr:
    expr = sympy.Integer(0)
    for t, c in zip(structure.terms, coef, strict=True):
        if abs(c) * scale > 0:
            expr += sympy.Float(c, 4) * _sym_term(t, g, h)
    return expr


def fit_formula(x: np.ndarray, y: np.ndarray, tolerance: float = 0.01, backend: str = "grammar") -> Formula:
    """The simplest closed form of y(x) (see the module docstring).

    ``tolerance``: a structure is accepted when its RMSE exceeds the best structure's by at most
    ``tolerance`` times y's std: gains below that level (noise, or the small wiggles of a learned
    ReLU network) do not buy complexity.
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape or x.size < 8:
        raise ValueError(f"fit_formula needs matching x and y with at least 8 samples, got {x.shape} and {y.shape}")
    if backend == "pysr":
        return _fit_pysr(x, y)
    if backend != "grammar":
        raise ValueError(f"unknown symbolic backend {backend!r}: use 'grammar' or 'pysr'")
    scale = float(y.std()) or 1.0
    fits = [(s, *_fit_structure(s, x, y)) for s in STRUCTURES]
    best_rmse = min(f[1] for f in fits)
    threshold = best_rmse + tolerance * scale
    structure, rmse, coef, g, h = next(f for f in fits if f[1] <= threshold)
    # drop terms whose contribution is below the noise level, then refit the remaining ones
    keep = [i for i, t in enumerate(structure.terms) if abs(coef[i]) * (1.0 if t == "1" else _term(t, x, g, h).std()) > 1e-3 * scale]
    if len(keep) < len(structure.terms) and keep:
        reduced = _Structure(structure.name, tuple(structure.terms[i] for i in keep), structure.inner)
        coef, pred = _linear(reduced, x, y, g, h)
        structure, rmse = reduced, float(np.sqrt(np.mean((pred - y) ** 2)))
    return Formula(_expression(structure, coef, g, h, scale), rmse / scale)


def _fit_pysr(x: np.ndarray, y: np.ndarray) -> Formula:
    try:
        from pysr import PySRRegressor
    except ImportError as err:
        raise SymbolicBackendMissing(
            "symbolic backend 'pysr' needs the pysr package and Julia, which are not installed here: "
            "use backend 'grammar' (the default) or `pip install pysr`"
        ) from err
    model = PySRRegressor(
        niterations=30,
        binary_operators=["+", "*"],
        unary_operators=["tanh", "sin", "cos", "exp"],
        random_state=0,
        deterministic=True,
        parallelism="serial",
        verbosity=0,
    )
    model.fit(x[:, None], y)
    expr = sympy.sympify(str(model.sympy()).replace("x0", "x"), locals={"x": X})
    pred = np.asarray(sympy.lambdify(X, expr, "numpy")(x), dtype=np.float64)
    return Formula(expr, float(np.sqrt(np.mean((pred - y) ** 2)) / (y.std() or 1.0)))


def formula_scope(entry: dict[str, Any]) -> str:
    """Which neurons a formula of :func:`symbolic_formulas` is for: "cluster 0", "receiver cluster 1, sender cluster 0" or "all neurons"."""
    parts = [f"{k.replace('_', ' ')} {v}" for k, v in entry.items() if k.endswith("cluster") and v is not None]
    return ", ".join(parts) or "all neurons"


def save_formulas(path: str | Path, formulas: dict[str, Any]) -> None:
    """Write ``{name: Formula | dict}`` as JSON (Formula values become {"formula", "error"})."""

    def encode(v: Any) -> Any:
        if isinstance(v, Formula):
            return v.to_json()
        if isinstance(v, dict):
            return {k: encode(w) for k, w in v.items()}
        if isinstance(v, list):
            return [encode(w) for w in v]
        return v

    write_json_atomic(Path(path), encode(formulas))


def load_formula(data: dict[str, Any] | str) -> Formula:
    """A callable from an exported formula (its JSON entry, or the formula text)."""
    entry = json.loads(data) if isinstance(data, str) and data.strip().startswith("{") else data
    if isinstance(entry, str):
        entry = {"formula": entry, "error": float("nan")}
    return Formula.from_json(entry)


def _true_formula(kind: str, signal: str, receiver: dict[str, float], sender: dict[str, float]) -> str:
    """Text of a true function from the dataset's parameter table."""
    if kind == "phi":
        expr = (
            -sympy.Float(receiver["decay"], 4) * X
            + sympy.Float(receiver["bias"], 4)
            + sympy.Float(receiver["self_coupling"], 4) * sympy.tanh(X)
        )
    elif signal == "tanh":
        expr = sympy.tanh(X)
    elif signal == "sender":
        expr = sympy.tanh((X - sympy.Float(sender["threshold"], 4)) / sympy.Float(sender["width"], 4))
    else:
        expr = (
            sympy.tanh((X - sympy.Float(sender["threshold"], 4)) / sympy.Float(receiver["width"], 4)) - sympy.Float(sender["leak"], 4) * X
        )
    return str(sympy.nsimplify(expr, tolerance=1e-9, rational=False))


def tanh_width(formula: str | sympy.Expr) -> float | None:
    """The width g of the one tanh((x - h) / g) in a formula, 1 / |d(argument)/dx|; None when the formula holds no tanh
    or several, or its argument is not linear in x."""
    expr = sympy.sympify(formula, locals={"x": X}) if isinstance(formula, str) else formula
    found = list(expr.atoms(sympy.tanh))
    if len(found) != 1:
        return None
    argument = sympy.expand(found[0].args[0])
    slope = argument.coeff(X, 1)
    if sympy.expand(argument - slope * X).has(X) or not slope.is_number or slope == 0:
        return None
    return float(1.0 / abs(slope))


def width_error(formulas: dict[str, Any]) -> float | None:
    """The largest relative error of the learned psi widths (:func:`tanh_width`) against the true ones, over the psi
    entries of :func:`symbolic_formulas` that were matched to a true formula (inf where a learned formula has no width
    to read); None without any."""
    errors = []
    for entry in formulas["psi"]:
        true = tanh_width(entry["true"]) if "true" in entry else None
        if true is None:
            continue
        learned = tanh_width(entry["formula"])
        errors.append(float("inf") if learned is None else abs(learned / true - 1.0))
    return max(errors) if errors else None


def symbolic_formulas(
    model: GNN, xnorm: float, max_types: int, truth: GroundTruth | None = None, backend: str = "grammar", n_points: int = 400
) -> dict[str, Any]:
    """Formulas for the learned phi* of each neuron cluster and for psi* (per cluster or cluster pair).

    Clusters come from the embeddings without labels (K-means, at most ``max_types``). Each
    cluster's curve is the median over its neurons on [-xnorm, xnorm]; psi* curves are divided by
    their plateau (median on [0.8, 1] xnorm; for the pair form by their largest magnitude), since W
    absorbs psi*'s scale. With ``truth``, clusters are matched to true types (Hungarian) and the true
    formula is shown next to each; truth is read only for that.
    """
    n = model.n
    if isinstance(model.a, torch.nn.Parameter):
        labels = kmeans_silhouette(model.a.detach().cpu().numpy(), max_types, seed=0).labels
    else:
        labels = np.zeros(n, dtype=np.int64)
    k = int(labels.max()) + 1
    grid = np.linspace(-xnorm, xnorm, n_points)
    match: dict[int, int] = {}
    if truth is not None:
        counts = np.zeros((k, int(truth.types.max()) + 1))
        np.add.at(counts, (labels, truth.types), 1)
        match = dict(zip(*(r.tolist() for r in linear_sum_assignment(-counts)), strict=True))
    table = truth.functions["types"] if truth is not None else None
    signal = truth.functions["signal"] if truth is not None else None

    def entry(kind: str, curve: np.ndarray, receiver: int | None, sender: int | None) -> dict[str, Any]:
        f = fit_formula(grid, curve, backend=backend)
        out: dict[str, Any] = {"formula": f.text, "error": f.error}
        if table is not None and signal is not None:
            r = match.get(receiver) if receiver is not None else None
            s = match.get(sender) if sender is not None else None
            if kind == "phi" and r is not None:
                out["true_type"], out["true"] = r, _true_formula("phi", signal, table[r], table[r])
            elif kind == "psi" and (s is not None or signal == "tanh") and (receiver is None or r is not None):
                t_s = table[s] if s is not None else table[0]
                t_r = table[r] if r is not None else t_s
                out["true"] = _true_formula("psi", signal, t_r, t_s)
                out["true_types"] = [r, s]
        return out

    phi = phi_curves(model, grid)
    result: dict[str, Any] = {"n_clusters": k, "backend": backend, "range": [float(grid[0]), float(grid[-1])], "phi": [], "psi": []}
    for c in range(k):
        members = labels == c
        result["phi"].append({"cluster": c, "n_neurons": int(members.sum()), **entry("phi", np.median(phi[:, members], axis=1), c, None)})
    if model.psi_input == "x_j,a_i,a_j":
        for r in range(k):
            rep_r = int(np.flatnonzero(labels == r)[0])
            curves = psi_curves(model, grid, receivers=np.full(n, rep_r))
            for s in range(k):
                curve = np.median(curves[:, labels == s], axis=1)
                result["psi"].append(
                    {"receiver_cluster": r, "sender_cluster": s, **entry("psi", curve / (np.abs(curve).max() or 1.0), r, s)}
                )
    else:
        curves = psi_curves(model, grid) / psi_plateau(model, xnorm)[None, :]
        groups: list[int | None] = list(range(k)) if model.psi_input == "x_j,a_j" else [None]
        for c in groups:
            members = labels == c if c is not None else np.ones(n, dtype=bool)
            result["psi"].append({"sender_cluster": c, **entry("psi", np.median(curves[:, members], axis=1), None, c)})
    return result


def symbolic_run(run_dir: str | Path, backend: str = "grammar", n_points: int = 400) -> dict[str, Any]:
    """:func:`symbolic_formulas` for a run folder (true formulas shown when its dataset has ground truth);
    writes ``RUN/symbolic.json``."""
    run = load_run(run_dir)
    assert run.path is not None
    truth = run_dataset(run).truth
    result = symbolic_formulas(run.model, run.xnorm, run.config.training.clustering.max_types, truth, backend, n_points)
    write_json_atomic(run.path / "symbolic.json", result)
    return result
