"""Exact least-squares W given phi* and psi* (train/wsolve.py)."""

import numpy as np
import pytest
import torch

from circuitgnn.config import ModelConfig, config_from_dict
from circuitgnn.model.gnn import GNN
from circuitgnn.train.wsolve import solve_connectivity


def _model(n, **cfg):
    torch.manual_seed(0)
    m = GNN(ModelConfig(hidden=8, psi_input="x_j,a_j", **cfg), n)
    with torch.no_grad():
        m.a.copy_(torch.randn(n, 2))
        m.W.copy_(torch.randn(n, n) * 0.1).fill_diagonal_(0.0)
    return m


def test_the_solve_recovers_the_w_that_made_the_data():
    teacher = _model(12)
    x = torch.randn(400, 12) * 3
    with torch.no_grad():
        y = teacher(x)
    student = _model(12)
    with torch.no_grad():
        student.W.zero_()
    w = solve_connectivity(student, [(x[:150], y[:150]), (x[150:], y[150:])], ridge=0.0)
    assert torch.all(torch.diagonal(w) == 0)
    np.testing.assert_allclose(w.numpy(), teacher.W.detach().numpy(), atol=2e-4)


def test_each_row_is_the_least_squares_fit_over_the_other_senders():
    """With data the model cannot fit, row i equals numpy's least squares on the senders j != i."""
    m = _model(8)
    x, y = torch.randn(300, 8) * 3, torch.randn(300, 8)
    w = solve_connectivity(m, [(x, y)], ridge=0.0).numpy()
    with torch.no_grad():
        psi = m.psi_of_sender(x, m.a).double().numpy()
        r = (y - m.phi_of(x, m.a)).double().numpy()
    for i in range(8):
        others = np.arange(8) != i
        expected, *_ = np.linalg.lstsq(psi[:, others], r[:, i], rcond=None)
        np.testing.assert_allclose(w[i, others], expected, rtol=1e-3, atol=1e-4 * np.abs(expected).max())


def test_the_solve_refuses_models_it_cannot_handle():
    with pytest.raises(ValueError, match="sender-only psi"):
        solve_connectivity(GNN(ModelConfig(hidden=4, psi_input="x_j,a_i,a_j"), 5), [])
    with pytest.raises(ValueError, match="at least one frame"):
        solve_connectivity(_model(5), [])


@pytest.mark.parametrize(
    "model, reg",
    [
        ({"psi_input": "x_j,a_i,a_j"}, {}),
        ({"low_rank": 3}, {}),
        ({"connectivity_mask": "mask.npy"}, {}),
        ({"external_input": "field"}, {}),
        ({"external_input": "known"}, {}),
        ({"external_input": "additive_lowrank"}, {}),
        ({}, {"w_l1": 1e-5}),
        ({}, {"w_shrink": 0.5}),
    ],
)
def test_configs_that_w_solve_cannot_serve_are_refused_by_name(model, reg):
    with pytest.raises(ValueError, match="training.extensions.w_solve needs"):
        config_from_dict({"model": model, "training": {"extensions": {"w_solve": {}}, "regularization": reg}})


def test_stop_at_ari_is_refused_when_no_epoch_between_clusterings_is_unfrozen():
    with pytest.raises(ValueError, match="every_epochs"):
        config_from_dict(
            {"training": {"clustering": {"every_epochs": 1, "freeze_epochs": 1}, "extensions": {"stop_clustering_at_ari": 0.99}}}
        )
    config_from_dict({"training": {"clustering": {"every_epochs": 2, "freeze_epochs": 1}, "extensions": {"stop_clustering_at_ari": 0.99}}})


@pytest.mark.parametrize("n, k", [(10, 3), (100000, 100), (7, 7), (5, 20), (1, 1)])
def test_evenly_spaced_frames_span_the_recording(n, k):
    from circuitgnn.data.dataset import evenly_spaced_frames

    idx = evenly_spaced_frames(n, k)
    assert len(idx) == min(n, k) and idx[0] == 0 and (idx[-1] == n - 1 or len(idx) == 1)
    assert np.all(np.diff(idx) > 0)
    np.testing.assert_array_equal(idx, np.linspace(0, n - 1, min(n, k)).astype(int))
