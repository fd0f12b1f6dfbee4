"""`circuitgnn ensemble`: members trained into a folder, what they agree on written and reported, resumed, refused."""

from __future__ import annotations

import json

import numpy as np
import pytest

from circuitgnn.analyze.confidence import EdgeConfidence, calibration, coverage_curve, ensemble_confidence
from circuitgnn.cli import main
from circuitgnn.config import dump_config
from circuitgnn.errors import CircuitGNNError
from circuitgnn.report.ensemble_html import build_ensemble_report
from tests.conftest import tiny_config


@pytest.fixture(scope="module")
def config_file(tmp_path_factory):
    config = tiny_config(n_neurons=50)
    config.training.batch_size = 8
    config.training.iterations_per_epoch = 20
    config.training.n_epochs = 2
    config.training.log_every = 10
    config.model.hidden = 8
    path = tmp_path_factory.mktemp("ens_cfg") / "config.yaml"
    path.write_text(dump_config(config))
    return path


def _command(config_file, network, out, *extra):
    return ["ensemble", str(config_file), "--data", str(network.path), "--out", str(out), "--members", "3", "--quiet", *extra]


def test_the_command_trains_reports_and_continues(config_file, network, tmp_path, capsys):
    out = tmp_path / "ens"
    assert main(_command(config_file, network, out, "--jobs", "2", "--combined")) == 0
    printed = capsys.readouterr().out
    assert "member_2" in printed and "adjusted Rand index" in printed and "calibration" in printed and "report.html" in printed
    summary = json.loads((out / "confidence.json").read_text())
    assert [m["run"] for m in summary["members"]] == ["member_0", "member_1", "member_2"]
    assert len({m["seed"] for m in summary["members"]}) == 3 and all(m["iterations"] == 40 for m in summary["members"])
    assert summary["method"] == "least squares of 3 members, combined" and 0 <= summary["calibration"]["coverage"] <= 1
    curve = summary["coverage_curve"]["coverage"]
    assert curve == sorted(curve) and len(curve) == 7  # wider intervals cover no fewer
    with np.load(out / "confidence.npz") as z:
        assert z["coassignment"].shape == (50, 50) and np.allclose(np.diag(z["coassignment"]), 1)
        assert z["sign_agreement"].shape == (50, 50) and np.isclose(np.exp(np.log(z["scales"]).mean()), 1)
        mean = z["mean"]
    page = (out / "report.html").read_text()
    assert page.count("<tr><td>member_") == 3 and "data:image/png;base64," in page and "confidently non-zero" in page
    log = (out / "member_0" / "log.jsonl").read_text()
    assert main(_command(config_file, network, out, "--combined")) == 0  # continued: every member had finished
    assert (out / "member_0" / "log.jsonl").read_text() == log  # its train_seconds would differ had it trained again
    with np.load(out / "confidence.npz") as z:
        np.testing.assert_array_equal(z["mean"], mean)
    assert main(_command(config_file, network, out, "--combined", "--centre", "fit")) == 0  # around the trained W
    assert json.loads((out / "confidence.json").read_text())["method"] == "ensemble of 3 with least squares of 3 members"


def test_a_larger_budget_continues_the_members(config_file, network, tmp_path):
    """Regression: a changed --max-iterations was refused as other settings, so that an ensemble could not be continued."""
    out = tmp_path / "ens"
    assert main(_command(config_file, network, out, "--max-iterations", "10")) == 0
    assert [m["iterations"] for m in json.loads((out / "confidence.json").read_text())["members"]] == [10, 10, 10]
    assert main(_command(config_file, network, out, "--max-iterations", "30")) == 0
    assert [m["iterations"] for m in json.loads((out / "confidence.json").read_text())["members"]] == [30, 30, 30]


def test_other_settings_or_a_foreign_folder_are_refused_before_any_work(config_file, network, tmp_path, capsys):
    out = tmp_path / "ens"
    assert main(_command(config_file, network, out, "--max-iterations", "10")) == 0
    capsys.readouterr()
    other = tmp_path / "other.yaml"
    other.write_text(config_file.read_text().replace("batch_size: 8", "batch_size: 4"))
    assert "batch_size: 4" in other.read_text()
    assert main(_command(other, network, out, "--max-iterations", "10")) == 2
    assert "other settings (training)" in capsys.readouterr().err
    assert main(_command(config_file, network, out, "--max-iterations", "10", "--members", "4")) == 2
    assert "other settings (members)" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("member_")) == ["member_0", "member_1", "member_2"]
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    assert main(_command(config_file, network, foreign)) == 2
    assert "holds no ensemble" in capsys.readouterr().err and sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]
    assert main([*_command(config_file, network, tmp_path / "new"), "--jobs", "0"]) == 2
    assert "n_jobs" in capsys.readouterr().err and not (tmp_path / "new").exists()
    with pytest.raises(CircuitGNNError, match="confidence.npz, confidence.json missing"):
        (tmp_path / "half").mkdir()
        (tmp_path / "half" / "ensemble.json").write_text("{}")
        build_ensemble_report(tmp_path / "half")


def test_a_recorded_input_reaches_the_members_and_a_multiplicative_one_is_refused_before_work(tmp_path, capsys):
    """Regression: the members of `circuitgnn ensemble` were fitted without the dataset's recorded input."""
    from circuitgnn import simulate

    config = tiny_config(
        n_neurons=30, n_frames=600, stimulus={"mode": "additive", "source": "oscillation", "grid_size": 4, "amplitude": 2.0}
    )
    config.training.iterations_per_epoch, config.training.n_epochs, config.training.batch_size = 20, 2, 8
    config.model.hidden, config.model.external_input = 8, "known"
    simulate(config, tmp_path / "data", progress=False, figure=False)
    known = tmp_path / "known.yaml"
    known.write_text(dump_config(config))
    args = ["ensemble", str(known), "--data", str(tmp_path / "data"), "--members", "2", "--quiet", "--combined"]
    assert main([*args, "--out", str(tmp_path / "ens")]) == 0
    summary = json.loads((tmp_path / "ens" / "confidence.json").read_text())
    assert summary["method"] == "least squares of 2 members, combined" and 0 <= summary["calibration"]["coverage"] <= 1
    config.model.external_input = "field"
    field = tmp_path / "field.yaml"
    field.write_text(dump_config(config))
    capsys.readouterr()
    assert main(["ensemble", str(field), *args[2:], "--out", str(tmp_path / "never")]) == 2
    assert "multiplicative input" in capsys.readouterr().err and not (tmp_path / "never").exists()


def test_a_coverage_curve_scores_the_intervals_each_level_builds():
    rng = np.random.default_rng(3)
    truth = rng.normal(size=(30, 30))
    weights = [truth + rng.normal(scale=0.1, size=truth.shape) for _ in range(5)]

    def at(q: float) -> EdgeConfidence:
        return ensemble_confidence(weights, q)

    curve = coverage_curve(at, truth, levels=[0.5, 0.9])
    assert curve["coverage"] == [calibration(at(q), truth)["coverage"] for q in (0.5, 0.9)]
    assert 0.8 < curve["coverage"][1] < 1.0
