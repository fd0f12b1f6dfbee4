"""End-to-end: a small network's connectivity and types are recovered from its activity alone."""

import numpy as np
import pytest

from circuitgnn import CircuitGNN, open_dataset, simulate
from circuitgnn.analyze.evaluate import training_scorer
from circuitgnn.analyze.metrics import connectivity_score, matched_accuracy
from circuitgnn.cli import main
from circuitgnn.train.run_folder import load_run
from tests.conftest import tiny_config


@pytest.mark.slow
def test_small_network_is_recovered_from_an_activity_array(tmp_path):
    """The estimator on a plain (T, N) array, without dx/dt (forward differences): W and the types come
    back; the ground truth is used only to score (the log's scorer and the asserts)."""
    cfg = tiny_config(n_neurons=100, n_frames=10_000, burn_in=1000)
    simulate(cfg, tmp_path / "data", progress=False, figure=False)
    ds = open_dataset(tmp_path / "data")
    tc = cfg.training
    tc.n_epochs, tc.iterations_per_epoch, tc.log_every = 4, 1000, 1000
    tc.lr_w, tc.lr_mlp, tc.lr_embedding = 3e-3, 1.5e-3, 2.25e-3
    tc.clustering.every_epochs = 2
    x = np.array(ds.x)  # an array in memory, as a user would have
    est = CircuitGNN(cfg.model, tc, progress=False).fit(x, dt=ds.dt, scorer=training_scorer(ds, cfg))
    truth = ds.truth
    gains = truth.gains
    score = connectivity_score(est.model_, truth.connectivity, gains, est.xnorm_)
    assert score.corrected.r2 > 0.95, score  # measured 0.995
    assert matched_accuracy(truth.types, est.types_) > 0.9  # measured 0.96 (4 neurons in a 5th cluster after 4 short epochs)
    assert est.score(x[:2000], dxdt=np.asarray(ds.dxdt[:2000])) > 0.95
    final = est.history_[-1]
    assert final["iteration"] == 4000
    assert final["W_r2"] > 0.95, final  # measured 0.995 (raw R^2 is the same: the correction only rescales)
    assert 0.8 < final["W_slope"] < 1.2, final
    assert [line["W_r2"] for line in est.history_] == sorted(line["W_r2"] for line in est.history_)  # improves steadily


def test_train_command_runs_and_resumes(tmp_path, capsys):
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(
        "name: t\nsimulation:\n  n_neurons: 30\n  n_frames: 300\n  burn_in: 50\n"
        "model:\n  hidden: 8\ntraining:\n  n_epochs: 2\n  iterations_per_epoch: 20\n  log_every: 10\n  checkpoint_every: 10\n"
    )
    assert main(["simulate", str(cfg_path), "--out", str(tmp_path / "d"), "--quiet", "--no-figure"]) == 0
    assert (
        main(["train", str(cfg_path), "--data", str(tmp_path / "d"), "--out", str(tmp_path / "r"), "--quiet", "--max-iterations", "25"])
        == 0
    )
    out = capsys.readouterr().out
    assert "25 iterations" in out and "W R^2" in out
    assert main(["train", str(cfg_path), "--data", str(tmp_path / "d"), "--out", str(tmp_path / "r"), "--quiet"]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["train", str(cfg_path), "--data", str(tmp_path / "d"), "--out", str(tmp_path / "r"), "--quiet", "--resume"]) == 0
    assert "40 iterations" in capsys.readouterr().out
    assert load_run(tmp_path / "r").log[-1]["iteration"] == 40
    assert main(["train", str(cfg_path), "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "r2")]) == 2
    assert "dataset folder not found" in capsys.readouterr().err
