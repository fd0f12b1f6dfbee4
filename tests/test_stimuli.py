import numpy as np
import pytest
import torch
from PIL import Image

from circuitgnn import simulate
from circuitgnn.config import StimulusConfig
from circuitgnn.errors import ConfigError
from circuitgnn.simulate.stimuli import Stimulus, make_movie
from tests.conftest import tiny_config


@pytest.mark.parametrize("source", ["image_pan", "drifting_grating", "moving_blobs"])
def test_generated_movies_span_the_paper_range_and_move(source):
    movie = make_movie(StimulusConfig(mode="multiplicative", source=source, grid_size=16, n_movie_frames=64), np.random.default_rng(0))
    assert movie.shape == (64, 16, 16) and movie.dtype == np.float32
    assert movie.min() == pytest.approx(0.5) and movie.max() == pytest.approx(1.5)
    assert np.abs(np.diff(movie, axis=0)).mean() > 1e-3  # frames change
    assert movie[0].std() > 0.02  # each frame has spatial structure


def test_omega_indexing_follows_the_grid_and_the_frame_schedule(tmp_path):
    g, n_movie, t = 4, 10, 300
    cfg = tiny_config(n_frames=t, stimulus={"mode": "multiplicative", "grid_size": g, "source": "moving_blobs", "n_movie_frames": n_movie})
    ds = simulate(cfg, tmp_path / "d", progress=False, figure=False).dataset
    movie, omega = ds.truth.movie, np.asarray(ds.omega)
    for k in (0, 29, 30, 150, 299):
        frame = int(np.floor(k / t * n_movie))
        for r, c in ((0, 0), (1, 2), (3, 3)):
            assert omega[k, r * g + c] == movie[frame, r, c]
    assert np.all(omega[:, g * g :] == 1.0)
    assert len(np.unique(omega[:, 0])) == n_movie


def test_stimulus_is_off_during_burn_in():
    cfg = StimulusConfig(mode="multiplicative", source="drifting_grating", grid_size=3, burn_in_value=0.0)
    stim = Stimulus(cfg, 20, 100, 0.01, np.random.default_rng(0), torch.device("cpu"))
    omega, extra = stim.inputs(-5)
    assert extra is None and torch.all(omega == 0)
    omega, _ = stim.inputs(0)
    assert torch.all(omega[9:] == 1) and torch.all(omega[:9] >= 0.5)
    add = Stimulus(cfg.model_copy(update={"mode": "additive"}), 20, 100, 0.01, np.random.default_rng(0), torch.device("cpu"))
    assert add.inputs(-5) == (None, None)
    omega, extra = add.inputs(3)
    assert omega is None and torch.all(extra[9:] == 0) and torch.all(extra[:9] >= 0.5)


def test_oscillation_is_an_additive_cosine(tmp_path):
    cfg = tiny_config(
        n_frames=200, stimulus={"mode": "additive", "source": "oscillation", "grid_size": 3, "frequency": 2.0, "amplitude": 1.5}
    )
    ds = simulate(cfg, tmp_path / "d", progress=False, figure=False).dataset
    e = np.asarray(ds.omega)
    amp = e[0, :9]  # cos(0) = 1
    assert np.all(np.abs(amp) <= 1.5) and np.all(e[:, 9:] == 0)
    t = np.arange(200) * 0.01
    np.testing.assert_allclose(e[:, :9], amp[None, :] * np.cos(2 * np.pi * 2.0 * t)[:, None], atol=1e-5)


def test_user_movie_npy_and_tif(tmp_path):
    rs = np.random.default_rng(0)
    movie = rs.uniform(0, 10, size=(7, 5, 5)).astype(np.float32)
    np.save(tmp_path / "m.npy", movie)
    frames = [Image.fromarray(f, mode="F") for f in movie]
    frames[0].save(tmp_path / "m.tif", save_all=True, append_images=frames[1:])
    for name in ("m.npy", "m.tif"):
        raw = make_movie(StimulusConfig(mode="multiplicative", source="file", path=tmp_path / name, grid_size=5, normalize=False), rs)
        np.testing.assert_allclose(raw, movie, rtol=1e-6)
        scaled = make_movie(StimulusConfig(mode="multiplicative", source="file", path=tmp_path / name, grid_size=5), rs)
        assert scaled.min() == pytest.approx(0.5) and scaled.max() == pytest.approx(1.5)


@pytest.mark.parametrize("shape", [(7, 5, 6), (5, 5), (2, 7, 5, 5)])
def test_user_movie_with_wrong_dimensions_is_refused(tmp_path, shape):
    np.save(tmp_path / "m.npy", np.ones(shape, dtype=np.float32))
    cfg = StimulusConfig(mode="multiplicative", source="file", path=tmp_path / "m.npy", grid_size=5)
    with pytest.raises(ConfigError, match=r"expected \(frames, 5, 5\)"):
        make_movie(cfg, np.random.default_rng(0))


def test_user_movie_missing_or_wrong_format(tmp_path):
    cfg = StimulusConfig(mode="multiplicative", source="file", path=tmp_path / "none.npy", grid_size=5)
    with pytest.raises(ConfigError, match="not found"):
        make_movie(cfg, np.random.default_rng(0))
    (tmp_path / "m.gif").write_bytes(b"GIF89a")
    with pytest.raises(ConfigError, match=".npy or .tif"):
        make_movie(cfg.model_copy(update={"path": tmp_path / "m.gif"}), np.random.default_rng(0))


def test_image_pan_is_not_aliased():
    """Regression: the photograph was sampled every ~20 pixels without a low-pass filter, so 90 % of
    the 32 x 32 movie's spatial variance needed 14 of the 16 cycles per side (pixel noise that
    flickered as the window moved)."""
    from circuitgnn.analyze.stimulus import movie_bandwidth
    from circuitgnn.simulate.stimuli import image_pan_movie

    movie = image_pan_movie(128, 32, np.random.default_rng(42))
    assert movie_bandwidth(movie)["omega_spatial_cycles_90"] < 9
    assert movie[0].std() > 0.05
