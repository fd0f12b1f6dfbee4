"""Calcium indicators against their closed forms, their inverse, their parameters' checks and the simulator's calcium recordings."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from circuitgnn.config import ExperimentConfig, config_from_dict
from circuitgnn.config.indicator import IndicatorConfig
from circuitgnn.data.dataset import Dataset
from circuitgnn.data.indicators import Indicator
from circuitgnn.errors import ConfigError, DatasetError
from circuitgnn.simulate.run import simulate


def _step_response(indicator: Indicator, u: float, h: float, n: int) -> np.ndarray:
    """The calcium after 1..n steps of ``h`` from rest at 0, the activity held at ``u``."""
    state = indicator.initial_state(torch.zeros(1, dtype=torch.float64))
    x = torch.full((1,), u, dtype=torch.float64)
    out = []
    for _ in range(n):
        state = indicator.step(state, x, h)
        out.append(float(state[1]))
    return np.array(out)


@pytest.mark.parametrize("h", [0.01, 0.3])
def test_one_exponential_step_response_is_the_closed_form(h: float) -> None:
    ind = Indicator(IndicatorConfig(tau=0.5))
    t = h * np.arange(1, 41)
    np.testing.assert_allclose(_step_response(ind, 2.0, h, 40), 2.0 * (1 - np.exp(-t / 0.5)), rtol=1e-12)


@pytest.mark.parametrize("h", [0.01, 0.2])
def test_rise_and_decay_step_response_is_the_difference_of_exponentials(h: float) -> None:
    tr, td = 0.075, 0.4
    ind = Indicator(IndicatorConfig(tau=td, rise=tr))
    t = h * np.arange(1, 61)
    closed = 1 + (tr * np.exp(-t / tr) - td * np.exp(-t / td)) / (td - tr)
    np.testing.assert_allclose(_step_response(ind, 1.0, h, 60), closed, rtol=1e-10, atol=1e-12)


def test_the_rise_delays_the_peak_of_a_pulse() -> None:
    """A short pulse of activity: without rise the calcium peaks at the pulse's end, with rise later."""
    peaks = []
    for rise in (0.0, 0.075):
        ind = Indicator(IndicatorConfig(tau=0.4, rise=rise))
        state = ind.initial_state(torch.zeros(1, dtype=torch.float64))
        c = []
        for k in range(200):
            state = ind.step(state, torch.full((1,), 1.0 if k < 5 else 0.0, dtype=torch.float64), 0.01)
            c.append(float(state[1]))
        peaks.append(int(np.argmax(c)))
    assert peaks[0] == 4 and peaks[1] > 10


@settings(max_examples=50, deadline=None)
@given(
    c=st.floats(0.01, 50),
    k=st.floats(0.1, 10),
    n=st.floats(0.5, 4),
    scale=st.floats(0.1, 10),
    baseline=st.floats(-5, 5),
)
def test_saturation_is_the_hill_function_and_inverts(c: float, k: float, n: float, scale: float, baseline: float) -> None:
    ind = Indicator(IndicatorConfig(transform="softplus", saturation=k, hill=n, scale=scale, baseline=baseline))
    f = float(ind.fluorescence(torch.tensor(c, dtype=torch.float64)))
    assert f == pytest.approx(scale * c**n / (c**n + k**n) + baseline, rel=1e-12)
    if 1e-5 < (f - baseline) / scale < 1 - 1e-5:
        assert float(ind.calcium(np.array(f))) == pytest.approx(c, rel=1e-5)


@pytest.mark.parametrize("transform", ["identity", "softplus", "relu"])
def test_transforms_and_their_inverse(transform: str) -> None:
    ind = Indicator(IndicatorConfig(transform=transform))
    x = torch.linspace(-3, 3, 61, dtype=torch.float64)
    u = ind.transform(x)
    expected = {"identity": x, "softplus": torch.log1p(torch.exp(x)), "relu": x.clamp(min=0)}[transform]
    torch.testing.assert_close(u, expected)
    back, slope = ind.activity(u.numpy())
    visible = x.numpy() > (0 if transform == "relu" else -math.inf)
    np.testing.assert_allclose(back[visible], x.numpy()[visible], atol=1e-9)
    np.testing.assert_allclose(slope[visible], (1 / torch.sigmoid(x)).numpy()[visible] if transform == "softplus" else 1.0, rtol=1e-9)


def test_drive_inverts_the_linear_odes() -> None:
    """u = c + (rise + tau) c' + rise tau c'' for c = sin(t) through both exponentials."""
    ind = Indicator(IndicatorConfig(tau=0.4, rise=0.1))
    t = np.linspace(0, 3, 7)
    assert np.allclose(ind.drive(np.sin(t), np.cos(t), -np.sin(t)), np.sin(t) + 0.5 * np.cos(t) - 0.04 * np.sin(t))


@pytest.mark.parametrize(
    ("settings_", "field"),
    [
        ({"tau": 0}, "tau"),
        ({"tau": -1}, "tau"),
        ({"tau": float("nan")}, "tau"),
        ({"tau": 0.4, "rise": 0.4}, "rise"),
        ({"rise": -0.1}, "rise"),
        ({"saturation": 1.0}, "saturation"),
        ({"transform": "softplus", "saturation": 0}, "saturation"),
        ({"transform": "softplus", "saturation": 1, "hill": 0}, "hill"),
        ({"scale": 0}, "scale"),
        ({"baseline": float("inf")}, "baseline"),
        ({"transform": "exp"}, "transform"),
        ({"tau_decay": 1}, "tau_decay"),
    ],
)
def test_bad_indicator_parameters_are_named(settings_: dict, field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        IndicatorConfig(**settings_)
    data = ExperimentConfig().model_dump(mode="json")
    data["simulation"]["observation"] = {"every": 5, "indicator": settings_}
    with pytest.raises(ConfigError, match=f"indicator.*{field}|{field}.*indicator"):
        config_from_dict(data, source="test.yaml")


@pytest.mark.parametrize(("unrecorded", "match"), [(1.0, "fraction"), (-0.1, "fraction"), ([0, 0], "distinct"), ([99], "neuron 99")])
def test_bad_unrecorded_neurons_are_named(unrecorded: float | list[int], match: str) -> None:
    data = ExperimentConfig().model_dump(mode="json")
    data["simulation"].update(n_neurons=20, n_frames=10)
    data["simulation"]["neurons"]["n_types"] = 2
    data["simulation"]["observation"] = {"unrecorded": unrecorded}
    with pytest.raises(ConfigError, match=match):
        config_from_dict(data, source="test.yaml")


def _calcium_config(**observation: object) -> ExperimentConfig:
    data = ExperimentConfig().model_dump(mode="json")
    data["simulation"].update(n_neurons=30, n_frames=300, burn_in=50, seed=3)
    data["simulation"]["neurons"].update(n_types=2, signal="tanh", gain=10)
    data["simulation"]["observation"] = {"every": 2, **observation}
    return config_from_dict(data, source="test")


def test_simulated_calcium_follows_the_true_activity(tmp_path) -> None:
    """The fluorescence of a calcium simulation is the indicator applied to the activity at every integration step."""
    ind_cfg = {"tau": 0.3, "rise": 0.05, "transform": "softplus", "saturation": 2.0, "hill": 1.5, "scale": 3.0, "baseline": 1.0}
    exact = simulate(_calcium_config(), tmp_path / "exact", progress=False, figure=False).dataset
    seen = simulate(_calcium_config(indicator=ind_cfg), tmp_path / "seen", progress=False, figure=False).dataset
    assert seen.signal == "fluorescence" and seen.indicator is not None and seen.indicator.cfg == IndicatorConfig(**ind_cfg)
    assert seen.truth is not None and seen.truth.x is not None and exact.truth is not None and exact.truth.dxdt is not None
    np.testing.assert_array_equal(seen.truth.x, exact.truth.x)  # the same network and states; only what is recorded differs
    # the indicator replayed on the true states at every integration step (every 2nd step is a frame)
    x = np.asarray(exact.truth.x, dtype=np.float64)
    ind = Indicator(IndicatorConfig(**ind_cfg))
    # from the recorded calcium's own state at frame 100, every step's x rebuilt from the exact drift
    c_true = np.load(seen.path / "truth" / "fluorescence.npy")
    assert np.asarray(seen.x).shape == c_true.shape
    dxdt = np.asarray(exact.truth.dxdt, dtype=np.float64)
    states = ind.initial_state(torch.from_numpy(x[0]))
    f_replay = [np.asarray(ind.fluorescence(states[1]))]
    for k in range(len(x) - 1):
        mid = x[k] + 0.01 * dxdt[k]  # the skipped integration step
        states = ind.step(states, torch.from_numpy(x[k]), 0.01)
        states = ind.step(states, torch.from_numpy(mid), 0.01)
        f_replay.append(np.asarray(ind.fluorescence(states[1])))
    # the simulation's calcium started at rest before burn-in, the replay at frame 0: compare once that start is forgotten
    late = slice(200, None)
    np.testing.assert_allclose(np.array(f_replay)[late], c_true[late], rtol=1e-4, atol=1e-4)


def test_unrecorded_neurons_are_simulated_and_left_out(tmp_path) -> None:
    full = simulate(_calcium_config(), tmp_path / "full", progress=False, figure=False).dataset
    part = simulate(_calcium_config(unrecorded=[0, 5, 7]), tmp_path / "part", progress=False, figure=False).dataset
    kept = np.setdiff1d(np.arange(30), [0, 5, 7])
    np.testing.assert_array_equal(part.recorded, kept)
    assert part.n_neurons == 27 and part.truth is not None and full.truth is not None
    np.testing.assert_array_equal(part.truth.connectivity, full.truth.connectivity[np.ix_(kept, kept)])
    np.testing.assert_array_equal(part.truth.types, full.truth.types[kept])
    np.testing.assert_array_equal(part.x, np.asarray(full.x)[:, kept])  # the unrecorded neurons still drive the others
    np.testing.assert_array_equal(np.load(part.path / "truth" / "network" / "connectivity.npy"), full.truth.connectivity)
    assert part.positions.shape == (27, 2)
    fraction = simulate(_calcium_config(unrecorded=0.3, noise=0.05), tmp_path / "fraction", progress=False, figure=False).dataset
    assert fraction.n_neurons == 21 and len(fraction.recorded) == 21


def test_a_dataset_with_a_bad_indicator_is_named(tmp_path) -> None:
    ds = simulate(_calcium_config(indicator={"tau": 0.2}), tmp_path / "seen", progress=False, figure=False).dataset
    import json

    meta = json.loads((ds.path / "meta.json").read_text())
    meta["indicator"]["tau"] = -1
    (ds.path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match=r"meta.json \(indicator\):\n  tau: Input should be greater than 0"):
        _ = Dataset(ds.path).indicator
