import numpy as np
import pytest

from circuitgnn.config import NeuronConfig
from circuitgnn.simulate.neurons import TypeTable, assign_types, grid_coordinates, make_positions


def test_contiguous_blocks_remainder_to_last_type():
    types = assign_types(1000, NeuronConfig(n_types=32, self_coupling=1, decay=1), np.random.default_rng(0))
    counts = np.bincount(types)
    assert list(counts[:31]) == [31] * 31 and counts[31] == 39  # spec 2.1
    assert np.all(np.diff(types) >= 0)
    assert list(np.bincount(assign_types(1000, NeuronConfig(), np.random.default_rng(0)))) == [250] * 4


def test_shuffled_types_are_a_permutation_of_the_blocks():
    cfg = NeuronConfig(type_layout="shuffled")
    t = assign_types(1000, cfg, np.random.default_rng(1))
    assert list(np.bincount(t)) == [250] * 4
    assert np.any(np.diff(t) < 0)


def test_type_fractions():
    cfg = NeuronConfig(type_fractions=[0.1, 0.2, 0.3, 0.4])
    assert list(np.bincount(assign_types(1000, cfg, np.random.default_rng(0)))) == [100, 200, 300, 400]
    cfg = NeuronConfig(type_fractions=[0.6, 0.4, 0.0, 0.0])
    assert list(np.bincount(assign_types(1001, cfg, np.random.default_rng(0)), minlength=4)) == [600, 401, 0, 0]


def test_positions_grid_layout():
    g = 4
    pos = make_positions(50, g, np.random.default_rng(0))
    assert pos.shape == (50, 2)
    exact = grid_coordinates(g)
    assert np.abs(pos[: g * g] - exact).max() < 5 / (8 * g)  # jitter std 1/(8 G)
    # neuron r*G + c sits at (x, y) = (c, r) / (G - 1)
    assert tuple(exact[1 * g + 2]) == pytest.approx((2 / 3, 1 / 3))
    assert np.all((pos[g * g :] >= 0) & (pos[g * g :] <= 1))


def test_type_table_expansion():
    table = TypeTable.from_config(NeuronConfig(width=[1, 2, 4, 8], decay=[1, 1, 2, 2]))
    per = table.per_neuron(np.array([0, 3, 1]))
    assert list(per["width"]) == [1, 8, 2]
    assert list(per["decay"]) == [1, 2, 1]
    assert per["leak"][1] == pytest.approx(np.log(8) / 50)
