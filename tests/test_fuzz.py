"""Fuzzing: generated configs and corrupted dataset folders end in success or a named error, never a traceback.

Named errors are :class:`~circuitgnn.errors.CircuitGNNError` (ConfigError, DatasetError, SimulationDiverged, ...) and
FileExistsError; anything else (KeyError, IndexError, a raw pydantic or numpy error) fails the test.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from circuitgnn.config import ExperimentConfig, config_from_dict, describe_fields
from circuitgnn.data.dataset import Dataset
from circuitgnn.errors import CircuitGNNError, ConfigError
from circuitgnn.simulate.run import simulate
from circuitgnn.train.trainer import Trainer

NAMED = (CircuitGNNError, FileExistsError)
VALUES = [None, True, False, "1_000", "abc", "", -1, 0, 1, 2, 0.5, 3.7, -1e-9, 1e308, 2**70, float("nan"), float("inf"),
          [], [1, 2, 3], [0.5, float("nan")], {}, {"a": 1}]  # fmt: skip
LEAVES = [name for name, default, _ in describe_fields(ExperimentConfig) if default != ""]  # fields, not sections
BASE = {
    "name": "fuzz",
    "simulation": {"n_neurons": 12, "n_frames": 40, "burn_in": 5, "neurons": {"n_types": 2}, "check_activity": False},
    "model": {"hidden": 4},
    "training": {"n_epochs": 1, "iterations_per_epoch": 2, "batch_size": 2, "log_every": 1, "checkpoint_every": 1},
}


def _set(data: dict[str, Any], dotted: str, value: Any) -> None:
    *sections, leaf = dotted.split(".")
    node = data
    for s in sections:
        if not isinstance(node.get(s), dict):
            node[s] = {}
        node = node[s]
    node[leaf] = value


def _config(changes: list[tuple[str, Any]]) -> ExperimentConfig | None:
    data = json.loads(json.dumps(BASE))
    for dotted, value in changes:
        _set(data, dotted, copy.deepcopy(value))
    try:
        return config_from_dict(data, source="fuzz")
    except ConfigError:
        return None


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(LEAVES), st.sampled_from(VALUES)), min_size=1, max_size=3))
def test_generated_configs_validate_or_name_the_field(changes: list[tuple[str, Any]]) -> None:
    config = _config(changes)  # a named error or a config; anything else raises out of the test
    if config is not None:
        for dotted, value in changes:  # what was accepted is a finite number, never a boolean or text read as one
            if isinstance(value, float) and not np.isfinite(value):
                section, _, leaf = dotted.rpartition(".")
                node: Any = config
                for part in section.split(".") if section else []:
                    node = getattr(node, part)
                assert not (isinstance(getattr(node, leaf, None), float) and not np.isfinite(getattr(node, leaf))), dotted


CHEAP = [
    n
    for n in LEAVES
    if n.split(".")[0] in ("simulation", "model", "training")
    and n.rsplit(".", 1)[-1]
    not in (
        "n_neurons",
        "n_frames",
        "burn_in",
        "every",
        "n_epochs",
        "iterations_per_epoch",
        "hidden",
        "siren_hidden",
        "siren_layers",
        "batch_size",
        "steps",
        "substeps",
        "refit_steps",
        "frames",
        "grid_size",
        "path",
        "connectivity_mask",
        "device",
        "max_minutes",
        "log_every",
        "checkpoint_every",
        "n_types",
        "max_types",
        "low_rank",
        "receiver_chunk",
        "n_frames_input",
    )
]  # fmt: skip  (fields that set sizes or files stay small and valid: the fuzz is on behaviour, not on run time)


@settings(
    max_examples=100, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.tuples(st.sampled_from(CHEAP), st.sampled_from(VALUES)), min_size=1, max_size=2))
def test_generated_configs_simulate_and_train_or_name_the_problem(tmp_path_factory, changes: list[tuple[str, Any]]) -> None:
    config = _config(changes)
    if config is None:
        return
    folder = tmp_path_factory.mktemp("fuzz")
    try:
        ds = simulate(config, folder / "d", progress=False, figure=False, device="cpu").dataset
        Trainer(config, ds, folder / "r", progress=False).fit()
    except NAMED:
        pass
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("fuzz_data") / "d"
    simulate(config_from_dict(BASE), path, progress=False, figure=False)
    return path


def _mutate_meta(meta: dict[str, Any], key_path: list[str], value: Any) -> None:
    node = meta
    for k in key_path[:-1]:
        node = node.get(k) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            return
    if value == "<delete>":
        node.pop(key_path[-1], None)
    else:
        node[key_path[-1]] = copy.deepcopy(value)  # the pool's lists and dicts are shared between examples


META_PATHS = [["arrays"], ["arrays", "x"], ["arrays", "x", "shape"], ["arrays", "x", "dtype"], ["arrays", "x", "file"],
              ["arrays", "dxdt"], ["dt"], ["n_frames"], ["segments"], ["holdout"], ["scale"], ["missing"], ["format"],
              ["complete"], ["summary"], ["stimulus_mode"], ["indicator"], ["signal"], ["truth_arrays"], ["observation"]]  # fmt: skip
FILES = ["x.npy", "dxdt.npy", "neurons.npz", "truth/connectivity.npy", "truth/types.npy", "truth/functions.json"]


@settings(
    max_examples=100, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(st.tuples(st.sampled_from(META_PATHS), st.sampled_from([*VALUES, "<delete>"])), max_size=2),
    st.lists(st.tuples(st.sampled_from(FILES), st.sampled_from(["delete", "truncate", "float64", "garbage"])), max_size=1),
)
def test_corrupted_dataset_folders_are_named(dataset: Path, tmp_path_factory, meta_changes, file_changes) -> None:
    copy = tmp_path_factory.mktemp("fuzz_copy") / "d"
    shutil.copytree(dataset, copy)
    meta = json.loads((copy / "meta.json").read_text())
    for key_path, value in meta_changes:
        _mutate_meta(meta, key_path, value)
    (copy / "meta.json").write_text(json.dumps(meta))
    for name, how in file_changes:
        file = copy / name
        if how == "delete":
            file.unlink()
        elif how == "truncate":
            file.write_bytes(file.read_bytes()[: len(file.read_bytes()) // 2])
        elif how == "float64" and name.endswith(".npy"):
            np.save(file, np.load(file).astype(np.float64))
        else:
            file.write_bytes(b"\x00garbage\xff" * 10)
    try:
        ds = Dataset(copy)
        _ = ds.truth, ds.indicator, ds.activity(), ds.positions
        Trainer(config_from_dict(BASE), ds, progress=False).fit(max_iterations=1)
    except NAMED:
        pass
    finally:
        shutil.rmtree(copy.parent, ignore_errors=True)
