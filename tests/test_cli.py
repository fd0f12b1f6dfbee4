import subprocess
import sys
from pathlib import Path

from circuitgnn.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_simulate_command_writes_dataset_figure_and_summary(tmp_path, capsys):
    out = tmp_path / "quick"
    assert main(["simulate", str(ROOT / "configs/quick.yaml"), "--out", str(out), "--frames", "500", "--quiet"]) == 0
    text = capsys.readouterr().out
    for words in ("N = 200 neurons", "T = 500 frames", "spectral radius", "activity", "steps/s"):
        assert words in text
    assert (out / "meta.json").is_file() and (out / "simulation.png").is_file()
    assert main(["simulate", str(ROOT / "configs/quick.yaml"), "--out", str(out), "--frames", "500", "--quiet"]) == 2
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
