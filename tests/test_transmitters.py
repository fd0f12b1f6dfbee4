"""The transfer that depends on the sender's type (psi_j = tanh(x_j / gamma_j), "transmitters", Supp. 13): the spline
fit with one psi per group of senders, its warm start of psi*(x_j, a_j) with the groups found without labels, and
the width metric read off the formulas."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from circuitgnn import simulate
from circuitgnn.analyze.metrics import linear_fit
from circuitgnn.analyze.symbolic import symbolic_formulas, tanh_width, width_error
from circuitgnn.data.dataset import Dataset
from circuitgnn.train.trainer import Trainer
from circuitgnn.train.varpro import FunctionFit, fit_functions
from circuitgnn.train.warm_start import _join_small
from tests.conftest import WIDTHS, typed_transfer_config


def _sender_config(**training):
    return typed_transfer_config("sender", 200, 5000, 0.3, 10, **training)


@pytest.fixture(scope="module")
def transmitters(tmp_path_factory):
    """200 neurons of 4 types whose transfer tanh(x_j / gamma_j) has the sender's width 1, 2, 4 or 8."""
    out = tmp_path_factory.mktemp("transmitters") / "net"
    simulate(_sender_config(), out, progress=False, figure=False)
    return Dataset(out)


def _widths(fit: FunctionFit, x: torch.Tensor, senders: list[int]) -> list[float]:
    """The width of c tanh(x / g) + b closest to each given sender's psi over the bulk of the activity."""
    low, high = np.quantile(x.numpy().reshape(-1), [0.02, 0.98])
    grid = np.linspace(low, high, 100)
    found = []
    for j in senders:
        curve = fit.transfer(torch.as_tensor(grid)[:, None].expand(100, x.shape[1]))[:, j].numpy()
        errors = []
        for g in np.geomspace(0.3, 30, 400):
            basis = np.stack([np.tanh(grid / g), np.ones_like(grid)], axis=1)
            errors.append(float(((basis @ np.linalg.lstsq(basis, curve, rcond=None)[0] - curve) ** 2).sum()))
        found.append(float(np.geomspace(0.3, 30, 400)[int(np.argmin(errors))]))
    return found


def test_one_psi_per_group_of_senders_recovers_each_width_and_w(transmitters):
    """Told the types (to test the fit alone), the fit with one psi per group of senders finds each sender type's width,
    where one shared psi cannot; every receiver sees the same K functions."""
    x, y = torch.from_numpy(np.array(transmitters.x)), torch.from_numpy(np.array(transmitters.dxdt))
    truth = transmitters.truth
    types = torch.as_tensor(truth.types)
    shared = fit_functions(x, y, n_psi=24, n_phi=10, receivers=60)
    fit = fit_functions(x, y, n_psi=24, n_phi=10, receivers=60, groups=types, by_receiver=False, start=shared.psi_coefficients)
    assert fit.psi_coefficients.shape == (4, 4, 24)
    assert all(torch.equal(fit.psi_coefficients[0], row) for row in fit.psi_coefficients)
    one_of_each = [int(np.flatnonzero(truth.types == t)[0]) for t in range(4)]
    widths = _widths(fit, x, one_of_each)
    assert widths == pytest.approx(WIDTHS, rel=0.1)  # (1.00, 1.99, 3.98, 7.34)
    plateau = fit.pair_plateaus(float(x.std())).numpy()[0][truth.types]
    grouped_r2 = linear_fit(truth.connectivity, fit.connectivity.numpy() * plateau / truth.gains[:, None], off_diagonal=True).r2
    shared_r2 = linear_fit(truth.connectivity, shared.connectivity.numpy() / truth.gains[:, None], off_diagonal=True).r2
    assert grouped_r2 > 0.93 and grouped_r2 > shared_r2 + 0.1  # 0.949 against 0.806


def test_the_warm_start_of_psi_of_the_senders_type_reads_the_widths_without_labels(transmitters, tmp_path):
    """The warm start groups the senders itself and distils their psi into psi*(x_j, a_j): the symbolic formulas of
    the GNN's psi* carry each type's width (the true types matched only to score)."""
    cfg = _sender_config(extensions={"warm_start": {"psi_basis": 16, "phi_basis": 10, "receivers": 60, "distill_steps": 3000}})
    trainer = Trainer(cfg, transmitters, tmp_path / "run", progress=False)
    run = trainer.fit(max_iterations=0)
    assert run.log[0]["warm_start_groups"] >= 4 and run.log[0]["warm_start_distill_error"] < 0.1
    formulas = symbolic_formulas(trainer.model, trainer.xnorm, 10, transmitters.truth)
    widths = sorted(w for w in (tanh_width(e["formula"]) for e in formulas["psi"]) if w is not None)
    # 1.00, 2.00, 4.05, 7.82 here; a psi* left to gradient steps from the shared psi has one width for every type
    assert len(widths) == 4 and widths == pytest.approx(WIDTHS, rel=0.1)
    error = width_error(formulas)
    assert error is not None and error < 0.1


@pytest.mark.parametrize(
    ("formula", "width"),
    [
        ("0.5*tanh(0.125*x) + 0.1", 8.0),
        ("-2*tanh(x)", 1.0),
        ("tanh(0.5*x - 0.25) - 0.1*x", 2.0),
        ("tanh((x - 1)/4)", 4.0),
        ("0.3*x + 1", None),
        ("tanh(x) + tanh(x/2)", None),
        ("tanh(x**2)", None),
    ],
)
def test_the_width_of_a_formula_is_read_off_its_one_tanh(formula, width):
    assert tanh_width(formula) == (None if width is None else pytest.approx(width))


def test_the_width_error_is_the_worst_matched_psi_and_counts_a_formula_without_width():
    entries = [
        {"formula": "0.9*tanh(0.26*x)", "true": "tanh(x/4)"},
        {"formula": "tanh(0.5*x)", "true": "tanh(x/2)"},
        {"formula": "tanh(x)"},  # not matched to a true type: not scored
    ]
    assert width_error({"psi": entries}) == pytest.approx(abs(1 / 0.26 / 4 - 1))
    assert width_error({"psi": [*entries, {"formula": "x", "true": "tanh(x/8)"}]}) == float("inf")
    assert width_error({"psi": entries[2:]}) is None


def test_groups_too_small_for_their_own_psi_join_the_nearest_group():
    """A group of fewer than MIN_GROUP neurons joins the group whose centre is nearest, smallest first; the labels
    come back as 0 .. K-1."""
    rng = np.random.default_rng(0)
    features = np.concatenate([rng.normal(0, 0.1, (20, 2)), rng.normal(5, 0.1, (20, 2)), rng.normal(4.5, 0.1, (3, 2)), [[0.3, 0.2]]])
    labels = np.array([0] * 20 + [2] * 20 + [5] * 3 + [7])
    joined = _join_small(features, labels).numpy()
    assert joined.tolist() == [0] * 20 + [1] * 20 + [1] * 3 + [0]
    assert _join_small(features[:5], np.array([0, 0, 1, 1, 2])).tolist() == [0] * 5  # all small: one group remains
