"""End-to-end: a small network's connectivity is recovered from its activity alone."""

import pytest

from circuitgnn import simulate
from circuitgnn.cli import main
from circuitgnn.train.trainer import Trainer, load_run
from tests.conftest import tiny_config


@pytest.mark.slow
def test_small_network_connectivity_is_recovered(tmp_path):
    cfg = tiny_config(n_neurons=100, n_frames=10_000, burn_in=1000)
    simulate(cfg, tmp_path / "data", progress=False, figure=False)
    tc = cfg.training
    tc.n_epochs, tc.iterations_per_epoch, tc.log_every = 4, 1000, 1000
    tc.lr_w, tc.lr_mlp, tc.lr_embedding = 3e-3, 1.5e-3, 2.25e-3
    tc.clustering.every_epochs = 2
    run = Trainer(cfg, tmp_path / "data", tmp_path / "run", progress=False).fit()
    final = run.log[-1]
    assert final["iteration"] == 4000
    assert final["W_r2"] > 0.95, final  # measured 0.995 (raw R^2 is the same: the correction only rescales)
    assert 0.8 < final["W_slope"] < 1.2, final
    assert [line["W_r2"] for line in run.log] == sorted(line["W_r2"] for line in run.log)  # improves steadily


def test_train_command_runs_and_resumes(tmp_path, capsys):
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(
        "name: t\nsimulation:\n  n_neurons: 30\n  n_frames: 300\n  burn_in: 50\n"
        "model:\n  hidden: 8\ntraining:\n  n_epochs: 2\n  iterations_per_epoch: 20\n  log_every: 10\n  checkpoint_every: 10\n"
    )
    assert main(["simulate", str(cfg_path), "--out", str(tmp_path / "d"), "--quiet", "--no-figure"]) == 0
    assert main(["train", str(cfg_path), "--data", str(tmp_path / "d"), "--out", str(tmp_path / "r"), "--quiet", "--max-iterations", "25"]) == 0
    out = capsys.readouterr().out
    assert "25 iterations" in out and "W            R^2" in out
    assert main(["train", str(cfg_path), "--data", str(tmp_path / "d"), "--out", str(tmp_path / "r"), "--quiet"]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["train", str(cfg_path), "--data", str(tmp_path / "d"), "--out", str(tmp_path / "r"), "--quiet", "--resume"]) == 0
    assert "40 iterations" in capsys.readouterr().out
    assert load_run(tmp_path / "r").log[-1]["iteration"] == 40
    assert main(["train", str(cfg_path), "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "r2")]) == 2
    assert "dataset folder not found" in capsys.readouterr().err
