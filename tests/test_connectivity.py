import numpy as np
import pytest

from circuitgnn.config import ConnectivityConfig
from circuitgnn.errors import ConfigError
from circuitgnn.simulate.connectivity import cauchy_scale, make_connectivity, spectral_radius


def rng(seed=0):
    return np.random.default_rng(seed)


@pytest.mark.parametrize("n, p", [(1000, 0.7), (1999, 0.7), (2048, 0.675), (4000, 0.67), (8000, 0.66), (9000, 0.5)])
def test_cauchy_scale_follows_the_paper(n, p):
    assert cauchy_scale(n) == pytest.approx(n**-p)
    assert cauchy_scale(1000) == pytest.approx(7.94e-3, rel=1e-3)


def test_truncated_cauchy_statistics():
    n = 1000
    w = make_connectivity(ConnectivityConfig(), n, rng())
    scale = cauchy_scale(n)
    assert w.dtype == np.float32 and w.shape == (n, n)
    assert np.all(np.diag(w) == 0)
    assert np.abs(w).max() <= 25 * scale * (1 + 1e-6)
    # P(|standard Cauchy| > 25) = 1 - 2 arctan(25) / pi = 2.546 %
    off = ~np.eye(n, dtype=bool)
    zero_fraction = np.mean(w[off] == 0)
    expected = 1 - 2 * np.arctan(25) / np.pi
    assert zero_fraction == pytest.approx(expected, abs=5 * np.sqrt(expected / n**2))
    # the median of |s| for a standard Cauchy truncated at 25 is tan(pi/4 * (1 - p_trunc))
    med = np.median(np.abs(w[w != 0])) / scale
    assert med == pytest.approx(np.tan(np.pi / 2 * (1 - expected) / 2), rel=0.02)
    assert spectral_radius(w) == pytest.approx(1.0, abs=0.15)  # spec 2.2: about 1 for N = 1000


@pytest.mark.parametrize("f", [0.05, 0.2, 0.5])
def test_filling_factor(f):
    n = 600
    dense = make_connectivity(ConnectivityConfig(), n, rng(3))
    sparse = make_connectivity(ConnectivityConfig(filling_factor=f), n, rng(3))
    kept = (sparse != 0).sum() / (dense != 0).sum()
    assert kept == pytest.approx(f, abs=5 * np.sqrt(f * (1 - f) / n**2))
    # the sparse matrix keeps the dense draw's values where it keeps them
    mask = sparse != 0
    np.testing.assert_array_equal(sparse[mask], dense[mask])
    assert not np.array_equal(mask, mask.T)  # independent per entry, not symmetric


def test_gaussian_and_explicit_scale():
    n = 500
    w = make_connectivity(ConnectivityConfig(kind="gaussian"), n, rng())
    assert w[~np.eye(n, dtype=bool)].std() == pytest.approx(1 / np.sqrt(n), rel=0.02)
    w2 = make_connectivity(ConnectivityConfig(kind="gaussian", scale=0.5), n, rng())
    np.testing.assert_allclose(w2, w * 0.5 * np.sqrt(n), rtol=1e-5, atol=1e-7)


def test_dale_law_signs_by_sender_column():
    n = 100
    w = make_connectivity(ConnectivityConfig(dale_excitatory_fraction=0.8), n, rng())
    assert np.all(w[:, :80] >= 0) and np.all(w[:, 80:] <= 0)
    assert np.all(np.diag(w) == 0)


def test_dale_balance_makes_each_row_sum_to_zero_and_keeps_a_mostly_excitatory_network_alive(tmp_path):
    """Regression: an 80 % excitatory network under Dale's law fell to a fixed point (rms dx/dt 0.00) and was published."""
    from circuitgnn.config import config_from_dict
    from circuitgnn.simulate.run import simulate

    w = make_connectivity(ConnectivityConfig(dale_excitatory_fraction=0.8, dale_balance=True), 200, rng())
    assert np.all(w[:, :160] >= 0) and np.all(w[:, 160:] <= 0)
    np.testing.assert_allclose(w.sum(axis=1, dtype=np.float64), 0, atol=1e-4)
    rms = {}
    for balance in (False, True):
        neurons = {"n_types": 4, "signal": "tanh", "gain": 10, "self_coupling": [1, 2, 1, 2], "decay": [1, 1, 2, 2]}  # Fig. 2's
        data = {"name": "d", "simulation": {"n_neurons": 200, "n_frames": 300, "burn_in": 1000, "neurons": neurons}}
        data["simulation"]["connectivity"] = {"dale_excitatory_fraction": 0.8, "dale_balance": balance}
        data["simulation"]["check_activity"] = False  # the unbalanced network's fixed point is what is measured here
        rms[balance] = simulate(config_from_dict(data), tmp_path / str(balance), progress=False, figure=False).summary["dxdt_rms"]
    assert rms[False] < 0.01 < rms[True]
    from circuitgnn.errors import SimulationDegenerate

    data["simulation"]["connectivity"]["dale_balance"] = False
    data["simulation"]["check_activity"] = True
    with pytest.raises(SimulationDegenerate, match=r"fixed point .*dale_balance"):
        simulate(config_from_dict(data), tmp_path / "dead", progress=False, figure=False)
    assert not (tmp_path / "dead").exists()
    data["simulation"]["connectivity"] = {}
    data["simulation"]["neurons"]["gain"] = 1e12
    with pytest.raises(SimulationDegenerate, match="the network explodes"):
        simulate(config_from_dict(data), tmp_path / "loud", progress=False, figure=False)
    with pytest.raises(ValueError, match="dale_balance needs dale_excitatory_fraction"):
        ConnectivityConfig(dale_balance=True)


def test_same_seed_same_matrix():
    a = make_connectivity(ConnectivityConfig(filling_factor=0.3), 300, rng(7))
    b = make_connectivity(ConnectivityConfig(filling_factor=0.3), 300, rng(7))
    c = make_connectivity(ConnectivityConfig(filling_factor=0.3), 300, rng(8))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_user_matrix_from_file(tmp_path):
    n = 20
    m = np.random.default_rng(0).normal(size=(n, n))
    path = tmp_path / "w.npy"
    np.save(path, m)
    with pytest.warns(UserWarning, match="non-zero diagonal"):
        w = make_connectivity(ConnectivityConfig(kind="file", path=path), n, rng())
    expected = m.astype(np.float32)
    np.fill_diagonal(expected, 0)
    np.testing.assert_array_equal(w, expected)


def test_user_matrix_of_wrong_shape_is_refused(tmp_path):
    path = tmp_path / "w.npy"
    np.save(path, np.zeros((5, 6)))
    with pytest.raises(ConfigError, match=r"has shape \(5, 6\), expected \(20, 20\)"):
        make_connectivity(ConnectivityConfig(kind="file", path=path), 20, rng())
    with pytest.raises(ConfigError, match="file not found"):
        make_connectivity(ConnectivityConfig(kind="file", path=tmp_path / "missing.npy"), 20, rng())
    bad = np.zeros((20, 20))
    bad[1, 2] = np.nan
    np.save(path, bad)
    with pytest.raises(ConfigError, match="finite"):
        make_connectivity(ConnectivityConfig(kind="file", path=path), 20, rng())
