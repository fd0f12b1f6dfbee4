"""Ensemble members trained at once in worker processes: the members of one process, resumable, errors named."""

from __future__ import annotations

import numpy as np
import pytest

from circuitgnn.analyze.confidence import plateau_aligned
from circuitgnn.ensemble import CircuitGNNEnsemble
from circuitgnn.errors import CircuitGNNError
from circuitgnn.fit_jobs import resolve_jobs
from tests.conftest import simulated_arrays

TRAINING = {"n_epochs": 2, "iterations_per_epoch": 15, "batch_size": 4, "log_every": 10, "clustering": {"every_epochs": 1, "max_types": 4}}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return simulated_arrays(tmp_path_factory.mktemp("jobs") / "d", n_neurons=20, n_frames=400)


def _weights(ens: CircuitGNNEnsemble) -> list[np.ndarray]:
    return [plateau_aligned(m.model_, m.xnorm_) for m in ens.members_]


def test_members_trained_in_parallel_are_those_of_one_process_and_resume(data, tmp_path):
    ds, x, dxdt = data
    settings = {"model": {"hidden": 8}, "training": TRAINING, "progress": False, "block": 40}
    one = CircuitGNNEnsemble(3, **settings).fit(x, ds.dt, dxdt)
    both = CircuitGNNEnsemble(3, n_jobs=2, **settings).fit(x, ds.dt, dxdt, folder=tmp_path / "ens")
    for a, b in zip(_weights(one), _weights(both), strict=True):
        np.testing.assert_allclose(b, a, atol=1e-5)
    assert [m.training.seed for m in both.members_] == [m.training.seed for m in one.members_]
    for a, b in zip(one.members_, both.members_, strict=True):
        np.testing.assert_array_equal(b.types_, a.types_)
    np.testing.assert_allclose(both.confidence_.mean, one.confidence_.mean, atol=1e-5)
    assert all((tmp_path / "ens" / f"member_{k}" / "run.json").is_file() for k in range(3))
    again = CircuitGNNEnsemble(3, n_jobs=2, **settings).fit(x, ds.dt, dxdt, folder=tmp_path / "ens")
    for a, b in zip(_weights(both), _weights(again), strict=True):
        np.testing.assert_array_equal(b, a)  # loaded from the run folders, not trained again


def test_a_failing_member_raises_its_error_in_the_caller(data, tmp_path):
    ds, x, dxdt = data
    with pytest.raises(CircuitGNNError, match="dxdt"):  # a bootstrap resample keeps the bad derivative's rows
        CircuitGNNEnsemble(2, n_jobs=2, model={"hidden": 8}, training=TRAINING, progress=False, block=40).fit(
            x, ds.dt, np.full_like(dxdt, np.inf)
        )


@pytest.mark.parametrize("bad", [0, -2, 1.5, "2", True, None])
def test_n_jobs_is_refused_before_any_work(bad):
    with pytest.raises(CircuitGNNError, match="n_jobs must be a positive integer or -1"):
        CircuitGNNEnsemble(2, n_jobs=bad)


def test_dt_is_refused_before_any_member_starts(data, tmp_path):
    _, x, dxdt = data
    with pytest.raises(CircuitGNNError, match="dt must be a positive number"):
        CircuitGNNEnsemble(2, n_jobs=2, progress=False).fit(x, 0.0, dxdt, folder=tmp_path / "never")
    assert not (tmp_path / "never").exists()


def test_jobs_are_capped_by_the_fits_and_minus_one_means_every_core(monkeypatch):
    from circuitgnn import fit_jobs

    monkeypatch.setattr(fit_jobs, "available_cores", lambda: 6)
    monkeypatch.setattr(fit_jobs.torch.cuda, "is_available", lambda: False)
    assert resolve_jobs(-1, 4) == 4 and resolve_jobs(-1, 10) == 6 and resolve_jobs(3, 2) == 2 and resolve_jobs(1, 5) == 1
    monkeypatch.setattr(fit_jobs.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(fit_jobs.torch.cuda, "device_count", lambda: 2)
    assert resolve_jobs(-1, 10) == 2


def test_members_in_parallel_get_their_resample_of_a_known_input(tmp_path):
    stimulus = {"mode": "additive", "source": "oscillation", "grid_size": 3, "amplitude": 2.0}
    ds, x, dxdt = simulated_arrays(tmp_path / "d", n_neurons=20, n_frames=400, stimulus=stimulus)
    inputs = np.array(ds.omega)
    settings = {"model": {"hidden": 8, "external_input": "known"}, "training": TRAINING, "progress": False, "block": 40}
    one = CircuitGNNEnsemble(2, **settings).fit(x, ds.dt, dxdt, inputs, input_mode="additive")
    both = CircuitGNNEnsemble(2, n_jobs=2, **settings).fit(x, ds.dt, dxdt, inputs, input_mode="additive")
    for a, b in zip(_weights(one), _weights(both), strict=True):
        np.testing.assert_allclose(b, a, atol=1e-5)
    assert all(m.input_mode_ == "additive" for m in both.members_)
    plain = CircuitGNNEnsemble(2, **{**settings, "model": {"hidden": 8}}).fit(x, ds.dt, dxdt)
    assert not np.allclose(_weights(plain)[0], _weights(one)[0], atol=1e-5)  # the input changed what was fitted
