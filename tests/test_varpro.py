"""The variable-projection fit of the spline model and the GNN's warm start from it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.model_selection import cross_val_score
from sklearn.neighbors import KNeighborsClassifier

from circuitgnn.analyze.metrics import linear_fit
from circuitgnn.config import config_from_dict
from circuitgnn.errors import CircuitGNNError
from circuitgnn.train import varpro
from circuitgnn.train.trainer import Trainer
from circuitgnn.train.varpro import SplineBasis, _gauss_newton, _mirror_lower, _prepare, _ridge_inverse, _solve, fit_functions
from circuitgnn.train.warm_start import phi_curves
from tests.conftest import tiny_config


def test_spline_basis_is_a_partition_of_unity_and_combines_as_its_dense_form():
    x = torch.from_numpy(np.random.default_rng(5).standard_cauchy(size=(500, 3)))
    basis = SplineBasis(x, 10)
    grid = torch.linspace(-50, 50, 1000, dtype=torch.float64)
    values = basis(grid)
    assert values.shape == (1000, 10) and bool((values >= 0).all())
    torch.testing.assert_close(values.sum(-1), torch.ones(1000, dtype=torch.float64))  # psi's offset: one shift of its coefficients
    theta = torch.randn(10, dtype=torch.float64)
    torch.testing.assert_close(basis.combine(grid, theta), values @ theta)
    per_neuron = torch.randn(3, 10, dtype=torch.float64)
    torch.testing.assert_close(basis.combine(x, per_neuron), (basis(x) * per_neuron).sum(-1))
    torch.testing.assert_close(basis(torch.tensor([1e9])), basis(basis.knots[-1:]))  # clamped beyond the data
    with pytest.raises(CircuitGNNError, match="at least 4"):
        SplineBasis(x, 3)


def test_a_linear_basis_holds_x_itself():
    """The spline coordinate has a kink at every knot, so x is not a cubic spline in it; the linear basis adds x
    (clamped to the data's range), the decay term of every phi (see the regression in the recovery test below)."""
    x = torch.from_numpy(np.random.default_rng(6).normal(size=(400, 3)))
    basis = SplineBasis(x, 10, linear=True)
    assert basis.n_basis == 11 and basis.n_splines == 10
    grid = torch.linspace(float(x.min()), float(x.max()), 300, dtype=torch.float64)
    values = basis(grid)
    torch.testing.assert_close(values[:, -1], grid)
    torch.testing.assert_close(values[:, :-1].sum(-1), torch.ones(300, dtype=torch.float64))
    per_neuron = torch.randn(3, 11, dtype=torch.float64)
    torch.testing.assert_close(basis.combine(x, per_neuron), (basis(x) * per_neuron).sum(-1))
    splines_only = SplineBasis(x, 10)
    fitted = torch.linalg.lstsq(splines_only(grid), grid.unsqueeze(1)).solution
    assert float((splines_only(grid) @ fitted - grid.unsqueeze(1)).abs().max()) > 1e-4  # the kinks: x is not in it


@pytest.mark.parametrize("subset", [slice(None), slice(0, 3)])
def test_projected_gradient_matches_finite_differences(subset):
    """J^T r is half the gradient of the exact solve's squared residual (variable projection), also on a subset of
    receivers; J^T J is positive semi-definite."""
    rng = np.random.default_rng(6)
    x = torch.from_numpy(rng.normal(scale=2, size=(400, 8)))
    w = torch.from_numpy(rng.normal(scale=0.5, size=(8, 8)))
    y = torch.tanh(x) @ w.T - x + 0.01 * torch.from_numpy(rng.normal(size=(400, 8)))
    psi_basis, phi_basis = SplineBasis(x, 8), SplineBasis(x, 5)
    blocks = _prepare(x, y, psi_basis, phi_basis)
    receivers = torch.arange(8)[subset]
    theta = torch.from_numpy(rng.normal(size=8))

    def loss(t: torch.Tensor) -> float:
        return _solve(blocks, receivers, t, psi_basis, phi_basis, 0.0, torch.float64).loss

    solved = _solve(blocks, receivers, theta, psi_basis, phi_basis, 0.0, torch.float64)
    jtj, jtr = _gauss_newton(blocks, receivers, theta, psi_basis, phi_basis, solved, torch.float64)
    numeric = torch.tensor(
        [(loss(theta + 1e-5 * e) - loss(theta - 1e-5 * e)) / 2e-5 for e in torch.eye(8, dtype=torch.float64)], dtype=torch.float64
    )
    torch.testing.assert_close(numeric, 2 * jtr / (400 * len(receivers)), rtol=1e-3, atol=1e-8)
    assert float(torch.linalg.eigvalsh(jtj).min()) > -1e-8 * float(jtj.abs().max())


def test_fit_recovers_w_psi_and_the_types_of_a_network(network):
    x, y = torch.from_numpy(np.array(network.x)), torch.from_numpy(np.array(network.dxdt))
    fit = fit_functions(x, y, n_psi=24, n_phi=12, receivers=20, dtype=torch.float32)
    w = linear_fit(network.truth.connectivity, fit.connectivity.numpy() / network.truth.gains[:, None], off_diagonal=True)
    # regression: 0.877 before phi's basis held x (its decay term); W absorbed the spline's misfit of -c x
    assert w.r2 > 0.95 and 0.8 < w.slope < 1.3
    assert fit.history[-1] < 0.5 * fit.history[0]
    assert float(fit.connectivity.diagonal().abs().max()) == 0.0
    # psi: its offset leaves phi_i(0) = 0 as in the simulated neurons, its plateau is 1
    grid = torch.linspace(-3, 3, 61, dtype=torch.float64)
    psi = fit.psi(grid)
    assert abs(float(fit.psi(torch.zeros(1, dtype=torch.float64)))) < 0.1 and float(psi.max()) > 0.8
    assert bool((psi[1:] >= psi[:-1] - 0.05).all())  # increasing, as tanh
    torch.testing.assert_close(fit.predict(x[:5]), fit.phi(x[:5]) + fit.psi(x[:5]) @ fit.connectivity.T)
    # the curves carry the types (chance: about 0.25): a 5-nearest-neighbour vote of the other neurons' curves names
    # each neuron's type. On 2,000 frames the 50 neurons each visit part of the activity range, and two types differ
    # only in their self-coupling, so a label-free clustering of these curves alone splits them poorly (the warm start
    # uses them only as starting embeddings; Fig. 2 with 1,000 neurons: 1.0, benchmarks/bench_train.py)
    curves, types = phi_curves(fit, x).numpy(), network.truth.types
    assert cross_val_score(KNeighborsClassifier(5), curves, types, cv=5).mean() > 0.7


def test_fit_refuses_bad_shapes_and_stops_at_its_deadline():
    with pytest.raises(CircuitGNNError, match="one shape"):
        fit_functions(torch.zeros(20, 3), torch.zeros(20, 4))
    with pytest.raises(CircuitGNNError, match="at least 10 frames"):
        fit_functions(torch.zeros(5, 3), torch.zeros(5, 3))
    x = torch.randn(200, 6)
    fit = fit_functions(x, torch.tanh(x), n_psi=6, n_phi=5, deadline=0.0)
    assert len(fit.history) == 1  # no Gauss-Newton step starts after the deadline


def test_the_distillation_runs_past_the_deadline(network):
    """Regression (issue 20, the N = 8,000 row): the budget ran out during the spline fit, the distillation then took
    no step, and the GNN kept W from the fit with untrained phi* and psi* (prediction loss 114, distill error NaN)."""
    from circuitgnn.model.gnn import GNN
    from circuitgnn.train.warm_start import warm_start

    cfg = _warm_config().training.extensions.warm_start
    x = torch.as_tensor(np.asarray(network.x[:1000])) / 5
    y = torch.as_tensor(np.asarray(network.dxdt[:1000])) / 5
    found = warm_start(GNN(_warm_config().model, network.n_neurons), x, y, cfg, seed=0, deadline=0.0)
    assert len(found.fit.history) == 1 and found.distill_error < 0.1


def _warm_config(**extensions):
    raw = tiny_config(n_neurons=50, n_frames=2000, neurons={"gain": 3}, noise_std=0.1, connectivity={"filling_factor": 0.2}).model_dump(
        mode="json"
    )
    raw["training"].update({"batch_size": 8, "iterations_per_epoch": 20, "n_epochs": 1, "log_every": 10, "checkpoint_every": 10})
    raw["training"]["extensions"] = {"warm_start": {"psi_basis": 24, "phi_basis": 12, "receivers": 20, "distill_steps": 300}, **extensions}
    return config_from_dict(raw)


def test_warm_start_sets_the_gnn_from_the_fit_logs_it_and_is_not_redone_on_resume(network, tmp_path):
    cfg = _warm_config()
    trainer = Trainer(cfg, network, tmp_path / "run", progress=False)
    run = trainer.fit(max_iterations=0)
    first = run.log[0]
    assert first["iteration"] == 0 and first["warm_start_gauss_newton_steps"] >= 1 and first["warm_start_distill_error"] < 0.1
    w = linear_fit(network.truth.connectivity, trainer.model.W.detach().cpu().numpy() / network.truth.gains[:, None], off_diagonal=True)
    assert w.r2 > 0.85
    embeddings = trainer.model.a.detach().cpu().numpy()
    # types apart from the start (chance: about 0.25; see the recovery test for why not by a label-free clustering here)
    assert cross_val_score(KNeighborsClassifier(5), embeddings, network.truth.types, cv=5).mean() > 0.7
    resumed = Trainer(cfg, network, tmp_path / "run", resume=True, progress=False)
    assert resumed.counters.warm_started
    torch.testing.assert_close(resumed.model.W, trainer.model.W)
    later = resumed.fit()
    assert sum("warm_start_fit_seconds" in line for line in later.log) == 1 and later.log[-1]["iteration"] == 20
    # W's and the embeddings' Adam rates are scaled down once warm-started, on a resume too (regression: the sparse
    # family's W and the Dale family's types drifted away at the full rates); without the warm start, the config's
    rates, scale = {g["name"]: g["lr"] for g in resumed.optimizer.param_groups}, cfg.training.extensions.warm_start.lr_scale
    assert rates["W"] == pytest.approx(cfg.training.lr_w * scale)
    assert rates["embedding"] in (0.0, pytest.approx(cfg.training.lr_embedding * scale))  # 0: frozen after a clustering
    cold = Trainer(
        config_from_dict({**cfg.model_dump(mode="json"), "training": {**cfg.training.model_dump(mode="json"), "extensions": {}}}),
        network,
        tmp_path / "cold",
        progress=False,
    )
    cold.fit(max_iterations=1)
    assert {g["name"]: g["lr"] for g in cold.optimizer.param_groups}["W"] == pytest.approx(cfg.training.lr_w)


@pytest.mark.parametrize(
    ("section", "field", "value", "named"),
    [("model", "low_rank", 4, "model.low_rank"), ("training", "objective", "rollout", "training.objective rollout")],
)
def test_warm_start_refuses_what_it_cannot_start(section, field, value, named):
    """(The pair form psi*(x_j, a_i, a_j) is started too: tests/test_pair_form.py.)"""
    raw = _warm_config().model_dump(mode="json")
    raw[section][field] = value
    with pytest.raises(ValueError, match=f"warm_start needs a dense W and psi.*remove {named}"):
        config_from_dict(raw)


def test_a_resumed_run_that_has_trained_is_not_warm_started(network, tmp_path):
    """A run made without the warm start (or before it existed) and resumed with it keeps its weights."""
    raw = _warm_config().model_dump(mode="json")
    raw["training"]["extensions"]["warm_start"] = None
    cold = config_from_dict(raw)
    trainer = Trainer(cold, network, tmp_path / "run", progress=False)
    trainer.fit(max_iterations=10)
    resumed = Trainer(_warm_config(), network, tmp_path / "run", resume=True, progress=False)
    before = resumed.model.W.detach().clone()
    resumed.fit(max_iterations=10)
    torch.testing.assert_close(resumed.model.W, before)
    assert not resumed.counters.warm_started and not any("warm_start_fit_seconds" in line for line in resumed.history)


def test_the_final_solve_in_chunks_equals_one_solve(network, monkeypatch):
    from circuitgnn.train import varpro

    x, y = torch.from_numpy(np.array(network.x)), torch.from_numpy(np.array(network.dxdt))
    whole = fit_functions(x, y, n_psi=10, n_phi=6, iterations=1)
    monkeypatch.setattr(varpro, "_CHUNK", 7)  # 50 receivers: 8 parts, the last one short
    parts = fit_functions(x, y, n_psi=10, n_phi=6, iterations=1)
    # equal up to the rounding of products of other shapes (the Gram matrix has a condition number near 1e4 here)
    torch.testing.assert_close(parts.connectivity, whole.connectivity, rtol=1e-3, atol=1e-4)
    # the functions, not their coefficients: the splines nearly hold x, so the split of phi between them and the
    # linear term is loosely determined
    torch.testing.assert_close(parts.phi(x), whole.phi(x), rtol=1e-3, atol=2e-4)
    asked = []
    stopped = fit_functions(x, y, n_psi=10, n_phi=6, should_stop=lambda: asked.append(1) or True)
    assert len(stopped.history) == 1 and asked  # a Ctrl-C seen: no Gauss-Newton step starts


def test_the_blocks_hold_no_copy_of_float32_frames(monkeypatch):
    """Regression (issue 20 item 2): the blocks held 4 spline values per basis in float32 and the drift in float64
    (44 bytes per frame and neuron: 7 GB at N = 8,000 and 20,000 frames), then the spline coordinates of both bases
    (12 bytes: 1.9 GB); now views of the caller's frames and drift, and psi's coordinates (6 bytes) only in a
    small fit: a large one computes them per pass, the same ones."""
    x, y = torch.randn(3000, 40), torch.randn(3000, 40)
    basis, phi = SplineBasis(x, 24), SplineBasis(x, 12, linear=True)
    kept = _prepare(x, y, basis, phi)
    assert all(b.x.untyped_storage().data_ptr() == x.untyped_storage().data_ptr() for b in kept)
    assert all(b.y.untyped_storage().data_ptr() == y.untyped_storage().data_ptr() for b in kept)
    torch.testing.assert_close(torch.cat([b.x for b in kept]), x)
    torch.testing.assert_close(torch.cat([b.y for b in kept]), y)
    assert sum(t.element_size() * t.numel() for b in kept for t in (*b.psi, *b.phi)) == 12 * x.numel()
    monkeypatch.setattr(varpro, "_KEPT_VALUES", x.numel() - 1)
    computed = _prepare(x, y, basis, phi)
    assert all(b.psi is None and b.phi is None for b in computed)
    receivers = torch.tensor([3, 7, 11])
    for k, c in zip(kept, computed, strict=True):
        assert torch.equal(k.psi_coordinate(basis)[0].long(), c.psi_coordinate(basis)[0])
        torch.testing.assert_close(k.psi_coordinate(basis)[1], c.psi_coordinate(basis)[1].float())
        torch.testing.assert_close(k.phi_basis(phi, receivers, torch.float64), c.phi_basis(phi, receivers, torch.float64))


def test_a_gauss_newton_step_in_parts_without_kept_coordinates_is_the_same_step(monkeypatch):
    """Large fits (issue 20 item 2) keep no spline coordinates and take each Gauss-Newton step on parts of a block;
    the solve and the step's J^T J and J^T r are those of the kept coordinates, up to the float32 positions kept."""
    rng = np.random.default_rng(7)
    x = torch.from_numpy(rng.normal(scale=2, size=(2500, 30)))
    y = torch.tanh(x) @ torch.from_numpy(rng.normal(scale=0.5, size=(30, 30))).T - x
    psi_basis, phi_basis = SplineBasis(x, 10), SplineBasis(x, 6, linear=True)
    receivers, theta = torch.arange(0, 30, 3), torch.from_numpy(rng.normal(size=10))

    def step() -> tuple[torch.Tensor, ...]:
        blocks = _prepare(x, y, psi_basis, phi_basis)
        solved = _solve(blocks, receivers, theta, psi_basis, phi_basis, 0.0, torch.float64)
        return (solved.w, *_gauss_newton(blocks, receivers, theta, psi_basis, phi_basis, solved, torch.float64))

    kept = step()
    monkeypatch.setattr(varpro, "_KEPT_VALUES", 0)
    monkeypatch.setattr(varpro, "_STEP_BYTES", 100 * 30 * 10 * 8 * 2)  # parts of 100 frames
    for ours, theirs in zip(step(), kept, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6 * float(theirs.abs().max()))


def test_the_gram_inverse_is_computed_in_the_gram_matrix_memory():
    """Regression (issue 20 item 2): a solve held the Gram matrix, its Cholesky factor and the inverse at once
    (1.5 GB at N = 8,000); on the CPU the inverse now overwrites the Gram matrix."""
    a = torch.from_numpy(np.random.default_rng(3).normal(size=(300, 40)))
    gram = a.T @ a
    expected = torch.linalg.inv(gram + 1e-3 * float(gram.diagonal().mean()) * torch.eye(40, dtype=torch.float64))
    work = gram.clone()
    inverse = _ridge_inverse(work, 1e-3)
    assert inverse.data_ptr() == work.data_ptr()
    torch.testing.assert_close(inverse, expected)
    assert torch.equal(inverse, inverse.T)


def test_a_singular_gram_matrix_is_inverted_again_with_a_raised_ridge():
    """Fewer frames than senders: the factorisation fails part-way through the Gram matrix's memory; it is restored
    from the untouched triangle and factorised with a 100-fold larger ridge until it succeeds."""
    a = torch.from_numpy(np.random.default_rng(4).normal(size=(20, 40)))
    gram = a.T @ a
    gram[:, 0] = gram[0] = 0.0  # a sender that never varies: singular in float64 whatever the rounding
    inverse = _ridge_inverse(gram.clone(), 1e-16)
    eye = torch.eye(40, dtype=torch.float64)
    # (G + r mean(diag G) I) inverse = I: read r back from the sender that never varies, then check the rest
    lifted = 1 / float(inverse[0, 0] * gram.diagonal().mean())
    assert 1e-10 <= lifted <= 1e-2
    torch.testing.assert_close((gram + lifted * gram.diagonal().mean() * eye) @ inverse, eye, rtol=0, atol=1e-5)
    with pytest.raises(CircuitGNNError, match="linearly dependent"):
        _ridge_inverse(-torch.eye(5, dtype=torch.float64), 1e-3)


def test_mirror_lower_restores_a_symmetric_matrix_from_its_lower_triangle():
    m = torch.from_numpy(np.random.default_rng(5).normal(size=(2500, 2500)))
    symmetric = m + m.T
    damaged = symmetric.tril() + 7 * symmetric.triu(1)
    _mirror_lower(damaged, rows=1000)
    assert torch.equal(damaged, symmetric)


def test_the_direct_residual_is_the_normal_equations_one_in_float64():
    rng = np.random.default_rng(8)
    x = torch.from_numpy(rng.normal(scale=2, size=(1500, 20)))
    y = torch.tanh(x) @ torch.from_numpy(rng.normal(scale=0.5, size=(20, 20))).T - x + 0.1 * torch.from_numpy(rng.normal(size=(1500, 20)))
    psi_basis, phi_basis = SplineBasis(x, 10), SplineBasis(x, 6, linear=True)
    blocks, receivers, theta = _prepare(x, y, psi_basis, phi_basis), torch.arange(0, 20, 2), torch.from_numpy(rng.normal(size=10))
    solved = _solve(blocks, receivers, theta, psi_basis, phi_basis, 0.0, torch.float64)
    assert varpro._direct_loss(blocks, receivers, theta, psi_basis, phi_basis, solved) == pytest.approx(solved.loss, rel=1e-9)


def test_float32_products_that_lose_the_residual_give_way_to_float64(network, monkeypatch):
    """Regression (issue 21, 10,000 frames of Fig. 2): float32 products left the residual read off the normal
    equations 100 times below the data's, and the fit chose its psi by it. Every solve of the psi steps is now
    checked, its residual taken from the data, and the fit done again in float64 where they disagree."""
    x, y = torch.from_numpy(np.array(network.x[:1000])), torch.from_numpy(np.array(network.dxdt[:1000]))
    lines: list[str] = []
    assert fit_functions(x, y, n_psi=10, n_phi=6, iterations=1, dtype=torch.float32).products == torch.float32  # accurate here
    monkeypatch.setattr(varpro, "_LOSS_AGREEMENT", -1.0)  # as if no agreement were good enough
    fit = fit_functions(x, y, n_psi=10, n_phi=6, iterations=1, dtype=torch.float32, log=lines.append)
    assert fit.products == torch.float64 and "again in float64" in lines[0]
    reference = fit_functions(x, y, n_psi=10, n_phi=6, iterations=1, dtype=torch.float64)
    torch.testing.assert_close(fit.connectivity, reference.connectivity)
