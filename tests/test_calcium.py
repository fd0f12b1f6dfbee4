"""Fitting through a calcium indicator: deconvolution, the fluorescence objective, unrecorded neurons, edge detection."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from circuitgnn.analyze.evaluate import evaluate_run
from circuitgnn.analyze.metrics import edge_auc, partial_correlation
from circuitgnn.cli import main
from circuitgnn.config import config_from_dict
from circuitgnn.config.indicator import IndicatorConfig
from circuitgnn.data.dataset import Dataset
from circuitgnn.data.deconvolve import deconvolve, deconvolve_dataset
from circuitgnn.data.indicators import Indicator
from circuitgnn.errors import DatasetError
from circuitgnn.simulate.run import simulate
from circuitgnn.train.losses import fluorescence_error
from circuitgnn.train.trainer import Trainer

TRAINING = {"n_epochs": 1, "iterations_per_epoch": 40, "batch_size": 4, "log_every": 20, "checkpoint_every": 20}


def _r2(true: np.ndarray, est: np.ndarray) -> float:
    true, est = np.asarray(true, dtype=np.float64), np.asarray(est, dtype=np.float64)
    return float(1 - ((true - est) ** 2).sum() / ((true - true.mean(axis=0)) ** 2).sum())


@pytest.mark.parametrize("rise", [0.0, 0.1])
def test_deconvolution_inverts_the_indicator_of_a_known_signal(rise: float) -> None:
    """x = sin(w t) through the indicator has the closed form Im(H e^{iwt}), H = 1 / ((1 + i w rise)(1 + i w tau))."""
    tau, w, dt = 0.4, 1.3, 0.01
    t = np.arange(3000) * dt
    h = 1 / ((1 + 1j * w * rise) * (1 + 1j * w * tau))
    cfg = IndicatorConfig(tau=tau, rise=rise, scale=2.0, baseline=0.5)
    f = 2.0 * np.imag(h * np.exp(1j * w * t))[:, None] * np.array([1.0, -0.5]) + 0.5
    out = deconvolve(f, dt, cfg, smoothness=1e-9)
    inner = slice(50, -50)  # the spline's ends are free
    np.testing.assert_allclose(out.x[inner], (np.sin(w * t)[:, None] * [1.0, -0.5])[inner], atol=2e-3)
    np.testing.assert_allclose(out.dxdt[inner], (w * np.cos(w * t)[:, None] * [1.0, -0.5])[inner], atol=2e-2)


def test_deconvolution_of_softplus_and_saturation() -> None:
    """A saturating softplus indicator: the activity comes back where the calcium is not saturated."""
    cfg = IndicatorConfig(tau=0.3, transform="softplus", saturation=3.0, hill=2.0, scale=1.5)
    ind = Indicator(cfg)
    dt, n = 0.01, 4000
    x = 2.0 * np.sin(0.7 * np.arange(n) * dt)[:, None]
    state = ind.initial_state(torch.tensor(x[0], dtype=torch.float64))
    f = []
    for k in range(n):
        f.append(float(ind.fluorescence(state[1])))
        state = ind.step(state, torch.tensor(x[k], dtype=torch.float64), dt)
    out = deconvolve(np.array(f)[:, None], dt, cfg, smoothness=1e-9)
    inner = slice(100, -100)
    assert _r2(x[inner], out.x[inner]) > 0.999


def test_missing_values_stay_missing_and_segments_are_not_crossed() -> None:
    rng = np.random.default_rng(0)
    f = np.cumsum(rng.normal(size=(200, 3)), axis=0) * 0.1
    f[50, 1] = np.nan
    out = deconvolve(f, 0.05, IndicatorConfig(tau=0.3), segments=[0, 100])
    assert np.isnan(out.x[50, 1]) and np.isnan(out.dxdt[50, 1]) and np.isfinite(out.x[49, 1])
    alone = deconvolve(f[100:], 0.05, IndicatorConfig(tau=0.3), smoothness=out.smoothness)
    np.testing.assert_allclose(out.x[100:], alone.x, rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def calcium(tmp_path_factory) -> Dataset:
    """A small network seen through calcium: every 4th step, 3 % noise."""
    data = {
        "name": "calcium",
        "simulation": {
            "n_neurons": 40,
            "n_frames": 1500,
            "burn_in": 200,
            "seed": 5,
            "neurons": {"n_types": 2, "signal": "tanh", "gain": 10, "decay": [1, 2]},
            "observation": {"every": 4, "noise": 0.03, "indicator": {"tau": 0.3}},
        },
    }
    path = tmp_path_factory.mktemp("calcium") / "data"
    return simulate(config_from_dict(data), path, progress=False, figure=False).dataset


def test_a_deconvolved_dataset_holds_the_activity_the_recording_and_the_truth(calcium: Dataset, tmp_path) -> None:
    dec = deconvolve_dataset(calcium, tmp_path / "dec")
    assert dec.signal == "deconvolved" and dec.indicator is not None and dec.indicator.cfg.tau == 0.3
    assert dec.truth is not None and dec.truth.x is not None and dec.truth.dxdt is not None
    assert _r2(dec.truth.x, dec.x) > 0.99  # the raw fluorescence lags: its R^2 is lower
    assert _r2(dec.truth.x, dec.x) > _r2(dec.truth.x, calcium.x)
    assert _r2(dec.truth.dxdt, dec.dxdt) > 0.8
    np.testing.assert_array_equal(dec.arrays["fluorescence"], calcium.x)
    assert dec.meta["deconvolution"]["smoothness"] > 0 and dec.meta["holdout"] == calcium.holdout
    dec.verify_checksums()
    activity = dec.activity()
    assert activity.observation is not None and activity.dxdt is not None


def test_deconvolve_refuses_what_it_cannot_do(calcium: Dataset, tmp_path, capsys) -> None:
    plain = simulate(
        config_from_dict(
            {"name": "p", "simulation": {"n_neurons": 10, "n_frames": 50, "neurons": {"n_types": 2}, "check_activity": False}}
        ),
        tmp_path / "plain",
        progress=False,
        figure=False,
    ).dataset
    with pytest.raises(DatasetError, match="names no calcium indicator"):
        deconvolve_dataset(plain, tmp_path / "out")
    with pytest.raises(DatasetError, match="is the recording itself"):
        deconvolve_dataset(calcium, calcium.path, overwrite=True)
    assert main(["deconvolve", str(calcium.path), "--out", str(tmp_path / "d"), "--tau", "0"]) == 2
    assert "tau: Input should be greater than 0" in capsys.readouterr().err and not (tmp_path / "d").exists()
    assert main(["deconvolve", str(calcium.path), "--out", str(tmp_path / "d"), "--rise", "0.05"]) == 0
    out = capsys.readouterr().out
    assert "tau 0.3, rise 0.05" in out and "cross-validated" in out
    assert main(["deconvolve", str(tmp_path / "d"), "--out", str(tmp_path / "e")]) == 2
    assert "already deconvolved" in capsys.readouterr().err


def test_fluorescence_error_is_zero_for_a_recording_the_model_itself_generated() -> None:
    """The model's own activity through the indicator, at the integration step: the objective is exactly 0."""
    torch.manual_seed(0)
    from circuitgnn.config import ModelConfig
    from circuitgnn.model.gnn import GNN

    model = GNN(ModelConfig(hidden=8), 5)
    ind = Indicator(IndicatorConfig(tau=0.4, transform="softplus", saturation=2.0, scale=3.0))
    dt, k = 0.05, 6
    with torch.no_grad():
        x = torch.randn(3, 5)
        state = (ind.transform(x), torch.rand(3, 5))
        xs, cs, fs = [x], [state[1]], [ind.fluorescence(state[1])]
        for _ in range(k):
            for _ in range(2):
                state = ind.step(state, x, dt / 2)
                x = x + (dt / 2) * model(x)
            xs.append(x)
            cs.append(state[1])
            fs.append(ind.fluorescence(state[1]))
        calcium, fluo = torch.stack(cs), torch.stack(fs)
        assert float(fluorescence_error(model, xs[0], calcium, fluo, dt, ind, substeps=2)) < 1e-10
        assert float(fluorescence_error(model, xs[0] + 0.3, calcium, fluo, dt, ind, substeps=2)) > 1e-4


def test_training_on_the_fluorescence_learns_and_resumes(calcium: Dataset, tmp_path) -> None:
    dec = deconvolve_dataset(calcium, tmp_path / "dec")
    cfg = config_from_dict(
        {"name": "t", "model": {"hidden": 8}, "training": {**TRAINING, "objective": "fluorescence", "rollout": {"steps": 3}}}
    )
    trainer = Trainer(cfg, dec, tmp_path / "run", progress=False)
    assert trainer.derivative is None and trainer.horizon == 3
    trainer.fit(max_iterations=20)
    again = Trainer(cfg, dec, tmp_path / "run", resume=True, progress=False)
    again.fit()
    losses = [line["loss_prediction"] for line in again.history]
    assert len(losses) == 2 and all(np.isfinite(losses))
    with pytest.warns(UserWarning, match="Deconvolve it first"), pytest.raises(DatasetError, match="not a deconvolved calcium recording"):
        Trainer(cfg, calcium, progress=False)


def test_training_on_raw_fluorescence_warns(calcium: Dataset) -> None:
    cfg = config_from_dict({"name": "t", "model": {"hidden": 8}, "training": {**TRAINING, "derivative": "spline"}})
    with pytest.warns(UserWarning, match="fluorescence of a calcium indicator .*tau 0.3.*Deconvolve it first"):
        Trainer(cfg, calcium.path, progress=False)


def test_a_partly_recorded_network_is_scored_among_recorded_pairs(tmp_path) -> None:
    data = {
        "name": "part",
        "simulation": {
            "n_neurons": 30,
            "n_frames": 600,
            "seed": 2,
            "neurons": {"n_types": 2},
            "connectivity": {"filling_factor": 0.3},
            "observation": {"every": 2, "unrecorded": 0.2},
        },
        "model": {"hidden": 8},
        "training": {**TRAINING, "derivative": "central"},
    }
    cfg = config_from_dict(data)
    ds = simulate(cfg, tmp_path / "data", progress=False, figure=False).dataset
    Trainer(cfg, ds, tmp_path / "run", progress=False).fit()
    metrics = evaluate_run(tmp_path / "run", rollout_steps=20)
    assert ds.n_neurons == 24 and "W_r2" in metrics
    assert metrics["skipped"]["generalization"] == "only part of the network was recorded"
    assert metrics["rollout_method"].startswith("from recorded frame")
    assert 0 <= metrics["W_edge_auc"] <= 1 and 0 <= metrics["W_edge_auc_partial_correlation"] <= 1
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["W_edge_auc"] == metrics["W_edge_auc"]


def test_edge_auc_and_partial_correlation() -> None:
    true = np.array([[0, 1, 0], [0, 0, 2], [0, 0, 0]], dtype=float)
    assert edge_auc(true, np.array([[9, 0.5, 0.1], [0.2, 9, -3], [0, 0.1, 9]])) == 1.0  # the diagonal is left out
    assert edge_auc(true, np.array([[0, 0.1, 0.5], [0.2, 0, 0.0], [0.3, 0.4, 0]])) < 0.5
    assert np.isnan(edge_auc(np.ones((3, 3)), np.ones((3, 3))))
    # a chain 0 -> 1 -> 2: 0 and 2 correlate, but not once 1 is known
    rng = np.random.default_rng(1)
    a = rng.normal(size=20000)
    b = a + 0.5 * rng.normal(size=a.size)
    c = b + 0.5 * rng.normal(size=a.size)
    pc = partial_correlation(np.stack([a, b, c], axis=1))
    assert abs(pc[0, 2]) < 0.05 and pc[0, 1] > 0.5 and pc[1, 2] > 0.5 and np.allclose(np.diag(pc), 1)


def test_the_estimator_fits_a_fluorescence_array_through_its_indicator(calcium: Dataset) -> None:
    from circuitgnn import CircuitGNN

    f = np.asarray(calcium.x)
    est = CircuitGNN(model={"hidden": 8}, training={**TRAINING, "objective": "fluorescence", "rollout": {"steps": 2}}, progress=False)
    est.fit(f, dt=calcium.dt, indicator={"tau": 0.3}, holdout=0.1)
    assert est.connectivity_.shape == (40, 40) and np.isfinite(est.history_[-1]["loss_prediction"])
    with pytest.raises(DatasetError, match="dxdt cannot be given with an indicator"):
        est.fit(f, dt=calcium.dt, dxdt=f, indicator={"tau": 0.3})
    from circuitgnn.errors import ConfigError

    with pytest.raises(ConfigError, match="tau: Input should be greater than 0"):
        est.fit(f, dt=calcium.dt, indicator={"tau": -1})


def test_held_out_frames_never_shape_the_deconvolved_training_frames(calcium: Dataset) -> None:
    from circuitgnn.data.activity import Activity
    from circuitgnn.data.deconvolve import deconvolve_activity

    f = np.asarray(calcium.x)
    data = Activity.from_arrays(f, calcium.dt, holdout=0.2)
    changed = f.copy()
    changed[-100:] += 5.0  # inside the held-out fifth
    a = deconvolve_activity(data, IndicatorConfig(tau=0.3), smoothness=1e-4)
    b = deconvolve_activity(Activity.from_arrays(changed, calcium.dt, holdout=0.2), IndicatorConfig(tau=0.3), smoothness=1e-4)
    stop = data.train_bounds()[0][1]
    np.testing.assert_array_equal(a.x[:stop], b.x[:stop])
    assert a.observation is not None and a.observation.smoothness == 1e-4


def test_the_tau_scan_fits_each_candidate_and_scores_the_held_out_fluorescence(calcium: Dataset, tmp_path, capsys) -> None:
    from circuitgnn.analyze.indicator_scan import scan_indicator_tau
    from circuitgnn.data.activity import Activity
    from circuitgnn.errors import ConfigError

    cfg = config_from_dict({"name": "t", "model": {"hidden": 8}, "training": TRAINING})
    scores = scan_indicator_tau(calcium.activity(), [0.15, 0.3], cfg, minutes=1, horizon=5)
    assert [s.tau for s in scores] == [0.15, 0.3] and all(s.iterations == 40 and np.isfinite(s.forecast_error) for s in scores)
    with pytest.raises(DatasetError, match="set a holdout > 0"):
        scan_indicator_tau(Activity.from_arrays(np.asarray(calcium.x), calcium.dt), [0.3], cfg)
    with pytest.raises(ConfigError, match="rise"):
        scan_indicator_tau(calcium.activity(), [0.3], cfg, indicator=IndicatorConfig(tau=1, rise=0.5))
    config_file = tmp_path / "c.yaml"
    config_file.write_text("name: t\nmodel: {hidden: 8}\ntraining: {n_epochs: 1, iterations_per_epoch: 10, batch_size: 4}\n")
    out = tmp_path / "scan.json"
    assert (
        main(["scan-tau", str(calcium.path), str(config_file), "--taus", "0.2", "0.4", "--horizon", "4", "--out", str(out), "--quiet"]) == 0
    )
    assert "<- best" in capsys.readouterr().out and json.loads(out.read_text())["best_tau"] in (0.2, 0.4)
    assert main(["scan-tau", str(calcium.path), str(config_file), "--taus", "0.2", "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["deconvolve", str(calcium.path), "--out", str(tmp_path / "dec")]) == 0
    assert main(["scan-tau", str(tmp_path / "dec"), str(config_file), "--taus", "0.2"]) == 2
    assert "already deconvolved" in capsys.readouterr().err


def test_a_softplus_indicator_near_zero_calcium_gives_masked_targets_not_outliers() -> None:
    """Where the calcium is within noise of zero the activity is unobservable: held there, its dx/dt left out."""
    cfg = IndicatorConfig(tau=0.3, transform="softplus")
    ind = Indicator(cfg)
    dt, n = 0.01, 3000
    x = 3 * np.sin(0.8 * np.arange(n) * dt)[:, None] - 4
    state = ind.initial_state(torch.tensor(x[0], dtype=torch.float64))
    f = []
    for k in range(n):
        f.append(float(ind.fluorescence(state[1])))
        state = ind.step(state, torch.tensor(x[k], dtype=torch.float64), dt)
    f = np.array(f)[:, None]
    f += 0.02 * f.std() * np.random.default_rng(0).standard_normal(f.shape)
    out = deconvolve(f, dt, cfg)
    assert np.isfinite(out.x).all() and out.x.min() > -8  # no log(1e-6) = -13.8 outliers
    finite = np.isfinite(out.dxdt)
    assert 0 < (~finite).sum() < n and np.abs(out.dxdt[finite]).max() < 10  # true |dx/dt| <= 2.4


def test_the_rise_state_falls_back_to_rest_where_the_next_calcium_is_missing() -> None:
    from circuitgnn.config import ModelConfig
    from circuitgnn.model.gnn import GNN

    model = GNN(ModelConfig(hidden=8), 4)
    ind = Indicator(IndicatorConfig(tau=0.4, rise=0.1))
    calcium, fluo = torch.rand(4, 2, 4), torch.rand(4, 2, 4)
    calcium[1, 0, 2] = float("nan")
    fluo[2, 1, 1] = float("nan")
    with torch.no_grad():
        assert np.isfinite(float(fluorescence_error(model, torch.randn(2, 4), calcium, fluo, 0.05, ind, masked=True)))


def test_bad_scan_and_deconvolution_settings_are_named_before_any_fit(calcium: Dataset) -> None:
    from circuitgnn.analyze.indicator_scan import scan_indicator_tau
    from circuitgnn.errors import ConfigError

    cfg = config_from_dict({"name": "t", "model": {"hidden": 8}, "training": TRAINING})
    rec = calcium.activity()
    with pytest.raises(ConfigError, match="horizon"):
        scan_indicator_tau(rec, [0.3], cfg, horizon=0)
    with pytest.raises(ConfigError, match="minutes"):
        scan_indicator_tau(rec, [0.3], cfg, minutes=0)
    with pytest.raises(DatasetError, match="longest held-out part has 150 frames"):
        scan_indicator_tau(rec, [0.3], cfg, horizon=150)
    with pytest.raises(ConfigError, match=r"(?s)tau candidate -1.*greater than 0"):
        scan_indicator_tau(rec, [0.3, -1], cfg)  # the bad candidate is refused before the good one trains
    with pytest.raises(DatasetError, match="smoothness must be a finite number"):
        deconvolve(np.asarray(calcium.x), calcium.dt, IndicatorConfig(tau=0.3), smoothness=-1)


def test_a_given_smoothness_is_reported_as_given(calcium: Dataset, tmp_path, capsys) -> None:
    assert main(["deconvolve", str(calcium.path), "--out", str(tmp_path / "d"), "--smoothness", "0.001"]) == 0
    assert "0.001 (given)" in capsys.readouterr().out
    assert Dataset(tmp_path / "d").meta["deconvolution"]["smoothness_chosen"] == "given"


def test_unrecorded_neurons_with_a_figure_and_refused_with_a_stimulus_grid(tmp_path) -> None:
    from circuitgnn.errors import ConfigError

    data = {"name": "u", "simulation": {"n_neurons": 40, "n_frames": 50, "neurons": {"n_types": 4}, "observation": {"unrecorded": 0.5}}}
    ds = simulate(config_from_dict(data), tmp_path / "u", progress=False, figure=True).dataset
    assert ds.n_neurons == 20 and (ds.path / "simulation.png").is_file()
    data["simulation"]["stimulus"] = {"mode": "multiplicative", "grid_size": 4}
    with pytest.raises(ConfigError, match="unrecorded with a stimulus grid"):
        config_from_dict(data)


def test_a_truth_folder_that_is_incomplete_or_does_not_fit_is_named(calcium: Dataset, tmp_path) -> None:
    """Regression: a missing truth file, float type labels or a truth of the wrong size gave FileNotFoundError or
    IndexError (after training had run)."""
    import shutil

    for name, change, match in (
        ("missing", lambda t: (t / "types.npy").unlink(), "types.npy is missing"),
        ("float", lambda t: np.save(t / "types.npy", np.load(t / "types.npy").astype(float)), "integer type labels"),
        ("size", lambda t: np.save(t / "connectivity.npy", np.zeros((3, 3))), r"shape \(3, 3\), expected \(40, 40\)"),
    ):
        copy = tmp_path / name
        shutil.copytree(calcium.path, copy)
        change(copy / "truth")
        with pytest.raises(DatasetError, match=match):
            _ = Dataset(copy).truth
