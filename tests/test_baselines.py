"""Baselines: each on a small problem whose answer is known, and the comparison command end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from circuitgnn.analyze.baselines import (
    CorrelationConnectivity,
    GRUForecaster,
    KnownFunctionRegression,
    LearnedFunctionRegression,
    PartialCorrelationConnectivity,
    RidgeVAR,
    TransformerForecaster,
)
from circuitgnn.analyze.baselines.compare import (
    BASELINES_BEGIN,
    BASELINES_END,
    MethodResult,
    check_methods,
    compare_methods,
    format_table,
)
from circuitgnn.analyze.metrics import edge_auc, linear_fit
from circuitgnn.cli import main
from circuitgnn.data.dataset import Dataset
from circuitgnn.data.writer import replace_generated_block
from circuitgnn.errors import CircuitGNNError, DatasetError
from circuitgnn.simulate.run import simulate
from tests.conftest import simulated_arrays, tiny_config


def _gains(ds: Dataset) -> np.ndarray:
    assert ds.truth is not None
    return ds.truth.gains


def test_known_functions_recover_w_exactly(network):
    truth = network.truth
    reg = KnownFunctionRegression(np.tanh).fit(np.asarray(network.x), network.dt, np.asarray(network.dxdt))
    fit = linear_fit(truth.connectivity, reg.connectivity_ / _gains(network)[:, None], off_diagonal=True)
    assert fit.r2 > 0.99999 and abs(fit.slope - 1) < 1e-4
    # the diagonal holds each neuron's self_coupling * tanh(x_i) term; the basis (x, 1) the rest of phi
    decay = np.array([t["decay"] for t in truth.functions["types"]])[truth.types]
    np.testing.assert_allclose(reg.coefficients_[:, 0], -decay, atol=1e-4)
    assert reg.score(np.asarray(network.x), np.asarray(network.dxdt)) > 0.99999


def test_learned_functions_recover_w_without_being_told_them(network):
    x, dxdt = np.asarray(network.x), np.asarray(network.dxdt)
    reg = LearnedFunctionRegression(n_psi=24, n_phi=12).fit(x, network.dt, dxdt)
    fit = linear_fit(network.truth.connectivity, reg.connectivity_ / _gains(network)[:, None], off_diagonal=True)
    # psi's plateau is scaled to 1, as tanh's (the told-functions fit: 1.0000); regression: 0.87 before each phi held x
    assert fit.r2 > 0.99 and 0.8 < fit.slope < 1.3
    assert reg.history_[-1] < 0.5 * reg.history_[0]  # the Gauss-Newton steps on psi lower the residual
    assert reg.score(x, dxdt) > 0.99
    assert reg.simulate(x[0], 3).shape == (4, x.shape[1])
    stopped = LearnedFunctionRegression(n_psi=8, n_phi=6, max_minutes=1e-9).fit(x, network.dt, dxdt)
    assert len(stopped.history_) == 1  # the time budget is spent before the first Gauss-Newton step


def test_shared_gram_solver_matches_per_receiver_least_squares():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 12))
    y = rng.normal(size=(400, 12))
    reg = KnownFunctionRegression(np.sin, (lambda v: v, np.cos, lambda v: np.ones_like(v)), ridge=0).fit(x, 1.0, y)
    for i in (0, 5, 11):
        design = np.column_stack([np.sin(x), x[:, i], np.cos(x[:, i]), np.ones(len(x))])
        expected = np.linalg.lstsq(design, y[:, i], rcond=None)[0]
        np.testing.assert_allclose(reg.connectivity_[i], expected[:12], rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(reg.coefficients_[i], expected[12:], rtol=1e-6, atol=1e-8)


def test_ridge_var_recovers_a_linear_system_exactly():
    rng = np.random.default_rng(1)
    n, dt = 20, 0.01
    a = rng.normal(scale=0.3, size=(n, n)) - 1.5 * np.eye(n)
    b = rng.normal(size=n)
    x = np.zeros((3000, n))
    for t in range(1, len(x)):
        x[t] = x[t - 1] + dt * (a @ x[t - 1] + b) + 0.1 * rng.normal(size=n)
    dxdt = x @ a.T + b
    var = RidgeVAR().fit(x, dt, dxdt)
    np.testing.assert_allclose(var.connectivity_, a, atol=1e-4)
    np.testing.assert_allclose(var.coefficients_[:, 0], b, atol=1e-4)
    assert var.alpha_ <= 1e-5  # exact data: the validation frames want (almost) no ridge
    sim = var.simulate(x[0], 5)
    step = x[0].astype(np.float32) + dt * (a @ x[0] + b)
    np.testing.assert_allclose(sim[1], step, rtol=1e-4, atol=1e-4)


def test_ridge_var_without_drift_uses_forward_differences():
    """x[t+1] = x[t] + dt (A x[t]) + noise: forward differences are A x plus noise independent of x, so A is found."""
    rng = np.random.default_rng(2)
    a = -np.eye(5) + 0.2 * rng.normal(size=(5, 5))
    x = np.zeros((20000, 5))
    for t in range(1, len(x)):
        x[t] = x[t - 1] + 0.1 * (a @ x[t - 1]) + 0.1 * rng.normal(size=5)
    var = RidgeVAR().fit(x, 0.1)
    assert linear_fit(a, var.connectivity_).r2 > 0.95


def test_correlation_and_partial_correlation():
    rng = np.random.default_rng(3)
    n = 30
    precision = np.eye(n)
    edges = [(i, (i + 1) % n) for i in range(0, n, 2)]
    for i, j in edges:
        precision[i, j] = precision[j, i] = 0.4
    x = rng.multivariate_normal(np.zeros(n), np.linalg.inv(precision), size=5000)
    corr = CorrelationConnectivity().fit(x).connectivity_
    expected = np.corrcoef(x, rowvar=False)
    np.fill_diagonal(expected, 0)
    np.testing.assert_allclose(corr, expected, atol=1e-6)
    truth = np.zeros((n, n))
    for i, j in edges:
        truth[i, j] = truth[j, i] = 1
    pc = PartialCorrelationConnectivity().fit(x).connectivity_
    assert np.allclose(np.diag(pc), 0) and np.allclose(pc, pc.T)
    assert edge_auc(truth, pc) > 0.99


def test_bad_inputs_are_named():
    with pytest.raises(CircuitGNNError, match="dt must be a positive number"):
        RidgeVAR().fit(np.ones((10, 3)), -1)
    with pytest.raises(CircuitGNNError, match="not fitted"):
        RidgeVAR().predict(np.ones((2, 3)))
    with pytest.raises(CircuitGNNError, match="alphas"):
        RidgeVAR(alphas=(-1,))
    with pytest.raises(CircuitGNNError, match="exactly one of hidden"):
        GRUForecaster()
    with pytest.raises(CircuitGNNError, match="below the smallest"):
        GRUForecaster(n_parameters=10).fit(np.random.default_rng(0).normal(size=(100, 40)), 0.1)
    with pytest.raises(CircuitGNNError, match="consecutive complete frames"):
        GRUForecaster(hidden=4, context=50).fit(np.ones((30, 3)), 0.1)


def _oscillation(n_frames: int = 3000) -> np.ndarray:
    t = np.arange(n_frames) * 0.05
    rng = np.random.default_rng(4)
    mix = rng.normal(size=(2, 6))
    return (np.stack([np.sin(t), np.cos(t)], axis=1) @ mix + 0.01 * rng.normal(size=(n_frames, 6))).astype(np.float32)


@pytest.mark.parametrize("cls", [GRUForecaster, TransformerForecaster])
def test_forecasters_learn_an_oscillation(cls):
    torch.set_num_threads(1)
    x = _oscillation()
    net = cls(hidden=32, context=16, max_iterations=300, minutes=5, progress=False, lr=3e-3).fit(x[:2500], 0.05)
    assert net.iterations_ == 300
    forecast = net.simulate(x[2484:2501], 40)
    true = x[2500:2541]
    persistence = np.mean((true[-1] - true[0]) ** 2)
    assert np.mean((forecast[-1] - true[-1]) ** 2) < 0.2 * persistence
    drift = net.predict(x[2500:2600])
    assert drift.shape == (100, 6) and np.isnan(drift[0]).all() and np.isfinite(drift[1:]).all()


@pytest.mark.parametrize("cls", [GRUForecaster, TransformerForecaster])
def test_forecaster_size_follows_the_budget_and_the_seed_fixes_the_fit(cls):
    x = _oscillation(400)
    a = cls(n_parameters=5000, context=8, max_iterations=5, progress=False, seed=3).fit(x, 0.05)
    assert 0.7 * 5000 < a.n_parameters_ <= 5000
    b = cls(n_parameters=5000, context=8, max_iterations=5, progress=False, seed=3).fit(x, 0.05)
    for p, q in zip(a.net_.parameters(), b.net_.parameters(), strict=True):
        assert torch.equal(p, q)


def test_compare_methods_scores_resumes_and_refuses_other_settings(network, tmp_path):
    out = tmp_path / "cmp"
    methods = ["gnn", "known_functions", "learned_functions", "ridge_var", "correlation", "gru"]
    results = compare_methods(network, out, minutes=0.05, methods=methods, steps=400, progress=False)
    by = {r.method: r for r in results}
    assert [r.method for r in results] == methods
    assert by["known_functions"].metrics["W_r2"] > 0.9999
    assert by["known_functions"].metrics["forecast_r2_400"] > 0.99
    # regression: the default 24 phi splines reached only 0.6 here before each phi held x (its decay term)
    assert by["learned_functions"].metrics["W_r2"] > 0.99 and by["ridge_var"].metrics["W_r2"] < 0.6
    assert "W_edge_auc" in by["correlation"].metrics and "W_slope" not in by["correlation"].metrics
    assert "forecast_r2_400" in by["gru"].metrics and "W_r2" not in by["gru"].metrics
    assert {"W_r2", "type_accuracy", "forecast_r2_400"} <= set(by["gnn"].metrics)
    assert by["gnn"].n_parameters and by["gru"].n_parameters <= by["gnn"].n_parameters
    assert all(r.peak_memory_mb is not None for r in results)
    saved = {f.name: f.stat().st_mtime_ns for f in (out / "methods").iterdir()}
    again = compare_methods(network, out, minutes=0.05, methods=methods, steps=400, progress=False)
    assert [r.metrics for r in again] == [r.metrics for r in results]
    assert {f.name: f.stat().st_mtime_ns for f in (out / "methods").iterdir()} == saved  # nothing was fitted again
    with pytest.raises(FileExistsError, match="another dataset or settings"):
        compare_methods(network, out, minutes=0.1, methods=["correlation"], steps=400, progress=False)
    redone = compare_methods(network, out, minutes=0.1, methods=["correlation"], steps=400, progress=False, overwrite=True)
    assert [r.method for r in redone] == ["correlation"] and not (out / "gnn").exists()


def test_edge_detection_is_scored_on_sparse_w_only(tmp_path):
    simulated_arrays(tmp_path / "dense", n_neurons=30, n_frames=300)  # the default W: dense
    results = compare_methods(tmp_path / "dense", tmp_path / "out", methods=["correlation"], steps=400, progress=False)
    assert "W_r2" in results[0].metrics and "W_edge_auc" not in results[0].metrics


def test_compare_refuses_bad_requests(network, tmp_path):
    with pytest.raises(CircuitGNNError, match="unknown method.*'lstm'.*known: gnn"):
        check_methods(["lstm"])
    with pytest.raises(CircuitGNNError, match="steps"):
        compare_methods(network, tmp_path / "a", steps=10)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "mine.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="not a comparison's folder"):
        compare_methods(network, tmp_path / "b", methods=["correlation"])
    assert (tmp_path / "b" / "mine.txt").read_text() == "keep"


def test_fluorescence_is_refused(tmp_path):

    cfg = tiny_config(observation={"every": 2, "indicator": {"tau": 0.5}})
    simulate(cfg, tmp_path / "f", progress=False, figure=False)
    with pytest.raises(DatasetError, match="deconvolve it first"):
        compare_methods(tmp_path / "f", tmp_path / "out", methods=["correlation"])


def test_table_says_where_the_gnn_loses():
    results = [
        MethodResult("gnn", "GNN", {"W_r2": 0.9, "forecast_r2_400": 0.5}, 10.0, 100.0, 1000),
        MethodResult("known_functions", "oracle", {"W_r2": 1.0, "forecast_r2_400": 1.0}, 1.0, 10.0, 100),
        MethodResult("gru", "GRU", {"forecast_r2_400": 0.7}, 10.0, 50.0, 1000),
    ]
    text = format_table("net", results)
    assert "| GNN | 0.900 | 0.500 | 1,000 | 10.0 | 100 |" in text
    assert "The GNN loses on: forecast R^2 @400 (GRU: 0.700 against 0.500); peak memory (GRU: 50 MB against 100 MB)." in text
    assert "oracle: 1.000" not in text  # the upper bound is not a rival
    tie = [results[0], MethodResult("gru", "GRU", {"forecast_r2_400": 0.505}, 10.0, 200.0, 1000)]
    assert "The GNN loses on no metric." in format_table("net", tie)  # within 0.01: a tie


def test_cli_writes_the_table_into_a_readme(network, tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n{BASELINES_BEGIN}\nold\n{BASELINES_END}\ntail\n")
    code = main([
        "baselines", str(network.path), "--out", str(tmp_path / "o"), "--methods", "correlation,ridge_var", "--steps", "400",
        "--readme", str(readme), "--quiet",
    ])  # fmt: skip
    assert code == 0
    text = readme.read_text()
    assert "\nold\n" not in text and "ridge linear model (VAR)" in text and text.endswith(f"{BASELINES_END}\ntail\n")
    assert json.loads((tmp_path / "o" / "net" / "baselines.json").read_text())["results"][0]["method"] == "ridge_var"
    assert main(["baselines", str(network.path), "--out", str(tmp_path / "o"), "--methods", "lstm"]) == 2
    assert "unknown method" in capsys.readouterr().err


def test_generated_block_needs_its_markers(tmp_path):
    f = tmp_path / "R.md"
    f.write_text("no markers")
    with pytest.raises(DatasetError, match="no block generated by `cmd`"):
        replace_generated_block(f, "<!-- a -->", "<!-- b -->", "x", "cmd")
    assert f.read_text() == "no markers"
