"""End-to-end properties of simulated datasets: formulas, determinism, round trip, failures."""

import json
import re

import numpy as np
import pytest

from circuitgnn import open_dataset, simulate
from circuitgnn.errors import DatasetError, SimulationDiverged
from tests.conftest import tiny_config


def test_without_coupling_each_type_relaxes_by_its_own_update_function(tmp_path):
    n = 40
    np.save(tmp_path / "zero.npy", np.zeros((n, n)))
    cfg = tiny_config(n_neurons=n, n_frames=2000, burn_in=0, connectivity={"kind": "file", "path": str(tmp_path / "zero.npy")})
    ds = simulate(cfg, tmp_path / "d", progress=False, figure=False).dataset
    x = np.asarray(ds.x, dtype=np.float64)
    types = ds.truth.types
    table = ds.truth.functions["types"]
    # independent Euler integration of dx/dt = -c x + s tanh(x), type by type
    ref = np.empty_like(x)
    ref[0] = x[0]
    c = np.array([table[t]["decay"] for t in types])
    s = np.array([table[t]["self_coupling"] for t in types])
    for k in range(1, len(x)):
        ref[k] = ref[k - 1] + 0.01 * (-c * ref[k - 1] + s * np.tanh(ref[k - 1]))
    np.testing.assert_allclose(x, ref, atol=1e-3)
    # and the fixed points: |x*| solves c x = s tanh x (1.915 for s = 2, c = 1; 0 when s <= c)
    final = np.abs(x[-1])
    assert np.all(final[types == 1] == pytest.approx(1.9150, abs=1e-3))
    assert np.all(final[types == 0] < 0.6) and np.all(final[types == 2] < 1e-6)


@pytest.mark.parametrize("signal", ["tanh", "sender", "pair"])
def test_saved_drift_is_the_noise_free_vector_field(tmp_path, signal):
    cfg = tiny_config(n_frames=200, neurons={"signal": signal, "width": [1, 2, 4, 8]})
    ds = simulate(cfg, tmp_path / "d", progress=False, figure=False).dataset
    x, f = np.asarray(ds.x, dtype=np.float64), np.asarray(ds.dxdt, dtype=np.float64)
    w, types = ds.truth.connectivity.astype(np.float64), ds.truth.types
    p = {k: np.array([t[k] for t in ds.truth.functions["types"]]) for k in ds.truth.functions["types"][0]}
    # f(x) recomputed with dense float64 algebra from the saved ground truth
    if signal == "tanh":
        m = np.tanh(x) @ w.T
    elif signal == "sender":
        m = np.tanh((x - p["threshold"][types]) / p["width"][types]) @ w.T
    else:
        m = np.stack([(np.tanh(x[k] / p["width"][types][:, None]) - p["leak"][types] * x[k]) @ w.T for k in range(len(x))])
        m = np.einsum("kii->ki", m) if m.ndim == 3 else m
    expected = -p["decay"][types] * x + p["bias"][types] + p["self_coupling"][types] * np.tanh(x) + p["gain"][types] * m
    np.testing.assert_allclose(f, expected, rtol=1e-4, atol=2e-4)
    # noise-free Euler: the saved drift is the finite difference of the saved states
    np.testing.assert_allclose((x[1:] - x[:-1]) / ds.dt, f[:-1], atol=2e-3)


def test_noise_is_per_step_and_targets_stay_exact(tmp_path):
    sigma = 0.5
    cfg = tiny_config(n_frames=400, noise_std=sigma)
    ds = simulate(cfg, tmp_path / "d", progress=False, figure=False).dataset
    x, f = np.asarray(ds.x, np.float64), np.asarray(ds.dxdt, np.float64)
    residual = x[1:] - x[:-1] - ds.dt * f[:-1]
    assert residual.std() == pytest.approx(sigma, rel=0.05)  # not scaled by dt
    assert abs(residual.mean()) < 0.05


def test_rk4_is_more_accurate_than_euler_on_relaxation(tmp_path):
    n = 8
    np.save(tmp_path / "zero.npy", np.zeros((n, n)))
    results = {}
    for method in ("euler", "rk4"):
        cfg = tiny_config(
            n_neurons=n,
            n_frames=50,
            burn_in=0,
            dt=0.2,
            integrator=method,
            connectivity={"kind": "file", "path": str(tmp_path / "zero.npy")},
            neurons={"self_coupling": 0.0},
        )
        results[method] = simulate(cfg, tmp_path / method, progress=False, figure=False).dataset
    x0 = np.asarray(results["euler"].x[0], np.float64)
    c = np.array([1, 1, 2, 2])[results["euler"].truth.types]
    exact = x0 * np.exp(-c * 0.2 * 5)  # dx/dt = -c x, at t = 1
    err_euler = np.abs(results["euler"].x[5] - exact).max() / np.abs(x0).max()
    err_rk4 = np.abs(results["rk4"].x[5] - exact).max() / np.abs(x0).max()
    assert err_rk4 < 1e-4 and err_euler > 1e-2


def test_same_seed_same_dataset_and_other_seed_differs(tmp_path):
    cfg = tiny_config(noise_std=0.3, stimulus={"mode": "multiplicative", "grid_size": 4, "source": "moving_blobs"})
    a = simulate(cfg, tmp_path / "a", progress=False, figure=False).dataset
    b = simulate(cfg, tmp_path / "b", progress=False, figure=False).dataset
    for name in ("x", "dxdt", "omega"):
        np.testing.assert_array_equal(a.arrays[name], b.arrays[name])
        assert a.meta["arrays"][name]["sha256"] == b.meta["arrays"][name]["sha256"]
    np.testing.assert_array_equal(a.truth.connectivity, b.truth.connectivity)
    cfg.simulation.seed = 43
    c = simulate(cfg, tmp_path / "c", progress=False, figure=False).dataset
    assert not np.array_equal(a.x, c.x)


def test_dataset_round_trip(tmp_path):
    cfg = tiny_config(stimulus={"mode": "multiplicative", "grid_size": 5, "source": "drifting_grating", "n_movie_frames": 10})
    res = simulate(cfg, tmp_path / "d", progress=False)
    ds = open_dataset(tmp_path / "d")
    assert ds.n_frames == 300 and ds.n_neurons == 40 and ds.dt == 0.01
    assert isinstance(ds.x, np.memmap) and ds.x.dtype == np.float32
    assert ds.omega.shape == (300, 40) and ds.stimulus_mode == "multiplicative"
    assert ds.positions.shape == (40, 2) and ds.neurons["driven"].sum() == 25 and int(ds.neurons["grid_size"]) == 5
    assert ds.truth.connectivity.shape == (40, 40) and ds.truth.types.shape == (40,)
    assert ds.truth.movie.shape == (10, 5, 5)
    assert ds.truth.functions["signal"] == "tanh" and len(ds.truth.functions["types"]) == 4
    assert ds.meta["config"]["simulation"]["n_neurons"] == 40 and ds.meta["seed"] == 42
    assert {"torch", "numpy", "python", "circuitgnn"} <= set(ds.meta["environment"])
    assert (tmp_path / "d" / "simulation.png").stat().st_size > 10_000
    ds.verify_checksums()
    assert res.summary["n_neurons"] == 40 and np.isfinite(res.summary["W_spectral_radius"])
    assert not list(tmp_path.glob(".*partial*"))


def test_existing_output_is_refused_unless_overwrite(tmp_path):
    cfg = tiny_config()
    simulate(cfg, tmp_path / "d", progress=False, figure=False)
    with pytest.raises(FileExistsError, match="--overwrite"):
        simulate(cfg, tmp_path / "d", progress=False, figure=False)
    cfg.simulation.n_frames = 123
    ds = simulate(cfg, tmp_path / "d", overwrite=True, progress=False, figure=False).dataset
    assert ds.n_frames == 123
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_divergence_names_the_first_bad_frame_and_publishes_nothing(tmp_path):
    # negative decay: x grows like exp(50 t) and overflows float32 after about 177 steps
    cfg = tiny_config(n_frames=1000, burn_in=0, neurons={"decay": -50.0, "self_coupling": 0.0})
    with pytest.raises(SimulationDiverged, match=r"saved frame (\d+)") as err:
        simulate(cfg, tmp_path / "d", progress=False, figure=False)
    frame = int(re.search(r"saved frame (\d+)", str(err.value)).group(1))
    # x_k = x_0 1.5^k with |x_0| < 20: the drift 50 x overflows float32 (3.4e38) between these frames
    assert np.log(3.4e38 / 50 / 20) / np.log(1.5) - 2 <= frame <= np.log(3.4e38 / 1e-3) / np.log(1.5) + 2
    assert list(tmp_path.iterdir()) == []
    cfg.simulation.burn_in = 500
    with pytest.raises(SimulationDiverged, match="during burn-in"):
        simulate(cfg, tmp_path / "d", progress=False, figure=False)
    assert list(tmp_path.iterdir()) == []


def test_interrupted_simulation_leaves_nothing_that_looks_complete(tmp_path, monkeypatch):
    from circuitgnn.simulate import integrate

    calls = {"n": 0}
    original = integrate.Integrator.run

    def run_then_interrupt(self, x, n_frames, sink, progress=None, every=1):
        def failing_sink(blocks):
            calls["n"] += 1
            sink(blocks)
            raise KeyboardInterrupt

        return original(self, x, n_frames, failing_sink, progress, every)

    monkeypatch.setattr(integrate.Integrator, "run", run_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        simulate(
            tiny_config(n_neurons=2000, n_frames=5000, neurons={"n_types": 2, "self_coupling": 1, "decay": 1}),
            tmp_path / "d",
            progress=False,
            figure=False,
        )
    assert calls["n"] == 1
    assert list(tmp_path.iterdir()) == []


def test_reader_rejects_incomplete_or_corrupted_folders(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        open_dataset(tmp_path / "missing")
    simulate(tiny_config(), tmp_path / "d", progress=False, figure=False)
    meta = tmp_path / "d" / "meta.json"
    text = meta.read_text()
    meta.unlink()
    with pytest.raises(DatasetError, match="meta.json is missing"):
        open_dataset(tmp_path / "d")
    meta.write_text(text)
    x = tmp_path / "d" / "x.npy"
    data = x.read_bytes()
    x.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match="x.npy"):
        open_dataset(tmp_path / "d")
    corrupted = bytearray(data)
    corrupted[-1] ^= 0xFF
    x.write_bytes(bytes(corrupted))
    with pytest.raises(DatasetError, match="checksum mismatch"):
        open_dataset(tmp_path / "d").verify_checksums()
    m = json.loads(text)
    m["arrays"]["x"]["shape"] = [1, 2]
    meta.write_text(json.dumps(m))
    with pytest.raises(DatasetError, match="expected"):
        open_dataset(tmp_path / "d")


def test_sigterm_while_writing_removes_the_partial_folder(tmp_path):
    """Regression: `kill PID` during a simulation left a hidden .NAME.partial-XXXX folder behind."""
    import os
    import signal

    from circuitgnn.data.writer import DatasetWriter

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt), DatasetWriter(tmp_path / "d") as w:
        w.save("x.npy", np.zeros(3))
        os.kill(os.getpid(), signal.SIGTERM)
    assert not list(tmp_path.glob(".*partial*")) and not (tmp_path / "d").exists()
    assert signal.getsignal(signal.SIGTERM) == before


def test_partial_folders_of_killed_writers_are_removed_and_live_ones_kept(tmp_path):
    """Regression: `kill -9` during a simulation left hidden partial folders that nothing cleaned."""
    import os
    import subprocess

    from circuitgnn.data.writer import DatasetWriter

    gone = subprocess.Popen(["true"])
    gone.wait()
    dead = tmp_path / f".d.partial-{gone.pid}-abcd1234"
    live = tmp_path / f".d.partial-{os.getpid()}-abcd1234"  # a writer still at work (here: this process)
    for folder in (dead, live):
        folder.mkdir()
        (folder / "x.npy").write_bytes(b"half")
    with pytest.warns(UserWarning, match=f"removed 1 partial folder.*{dead.name}"), DatasetWriter(tmp_path / "d") as w:
        w.save("x.npy", np.zeros(3))
    assert not dead.exists() and live.exists()


def test_a_killed_trainers_half_written_checkpoint_is_removed_on_the_next_start(tmp_path):
    from circuitgnn.train.run_folder import RunFolder

    run = RunFolder(tmp_path / "r")
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / ".checkpoint.pt.tmp-1234abcd").write_bytes(b"half")
    with pytest.warns(UserWarning, match="removed 1 half-written file"), run.locked():
        pass
    assert not list((tmp_path / "r").iterdir())


def test_verify_finds_a_bit_flipped_truth_file(tmp_path):
    """Regression: truth files had no checksums, so --verify passed a bit-flipped W."""
    from circuitgnn.cli import main

    ds = simulate(tiny_config(n_neurons=20, n_frames=30), tmp_path / "d", progress=False, figure=False).dataset
    assert {"truth/connectivity.npy", "truth/types.npy", "truth/functions.json", "neurons.npz"} <= set(ds.meta["checksums"])
    ds.verify_checksums()
    w = tmp_path / "d" / "truth" / "connectivity.npy"
    raw = bytearray(w.read_bytes())
    raw[-1] ^= 0x01
    w.write_bytes(bytes(raw))
    assert main(["info", str(tmp_path / "d"), "--verify"]) == 2
    with pytest.raises(DatasetError, match=r"truth/connectivity.npy: checksum mismatch"):
        open_dataset(tmp_path / "d").verify_checksums()


def test_a_full_disk_while_simulating_is_named_and_publishes_nothing(tmp_path, monkeypatch):
    """Regression: a full disk during a simulation ended in a raw OSError traceback."""
    import errno

    from circuitgnn.data import writer

    def no_space(self, block):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(writer.NpyStream, "append", no_space)
    with pytest.raises(DatasetError, match="is the disk full.*Nothing was published"):
        simulate(tiny_config(n_neurons=20, n_frames=30), tmp_path / "d", progress=False, figure=False)
    assert not list(tmp_path.iterdir())
