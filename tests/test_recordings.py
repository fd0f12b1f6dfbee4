"""Fitting recordings: observed simulations, segments, held-out frames, missing values, the rollout objective, import."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from circuitgnn import CircuitGNN
from circuitgnn.analyze.evaluate import evaluate_run, training_scorer
from circuitgnn.cli import main
from circuitgnn.config import ModelConfig, config_from_dict
from circuitgnn.data.activity import Activity
from circuitgnn.data.dataset import Dataset
from circuitgnn.data.importer import import_recording
from circuitgnn.data.readers import Recording, read_recording
from circuitgnn.errors import DatasetError
from circuitgnn.model.gnn import GNN
from circuitgnn.report.html import build_report
from circuitgnn.simulate.run import simulate
from circuitgnn.train import trainer as trainer_module
from circuitgnn.train.data import FrameSource, activity_scale
from circuitgnn.train.losses import prediction_loss, rollout_error, total_loss
from circuitgnn.train.run_folder import ResumeError
from circuitgnn.train.trainer import Trainer

TRAINING = {"n_epochs": 2, "iterations_per_epoch": 30, "batch_size": 4, "log_every": 30, "checkpoint_every": 30}


# ------------------------------------------------------------ the observed simulation
def test_an_observed_simulation_records_every_kth_state_with_noise_and_keeps_the_truth_apart(tiny, tmp_path):
    full = simulate(tiny(n_frames=120), tmp_path / "full", progress=False, figure=False).dataset
    obs_cfg = tiny(n_frames=40, observation={"every": 3, "noise": 0.1})
    obs = simulate(obs_cfg, tmp_path / "obs", progress=False, figure=False).dataset
    assert obs.dxdt is None and not (obs.path / "dxdt.npy").exists()
    assert obs.dt == pytest.approx(3 * full.dt) and obs.holdout == 0.1 and obs.every == 3
    truth = obs.truth
    assert truth is not None and truth.x is not None and truth.dxdt is not None
    np.testing.assert_array_equal(truth.x, np.asarray(full.x)[::3])  # the same network, sampled
    np.testing.assert_array_equal(truth.dxdt, np.asarray(full.dxdt)[::3])
    noise = np.asarray(obs.x) - np.asarray(truth.x)
    ratio = noise.std(axis=0) / np.asarray(truth.x).std(axis=0)
    assert np.allclose(ratio, 0.1, rtol=0.3) and abs(np.median(ratio) - 0.1) < 0.02
    obs.verify_checksums()


def test_a_dataset_without_dxdt_needs_a_derivative_or_the_rollout_objective(tiny, tmp_path):
    ds = simulate(tiny(n_frames=60, observation={"every": 2}), tmp_path / "obs", progress=False, figure=False).dataset
    cfg = config_from_dict({"name": "t", "model": {"hidden": 8}, "training": {**TRAINING, "derivative": "recorded"}})
    with pytest.raises(DatasetError, match="'recorded' but the data .* have no dx/dt"):
        Trainer(cfg, ds, progress=False)
    cfg = config_from_dict({"name": "t", "model": {"hidden": 8}, "training": TRAINING})
    assert Trainer(cfg, ds, progress=False).derivative == "forward"  # auto: forward differences
    cfg = config_from_dict({"name": "t", "model": {"hidden": 8}, "training": {**TRAINING, "objective": "rollout"}})
    trainer = Trainer(cfg, ds, progress=False)
    assert trainer.derivative is None and len(trainer.source.batch(torch.arange(3))) == 1  # x only: nothing derived


# ------------------------------------------------------------ activity: segments, holdout, missing values
def test_start_frames_respect_segments_holdout_rollout_horizon_and_missing_rows():
    x = np.random.default_rng(0).normal(size=(100, 5)).astype(np.float32)
    x[10, 2] = np.nan
    act = Activity.from_arrays(x, 0.1, segments=(0, 60), holdout=0.1)
    assert act.missing and act.train_bounds() == [(0, 54), (60, 96)] and act.heldout_bounds() == [(54, 60), (96, 100)]
    starts = act.start_frames(3)
    assert 10 not in starts and 9 in starts  # a start needs a complete row; its later frames may miss values
    assert starts.max() == 92 and not np.isin(np.arange(51, 60), starts).any()  # 3 frames ahead stay in the training part
    assert set(np.arange(54, 60)).isdisjoint(act.start_frames(0))


def test_silent_neurons_are_left_out_with_a_warning_that_names_them():
    x = np.random.default_rng(1).normal(size=(50, 6)).astype(np.float32)
    x[:, 1] = 3.0
    x[:, 4] = np.nan
    with pytest.warns(UserWarning, match=r"2 neuron\(s\) left out.*1 \(b\): constant.*4 \(e\): no recorded value"):
        act = Activity.from_arrays(x, 0.1, names=list("abcdef"))
    assert act.n_neurons == 4 and act.neurons.tolist() == [0, 2, 3, 5]
    np.testing.assert_array_equal(act.x, x[:, [0, 2, 3, 5]])


def test_the_robust_scale_ignores_outliers_and_missing_values():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(4000, 20))
    assert activity_scale(x, "robust") == pytest.approx(activity_scale(x, "std"), rel=0.05)
    spiky = x.copy()
    spiky[::50] *= 100.0
    spiky[5:9, 3] = np.nan
    assert activity_scale(spiky, "robust") == pytest.approx(1.5, rel=0.06)
    assert activity_scale(spiky, "std") > 10
    # per recording: the median of the segments' spreads, unmoved by one recording at another gain
    two = np.concatenate([x, 5 * x[:2000], x[:2000]])
    assert activity_scale(two, "robust", [(0, 4000), (4000, 6000), (6000, 8000)]) == pytest.approx(1.5, rel=0.06)


# ------------------------------------------------------------ losses
def test_masked_prediction_loss_leaves_missing_targets_out():
    pred = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    target = torch.tensor([[0.0, float("nan")], [3.0, 6.0]])
    assert float(prediction_loss(pred, target, masked=True)) == pytest.approx((1 + 0 + 4) / 3)


def _model(n: int = 6) -> GNN:
    torch.manual_seed(0)
    model = GNN(ModelConfig(hidden=8, w_init_std=0.3), n)
    with torch.no_grad():
        for p in model.parameters():  # strong, curved dynamics
            p.normal_(0.0, 0.5)
    return model


def test_one_euler_rollout_step_is_the_derivative_objective_on_forward_differences():
    model = _model()
    frames = torch.randn(2, 5, 6)
    dt = 0.1
    forward = (frames[1] - frames[0]) / dt
    _, terms = total_loss(model, frames[0], forward, {"phi_zero": 0}, 0.1)
    with torch.no_grad():
        assert float(rollout_error(model, frames, dt)) == pytest.approx(float(terms["prediction"]), rel=1e-5)


def test_rollout_error_is_zero_for_frames_the_model_itself_generated():
    model = _model()
    dt, k = 0.5, 4  # a long frame interval, where the integration's step size matters
    with torch.no_grad():
        states = [torch.randn(3, 6)]
        for _ in range(k):
            x = states[-1]
            for _ in range(5):
                x = x + (dt / 5) * model(x)
            states.append(x)
    frames = torch.stack(states)
    with torch.no_grad():
        assert float(rollout_error(model, frames, dt, substeps=5)) < 1e-10
        coarse = float(rollout_error(model, frames, dt, substeps=1))
        assert coarse > 1e-4  # a coarser integration does not match
        assert np.isfinite(float(rollout_error(model, frames, dt, substeps=2, integrator="rk4")))


def test_training_never_reads_held_out_frames_nor_crosses_a_segment(monkeypatch):
    x = np.random.default_rng(3).normal(size=(200, 8)).astype(np.float32)
    read: list[np.ndarray] = []
    original = FrameSource.batch

    def spy(self, idx):
        read.append(idx.numpy().copy())
        return original(self, idx)

    monkeypatch.setattr(FrameSource, "batch", spy)
    training = {**TRAINING, "objective": "rollout", "rollout": {"steps": 3}, "clustering": {"enabled": False}}
    CircuitGNN(model={"hidden": 8}, training=training, progress=False).fit(x, 0.1, segments=(0, 120), holdout=0.2)
    rows = np.concatenate(read).reshape(-1)
    held_out = np.r_[96:120, 184:200]
    assert not np.isin(rows, held_out).any()
    for batch in read:  # (k + 1) x B rows: each column is one start frame and the 3 frames after it
        cols = batch.reshape(4, -1)
        assert ((cols[-1] < 120) == (cols[0] < 120)).all()


def test_missing_values_are_masked_not_filled(monkeypatch):
    rng = np.random.default_rng(4)
    x = rng.normal(size=(300, 8)).astype(np.float32)
    x[rng.random(x.shape) < 0.05] = np.nan
    seen: list[tuple] = []
    original = trainer_module.total_loss

    def spy(model, xb, target, *args):
        seen.append((torch.isfinite(xb).all().item(), args[-1]))
        return original(model, xb, target, *args)

    monkeypatch.setattr(trainer_module, "total_loss", spy)
    training = {**TRAINING, "clustering": {"enabled": False}, "compile": "off"}  # the spy sees the uncompiled loss only
    est = CircuitGNN(model={"hidden": 8}, training=training, progress=False).fit(x, 0.1)
    assert seen and all(finite and masked for finite, masked in seen)  # inputs always recorded values; NaN targets masked
    assert np.isfinite(est.connectivity_).all() and all(np.isfinite(line["loss_prediction"]) for line in est.history_)


# ------------------------------------------------------------ end to end: import a recording, fit, evaluate, report
def test_import_fit_evaluate_and_report_a_recording_without_ground_truth(tiny, tmp_path, capsys):
    ds = simulate(tiny(n_frames=400), tmp_path / "sim", progress=False, figure=False).dataset
    x = np.array(ds.x)
    x[50:53, 4] = np.nan
    np.save(tmp_path / "rec.npy", np.concatenate([x[:200], x[200:]]))
    np.save(tmp_path / "rec2.npy", x[:150])
    code = main(["import", str(tmp_path / "rec.npy"), str(tmp_path / "rec2.npy"), "--out", str(tmp_path / "data"), "--rate", "100"])
    out = capsys.readouterr().out
    assert code == 0 and "2 (sessions, trials or gaps)" in out and "missing values" in out
    data = Dataset(tmp_path / "data")
    assert data.segments == (0, 400) and data.holdout == 0.1 and data.truth is None and data.dxdt is None
    assert data.dt == pytest.approx(0.01) and data.meta["missing"] and data.meta["scale"] == "robust"
    cfg = {
        "name": "rec",
        "model": {"hidden": 8},
        "training": {**TRAINING, "objective": "rollout", "rollout": {"steps": 2, "substeps": 2}},
    }
    (tmp_path / "cfg.yaml").write_text(json.dumps(cfg))
    assert main(["train", str(tmp_path / "cfg.yaml"), "--data", str(tmp_path / "data"), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    m = evaluate_run(tmp_path / "run")
    assert "held out from training" in m["rollout_method"] and "rollout_r2_400" not in m
    assert m["rollout_curve"]["steps"] and set(m["skipped"]) >= {"connectivity", "types", "functions"}
    page = build_report(tmp_path / "run").read_text()
    assert "rollout objective, 2 frame(s) ahead" in page and "held out from training" in page and "2 segments" in page
    assert "paper" not in page.lower()


def test_import_refuses_an_existing_folder_before_reading(tmp_path):
    (tmp_path / "data").mkdir()
    with pytest.raises(FileExistsError, match="already exists"):
        import_recording(tmp_path / "missing.npy", tmp_path / "data", rate=10)
    assert main(["import", str(tmp_path / "missing.npy"), "--out", str(tmp_path / "new"), "--rate", "10"]) == 2
    assert not (tmp_path / "new").exists()


def test_evaluation_of_an_observed_simulation_compares_frames_at_the_recording_interval(tiny, tmp_path):
    ds = simulate(tiny(n_frames=200, observation={"every": 4, "noise": 0.0}), tmp_path / "obs", progress=False, figure=False).dataset
    cfg = config_from_dict(
        {"name": "t", "model": {"hidden": 8}, "training": {**TRAINING, "objective": "rollout", "rollout": {"substeps": 4}}}
    )
    Trainer(cfg, ds, tmp_path / "run", progress=False, scorer=training_scorer(ds, cfg)).fit()
    m = evaluate_run(tmp_path / "run", rollout_steps=50)
    curve = m["rollout_curve"]
    assert curve["steps"][-1] == 50 and "held-out state of the true network" in m["rollout_method"]
    # the true trajectory is integrated at the simulation's own step and sampled every 4th step
    with np.load(tmp_path / "run" / "rollout.npz") as z:
        true = z["true"]
    assert true.shape == (51, ds.n_neurons)


@pytest.mark.parametrize("suffix", [".h5", ".nwb", ".npz", ".csv"])
def test_export_writes_a_recording_that_reads_back_to_the_same_activity(tiny, tmp_path, suffix):
    if suffix == ".nwb":
        pytest.importorskip("pynwb")
    ds = simulate(tiny(n_frames=60, observation={"every": 2, "noise": 0.05}), tmp_path / "obs", progress=False, figure=False).dataset
    assert main(["export", str(tmp_path / "obs"), "--out", str(tmp_path / f"rec{suffix}")]) == 0
    rec = read_recording(tmp_path / f"rec{suffix}")  # the csv's "time" column is taken as the frame times
    np.testing.assert_array_equal(rec.x, np.asarray(ds.x))
    assert rec.dt == pytest.approx(ds.dt) and rec.segments == (0,)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left
    assert main(["export", str(tmp_path / "obs"), "--out", str(tmp_path / f"rec{suffix}")]) == 2  # exists: refused


def test_fit_takes_a_recording_with_its_timing_segments_and_names(tmp_path):
    x = np.random.default_rng(5).normal(size=(120, 6)).astype(np.float32)
    rec = Recording(x=x, dt=0.2, source="test", segments=(0, 70), names=tuple("abcdef"))
    est = CircuitGNN(model={"hidden": 8}, training={**TRAINING, "clustering": {"enabled": False}}, progress=False).fit(rec)
    assert est.dt_ == 0.2 and est.run_dir_ is None and est.connectivity_.shape == (6, 6)
    with pytest.raises(DatasetError, match="dt .the time between frames. is needed"):
        CircuitGNN(progress=False).fit(x)


# ------------------------------------------------------------ regressions found in review
QUIET = {
    "n_epochs": 1,
    "iterations_per_epoch": 20,
    "batch_size": 4,
    "log_every": 10,
    "checkpoint_every": 20,
    "clustering": {"enabled": False},
}


def _noise(t: int, n: int = 4, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(t, n)).astype(np.float32)


def test_a_one_frame_segment_has_no_target_and_does_not_poison_the_loss():
    est = CircuitGNN(model={"hidden": 8}, training=QUIET, progress=False).fit(_noise(41), 0.1, segments=(0, 40))
    assert all(np.isfinite(line["loss_prediction"]) for line in est.history_)


def test_spline_derivatives_of_short_segments_fall_back_and_share_one_smoothness():
    act = Activity.from_arrays(_noise(30), 0.1, segments=(0, 8, 20))
    d = act.derivative("spline")
    assert np.isfinite(d).all() and d.shape == (30, 4)


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"segments": 5}, "segments must be a list of start frames"),
        ({"segments": [0, "a"]}, "segments must be integer start frames"),
        ({"segments": [0, 10.7]}, "segments must be integer start frames"),
        ({"names": 5}, "names must be a list of strings"),
        ({"holdout": "0.1"}, "holdout must be a fraction"),
    ],
)
def test_bad_recording_arguments_are_named(kwargs, words):
    with pytest.raises(DatasetError, match=words):
        Activity.from_arrays(_noise(30), 0.1, **kwargs)


def test_import_refuses_a_holdout_that_is_not_a_fraction(tmp_path):
    np.save(tmp_path / "r.npy", _noise(30))
    with pytest.raises(DatasetError, match="holdout must be a fraction"):
        import_recording(tmp_path / "r.npy", tmp_path / "d", holdout="0.1", rate=10)  # type: ignore[arg-type]


def test_resume_refuses_other_held_out_frames_or_targets(tmp_path):
    x = _noise(200, 6)
    est = CircuitGNN(model={"hidden": 8}, training=QUIET, progress=False)
    est.fit(x, 0.1, holdout=0.1, run_dir=tmp_path / "run")
    with pytest.raises(ResumeError, match="holdout: 0.1 in the checkpoint, 0.0 now"):
        CircuitGNN(model={"hidden": 8}, training=QUIET, progress=False).fit(x, 0.1, run_dir=tmp_path / "run", resume=True)
    with pytest.raises(ResumeError, match="derivative: 'forward' in the checkpoint, 'central' now"):
        CircuitGNN(model={"hidden": 8}, training={**QUIET, "derivative": "central"}, progress=False).fit(
            x, 0.1, holdout=0.1, run_dir=tmp_path / "run", resume=True
        )


def test_the_std_scale_reads_only_training_frames():
    x = np.concatenate([_noise(900, 3), 100 * _noise(100, 3)])
    act = Activity.from_arrays(x, 0.1, holdout=0.1)
    assert activity_scale(act.x, "std", act.train_bounds()) == pytest.approx(1.5, rel=0.1)


def test_a_connectivity_mask_for_all_columns_is_cut_to_the_neurons_kept(tmp_path):
    x = _noise(100, 5)
    x[:, 2] = 1.0
    mask = np.ones((5, 5))
    mask[0, 1] = 0
    np.save(tmp_path / "mask.npy", mask)
    with pytest.warns(UserWarning, match="left out"):
        est = CircuitGNN(model={"hidden": 8, "connectivity_mask": str(tmp_path / "mask.npy")}, training=QUIET, progress=False).fit(x, 0.1)
    assert est.neurons_.tolist() == [0, 1, 3, 4] and est.connectivity_[0, 1] == 0


def test_score_leaves_missing_values_out():
    x = _noise(100, 5)
    est = CircuitGNN(model={"hidden": 8}, training=QUIET, progress=False).fit(x, 0.1)
    holes = x.copy()
    holes[10, 3] = np.nan
    assert np.isfinite(est.score(holes))


def test_held_out_forecasts_start_from_a_complete_frame_and_short_parts_are_skipped(tmp_path, tiny):
    ds = simulate(tiny(n_frames=400), tmp_path / "sim", progress=False, figure=False).dataset
    x = np.array(ds.x)
    x[360, 0] = np.nan  # the first held-out frame
    np.save(tmp_path / "rec.npy", x)
    import_recording(tmp_path / "rec.npy", tmp_path / "data", rate=100)
    cfg = config_from_dict({"name": "rec", "model": {"hidden": 8}, "training": QUIET})
    Trainer(cfg, tmp_path / "data", tmp_path / "run", progress=False).fit()
    m = evaluate_run(tmp_path / "run")
    assert "from recorded frame 361" in m["rollout_method"] and np.isfinite(m["rollout_curve"]["r2"]).all()
    # trials of 50 frames hold out 5 frames each: too short to forecast, said plainly
    np.save(tmp_path / "trial.npy", x[:50])
    import_recording([tmp_path / "trial.npy"] * 4, tmp_path / "trials", rate=100)
    Trainer(cfg, tmp_path / "trials", tmp_path / "run2", progress=False).fit()
    m = evaluate_run(tmp_path / "run2")
    assert "rollout_curve" not in m and "no 11 frames held out" in m["skipped"]["rollout_400"]
    assert not (tmp_path / "run2" / "rollout.npz").exists()
    assert "Skipped" in build_report(tmp_path / "run2").read_text()


def test_suite2p_options_on_another_format_are_refused(tmp_path):
    np.save(tmp_path / "r.npy", _noise(30))
    assert main(["import", str(tmp_path / "r.npy"), "--out", str(tmp_path / "d"), "--rate", "10", "--neuropil", "0.2"]) == 2
    assert not (tmp_path / "d").exists()
