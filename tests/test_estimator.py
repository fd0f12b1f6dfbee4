"""The estimator: fit on arrays, fitted attributes, predict / simulate / score / equations, save and load."""

import warnings

import numpy as np
import pytest
import torch

from circuitgnn import CircuitGNN, NotFittedError
from circuitgnn.analyze.rollout import rollout_model
from circuitgnn.errors import CircuitGNNError, ConfigError, DatasetError
from circuitgnn.train.run_folder import RunExistsError
from tests.conftest import simulated_arrays

TRAINING = {"n_epochs": 2, "iterations_per_epoch": 20, "batch_size": 4, "log_every": 10, "clustering": {"every_epochs": 1, "max_types": 4}}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return simulated_arrays(tmp_path_factory.mktemp("data") / "d", n_neurons=30, n_frames=400)


def small(**training):
    return CircuitGNN(model={"hidden": 8}, training={**TRAINING, **training}, progress=False)


@pytest.fixture(scope="module")
def fitted(data):
    ds, x, dxdt = data
    return small().fit(x, dt=ds.dt, dxdt=dxdt)


def test_warm_start_is_on_unless_the_settings_name_it(data):
    ds, x, dxdt = data
    off = CircuitGNN(model={"hidden": 8}, training={**TRAINING, "extensions": {"warm_start": None}}, progress=False)
    assert [line["iteration"] for line in off.fit(x, dt=ds.dt, dxdt=dxdt).history_] == [10, 20, 30, 40]
    assert off.training.extensions.warm_start is None
    low_rank = CircuitGNN(model={"hidden": 8, "low_rank": 4}, training=TRAINING, progress=False)
    assert low_rank.fit(x[:200], dt=ds.dt, dxdt=dxdt[:200]).training.extensions.warm_start is None  # a model it cannot start
    on = CircuitGNN(model={"hidden": 8}, training=TRAINING, progress=False)
    assert on.fit(x[:300], dt=ds.dt, dxdt=dxdt[:300]).training.extensions.warm_start is not None
    gappy = x[:300].copy()
    gappy[::3, 0] = np.nan  # a second fit, on data with missing values: no warm start (the first did not stick)
    assert on.fit(gappy, dt=ds.dt).training.extensions.warm_start is None


def test_fit_returns_the_estimator_with_its_fitted_attributes(fitted):
    n = 30
    assert fitted.connectivity_.shape == (n, n) and np.all(np.diag(fitted.connectivity_) == 0)
    assert fitted.embeddings_.shape == (n, 2)
    assert fitted.types_.shape == (n,) and fitted.n_types_ == fitted.types_.max() + 1
    assert [line["iteration"] for line in fitted.history_] == [0, 10, 20, 30, 40]  # 0: the warm start (on by default)
    assert fitted.training.extensions.warm_start is not None and "warm_start_fit_seconds" in fitted.history_[0]
    assert fitted.phi_(np.zeros((5, n))).shape == (5, n) and fitted.psi_(np.ones((5, n))).shape == (5, n)
    assert fitted.run_dir_ is None and "fitted on N = 30" in repr(fitted)


def test_numpy_torch_and_memory_mapped_inputs_give_the_same_model(data, fitted):
    ds, x, dxdt = data
    from_torch = small().fit(torch.from_numpy(x), dt=ds.dt, dxdt=torch.from_numpy(dxdt))
    from_memmap = small().fit(ds.x, dt=ds.dt, dxdt=ds.dxdt)
    for other in (from_torch, from_memmap):
        np.testing.assert_array_equal(other.connectivity_, fitted.connectivity_)


def test_without_dxdt_forward_differences_are_used(data):
    ds, x, _dxdt = data
    est = small(n_epochs=1).fit(x, dt=ds.dt)
    ref = small(n_epochs=1).fit(
        x, dt=ds.dt, dxdt=np.vstack([np.diff(x, axis=0) / np.float32(ds.dt), (x[-1:] - x[-2:-1]) / np.float32(ds.dt)])
    )
    np.testing.assert_array_equal(est.connectivity_, ref.connectivity_)


def test_predict_simulate_score_and_equations(data, fitted):
    ds, x, dxdt = data
    pred = fitted.predict(x[:50])
    with torch.no_grad():
        direct = fitted.model_(torch.from_numpy(x[:50]).to(fitted.device_)).cpu().numpy()
    np.testing.assert_allclose(pred, direct, rtol=1e-6, atol=1e-6)
    frozen = x[:50].copy()
    frozen.setflags(write=False)  # as a dataset's memory map: regression, PyTorch warned that it is not writable
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(fitted.predict(frozen), pred)
    traj = fitted.simulate(x[0], 30)
    assert traj.shape == (31, 30)
    np.testing.assert_array_equal(traj, rollout_model(fitted.model_, x[0], 30, ds.dt))
    r2 = fitted.score(x, dxdt=dxdt)
    y = dxdt.astype(np.float64)
    expected = 1 - ((y - fitted.predict(x)) ** 2).sum() / ((y - y.mean()) ** 2).sum()
    assert r2 == pytest.approx(expected)
    eqs = fitted.equations()
    assert any(e.startswith("phi*[") for e in eqs) and any(e.startswith("psi*[") for e in eqs)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU"))])
def test_save_and_load_give_identical_predictions(data, tmp_path, device):
    ds, x, dxdt = data
    est = small(device=device).fit(x, dt=ds.dt, dxdt=dxdt)
    est.save(tmp_path / "model.pt")
    loaded = CircuitGNN.load(tmp_path / "model.pt", device=device)
    np.testing.assert_array_equal(loaded.predict(x[:100]), est.predict(x[:100]))
    np.testing.assert_array_equal(loaded.simulate(x[0], 20), est.simulate(x[0], 20))
    np.testing.assert_array_equal(loaded.connectivity_, est.connectivity_)
    np.testing.assert_array_equal(loaded.types_, est.types_)
    assert loaded.history_ == est.history_ and loaded.config == est.config
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]  # written to a temporary name, then renamed


def test_a_run_folder_checkpoints_resumes_and_loads(data, tmp_path, fitted):
    ds, x, dxdt = data
    est = small().fit(x, dt=ds.dt, dxdt=dxdt, run_dir=tmp_path / "run")
    np.testing.assert_array_equal(est.connectivity_, fitted.connectivity_)
    assert {"checkpoint.pt", "log.jsonl", "run.json", "config.yaml"} <= {p.name for p in (tmp_path / "run").iterdir()}
    with pytest.raises(RunExistsError, match="--resume"):
        small().fit(x, dt=ds.dt, dxdt=dxdt, run_dir=tmp_path / "run")
    again = small().fit(x, dt=ds.dt, dxdt=dxdt, run_dir=tmp_path / "run", resume=True)  # finished: nothing left to do
    np.testing.assert_array_equal(again.connectivity_, fitted.connectivity_)
    from_folder = CircuitGNN.load(tmp_path / "run", device="cpu")
    if est.device_.type == "cpu":
        np.testing.assert_array_equal(from_folder.predict(x[:20]), est.predict(x[:20]))
    else:  # the same model on another device: the same numbers up to float rounding
        np.testing.assert_allclose(from_folder.predict(x[:20]), est.predict(x[:20]), rtol=1e-4, atol=1e-4)
    with pytest.raises(Exception, match="other data"):
        small().fit(x[:300], dt=ds.dt, run_dir=tmp_path / "run", resume=True)


def test_every_method_needs_a_fit_first(tmp_path):
    est = small()
    x = np.zeros((10, 30), dtype=np.float32)
    for call in (
        lambda: est.predict(x),
        lambda: est.simulate(x[0], 3),
        lambda: est.score(x),
        lambda: est.equations(),
        lambda: est.save(tmp_path / "m.pt"),
        lambda: est.phi_(x),
        lambda: est.connectivity_,
    ):
        with pytest.raises((NotFittedError, AttributeError)):
            call()
    with pytest.raises(NotFittedError, match="call fit"):
        est.predict(x)


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"x": np.zeros(10)}, "x must be 2-dimensional"),
        ({"x": np.zeros((1, 5))}, "1 frame"),
        ({"x": np.zeros((10, 1))}, "is x transposed"),
        ({"x": np.full((10, 5), np.nan)}, "only 0 neuron.s. of x carry a signal"),
        ({"x": np.where(np.arange(10)[:, None] == 3, np.inf, np.ones((10, 5)))}, "x holds inf at frame 3"),
        ({"x": np.zeros((10, 5)), "dt": -1.0}, "dt must be a positive number"),
        ({"x": np.zeros((10, 5)), "dxdt": np.zeros((9, 5))}, "dxdt has 9 frames but x has 10"),
        ({"x": np.zeros((10, 5)), "dxdt": np.zeros((10, 4))}, "dxdt has 4 neurons"),
        ({"x": np.array([["a", "b"], ["c", "d"]])}, "real numbers"),
    ],
)
def test_bad_arrays_are_named_before_any_work(kwargs, words):
    args = {"dt": 0.01, **kwargs}
    with pytest.raises(DatasetError, match=words):
        small().fit(**args)


def test_bad_settings_are_named():
    with pytest.raises(ConfigError, match="model.hidden_size: unknown key"):
        CircuitGNN(model={"hidden_size": 8})
    with pytest.raises(ConfigError, match="lr_w"):
        CircuitGNN(training={"lr_w": -1})
    with pytest.raises(ConfigError, match="w_solve needs"):
        CircuitGNN(model={"low_rank": 2}, training={"extensions": {"w_solve": {}}})
    with pytest.raises(ConfigError, match="must be a ModelConfig or a dict"):
        CircuitGNN(model=3)


def test_a_known_input_must_be_given_to_predict(data):
    ds, x, dxdt = data
    inputs = np.ones_like(x)
    est = CircuitGNN(model={"hidden": 8, "external_input": "known"}, training={**TRAINING, "n_epochs": 1}, progress=False)
    with pytest.raises(DatasetError, match="external_input is 'known'"):
        est.fit(x, dt=ds.dt, dxdt=dxdt)
    est.fit(x, dt=ds.dt, dxdt=dxdt, inputs=inputs)
    with pytest.raises(CircuitGNNError, match="pass inputs="):
        est.predict(x[:5])
    plain = est.predict(x[:5], inputs=inputs[:5])
    doubled = est.predict(x[:5], inputs=2 * inputs[:5])  # multiplicative: only the coupling term doubles
    assert not np.allclose(plain, doubled)
    with pytest.raises(CircuitGNNError, match="multiplicative input"):
        est.edge_confidence(x, dxdt, inputs=inputs)
    additive = CircuitGNN(model={"hidden": 8, "external_input": "known"}, training={**TRAINING, "n_epochs": 1}, progress=False)
    additive.fit(x, dt=ds.dt, dxdt=dxdt, inputs=inputs, input_mode="additive")
    with pytest.raises(CircuitGNNError, match="pass inputs="):
        additive.edge_confidence(x, dxdt)
    conf = additive.edge_confidence(x, dxdt, inputs=inputs)  # the input removed from the drift before W is solved
    shifted = additive.edge_confidence(x, dxdt + inputs, inputs=2 * inputs)
    np.testing.assert_allclose(shifted.mean, conf.mean, atol=1e-4)


def test_load_refuses_what_it_cannot_read(tmp_path):
    with pytest.raises(CircuitGNNError, match="no saved model"):
        CircuitGNN.load(tmp_path / "nothing.pt")
    (tmp_path / "junk.pt").write_text("not a model")
    with pytest.raises(CircuitGNNError, match="not a readable circuitgnn model"):
        CircuitGNN.load(tmp_path / "junk.pt")


def test_numpy_scalars_and_bad_frames_or_rows(data):
    ds, x, dxdt = data
    est = small(n_epochs=1).fit(x, dt=np.float32(ds.dt), dxdt=dxdt)
    assert est.simulate(x[0], np.int64(3)).shape == (4, 30)
    with pytest.raises(CircuitGNNError, match="dxdt has 5 frames but x has 10"):
        est.score(x[:10], dxdt=dxdt[:5])
    lowrank = CircuitGNN(
        model={"hidden": 8, "external_input": "additive_lowrank", "input_rank": 2}, training={**TRAINING, "n_epochs": 1}, progress=False
    )
    lowrank.fit(x, dt=ds.dt, dxdt=dxdt)
    assert lowrank.predict(x[:3], frames=[0, 1, 2]).shape == (3, 30)
    for frames, words in (([0, 1], "3 integer indices"), ([0.0, 1.0, 2.0], "integer"), ([0, 1, 400], "lie in 0 .. 399")):
        with pytest.raises(CircuitGNNError, match=words):
            lowrank.predict(x[:3], frames=frames)


def test_a_second_fit_call_on_a_trainer_continues_its_run(data, tmp_path):
    from circuitgnn.train.run_folder import read_log
    from circuitgnn.train.trainer import Trainer

    ds, _, _ = data
    cfg = small().config
    trainer = Trainer(cfg, ds, tmp_path / "r", progress=False)
    trainer.fit(max_iterations=20)
    trainer.fit()
    assert [line["iteration"] for line in read_log(tmp_path / "r")] == [10, 20, 30, 40]
