"""Evaluation and the HTML report on tiny runs, with and without ground truth; the one-command demo."""

import json
import re
import shutil

import numpy as np
import pytest

from circuitgnn import simulate
from circuitgnn.analyze.evaluate import evaluate_run
from circuitgnn.cli import build_parser, main
from circuitgnn.config import config_from_dict, dump_config, load_config
from circuitgnn.errors import DatasetError
from circuitgnn.report.html import build_report
from circuitgnn.train.trainer import Trainer
from tests.conftest import tiny_config

TRAINING = {
    "n_epochs": 2,
    "iterations_per_epoch": 30,
    "log_every": 10,
    "checkpoint_every": 30,
    "batch_size": 4,
    "clustering": {"every_epochs": 1, "refit_steps": 2, "max_types": 4},
}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("rep")
    cfg = tiny_config(n_neurons=30, n_frames=1000)
    simulate(cfg, root / "data", progress=False, figure=False)
    cfg = config_from_dict({**cfg.model_dump(mode="json"), "model": {"hidden": 8}, "training": TRAINING})
    Trainer(cfg, root / "data", root / "run", progress=False).fit()
    return root


def test_evaluate_writes_every_metric(tiny_run):
    m = evaluate_run(tiny_run / "run")
    for key in (
        "W_r2",
        "W_slope",
        "W_r2_raw",
        "W_slope_raw",
        "types_kmeans_k",
        "types_kmeans_accuracy",
        "types_kmeans_ari",
        "types_hierarchical_accuracy",
        "phi_error_per_type",
        "psi_error_per_type",
        "rollout_r2_400",
        "rollout_slope_400",
        "rollout_r2_800",
        "rollout_curve",
        "generalization_S5_r2_400",
        "generalization_S6_r2_800",
        "symbolic_phi",
        "symbolic_psi",
    ):
        assert key in m, key
    assert len(m["phi_error_per_type"]) == 4 and m["skipped"] == {}
    assert json.loads((tiny_run / "run" / "metrics.json").read_text())["W_r2"] == m["W_r2"]


def test_report_has_every_section_and_figure(tiny_run):
    page = build_report(tiny_run / "run", recompute=True).read_text()
    for section in ("summary", "activity", "connectivity", "embeddings", "functions", "rollout", "training", "formulas", "config"):
        assert f'<section id="{section}">' in page, section
    assert len(re.findall(r'src="data:image/png;base64,[A-Za-z0-9+/=]{1000,}"', page)) == 6
    assert "W R^2" in page and "Skipped" not in page and "n_neurons: 30" in page


def test_report_without_ground_truth_says_what_was_skipped(tiny_run, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tiny_run / "data", data)
    shutil.rmtree(data / "truth")
    cfg = config_from_dict({"name": "rec", "model": {"hidden": 8}, "training": TRAINING})
    Trainer(cfg, data, tmp_path / "run", progress=False).fit()
    m = evaluate_run(tmp_path / "run")
    assert "W_r2" not in m and set(m["skipped"]) >= {"connectivity", "types", "functions"}
    assert "rollout_r2_400" in m and "recorded frame" in m["rollout_method"]
    page = build_report(tmp_path / "run").read_text()
    assert "Skipped" in page and "no ground truth" in page
    for section in ("summary", "activity", "connectivity", "embeddings", "functions", "rollout", "training"):
        assert f'<section id="{section}">' in page, section


def test_missing_dataset_or_checkpoint_is_a_clear_error(tiny_run, tmp_path):
    shutil.copytree(tiny_run / "run", tmp_path / "run")
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    info["dataset"] = str(tmp_path / "gone")
    (tmp_path / "run" / "run.json").write_text(json.dumps(info))
    with pytest.raises(DatasetError, match="is not a dataset folder: it was moved or deleted"):
        evaluate_run(tmp_path / "run")
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2


def test_demo_default_config_runs_end_to_end_in_a_test_sized_variant(tmp_path, capsys):
    default = build_parser().parse_args(["run"]).config
    assert default.endswith("quick.yaml")
    cfg = load_config(default)
    cfg.simulation.n_frames, cfg.simulation.n_neurons = 1000, 40
    cfg.training.n_epochs, cfg.training.iterations_per_epoch, cfg.training.log_every = 2, 20, 10
    small = tmp_path / "demo.yaml"
    small.write_text(dump_config(cfg))
    assert main(["run", str(small), "--out", str(tmp_path / "demo"), "--quiet"]) == 0
    out = capsys.readouterr().out
    for words in ("W R^2 (corrected", "number of types found (K-means)", "forecast R^2 at 400 steps", "generalisation S5", "report"):
        assert words in out, words
    assert (tmp_path / "demo" / "run" / "report.html").is_file() and (tmp_path / "demo" / "run" / "metrics.json").is_file()
    # a second call reuses the dataset and the finished run
    assert main(["run", str(small), "--out", str(tmp_path / "demo"), "--quiet"]) == 0
    assert "exists: reusing it" in capsys.readouterr().out


def test_symbolic_command_writes_formulas_with_the_truth(tiny_run, capsys):
    assert main(["symbolic", str(tiny_run / "run")]) == 0
    out = capsys.readouterr().out
    assert "phi [cluster 0]" in out and "(true: " in out
    sym = json.loads((tiny_run / "run" / "symbolic.json").read_text())
    assert len(sym["phi"]) == sym["n_clusters"] and len(sym["psi"]) == 1 and sym["psi"][0]["true"] == "tanh(x)"
    assert main(["symbolic", str(tiny_run / "run"), "--backend", "pysr"]) == 2
    assert "pysr" in capsys.readouterr().err


def test_confidence_command_and_its_report_section(tiny_run, capsys):
    run = tiny_run / "run"
    assert main(["confidence", str(run), "--top", "3"]) == 0
    out = capsys.readouterr().out
    assert "least squares given the learned functions" in out and "calibration" in out
    summary = json.loads((run / "confidence.json").read_text())
    assert 0 <= summary["calibration"]["coverage"] <= 1 and summary["coverage_curve"]["level"][0] == 0.5
    page = build_report(run).read_text()
    assert 'id="confidence"' in page and "Connections confidently non-zero" in page and "P(W != 0)" in page
    assert summary["null_width"] is None
    assert main(["confidence", str(run), "--top", "3", "--empirical-null"]) == 0
    assert "widened by the empirical null" in capsys.readouterr().out
    widened = json.loads((run / "confidence.json").read_text())
    assert widened["null_width"] > 0 and widened["calibration"]["coverage"] >= summary["calibration"]["coverage"]
    assert "widened by the empirical null" in build_report(run).read_text()
    assert main(["confidence", str(run), "--level", "1.5"]) == 2
    assert summary["own_degree"] == 3 and "own terms of degree 3" in out
    with np.load(run / "confidence.npz") as z:
        own_mean = z["mean"]
    assert main(["confidence", str(run), "--top", "3", "--own-degree", "none"]) == 0
    assert "phi* as learned" in capsys.readouterr().out
    assert json.loads((run / "confidence.json").read_text())["own_degree"] is None
    with np.load(run / "confidence.npz") as z:
        assert not np.allclose(z["mean"], own_mean)
    with pytest.raises(SystemExit):
        main(["confidence", str(run), "--own-degree", "-1"])
    assert "expected a whole number >= 0 or 'none'" in capsys.readouterr().err


def test_report_lists_warnings_of_the_evaluation_and_the_data(tiny_run, tmp_path):
    """The transposed-truth warning of the evaluation and a rank-deficient dataset appear on the page (issue 15)."""
    from types import SimpleNamespace

    from circuitgnn.report.html import _data_warnings

    shutil.copytree(tiny_run / "run", tmp_path / "run")
    metrics = evaluate_run(tmp_path / "run")
    metrics["warnings"] = ["the learned W matches the transpose of the true W"]
    (tmp_path / "run" / "metrics.json").write_text(json.dumps(metrics))
    page = build_report(tmp_path / "run").read_text()
    assert "<h3>Warnings</h3>" in page and "matches the transpose" in page
    short = SimpleNamespace(meta={"informative": {"rank": 7, "rank_neurons": 30}}, n_neurons=30)
    assert "only 7 independent directions of 30" in _data_warnings(short)[0]
    assert _data_warnings(SimpleNamespace(meta={"summary": {"activity_rank": 30}}, n_neurons=30)) == []


def test_the_partial_correlation_reference_reads_a_bounded_sample(tmp_path, monkeypatch):
    """Regression (issue 20, N = 8,000 at 100,000 frames): the evaluation's reference partial correlation read every
    training frame in float64 and was killed for memory at 22 GB."""
    import numpy as np

    from circuitgnn.analyze import evaluate as evaluate_module
    from circuitgnn.config import ModelConfig
    from circuitgnn.model.gnn import GNN

    ds = simulate(
        tiny_config(n_neurons=30, n_frames=400, connectivity={"filling_factor": 0.3}), tmp_path / "d", progress=False, figure=False
    ).dataset
    seen = []
    real = evaluate_module.partial_correlation
    monkeypatch.setattr(evaluate_module, "PARTIAL_CORRELATION_VALUES", 30 * 100)
    monkeypatch.setattr(evaluate_module, "partial_correlation", lambda x: (seen.append(x.shape), real(x))[1])
    out = evaluate_module._edge_detection(GNN(ModelConfig(hidden=4), 30), ds, ds.truth.connectivity)
    assert seen and seen[0][0] <= 100 and seen[0][1] == 30
    assert 0 <= out["W_edge_auc_partial_correlation"] <= 1 and np.isfinite(out["W_edge_auc"])
