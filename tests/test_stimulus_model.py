"""Learned external inputs: the SIREN field Omega*(x, y, t) and the additive low-rank input."""

import numpy as np
import pytest
import torch

from circuitgnn import open_dataset, simulate
from circuitgnn.analyze.confidence import least_squares_confidence, run_confidence
from circuitgnn.analyze.evaluate import evaluate_run
from circuitgnn.analyze.stimulus import stimulus_bandwidth, stimulus_score
from circuitgnn.config import config_from_dict
from circuitgnn.errors import DatasetError
from circuitgnn.model.siren import LowRankInput, Siren, StimulusField
from circuitgnn.report.html import build_report
from circuitgnn.simulate.neurons import grid_coordinates
from circuitgnn.train.run_folder import load_run, read_log
from circuitgnn.train.trainer import Trainer
from tests.conftest import tiny_config

STIM = {"mode": "multiplicative", "grid_size": 4, "source": "moving_blobs", "n_movie_frames": 20}


def field_config(**model):
    return config_from_dict(
        {
            "name": "f",
            "model": {"hidden": 8, "external_input": "field", "siren_hidden": 16, "siren_layers": 2, **model},
            "training": {
                "n_epochs": 2,
                "iterations_per_epoch": 20,
                "batch_size": 4,
                "log_every": 10,
                "checkpoint_every": 10,
                "lr_input": 1e-4,
                "clustering": {"enabled": False},
            },
        }
    )


@pytest.fixture(scope="module")
def stim_data(tmp_path_factory):
    path = tmp_path_factory.mktemp("stim") / "d"
    simulate(tiny_config(n_neurons=40, n_frames=1000, stimulus=STIM), path, progress=False, figure=False)
    return path


def test_siren_initialisation_and_field_layout():
    torch.manual_seed(0)
    s = Siren(3, 32, 2, 1, omega_0=30.0)
    first, hidden = s.net[0].linear.weight, s.net[1].linear.weight
    assert first.abs().max() <= 1 / 3 and hidden.abs().max() <= np.sqrt(6 / 32) / 30
    field = StimulusField(torch.as_tensor(grid_coordinates(3), dtype=torch.float32), 20, 16, 1, 30.0)
    out = field(torch.tensor([0.0, 0.5]))
    assert out.shape == (2, 20) and torch.all(out[:, 9:] == 1) and torch.all(out[:, :9] >= 0)
    low = LowRankInput(100, 20, 3)
    assert low(torch.tensor([4, 7])).shape == (2, 20)


def test_field_trains_resumes_exactly_and_is_scored(stim_data, tmp_path):
    full = Trainer(field_config(), stim_data, tmp_path / "full", progress=False).fit()
    Trainer(field_config(), stim_data, tmp_path / "split", progress=False).fit(max_iterations=15)
    resumed = Trainer(field_config(), stim_data, tmp_path / "split", resume=True, progress=False).fit()
    for a, b in zip(full.input_model.state_dict().values(), resumed.input_model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    faster = field_config()
    faster.training.lr_input = 3e-4  # a resumed run takes the config's input learning rate, not the checkpoint's
    faster.training.n_epochs = 3
    Trainer(faster, stim_data, tmp_path / "split", resume=True, progress=False).fit()
    assert read_log(tmp_path / "split")[-1]["lr_input"] == 3e-4
    loaded = load_run(tmp_path / "full")
    assert isinstance(loaded.input_model, StimulusField)
    score = stimulus_score(loaded.input_model, open_dataset(stim_data))
    assert 0 <= score["omega_r2"] <= 1
    m = evaluate_run(tmp_path / "full")
    assert {"omega_r2", "omega_slope", "omega_temporal_cycles_95", "rollout_r2_400"} <= set(m)
    assert (tmp_path / "full" / "stimulus.gif").stat().st_size > 1000
    page = build_report(tmp_path / "full").read_text()
    assert '<section id="stimulus">' in page and "hidden stimulus R^2" in page


def test_stimulus_score_is_one_for_a_perfect_field(stim_data):
    ds = open_dataset(stim_data)

    class Exact(StimulusField):
        def driven_values(self, t):
            frames = np.clip(np.rint(t.numpy() * ds.n_frames).astype(int), 0, ds.n_frames - 1)
            return 3.0 * torch.as_tensor(np.asarray(ds.omega[frames])[:, :16])  # any global factor

    exact = Exact(torch.as_tensor(grid_coordinates(4), dtype=torch.float32), 40, 4, 1, 30.0)
    score = stimulus_score(exact, ds)
    assert score["omega_r2"] == pytest.approx(1.0) and score["omega_slope"] == pytest.approx(1.0)
    # the paper's metric (spec 5.6): square roots, scaled by the first frame's maximum
    assert score["omega_sqrt_r2"] == pytest.approx(1.0) and score["omega_sqrt_slope"] == pytest.approx(1.0)


def test_additive_lowrank_input_trains(tmp_path):
    simulate(
        tiny_config(n_neurons=30, n_frames=300, stimulus={"mode": "additive", "source": "oscillation", "grid_size": 3}),
        tmp_path / "d",
        progress=False,
        figure=False,
    )
    cfg = field_config(external_input="additive_lowrank", input_rank=2)
    run = Trainer(cfg, tmp_path / "d", tmp_path / "r", progress=False).fit()
    assert isinstance(run.input_model, LowRankInput) and run.input_model.U.shape == (300, 2)
    assert "rollout_r2_400" not in evaluate_run(tmp_path / "r")  # 300 frames: the 400-step horizon is skipped
    # per-edge intervals of such runs take the input out of the drift: the learned one, or the recorded one
    assert 0 <= run_confidence(tmp_path / "r")["calibration"]["coverage"] <= 1
    known = config_from_dict({**field_config().model_dump(mode="json"), "model": {"hidden": 8, "external_input": "known"}})
    trained = Trainer(known, tmp_path / "d", tmp_path / "k", progress=False).fit()
    assert 0 <= run_confidence(tmp_path / "k")["calibration"]["coverage"] <= 1
    ds = open_dataset(tmp_path / "d")
    activity = ds.activity()
    with np.load(tmp_path / "k" / "confidence.npz") as z:
        written = z["mean"]
    given = least_squares_confidence(trained.model, activity, trained.xnorm, np.asarray(ds.dxdt), extra=np.asarray(activity.inputs))
    np.testing.assert_allclose(written, given.mean)
    ignored = least_squares_confidence(trained.model, activity, trained.xnorm, np.asarray(ds.dxdt), extra=np.zeros_like(activity.inputs))
    assert not np.allclose(written, ignored.mean)


def test_field_needs_a_stimulus_grid(tmp_path):
    simulate(tiny_config(n_frames=100), tmp_path / "d", progress=False, figure=False)
    with pytest.raises(DatasetError, match=r"external_input is 'field' but the data .* have no stimulus grid"):
        Trainer(field_config(), tmp_path / "d", tmp_path / "r")


def test_stimulus_bandwidth_finds_the_frequencies_of_a_known_movie():
    class Movie:  # 5 cycles over the recording in time, 3 cycles per side in space
        n_frames = 2048
        t = np.arange(2048)[:, None, None] / 2048
        y, x = np.meshgrid(np.arange(8) / 8, np.arange(8) / 8, indexing="ij")
        omega = (1 + 0.5 * np.sin(2 * np.pi * 5 * t) * np.cos(2 * np.pi * 3 * x)[None]).reshape(2048, 64)

    out = stimulus_bandwidth(Movie(), 64, fractions=(0.95,), n_samples=2048)
    assert out["omega_temporal_cycles_95"] == 5 and out["omega_spatial_cycles_95"] == 3
