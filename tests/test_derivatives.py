"""Derivative estimators: accuracy on known functions, segments, missing values, the noise diagnostic."""

from __future__ import annotations

import numpy as np
import pytest

from circuitgnn.data.derivatives import estimate_derivative, roughness, segment_bounds, spline_smoothness
from circuitgnn.errors import DatasetError

DT = 0.05
T = np.arange(400) * DT
X = np.stack([np.sin(T), np.cos(2 * T), np.sin(0.5 * T) + 0.3 * T], axis=1).astype(np.float32)
DX = np.stack([np.cos(T), -2 * np.sin(2 * T), 0.5 * np.cos(0.5 * T) + 0.3], axis=1)


def _rel_error(est: np.ndarray, true: np.ndarray = DX, edge: int = 10) -> float:
    e = (est - true)[edge:-edge]
    return float(np.sqrt(np.mean(e**2)) / np.sqrt(np.mean(true**2)))


@pytest.mark.parametrize("method, tol", [("forward", 0.05), ("central", 0.002), ("savgol", 0.002), ("spline", 0.002)])
def test_each_method_recovers_the_derivative_of_clean_smooth_signals(method, tol):
    assert _rel_error(estimate_derivative(X, DT, method)) < tol


def test_forward_differences_are_exact_for_euler_steps():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(50, 4)).astype(np.float32)
    x = np.concatenate([np.zeros((1, 4), np.float32), np.cumsum(DT * f, axis=0, dtype=np.float32)])
    np.testing.assert_allclose(estimate_derivative(x, DT, "forward")[:-1], f, rtol=1e-4, atol=1e-4)


def test_smoothing_methods_beat_finite_differences_on_noisy_signals():
    rng = np.random.default_rng(1)
    noisy = X + 0.05 * rng.normal(size=X.shape).astype(np.float32)
    errors = {m: _rel_error(estimate_derivative(noisy, DT, m)) for m in ("forward", "central", "savgol", "spline")}
    assert errors["spline"] < errors["central"] / 4 and errors["savgol"] < errors["central"] / 2, errors
    assert errors["spline"] < 0.15, errors


def test_spline_smoothness_grows_with_the_noise_and_uses_no_truth():
    rng = np.random.default_rng(2)
    lams = [spline_smoothness(X + s * rng.normal(size=X.shape), DT) for s in (0.0, 0.02, 0.2)]
    assert lams[0] < lams[1] < lams[2]


def test_no_derivative_crosses_a_segment_boundary():
    x = np.concatenate([X[:200], X[:200] + 100.0])  # a jump where the second session starts
    for method in ("forward", "central", "savgol", "spline"):
        d = estimate_derivative(x, DT, method, segments=(0, 200))
        assert np.abs(d).max() < 5, method  # a derivative across the jump would be about 100 / DT
        np.testing.assert_allclose(d[:200], estimate_derivative(x[:200], DT, method), rtol=1e-5, atol=1e-5)


def test_missing_values_give_nan_only_where_they_are_used():
    x = X.copy()
    x[100, 1] = np.nan
    fwd = estimate_derivative(x, DT, "forward")
    assert np.isnan(fwd[99, 1]) and np.isnan(fwd[100, 1]) and not np.isnan(fwd[:, [0, 2]]).any()
    assert np.isnan(fwd[:, 1]).sum() == 2
    for method in ("savgol", "spline"):
        d = estimate_derivative(x, DT, method)
        assert np.isnan(d[100, 1]) and np.isnan(d).sum() == 1, method
        assert _rel_error(d[:95], DX[:95]) < 0.01


def test_bad_segments_and_methods_are_named():
    with pytest.raises(DatasetError, match="strictly increasing"):
        segment_bounds(10, (0, 5, 5))
    with pytest.raises(DatasetError, match="the first 0"):
        segment_bounds(10, (2,))
    with pytest.raises(DatasetError, match="derivative method must be one of"):
        estimate_derivative(X, DT, "magic")  # type: ignore[arg-type]


def test_roughness_tells_noise_from_signal():
    rng = np.random.default_rng(3)
    assert roughness(X) < 0.2
    assert roughness(rng.normal(size=(2000, 5))) == pytest.approx(np.sqrt(3), rel=0.05)
