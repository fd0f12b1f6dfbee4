"""A real full disk (a small tmpfs, mounted in a user namespace where the machine allows it) during simulate,
checkpoint and log writes: a named error, nothing that looks complete, and a run that resumes (issue 15).

The other full-disk tests monkeypatch the writes; this one lets the kernel refuse them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SCRIPT = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path

    import torch

    from circuitgnn.config import config_from_dict
    from circuitgnn.errors import DatasetError
    from circuitgnn.simulate.run import simulate
    from circuitgnn.train.run_folder import RunWriteError, read_log
    from circuitgnn.train.trainer import Trainer
    from tests.conftest import tiny_config

    torch.set_num_threads(1)
    disk, local = Path(sys.argv[1]), Path(sys.argv[2])

    def fill(leave):
        free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
        with open(disk / "filler", "wb") as f:
            f.write(b"0" * max(free - leave, 0))

    # 1. a simulation larger than the disk: named, and nothing published
    try:
        simulate(tiny_config(n_neurons=40, n_frames=6000), disk / "d", progress=False, figure=False)
        print("SIMULATE no error")
    except DatasetError as err:
        print("SIMULATE named:", "disk full" in str(err), "left:", sorted(p.name for p in disk.iterdir()))

    # 2. training whose run folder fills up: named, a whole log, and a resume equal to an uninterrupted run
    simulate(tiny_config(n_neurons=30, n_frames=400), local / "d", progress=False, figure=False)
    training = {"n_epochs": 3, "iterations_per_epoch": 20, "batch_size": 4, "log_every": 5, "checkpoint_every": 10,
                "clustering": {"every_epochs": 1, "refit_steps": 3, "max_types": 4}}
    cfg = config_from_dict({"name": "t", "model": {"hidden": 8}, "training": training})
    full = Trainer(cfg, local / "d", local / "full", progress=False).fit()
    # room for the small files (a page each) and one checkpoint, not for a second beside it while it is replaced
    fill(leave=int(1.5 * (local / "full" / "checkpoint.pt").stat().st_size) + 6 * 4096)
    try:
        Trainer(cfg, local / "d", disk / "r", progress=False).fit()
        print("TRAIN no error")
    except RunWriteError as err:
        print("TRAIN named:", "disk full" in str(err))
    (disk / "filler").unlink()
    lines = [line["iteration"] for line in read_log(disk / "r")]
    print("LOG whole:", lines == sorted(lines) and all(i % 5 == 0 for i in lines), lines)
    print("TMP left:", sorted(p.name for p in (disk / "r").iterdir() if ".tmp" in p.name))
    resumed = Trainer(cfg, local / "d", disk / "r", resume=True, progress=False).fit()
    a, b = full.model.state_dict(), resumed.model.state_dict()
    print("RESUMED equal:", all(torch.equal(a[k], b[k]) for k in a))
    """
)


def _tmpfs_works(tmp_path) -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = tmp_path / "probe"
    probe.mkdir()
    done = subprocess.run(["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=64k tmpfs {probe}"], capture_output=True)
    return done.returncode == 0


def test_a_real_full_disk_is_named_and_the_run_resumes(tmp_path):
    if not _tmpfs_works(tmp_path):
        pytest.skip("this machine does not allow mounting a tmpfs in a user namespace")
    disk, local = tmp_path / "disk", tmp_path / "local"
    disk.mkdir()
    local.mkdir()
    (tmp_path / "script.py").write_text(SCRIPT)
    command = f"mount -t tmpfs -o size=1m tmpfs {disk} && exec {sys.executable} {tmp_path / 'script.py'} {disk} {local}"
    root = Path(__file__).resolve().parents[1]  # the package from this checkout, installed or not
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root / "src"), str(root), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(["unshare", "-rm", "sh", "-c", command], capture_output=True, text=True, timeout=300, env=env)
    out = done.stdout
    assert done.returncode == 0, done.stderr[-3000:]
    assert "SIMULATE named: True left: []" in out, out
    assert "TRAIN named: True" in out, out
    assert "LOG whole: True" in out, out
    assert "TMP left: []" in out, out
    assert "RESUMED equal: True" in out, out
