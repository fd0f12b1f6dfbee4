import subprocess
import sys
from pathlib import Path

import circuitgnn
from circuitgnn.cli import main

QUICK = str(Path(circuitgnn.__file__).parent / "configs" / "quick.yaml")

ROOT = Path(__file__).resolve().parents[1]


def test_simulate_command_writes_dataset_figure_and_summary(tmp_path, capsys):
    out = tmp_path / "quick"
    assert main(["simulate", str(ROOT / QUICK), "--out", str(out), "--frames", "500", "--quiet"]) == 0
    text = capsys.readouterr().out
    for words in ("N = 200 neurons", "T = 500 frames", "spectral radius", "activity", "steps/s"):
        assert words in text
    assert (out / "meta.json").is_file() and (out / "simulation.png").is_file()
    assert main(["simulate", str(ROOT / QUICK), "--out", str(out), "--frames", "500", "--quiet"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["info", str(out), "--verify"]) == 0
    assert "checksums    ok" in capsys.readouterr().out


def test_bad_config_fails_before_any_work_with_the_field_name(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("simulation:\n  dt: 0\n  n_neuronz: 4\n")
    assert main(["simulate", str(bad), "--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert "simulation.dt" in err and "simulation.n_neuronz: unknown key" in err
    assert not (tmp_path / "d").exists()


def test_console_script_is_installed():
    proc = subprocess.run([sys.executable, "-m", "circuitgnn.cli", "config-help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "simulation.connectivity.filling_factor" in proc.stdout


def test_options_out_of_range_are_named_not_tracebacks(tmp_path, capsys):
    """Regression: --frames 0, --seed -1 and --max-minutes -1 ended in raw pydantic or numpy tracebacks."""
    for args in (
        ["simulate", QUICK, "--out", str(tmp_path / "d"), "--frames", "0"],
        ["simulate", QUICK, "--out", str(tmp_path / "d"), "--seed", "-1"],
    ):
        assert main(args) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: invalid config the command line:") and "Traceback" not in err
        assert not (tmp_path / "d").exists()


def test_counts_below_their_range_are_refused_by_the_parser(tmp_path, capsys):
    """Regression: --max-iterations -1 and --top -1 were taken (a negative slice printed all but the last connection)."""
    import pytest

    for args in (["train", QUICK, "--data", "d", "--out", "r", "--max-iterations", "-1"], ["confidence", "r", "--top", "-1"]):
        with pytest.raises(SystemExit) as stop:
            main(args)
        assert stop.value.code == 2
        assert "expected a whole number >=" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_max_iterations_below_one_is_named_by_the_trainer(tmp_path):
    import pytest

    from circuitgnn.errors import ConfigError
    from circuitgnn.train.trainer import Trainer
    from tests.conftest import tiny_config

    assert main(["simulate", QUICK, "--out", str(tmp_path / "d"), "--frames", "50", "--no-figure", "--quiet"]) == 0
    trainer = Trainer(tiny_config(), tmp_path / "d", None, progress=False)
    with pytest.raises(ConfigError, match="max_iterations must be a whole number >= 0"):
        trainer.fit(max_iterations=-1)


def test_a_dataset_folder_with_a_broken_meta_json_is_named(tmp_path):
    """Regression: meta.json holding null or lacking arrays or dt, and float64 arrays, gave KeyError, AttributeError or
    a dtype error deep in training."""
    import json

    import numpy as np
    import pytest

    from circuitgnn.data.dataset import Dataset
    from circuitgnn.errors import DatasetError

    ds = tmp_path / "d"
    assert main(["simulate", QUICK, "--out", str(ds), "--frames", "20", "--no-figure", "--quiet"]) == 0
    good = json.loads((ds / "meta.json").read_text())
    broken = {
        "null": None,
        "no arrays": {k: v for k, v in good.items() if k != "arrays"},
        "no dt": {k: v for k, v in good.items() if k != "dt"},
        "float64": {**good, "arrays": {**good["arrays"], "x": {**good["arrays"]["x"], "dtype": "float64"}}},
        "entry": {**good, "arrays": {**good["arrays"], "x": {"file": "x.npy"}}},
    }
    expected = {
        "null": "does not describe",
        "no arrays": "'arrays' must map",
        "no dt": "'dt'",
        "float64": "is float64",
        "entry": "needs 'file'",
    }
    for name, meta in broken.items():
        (ds / "meta.json").write_text(json.dumps(meta))
        with pytest.raises(DatasetError, match=expected[name]):
            Dataset(ds)
    (ds / "meta.json").write_text(json.dumps(good))
    np.save(ds / "x.npy", np.load(ds / "x.npy").astype(np.float64))  # the file itself changed type
    with pytest.raises(DatasetError, match="x.npy: shape .* float64, expected .* float32"):
        Dataset(ds)
