"""Activity that cannot teach a model anything is refused or named before any work (issue 15, item 4)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from circuitgnn.data.activity import Activity
from circuitgnn.data.importer import import_recording
from circuitgnn.data.informative import RANK_TOLERANCE, activity_rank, check_informative
from circuitgnn.errors import DatasetError
from circuitgnn.simulate.run import simulate


def _messages(fn, *args, **kwargs) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fn(*args, **kwargs)
    return [str(w.message) for w in caught]


def _settling(t: int = 2000, n: int = 8, seed: int = 0) -> np.ndarray:
    """Activity that decays onto a fixed point within the first fifth of the frames, then sits there exactly."""
    rs = np.random.default_rng(seed)
    time = np.arange(t)[:, None]
    x = rs.normal(size=(1, n)) * np.exp(-time / 40.0) * np.cos(time / 7.0 + rs.uniform(0, 6, size=(1, n))) + rs.normal(size=(1, n))
    x[400:] = x[400]
    return x.astype(np.float32)


def _rich(t: int = 3000, n: int = 10, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(t, n)).cumsum(axis=0).astype(np.float32)


def test_informative_activity_passes_quietly(tmp_path):
    x = _rich()
    assert _messages(check_informative, x) == []
    found = check_informative(x)
    assert found.full_rank and found.still_share == 0.0 and found.rank == 10


def test_a_fixed_point_is_refused_by_the_importer_and_the_estimator_data(tmp_path):
    """Regression: a recording that fell to a fixed point was imported and trained on without a word."""
    np.save(tmp_path / "rec.npy", _settling())
    with pytest.raises(DatasetError, match=r"rec.npy.*does not move in 80 % of its frames \(from frame 400 on.*--no-check"):
        import_recording(tmp_path / "rec.npy", tmp_path / "ds", dt=0.1)
    assert not (tmp_path / "ds").exists()
    with pytest.raises(DatasetError, match="fixed point"):
        Activity.from_arrays(_settling(), dt=0.1)
    messages = _messages(import_recording, tmp_path / "rec.npy", tmp_path / "ds", dt=0.1, check_activity=False)
    assert any("fixed point" in m for m in messages)
    assert (tmp_path / "ds" / "meta.json").is_file()


def test_a_partly_still_recording_is_a_warning():
    x = _rich()
    x[2500:] = x[2500]
    messages = _messages(check_informative, x, source="rec")
    assert any("17 % of the frames do not move" in m for m in messages)


def test_fewer_directions_than_neurons_is_named():
    """Regression: 5,000 consecutive frames of the Fig. 2 network do not determine W, and nothing said so."""
    rs = np.random.default_rng(3)
    x = (rs.normal(size=(4000, 3)) @ rs.normal(size=(3, 12))).astype(np.float32)  # 12 neurons driven by 3 sources
    messages = _messages(check_informative, x, source="rec")
    assert any("spans only 3 independent directions of its 12 neurons" in m for m in messages)
    short = _rich(t=6, n=10)  # fewer frames than neurons: rank <= frames - 1
    assert activity_rank(short)[0] == 5


def test_the_rank_tolerance_sits_above_float32_rounding():
    """Full-rank activity rounded to float32 is full rank; a direction 10x below the tolerance is not counted."""
    rs = np.random.default_rng(4)
    base = rs.normal(size=(5000, 20))
    assert activity_rank(base.astype(np.float32))[0] == 20
    weak = base.copy()
    weak[:, 0] = weak[:, 1] + 0.1 * RANK_TOLERANCE * rs.normal(size=5000)
    assert activity_rank(weak)[0] == 19


def test_duplicated_neurons_are_named_with_their_names():
    x = _rich()
    x[:, 7] = 2.0 * x[:, 3] + 1.0
    names = [f"roi{i}" for i in range(10)]
    messages = _messages(check_informative, x, names=names)
    assert any("neurons 3 (roi3) and 7 (roi7) carry the same activity up to scale" in m for m in messages)


def test_growing_activity_is_named():
    x = _rich() * np.exp(np.linspace(0, 10, 3000))[:, None].astype(np.float32)
    messages = _messages(check_informative, x, segments=(0,), source="rec")
    assert any("grows" in m and "segment 0" in m for m in messages)


def test_segments_are_measured_apart():
    """A jump between two sessions is not a change; a segment's first frame never counts as still."""
    x = _rich()
    x[1500] = x[1499]  # equal across the boundary only
    assert check_informative(x, segments=(0, 1500)).still_share == 0.0


def test_the_simulator_names_too_few_frames(tmp_path, tiny):
    """Regression: a simulation with fewer frames than neurons was published without a word about what it lacks."""
    cfg = tiny(n_frames=20)
    messages = _messages(simulate, cfg, tmp_path / "short", progress=False, figure=False)
    rank = json.loads((tmp_path / "short" / "meta.json").read_text())["summary"]["activity_rank"]
    assert rank < 20
    assert any(f"spans only {rank} independent directions of 40 neurons in 20 frames" in m for m in messages)
