"""Symbolic regression on functions sampled from known formulas plus noise."""

import json

import numpy as np
import pytest
import sympy

from circuitgnn.analyze.symbolic import Formula, SymbolicBackendMissing, X, fit_formula, load_formula, save_formulas


def coefficient(expr, term):
    return float(sympy.expand(expr).coeff(term))


@pytest.mark.parametrize("c, s", [(1, 1), (1, 2), (2, 1), (2, 2)])
def test_update_functions_recovered_within_two_percent(c, s):
    rs = np.random.default_rng(c * 10 + s)
    x = np.linspace(-11, 11, 400)
    y = -c * x + s * np.tanh(x) + rs.normal(scale=0.02 * np.std(-c * x + s * np.tanh(x)), size=x.size)
    f = fit_formula(x, y)
    assert f.expression.free_symbols == {X}
    assert coefficient(f.expression, X) == pytest.approx(-c, rel=0.02)
    assert coefficient(f.expression, sympy.tanh(X)) == pytest.approx(s, rel=0.02)
    assert len(sympy.Add.make_args(f.expression)) == 2  # no spurious terms


def test_transfer_function_is_tanh():
    rs = np.random.default_rng(0)
    x = np.linspace(-11, 11, 400)
    f = fit_formula(x, np.tanh(x) + rs.normal(scale=0.01, size=x.size))
    assert sympy.simplify(f.expression - sympy.Float(coefficient(f.expression, sympy.tanh(X)), 4) * sympy.tanh(X)) == 0
    assert coefficient(f.expression, sympy.tanh(X)) == pytest.approx(1.0, rel=0.02)


@pytest.mark.parametrize("gamma", [1.0, 2.0, 4.0, 8.0])
def test_transmitter_width_recovered_within_five_percent(gamma):
    rs = np.random.default_rng(int(gamma))
    x = np.linspace(-11, 11, 400)
    f = fit_formula(x, np.tanh(x / gamma) + rs.normal(scale=0.01, size=x.size))
    (tanh_term,) = [a for a in sympy.preorder_traversal(f.expression) if isinstance(a, sympy.tanh)]
    width = 1.0 / float(tanh_term.args[0].coeff(X))
    assert width == pytest.approx(gamma, rel=0.05)


def test_pair_transfer_keeps_its_linear_leak():
    x = np.linspace(-11, 11, 400)
    f = fit_formula(x, np.tanh(x) - 0.0416 * x + np.random.default_rng(0).normal(scale=0.002, size=x.size))
    assert coefficient(f.expression, X) == pytest.approx(-0.0416, rel=0.1)


def test_other_functions_fall_back_to_the_library():
    x = np.linspace(-5, 5, 300)
    f = fit_formula(x, np.sin(x) + 0.5 * x)
    assert f.error < 1e-6
    assert coefficient(f.expression, sympy.sin(X)) == pytest.approx(1.0, rel=1e-3)


def test_formulas_export_and_import_as_callables(tmp_path):
    x = np.linspace(-5, 5, 100)
    f = fit_formula(x, -2 * x + np.tanh(x))
    save_formulas(tmp_path / "f.json", {"phi": [f]})
    entry = json.loads((tmp_path / "f.json").read_text())["phi"][0]
    g = load_formula(entry)
    np.testing.assert_allclose(g(x), f(x))
    np.testing.assert_allclose(load_formula("-2*x + tanh(x)")(x), -2 * x + np.tanh(x))
    assert isinstance(g, Formula) and g.text == f.text


def test_bad_input_and_missing_backend():
    x = np.linspace(-1, 1, 50)
    with pytest.raises(ValueError, match="matching x and y"):
        fit_formula(x, x[:10])
    with pytest.raises(ValueError, match="unknown symbolic backend"):
        fit_formula(x, x, backend="magic")
    try:
        import pysr  # noqa: F401
    except ImportError:
        with pytest.raises(SymbolicBackendMissing, match="pysr"):
            fit_formula(x, x, backend="pysr")
