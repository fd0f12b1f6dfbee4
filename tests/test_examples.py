"""Every example runs end to end (at a tiny size)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_fit_an_array_example_runs(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples/fit_an_array.py"),
            "--neurons",
            "40",
            "--frames",
            "2000",
            "--epochs",
            "1",
            "--save",
            str(tmp_path / "m.pt"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    ).stdout
    assert "types found" in out and "phi*[" in out and "against the truth: W R^2" in out
    assert "the loaded model predicts the same: True" in out
