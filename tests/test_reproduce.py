"""The reproduction runner and scoreboard, on a tiny experiment that trains in seconds."""

import json
from pathlib import Path

import pytest
import yaml

from circuitgnn.cli import main
from circuitgnn.config import Coefficient, dump_config, load_config
from circuitgnn.errors import CircuitGNNError, ConfigError
from circuitgnn.reproduce.manifest import DEFAULT_MANIFEST, experiment_config, load_manifest
from circuitgnn.reproduce.runner import ExperimentPaths, record_failure, reproduce_experiment
from circuitgnn.reproduce.scoreboard import (
    README_BEGIN,
    README_END,
    _hardware,
    _missed,
    _trend,
    applied,
    build_row,
    diagnosis,
    markdown,
    reproducing_command,
    table,
    update_readme,
    write_scoreboard,
)
from circuitgnn.reproduce.series import curve_label, series_figure

TINY = {
    "name": "tiny",
    "simulation": {
        "n_neurons": 40,
        "n_frames": 400,
        "burn_in": 50,
        "seed": 3,
        "neurons": {"n_types": 2, "self_coupling": [1, 2], "decay": [1, 2]},
    },
    "training": {
        "batch_size": 4,
        "n_epochs": 2,
        "iterations_per_epoch": 30,
        "log_every": 10,
        "checkpoint_every": 30,
        "clustering": {"every_epochs": 1},
    },
    "analysis": {"symbolic": False},
}


def write_manifest(tmp_path: Path, **entry) -> Path:
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    exp = {
        "id": "tiny",
        "title": "Tiny",
        "figure": "none",
        "config": "tiny.yaml",
        "minutes": 5,
        "series": ["frames"],
        "paper": {"W_r2": 1.0, "frames": 800, "iterations": 100, "batch_size": 8},
        "targets": {"W_r2": 0.999, "type_accuracy": 0.5},
    } | entry
    path = tmp_path / "manifest.yaml"
    path.write_text(yaml.safe_dump({"experiments": [exp]}))
    return path


def test_packaged_manifest_covers_every_paper_config_and_its_overrides_apply():
    manifest = load_manifest(DEFAULT_MANIFEST)
    configs = {e.config.name for e in manifest.experiments}
    paper = {p.name for p in (DEFAULT_MANIFEST.parent / "paper").glob("*.yaml")}
    assert paper <= configs
    large = manifest.select(["supp11_n8000"])[0]
    cfg = experiment_config(large)
    assert cfg.simulation.n_neurons == 8000 and cfg.simulation.n_frames == large.cpu_overrides["simulation.n_frames"]
    assert experiment_config(large, full_size=True).simulation.n_frames == 100000
    assert (cfg.training.iterations_per_epoch, experiment_config(large, full_size=True).training.iterations_per_epoch) == (2000, None)


def test_manifest_errors_name_what_is_wrong(tmp_path):
    with pytest.raises(ConfigError, match="manifest file not found"):
        load_manifest(tmp_path / "none.yaml")
    path = write_manifest(tmp_path, minutes=-1)
    with pytest.raises(ConfigError, match=r"experiments\.0\.minutes"):
        load_manifest(path)
    path = write_manifest(tmp_path, config="missing.yaml")
    with pytest.raises(ConfigError, match="missing.yaml not found"):
        load_manifest(path)
    manifest = load_manifest(write_manifest(tmp_path, cpu_overrides={"simulation.n_framez": 3}))
    with pytest.raises(ConfigError, match="no field 'n_framez'"):
        experiment_config(manifest.experiments[0])
    with pytest.raises(ConfigError, match="unknown experiment"):
        manifest.select(["nope"])


def test_reproduce_runs_resumes_and_scores_a_tiny_experiment(tmp_path):
    manifest = load_manifest(write_manifest(tmp_path))
    exp = manifest.experiments[0]
    work, results = tmp_path / "work", tmp_path / "results"
    said: list[str] = []
    paths = reproduce_experiment(exp, work, progress=False, say=said.append)
    info = json.loads((paths.run / "run.json").read_text())
    assert info["status"] == "finished" and info["global_iteration"] == 60
    metrics = json.loads((paths.run / "metrics.json").read_text())
    assert metrics["iterations"] == 60

    said.clear()
    reproduce_experiment(exp, work, progress=False, say=said.append)  # nothing left to do
    assert any("reusing" in s for s in said) and any("training done" in s for s in said)
    assert not any("evaluating" in s for s in said)

    rows = write_scoreboard(manifest, work, results)
    row = rows[0]
    assert row["status"] == "schedule finished" and row["iterations"] == 60 and row["frames"] == 400
    assert row["W_r2"] == pytest.approx(metrics["W_r2"])
    assert row["samples_fraction"] == pytest.approx(60 * 4 / 800) and row["frames_fraction"] == pytest.approx(0.5)
    assert any("W_r2" in m for m in row["missed"])  # a 0.999 target on 60 iterations is missed, and said so
    assert row["diagnosis"]
    board = (results / "scoreboard.md").read_text()
    assert "no target (measured only)" in table([row | {"targets": {}, "missed": []}])
    assert "**missed**" in board and "circuitgnn reproduce tiny" in board
    assert json.loads((results / "scoreboard.json").read_text())[0]["id"] == "tiny"
    assert (results / "series_frames.png").stat().st_size > 0
    assert set(row["resources"]) == {"simulate", "train", "evaluate"} and row["peak_memory_mb"] > 10
    assert "peak memory" in board
    assert "the paper's metric" not in board  # no stimulus in this experiment
    stim = markdown([row | {"omega_r2": 0.97, "omega_slope": 0.93, "omega_sqrt_r2": 0.98, "omega_sqrt_slope": 1.01}])
    assert "R² 0.970, slope 0.930 with each field divided by its mean" in stim and "R² 0.980, slope 1.010" in stim
    assert "Beside other methods" not in board
    assert "## Beside other methods (`circuitgnn baselines`)\n\n| dataset |" in markdown([row], "| dataset |")


def test_changed_config_is_not_resumed_silently(tmp_path):
    manifest = load_manifest(write_manifest(tmp_path))
    work = tmp_path / "work"
    (work / "tiny").mkdir(parents=True)
    (work / "tiny" / "config.yaml").write_text("name: other\n")
    with pytest.raises(ConfigError, match="differs from the config.*--restart"):
        reproduce_experiment(manifest.experiments[0], work, progress=False, say=lambda s: None)
    (work / "tiny" / "run").mkdir()
    (work / "tiny" / "run" / "log.jsonl").write_text("")  # a first attempt killed before its first checkpoint
    paths = reproduce_experiment(manifest.experiments[0], work, restart=True, progress=False, say=lambda s: None)
    assert (paths.run / "metrics.json").is_file()


def test_more_epochs_continue_a_finished_run_and_other_changes_are_refused(tmp_path):
    # cpu_overrides apply to the CPU sizing, which a CUDA machine would skip by default.
    work = tmp_path / "work"
    exp = load_manifest(write_manifest(tmp_path)).experiments[0]
    paths = reproduce_experiment(exp, work, full_size=False, progress=False, say=lambda s: None)
    longer = load_manifest(write_manifest(tmp_path, cpu_overrides={"training.n_epochs": 3})).experiments[0]
    said: list[str] = []
    reproduce_experiment(longer, work, full_size=False, progress=False, say=said.append)
    assert any("grew to 3 epochs" in s for s in said) and any("evaluating" in s for s in said)
    assert json.loads((paths.run / "run.json").read_text())["global_iteration"] == 90
    assert json.loads((paths.run / "metrics.json").read_text())["iterations"] == 90
    assert yaml.safe_load(paths.config.read_text())["training"]["n_epochs"] == 3
    with pytest.raises(ConfigError, match="differs from the config"):  # fewer epochs is another experiment
        reproduce_experiment(exp, work, full_size=False, progress=False, say=lambda s: None)
    other = load_manifest(write_manifest(tmp_path, cpu_overrides={"training.n_epochs": 4, "training.lr_w": 0.1})).experiments[0]
    with pytest.raises(ConfigError, match="differs from the config"):
        reproduce_experiment(other, work, full_size=False, progress=False, say=lambda s: None)


def test_a_run_killed_before_its_first_checkpoint_is_started_again(tmp_path):
    manifest = load_manifest(write_manifest(tmp_path))
    run = tmp_path / "work" / "tiny" / "run"
    run.mkdir(parents=True)
    (run / "log.jsonl").write_text("")
    paths = reproduce_experiment(manifest.experiments[0], tmp_path / "work", progress=False, say=lambda s: None)
    assert json.loads((paths.run / "run.json").read_text())["status"] == "finished"


def test_unrun_experiments_get_a_plain_row_and_the_readme_block_is_replaced(tmp_path, capsys):
    path = write_manifest(tmp_path)
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{README_BEGIN}\nold table\n{README_END}\n\nafter\n")
    args = ["reproduce", "--manifest", str(path), "--work", str(tmp_path / "w"), "--results", str(tmp_path / "r"), "--collect"]
    assert main([*args, "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert "old table" not in text and "not run" in text and text.endswith("after\n")
    assert "tiny" in capsys.readouterr().out
    readme.write_text("no markers")
    with pytest.raises(CircuitGNNError, match="no block generated by `circuitgnn reproduce"):
        update_readme(readme, [])


def test_collect_with_named_experiments_writes_their_rows_alone(tmp_path, capsys):
    path = write_manifest(tmp_path)
    two = yaml.safe_load(path.read_text())
    two["experiments"].append(two["experiments"][0] | {"id": "other", "series": []})
    path.write_text(yaml.safe_dump(two))
    results = tmp_path / "r"
    args = ["reproduce", "--manifest", str(path), "--work", str(tmp_path / "w"), "--results", str(results), "--collect"]
    (tmp_path / "w" / "other").mkdir(parents=True)  # trained with another budget than the manifest's 5 minutes
    (tmp_path / "w" / "other" / "resources.json").write_text(json.dumps({"train": {"wall_seconds": 1, "budget_minutes": 3}}))
    capsys.readouterr()
    assert main([*args[:-3], "--collect", "other"]) == 2  # into the default results folder: refused
    assert main([*args, "other", "--readme", str(tmp_path / "README.md")]) == 2
    assert capsys.readouterr().err.count("its own --results folder") == 2
    assert main([*args, "other"]) == 0
    [row] = json.loads((results / "scoreboard.json").read_text())
    assert row["id"] == "other" and row["command"] == "circuitgnn reproduce other --minutes 3"
    assert not (results / "series_frames.png").exists() and "series_frames" not in (results / "scoreboard.md").read_text()
    assert main(args) == 0
    assert [r["id"] for r in json.loads((results / "scoreboard.json").read_text())] == ["tiny", "other"]


def test_running_named_experiments_into_their_own_results_folder_writes_their_rows_alone(tmp_path):
    """Regression (session 9): running one experiment with its own --results wrote every manifest row, the others as
    "not run", and a folder meant for one row held the whole table."""
    path = write_manifest(tmp_path)
    two = yaml.safe_load(path.read_text())
    two["experiments"].append(two["experiments"][0] | {"id": "other", "series": []})
    path.write_text(yaml.safe_dump(two))
    results = tmp_path / "r"
    assert main(["reproduce", "--manifest", str(path), "--work", str(tmp_path / "w"), "--results", str(results), "--quiet", "tiny"]) == 0
    assert [row["id"] for row in json.loads((results / "scoreboard.json").read_text())] == ["tiny"]


def test_another_work_folder_needs_its_own_results_folder_before_anything_runs(tmp_path, capsys, monkeypatch):
    """Regression: `reproduce ID --work OTHER` rebuilt results/scoreboard.md from OTHER alone (every other row 'not run')."""
    monkeypatch.chdir(tmp_path)
    path = write_manifest(tmp_path)
    assert main(["reproduce", "--manifest", str(path), "--work", "w", "tiny"]) == 2
    assert "its own --results folder" in capsys.readouterr().err
    assert not (tmp_path / "w").exists() and not (tmp_path / "results").exists()
    assert main(["reproduce", "--manifest", str(path), "--work", "w", "--list"]) == 0  # listing writes nothing


def test_a_rows_command_names_the_full_size_and_the_budget_it_ran_with(tmp_path):
    exp = load_manifest(write_manifest(tmp_path, cpu_overrides={"training.n_epochs": 3})).experiments[0]
    paths = ExperimentPaths(tmp_path / "work" / "tiny")
    assert reproducing_command(exp, None, None) == "circuitgnn reproduce tiny"  # nothing saved, budget unknown
    paths.root.mkdir(parents=True)
    paths.config.write_text(dump_config(experiment_config(exp)))
    assert reproducing_command(exp, load_config(paths.config), 5) == "circuitgnn reproduce tiny"  # CPU sizing, the manifest's budget
    paths.config.write_text(dump_config(experiment_config(exp, full_size=True)))
    assert reproducing_command(exp, load_config(paths.config), 3) == "circuitgnn reproduce tiny --full-size --minutes 3"


def test_a_run_stopped_at_its_budget_is_not_trained_again(tmp_path):
    manifest = load_manifest(write_manifest(tmp_path, minutes=0.08))
    exp, work = manifest.experiments[0], tmp_path / "work"
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(TINY | {"training": TINY["training"] | {"n_epochs": 10000}}))
    paths = reproduce_experiment(exp, work, progress=False, say=lambda s: None)
    assert json.loads((paths.run / "run.json").read_text())["status"] == "stopped"
    said: list[str] = []
    reproduce_experiment(exp, work, progress=False, say=said.append)
    assert any("training done" in s for s in said) and not any("evaluating" in s for s in said)
    row = build_row(exp, work)
    assert row["status"] == "stopped at its budget" and row["budget_minutes"] == 0.08


def test_failures_and_unmeasured_values_are_rows_that_say_so(tmp_path):
    manifest = load_manifest(write_manifest(tmp_path))
    exp = manifest.experiments[0]
    record_failure(tmp_path / "work", exp, MemoryError("CUDA out of memory"))
    row = build_row(exp, tmp_path / "work")
    assert row["status"] == "failed" and "CUDA out of memory" in row["failure"]
    assert _missed({"W_r2": float("nan"), "type_accuracy": None}, exp) == ["W_r2: nan", "type_accuracy: not measured"]
    assert "Tesla" in _hardware({"device": "cuda:0", "environment": {"cuda_device": "Tesla X", "cpu_count": "2"}})
    assert "2 cores" in _hardware({"device": "cpu", "environment": {"cpu_model": "EPYC", "cpu_count": "2"}})
    rows = [
        {"W_r2": None, "frames": 10},
        {"W_r2": 0.5, "frames": 20, "paper": {"W_r2": 0.9}, "batch_size": 8, "curve": [{"iteration": 1, "W_r2": 0.5}]},
    ]
    series_figure("frames", rows, tmp_path / "one_point.png")  # one measured point, one without W R^2
    assert (tmp_path / "one_point.png").stat().st_size > 0
    assert curve_label("sparsity", {"filling_factor": 0.05, "w_shrink": 0.05}) == "5% filled (proximal L1)"
    assert curve_label("sparsity", {"filling_factor": 0.5, "w_shrink": 0.0}) == "50% filled"
    late = Coefficient(value=0.05, from_epoch=3)  # a shrink scheduled after the epochs a short run reached
    assert applied(late, [{"epoch": 0}, {"epoch": 2}]) == 0.0 and applied(late, [{"epoch": 3}]) == 0.05
    assert applied(late, []) == 0.0


def test_a_width_target_is_met_from_below():
    """psi_width_error is better lower: a row misses it above the target and meets it below."""
    (exp,) = load_manifest(DEFAULT_MANIFEST).select(["supp13_transmitters_warm"])
    assert exp.targets.psi_width_error == 0.05
    base = {"W_r2": 0.99, "type_accuracy": 1.0}
    assert _missed(base | {"psi_width_error": 0.026}, exp) == []
    assert _missed(base | {"psi_width_error": 0.08}, exp) == ["psi_width_error 0.080 > 0.05"]
    assert _missed(base, exp) == ["psi_width_error: not measured"]


def test_cli_rejects_an_unnamed_restart_and_a_non_positive_budget(tmp_path, capsys):
    path = str(write_manifest(tmp_path))
    assert main(["reproduce", "--manifest", path, "--restart"]) == 2
    assert "name them" in capsys.readouterr().err
    assert main(["reproduce", "--manifest", path, "--minutes", "0", "tiny"]) == 2
    assert "--minutes must be positive" in capsys.readouterr().err


def test_diagnosis_names_the_missed_metric_and_tells_rising_from_flat():
    rising = [{"iteration": i, "W_r2": 0.5 + 0.01 * i, "type_accuracy": 0.7} for i in range(1, 21)]
    assert _trend(rising) == pytest.approx(0.05)
    base = {
        "status": "stopped at its budget",
        "missed": ["W_r2 0.7 < 0.95"],
        "samples_fraction": 0.01,
        "train_minutes": 5,
        "targets": {"W_r2": 0.95, "type_accuracy": 0.95},
        "W_r2": 0.7,
        "type_accuracy": 1.0,
    }
    text = diagnosis(base | {"trends": {"W_r2": _trend(rising), "type_accuracy": _trend(rising, "type_accuracy")}})
    assert "W_r2 still rose" in text and "more training would help" in text and "type_accuracy" not in text
    text = diagnosis(base | {"type_accuracy": 0.7, "trends": {"W_r2": 0.0, "type_accuracy": 0.0}})
    assert "W_r2 changed by +0.000" in text and "type_accuracy changed" in text
    assert diagnosis(base | {"missed": []}) == ""


def test_a_calcium_experiment_beyond_the_paper_is_deconvolved_trained_and_scored_in_its_own_table(tmp_path, capsys):
    calcium = json.loads(json.dumps(TINY))
    calcium["simulation"]["connectivity"] = {"filling_factor": 0.3}
    calcium["simulation"]["observation"] = {"every": 2, "noise": 0.02, "indicator": {"tau": 0.2}}
    (tmp_path / "calcium.yaml").write_text(yaml.safe_dump(calcium))
    exp = {"id": "calcium", "title": "Calcium", "figure": "issue 17", "config": "calcium.yaml", "minutes": 5}
    exp |= {"overrides": {"simulation.observation.unrecorded": 0.1}, "targets": {"W_edge_auc": 0.4}}
    path = tmp_path / "manifest.yaml"
    path.write_text(yaml.safe_dump({"experiments": [exp]}))
    manifest = load_manifest(path)
    said: list[str] = []
    paths = reproduce_experiment(manifest.experiments[0], tmp_path / "work", progress=False, say=said.append)
    assert any("deconvolving" in s for s in said) and (paths.deconvolved / "meta.json").is_file()
    assert json.loads((paths.run / "run.json").read_text())["dataset"] == str(paths.deconvolved.resolve())
    assert load_config(paths.config).simulation.observation.unrecorded == 0.1
    rows = write_scoreboard(manifest, tmp_path / "work", tmp_path / "results")
    row = rows[0]
    assert row["beyond"] and row["paper"] is None and row["samples_fraction"] is None and row["n_neurons"] == 36
    assert 0 <= row["W_edge_auc"] <= 1 and 0 <= row["W_edge_auc_partial_correlation"] <= 1
    board = (tmp_path / "results" / "scoreboard.md").read_text()
    assert "**Beyond the paper**" in board and "edge AUC" in board and "frames 400" in board
    assert (paths.run / "report.html").is_file()
