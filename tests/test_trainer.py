"""The training loop: checkpoints, exact resume, interruption, divergence and bad input."""

import json

import numpy as np
import pytest
import torch

from circuitgnn import simulate
from circuitgnn.analyze.evaluate import training_scorer
from circuitgnn.config import config_from_dict
from circuitgnn.data.dataset import Dataset
from circuitgnn.device import pick_device
from circuitgnn.errors import ConfigError, DatasetError
from circuitgnn.train import events as events_module
from circuitgnn.train import trainer as trainer_module
from circuitgnn.train.run_folder import ResumeError, load_run, read_log
from circuitgnn.train.trainer import Trainer, TrainingDiverged
from tests.conftest import tiny_config


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "d"
    simulate(tiny_config(n_neurons=30, n_frames=400), path, progress=False, figure=False)
    return path


def small_config(**training):
    base = {
        "n_epochs": 3,
        "iterations_per_epoch": 20,
        "batch_size": 4,
        "log_every": 5,
        "checkpoint_every": 10,
        "clustering": {"every_epochs": 1, "refit_steps": 3, "max_types": 4},
        # the spies below replace total_loss, which a compiled step (auto: on a GPU) does not call
        "compile": "off",
    }
    base.update(training)
    return config_from_dict({"name": "t", "model": {"hidden": 8}, "training": base})


def params(model):
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def assert_same_params(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_log_and_checkpoints_on_a_cadence_of_minutes(small_data, tmp_path, monkeypatch):
    """log_every_minutes and checkpoint_every_minutes replace the iteration cadences (issue 20: large N)."""
    from circuitgnn.train import trainer as trainer_module

    clock = {"now": 0.0}

    def tick():  # each reading of the clock advances it by one second
        clock["now"] += 1.0
        return clock["now"]

    saved = []
    cfg = small_config(log_every=10**6, checkpoint_every=10**6, log_every_minutes=0.5, checkpoint_every_minutes=2.0)
    trainer = Trainer(cfg, small_data, tmp_path / "r", progress=False)
    original = trainer.save_checkpoint
    monkeypatch.setattr(trainer, "save_checkpoint", lambda *a: (saved.append(trainer.counters.global_iteration), original(*a)))
    monkeypatch.setattr(trainer_module.time, "perf_counter", tick)
    trainer.fit()
    iterations = [line["iteration"] for line in read_log(tmp_path / "r")]
    assert 2 < len(iterations) < 60 and len(saved) >= 2  # neither every step nor only at the end
    assert saved[-1] == 60 and len(saved) - 1 < len(iterations)


def test_run_folder_contents_and_log(small_data, tmp_path):
    ds = Dataset(small_data)
    run = Trainer(small_config(), ds, tmp_path / "r", progress=False, scorer=training_scorer(ds, small_config())).fit()
    files = {p.name for p in (tmp_path / "r").iterdir()}
    assert {"config.yaml", "run.json", "log.jsonl", "checkpoint.pt"} <= files
    info = json.loads((tmp_path / "r" / "run.json").read_text())
    assert info["status"] == "finished" and info["global_iteration"] == 60 and info["device"] == str(pick_device())
    log = read_log(tmp_path / "r")
    assert [line["iteration"] for line in log] == list(range(5, 61, 5))
    for key in (
        "loss_prediction",
        "loss_phi_zero",
        "lr_W",
        "lr_embedding",
        "train_seconds",
        "W_r2",
        "W_slope",
        "W_r2_raw",
        "type_accuracy",
    ):
        assert key in log[-1], key
    # clustering after epochs 0 and 1 freezes psi* and the embeddings for the next epoch
    assert [line["lr_psi"] for line in log if line["epoch"] == 1] == [0.0] * 4
    assert all(line["lr_W"] > 0 for line in log)
    loaded = load_run(tmp_path / "r")
    assert_same_params(params(loaded.model), params(run.model))
    assert loaded.config == run.config


def test_training_never_reads_the_truth_unless_a_scorer_is_passed(small_data, tmp_path, monkeypatch):
    """Without a scorer the log holds no ground-truth score, and the trained model is the same as with one."""
    monkeypatch.setattr(Dataset, "truth", property(lambda self: pytest.fail("training read the ground truth")))
    plain = Trainer(small_config(), small_data, tmp_path / "plain", progress=False).fit()
    assert not any(k.startswith(("W_", "type_")) for line in plain.log for k in line)
    monkeypatch.undo()
    ds = Dataset(small_data)
    scored = Trainer(small_config(), ds, tmp_path / "scored", progress=False, scorer=training_scorer(ds, small_config())).fit()
    assert "W_r2" in scored.log[-1]
    assert_same_params(params(plain.model), params(scored.model))


def test_a_run_without_a_folder_writes_nothing(small_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = Trainer(small_config(), small_data, None, progress=False).fit()
    assert run.path is None and len(run.log) == 12 and list(tmp_path.iterdir()) == []
    with pytest.raises(ResumeError, match="needs a run folder"):
        Trainer(small_config(), small_data, None, resume=True)


def test_clustering_stops_once_the_partition_repeats(small_data, tmp_path, monkeypatch):
    """With extensions.stop_clustering_at_ari, a clustering that repeats the previous partition ends clustering:
    psi* and the embeddings are no longer frozen, and a resume keeps that state."""
    from circuitgnn.train.clustering import Clustering

    fixed = np.arange(30) % 3
    monkeypatch.setattr(events_module, "cluster_neurons", lambda *a, **k: Clustering(fixed, 3, {}))

    def config(stop):
        return small_config(
            n_epochs=8, clustering={"every_epochs": 2, "refit_steps": 3, "max_types": 4}, extensions={"stop_clustering_at_ari": stop}
        )

    def frozen_epochs(log):
        return sorted({line["epoch"] for line in log if line["lr_psi"] == 0.0})

    def clusterings(name):
        return json.loads((tmp_path / name / "run.json").read_text())["clusterings"]

    on_schedule = Trainer(config(None), small_data, tmp_path / "schedule", progress=False).fit()
    assert frozen_epochs(on_schedule.log) == [2, 4, 6] and len(clusterings("schedule")) == 3
    stopping = Trainer(config(0.99), small_data, tmp_path / "stop", progress=False).fit()
    assert frozen_epochs(stopping.log) == [2]
    assert [r.get("stable", False) for r in clusterings("stop")] == [False, True]
    assert clusterings("stop")[1]["ari_with_previous"] == 1.0
    Trainer(config(0.99), small_data, tmp_path / "split", progress=False).fit(max_iterations=90)
    resumed = Trainer(config(0.99), small_data, tmp_path / "split", resume=True, progress=False).fit()
    assert_same_params(params(resumed.model), params(stopping.model))
    assert clusterings("split") == clusterings("stop")


def test_clustering_goes_on_while_the_partition_changes(small_data, tmp_path, monkeypatch):
    from circuitgnn.train.clustering import Clustering

    partitions = iter([np.arange(30) % 3, np.arange(30) % 2, np.arange(30) % 2])
    monkeypatch.setattr(events_module, "cluster_neurons", lambda *a, **k: Clustering(next(partitions), 3, {}))
    config = small_config(
        n_epochs=8, clustering={"every_epochs": 2, "refit_steps": 3, "max_types": 4}, extensions={"stop_clustering_at_ari": 0.99}
    )
    Trainer(config, small_data, tmp_path / "r", progress=False).fit()
    records = json.loads((tmp_path / "r" / "run.json").read_text())["clusterings"]
    assert [r.get("stable", False) for r in records] == [False, False, True]
    assert records[1]["ari_with_previous"] < 0.99


@pytest.mark.parametrize("adam_on_w", [True, False])
def test_w_solve_replaces_w_at_epoch_ends_and_resumes_exactly(small_data, tmp_path, adam_on_w):
    from circuitgnn.data.dataset import Dataset
    from circuitgnn.train.wsolve import solve_connectivity

    solve = {"every_epochs": 1, "frames": 100, "adam_on_w": adam_on_w}
    config = small_config(n_epochs=2, clustering={"enabled": False}, extensions={"w_solve": solve})
    full = Trainer(config, small_data, tmp_path / "full", progress=False).fit()
    # the last epoch ends with a solve: the final W is the least-squares W of the final phi* and psi*
    ds = Dataset(small_data)
    idx = np.linspace(0, ds.n_frames - 1, 100).astype(int)
    x, y = (torch.as_tensor(np.asarray(a[idx]), device=full.model.a.device) for a in (ds.x, ds.dxdt))
    torch.testing.assert_close(full.model.W.detach(), solve_connectivity(full.model, [(x, y)]), rtol=1e-4, atol=1e-5)
    # after the first solve (end of epoch 0), W takes Adam steps only with adam_on_w
    assert {line["lr_W"] > 0 for line in full.log if line["epoch"] == 1} == {adam_on_w}
    Trainer(config, small_data, tmp_path / "split", progress=False).fit(max_iterations=30)
    resumed = Trainer(config, small_data, tmp_path / "split", resume=True, progress=False).fit()
    assert_same_params(params(resumed.model), params(full.model))


def test_stop_and_resume_equals_uninterrupted_run(small_data, tmp_path):
    full = Trainer(small_config(), small_data, tmp_path / "full", progress=False).fit()
    Trainer(small_config(), small_data, tmp_path / "split", progress=False).fit(max_iterations=27)
    assert json.loads((tmp_path / "split" / "run.json").read_text())["status"] == "stopped"
    resumed = Trainer(small_config(), small_data, tmp_path / "split", resume=True, progress=False).fit()
    assert_same_params(params(resumed.model), params(full.model))
    # the stop itself adds one log line (the partial interval up to iteration 27)
    assert [line["iteration"] for line in resumed.log] == [5, 10, 15, 20, 25, 27, 30, 35, 40, 45, 50, 55, 60]


@pytest.mark.parametrize("norm", [False, True])
def test_the_trainer_passes_monotone_norm_to_the_loss(small_data, tmp_path, monkeypatch, norm):
    seen = []
    original = trainer_module.total_loss

    def spy(*args, **kwargs):
        seen.append(args[7] if len(args) > 7 else kwargs["monotone_norm"])
        return original(*args, **kwargs)

    monkeypatch.setattr(trainer_module, "total_loss", spy)
    cfg = small_config(n_epochs=1, iterations_per_epoch=3, regularization={"psi_monotone": 1.0}, extensions={"monotone_norm": norm})
    Trainer(cfg, small_data, tmp_path / "r", progress=False).fit()
    assert seen == [norm] * 3


def test_killed_run_resumes_from_its_last_checkpoint(small_data, tmp_path, monkeypatch):
    full = Trainer(small_config(), small_data, tmp_path / "full", progress=False).fit()
    original = trainer_module.total_loss
    calls = {"n": 0}

    def dying_loss(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 25:  # a crash between checkpoints (iterations 20 and 30): nothing is saved
            raise RuntimeError("power cut")
        return original(*args, **kwargs)

    monkeypatch.setattr(trainer_module, "total_loss", dying_loss)
    with pytest.raises(RuntimeError, match="power cut"):
        Trainer(small_config(), small_data, tmp_path / "killed", progress=False).fit()
    monkeypatch.setattr(trainer_module, "total_loss", original)
    assert torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=False)["counters"]["global_iteration"] == 20
    resumed = Trainer(small_config(), small_data, tmp_path / "killed", resume=True, progress=False).fit()
    assert_same_params(params(resumed.model), params(full.model))
    assert [line["iteration"] for line in resumed.log] == [line["iteration"] for line in full.log]


def test_ctrl_c_saves_a_checkpoint(small_data, tmp_path, monkeypatch):
    original = trainer_module.total_loss
    calls = {"n": 0}

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 14:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(trainer_module, "total_loss", interrupted)
    with pytest.raises(KeyboardInterrupt):
        Trainer(small_config(), small_data, tmp_path / "r", progress=False).fit()
    state = torch.load(tmp_path / "r" / "checkpoint.pt", weights_only=False)
    assert state["counters"]["global_iteration"] == 13
    assert json.loads((tmp_path / "r" / "run.json").read_text())["status"] == "interrupted"


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(small_data, tmp_path, monkeypatch):
    original = trainer_module.total_loss
    calls = {"n": 0}

    def nan_loss(*args, **kwargs):
        calls["n"] += 1
        loss, terms = original(*args, **kwargs)
        return (loss * float("nan"), terms) if calls["n"] == 17 else (loss, terms)

    monkeypatch.setattr(trainer_module, "total_loss", nan_loss)
    # checked once per log line (no wait for the device on every step): found at iteration 20, before the next checkpoint
    with pytest.raises(TrainingDiverged, match="before iteration 20 .* the last good checkpoint in .* is kept"):
        Trainer(small_config(), small_data, tmp_path / "r", progress=False).fit()
    state = torch.load(tmp_path / "r" / "checkpoint.pt", weights_only=False)
    assert state["counters"]["global_iteration"] == 10
    assert all(torch.isfinite(v).all() for v in state["model"].values())
    info = json.loads((tmp_path / "r" / "run.json").read_text())
    assert info["status"] == "diverged" and info["global_iteration"] == 10  # regression: it stayed "running"


def test_nan_weights_behind_a_finite_loss_are_never_checkpointed(small_data, tmp_path, monkeypatch):
    """Regression: with an infinite learning rate the weights became NaN while the logged loss was still finite, and
    the message claimed a good checkpoint was kept: the one saved held NaN."""
    cfg = small_config(checkpoint_every=1)  # a checkpoint after the first step, whose loss was computed before the update
    original = Trainer.step

    def step_to_nan(self, *args):  # what an infinite step does (such rates are now refused by the config)
        original(self, *args)
        with torch.no_grad():
            self.model.W[0, 1] = float("nan")

    monkeypatch.setattr(Trainer, "step", step_to_nan)
    with pytest.raises(TrainingDiverged, match=r"parameter W became NaN or infinite before iteration 1 .* no checkpoint was written"):
        Trainer(cfg, small_data, tmp_path / "r", progress=False).fit()
    assert not (tmp_path / "r" / "checkpoint.pt").exists()
    with pytest.raises(Exception, match="finite number"):  # and an infinite rate no longer gets that far
        cfg.training.lr_w = float("inf")


def test_bad_inputs_are_named(small_data, tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        Trainer(small_config(), tmp_path / "missing", tmp_path / "r")
    cfg = small_config()
    cfg.model.external_input = "known"
    with pytest.raises(DatasetError, match=r"external_input is 'known' but the data .* have no recorded input \(omega.npy"):
        Trainer(cfg, small_data, tmp_path / "r")
    np.save(tmp_path / "mask.npy", np.ones((5, 5)))
    cfg = small_config()
    cfg.model.connectivity_mask = tmp_path / "mask.npy"
    with pytest.raises(DatasetError, match=r"connectivity_mask: .* has shape \(5, 5\), expected \(30, 30\)"):
        Trainer(cfg, small_data, tmp_path / "r")
    with pytest.raises(ResumeError, match="no checkpoint"):
        Trainer(small_config(), small_data, tmp_path / "r", resume=True)
    Trainer(small_config(n_epochs=1), small_data, tmp_path / "r", progress=False).fit()
    with pytest.raises(FileExistsError, match="--resume"):
        Trainer(small_config(), small_data, tmp_path / "r")
    other = small_config()
    other.model.hidden = 16
    with pytest.raises(ResumeError, match="model.hidden: 8 in the checkpoint, 16 in the config"):
        Trainer(other, small_data, tmp_path / "r", resume=True)


def test_nan_in_the_data_is_refused(tmp_path):
    simulate(tiny_config(n_neurons=10, n_frames=50), tmp_path / "d", progress=False, figure=False)
    x = np.load(tmp_path / "d" / "x.npy", mmap_mode="r+")
    x[17, 3] = np.nan
    x.flush()
    del x
    with pytest.raises(DatasetError, match="x.npy holds NaN or inf at frame 17"):
        Trainer(small_config(), tmp_path / "d", tmp_path / "r")


def test_two_phase_schedule_is_applied_per_epoch(small_data, tmp_path):
    cfg = small_config(regularization={"psi_monotone": {"value": 5.0, "until_epoch": 1}, "w_l1": {"value": 1e-4, "from_epoch": 1}})
    run = Trainer(cfg, small_data, tmp_path / "r", progress=False).fit()
    by_epoch = {line["epoch"]: line for line in run.log}
    assert by_epoch[0]["coef_psi_monotone"] == 5.0 and "coef_w_l1" not in by_epoch[0] and "loss_psi_monotone" in by_epoch[0]
    assert "coef_psi_monotone" not in by_epoch[2] and by_epoch[2]["coef_w_l1"] == 1e-4 and "loss_w_l1" in by_epoch[2]


def test_an_iteration_budget_in_the_config_keeps_the_epochs_schedule(small_data, tmp_path):
    """training.max_iterations stops the run after that many iterations in all, as fit(max_iterations) does, with the
    epochs unchanged: a coefficient that starts at epoch 1 is active past iteration 20 (regression: the edge-confidence
    benchmark once made a budget of one long epoch, so that an L1 from epoch 1 never started)."""
    cfg = small_config(max_iterations=27, regularization={"w_l1": {"value": 1e-4, "from_epoch": 1}})
    run = Trainer(cfg, small_data, tmp_path / "r", progress=False).fit()
    assert run.log[-1]["iteration"] == 27 and run.log[-1]["epoch"] == 1 and run.log[-1]["coef_w_l1"] == 1e-4
    assert json.loads((tmp_path / "r" / "run.json").read_text())["status"] == "stopped"
    assert Trainer(cfg, small_data, tmp_path / "r2", progress=False).fit(max_iterations=12).log[-1]["iteration"] == 12  # the argument wins
    with pytest.raises(ConfigError, match="training.max_iterations"):
        small_config(max_iterations=-1)


def test_same_seed_same_model_other_seed_differs(small_data, tmp_path):
    a = Trainer(small_config(n_epochs=1), small_data, tmp_path / "a", progress=False).fit()
    b = Trainer(small_config(n_epochs=1), small_data, tmp_path / "b", progress=False).fit()
    c = Trainer(small_config(n_epochs=1, seed=3), small_data, tmp_path / "c", progress=False).fit()
    assert_same_params(params(a.model), params(b.model))
    assert not torch.equal(a.model.W, c.model.W)


def test_sigterm_saves_a_checkpoint_like_ctrl_c(small_data, tmp_path, monkeypatch):
    import os
    import signal

    original = trainer_module.total_loss
    calls = {"n": 0}

    def terminated(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 14:
            os.kill(os.getpid(), signal.SIGTERM)  # e.g. `kill PID`, or a scheduler ending the job
        return original(*args, **kwargs)

    monkeypatch.setattr(trainer_module, "total_loss", terminated)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        Trainer(small_config(), small_data, tmp_path / "r", progress=False).fit()
    assert signal.getsignal(signal.SIGTERM) == before
    assert json.loads((tmp_path / "r" / "run.json").read_text())["status"] == "interrupted"
    assert torch.load(tmp_path / "r" / "checkpoint.pt", weights_only=False)["counters"]["global_iteration"] == 14


def _without_time(log):
    return [{k: v for k, v in line.items() if k != "train_seconds"} for line in log]


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_an_interrupted_run_resumes_bit_for_bit_with_the_same_log(small_data, tmp_path, monkeypatch, sig):
    """Regression: SIGTERM left the sampler one batch ahead of the counters (39,800 of 40,000 weights differed after
    resuming), and a log line differed when log_every does not divide checkpoint_every."""
    import os
    import signal

    config = small_config(log_every=3, checkpoint_every=10)
    full = Trainer(config, small_data, tmp_path / "full", progress=False).fit()
    original = trainer_module.total_loss
    calls = {"n": 0}

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 17:
            os.kill(os.getpid(), getattr(signal, sig))
        return original(*args, **kwargs)

    monkeypatch.setattr(trainer_module, "total_loss", interrupted)
    with pytest.raises(KeyboardInterrupt):
        Trainer(config, small_data, tmp_path / "split", progress=False).fit()
    monkeypatch.setattr(trainer_module, "total_loss", original)
    resumed = Trainer(config, small_data, tmp_path / "split", resume=True, progress=False).fit()
    assert_same_params(params(resumed.model), params(full.model))
    state = [torch.load(tmp_path / r / "checkpoint.pt", weights_only=False) for r in ("full", "split")]
    assert torch.equal(state[0]["sampler"], state[1]["sampler"])
    for a, b in zip(state[0]["optimizer"]["state"].values(), state[1]["optimizer"]["state"].values(), strict=True):
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert _without_time(read_log(tmp_path / "split")) == _without_time(full.log)


def test_a_second_interrupt_stops_at_once_and_keeps_the_last_periodic_checkpoint(small_data, tmp_path, monkeypatch):
    import os
    import signal

    original = trainer_module.total_loss
    calls = {"n": 0}

    def twice(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 14:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)  # the user insists: no waiting for the step to end
        return original(*args, **kwargs)

    monkeypatch.setattr(trainer_module, "total_loss", twice)
    with pytest.raises(KeyboardInterrupt):
        Trainer(small_config(), small_data, tmp_path / "r", progress=False).fit()
    assert torch.load(tmp_path / "r" / "checkpoint.pt", weights_only=False)["counters"]["global_iteration"] == 10


def test_proximal_shrink_makes_exact_zeros_that_the_l1_term_does_not(small_data, tmp_path):
    def zeros(**reg):
        run = Trainer(small_config(n_epochs=1, regularization=reg), small_data, tmp_path / str(reg), progress=False).fit()
        return int((run.model.W == 0).sum()) - run.model.n  # the diagonal is always zero

    assert zeros(w_shrink=0.5) > 100
    assert zeros(w_l1=1e-3) == 0


def test_overwrite_deletes_nothing_until_every_check_has_passed(small_data, tmp_path):
    """--overwrite replaces an old run only once config, device and data have passed (regression: the old
    run was deleted before the device and the data's values were checked)."""
    Trainer(small_config(n_epochs=1), small_data, tmp_path / "r", progress=False).fit()
    before = sorted(p.name for p in (tmp_path / "r").iterdir())
    bad_mask = small_config()
    np.save(tmp_path / "mask.npy", np.ones((5, 5)))
    bad_mask.model.connectivity_mask = tmp_path / "mask.npy"
    bad_device = small_config(device="cuda:7" if torch.cuda.is_available() else "cuda")
    for cfg, err in ((bad_mask, DatasetError), (bad_device, Exception)):
        with pytest.raises(err):
            Trainer(cfg, small_data, tmp_path / "r", overwrite=True, progress=False)
        assert sorted(p.name for p in (tmp_path / "r").iterdir()) == before
    trainer = Trainer(small_config(), small_data, tmp_path / "r", overwrite=True, progress=False)
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == before  # still there until fit starts
    trainer.fit()
    assert read_log(tmp_path / "r")[-1]["iteration"] == 60


def test_a_second_trainer_is_refused_while_the_first_trains_and_a_dead_owners_lock_is_taken_over(small_data, tmp_path, monkeypatch):
    """Regression: two trainings into one folder both ran and interleaved their logs; --overwrite killed the first."""
    import os
    import socket
    import subprocess

    from circuitgnn.train.run_folder import LOCK, RunLockedError

    seen = {}
    original = trainer_module.total_loss

    def meanwhile(*args, **kwargs):  # while the first trains, a second one tries the same folder
        if not seen:
            for resume, overwrite in ((False, True), (False, False)):
                try:
                    Trainer(small_config(seed=2), small_data, tmp_path / "r", resume=resume, overwrite=overwrite, progress=False)
                except RunLockedError as err:
                    seen[overwrite] = str(err)
        return original(*args, **kwargs)

    monkeypatch.setattr(trainer_module, "total_loss", meanwhile)
    Trainer(small_config(n_epochs=1), small_data, tmp_path / "r", progress=False).fit()
    assert set(seen) == {True, False} and f"process {os.getpid()} on {socket.gethostname()}" in seen[True]
    assert not (tmp_path / "r" / LOCK).exists()  # released at the end
    assert [line["iteration"] for line in read_log(tmp_path / "r")] == [5, 10, 15, 20]
    # a process that was killed leaves its lock: the next trainer takes it over, with a warning
    gone = subprocess.Popen(["true"])
    gone.wait()
    (tmp_path / "r" / LOCK).write_text(json.dumps({"pid": gone.pid, "host": socket.gethostname(), "started": "then"}))
    monkeypatch.setattr(trainer_module, "total_loss", original)
    with pytest.warns(UserWarning, match="taking over the lock of a process that is gone"):
        Trainer(small_config(n_epochs=2), small_data, tmp_path / "r", resume=True, progress=False).fit()


def test_a_full_disk_leaves_a_whole_log_and_the_old_checkpoint_and_the_run_resumes(small_data, tmp_path, monkeypatch):
    """Regression: a full disk during a log append left half a JSON line and --resume then failed; during a checkpoint it
    gave a raw RuntimeError."""
    import builtins
    import errno

    from circuitgnn.train import run_folder
    from circuitgnn.train.run_folder import RunWriteError

    full = Trainer(small_config(), small_data, tmp_path / "full", progress=False).fit()
    real_open = builtins.open
    state = {"appends": 0}

    class HalfWriter:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, text):
            self.f.write(text[: len(text) // 2])
            self.f.flush()
            raise OSError(errno.ENOSPC, "No space left on device")

    def disk_fills(path, mode="r", *args, **kwargs):
        f = real_open(path, mode, *args, **kwargs)
        if str(path).endswith("log.jsonl") and mode == "a":
            state["appends"] += 1
            if state["appends"] == 4:
                return HalfWriter(f)
        return f

    monkeypatch.setattr(run_folder.Path, "open", lambda self, mode="r", *a, **k: disk_fills(self, mode, *a, **k))
    with pytest.raises(RunWriteError, match="is the disk full"):
        Trainer(small_config(), small_data, tmp_path / "r", progress=False).fit()
    monkeypatch.undo()
    assert [line["iteration"] for line in read_log(tmp_path / "r")] == [5, 10, 15]  # no half line
    resumed = Trainer(small_config(), small_data, tmp_path / "r", resume=True, progress=False).fit()
    assert_same_params(params(resumed.model), params(full.model))

    def no_space(obj, f, *args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc] . PytorchStreamWriter failed writing file: file write failed")

    monkeypatch.setattr(run_folder.torch, "save", no_space)
    before = (tmp_path / "r" / "checkpoint.pt").read_bytes()
    with pytest.raises(RunWriteError, match="previous checkpoint.pt, if any, is kept"):
        run_folder.save_atomic({}, tmp_path / "r" / "checkpoint.pt")
    assert (tmp_path / "r" / "checkpoint.pt").read_bytes() == before
    assert not [p for p in (tmp_path / "r").iterdir() if ".tmp-" in p.name]


def test_evaluating_a_run_against_a_replaced_dataset_is_refused(tmp_path):
    """Regression: evaluating a run after its dataset folder was replaced by another gave an IndexError."""
    from circuitgnn.analyze.evaluate import evaluate_run

    simulate(tiny_config(n_neurons=30, n_frames=200), tmp_path / "d", progress=False, figure=False)
    Trainer(small_config(n_epochs=1), tmp_path / "d", tmp_path / "r", progress=False).fit()
    simulate(tiny_config(n_neurons=20, n_frames=200, seed=9), tmp_path / "d", overwrite=True, progress=False, figure=False)
    with pytest.raises(DatasetError, match="is not the dataset this run was trained on"):
        evaluate_run(tmp_path / "r")


def test_sizes_beyond_the_machines_memory_are_refused_before_allocation(small_data, tmp_path):
    """Regression: n_neurons 1e7 or hidden 1e7 ended in allocation errors instead of a size check."""
    from circuitgnn.errors import ConfigError

    cfg = small_config()
    cfg.model.hidden = 10_000_000
    with pytest.raises(ConfigError, match=r"hidden = 10000000 .* needs about .* GiB, more than the .* GiB of (cpu|cuda)"):
        Trainer(cfg, small_data, tmp_path / "r", progress=False)
    assert not (tmp_path / "r").exists()
    big = tiny_config(n_neurons=10_000_000, n_frames=2)
    with pytest.raises(ConfigError, match=r"simulating N = 10000000 neurons .* needs about"):
        simulate(big, tmp_path / "d", progress=False, figure=False, device="cpu")
    assert not (tmp_path / "d").exists()


def test_a_run_that_ends_far_worse_than_predicting_nothing_says_so(small_data, tmp_path):
    """Regression: a learning rate of 1e3 'succeeded' with a loss 10^5 times too high and W R^2 0, without a word."""
    import warnings

    with pytest.warns(UserWarning, match="times that of predicting no change .* lower the learning rates"):
        # on CPU: on CUDA the same rates overflow to NaN, which is the divergence error's case instead
        Trainer(small_config(n_epochs=1, lr_w=1e3, lr_mlp=1e3, device="cpu"), small_data, progress=False).fit()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Trainer(small_config(n_epochs=1), small_data, progress=False).fit()


def test_all_zero_activity_and_an_empty_forecast_are_named(small_data, tmp_path):
    """Regression: all-zero activity trained and 'evaluated'; --rollout-steps 0 gave an IndexError."""
    from circuitgnn.analyze.evaluate import evaluate_run
    from circuitgnn.data.activity import Activity
    from circuitgnn.errors import ConfigError

    zeros = Activity(x=np.zeros((100, 5), dtype=np.float32), dxdt=None, dt=0.1)
    with pytest.raises(DatasetError, match="the activity is constant"):
        Trainer(small_config(), zeros, progress=False)
    Trainer(small_config(n_epochs=1), small_data, tmp_path / "r", progress=False).fit()
    with pytest.raises(ConfigError, match="rollout_steps .* must be an integer >= 1, got 0"):
        evaluate_run(tmp_path / "r", rollout_steps=0)


@pytest.mark.parametrize(
    "mode",
    ["default", pytest.param("reduce-overhead", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need CUDA"))],
)
def test_a_compiled_loss_trains_like_the_eager_one_through_a_change_of_coefficients(small_data, tmp_path, mode):
    schedule = {"psi_monotone": {"value": 5.0, "until_epoch": 1}, "w_l1": {"value": 1e-4, "from_epoch": 1}, "phi_decreasing": 1.0}
    eager = Trainer(small_config(regularization=schedule), small_data, tmp_path / "eager", progress=False).fit()
    trainer = Trainer(small_config(regularization=schedule, compile=mode), small_data, tmp_path / "compiled", progress=False)
    compiled = trainer.fit()
    assert trainer._compiled_loss is not None
    assert [line["iteration"] for line in compiled.log] == [line["iteration"] for line in eager.log]
    for a, b in zip(eager.log, compiled.log, strict=True):
        for key in ("loss_prediction", "loss_phi_decreasing", "loss_psi_monotone", "loss_w_l1"):
            assert (key in a) == (key in b)
            if key in a:
                assert b[key] == pytest.approx(a[key], rel=1e-3, abs=1e-7), (a["iteration"], key)
    assert torch.allclose(compiled.model.W, eager.model.W, atol=1e-4)


def test_compile_is_refused_for_the_rollout_objectives():
    with pytest.raises(Exception, match="training.compile"):
        small_config(objective="rollout", compile="default")


def test_compile_auto_replays_cuda_graphs_on_a_gpu_only_and_never_for_rollouts():
    assert config_from_dict({"name": "t"}).training.compile == "auto"
    assert small_config(compile="auto").training.compile_mode("cuda") == "reduce-overhead"
    assert small_config(compile="auto").training.compile_mode("cpu") == "off"
    assert small_config(compile="auto", objective="rollout").training.compile_mode("cuda") == "off"
    assert small_config(compile="default").training.compile_mode("cpu") == "default"
